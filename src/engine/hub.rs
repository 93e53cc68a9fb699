use std::cell::RefCell;
use std::collections::HashMap;
use std::os::fd::RawFd;
use std::rc::Rc;
use std::sync::Arc;

use shards::Router;

use crate::media::{GopLimits, Packet, PacketKind, TimestampNormaliser};

use super::feed::Feed;
use super::messages::ShardMsg;
use super::queue::QueueRef;
use super::sessions::Sessions;
use super::sink::{PublishInfo, SinkFactory, StreamSink};

/// Engine settings every shard shares.
#[derive(Clone, Copy, Debug)]
pub struct EngineConfig {
    pub gop: GopLimits,
}

/// The streams of one shard. Single-threaded: only this shard's tasks touch it, so it needs no
/// locks; other shards talk to it through router messages.
pub struct Hub {
    shard: usize,
    nr_shards: usize,
    router: Router<ShardMsg>,
    cfg: EngineConfig,
    inner: RefCell<Inner>,
    sessions: Rc<Sessions>,
    sink_factories: RefCell<Vec<SinkFactory>>,
}

#[derive(Default)]
struct Inner {
    /// Streams this shard owns (`shard_for(key) == shard`).
    streams: HashMap<Arc<str>, Stream>,
    /// Streams owned elsewhere that have players here.
    mirrors: HashMap<Arc<str>, Mirror>,
    /// Subscriptions (stream, shard) whose snapshot did not fit the shard's channel yet and
    /// are being retried; an Unsubscribe removes its entry, which cancels the retry.
    pending_subscribes: Vec<(Arc<str>, usize)>,
    next_id: u64,
}

struct Stream {
    feed: Feed,
    publisher: Option<PublisherSlot>,
    /// Shards with players of this stream; each gets every packet once.
    subscribers: Vec<usize>,
    timestamps: TimestampNormaliser,
    /// Sinks of the current publish session (HLS, recording, static push).
    sinks: Vec<Box<dyn StreamSink>>,
}

struct PublisherSlot {
    id: u64,
    /// Kept to kick the publisher on takeover (shutdown wakes its read with EOF).
    fd: RawFd,
}

struct Mirror {
    feed: Feed,
    /// Packets from the owner are ignored until the snapshot of this subscription arrives
    /// (stragglers of an earlier subscription may still be in flight).
    synced: bool,
}

/// Where a player's feed lives, remembered to leave it again.
pub struct PlayerTicket {
    pub key: Arc<str>,
    pub id: u64,
}

impl Hub {
    pub fn new(
        shard: usize,
        nr_shards: usize,
        router: Router<ShardMsg>,
        cfg: EngineConfig,
    ) -> Rc<Hub> {
        Rc::new(Hub {
            shard,
            nr_shards,
            router,
            cfg,
            inner: RefCell::new(Inner::default()),
            sessions: Sessions::new(shard),
            sink_factories: RefCell::new(Vec::new()),
        })
    }

    /// The sessions (publishers, players, relays) of this shard, for stats.
    pub fn sessions(&self) -> &Rc<Sessions> {
        &self.sessions
    }

    /// Adds a maker of owner-side sinks (recording, HLS, static push); each publish session
    /// gets the sinks of every factory.
    pub fn add_sink_factory(&self, factory: SinkFactory) {
        self.sink_factories.borrow_mut().push(factory);
    }

    pub fn shard(&self) -> usize {
        self.shard
    }

    pub fn owner_of(&self, key: &str) -> usize {
        shards::shard_for(key, self.nr_shards)
    }

    pub fn router(&self) -> &Router<ShardMsg> {
        &self.router
    }

    fn next_id(&self) -> u64 {
        let mut inner = self.inner.borrow_mut();
        inner.next_id += 1;
        // Unique across shards without coordination.
        (inner.next_id << 8) | self.shard as u64
    }

    fn new_stream(&self) -> Stream {
        Stream {
            feed: Feed::new(self.cfg.gop),
            publisher: None,
            subscribers: Vec::new(),
            timestamps: TimestampNormaliser::new(),
            sinks: Vec::new(),
        }
    }

    /// Registers a publisher on a stream this shard owns. A publisher already there is kicked
    /// (livego's takeover semantics); players stay and continue on the new timeline.
    pub async fn publish_begin(&self, app: &str, room: &str, fd: RawFd) -> (Arc<str>, u64) {
        let id = self.next_id();
        let key = format!("{app}/{room}");
        let key = key.as_str();
        let (key, notify) = {
            let mut inner = self.inner.borrow_mut();
            let key: Arc<str> = match inner.streams.get_key_value(key) {
                Some((k, _)) => k.clone(),
                None => Arc::from(key),
            };
            let fresh = self.new_stream();
            let stream = inner.streams.entry(key.clone()).or_insert(fresh);
            if let Some(old) = stream.publisher.take() {
                tracing::info!(stream = %key, "publisher taken over by a new connection");
                // SAFETY: the old publisher task still owns this descriptor: a publisher task
                // leaves the hub (publish_end) before its socket is dropped, and a kicked one's
                // slot is replaced right here, so the fd cannot have been closed or reused.
                // shutdown only makes that task's pending read return EOF.
                unsafe { libc::shutdown(old.fd, libc::SHUT_RDWR) };
            }
            stream.publisher = Some(PublisherSlot { id, fd });
            stream.timestamps.new_session();
            for mut sink in stream.sinks.drain(..) {
                sink.on_end();
            }
            let info = PublishInfo {
                key: key.clone(),
                app: app.to_string(),
                room: room.to_string(),
            };
            for factory in self.sink_factories.borrow().iter() {
                stream.sinks.extend(factory(&info));
            }
            let notify = if stream.feed.is_live() {
                Vec::new()
            } else {
                stream.feed.set_live();
                stream.subscribers.clone()
            };
            (key, notify)
        };
        for to in notify {
            let _ = self
                .router
                .send(to, ShardMsg::Live { key: key.clone() })
                .await;
        }
        (key, id)
    }

    /// Fans a packet of the current publisher out to local players and subscribed shards.
    /// Returns false when `id` is no longer the stream's publisher (it was taken over).
    pub async fn publish_packet(&self, key: &Arc<str>, id: u64, mut packet: Packet) -> bool {
        let mut blocked: Vec<(usize, ShardMsg)> = Vec::new();
        {
            let mut inner = self.inner.borrow_mut();
            let Some(stream) = inner.streams.get_mut(key) else {
                return false;
            };
            if stream.publisher.as_ref().map(|p| p.id) != Some(id) {
                return false;
            }
            packet.timestamp = if packet.kind == PacketKind::Meta {
                stream.timestamps.current()
            } else {
                stream.timestamps.normalise(packet.timestamp)
            };
            for sink in &mut stream.sinks {
                sink.on_packet(&packet);
            }
            for &to in &stream.subscribers {
                let msg = ShardMsg::Packet {
                    key: key.clone(),
                    packet: packet.clone(),
                };
                if let Err(msg) = self.router.try_send(to, msg) {
                    blocked.push((to, msg));
                }
            }
            stream.feed.push(packet);
        }
        // A full channel means that shard is saturated: backpressure falls on this publisher
        // only, and the packet is not lost.
        for (to, msg) in blocked {
            let _ = self.router.send(to, msg).await;
        }
        true
    }

    pub async fn publish_end(&self, key: &Arc<str>, id: u64) {
        let notify = {
            let mut inner = self.inner.borrow_mut();
            let Some(stream) = inner.streams.get_mut(key) else {
                return;
            };
            if stream.publisher.as_ref().map(|p| p.id) != Some(id) {
                return;
            }
            stream.publisher = None;
            for mut sink in stream.sinks.drain(..) {
                sink.on_end();
            }
            stream.feed.set_unpublished();
            let notify = stream.subscribers.clone();
            if notify.is_empty() && stream.feed.player_count() == 0 {
                inner.streams.remove(key);
            }
            notify
        };
        for to in notify {
            let _ = self
                .router
                .send(to, ShardMsg::Unpublished { key: key.clone() })
                .await;
        }
    }

    /// Adds a player of `key` on this shard. It is served from the local feed: the stream
    /// itself when this shard owns it, otherwise a mirror subscribed to the owner.
    pub async fn play_join(&self, key: &str, queue: QueueRef) -> PlayerTicket {
        let id = self.next_id();
        let owner = self.owner_of(key);
        let (key, subscribe) = {
            let mut inner = self.inner.borrow_mut();
            if owner == self.shard {
                let key: Arc<str> = match inner.streams.get_key_value(key) {
                    Some((k, _)) => k.clone(),
                    None => Arc::from(key),
                };
                let fresh = self.new_stream();
                let stream = inner.streams.entry(key.clone()).or_insert(fresh);
                stream.feed.add_player(id, queue);
                (key, false)
            } else {
                let (key, new) = match inner.mirrors.get_key_value(key) {
                    Some((k, _)) => (k.clone(), false),
                    None => (Arc::from(key), true),
                };
                let gop = self.cfg.gop;
                let mirror = inner.mirrors.entry(key.clone()).or_insert_with(|| Mirror {
                    feed: Feed::new(gop),
                    synced: false,
                });
                mirror.feed.add_player(id, queue);
                (key, new)
            }
        };
        if subscribe {
            let _ = self
                .router
                .send(owner, ShardMsg::Subscribe { key: key.clone() })
                .await;
        }
        PlayerTicket { key, id }
    }

    /// How many players of `key` this shard serves (from the stream itself or a mirror).
    pub fn local_players(&self, key: &str) -> usize {
        let inner = self.inner.borrow();
        match inner.streams.get(key) {
            Some(s) => s.feed.player_count(),
            None => inner.mirrors.get(key).map_or(0, |m| m.feed.player_count()),
        }
    }

    pub async fn play_leave(&self, ticket: &PlayerTicket) {
        let owner = self.owner_of(&ticket.key);
        let unsubscribe = {
            let mut inner = self.inner.borrow_mut();
            if owner == self.shard {
                if let Some(stream) = inner.streams.get_mut(&ticket.key) {
                    let empty = stream.feed.remove_player(ticket.id);
                    if empty && stream.publisher.is_none() && stream.subscribers.is_empty() {
                        inner.streams.remove(&ticket.key);
                    }
                }
                false
            } else {
                let empty = inner
                    .mirrors
                    .get_mut(&ticket.key)
                    .is_some_and(|m| m.feed.remove_player(ticket.id));
                if empty {
                    inner.mirrors.remove(&ticket.key);
                }
                empty
            }
        };
        if unsubscribe {
            let _ = self
                .router
                .send(
                    owner,
                    ShardMsg::Unsubscribe {
                        key: ticket.key.clone(),
                    },
                )
                .await;
        }
    }

    /// Handles the stream messages of the router. Called synchronously by the router's
    /// receive loop, in arrival order, which keeps each owner->shard sequence intact.
    pub fn on_message(self: &Rc<Self>, from: usize, msg: ShardMsg) {
        match msg {
            ShardMsg::Subscribe { key } => self.on_subscribe(from, key),
            ShardMsg::Unsubscribe { key } => {
                let mut inner = self.inner.borrow_mut();
                inner
                    .pending_subscribes
                    .retain(|(k, shard)| !(*shard == from && *k == key));
                if let Some(stream) = inner.streams.get_mut(&key) {
                    stream.subscribers.retain(|&s| s != from);
                    if stream.subscribers.is_empty()
                        && stream.publisher.is_none()
                        && stream.feed.player_count() == 0
                    {
                        inner.streams.remove(&key);
                    }
                }
            }
            ShardMsg::Snapshot { key, live, packets } => {
                let mut inner = self.inner.borrow_mut();
                if let Some(m) = inner.mirrors.get_mut(&key) {
                    if !m.synced {
                        m.synced = true;
                        m.feed.sync_from_snapshot(live, packets);
                    }
                }
            }
            ShardMsg::Packet { key, packet } => {
                if let Some(m) = self.inner.borrow_mut().mirrors.get_mut(&key) {
                    if m.synced {
                        m.feed.push(packet);
                    }
                }
            }
            ShardMsg::Live { key } => {
                if let Some(m) = self.inner.borrow_mut().mirrors.get_mut(&key) {
                    if m.synced {
                        m.feed.set_live();
                    }
                }
            }
            ShardMsg::Unpublished { key } => {
                if let Some(m) = self.inner.borrow_mut().mirrors.get_mut(&key) {
                    if m.synced {
                        m.feed.set_unpublished();
                    }
                }
            }
            ShardMsg::KeyLookup { .. }
            | ShardMsg::KeyLookupReply(_)
            | ShardMsg::HandOff(_)
            | ShardMsg::PlayerHandOff(_)
            | ShardMsg::PlayerHandOffReply(_)
            | ShardMsg::CollectSessions
            | ShardMsg::Sessions(_)
            | ShardMsg::CollectTotals
            | ShardMsg::Totals(_)
            | ShardMsg::IsPublished { .. }
            | ShardMsg::Published(_)
            | ShardMsg::RelayStart(_)
            | ShardMsg::RelayStop { .. }
            | ShardMsg::CollectRelays
            | ShardMsg::Relays(_)
            | ShardMsg::Hls(_) => {
                tracing::warn!(from, "engine got a message meant for another layer");
            }
        }
    }

    /// A shard wants this stream: send it the cache, then add it to the subscribers in the same
    /// synchronous step, so it gets every later packet exactly once.
    fn on_subscribe(self: &Rc<Self>, from: usize, key: Arc<str>) {
        // Tried at once, in the receive loop's order, so that an Unsubscribe queued right
        // behind this Subscribe finds the subscriber registered and removes it. Only a full
        // channel defers it, and then the Unsubscribe cancels the retry instead.
        if self.try_subscribe(from, &key) {
            return;
        }
        self.inner
            .borrow_mut()
            .pending_subscribes
            .push((key.clone(), from));
        let hub = self.clone();
        glommio::spawn_local(async move {
            // Bounded retries: a peer whose channel stays full for this long is wedged.
            for _ in 0..10_000 {
                glommio::timer::sleep(std::time::Duration::from_millis(1)).await;
                let wanted = hub
                    .inner
                    .borrow()
                    .pending_subscribes
                    .iter()
                    .any(|(k, shard)| *shard == from && *k == key);
                if !wanted {
                    return;
                }
                if hub.try_subscribe(from, &key) {
                    hub.forget_pending_subscribe(from, &key);
                    return;
                }
            }
            hub.forget_pending_subscribe(from, &key);
            tracing::error!(stream = %key, shard = from, "could not subscribe shard: channel full");
        })
        .detach();
    }

    /// Sends shard `from` the snapshot of `key` and registers it as a subscriber; false when
    /// its channel is full.
    fn try_subscribe(&self, from: usize, key: &Arc<str>) -> bool {
        let mut inner = self.inner.borrow_mut();
        let fresh = self.new_stream();
        let stream = inner.streams.entry(key.clone()).or_insert(fresh);
        let msg = ShardMsg::Snapshot {
            key: key.clone(),
            live: stream.feed.is_live(),
            packets: stream.feed.snapshot(),
        };
        if self.router.try_send(from, msg).is_err() {
            return false;
        }
        if !stream.subscribers.contains(&from) {
            stream.subscribers.push(from);
        }
        true
    }

    fn forget_pending_subscribe(&self, from: usize, key: &Arc<str>) {
        let mut inner = self.inner.borrow_mut();
        if let Some(i) = inner
            .pending_subscribes
            .iter()
            .position(|(k, shard)| *shard == from && k == key)
        {
            inner.pending_subscribes.swap_remove(i);
        }
    }

    /// The publisher registration of `key` made for the socket `fd`, if it is the current one.
    /// For a task whose `publish_begin` was cancelled after the hub registered it but before
    /// the id came back: it must still end that registration before closing its socket.
    pub fn publisher_by_fd(&self, key: &str, fd: RawFd) -> Option<(Arc<str>, u64)> {
        let inner = self.inner.borrow();
        let (key, stream) = inner.streams.get_key_value(key)?;
        let slot = stream.publisher.as_ref().filter(|p| p.fd == fd)?;
        Some((key.clone(), slot.id))
    }

    /// Whether a stream this shard owns has a publisher (HTTP viewers answer 404 otherwise).
    pub fn is_published(&self, key: &str) -> bool {
        self.inner
            .borrow()
            .streams
            .get(key)
            .is_some_and(|s| s.publisher.is_some())
    }

    /// Number of data shards (for scatter-gather).
    pub fn nr_shards(&self) -> usize {
        self.nr_shards
    }
}
