//! What every player connection has on its shard, whatever the protocol (RTMP, HTTP-FLV,
//! WebSocket-FLV): the socket split into a reader and a writer half, its queue in the hub, the
//! control replies its reader hands to its writer, and its stats session.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;

use glommio::net::TcpStream;

use crate::engine::{
    DirectWire, DirectWrite, PlayerHandOff, PlayerKind, PlayerQueue, PlayerTicket, Protocol,
    QueueLimits, QueueRef, ReplyQueue, Role, SessionGuard, ShardMsg,
};
use crate::flv::live::BodyFraming;

use super::ShardState;

/// Kernel send buffer of a player socket. Autotuning would let a slow player hide seconds of
/// media in the kernel (4 MB is 16 s at 2 Mbit/s), where the queue's GOP-aware dropping and
/// `write_timeout` cannot see it; this keeps the backlog in our queue while still allowing
/// ~30 Mbit/s at 100 ms RTT (Linux doubles the value).
const PLAYER_SNDBUF: libc::c_int = 192 * 1024;

/// Frames taken from a player's queue per vectored write; bounds the time one writer holds the
/// shard.
pub(super) const MAX_BATCH_FRAMES: usize = 512;
/// A batch's starting capacity: live flow needs a few entries and a GOP burst grows it once.
/// Sized for MAX_BATCH_FRAMES up front, every player carried 16 KiB of mostly idle iovec space.
pub(super) const BATCH_CAPACITY: usize = 16;

pub(super) struct PlayerConn {
    pub wr: shards::WriteHalf,
    pub queue: QueueRef,
    /// Replies produced while reading (RTMP acks/pongs, WebSocket pongs) for the writer to send.
    pub control: Rc<RefCell<ReplyQueue>>,
    pub guard: SessionGuard,
    ticket: PlayerTicket,
}

/// What became of a player offered to its stream's owner.
pub(super) enum Offer {
    /// The owner serves it now.
    Taken,
    /// Serve it here: the connection and its state, back.
    Here(TcpStream, PlayerKind),
}

/// Offers a player accepted on this shard to the owner of its stream (see
/// [`PlayerHandOff`]); the owner takes it while it serves fewer than `shards.hot_players`
/// players of the stream. Players of a stream this shard owns, and every player when moving
/// is off, stay here without asking.
pub(super) async fn offer_to_owner(
    st: &ShardState,
    stream: TcpStream,
    key: &str,
    url: &str,
    peer: Option<SocketAddr>,
    kind: PlayerKind,
) -> Result<Offer, String> {
    let owner = st.hub.owner_of(key);
    if owner == st.hub.shard() || st.cfg.shards.hot_players == 0 {
        return Ok(Offer::Here(stream, kind));
    }
    let fd = shards::detach(stream).map_err(|e| format!("hand-off: {e}"))?;
    let offer = PlayerHandOff {
        fd,
        key: key.to_string(),
        url: url.to_string(),
        peer,
        kind,
    };
    match st
        .hub
        .router()
        .request(owner, ShardMsg::PlayerHandOff(Box::new(offer)))
        .await
    {
        Ok(ShardMsg::PlayerHandOffReply(None)) => Ok(Offer::Taken),
        Ok(ShardMsg::PlayerHandOffReply(Some(back))) => {
            Ok(Offer::Here(shards::attach(back.fd), back.kind))
        }
        Ok(_) => Err("hand-off: unexpected reply".into()),
        // The owner is gone (shutting down): the connection went with the message.
        Err(e) => Err(format!("hand-off: owner shard unreachable: {e:?}")),
    }
}

/// The owner's side of [`offer_to_owner`]: takes the player (and starts serving it) while it
/// serves fewer than `shards.hot_players` players of the stream, else hands it back.
pub(super) fn on_player_offer(
    st: &Rc<ShardState>,
    offer: Box<PlayerHandOff>,
) -> Option<Box<PlayerHandOff>> {
    if st.hub.local_players(&offer.key) >= st.cfg.shards.hot_players {
        return Some(offer);
    }
    let PlayerHandOff {
        fd,
        key,
        url,
        peer,
        kind,
    } = *offer;
    let stream = shards::attach(fd);
    match kind {
        PlayerKind::Rtmp(session) => {
            let st = st.clone();
            glommio::spawn_local(async move {
                if let Err(e) = super::rtmp::play(st, stream, *session, key, url, peer).await {
                    tracing::info!(peer = ?peer, "rtmp connection closed: {e}");
                }
            })
            .detach();
        }
        PlayerKind::Flv { framing, rest } => {
            let st = st.clone();
            glommio::spawn_local(async move {
                if let Err(e) =
                    super::httpflv::viewer(st, stream, key, url, peer, framing, rest).await
                {
                    tracing::info!(peer = ?peer, "http-flv viewer closed: {e}");
                }
            })
            .detach();
        }
    }
    None
}

/// Joins `key` on this shard and registers the session; returns the read half for the
/// protocol's reader task.
pub(super) async fn join(
    st: &ShardState,
    stream: TcpStream,
    key: &str,
    wire: DirectWire,
    url: String,
    peer: Option<SocketAddr>,
) -> Result<(shards::ReadHalf, PlayerConn), String> {
    let protocol = match wire {
        DirectWire::Rtmp => Protocol::Rtmp,
        DirectWire::Flv(BodyFraming::WebSocket) => Protocol::WsFlv,
        DirectWire::Flv(_) => Protocol::HttpFlv,
    };
    set_send_buffer(&stream, PLAYER_SNDBUF);
    // The command phase ran with TCP_NODELAY (request/response); streaming follows the config.
    let _ = stream.set_nodelay(st.cfg.play_nodelay);
    let (rd, wr) = shards::split(stream).map_err(|e| format!("split: {e}"))?;
    let queue: QueueRef = Rc::new(RefCell::new(PlayerQueue::new(QueueLimits::default())));
    let ticket = st.hub.play_join(key, queue.clone()).await;
    let guard = st
        .hub
        .sessions()
        .register(Role::Player, protocol, ticket.key.clone(), url, peer);
    tracing::info!(stream = %key, shard = st.hub.shard(), protocol = protocol.name(), "play start");
    // Merged writes wait for the shard's tick, so frames must queue; otherwise an idle writer
    // lets the feed send them itself.
    if st.play_merge.is_none() {
        queue.borrow_mut().enable_direct(DirectWrite {
            fd: wr.as_raw_fd(),
            counters: guard.counters.clone(),
            wire,
        });
    }
    let conn = PlayerConn {
        wr,
        queue,
        control: Rc::new(RefCell::new(ReplyQueue::default())),
        guard,
        ticket,
    };
    Ok((rd, conn))
}

impl PlayerConn {
    /// After the writer returned: records the drops, leaves the hub, closes the socket (which
    /// ends the reader) and waits for the reader task.
    pub async fn leave(self, st: &ShardState, reader: impl Future) {
        self.guard
            .counters
            .dropped_packets
            .set(self.queue.borrow().dropped_packets);
        st.hub.play_leave(&self.ticket).await;
        self.wr.shutdown();
        // A reader waiting for the writer to take its replies is not woken by the shutdown.
        self.control.borrow_mut().close();
        reader.await;
        tracing::info!(stream = %self.ticket.key, "play end");
    }
}

/// `play_merge_ms` pacing of one player's writes: at most about one write per shard tick, each
/// taking everything queued since the last. In steady flow the writer is polled once per tick
/// (it waits for the tick right after writing and finds packets queued), not once per packet
/// and again per tick.
pub(super) struct MergePacer {
    tick: Option<Rc<shards::SharedTick>>,
    /// The writer already waited for a tick since its last write.
    ticked: bool,
}

impl MergePacer {
    pub fn new(st: &ShardState) -> Self {
        Self {
            tick: st.play_merge.clone(),
            ticked: false,
        }
    }

    /// Before taking a batch. `had_items`: the queue held something before the writer waited on
    /// it, so a tick passed with packets waiting and this batch can go at once.
    pub async fn before_batch(&mut self, had_items: bool) {
        if let Some(tick) = &self.tick {
            if !(self.ticked && had_items) {
                tick.next().await;
            }
        }
        self.ticked = false;
    }

    /// After a write: let packets gather until the next tick.
    pub async fn after_write(&mut self) {
        if let Some(tick) = &self.tick {
            tick.next().await;
            self.ticked = true;
        }
    }
}

fn set_send_buffer(stream: &TcpStream, bytes: libc::c_int) {
    // SAFETY: setsockopt on a descriptor we own, with a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&bytes as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        tracing::debug!("SO_SNDBUF: {}", std::io::Error::last_os_error());
    }
}
