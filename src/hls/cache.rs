//! The per-shard copy of every stream's HLS playlist and recent segments. The owner shard
//! sends each change to every data shard, so any shard answers any HLS request from memory
//! without a cross-shard round trip.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

/// A finished segment as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachedSegment {
    pub seq: u64,
    pub data: Bytes,
    /// Strong validator, unique per stream instance and segment.
    pub etag: Arc<str>,
    pub modified: SystemTime,
}

/// Owner -> every data shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HlsMsg {
    /// A new playlist, perhaps with the segment it now lists; segments numbered below
    /// `keep_from` are dropped.
    Update {
        key: Arc<str>,
        generation: u64,
        playlist: Bytes,
        segment: Option<CachedSegment>,
        keep_from: u64,
    },
    /// The stream ended a while ago: forget it, unless a newer session (generation) began.
    Remove { key: Arc<str>, generation: u64 },
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    playlist: Bytes,
    modified: SystemTime,
    segments: BTreeMap<u64, CachedSegment>,
}

#[derive(Debug, Default)]
pub struct HlsCache {
    streams: HashMap<Arc<str>, Entry>,
}

impl HlsCache {
    pub fn new() -> HlsCache {
        HlsCache::default()
    }

    pub fn apply(&mut self, msg: HlsMsg) {
        match msg {
            HlsMsg::Update {
                key,
                generation,
                playlist,
                segment,
                keep_from,
            } => {
                let e = self.streams.entry(key).or_insert_with(|| Entry {
                    generation,
                    playlist: Bytes::new(),
                    modified: SystemTime::now(),
                    segments: BTreeMap::new(),
                });
                e.generation = generation;
                e.playlist = playlist;
                e.modified = SystemTime::now();
                if let Some(s) = segment {
                    e.segments.insert(s.seq, s);
                }
                e.segments = e.segments.split_off(&keep_from);
            }
            HlsMsg::Remove { key, generation } => {
                if self
                    .streams
                    .get(&key)
                    .is_some_and(|e| e.generation == generation)
                {
                    self.streams.remove(&key);
                }
            }
        }
    }

    /// The playlist of `key` (`app/room`) and when it last changed.
    pub fn playlist(&self, key: &str) -> Option<(Bytes, SystemTime)> {
        self.streams
            .get(key)
            .map(|e| (e.playlist.clone(), e.modified))
    }

    pub fn segment(&self, key: &str, seq: u64) -> Option<CachedSegment> {
        self.streams.get(key)?.segments.get(&seq).cloned()
    }

    pub fn len(&self) -> usize {
        self.streams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(seq: u64) -> CachedSegment {
        CachedSegment {
            seq,
            data: Bytes::from(vec![seq as u8; 188]),
            etag: Arc::from(format!("\"x-{seq}\"")),
            modified: SystemTime::UNIX_EPOCH,
        }
    }

    fn update(generation: u64, s: Option<u64>, keep_from: u64) -> HlsMsg {
        HlsMsg::Update {
            key: Arc::from("live/a"),
            generation,
            playlist: Bytes::from(format!("pl{generation}")),
            segment: s.map(seg),
            keep_from,
        }
    }

    #[test]
    fn updates_window_and_generations() {
        let mut c = HlsCache::new();
        assert!(c.playlist("live/a").is_none());
        for i in 0..5 {
            c.apply(update(1, Some(i), i.saturating_sub(2)));
        }
        assert_eq!(c.playlist("live/a").unwrap().0, "pl1");
        assert!(c.segment("live/a", 1).is_none());
        assert_eq!(c.segment("live/a", 2).unwrap().data[0], 2);
        assert!(c.segment("live/a", 4).is_some());
        // a republish (generation 2) survives the old session's delayed removal
        c.apply(update(2, None, 2));
        c.apply(HlsMsg::Remove {
            key: Arc::from("live/a"),
            generation: 1,
        });
        assert_eq!(c.playlist("live/a").unwrap().0, "pl2");
        c.apply(HlsMsg::Remove {
            key: Arc::from("live/a"),
            generation: 2,
        });
        assert!(c.is_empty());
    }
}
