use std::collections::VecDeque;

use super::{Packet, PacketKind};

/// Bounds of one stream's cache. A GOP that outgrows them is dropped whole (late players then
/// start at the next keyframe) rather than truncated: a truncated GOP would be a broken replay.
#[derive(Clone, Copy, Debug)]
pub struct GopLimits {
    /// Number of GOPs kept (livego's `gop_num`); 0 keeps only metadata and sequence headers.
    pub gop_num: usize,
    pub max_packets: usize,
    pub max_bytes: usize,
}

impl GopLimits {
    pub fn with_gop_num(gop_num: usize) -> Self {
        GopLimits {
            gop_num,
            max_packets: 16 * 1024,
            max_bytes: 64 << 20,
        }
    }
}

/// What a player joining mid-stream needs to start decoding at once: the last metadata, the
/// last video and audio sequence headers, then the last `gop_num` GOPs from their keyframe on,
/// audio included (livego cached video only, so late joiners started silent).
///
/// Generic over the cached item so the engine can cache its shared, already-serialised frames.
pub struct GopCache<F> {
    limits: GopLimits,
    meta: Option<F>,
    video_header: Option<F>,
    audio_header: Option<F>,
    gops: VecDeque<Vec<F>>,
    packets: usize,
    bytes: usize,
}

impl<F: AsRef<Packet> + Clone> GopCache<F> {
    pub fn new(limits: GopLimits) -> Self {
        GopCache {
            limits,
            meta: None,
            video_header: None,
            audio_header: None,
            gops: VecDeque::new(),
            packets: 0,
            bytes: 0,
        }
    }

    pub fn push(&mut self, item: &F) {
        let p = item.as_ref();
        match p.kind {
            PacketKind::Meta if p.is_on_metadata() => self.meta = Some(item.clone()),
            PacketKind::Meta => {}
            PacketKind::Video if p.sequence_header => self.video_header = Some(item.clone()),
            PacketKind::Audio if p.sequence_header => self.audio_header = Some(item.clone()),
            PacketKind::Video if p.keyframe => {
                if self.limits.gop_num == 0 {
                    return;
                }
                self.gops.push_back(Vec::with_capacity(64));
                while self.gops.len() > self.limits.gop_num {
                    self.drop_oldest_gop();
                }
                self.append(item);
            }
            PacketKind::Video | PacketKind::Audio => {
                if !self.gops.is_empty() {
                    self.append(item);
                }
            }
        }
    }

    fn append(&mut self, item: &F) {
        let size = item.as_ref().payload.len();
        if let Some(gop) = self.gops.back_mut() {
            gop.push(item.clone());
            self.packets += 1;
            self.bytes += size;
        }
        while self.packets > self.limits.max_packets || self.bytes > self.limits.max_bytes {
            if self.gops.is_empty() {
                break;
            }
            self.drop_oldest_gop();
        }
    }

    fn drop_oldest_gop(&mut self) {
        if let Some(gop) = self.gops.pop_front() {
            self.packets -= gop.len();
            self.bytes -= gop.iter().map(|f| f.as_ref().payload.len()).sum::<usize>();
        }
    }

    /// Forgets everything: the next publisher may use other codecs.
    pub fn clear(&mut self) {
        self.meta = None;
        self.video_header = None;
        self.audio_header = None;
        self.gops.clear();
        self.packets = 0;
        self.bytes = 0;
    }

    /// The replay for a new player, in sending order.
    pub fn replay(&self) -> impl Iterator<Item = &F> {
        self.meta
            .iter()
            .chain(self.video_header.iter())
            .chain(self.audio_header.iter())
            .chain(self.gops.iter().flatten())
    }

    pub fn has_video_header(&self) -> bool {
        self.video_header.is_some()
    }

    /// True when a GOP (from a keyframe on) is cached.
    pub fn has_gop(&self) -> bool {
        !self.gops.is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.replay().next().is_none()
    }

    /// Milliseconds between the first and the last cached GOP packet (0 when the last is
    /// behind). Stream timestamps wrap modulo 2^32: the difference is taken in wrapping
    /// arithmetic and read as signed, exact for packets less than 2^31 ms apart.
    pub fn span_ms(&self) -> u32 {
        let first = self.gops.front().and_then(|g| g.first());
        let last = self.gops.back().and_then(|g| g.last());
        match (first, last) {
            (Some(a), Some(b)) => {
                let d = b.as_ref().timestamp.wrapping_sub(a.as_ref().timestamp);
                (d as i32).max(0) as u32
            }
            _ => 0,
        }
    }
}

impl AsRef<Packet> for Packet {
    fn as_ref(&self) -> &Packet {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn video(ts: u32, key: bool) -> Packet {
        let b0 = if key { 0x17 } else { 0x27 };
        Packet::from_message(9, ts, Bytes::from(vec![b0, 1, 0, 0, 0, ts as u8])).unwrap()
    }
    fn audio(ts: u32) -> Packet {
        Packet::from_message(8, ts, Bytes::from(vec![0xaf, 1, ts as u8])).unwrap()
    }
    fn timestamps(c: &GopCache<Packet>) -> Vec<(PacketKind, u32)> {
        c.replay().map(|p| (p.kind, p.timestamp)).collect()
    }

    fn feed(c: &mut GopCache<Packet>) {
        let vseq = Packet::from_message(9, 0, Bytes::from_static(&[0x17, 0, 0, 0, 0, 1])).unwrap();
        let aseq = Packet::from_message(8, 0, Bytes::from_static(&[0xaf, 0, 0x12])).unwrap();
        let meta =
            Packet::from_message(18, 0, Bytes::from_static(b"\x02\x00\x0aonMetaData\x05")).unwrap();
        for p in [meta, vseq, aseq, audio(0)] {
            c.push(&p);
        }
        for gop in 0..4u32 {
            for i in 0..3u32 {
                let ts = gop * 100 + i * 30;
                c.push(&video(ts, i == 0));
                c.push(&audio(ts + 10));
            }
        }
    }

    #[test]
    fn keeps_headers_and_last_gop_with_audio() {
        let mut c = GopCache::new(GopLimits::with_gop_num(1));
        feed(&mut c);
        let got = timestamps(&c);
        use PacketKind::*;
        assert_eq!(&got[..3], &[(Meta, 0), (Video, 0), (Audio, 0)]);
        assert_eq!(
            &got[3..],
            &[
                (Video, 300),
                (Audio, 310),
                (Video, 330),
                (Audio, 340),
                (Video, 360),
                (Audio, 370)
            ]
        );
        assert!(c.replay().nth(3).unwrap().keyframe);
        assert_eq!(c.span_ms(), 70);
    }

    #[test]
    fn any_gop_num_works() {
        for n in 0..6 {
            let mut c = GopCache::new(GopLimits::with_gop_num(n));
            feed(&mut c);
            let keyframes = c.replay().filter(|p| p.keyframe).count();
            assert_eq!(keyframes, n.min(4), "gop_num {n}");
            assert_eq!(c.replay().filter(|p| p.sequence_header).count(), 2);
        }
    }

    #[test]
    fn span_is_measured_across_the_timestamp_wrap() {
        let mut c = GopCache::new(GopLimits::with_gop_num(2));
        let at = |ms: u32| (u32::MAX - 100).wrapping_add(ms);
        c.push(&video(at(0), true));
        c.push(&audio(at(50)));
        c.push(&video(at(200), true));
        c.push(&audio(at(230)));
        assert_eq!(c.span_ms(), 230);
        // a last packet slightly behind the first (interleaving) is no span, not 49 days
        let mut c = GopCache::new(GopLimits::with_gop_num(1));
        c.push(&video(1000, true));
        c.push(&audio(990));
        assert_eq!(c.span_ms(), 0);
    }

    #[test]
    fn oversized_gop_is_dropped_whole() {
        let mut c = GopCache::new(GopLimits {
            gop_num: 2,
            max_packets: 4,
            max_bytes: 1 << 20,
        });
        c.push(&video(0, true));
        for i in 1..10 {
            c.push(&video(i, false));
        }
        assert_eq!(c.replay().count(), 0);
        c.push(&video(100, true));
        assert_eq!(c.replay().count(), 1);
        c.clear();
        assert!(c.is_empty());
    }
}
