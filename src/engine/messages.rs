use std::net::SocketAddr;
use std::os::fd::OwnedFd;
use std::sync::Arc;

use crate::media::Packet;

use super::sessions::{SessionStat, Totals};
use crate::rtmp::server_session::ServerSession;

/// Everything that crosses shards. Stream keys travel as `Arc<str>` so a packet message costs
/// one refcount increment, not a string copy.
pub enum ShardMsg {
    /// Data shard -> control: which room does this channel key publish to?
    KeyLookup {
        key: String,
    },
    /// `Ok(None)` = unknown key; `Err` = the key store failed.
    KeyLookupReply(Result<Option<String>, String>),
    /// Accepting shard -> owner: a publisher connection, moved as a socket plus its RTMP state.
    HandOff(Box<PublisherHandOff>),
    /// Accepting shard -> owner, a request: take this player while you serve few of the
    /// stream's players.
    PlayerHandOff(Box<PlayerHandOff>),
    /// Reply to `PlayerHandOff`: `None` = taken, `Some` = handed back, serve it yourself.
    PlayerHandOffReply(Option<Box<PlayerHandOff>>),
    /// Player shard -> owner: start sending me this stream (cache snapshot, then live packets).
    Subscribe {
        key: Arc<str>,
    },
    /// Player shard -> owner: my last player of this stream left.
    Unsubscribe {
        key: Arc<str>,
    },
    /// Owner -> subscriber: the cache at the moment of subscription; live packets follow.
    Snapshot {
        key: Arc<str>,
        live: bool,
        packets: Vec<Packet>,
    },
    Packet {
        key: Arc<str>,
        packet: Packet,
    },
    /// Owner -> subscribers: a publisher started.
    Live {
        key: Arc<str>,
    },
    /// Owner -> subscribers: the publisher left.
    Unpublished {
        key: Arc<str>,
    },
    /// Control (or any shard) -> data shard, a request: the sessions you serve.
    CollectSessions,
    /// Reply to `CollectSessions`.
    Sessions(Vec<SessionStat>),
    /// Control -> data shard, a request: your byte totals since start.
    CollectTotals,
    /// Reply to `CollectTotals`.
    Totals(Totals),
    /// Any shard -> owner, a request: does this stream have a publisher now?
    IsPublished {
        key: Arc<str>,
    },
    /// Reply to `IsPublished`.
    Published(bool),
    /// Control -> owner shard of the relay's local stream: start this API relay.
    RelayStart(Box<crate::relay::RelaySpec>),
    /// Control -> owner shard: stop the API relay with this session key (`pull:app/name`).
    RelayStop {
        session_key: String,
    },
    /// Control -> data shard, a request: the relays you run.
    CollectRelays,
    /// Reply to `CollectRelays`.
    Relays(Vec<crate::relay::RelayStatus>),
    /// Owner -> every data shard: a stream's new HLS playlist and segment, or its removal.
    Hls(crate::hls::HlsMsg),
}

/// A publisher accepted on one shard and handed to the stream's owner, which continues the
/// same RTMP session on the same socket.
pub struct PublisherHandOff {
    pub fd: OwnedFd,
    /// Carries everything already read from the socket (decoded events not yet polled too).
    pub session: ServerSession,
    pub app: String,
    pub room: String,
    pub peer: Option<SocketAddr>,
    /// tcUrl + "/" + name, for stats.
    pub url: String,
}

/// A player (RTMP or FLV viewer) whose protocol set-up is done, offered by the shard that
/// accepted it to the stream's owner: while the owner serves few players of the stream, one
/// core serves the whole stream (no mirror, no per-packet message between shards).
pub struct PlayerHandOff {
    pub fd: OwnedFd,
    /// `app/room`.
    pub key: String,
    /// What the player asked for, for stats.
    pub url: String,
    pub peer: Option<SocketAddr>,
    pub kind: PlayerKind,
}

/// The protocol state a player continues with on the owner.
pub enum PlayerKind {
    /// The RTMP session after `play` (its replies already written).
    Rtmp(Box<ServerSession>),
    /// An HTTP-FLV or WebSocket-FLV viewer after its response head, with the bytes it sent
    /// after its request.
    Flv {
        framing: crate::flv::live::BodyFraming,
        rest: bytes::Bytes,
    },
}
