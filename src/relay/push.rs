//! Pushes: a local stream published to a remote server. An API push reads the stream as a local
//! player (play_join on the owner shard); a static push is fed by a `StreamSink` of the publish
//! session. Either way the input is a bounded `PlayerQueue`, so the stream never waits for us.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_lite::future;
use glommio::timer::Timer;

use super::client::{self, is_refusal};
use super::resync::{Backoff, Resync};
use super::url::RtmpUrl;
use super::{RelaySpec, StatusHandle, Stop};
use crate::engine::{
    nudge, ready, wait_for_room, CloseReason, Frame, Hub, Item, PlayerQueue, PlayerTicket,
    Protocol, QueueLimits, QueueRef, ReplyQueue, Role, Sessions, StreamSink,
};
use crate::media::{Packet, PacketKind};
use crate::rtmp::chunk::Message;
use crate::rtmp::client_session::{ClientEvent, ClientMode, ClientSession};

const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// After the local stream ended, how long the remote may take to close its side once ours is
/// shut (so the last bytes are not cut by a reset).
const CLOSE_LINGER: Duration = Duration::from_secs(2);
const MAX_BATCH: usize = 512;
/// Where a push's queue comes from, and how a closed (too slow) queue is replaced.
enum Input {
    /// A player of the local stream on this shard.
    Player {
        hub: Rc<Hub>,
        key: String,
        queue: QueueRef,
        ticket: Option<PlayerTicket>,
    },
    /// The queue a static-push sink fills; the sink reads it through the shared slot.
    Sink {
        slot: Rc<RefCell<QueueRef>>,
        sessions: Rc<Sessions>,
        /// Set by the sink when the publish session ended: the end must not be lost with a
        /// queue that was closed (too slow) when it came.
        ended: Rc<Cell<bool>>,
    },
}

fn new_queue() -> QueueRef {
    Rc::new(RefCell::new(PlayerQueue::new(QueueLimits::default())))
}

impl Input {
    fn queue(&self) -> QueueRef {
        match self {
            Input::Player { queue, .. } => queue.clone(),
            Input::Sink { slot, .. } => slot.borrow().clone(),
        }
    }

    fn ends_with_stream(&self) -> bool {
        matches!(self, Input::Sink { .. })
    }

    async fn join(&mut self) {
        if let Input::Player {
            hub,
            key,
            queue,
            ticket,
        } = self
        {
            if ticket.is_none() {
                *ticket = Some(hub.play_join(key, queue.clone()).await);
            }
        }
    }

    async fn leave(&mut self) {
        if let Input::Player { hub, ticket, .. } = self {
            if let Some(t) = ticket.take() {
                hub.play_leave(&t).await;
            }
        }
    }

    /// The queue was closed for being too slow: start a fresh one. A player rejoins (the feed
    /// replays its cache); a sink's queue continues live.
    async fn renew(&mut self) {
        match self {
            Input::Player { .. } => {
                self.leave().await;
                if let Input::Player { queue, .. } = self {
                    *queue = new_queue();
                }
                self.join().await;
            }
            Input::Sink { slot, ended, .. } => {
                let q = new_queue();
                let state = if ended.get() {
                    Item::Unpublished
                } else {
                    Item::Live
                };
                q.borrow_mut().push_event(state);
                *slot.borrow_mut() = q;
            }
        }
    }
}

/// What the push knows of the local stream while it is not sending.
struct Local {
    live: bool,
    /// A static push's publish session ended: the task is over.
    ended: bool,
    resync: Resync,
}

impl Local {
    fn apply(&mut self, item: Item, input: &Input) {
        match item {
            Item::Live => self.live = true,
            Item::Unpublished => {
                self.live = false;
                self.resync.reset();
                self.ended = input.ends_with_stream();
            }
            Item::Frame(f) => {
                self.resync.on_packet(&f.packet);
            }
            // A relay's queue never has direct writes enabled.
            Item::Unsent(_) => {}
        }
    }

    /// Takes what is queued, or waits up to `limit` for something.
    async fn drain(&mut self, input: &mut Input, limit: Option<Duration>) {
        let q = input.queue();
        let woke = async {
            ready(&q, || false).await;
            true
        };
        let woke = match limit {
            Some(d) => {
                future::or(woke, async {
                    Timer::new(d).await;
                    false
                })
                .await
            }
            None => woke.await,
        };
        if !woke {
            return;
        }
        if q.borrow().closed().is_some() {
            input.renew().await;
            return;
        }
        while let Some(item) = q.borrow_mut().pop() {
            self.apply(item, input);
        }
    }

    /// Follows the stream (without sending) for `d`.
    async fn idle_for(&mut self, input: &mut Input, d: Duration) {
        let until = std::time::Instant::now() + d;
        while !self.ended {
            let left = until.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return;
            }
            self.drain(input, Some(left)).await;
        }
    }
}

pub async fn run_api(hub: Rc<Hub>, spec: RelaySpec, stop: Rc<Stop>, status: StatusHandle) {
    let mut input = Input::Player {
        hub,
        key: spec.stream_key(),
        queue: new_queue(),
        ticket: None,
    };
    let key: Arc<str> = Arc::from(spec.stream_key());
    future::or(push_loop(&mut input, &key, &spec.url, &status), stop.wait()).await;
    input.leave().await;
    tracing::info!(relay = %spec.session_key(), "relay stopped");
}

async fn push_loop(input: &mut Input, key: &Arc<str>, url: &RtmpUrl, status: &StatusHandle) {
    input.join().await;
    let mut local = Local {
        live: false,
        ended: false,
        resync: Resync::new(),
    };
    let mut backoff = Backoff::default();
    loop {
        if !local.live {
            status.set_state("waiting for the stream");
        }
        while !local.live && !local.ended {
            local.drain(input, None).await;
        }
        if local.ended {
            return;
        }
        status.set_state("connecting");
        let err = match client::open(url, ClientMode::Publish).await {
            Err(e) => e,
            Ok(opened) => {
                status.connected("publishing");
                match pump(opened, input, key, url, &mut local).await {
                    Ok(()) => {
                        // The local stream ended: a clean stop, nothing to back off from.
                        backoff.reset();
                        continue;
                    }
                    Err(e) => e,
                }
            }
        };
        let delay = backoff.next_delay();
        tracing::info!(stream = %key, "push to {url}: {err}; retry in {delay:?}");
        status.set_state(format!("retrying in {}s: {err}", delay.as_secs()));
        local.idle_for(input, delay).await;
        if local.ended {
            return;
        }
    }
}

/// Sends the stream on an open connection until the local stream ends (`Ok`) or the
/// connection fails (`Err`).
async fn pump(
    opened: client::Opened,
    input: &mut Input,
    key: &Arc<str>,
    url: &RtmpUrl,
    local: &mut Local,
) -> Result<(), String> {
    let sessions = match input {
        Input::Player { hub, .. } => hub.sessions().clone(),
        Input::Sink { sessions, .. } => sessions.clone(),
    };
    let guard = sessions.register(
        Role::Player,
        Protocol::Relay,
        key.clone(),
        url.to_string(),
        Some(opened.peer),
    );
    let (rd, mut wr) = shards::split(opened.stream).map_err(|e| format!("split: {e}"))?;
    let session = Rc::new(RefCell::new(opened.session));
    let gone: Rc<RefCell<Option<String>>> = Rc::new(RefCell::new(None));
    let control: Rc<RefCell<ReplyQueue>> = Rc::new(RefCell::new(ReplyQueue::default()));
    let queue_for_reader: Rc<RefCell<QueueRef>> = Rc::new(RefCell::new(input.queue()));
    let reader = glommio::spawn_local(remote_reader(
        rd,
        session.clone(),
        control.clone(),
        gone.clone(),
        queue_for_reader.clone(),
    ));

    let mut batch: VecDeque<Bytes> = VecDeque::new();
    let result: Result<(), String> = async {
        {
            let mut s = session.borrow_mut();
            for p in local.resync.on_connect() {
                s.send_media(&message_of(&p)).map_err(|e| e.to_string())?;
            }
        }
        loop {
            let q = input.queue();
            *queue_for_reader.borrow_mut() = q.clone();
            let mut finished = false;
            ready(&q, || {
                !control.borrow().is_empty() || gone.borrow().is_some()
            })
            .await;
            if let Some(e) = gone.borrow_mut().take() {
                return Err(e);
            }
            if q.borrow().closed() == Some(CloseReason::TooSlow) {
                input.renew().await;
                return Err("remote too slow: the queue overflowed".into());
            }
            batch.extend(control.borrow_mut().take_all());
            for _ in 0..MAX_BATCH {
                let Some(item) = q.borrow_mut().pop() else {
                    break;
                };
                match item {
                    Item::Frame(f) => {
                        if local.resync.on_packet(&f.packet) {
                            send(&session, &f.packet)?;
                            if f.packet.kind != PacketKind::Meta {
                                guard
                                    .counters
                                    .add_media(f.packet.is_video(), f.packet.payload.len());
                            }
                        }
                    }
                    Item::Live => local.live = true,
                    Item::Unpublished => {
                        local.apply(Item::Unpublished, input);
                        finished = true;
                        break;
                    }
                    // A relay's queue never has direct writes enabled.
                    Item::Unsent(_) => {}
                }
            }
            while let Some(out) = session.borrow_mut().take_output() {
                batch.push_back(out);
            }
            if !batch.is_empty() {
                let n = write(&mut wr, &mut batch).await?;
                guard.counters.add_wire(n);
                guard
                    .counters
                    .dropped_packets
                    .set(q.borrow().dropped_packets);
            }
            if finished {
                return Ok(());
            }
        }
    }
    .await;
    // Nothing more is written: a reader waiting for room must not wait for it.
    control.borrow_mut().close();

    let mut reader = reader;
    if result.is_ok() {
        // Half-close so the remote sees the end after our last byte, then give it a moment to
        // close its side (closing with unread input would reset the connection).
        // SAFETY: shutdown(2) on the write half's own descriptor, which is still open.
        unsafe { libc::shutdown(wr.as_raw_fd(), libc::SHUT_WR) };
        let closed = future::or(
            async {
                (&mut reader).await;
                true
            },
            async {
                Timer::new(CLOSE_LINGER).await;
                false
            },
        )
        .await;
        if closed {
            return result;
        }
    }
    wr.shutdown();
    reader.await;
    drop(guard);
    result
}

async fn write(wr: &mut shards::WriteHalf, batch: &mut VecDeque<Bytes>) -> Result<usize, String> {
    match wr.write_vectored_within(batch, WRITE_TIMEOUT).await {
        Ok(n) => Ok(n),
        Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
            Err("write timeout: remote stuck".into())
        }
        Err(e) => Err(format!("write: {e}")),
    }
}

fn message_of(p: &Packet) -> Message {
    Message {
        type_id: p.type_id(),
        timestamp: p.timestamp,
        stream_id: 1,
        payload: p.payload.clone(),
    }
}

fn send(session: &Rc<RefCell<ClientSession>>, p: &Packet) -> Result<(), String> {
    session
        .borrow_mut()
        .send_media(&message_of(p))
        .map_err(|e| e.to_string())
}

/// Reads what the remote sends (acks, pings, status) into the session; the writer sends the
/// replies. Ends on EOF, error or a refusal, leaving the reason in `gone`. Reads no more while
/// the replies waiting pass [`MAX_REPLY_BYTES`](crate::engine::MAX_REPLY_BYTES) (a remote that pings without reading).
async fn remote_reader(
    mut rd: shards::ReadHalf,
    session: Rc<RefCell<ClientSession>>,
    control: Rc<RefCell<ReplyQueue>>,
    gone: Rc<RefCell<Option<String>>>,
    queue: Rc<RefCell<QueueRef>>,
) {
    let mut buf = vec![0u8; 4096];
    let reason = loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) => break "remote closed the connection".to_string(),
            Err(e) => break format!("read: {e}"),
            Ok(n) => n,
        };
        let refused = {
            let mut s = session.borrow_mut();
            if let Err(e) = s.feed(&buf[..n]) {
                break e.to_string();
            }
            let mut refused = None;
            while let Some(ev) = s.poll_event() {
                match ev {
                    ClientEvent::Status(i) if is_refusal(&i.code) => {
                        refused = Some(format!("{} {}", i.code, i.description))
                    }
                    ClientEvent::Error(i) => {
                        refused = Some(format!("{} {}", i.code, i.description))
                    }
                    _ => {}
                }
            }
            while let Some(out) = s.take_output() {
                control.borrow_mut().push(out);
            }
            refused
        };
        nudge(&queue.borrow());
        if let Some(r) = refused {
            break r;
        }
        if !wait_for_room(&control).await {
            break "push ended".to_string();
        }
    };
    *gone.borrow_mut() = Some(reason);
    nudge(&queue.borrow());
}

/// The sink side of a static push: puts every packet of the publish session in the push
/// task's queue (never blocks) and ends the task with the session.
struct StaticPushSink {
    slot: Rc<RefCell<QueueRef>>,
    ended: Rc<Cell<bool>>,
}

impl StreamSink for StaticPushSink {
    fn on_packet(&mut self, packet: &Packet) {
        let q = self.slot.borrow().clone();
        q.borrow_mut()
            .push_frame(&Rc::new(Frame::new(packet.clone())));
    }

    fn on_end(&mut self) {
        // A queue closed for being too slow drops this event; the task renews its queue after
        // such a close, and the flag makes the new one start with the end.
        self.ended.set(true);
        let q = self.slot.borrow().clone();
        q.borrow_mut().push_event(Item::Unpublished);
    }
}

/// Starts a static push of the publish session `key` to `url`; returns the sink that feeds it.
pub fn static_push(
    key: &Arc<str>,
    url: RtmpUrl,
    status: StatusHandle,
    sessions: Rc<Sessions>,
) -> Box<dyn StreamSink> {
    let q = new_queue();
    q.borrow_mut().push_event(Item::Live);
    let slot = Rc::new(RefCell::new(q));
    let ended = Rc::new(Cell::new(false));
    let mut input = Input::Sink {
        slot: slot.clone(),
        sessions,
        ended: ended.clone(),
    };
    let key = key.clone();
    tracing::info!(stream = %key, "static push to {url}");
    glommio::spawn_local(async move {
        push_loop(&mut input, &key, &url, &status).await;
        tracing::info!(stream = %key, "static push to {url} ended");
    })
    .detach();
    Box::new(StaticPushSink { slot, ended })
}
