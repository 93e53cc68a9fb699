//! Media model shared by every protocol: the [`Packet`] that moves between shards, inspection of
//! FLV audio/video tag headers, the GOP cache that gives late players a fast start, and the
//! per-stream timestamp normaliser.

mod gop;
mod packet;
mod timestamp;

pub use gop::{GopCache, GopLimits};
pub use packet::{Packet, PacketKind};
pub use timestamp::{next_position, TimestampNormaliser};
