//! Thread-per-core runtime: pinned glommio executors, SO_REUSEPORT listeners, a cross-shard router.
//!
//! The server runs one glommio executor per CPU ("data shard") plus one unpinned control
//! executor. Nothing is shared between shards: the kernel spreads connections over the shards'
//! SO_REUSEPORT listeners ([`reuseport_listener`]), stream state lives on the shard chosen by
//! [`shard_for`], and everything else crosses the [`Router`] as a message. The crate knows
//! nothing about media; the server picks the message type `M`.
//!
//! - [`hash`]: the stable key -> shard mapping.
//! - [`runtime`]: building, pinning, starting and stopping the executors.
//! - [`router`]: one-way messages, request/reply, broadcast over glommio's channel mesh.
//! - [`listener`]: per-shard SO_REUSEPORT listeners.
//! - [`conn`]: a connection split into a read half and a write half with vectored sends.
//! - [`handoff`]: moving a live connection to another shard.
//! - [`stop`]: cooperative shutdown.
//! - [`tick_poller`]: read readiness of many busy sockets collected once per tick.
//! - [`shared_tick`]: a shard-wide clock for merging writes.

pub mod conn;
pub mod handoff;
pub mod hash;
pub mod listener;
pub mod router;
pub mod runtime;
pub mod shared_tick;
pub mod stop;
pub mod tick_poller;

pub use conn::{split, ReadHalf, WriteHalf};
pub use handoff::{attach, detach};
pub use hash::{fnv1a64, shard_for};
pub use listener::reuseport_listener;
pub use router::{Incoming, Responder, Router, RouterError};
pub use runtime::{
    Runtime, RuntimeConfig, RuntimeHandle, ShardCtx, Termination, TerminationSignalsHeld,
};
pub use shared_tick::SharedTick;
pub use stop::{StopHandle, StopSignal, STOP_POLL};
pub use tick_poller::{Registration, TickPoller, TickRead};
