//! What a push sends after (re)connecting, sans-I/O: the stream's headers first, then media from
//! the next video keyframe, so the remote end can decode from the first packet it gets.

use std::time::Duration;

use crate::media::{Packet, PacketKind};

/// Remembers the stream's metadata and sequence headers while packets flow (connected or not)
/// and gates audio/video after a reconnect.
#[derive(Default)]
pub struct Resync {
    meta: Option<Packet>,
    audio_header: Option<Packet>,
    video_header: Option<Packet>,
    waiting_keyframe: bool,
}

impl Resync {
    pub fn new() -> Self {
        Self::default()
    }

    /// Called for every packet of the stream, in order. Returns true when a connected push
    /// should send it.
    pub fn on_packet(&mut self, p: &Packet) -> bool {
        if p.kind == PacketKind::Meta {
            if p.is_on_metadata() {
                self.meta = Some(p.clone());
            }
            return true;
        }
        if p.sequence_header {
            let slot = if p.is_video() {
                &mut self.video_header
            } else {
                &mut self.audio_header
            };
            *slot = Some(p.clone());
            return true;
        }
        if self.waiting_keyframe {
            if p.is_video() && p.keyframe {
                self.waiting_keyframe = false;
            } else {
                return false;
            }
        }
        true
    }

    /// A new connection starts: returns the headers seen so far (to send first). When a video
    /// header is known, audio and video then wait for the next keyframe. A connection made
    /// before any packet was seen sends everything from the start.
    pub fn on_connect(&mut self) -> Vec<Packet> {
        self.waiting_keyframe = self.video_header.is_some();
        [&self.meta, &self.audio_header, &self.video_header]
            .into_iter()
            .flatten()
            .cloned()
            .collect()
    }

    /// The publisher left: the next session has its own headers.
    pub fn reset(&mut self) {
        *self = Self::default();
    }
}

/// Reconnect delays: 1 s, 2 s, 4 s ... up to 30 s, back to 1 s after a connection that worked.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: BACKOFF_MIN }
    }
}

impl Backoff {
    /// The delay before the next attempt; each call doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(BACKOFF_MAX);
        d
    }

    pub fn reset(&mut self) {
        self.next = BACKOFF_MIN;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn pkt(kind: u8, ts: u32, body: &[u8]) -> Packet {
        Packet::from_message(kind, ts, Bytes::copy_from_slice(body)).unwrap()
    }

    fn meta() -> Packet {
        // AMF0 string "onMetaData" then an empty ECMA array.
        let mut b = vec![2, 0, 10];
        b.extend_from_slice(b"onMetaData");
        b.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 9]);
        pkt(18, 0, &b)
    }

    #[test]
    fn first_connection_sends_everything() {
        let mut r = Resync::new();
        assert!(r.on_connect().is_empty());
        assert!(r.on_packet(&pkt(8, 0, &[0xaf, 1, 2])));
        assert!(r.on_packet(&pkt(9, 0, &[0x27, 1, 0, 0, 0])));
    }

    #[test]
    fn reconnect_sends_headers_then_waits_for_a_keyframe() {
        let mut r = Resync::new();
        let m = meta();
        let vh = pkt(9, 0, &[0x17, 0, 0, 0, 0, 1]);
        let ah = pkt(8, 0, &[0xaf, 0, 0x12]);
        for p in [&m, &ah, &vh] {
            assert!(r.on_packet(p));
        }
        r.on_packet(&pkt(9, 40, &[0x17, 1, 0, 0, 0]));
        let hdrs = r.on_connect();
        assert_eq!(hdrs.len(), 3);
        assert_eq!(hdrs[0].payload, m.payload);
        assert_eq!(hdrs[1].payload, ah.payload);
        assert_eq!(hdrs[2].payload, vh.payload);
        assert!(!r.on_packet(&pkt(8, 80, &[0xaf, 1, 1])));
        assert!(!r.on_packet(&pkt(9, 80, &[0x27, 1, 0, 0, 0])));
        assert!(r.on_packet(&pkt(9, 1000, &[0x17, 1, 0, 0, 0])));
        assert!(r.on_packet(&pkt(8, 1001, &[0xaf, 1, 1])));
        assert!(r.on_packet(&pkt(9, 1040, &[0x27, 1, 0, 0, 0])));
    }

    #[test]
    fn audio_only_reconnect_does_not_wait() {
        let mut r = Resync::new();
        r.on_packet(&pkt(8, 0, &[0xaf, 0, 0x12]));
        assert_eq!(r.on_connect().len(), 1);
        assert!(r.on_packet(&pkt(8, 20, &[0xaf, 1, 1])));
        r.reset();
        assert!(r.on_connect().is_empty());
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_resets() {
        let mut b = Backoff::default();
        let got: Vec<u64> = (0..7).map(|_| b.next_delay().as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 16, 30, 30]);
        b.reset();
        assert_eq!(b.next_delay(), BACKOFF_MIN);
    }
}
