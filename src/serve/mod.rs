//! Listeners and connection tasks.
