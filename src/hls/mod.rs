//! HLS: an MPEG-TS muxer and segmenter of our own, run once per stream on its owner shard as a
//! [`StreamSink`], with the playlist and segments copied to every data shard's [`HlsCache`].
//!
//! Per-stream state (sequence numbers, the playlist window) lives on the owner across publish
//! sessions, so numbers never repeat and a republish is marked with EXT-X-DISCONTINUITY and
//! served at once.

pub mod cache;
pub mod playlist;
pub mod segmenter;
pub mod ts;

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use glommio::channels::local_channel::{self, LocalSender};

use crate::config::Config;
use crate::engine::ShardMsg;
use crate::engine::{PublishInfo, StreamSink};
use crate::media::Packet;

pub use cache::{CachedSegment, HlsCache, HlsMsg};
pub use playlist::Playlist;
pub use segmenter::{Segment, Segmenter};

/// Segments older than the playlist window stay served this many more, for clients that
/// fetched the playlist just before it slid.
const EXTRA_SEGMENTS_KEPT: u64 = 2;
/// An ended stream (without `hls_keep_after_end`) is dropped after at least this long.
const MIN_EXPIRY: Duration = Duration::from_secs(10);

/// HLS settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct HlsSettings {
    pub fragment: Duration,
    pub window: usize,
    pub keep_after_end: bool,
}

impl HlsSettings {
    pub fn from_config(cfg: &Config) -> HlsSettings {
        HlsSettings {
            fragment: cfg.hls_fragment,
            window: cfg.hls_window,
            keep_after_end: cfg.hls_keep_after_end,
        }
    }

    /// How long an ended stream's playlist and segments stay served.
    pub fn expiry(&self) -> Duration {
        (self.fragment * self.window as u32).max(MIN_EXPIRY)
    }
}

/// The owner's state of one stream, kept across publish sessions.
struct Owned {
    playlist: Playlist,
    /// Incremented per publish session; removals of an older session are ignored.
    generation: u64,
    /// Distinguishes this stream instance in ETags (sequence numbers restart with the process).
    nonce: u64,
    /// `/app/room`, the prefix of segment URIs.
    prefix: String,
}

/// One per data shard: the shard's cache (read by the HTTP server) and, for the streams the
/// shard owns, their segmenting state.
pub struct HlsService {
    shard: usize,
    nr_shards: usize,
    settings: HlsSettings,
    cfg: Arc<Config>,
    cache: RefCell<HlsCache>,
    owned: RefCell<HashMap<Arc<str>, Owned>>,
    /// Router sends happen on a task of their own: sinks are synchronous, and one ordered queue
    /// keeps each shard's updates in order.
    out: LocalSender<(usize, ShardMsg)>,
}

impl HlsService {
    /// Must run on the shard's executor: it spawns the task that forwards updates to other shards.
    pub fn start(
        shard: usize,
        nr_shards: usize,
        router: shards::Router<ShardMsg>,
        cfg: Arc<Config>,
    ) -> Rc<HlsService> {
        let (tx, rx) = local_channel::new_unbounded::<(usize, ShardMsg)>();
        glommio::spawn_local(async move {
            while let Some((to, msg)) = rx.recv().await {
                let _ = router.send(to, msg).await;
            }
        })
        .detach();
        Rc::new(HlsService {
            shard,
            nr_shards,
            settings: HlsSettings::from_config(&cfg),
            cfg,
            cache: RefCell::new(HlsCache::new()),
            owned: RefCell::new(HashMap::new()),
            out: tx,
        })
    }

    pub fn cache(&self) -> std::cell::Ref<'_, HlsCache> {
        self.cache.borrow()
    }

    /// A message from the owner of some stream.
    pub fn on_message(&self, msg: HlsMsg) {
        self.cache.borrow_mut().apply(msg);
    }

    fn broadcast(&self, msg: HlsMsg) {
        for to in 0..self.nr_shards {
            if to != self.shard {
                let _ = self.out.try_send((to, ShardMsg::Hls(msg.clone())));
            }
        }
        self.cache.borrow_mut().apply(msg);
    }

    fn publish(&self, key: &Arc<str>, segment: Option<CachedSegment>) {
        let msg = {
            let owned = self.owned.borrow();
            let Some(o) = owned.get(key) else { return };
            HlsMsg::Update {
                key: key.clone(),
                generation: o.generation,
                playlist: Bytes::from(o.playlist.render(&o.prefix)),
                segment,
                keep_from: o.playlist.first_seq().saturating_sub(EXTRA_SEGMENTS_KEPT),
            }
        };
        self.broadcast(msg);
    }

    /// The sinks of a new publish session: the HLS segmenter, unless the app has HLS off.
    /// Composable with other sink makers (the recorder's) in one `SinkFactory`.
    pub fn sinks(self: &Rc<Self>, info: &PublishInfo) -> Vec<Box<dyn StreamSink>> {
        if !self.cfg.app(&info.app).is_some_and(|a| a.hls) {
            return Vec::new();
        }
        {
            let mut owned = self.owned.borrow_mut();
            let o = owned.entry(info.key.clone()).or_insert_with(|| Owned {
                playlist: Playlist::new(
                    self.settings.window,
                    self.settings.fragment.as_millis() as u64,
                ),
                generation: 0,
                nonce: SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64),
                prefix: format!("/{}", info.key),
            });
            o.generation += 1;
            o.playlist.begin_session();
        }
        self.publish(&info.key, None);
        vec![Box::new(HlsSink {
            svc: self.clone(),
            key: info.key.clone(),
            segmenter: Segmenter::new(self.settings.fragment.as_millis() as u64),
        })]
    }

    fn segment_done(&self, key: &Arc<str>, seg: Segment) {
        let cached = {
            let mut owned = self.owned.borrow_mut();
            let Some(o) = owned.get_mut(key) else { return };
            let info = o.playlist.add(seg.duration_ms);
            CachedSegment {
                seq: info.seq,
                etag: Arc::from(format!("\"{:x}-{}\"", o.nonce, info.seq)),
                data: seg.data,
                modified: SystemTime::now(),
            }
        };
        self.publish(key, Some(cached));
    }

    fn session_end(self: &Rc<Self>, key: &Arc<str>) {
        let generation = {
            let mut owned = self.owned.borrow_mut();
            let Some(o) = owned.get_mut(key) else { return };
            o.playlist.end();
            o.generation
        };
        self.publish(key, None);
        if self.settings.keep_after_end {
            return;
        }
        let svc = self.clone();
        let key = key.clone();
        glommio::spawn_local(async move {
            glommio::timer::sleep(svc.settings.expiry()).await;
            let expired = {
                let mut owned = svc.owned.borrow_mut();
                match owned.get_mut(&key) {
                    Some(o) if o.generation == generation && o.playlist.is_ended() => {
                        // The sequence counter stays (a few bytes per key) so numbers never
                        // repeat under a CDN that cached earlier segments as immutable.
                        o.playlist.clear();
                        true
                    }
                    _ => false,
                }
            };
            if expired {
                svc.broadcast(HlsMsg::Remove { key, generation });
            }
        })
        .detach();
    }
}

/// The HLS sink of one publish session.
struct HlsSink {
    svc: Rc<HlsService>,
    key: Arc<str>,
    segmenter: Segmenter,
}

impl StreamSink for HlsSink {
    fn on_packet(&mut self, packet: &Packet) {
        if let Some(seg) = self.segmenter.push(packet) {
            self.svc.segment_done(&self.key, seg);
        }
    }

    fn on_end(&mut self) {
        if let Some(seg) = self.segmenter.finish() {
            self.svc.segment_done(&self.key, seg);
        }
        let (errors, last) = self.segmenter.errors();
        if errors > 0 {
            tracing::warn!(stream = %self.key, "HLS skipped {errors} packets (last: {})", last.map(|e| e.to_string()).unwrap_or_default());
        }
        self.svc.session_end(&self.key);
    }
}
