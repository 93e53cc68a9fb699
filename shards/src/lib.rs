//! Thread-per-core runtime: pinned glommio executors, SO_REUSEPORT listeners, router mesh.
