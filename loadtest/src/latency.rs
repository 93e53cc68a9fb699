//! Send times of published media, shared between the native publishers and the players of the
//! same process: a player's delivery latency is its receive time minus the publisher's send time
//! of the same (stream, track, timestamp).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Instant;

/// Entries kept: a few seconds of media of many streams; older ones can no longer be matched.
const KEEP: usize = 1 << 16;

#[derive(Default)]
pub struct SendLog {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    at: HashMap<u64, Instant>,
    order: VecDeque<u64>,
}

fn key(stream: u32, tag_type: u8, ts: u32) -> u64 {
    (stream as u64) << 34 | ((tag_type as u64) & 3) << 32 | ts as u64
}

impl SendLog {
    pub fn new() -> SendLog {
        SendLog::default()
    }

    pub fn sent(&self, stream: u32, tag_type: u8, ts: u32, at: Instant) {
        let k = key(stream, tag_type, ts);
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if g.at.insert(k, at).is_none() {
            g.order.push_back(k);
        }
        while g.order.len() > KEEP {
            if let Some(old) = g.order.pop_front() {
                g.at.remove(&old);
            }
        }
    }

    pub fn send_time(&self, stream: u32, tag_type: u8, ts: u32) -> Option<Instant> {
        let g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.at.get(&key(stream, tag_type, ts)).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn matches_by_stream_track_and_time() {
        let log = SendLog::new();
        let t0 = Instant::now();
        log.sent(1, 9, 40, t0);
        log.sent(2, 9, 40, t0 + Duration::from_millis(5));
        assert_eq!(log.send_time(1, 9, 40), Some(t0));
        assert_eq!(log.send_time(2, 9, 40), Some(t0 + Duration::from_millis(5)));
        assert_eq!(log.send_time(1, 8, 40), None);
        for ts in 0..KEEP as u32 + 1 {
            log.sent(3, 8, ts, t0);
        }
        assert_eq!(log.send_time(1, 9, 40), None, "oldest entries are evicted");
        assert!(log.send_time(3, 8, KEEP as u32).is_some());
    }
}
