//! Per-shard engine: the streams a shard owns, mirrors of streams owned elsewhere, the feeds
//! that fan packets out to local players, player queues, and the router messages between shards.

mod feed;
mod frame;
mod hub;
mod messages;
mod queue;
mod reply_queue;
mod sessions;
mod sink;
mod stats;

pub use feed::Feed;
pub use frame::{Frame, OUT_CHUNK_SIZE, PLAY_STREAM_ID};
pub use hub::{EngineConfig, Hub, PlayerTicket};
pub use messages::{PlayerHandOff, PlayerKind, PublisherHandOff, ShardMsg};
pub use queue::{
    nudge, ready, ready_or_direct, CloseReason, DirectWire, DirectWrite, Item, PlayerQueue,
    QueueLimits, QueueRef,
};
pub use reply_queue::{wait_for_room, ReplyQueue, MAX_REPLY_BYTES};
pub use sessions::{Counters, Protocol, Role, SessionGuard, SessionStat, Sessions, Totals};
pub use sink::{PublishInfo, SinkFactory, StreamSink};
pub use stats::{gather_sessions, gather_totals, scatter};
