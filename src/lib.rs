//! livego-rs: a thread-per-core live-streaming server, drop-in successor of livego.
//!
//! See `docs/ARCHITECTURE.md` for the map of modules and the data flow.

pub mod config;
pub mod control;
pub mod engine;
pub mod flv;
pub mod hls;
pub mod http;
pub mod media;
pub mod relay;
pub mod rtmp;
pub mod serve;
