//! Cuts one publish session into MPEG-TS segments (sans-I/O: packets in, segments out).
//!
//! With H.264 video, segments start at a video keyframe and are cut at the first keyframe at
//! least `fragment` after the segment's start; nothing is written before the first keyframe.
//! A stream whose audio runs for [`AUDIO_ONLY_AFTER_MS`] with no video at all is audio-only and
//! is cut on audio frames. Other codecs are skipped (H.264 and AAC are what HLS players take in
//! TS).

use bytes::Bytes;

use super::ts::{MuxError, TsMuxer};
use crate::media::{Packet, PacketKind};

/// Audio without any video for this long makes the stream audio-only.
pub const AUDIO_ONLY_AFTER_MS: u64 = 1000;

const FLV_AVC: u8 = 7;
const FLV_AAC: u8 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub data: Bytes,
    /// Stream time of the first packet (its timeline is the stream's, in ms).
    pub start_ms: u64,
    pub duration_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Undecided,
    Video,
    Audio,
}

struct Current {
    buf: Vec<u8>,
    start_ms: u64,
}

pub struct Segmenter {
    fragment_ms: u64,
    mode: Mode,
    muxer: TsMuxer,
    /// Audio frames held while deciding whether the stream has video.
    pending: Vec<Packet>,
    cur: Option<Current>,
    /// Interval between the last two packets of the track that drives cutting: the length the
    /// last frame of a final segment is given.
    frame_ms: u64,
    last_drive_ms: Option<u64>,
    errors: u64,
    last_error: Option<MuxError>,
}

impl Segmenter {
    pub fn new(fragment_ms: u64) -> Segmenter {
        Segmenter {
            fragment_ms: fragment_ms.max(1),
            mode: Mode::Undecided,
            muxer: TsMuxer::new(false),
            pending: Vec::new(),
            cur: None,
            frame_ms: 0,
            last_drive_ms: None,
            errors: 0,
            last_error: None,
        }
    }

    /// Packets the muxer refused (malformed or unsupported), and the last reason.
    pub fn errors(&self) -> (u64, Option<&MuxError>) {
        (self.errors, self.last_error.as_ref())
    }

    fn note(&mut self, r: Result<bool, MuxError>) {
        if let Err(e) = r {
            self.errors += 1;
            self.last_error = Some(e);
        }
    }

    fn drive(&mut self, ts: u64) {
        if let Some(last) = self.last_drive_ms {
            if ts > last {
                self.frame_ms = ts - last;
            }
        }
        self.last_drive_ms = Some(ts);
    }

    /// Closes the current segment (if any) and opens a new one at `ts`.
    fn cut(&mut self, ts: u64) -> Option<Segment> {
        let done = self.cur.take().map(|c| Segment {
            duration_ms: ts.saturating_sub(c.start_ms),
            start_ms: c.start_ms,
            data: Bytes::from(c.buf),
        });
        let mut buf = Vec::with_capacity(done.as_ref().map_or(64 * 1024, |s| s.data.len() + 4096));
        self.muxer.start_segment(&mut buf);
        self.cur = Some(Current { buf, start_ms: ts });
        done
    }

    fn due(&self, ts: u64) -> bool {
        self.cur
            .as_ref()
            .is_some_and(|c| ts >= c.start_ms + self.fragment_ms)
    }

    fn mux_audio(&mut self, p: &Packet) {
        let ts = p.timestamp as u64;
        let mut scratch = Vec::new();
        let out = match self.cur.as_mut() {
            Some(c) => &mut c.buf,
            None => &mut scratch,
        };
        let r = self.muxer.audio(ts, &p.payload, out);
        self.note(r);
    }

    /// Takes the next packet of the session; returns the segment it completed, if any.
    pub fn push(&mut self, p: &Packet) -> Option<Segment> {
        let ts = p.timestamp as u64;
        match p.kind {
            PacketKind::Meta => None,
            PacketKind::Video => {
                if p.payload[0] & 0x0f != FLV_AVC || p.payload[0] & 0x80 != 0 {
                    return None;
                }
                if self.mode == Mode::Undecided {
                    self.mode = Mode::Video;
                    self.muxer.set_video(true);
                    self.pending.clear();
                }
                if self.mode != Mode::Video {
                    // Video appearing in a stream already segmented as audio-only is not
                    // added mid-session (the playlist's tracks would change under players).
                    return None;
                }
                let mut done = None;
                if p.keyframe
                    && self.muxer.has_video_config()
                    && (self.cur.is_none() || self.due(ts))
                {
                    done = self.cut(ts);
                }
                let mut scratch = Vec::new();
                let out = match self.cur.as_mut() {
                    Some(c) => &mut c.buf,
                    // Before the first keyframe only sequence headers matter; pictures are
                    // muxed into a scratch buffer that is dropped.
                    None if p.sequence_header => &mut scratch,
                    None => return done,
                };
                let r = self.muxer.video(ts, &p.payload, out);
                self.note(r);
                if !p.sequence_header {
                    self.drive(ts);
                }
                done
            }
            PacketKind::Audio => {
                if p.payload[0] >> 4 != FLV_AAC {
                    return None;
                }
                if p.sequence_header {
                    self.mux_audio(p);
                    return None;
                }
                match self.mode {
                    Mode::Video => {
                        if self.cur.is_some() {
                            self.mux_audio(p);
                        }
                        None
                    }
                    Mode::Audio => {
                        let done = if self.cur.is_none() || self.due(ts) {
                            self.cut(ts)
                        } else {
                            None
                        };
                        self.mux_audio(p);
                        self.drive(ts);
                        done
                    }
                    Mode::Undecided => {
                        self.pending.push(p.clone());
                        let first = self.pending[0].timestamp as u64;
                        // Deciding within one fragment keeps the held frames to one cut at most.
                        let wait = AUDIO_ONLY_AFTER_MS.min(self.fragment_ms);
                        if ts >= first + wait && self.muxer.has_audio_config() {
                            self.mode = Mode::Audio;
                            self.muxer.set_video(false);
                            let mut done = None;
                            for q in std::mem::take(&mut self.pending) {
                                let qts = q.timestamp as u64;
                                if self.cur.is_none() || self.due(qts) {
                                    if let Some(seg) = self.cut(qts) {
                                        done = Some(seg);
                                    }
                                }
                                self.mux_audio(&q);
                                self.drive(qts);
                            }
                            return done;
                        }
                        None
                    }
                }
            }
        }
    }

    /// The session ended: the open segment, if any, with its last frame's length included.
    pub fn finish(&mut self) -> Option<Segment> {
        let c = self.cur.take()?;
        let end = self.last_drive_ms.unwrap_or(c.start_ms).max(c.start_ms) + self.frame_ms;
        Some(Segment {
            duration_ms: end.saturating_sub(c.start_ms),
            start_ms: c.start_ms,
            data: Bytes::from(c.buf),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(kind: PacketKind, ts: u32, key: bool, seq: bool, payload: Vec<u8>) -> Packet {
        Packet {
            kind,
            timestamp: ts,
            keyframe: key,
            sequence_header: seq,
            payload: Bytes::from(payload),
        }
    }

    fn avc_seq() -> Packet {
        let rec = vec![
            0x17, 0, 0, 0, 0, 1, 0x42, 0, 0x1e, 0xff, 0xe1, 0, 2, 0x67, 1, 1, 0, 2, 0x68, 2,
        ];
        pkt(PacketKind::Video, 0, false, true, rec)
    }

    fn frame(ts: u32, key: bool) -> Packet {
        let nal = if key { 0x65 } else { 0x41 };
        let b0 = if key { 0x17 } else { 0x27 };
        pkt(
            PacketKind::Video,
            ts,
            key,
            false,
            vec![b0, 1, 0, 0, 0, 0, 0, 0, 3, nal, 9, 9],
        )
    }

    fn aac_seq() -> Packet {
        pkt(PacketKind::Audio, 0, false, true, vec![0xaf, 0, 0x12, 0x10])
    }

    fn aac(ts: u32) -> Packet {
        pkt(
            PacketKind::Audio,
            ts,
            false,
            false,
            vec![0xaf, 1, 0x21, 0x10, 0x04],
        )
    }

    fn starts_with_idr(seg: &Segment) -> bool {
        // packets 0 and 1 are PAT and PMT; the third is the keyframe's first with random access
        let p = &seg.data[376..564];
        (((p[1] & 0x1f) as u16) << 8 | p[2] as u16) == 0x100 && p[1] & 0x40 != 0 && p[5] & 0x40 != 0
    }

    #[test]
    fn cuts_at_keyframes_after_fragment() {
        let mut s = Segmenter::new(3000);
        let mut segs = Vec::new();
        for p in [avc_seq(), aac_seq(), aac(0), frame(40, false)] {
            assert!(s.push(&p).is_none());
        }
        // GOP of 2 s at 25 fps, audio every ~23 ms
        for i in 0..250u32 {
            let ts = 80 + i * 40;
            segs.extend(s.push(&frame(ts, i % 50 == 0)));
            segs.extend(s.push(&aac(ts + 10)));
        }
        segs.extend(s.finish());
        let durations: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
        assert_eq!(durations, vec![4000, 4000, 2000]);
        assert_eq!(segs[0].start_ms, 80);
        assert_eq!(segs[1].start_ms, 4080);
        for seg in &segs {
            assert_eq!(seg.data.len() % 188, 0);
            assert!(starts_with_idr(seg));
        }
    }

    #[test]
    fn audio_only_streams_are_segmented() {
        let mut s = Segmenter::new(2000);
        let mut segs = Vec::new();
        s.push(&aac_seq());
        for i in 0..300u32 {
            segs.extend(s.push(&aac(i * 23)));
        }
        segs.extend(s.finish());
        assert!(segs.len() >= 3, "{}", segs.len());
        assert_eq!(segs[0].start_ms, 0);
        for w in segs.windows(2) {
            assert_eq!(w[0].start_ms + w[0].duration_ms, w[1].start_ms);
            assert!(w[0].duration_ms >= 2000 && w[0].duration_ms < 2023 + 1);
        }
        // the PMT declares audio only, with the PCR on the audio PID
        let pmt = &segs[0].data[188..376];
        assert_eq!(&pmt[13..15], [0xe1, 0x01]);
        assert_eq!(pmt[17], 0x0f);
    }

    #[test]
    fn other_codecs_and_garbage_are_skipped() {
        let mut s = Segmenter::new(1000);
        // HEVC (enhanced RTMP) and MP3 are ignored, malformed AVC is counted, not fatal
        assert!(s
            .push(&pkt(
                PacketKind::Video,
                0,
                true,
                false,
                vec![0x93, b'h', b'v', b'c', b'1']
            ))
            .is_none());
        assert!(s
            .push(&pkt(PacketKind::Audio, 0, false, false, vec![0x2f, 1, 2]))
            .is_none());
        s.push(&avc_seq());
        s.push(&pkt(
            PacketKind::Video,
            0,
            true,
            false,
            vec![0x17, 1, 0, 0, 0, 0, 0, 0, 99, 0x65],
        ));
        let mut segs: Vec<Segment> = Vec::new();
        segs.extend(s.push(&frame(2000, true)));
        segs.extend(s.finish());
        assert_eq!(s.errors().0, 1);
        assert_eq!(segs.len(), 2);
    }
}
