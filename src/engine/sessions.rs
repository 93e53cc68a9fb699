use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// livego recomputes a session's speed at most every 5 s.
const SPEED_WINDOW: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    Publisher,
    Player,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Protocol {
    Rtmp,
    HttpFlv,
    WsFlv,
    Hls,
    /// A relay or static push run by the server itself.
    Relay,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Rtmp => "rtmp",
            Protocol::HttpFlv => "http-flv",
            Protocol::WsFlv => "ws-flv",
            Protocol::Hls => "hls",
            Protocol::Relay => "relay",
        }
    }
}

/// Byte counters a connection task updates as it moves media (payload bytes, as livego counts).
#[derive(Default, Debug)]
pub struct Counters {
    pub video_bytes: Cell<u64>,
    pub audio_bytes: Cell<u64>,
    /// Bytes written to or read from the socket, all framing included.
    pub wire_bytes: Cell<u64>,
    pub dropped_packets: Cell<u64>,
}

impl Counters {
    pub fn add_media(&self, is_video: bool, bytes: usize) {
        let c = if is_video {
            &self.video_bytes
        } else {
            &self.audio_bytes
        };
        c.set(c.get() + bytes as u64);
    }

    pub fn add_wire(&self, bytes: usize) {
        self.wire_bytes.set(self.wire_bytes.get() + bytes as u64);
    }
}

/// What `/stat/livestat`, `/streams` and `/metrics` need of one session; `Send`, so it can be
/// gathered from every shard by the control shard.
#[derive(Clone, Debug, PartialEq)]
pub struct SessionStat {
    pub id: u64,
    pub shard: usize,
    pub role: Role,
    pub protocol: Protocol,
    pub key: String,
    pub url: String,
    pub remote: Option<SocketAddr>,
    pub stream_id: u32,
    pub video_total_bytes: u64,
    pub audio_total_bytes: u64,
    /// kbit/s over the last completed 5 s window (0 until one completed).
    pub video_speed: u64,
    pub audio_speed: u64,
    pub wire_bytes: u64,
    pub dropped_packets: u64,
    pub age_ms: u64,
}

struct Entry {
    role: Role,
    protocol: Protocol,
    key: Arc<str>,
    url: String,
    remote: Option<SocketAddr>,
    stream_id: u32,
    started: Instant,
    counters: Rc<Counters>,
    window: Cell<(Instant, u64, u64)>,
    speed: Cell<(u64, u64)>,
}

/// Byte and packet totals since start, closed sessions included (Prometheus counters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Wire bytes read from publishers.
    pub wire_in: u64,
    /// Wire bytes written to players.
    pub wire_out: u64,
    /// Audio and video payload bytes from publishers.
    pub media_in: u64,
    /// Audio and video payload bytes to players.
    pub media_out: u64,
    /// Packets dropped for slow players.
    pub dropped: u64,
}

impl Totals {
    fn add_session(&mut self, role: Role, c: &Counters) {
        let media = c.video_bytes.get() + c.audio_bytes.get();
        match role {
            Role::Publisher => {
                self.wire_in += c.wire_bytes.get();
                self.media_in += media;
            }
            Role::Player => {
                self.wire_out += c.wire_bytes.get();
                self.media_out += media;
            }
        }
        self.dropped += c.dropped_packets.get();
    }

    /// Adds another shard's totals.
    pub fn merge(&mut self, o: &Totals) {
        self.wire_in += o.wire_in;
        self.wire_out += o.wire_out;
        self.media_in += o.media_in;
        self.media_out += o.media_out;
        self.dropped += o.dropped;
    }
}

/// The sessions (publishers, players, relays) of one shard.
#[derive(Default)]
pub struct Sessions {
    shard: usize,
    entries: RefCell<HashMap<u64, Entry>>,
    next: Cell<u64>,
    /// What the sessions that already ended moved.
    retired: Cell<Totals>,
}

/// Removes its session from the registry when dropped (the connection task ended).
pub struct SessionGuard {
    sessions: Rc<Sessions>,
    pub id: u64,
    pub counters: Rc<Counters>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        if let Some(e) = self.sessions.entries.borrow_mut().remove(&self.id) {
            let mut t = self.sessions.retired.get();
            t.add_session(e.role, &e.counters);
            self.sessions.retired.set(t);
        }
    }
}

impl Sessions {
    pub fn new(shard: usize) -> Rc<Sessions> {
        Rc::new(Sessions {
            shard,
            ..Default::default()
        })
    }

    pub fn register(
        self: &Rc<Self>,
        role: Role,
        protocol: Protocol,
        key: Arc<str>,
        url: String,
        remote: Option<SocketAddr>,
    ) -> SessionGuard {
        let id = self.next.get() + 1;
        self.next.set(id);
        let id = (id << 8) | self.shard as u64;
        let counters = Rc::new(Counters::default());
        let now = Instant::now();
        self.entries.borrow_mut().insert(
            id,
            Entry {
                role,
                protocol,
                key,
                url,
                remote,
                stream_id: crate::engine::PLAY_STREAM_ID,
                started: now,
                counters: counters.clone(),
                window: Cell::new((now, 0, 0)),
                speed: Cell::new((0, 0)),
            },
        );
        SessionGuard {
            sessions: self.clone(),
            id,
            counters,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Totals since start: the ended sessions' plus what the open ones moved so far.
    pub fn totals(&self) -> Totals {
        let mut t = self.retired.get();
        for e in self.entries.borrow().values() {
            t.add_session(e.role, &e.counters);
        }
        t
    }

    /// A snapshot of every session, with speeds brought up to date.
    pub fn snapshot(&self) -> Vec<SessionStat> {
        let now = Instant::now();
        let entries = self.entries.borrow();
        let mut out = Vec::with_capacity(entries.len());
        for (&id, e) in entries.iter() {
            let video = e.counters.video_bytes.get();
            let audio = e.counters.audio_bytes.get();
            let (since, v0, a0) = e.window.get();
            let elapsed = now.duration_since(since);
            if elapsed >= SPEED_WINDOW {
                let kbps = |b: u64| b * 8 * 1000 / elapsed.as_millis().max(1) as u64 / 1000;
                e.speed.set((kbps(video - v0), kbps(audio - a0)));
                e.window.set((now, video, audio));
            }
            let (video_speed, audio_speed) = e.speed.get();
            out.push(SessionStat {
                id,
                shard: self.shard,
                role: e.role,
                protocol: e.protocol,
                key: e.key.to_string(),
                url: e.url.clone(),
                remote: e.remote,
                stream_id: e.stream_id,
                video_total_bytes: video,
                audio_total_bytes: audio,
                video_speed,
                audio_speed,
                wire_bytes: e.counters.wire_bytes.get(),
                dropped_packets: e.counters.dropped_packets.get(),
                age_ms: now.duration_since(e.started).as_millis() as u64,
            });
        }
        out.sort_by_key(|s| s.id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_count_and_drop() {
        let s = Sessions::new(3);
        let g = s.register(
            Role::Player,
            Protocol::HttpFlv,
            Arc::from("live/a"),
            "http://x/live/a.flv".into(),
            None,
        );
        g.counters.add_media(true, 1000);
        g.counters.add_media(false, 10);
        let snap = s.snapshot();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[0].video_total_bytes, 1000);
        assert_eq!(snap[0].audio_total_bytes, 10);
        assert_eq!(snap[0].shard, 3);
        assert_eq!(snap[0].id & 0xff, 3);
        drop(g);
        assert!(s.is_empty());
    }

    #[test]
    fn totals_keep_what_ended_sessions_moved() {
        let s = Sessions::new(0);
        let key: Arc<str> = Arc::from("live/a");
        let publisher = s.register(
            Role::Publisher,
            Protocol::Rtmp,
            key.clone(),
            String::new(),
            None,
        );
        publisher.counters.add_wire(1000);
        publisher.counters.add_media(true, 900);
        let player = s.register(Role::Player, Protocol::Rtmp, key, String::new(), None);
        player.counters.add_wire(500);
        player.counters.add_media(false, 400);
        player.counters.dropped_packets.set(2);
        let open = s.totals();
        assert_eq!(
            open,
            Totals {
                wire_in: 1000,
                wire_out: 500,
                media_in: 900,
                media_out: 400,
                dropped: 2,
            }
        );
        drop(player);
        assert_eq!(s.totals(), open, "an ended session still counts");
        publisher.counters.add_wire(10);
        drop(publisher);
        assert!(s.is_empty());
        assert_eq!(s.totals().wire_in, 1010);
        let mut sum = s.totals();
        sum.merge(&open);
        assert_eq!(sum.wire_out, 1000);
    }
}
