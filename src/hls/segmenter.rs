//! Cuts one publish session into MPEG-TS segments (sans-I/O: packets in, segments out).
//!
//! With H.264 video, segments start at a video keyframe and are cut at the first keyframe at
//! least `fragment` after the segment's start; nothing is written before the first keyframe.
//! A stream whose audio runs for [`AUDIO_ONLY_AFTER_MS`] with no video at all is audio-only and
//! is cut on audio frames. Other codecs are skipped (H.264 and AAC are what HLS players take in
//! TS).
//!
//! Memory is bounded whatever the publisher sends: a segment that grows past
//! [`Segmenter::max_segment_ms`] of stream time or [`MAX_SEGMENT_BYTES`] is cut at the next
//! packet even without a keyframe (encoders with intra refresh or an infinite GOP, timestamps
//! that stand still), audio held while deciding whether the stream has video is bounded, and
//! the segmenter keeps its own unwrapped timeline (see `Clock`), so neither the 32-bit wrap
//! of stream timestamps nor a jump in them stops cutting.

use bytes::Bytes;

use super::ts::{AvcConfig, MuxError, TsMuxer};
use crate::media::{next_position, Packet, PacketKind};

/// Audio without any video for this long makes the stream audio-only.
pub const AUDIO_ONLY_AFTER_MS: u64 = 1000;

/// A segment without a keyframe to cut at is cut anyway once it spans this many fragments...
pub const FORCED_CUT_FRAGMENTS: u64 = 3;
/// ...or this long, whichever is longer: encoders' default GOP of 250 frames is 10 s at 25 fps
/// (more at lower rates), and such streams keep keyframe-aligned segments at small fragments.
pub const FORCED_CUT_MIN_MS: u64 = 15_000;
/// A segment is cut before it grows past this many bytes, keyframe or not: frozen timestamps
/// never make a segment due. The bound the GOP cache and a player's queue also hold a stream
/// to; a legitimate segment of a few seconds reaches it only at ~100 Mbit/s.
pub const MAX_SEGMENT_BYTES: usize = 64 << 20;
/// Audio frames held while deciding whether the stream has video, at most (~11 s of AAC at
/// 44.1 kHz, where the decision normally takes 1 s: only timestamps that stand still or go back
/// get here), and their payload bytes. Reaching either decides: audio-only.
pub const MAX_PENDING_PACKETS: usize = 512;
pub const MAX_PENDING_BYTES: usize = 1 << 20;

const FLV_AVC: u8 = 7;
const FLV_AAC: u8 = 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    pub data: Bytes,
    /// Stream time of the first packet, in ms, on the segmenter's unwrapped timeline (the
    /// stream's for well-behaved publishers, offset by 2^32 per wrap).
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
    /// Length of the tables the segment starts with: more means it holds media.
    head: usize,
}

/// The segmenter's timeline: packet timestamps (32-bit, wrapping modulo 2^32 like all stream
/// timestamps) unwrapped into a 64-bit one, so comparisons and durations are plain arithmetic.
/// The first packet keeps its value; later ones follow the stream normaliser's rule
/// ([`next_position`]). The segmenter does not rely on the normaliser upstream: a jump back
/// would otherwise keep the open segment from ever being due, and the TS timestamps of a
/// segment stay coherent.
#[derive(Debug, Default)]
struct Clock {
    last_raw: Option<u32>,
    pos: i64,
    high: i64,
}

impl Clock {
    fn at(&mut self, raw: u32) -> u64 {
        match self.last_raw {
            None => {
                self.pos = raw as i64;
                self.high = self.pos;
            }
            Some(last) => {
                self.pos = next_position(self.pos, self.high, last, raw);
                self.high = self.high.max(self.pos);
            }
        }
        self.last_raw = Some(raw);
        self.now()
    }

    /// The time of the last packet (for packets that carry none that matters: sequence
    /// headers). Only the first packets of a stream that starts near 0 can be below 0.
    fn now(&self) -> u64 {
        self.pos.max(0) as u64
    }
}

pub struct Segmenter {
    fragment_ms: u64,
    /// A segment this long is cut at the next packet, keyframe or not.
    max_segment_ms: u64,
    /// A segment is cut before a packet that would take it past this many bytes.
    max_segment_bytes: usize,
    mode: Mode,
    muxer: TsMuxer,
    clock: Clock,
    /// Audio frames held while deciding whether the stream has video, with their times.
    pending: Vec<(u64, Packet)>,
    pending_bytes: usize,
    cur: Option<Current>,
    /// The stream's H.264 parameter sets, for a segment that does not start at a keyframe.
    avc: Option<AvcConfig>,
    /// The open segment was cut without a keyframe and has had no picture yet: its first
    /// picture gets the parameter sets in-band.
    needs_parameter_sets: bool,
    /// Interval between the last two packets of the track that drives cutting: the length the
    /// last frame of a final segment is given.
    frame_ms: u64,
    last_drive_ms: Option<u64>,
    errors: u64,
    last_error: Option<MuxError>,
}

impl Segmenter {
    pub fn new(fragment_ms: u64) -> Segmenter {
        let fragment_ms = fragment_ms.max(1);
        Segmenter {
            fragment_ms,
            max_segment_ms: fragment_ms
                .saturating_mul(FORCED_CUT_FRAGMENTS)
                .max(FORCED_CUT_MIN_MS),
            max_segment_bytes: MAX_SEGMENT_BYTES,
            mode: Mode::Undecided,
            muxer: TsMuxer::new(false),
            clock: Clock::default(),
            pending: Vec::new(),
            pending_bytes: 0,
            cur: None,
            avc: None,
            needs_parameter_sets: false,
            frame_ms: 0,
            last_drive_ms: None,
            errors: 0,
            last_error: None,
        }
    }

    /// Stream time after which an open segment is cut without waiting for a keyframe
    /// ([`FORCED_CUT_FRAGMENTS`] fragments, at least [`FORCED_CUT_MIN_MS`]). A segment lasts
    /// at most this plus one step between packets (itself below
    /// [`MAX_JUMP_MS`](crate::media::TimestampNormaliser::MAX_JUMP_MS)).
    pub fn max_segment_ms(&self) -> u64 {
        self.max_segment_ms
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
        let head = buf.len();
        self.cur = Some(Current {
            buf,
            start_ms: ts,
            head,
        });
        self.needs_parameter_sets = false;
        done
    }

    /// Cuts the open segment at `ts` though no keyframe starts the next one: it is too long,
    /// or a packet of `len` payload bytes would take it past the byte bound (by the estimate of
    /// [`ts_size`], which only a packet bigger than the bound itself, or parameter sets of
    /// tens of kilobytes, exceed).
    ///
    /// The next segment is still a valid TS segment on its own: every segment starts with PAT
    /// and PMT, every PES starts a TS packet of its own (payload_unit_start) so the cut falls
    /// on a PES boundary, continuity counters simply continue, and the PCR comes with the next
    /// PES on the PCR PID (every video PES carries one; audio keeps the cadence when video is
    /// sparse). What it lacks is a random access point: its first picture gets the SPS and PPS
    /// in-band (see [`Self::with_parameter_sets`]), and a decoder starting there waits for the next IDR
    /// or, with intra refresh (whose streams send no further IDR at all), recovers as the
    /// refresh sweeps the picture. Players that joined earlier decode straight through, as the
    /// bytes are the same as without the cut.
    fn forced_cut(&mut self, ts: u64, len: usize) -> Option<Segment> {
        let c = self.cur.as_ref()?;
        let too_long = ts >= c.start_ms.saturating_add(self.max_segment_ms);
        let too_big = c.buf.len().saturating_add(ts_size(len)) > self.max_segment_bytes;
        if c.buf.len() == c.head || !(too_long || too_big) {
            return None;
        }
        let done = self.cut(ts);
        self.needs_parameter_sets = self.mode == Mode::Video;
        done
    }

    fn due(&self, ts: u64) -> bool {
        self.cur
            .as_ref()
            .is_some_and(|c| ts >= c.start_ms.saturating_add(self.fragment_ms))
    }

    fn mux_audio(&mut self, ts: u64, p: &Packet) {
        let mut scratch = Vec::new();
        let out = match self.cur.as_mut() {
            Some(c) => &mut c.buf,
            None => &mut scratch,
        };
        let r = self.muxer.audio(ts, &p.payload, out);
        self.note(r);
    }

    /// The first picture of a segment cut without a keyframe, with the stream's parameter sets
    /// prepended (in the tag's own NAL length framing); `None` for any other video tag.
    fn with_parameter_sets(&mut self, body: &[u8]) -> Option<Vec<u8>> {
        let is_picture = body.len() >= 5 && body[1] == 1;
        if !(self.needs_parameter_sets && is_picture) {
            return None;
        }
        self.needs_parameter_sets = false;
        with_parameter_sets(self.avc.as_ref()?, body)
    }

    /// Takes the next packet of the session; returns the segment it completed, if any.
    pub fn push(&mut self, p: &Packet) -> Option<Segment> {
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
                    self.pending_bytes = 0;
                }
                if self.mode != Mode::Video {
                    // Video appearing in a stream already segmented as audio-only is not
                    // added mid-session (the playlist's tracks would change under players).
                    return None;
                }
                // Sequence headers carry no time that matters (and some encoders send them
                // with 0 mid-stream): they do not move the clock.
                let ts = if p.sequence_header {
                    if p.payload.len() > 5 {
                        if let Ok(cfg) = AvcConfig::parse(&p.payload[5..]) {
                            self.avc = Some(cfg);
                        }
                    }
                    self.clock.now()
                } else {
                    self.clock.at(p.timestamp)
                };
                let mut done = None;
                if p.keyframe
                    && self.muxer.has_video_config()
                    && (self.cur.is_none() || self.due(ts))
                {
                    done = self.cut(ts);
                } else if !p.sequence_header {
                    done = self.forced_cut(ts, p.payload.len());
                }
                let patched = self.with_parameter_sets(&p.payload);
                let mut scratch = Vec::new();
                let out = match self.cur.as_mut() {
                    Some(c) => &mut c.buf,
                    // Before the first keyframe only sequence headers matter; pictures are
                    // muxed into a scratch buffer that is dropped.
                    None if p.sequence_header => &mut scratch,
                    None => return done,
                };
                let body = patched.as_deref().unwrap_or(&p.payload);
                let r = self.muxer.video(ts, body, out);
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
                    self.mux_audio(self.clock.now(), p);
                    return None;
                }
                match self.mode {
                    // Before the first keyframe: nothing is written.
                    Mode::Video if self.cur.is_none() => None,
                    Mode::Video => {
                        // Video may stop while audio goes on: audio cuts too, when it must.
                        let ts = self.clock.at(p.timestamp);
                        let done = self.forced_cut(ts, p.payload.len());
                        self.mux_audio(ts, p);
                        done
                    }
                    Mode::Audio => {
                        let ts = self.clock.at(p.timestamp);
                        let done = if self.cur.is_none() || self.due(ts) {
                            self.cut(ts)
                        } else {
                            self.forced_cut(ts, p.payload.len())
                        };
                        self.mux_audio(ts, p);
                        self.drive(ts);
                        done
                    }
                    Mode::Undecided => self.hold_audio(p),
                }
            }
        }
    }

    /// Audio while it is not known yet whether the stream has video: held until it has run
    /// for [`AUDIO_ONLY_AFTER_MS`] (then the stream is audio-only) or until the held frames
    /// reach their bounds (timestamps standing still or going back: audio-only as well).
    fn hold_audio(&mut self, p: &Packet) -> Option<Segment> {
        if !self.muxer.has_audio_config() {
            // AAC frames before (or without a usable) AudioSpecificConfig cannot be muxed, now
            // or later: holding them would only grow.
            self.note(Err(MuxError::NoConfig));
            return None;
        }
        let ts = self.clock.at(p.timestamp);
        self.pending.push((ts, p.clone()));
        self.pending_bytes += p.payload.len();
        let first = self.pending[0].0;
        // Deciding within one fragment keeps the held frames to one cut at most.
        let wait = AUDIO_ONLY_AFTER_MS.min(self.fragment_ms);
        let full =
            self.pending.len() >= MAX_PENDING_PACKETS || self.pending_bytes >= MAX_PENDING_BYTES;
        if ts < first + wait && !full {
            return None;
        }
        self.mode = Mode::Audio;
        self.muxer.set_video(false);
        self.pending_bytes = 0;
        // Every held frame but the last is less than `wait` after the first (all came with the
        // config, so the decision would have come earlier), and they are far below the byte
        // bound: besides opening the first segment, at most one cut happens here.
        let mut done = None;
        for (qts, q) in std::mem::take(&mut self.pending) {
            let seg = if self.cur.is_none() || self.due(qts) {
                self.cut(qts)
            } else {
                self.forced_cut(qts, q.payload.len())
            };
            if seg.is_some() {
                done = seg;
            }
            self.mux_audio(qts, &q);
            self.drive(qts);
        }
        done
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

/// At least the TS bytes a packet of `len` payload bytes takes: 4 header bytes per 188-byte
/// TS packet (2.2 %), then the PES header, PCR, access unit delimiter, ADTS header, stuffing
/// and in-band parameter sets (a few hundred bytes with parameter sets of usual sizes).
fn ts_size(len: usize) -> usize {
    len + len / 32 + 2048
}

/// An AVC picture tag with the stream's SPS and PPS prepended as NAL units, or `None` when one
/// does not fit the stream's NAL length field.
fn with_parameter_sets(cfg: &AvcConfig, body: &[u8]) -> Option<Vec<u8>> {
    let n = cfg.length_size;
    let sets: Vec<&Vec<u8>> = cfg.sps.iter().chain(cfg.pps.iter()).collect();
    let extra: usize = sets.iter().map(|s| n + s.len()).sum();
    let mut out = Vec::with_capacity(body.len() + extra);
    out.extend_from_slice(&body[..5]);
    for set in sets {
        // `n` is 1 to 4 (a 2-bit field plus one).
        if set.len() >> (8 * n) != 0 {
            return None;
        }
        out.extend_from_slice(&(set.len() as u64).to_be_bytes()[8 - n..]);
        out.extend_from_slice(set);
    }
    out.extend_from_slice(&body[5..]);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::TimestampNormaliser;

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

    /// A non-key picture whose NAL unit is `len` bytes.
    fn big_frame(ts: u32, len: usize) -> Packet {
        let mut body = vec![0x27, 1, 0, 0, 0];
        body.extend_from_slice(&(len as u32).to_be_bytes());
        body.push(0x41);
        body.resize(body.len() + len - 1, 0x5a);
        pkt(PacketKind::Video, ts, false, false, body)
    }

    /// Checks a segment is valid TS on its own: whole 188-byte packets with sync bytes, PAT and
    /// PMT first, continuity counters of each PID incrementing within it.
    fn assert_valid_ts(seg: &Segment) {
        let d = &seg.data;
        assert!(!d.is_empty() && d.len() % 188 == 0, "{}", d.len());
        let pid = |p: &[u8]| ((p[1] & 0x1f) as u16) << 8 | p[2] as u16;
        assert_eq!(pid(&d[..188]), 0, "PAT first");
        assert_eq!(pid(&d[188..376]), 0x1000, "then PMT");
        let mut cc: std::collections::HashMap<u16, u8> = Default::default();
        for p in d.chunks(188) {
            assert_eq!(p[0], 0x47);
            if p[3] & 0x10 == 0 {
                continue; // adaptation field only (a PCR): no counter step
            }
            let c = p[3] & 0x0f;
            if let Some(prev) = cc.insert(pid(p), c) {
                assert_eq!(c, (prev + 1) & 0x0f, "continuity of PID {:#x}", pid(p));
            }
        }
    }

    /// The SPS and PPS of `avc_seq`, each after a start code.
    fn has_parameter_sets(seg: &Segment) -> bool {
        let sets = [0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2];
        seg.data.windows(sets.len()).any(|w| w == sets)
    }

    /// Pushes packets, returning the segments and the largest open buffer and held audio seen.
    fn run(
        s: &mut Segmenter,
        packets: impl IntoIterator<Item = Packet>,
    ) -> (Vec<Segment>, usize, usize) {
        let (mut segs, mut max_buf, mut max_pending) = (Vec::new(), 0, 0);
        for p in packets {
            segs.extend(s.push(&p));
            max_buf = max_buf.max(s.cur.as_ref().map_or(0, |c| c.buf.len()));
            max_pending = max_pending.max(s.pending.len());
            assert!(s.pending_bytes <= MAX_PENDING_BYTES + 64);
        }
        (segs, max_buf, max_pending)
    }

    #[test]
    fn one_keyframe_then_none_is_cut_by_duration() {
        let mut s = Segmenter::new(5000);
        assert_eq!(s.max_segment_ms(), 15_000);
        let mut packets = vec![avc_seq(), aac_seq(), frame(0, true)];
        // 60 s of pictures (intra refresh, or an infinite GOP) and audio, no further keyframe
        for i in 1..1500u32 {
            packets.push(frame(i * 40, false));
            packets.push(aac(i * 40 + 10));
        }
        let (mut segs, _, _) = run(&mut s, packets);
        segs.extend(s.finish());
        let durations: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
        assert_eq!(durations, [15_000; 4]);
        for w in segs.windows(2) {
            assert_eq!(w[0].start_ms + w[0].duration_ms, w[1].start_ms);
        }
        assert!(starts_with_idr(&segs[0]));
        for seg in &segs {
            assert_valid_ts(seg);
            assert!(seg.duration_ms <= s.max_segment_ms());
        }
        // Segments cut without a keyframe carry the parameter sets in-band for a decoder
        // starting there; the first (IDR) one gets them from the muxer as always.
        assert!(segs.iter().all(has_parameter_sets));
        assert_eq!(s.errors().0, 0);
    }

    #[test]
    fn audio_goes_on_cutting_when_video_stops() {
        let mut s = Segmenter::new(2000);
        let mut packets = vec![avc_seq(), aac_seq(), frame(0, true), frame(40, false)];
        packets.extend((0..2000u32).map(|i| aac(50 + i * 23)));
        // video comes back, without a keyframe
        packets.push(frame(50 + 2000 * 23, false));
        let (mut segs, _, _) = run(&mut s, packets);
        segs.extend(s.finish());
        assert!(segs.len() >= 3, "{}", segs.len());
        for seg in &segs[..segs.len() - 1] {
            assert_valid_ts(seg);
            assert!(seg.duration_ms >= s.max_segment_ms());
            assert!(seg.duration_ms < s.max_segment_ms() + 23);
        }
        assert!(has_parameter_sets(segs.last().unwrap()));
    }

    #[test]
    fn frozen_timestamps_are_cut_by_size() {
        let mut s = Segmenter::new(2000);
        let mut packets = vec![avc_seq(), frame(1000, true)];
        // 1 MiB pictures, all at the same time: never due
        packets.extend((0..150).map(|_| big_frame(1000, 1 << 20)));
        let (segs, max_buf, _) = run(&mut s, packets);
        assert_eq!(segs.len(), 2);
        assert!(max_buf <= MAX_SEGMENT_BYTES, "{max_buf}");
        for seg in &segs {
            assert_valid_ts(seg);
            assert!(seg.data.len() <= MAX_SEGMENT_BYTES);
            assert!(seg.data.len() > MAX_SEGMENT_BYTES - (2 << 20));
            assert_eq!(seg.duration_ms, 0, "honest: no time passed");
        }
        assert_eq!(s.errors().0, 0);
    }

    #[test]
    fn a_packet_bigger_than_the_bound_is_kept_whole() {
        let mut s = Segmenter::new(2000);
        s.max_segment_bytes = 64 * 1024;
        let (segs, _, _) = run(
            &mut s,
            [
                avc_seq(),
                frame(0, true),
                big_frame(40, 100_000),
                big_frame(80, 100_000),
                frame(120, false),
            ],
        );
        // keyframe | big | big | small...: each big one alone in a segment over the bound, but
        // never a segment with nothing but tables
        assert_eq!(segs.len(), 3);
        assert!(segs[1].data.len() > 100_000 && segs[2].data.len() > 100_000);
        assert!(segs[2].data.len() < 110_000);
        segs.iter().for_each(assert_valid_ts);
    }

    #[test]
    fn timestamps_jumping_back_keep_cutting() {
        let mut s = Segmenter::new(2000);
        let mut packets = vec![avc_seq(), aac_seq()];
        // 10 s at one hour, then the encoder restarts at 0 for 10 s more; a GOP every second
        for (base, n) in [(3_600_000u32, 250u32), (0, 250)] {
            for i in 0..n {
                packets.push(frame(base + i * 40, i % 25 == 0));
                packets.push(aac(base + i * 40 + 10));
            }
        }
        let (mut segs, _, _) = run(&mut s, packets);
        segs.extend(s.finish());
        let durations: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
        // The jump back is continued 1 ms after the last time: the keyframe there is 29 ms
        // short of due, so that one segment runs to the next keyframe. Nothing else changes.
        assert_eq!(
            durations,
            [2000, 2000, 2000, 2000, 2971, 2000, 2000, 2000, 2000, 1000]
        );
        for w in segs.windows(2) {
            assert_eq!(w[0].start_ms + w[0].duration_ms, w[1].start_ms);
        }
        segs.iter().for_each(assert_valid_ts);
        assert!(segs.iter().all(starts_with_idr));
    }

    #[test]
    fn a_step_back_within_the_bound_delays_a_cut_boundedly() {
        let mut s = Segmenter::new(2000);
        let mut packets = vec![avc_seq(), frame(10_000, true)];
        // 9 s back (within the jitter bound, so kept as sent), then no keyframe for a minute
        packets.extend((1..1500u32).map(|i| frame(1000 + i * 40, false)));
        let (segs, _, _) = run(&mut s, packets);
        // the first cut waits until time is past the start again, then the forced bound holds
        assert!(segs.len() >= 2, "{}", segs.len());
        assert!(segs.iter().all(|s| s.duration_ms <= 15_000));
        segs.iter().for_each(assert_valid_ts);
    }

    #[test]
    fn cutting_works_across_the_timestamp_wrap() {
        // `cuts_at_keyframes_after_fragment` on a timeline that wraps modulo 2^32 mid-stream
        let at = |ms: u32| (u32::MAX - 5000).wrapping_add(ms);
        let mut s = Segmenter::new(3000);
        let mut segs = Vec::new();
        for p in [avc_seq(), aac_seq(), aac(at(0)), frame(at(40), false)] {
            assert!(s.push(&p).is_none());
        }
        for i in 0..250u32 {
            let ts = 80 + i * 40;
            segs.extend(s.push(&frame(at(ts), i % 50 == 0)));
            segs.extend(s.push(&aac(at(ts + 10))));
        }
        segs.extend(s.finish());
        let durations: Vec<u64> = segs.iter().map(|s| s.duration_ms).collect();
        assert_eq!(durations, vec![4000, 4000, 2000]);
        assert_eq!(segs[0].start_ms, at(80) as u64);
        assert_eq!(segs[1].start_ms, at(80) as u64 + 4000);
        for seg in &segs {
            assert_valid_ts(seg);
            assert!(starts_with_idr(seg));
        }
    }

    #[test]
    fn audio_without_config_is_not_held() {
        let mut s = Segmenter::new(2000);
        let (segs, _, max_pending) = run(&mut s, (0..5000u32).map(|i| aac(i * 23)));
        assert!(segs.is_empty());
        assert_eq!(max_pending, 0);
        assert_eq!(s.errors(), (5000, Some(&MuxError::NoConfig)));
        // a usable config later: segmenting as usual
        let mut packets = vec![aac_seq()];
        packets.extend((5000..5300u32).map(|i| aac(i * 23)));
        let (segs, _, _) = run(&mut s, packets);
        assert!(!segs.is_empty());
        segs.iter().for_each(assert_valid_ts);
    }

    #[test]
    fn audio_with_frozen_or_backward_timestamps_is_held_boundedly() {
        for step in [0i32, -10] {
            let mut s = Segmenter::new(2000);
            s.max_segment_bytes = 256 * 1024;
            let mut packets = vec![aac_seq()];
            packets.extend((0..10_000i32).map(|i| aac((100_000 + i * step) as u32)));
            let (segs, max_buf, max_pending) = run(&mut s, packets);
            assert!(max_pending <= MAX_PENDING_PACKETS, "{max_pending}");
            assert_eq!(s.mode, Mode::Audio, "decided by the bound");
            assert!(max_buf <= 256 * 1024);
            assert!(segs.len() >= 5, "step {step}: {}", segs.len());
            segs.iter().for_each(assert_valid_ts);
        }
    }

    #[test]
    fn big_audio_frames_are_held_up_to_the_byte_bound() {
        let mut s = Segmenter::new(2000);
        let mut packets = vec![aac_seq()];
        let mut body = vec![0xaf, 1];
        body.resize(4000, 0x21);
        packets.extend((0..1000).map(|_| pkt(PacketKind::Audio, 0, false, false, body.clone())));
        let (_, _, max_pending) = run(&mut s, packets);
        assert!(max_pending <= MAX_PENDING_BYTES / 4000 + 1, "{max_pending}");
        assert_eq!(s.mode, Mode::Audio);
    }

    proptest::proptest! {
        /// Whatever a publisher sends (keyframes or not, times standing still, jumping or
        /// wrapping), the open segment and the held audio stay bounded and every segment is
        /// valid TS no longer than the forced-cut bound allows.
        #[test]
        fn buffers_stay_bounded_and_segments_valid(
            fragment in 200u64..6000,
            ops in proptest::collection::vec(
                (0u8..8, 0u8..4, proptest::num::u32::ANY, 0u32..3000, 1usize..3000),
                1..400,
            ),
        ) {
            let mut s = Segmenter::new(fragment);
            let bound = 16 * 1024;
            s.max_segment_bytes = bound;
            let mut ts = 0u32;
            let mut segs = Vec::new();
            for (what, how, any, step, len) in ops {
                ts = match how {
                    0 => ts,                      // frozen
                    1 => ts.wrapping_add(step),   // ordinary
                    2 => ts.wrapping_sub(step),   // back a little
                    _ => any,                     // anywhere
                };
                let p = match what {
                    0 => avc_seq(),
                    1 => aac_seq(),
                    2 | 3 => frame(ts, what == 2),
                    4 => big_frame(ts, len),
                    _ => aac(ts),
                };
                segs.extend(s.push(&p));
                let buf = s.cur.as_ref().map_or(0, |c| c.buf.len());
                proptest::prop_assert!(buf <= bound, "open segment of {} bytes", buf);
                proptest::prop_assert!(s.pending.len() <= MAX_PENDING_PACKETS);
            }
            segs.extend(s.finish());
            let longest = s.max_segment_ms() + TimestampNormaliser::MAX_JUMP_MS as u64;
            for seg in &segs {
                assert_valid_ts(seg);
                proptest::prop_assert!(seg.duration_ms <= longest, "{} ms", seg.duration_ms);
            }
        }
    }
}
