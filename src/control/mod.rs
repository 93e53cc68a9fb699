//! Control shard: key store, HTTP API routes and server.
