//! One RTMP connection's life: handshake and command phase on the accepting shard, then either
//! a publisher (moved to the stream's owner shard) or a player (served where it was accepted).

use std::cell::RefCell;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_lite::future;
use futures_lite::{AsyncReadExt, AsyncWriteExt};
use glommio::net::TcpStream;
use glommio::timer::Timer;

use crate::engine::{
    nudge, ready_or_direct, wait_for_room, Counters, DirectWire, Item, PlayerKind, Protocol,
    PublisherHandOff, QueueRef, ReplyQueue, Role, ShardMsg,
};
use crate::media::{Packet, PacketKind};
use crate::rtmp::server_session::{ServerEvent, ServerSession};

use super::player::{MergePacer, Offer, BATCH_CAPACITY, MAX_BATCH_FRAMES};
use super::ShardState;

/// Handshake plus everything up to publish/play must finish within this time (livego had no
/// limit there, which let idle sockets pile up).
const COMMAND_PHASE_TIMEOUT: Duration = Duration::from_secs(15);
const READ_BUF: usize = 64 * 1024;

type ConnResult<T> = Result<T, String>;

/// Who a session is, for logs and stats: the peer address and the URL it used (livego's
/// `url` field: tcUrl + "/" + stream name).
struct Who {
    peer: Option<SocketAddr>,
    url: String,
}

enum Next {
    Closed,
    Publish {
        app: String,
        room: String,
        url: String,
    },
    Play {
        key: String,
        url: String,
    },
}

pub async fn handle_connection(st: Rc<ShardState>, mut stream: TcpStream) {
    let peer = stream.peer_addr().ok();
    let _ = stream.set_nodelay(true);
    let mut session = ServerSession::new(st.rtmp_config());
    let deadline = async {
        Timer::new(COMMAND_PHASE_TIMEOUT).await;
        Err("handshake/command phase timed out".to_string())
    };
    let next = future::or(command_phase(&st, &mut stream, &mut session), deadline).await;
    let result = match next {
        Ok(Next::Closed) => Ok(()),
        Ok(Next::Publish { app, room, url }) => {
            let who = Who { peer, url };
            start_publish(st, stream, session, app, room, who).await
        }
        Ok(Next::Play { key, url }) => play(st, stream, session, key, url, peer).await,
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::info!(peer = ?peer, "rtmp connection closed: {e}");
    }
}

async fn flush(stream: &mut TcpStream, session: &mut ServerSession) -> ConnResult<()> {
    while let Some(out) = session.take_output() {
        stream.write_all(&out).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::TimedOut {
                "write timeout: peer not reading".to_string()
            } else {
                format!("write: {e}")
            }
        })?;
    }
    Ok(())
}

async fn command_phase(
    st: &Rc<ShardState>,
    stream: &mut TcpStream,
    session: &mut ServerSession,
) -> ConnResult<Next> {
    let mut buf = vec![0u8; READ_BUF];
    let mut app: Option<String> = None;
    let mut tc_url = String::new();
    loop {
        while let Some(ev) = session.poll_event() {
            match ev {
                ServerEvent::Connect {
                    app: name,
                    tc_url: t,
                    ..
                } => {
                    tc_url = t.unwrap_or_default();
                    if st.app_is_live(&name) {
                        session.accept_connect().map_err(|e| e.to_string())?;
                        app = Some(name);
                    } else {
                        let _ = session
                            .reject_connect(&format!("application name={name} is not configured"));
                        flush(stream, session).await?;
                        return Err(format!("application name={name} is not configured"));
                    }
                }
                ServerEvent::Publish { name, .. } => {
                    let Some(app) = app.clone() else {
                        return Err("publish before connect".into());
                    };
                    match st.resolve_publish(&name).await {
                        Ok(room) => {
                            flush(stream, session).await?;
                            let url = format!("{}/{name}", tc_url.trim_end_matches('/'));
                            return Ok(Next::Publish { app, room, url });
                        }
                        Err(reason) => {
                            let _ = session.reject_publish("NetStream.Publish.BadName", &reason);
                            flush(stream, session).await?;
                            return Err(format!("publish refused: {reason}"));
                        }
                    }
                }
                ServerEvent::Play { name, .. } => {
                    let Some(app) = app.clone() else {
                        return Err("play before connect".into());
                    };
                    flush(stream, session).await?;
                    return Ok(Next::Play {
                        key: format!("{app}/{name}"),
                        url: format!("{}/{name}", tc_url.trim_end_matches('/')),
                    });
                }
                ServerEvent::Media(_) => return Err("media before publish".into()),
                ServerEvent::Unpublish { .. } | ServerEvent::CloseStream { .. } => {}
            }
        }
        flush(stream, session).await?;
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Ok(Next::Closed);
        }
        session.feed(&buf[..n]).map_err(|e| e.to_string())?;
    }
}

async fn start_publish(
    st: Rc<ShardState>,
    stream: TcpStream,
    session: ServerSession,
    app: String,
    room: String,
    who: Who,
) -> ConnResult<()> {
    let owner = st.hub.owner_of(&format!("{app}/{room}"));
    if owner == st.hub.shard() {
        return run_publisher(st, stream, session, app, room, who).await;
    }
    let fd = shards::detach(stream).map_err(|e| format!("hand-off: {e}"))?;
    let handoff = PublisherHandOff {
        fd,
        session,
        app,
        room,
        peer: who.peer,
        url: who.url,
    };
    st.hub
        .router()
        .send(owner, ShardMsg::HandOff(Box::new(handoff)))
        .await
        .map_err(|_| "hand-off: owner shard unreachable".to_string())
}

/// Continues a publisher handed over by another shard.
pub async fn resume_publisher(st: Rc<ShardState>, h: PublisherHandOff) {
    let stream = shards::attach(h.fd);
    let peer = h.peer;
    let who = Who { peer, url: h.url };
    if let Err(e) = run_publisher(st, stream, h.session, h.app, h.room, who).await {
        tracing::info!(peer = ?peer, "rtmp publisher closed: {e}");
    }
}

async fn run_publisher(
    st: Rc<ShardState>,
    mut stream: TcpStream,
    mut session: ServerSession,
    app: String,
    room: String,
    who: Who,
) -> ConnResult<()> {
    let peer = who.peer;
    let (key, id) = st.hub.publish_begin(&app, &room, stream.as_raw_fd()).await;
    let guard =
        st.hub
            .sessions()
            .register(Role::Publisher, Protocol::Rtmp, key.clone(), who.url, peer);
    tracing::info!(stream = %key, peer = ?peer, shard = st.hub.shard(), "publish start");
    if let Err(e) = session.accept_publish() {
        st.hub.publish_end(&key, id).await;
        return Err(e.to_string());
    }
    let _ = stream.set_read_timeout(st.read_timeout);
    // The replies (acks, pongs) are written between reads: a publisher that does not read them
    // would otherwise block the flush forever, where no read timeout can fire, and hold the
    // stream.
    let _ = stream.set_write_timeout(Some(st.write_timeout));
    let result = publish_loop(&st, &mut stream, &mut session, &key, id, &guard.counters).await;
    st.hub.publish_end(&key, id).await;
    tracing::info!(stream = %key, peer = ?peer, "publish end");
    result
}

async fn publish_loop(
    st: &Rc<ShardState>,
    stream: &mut TcpStream,
    session: &mut ServerSession,
    key: &Arc<str>,
    id: u64,
    counters: &Counters,
) -> ConnResult<()> {
    let mut buf = vec![0u8; READ_BUF];
    let mut reader = PublisherReader::default();
    loop {
        while let Some(ev) = session.poll_event() {
            match ev {
                ServerEvent::Media(msg) => {
                    let Some(packet) =
                        Packet::from_rtmp_message(msg.type_id, msg.timestamp, msg.payload)
                    else {
                        continue;
                    };
                    if packet.kind != PacketKind::Meta {
                        counters.add_media(packet.is_video(), packet.payload.len());
                    }
                    if !st.hub.publish_packet(key, id, packet).await {
                        return Err("taken over by another publisher".into());
                    }
                }
                ServerEvent::Unpublish { .. } => return Ok(()),
                ServerEvent::Publish { .. } | ServerEvent::Play { .. } => {
                    return Err("second publish/play on a publishing connection".into())
                }
                ServerEvent::Connect { .. } | ServerEvent::CloseStream { .. } => {}
            }
        }
        flush(stream, session).await?;
        let n = match reader.read(st, stream, &mut buf).await {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err("read timeout: publisher idle".into())
            }
            Err(e) => return Err(format!("read: {e}")),
        };
        counters.add_wire(n);
        session.feed(&buf[..n]).map_err(|e| e.to_string())?;
    }
}

/// A publisher's reads: through glommio (one wake-up per arrival) while its shard is quiet, and
/// through the shard's [`shards::TickPoller`] (one wake-up per tick for all publishers) while the
/// shard is busy with ingest.
#[derive(Default)]
struct PublisherReader {
    registration: Option<shards::Registration>,
    /// The last read did not fill the buffer: the socket is empty until the next tick says
    /// otherwise.
    drained: bool,
}

impl PublisherReader {
    async fn read(
        &mut self,
        st: &ShardState,
        stream: &mut TcpStream,
        buf: &mut [u8],
    ) -> std::io::Result<usize> {
        let Some(poller) = st.ingest.as_ref() else {
            return stream.read(buf).await;
        };
        poller.note_read();
        if poller.batching() {
            if self.registration.is_none() {
                self.registration = Some(poller.register(stream.as_raw_fd(), st.read_timeout)?);
                self.drained = false;
            }
            if let Some(reg) = &self.registration {
                match reg.read(buf, self.drained).await? {
                    shards::TickRead::Data(n) => {
                        self.drained = n < buf.len();
                        return Ok(n);
                    }
                    shards::TickRead::Eof => return Ok(0),
                    shards::TickRead::Unbatched => {}
                }
            }
        }
        stream.read(buf).await
    }
}

pub(super) async fn play(
    st: Rc<ShardState>,
    stream: TcpStream,
    session: ServerSession,
    key: String,
    url: String,
    peer: Option<SocketAddr>,
) -> ConnResult<()> {
    // Served on the stream's owner shard while it has few of the stream's players (see
    // `player::offer_to_owner`); on the owner this returns at once.
    let kind = PlayerKind::Rtmp(Box::new(session));
    let (stream, session) = match super::player::offer_to_owner(&st, stream, &key, &url, peer, kind)
        .await?
    {
        Offer::Taken => return Ok(()),
        Offer::Here(stream, PlayerKind::Rtmp(session)) => (stream, *session),
        Offer::Here(..) => return Err("hand-off: an RTMP player came back as another kind".into()),
    };
    let (rd, mut p) = super::player::join(&st, stream, &key, DirectWire::Rtmp, url, peer).await?;
    let session = Rc::new(RefCell::new(session));
    let reader = glommio::spawn_local(player_reader(
        rd,
        session.clone(),
        p.queue.clone(),
        p.control.clone(),
    ));
    let result = player_writer(
        &st,
        &mut p.wr,
        &session,
        &p.queue,
        &p.control,
        &p.guard.counters,
    )
    .await;
    p.leave(&st, reader).await;
    result
}

/// Reads what a player sends (acks, pings, closeStream) and hands the session's replies to the
/// writer, which owns the socket's write side. Reads no more while the replies waiting pass
/// [`crate::engine::MAX_REPLY_BYTES`] (a peer that asks without reading what it is sent).
async fn player_reader(
    mut rd: shards::ReadHalf,
    session: Rc<RefCell<ServerSession>>,
    queue: QueueRef,
    control: Rc<RefCell<ReplyQueue>>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let stop = {
            let mut s = session.borrow_mut();
            if let Err(e) = s.feed(&buf[..n]) {
                tracing::info!("rtmp player protocol error: {e}");
                break;
            }
            let mut stop = false;
            while let Some(ev) = s.poll_event() {
                if matches!(
                    ev,
                    ServerEvent::CloseStream { .. } | ServerEvent::Unpublish { .. }
                ) {
                    stop = true;
                }
            }
            while let Some(out) = s.take_output() {
                control.borrow_mut().push(out);
            }
            stop
        };
        nudge(&queue);
        if stop || !wait_for_room(&control).await {
            break;
        }
    }
    queue
        .borrow_mut()
        .close(crate::engine::CloseReason::Disconnected);
}

async fn player_writer(
    st: &Rc<ShardState>,
    wr: &mut shards::WriteHalf,
    session: &Rc<RefCell<ServerSession>>,
    queue: &QueueRef,
    control: &Rc<RefCell<ReplyQueue>>,
    counters: &Counters,
) -> ConnResult<()> {
    let mut batch: VecDeque<Bytes> = VecDeque::with_capacity(BATCH_CAPACITY);
    let mut started = false;
    let mut waiting_since = Some(Instant::now());
    let mut pacer = MergePacer::new(st);
    loop {
        let had_items = !queue.borrow().is_empty() || !control.borrow().is_empty();
        // Frames may bypass the queue only once the player plays and everything taken so far
        // has been written (it has: a batch is sent whole before the next wait).
        let direct = started && waiting_since.is_none();
        let woke = ready_or_direct(queue, direct, || !control.borrow().is_empty());
        match waiting_since {
            Some(since) => {
                let left = st.play_wait_timeout.saturating_sub(since.elapsed());
                let timed_out = future::or(
                    async {
                        woke.await;
                        false
                    },
                    async {
                        Timer::new(left).await;
                        true
                    },
                )
                .await;
                if timed_out {
                    let _ = session.borrow_mut().reject_play(
                        "NetStream.Play.StreamNotFound",
                        "No such stream: nothing is published under this name.",
                    );
                    take_session_output(session, &mut batch);
                    let _ = wr.write_vectored_within(&mut batch, st.write_timeout).await;
                    return Err("no publisher within play_wait_timeout".into());
                }
            }
            None => woke.await,
        }
        pacer.before_batch(had_items).await;
        if let Some(reason) = queue.borrow().closed() {
            return Err(format!("player closed: {reason:?}"));
        }
        batch.extend(control.borrow_mut().take_all());
        for _ in 0..MAX_BATCH_FRAMES {
            let Some(item) = queue.borrow_mut().pop() else {
                break;
            };
            match item {
                Item::Live => {
                    let mut s = session.borrow_mut();
                    if started {
                        s.play_publish_notify();
                    } else {
                        s.accept_play().map_err(|e| e.to_string())?;
                        started = true;
                    }
                    drop(s);
                    waiting_since = None;
                    take_session_output(session, &mut batch);
                }
                Item::Unpublished => {
                    session.borrow_mut().play_unpublish_notify();
                    take_session_output(session, &mut batch);
                    waiting_since = Some(Instant::now());
                }
                Item::Unsent(rest) => batch.push_back(rest),
                Item::Frame(f) => {
                    if started {
                        let p = &f.packet;
                        if p.kind != PacketKind::Meta {
                            counters.add_media(p.is_video(), p.payload.len());
                        }
                        batch.push_back(f.rtmp().clone());
                    }
                }
            }
        }
        if batch.is_empty() {
            continue;
        }
        match wr.write_vectored_within(&mut batch, st.write_timeout).await {
            Ok(sent) => {
                counters.add_wire(sent);
                counters.dropped_packets.set(queue.borrow().dropped_packets);
                pacer.after_write().await;
            }
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                return Err("write timeout: player stuck".into())
            }
            Err(e) => return Err(format!("write: {e}")),
        }
        batch.clear();
    }
}

fn take_session_output(session: &Rc<RefCell<ServerSession>>, batch: &mut VecDeque<Bytes>) {
    let mut s = session.borrow_mut();
    while let Some(out) = s.take_output() {
        batch.push_back(out);
    }
}
