//! Control shard: key store, HTTP API routes and server.

pub mod api;
pub mod keys;
pub mod server;

pub use api::{route, ApiRequest};
pub use keys::{generate_key, try_generate_key, KeyStore, MemoryKeyStore, StoreError, KEY_LEN};
pub use server::{serve_api, serve_router, ApiServerOptions, ControlRouter, RouteHandler};
