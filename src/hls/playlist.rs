//! The media playlist of one stream: a sliding window of segments, kept on the stream's owner
//! shard across publish sessions so sequence numbers never repeat and republishes are marked.

use std::collections::VecDeque;
use std::fmt::Write;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentInfo {
    pub seq: u64,
    pub duration_ms: u64,
    /// The first segment of a publish session that follows another one in the window.
    pub discontinuity: bool,
}

#[derive(Debug, Clone)]
pub struct Playlist {
    window: VecDeque<SegmentInfo>,
    max_len: usize,
    next_seq: u64,
    /// Never decreases over the stream's life (the target duration must not change downwards).
    target_secs: u64,
    /// Discontinuities that slid out of the window (EXT-X-DISCONTINUITY-SEQUENCE).
    discontinuity_seq: u64,
    pending_discontinuity: bool,
    ended: bool,
}

impl Playlist {
    /// `max_len` segments listed at most; `fragment_ms` the configured segment target.
    pub fn new(max_len: usize, fragment_ms: u64) -> Playlist {
        Playlist {
            window: VecDeque::new(),
            max_len: max_len.max(1),
            next_seq: 0,
            target_secs: fragment_ms.div_ceil(1000).max(1),
            discontinuity_seq: 0,
            pending_discontinuity: false,
            ended: false,
        }
    }

    /// A publish session starts: the playlist is live again, and the next segment is marked as
    /// a discontinuity when segments of an earlier session are still listed.
    pub fn begin_session(&mut self) {
        self.ended = false;
        self.pending_discontinuity = !self.window.is_empty();
    }

    /// The publisher left: the playlist gets EXT-X-ENDLIST.
    pub fn end(&mut self) {
        self.ended = true;
    }

    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// Forgets the listed segments (the stream was expired); numbering continues.
    pub fn clear(&mut self) {
        while let Some(s) = self.window.pop_front() {
            if s.discontinuity {
                self.discontinuity_seq += 1;
            }
        }
        self.pending_discontinuity = false;
    }

    /// Appends a finished segment and returns its info (with its sequence number).
    pub fn add(&mut self, duration_ms: u64) -> SegmentInfo {
        let info = SegmentInfo {
            seq: self.next_seq,
            duration_ms,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
        };
        self.next_seq += 1;
        self.target_secs = self.target_secs.max(duration_ms.div_ceil(1000));
        self.window.push_back(info);
        while self.window.len() > self.max_len {
            if let Some(old) = self.window.pop_front() {
                if old.discontinuity {
                    self.discontinuity_seq += 1;
                }
            }
        }
        self.window.back().copied().unwrap_or(info)
    }

    /// The sequence number of the first listed segment (the next one when none is listed).
    pub fn first_seq(&self) -> u64 {
        self.window.front().map_or(self.next_seq, |s| s.seq)
    }

    /// The playlist text; segment URIs are `{prefix}/{seq}.ts` (prefix `/app/room`).
    pub fn render(&self, prefix: &str) -> String {
        let mut s = String::with_capacity(128 + self.window.len() * 48);
        s.push_str("#EXTM3U\n#EXT-X-VERSION:3\n");
        let _ = writeln!(s, "#EXT-X-TARGETDURATION:{}", self.target_secs);
        let _ = writeln!(s, "#EXT-X-MEDIA-SEQUENCE:{}", self.first_seq());
        if self.discontinuity_seq > 0 {
            let _ = writeln!(
                s,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_seq
            );
        }
        for seg in &self.window {
            if seg.discontinuity {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            let _ = writeln!(
                s,
                "#EXTINF:{}.{:03},\n{prefix}/{}.ts",
                seg.duration_ms / 1000,
                seg.duration_ms % 1000,
                seg.seq
            );
        }
        if self.ended {
            s.push_str("#EXT-X-ENDLIST\n");
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sequence_and_target() {
        let mut p = Playlist::new(3, 3000);
        assert_eq!(
            p.render("/live/a"),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:3\n#EXT-X-MEDIA-SEQUENCE:0\n"
        );
        for d in [3000, 3040, 2960, 4001] {
            p.add(d);
        }
        assert_eq!(
            p.render("/live/a"),
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:5\n#EXT-X-MEDIA-SEQUENCE:1\n\
             #EXTINF:3.040,\n/live/a/1.ts\n#EXTINF:2.960,\n/live/a/2.ts\n#EXTINF:4.001,\n/live/a/3.ts\n"
        );
        p.end();
        assert!(p
            .render("/live/a")
            .ends_with("/live/a/3.ts\n#EXT-X-ENDLIST\n"));
    }

    #[test]
    fn republish_marks_discontinuity_and_counts_it_out() {
        let mut p = Playlist::new(2, 2000);
        p.begin_session();
        p.add(2000);
        p.end();
        p.begin_session();
        let info = p.add(2100);
        assert!(info.discontinuity);
        assert_eq!(info.seq, 1);
        let text = p.render("/app/room/with/slash");
        assert!(!text.contains("ENDLIST"));
        assert!(text.contains("/app/room/with/slash/0.ts\n#EXT-X-DISCONTINUITY\n#EXTINF:2.100,\n/app/room/with/slash/1.ts\n"));
        p.add(2000);
        p.add(2000);
        let text = p.render("/x");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
        // after expiry numbering continues and no discontinuity is needed
        p.clear();
        p.begin_session();
        assert_eq!(p.add(2000).seq, 4);
        assert!(!p.render("/x").contains("#EXT-X-DISCONTINUITY\n"));
    }
}
