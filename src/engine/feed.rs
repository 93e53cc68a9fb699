use std::rc::Rc;

use crate::media::{GopCache, GopLimits, Packet};

use super::frame::Frame;
use super::queue::{Item, QueueRef};

/// Extra lag a late joiner may accumulate beyond the replayed cache before it counts as slow.
const REPLAY_LAG_SLACK_MS: u32 = 5_000;

/// One stream's presence on one shard: its GOP cache and its local players. The owner shard's
/// `Stream` and every other shard's `Mirror` each have one, so fan-out is always local.
pub struct Feed {
    cache: GopCache<Rc<Frame>>,
    players: Vec<(u64, QueueRef)>,
    live: bool,
}

impl Feed {
    pub fn new(gop: GopLimits) -> Self {
        Feed {
            cache: GopCache::new(gop),
            players: Vec::new(),
            live: false,
        }
    }

    /// Fans a packet out: one `Frame` for the whole shard, an `Rc` clone per player.
    pub fn push(&mut self, packet: Packet) {
        let frame = Rc::new(Frame::new(packet));
        self.cache.push(&frame);
        for (_, q) in &self.players {
            q.borrow_mut().push_frame(&frame);
        }
    }

    pub fn add_player(&mut self, id: u64, queue: QueueRef) {
        {
            let mut q = queue.borrow_mut();
            q.allow_lag(self.cache.span_ms().saturating_add(REPLAY_LAG_SLACK_MS));
            if self.live {
                q.push_event(Item::Live);
                for f in self.cache.replay() {
                    q.push_frame(f);
                }
                if self.cache.has_video_header() && !self.cache.has_gop() {
                    q.start_at_next_keyframe();
                }
            }
        }
        self.players.push((id, queue));
    }

    /// Returns true when the feed has no players left.
    pub fn remove_player(&mut self, id: u64) -> bool {
        self.players.retain(|(pid, _)| *pid != id);
        self.players.is_empty()
    }

    pub fn set_live(&mut self) {
        if self.live {
            return;
        }
        self.live = true;
        for (_, q) in &self.players {
            q.borrow_mut().push_event(Item::Live);
        }
    }

    /// Fills a new mirror from the owner's snapshot. Its players joined a running stream, so
    /// they are late joiners: without a cached GOP they start at the next keyframe.
    pub fn sync_from_snapshot(&mut self, live: bool, packets: Vec<Packet>) {
        if live {
            self.set_live();
        }
        for p in packets {
            self.push(p);
        }
        if live && self.cache.has_video_header() && !self.cache.has_gop() {
            for (_, q) in &self.players {
                q.borrow_mut().start_at_next_keyframe();
            }
        }
    }

    pub fn set_unpublished(&mut self) {
        self.live = false;
        self.cache.clear();
        for (_, q) in &self.players {
            q.borrow_mut().push_event(Item::Unpublished);
        }
    }

    pub fn is_live(&self) -> bool {
        self.live
    }

    pub fn player_count(&self) -> usize {
        self.players.len()
    }

    /// The cache as packets, for a shard that subscribes to this stream.
    pub fn snapshot(&self) -> Vec<Packet> {
        self.cache.replay().map(|f| f.packet.clone()).collect()
    }
}
