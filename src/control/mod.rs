//! Control shard: key stores (memory, Redis), HTTP API routes and server, JWT, stats, metrics.

pub mod api;
pub mod jwt;
pub mod keys;
pub mod metrics;
pub mod redis_store;
pub mod server;
pub mod stats;
pub mod store;

pub use api::{route, ApiRequest};
pub use jwt::JwtGate;
pub use keys::{generate_key, try_generate_key, KeyStore, MemoryKeyStore, StoreError, KEY_LEN};
pub use redis_store::RedisKeyStore;
pub use server::{serve_api, serve_router, ApiServerOptions, ControlRouter, RouteHandler};
pub use store::KeyService;
