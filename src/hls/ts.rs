//! A sans-I/O MPEG-TS muxer for HLS: FLV-style H.264 (AVCC) and AAC packets in, 188-byte TS
//! packets out.
//!
//! Layout: PAT on PID 0, PMT on [`PMT_PID`] (program 1), H.264 on [`VIDEO_PID`] (stream type
//! 0x1B), AAC/ADTS on [`AUDIO_PID`] (stream type 0x0F). The PMT declares only the tracks the
//! stream has. The PCR travels on the video PID when there is video, else on the audio PID, and
//! is written at least every [`PCR_INTERVAL`] ticks of stream time.

use std::fmt;

pub const TS_PACKET: usize = 188;
pub const PMT_PID: u16 = 0x1000;
pub const VIDEO_PID: u16 = 0x100;
pub const AUDIO_PID: u16 = 0x101;
pub const STREAM_TYPE_H264: u8 = 0x1b;
pub const STREAM_TYPE_ADTS: u8 = 0x0f;

/// When this much stream time (60 ms) passed since the last PCR, the next packet of any PID
/// brings one, so with audio frames at most ~40 ms apart PCRs stay under 100 ms apart.
pub const PCR_INTERVAL: u64 = 60 * 90;
/// PTS/DTS are ahead of the PCR by this much, so a decoder has buffered a frame before it is
/// due (0.5 s).
pub const PTS_DELAY: u64 = 45_000;
const WRAP: u64 = 1 << 33;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MuxError {
    /// The FLV video/audio tag body is too short or its length fields run past its end.
    Truncated(&'static str),
    /// A configuration record we cannot use (e.g. an ADTS-inexpressible AAC config).
    Unsupported(&'static str),
    /// A frame arrived before the codec configuration it needs.
    NoConfig,
}

impl fmt::Display for MuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MuxError::Truncated(what) => write!(f, "truncated {what}"),
            MuxError::Unsupported(what) => write!(f, "unsupported {what}"),
            MuxError::NoConfig => write!(f, "frame before its sequence header"),
        }
    }
}

impl std::error::Error for MuxError {}

/// MPEG-2 CRC32 (polynomial 0x04C11DB7, no reflection, initial value all ones, no final xor),
/// as PSI sections use.
pub fn crc32_mpeg2(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= (b as u32) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

// ---------------------------------------------------------------------------------------------
// H.264

/// The parts of an AVCDecoderConfigurationRecord the muxer needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AvcConfig {
    /// 1, 2 or 4 (3 is legal too): bytes of each NAL unit length prefix.
    pub length_size: usize,
    pub sps: Vec<Vec<u8>>,
    pub pps: Vec<Vec<u8>>,
}

impl AvcConfig {
    /// Parses an AVCDecoderConfigurationRecord (ISO 14496-15 5.2.4.1). Bytes after the PPS list
    /// (the High-profile extension) are not part of any parameter set and are ignored.
    pub fn parse(rec: &[u8]) -> Result<AvcConfig, MuxError> {
        let short = MuxError::Truncated("AVC decoder configuration");
        if rec.len() < 6 {
            return Err(short);
        }
        if rec[0] != 1 {
            return Err(MuxError::Unsupported("AVC configuration version"));
        }
        let length_size = (rec[4] & 0x03) as usize + 1;
        let mut pos = 5;
        let read_sets = |count: usize, pos: &mut usize| -> Result<Vec<Vec<u8>>, MuxError> {
            let mut sets = Vec::with_capacity(count);
            for _ in 0..count {
                let len_bytes = rec.get(*pos..*pos + 2).ok_or(short.clone())?;
                let len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) as usize;
                *pos += 2;
                let set = rec.get(*pos..*pos + len).ok_or(short.clone())?;
                *pos += len;
                if !set.is_empty() {
                    sets.push(set.to_vec());
                }
            }
            Ok(sets)
        };
        let nsps = (rec[5] & 0x1f) as usize;
        pos += 1;
        let sps = read_sets(nsps, &mut pos)?;
        let npps = *rec.get(pos).ok_or(short.clone())? as usize;
        pos += 1;
        let pps = read_sets(npps, &mut pos)?;
        Ok(AvcConfig {
            length_size,
            sps,
            pps,
        })
    }
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];
/// Access unit delimiter, primary_pic_type 7 (any slice type).
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];
const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_AUD: u8 = 9;

/// Converts one access unit from length-prefixed NAL units to Annex B into `out`: an AUD first,
/// the configuration's SPS and PPS before an IDR picture unless the unit carries its own, every
/// NAL unit behind a 4-byte start code. Returns whether the unit holds an IDR slice.
pub fn avcc_to_annexb(cfg: &AvcConfig, data: &[u8], out: &mut Vec<u8>) -> Result<bool, MuxError> {
    let n = cfg.length_size;
    // First pass: validate the framing and find out what the unit contains, so a malformed
    // unit leaves `out` untouched.
    let mut nals: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    let (mut has_idr, mut has_sps) = (false, false);
    while pos < data.len() {
        let len_bytes = data
            .get(pos..pos + n)
            .ok_or(MuxError::Truncated("NAL unit length"))?;
        let len = len_bytes.iter().fold(0usize, |a, &b| (a << 8) | b as usize);
        pos += n;
        let end = pos
            .checked_add(len)
            .filter(|&e| e <= data.len())
            .ok_or(MuxError::Truncated("NAL unit"))?;
        if len > 0 {
            match data[pos] & 0x1f {
                NAL_IDR => has_idr = true,
                NAL_SPS => has_sps = true,
                _ => {}
            }
            nals.push((pos, end));
        }
        pos = end;
    }
    out.extend_from_slice(&AUD);
    if has_idr && !has_sps {
        for set in cfg.sps.iter().chain(cfg.pps.iter()) {
            out.extend_from_slice(&START_CODE);
            out.extend_from_slice(set);
        }
    }
    for (s, e) in nals {
        if data[s] & 0x1f == NAL_AUD {
            continue;
        }
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(&data[s..e]);
    }
    Ok(has_idr)
}

// ---------------------------------------------------------------------------------------------
// AAC

const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// What an ADTS header needs of an AudioSpecificConfig.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AacConfig {
    /// The core object type (AAC-LC = 2 for HE-AAC v1/v2 too).
    pub object_type: u8,
    /// The core sampling frequency index (HE-AAC: half the output rate; the decoder finds SBR
    /// in the payload and doubles it).
    pub freq_index: u8,
    pub channels: u8,
    /// The output sample rate (the SBR rate for HE-AAC), for frame durations.
    pub output_rate: u32,
}

struct Bits<'a> {
    data: &'a [u8],
    pos: usize,
}

impl Bits<'_> {
    fn read(&mut self, n: usize) -> Result<u32, MuxError> {
        let mut v = 0u32;
        for _ in 0..n {
            let byte = *self
                .data
                .get(self.pos / 8)
                .ok_or(MuxError::Truncated("AudioSpecificConfig"))?;
            v = (v << 1) | ((byte >> (7 - self.pos % 8)) & 1) as u32;
            self.pos += 1;
        }
        Ok(v)
    }

    fn object_type(&mut self) -> Result<u32, MuxError> {
        let t = self.read(5)?;
        Ok(if t == 31 { 32 + self.read(6)? } else { t })
    }

    fn freq(&mut self) -> Result<(u8, u32), MuxError> {
        let idx = self.read(4)?;
        if idx == 15 {
            let rate = self.read(24)?;
            // ADTS can only carry an index: accept an explicit rate that has one.
            let i = SAMPLE_RATES
                .iter()
                .position(|&r| r == rate)
                .ok_or(MuxError::Unsupported("AAC sample rate"))?;
            Ok((i as u8, rate))
        } else {
            let rate = *SAMPLE_RATES
                .get(idx as usize)
                .ok_or(MuxError::Unsupported("AAC sample rate index"))?;
            Ok((idx as u8, rate))
        }
    }
}

impl AacConfig {
    /// Parses an AudioSpecificConfig (ISO 14496-3 1.6.2.1), including explicit hierarchical
    /// SBR/PS signalling (object type 5 or 29), where the first rate is the core rate.
    pub fn parse(asc: &[u8]) -> Result<AacConfig, MuxError> {
        let mut b = Bits { data: asc, pos: 0 };
        let mut object_type = b.object_type()?;
        let (freq_index, mut output_rate) = b.freq()?;
        let channels = b.read(4)? as u8;
        if object_type == 5 || object_type == 29 {
            let (_, ext_rate) = b.freq()?;
            output_rate = ext_rate;
            object_type = b.object_type()?;
        }
        // ADTS has two bits for object type - 1 (Main, LC, SSR, LTP) and three for channels.
        if !(1..=4).contains(&object_type) {
            return Err(MuxError::Unsupported("AAC object type for ADTS"));
        }
        if channels > 7 {
            return Err(MuxError::Unsupported("AAC channel configuration for ADTS"));
        }
        Ok(AacConfig {
            object_type: object_type as u8,
            freq_index,
            channels,
            output_rate,
        })
    }

    /// The 7-byte ADTS header (MPEG-4, no CRC) of a raw frame of `payload_len` bytes.
    pub fn adts_header(&self, payload_len: usize) -> Result<[u8; 7], MuxError> {
        let len = payload_len + 7;
        if len > 0x1fff {
            return Err(MuxError::Unsupported("AAC frame longer than ADTS allows"));
        }
        let profile = self.object_type - 1;
        Ok([
            0xff,
            0xf1,
            (profile << 6) | (self.freq_index << 2) | (self.channels >> 2),
            ((self.channels & 3) << 6) | (len >> 11) as u8,
            (len >> 3) as u8,
            ((len as u8 & 7) << 5) | 0x1f,
            0xfc,
        ])
    }
}

// ---------------------------------------------------------------------------------------------
// TS packetisation

fn put_ts_time(out: &mut Vec<u8>, prefix: u8, t: u64) {
    let t = t % WRAP;
    out.push((prefix << 4) | (((t >> 30) as u8 & 7) << 1) | 1);
    out.push((t >> 22) as u8);
    out.push((((t >> 15) as u8 & 0x7f) << 1) | 1);
    out.push((t >> 7) as u8);
    out.push(((t as u8 & 0x7f) << 1) | 1);
}

/// A PES header: `pts` and (when different) `dts` in 90 kHz ticks, already offset.
pub fn pes_header(stream_id: u8, payload_len: usize, pts: u64, dts: Option<u64>) -> Vec<u8> {
    let dts = dts.filter(|&d| d % WRAP != pts % WRAP);
    let header_data = if dts.is_some() { 10 } else { 5 };
    let packet_len = 3 + header_data + payload_len;
    // 0 = unbounded, allowed for video only; audio frames are always far below the limit.
    let packet_len = if packet_len > 0xffff { 0 } else { packet_len };
    let mut h = Vec::with_capacity(9 + header_data);
    h.extend_from_slice(&[0, 0, 1, stream_id]);
    h.extend_from_slice(&(packet_len as u16).to_be_bytes());
    // '10', data_alignment_indicator: every PES starts an access unit / ADTS frame.
    h.push(0x84);
    h.push(if dts.is_some() { 0xc0 } else { 0x80 });
    h.push(header_data as u8);
    match dts {
        Some(d) => {
            put_ts_time(&mut h, 3, pts);
            put_ts_time(&mut h, 1, d);
        }
        None => put_ts_time(&mut h, 2, pts),
    }
    h
}

fn pcr_bytes(pcr_base: u64) -> [u8; 6] {
    let b = pcr_base % WRAP;
    [
        (b >> 25) as u8,
        (b >> 17) as u8,
        (b >> 9) as u8,
        (b >> 1) as u8,
        ((b as u8 & 1) << 7) | 0x7e,
        0,
    ]
}

/// Continuity counters, one per PID.
#[derive(Debug, Default, Clone)]
struct Counters {
    pat: u8,
    pmt: u8,
    video: u8,
    audio: u8,
}

impl Counters {
    fn next(&mut self, pid: u16) -> u8 {
        let c = match pid {
            0 => &mut self.pat,
            PMT_PID => &mut self.pmt,
            VIDEO_PID => &mut self.video,
            _ => &mut self.audio,
        };
        let v = *c;
        *c = (v + 1) & 0x0f;
        v
    }
}

/// Splits `payload` into TS packets on `pid`. The first packet has the payload unit start flag
/// and, if asked, a PCR and the random access indicator. Short packets are filled with
/// adaptation-field stuffing.
fn packetise(
    out: &mut Vec<u8>,
    cc: &mut Counters,
    pid: u16,
    payload: &[u8],
    pcr: Option<u64>,
    random_access: bool,
) {
    let mut pos = 0;
    let mut first = true;
    while first || pos < payload.len() {
        // Adaptation field content after its length byte.
        let mut af: Vec<u8> = Vec::new();
        if first && (pcr.is_some() || random_access) {
            let mut flags = 0u8;
            if random_access {
                flags |= 0x40;
            }
            if pcr.is_some() {
                flags |= 0x10;
            }
            af.push(flags);
            if let Some(p) = pcr {
                af.extend_from_slice(&pcr_bytes(p));
            }
        }
        let af_total = |af: &Vec<u8>, has: bool| if has { 1 + af.len() } else { 0 };
        let mut has_af = !af.is_empty();
        let remaining = payload.len() - pos;
        let room = 184 - af_total(&af, has_af);
        if remaining < room {
            // Stuff: grow the adaptation field until the payload fills the packet exactly.
            let need = 184 - remaining;
            if !has_af {
                has_af = true;
                if need >= 2 {
                    af.push(0);
                }
            }
            while 1 + af.len() < need {
                af.push(0xff);
            }
        }
        let take = (184 - af_total(&af, has_af)).min(remaining);
        let start = out.len();
        out.push(0x47);
        out.push(if first { 0x40 } else { 0 } | (pid >> 8) as u8 & 0x1f);
        out.push(pid as u8);
        let afc = match (has_af, take > 0) {
            (true, true) => 0x30,
            (true, false) => 0x20,
            _ => 0x10,
        };
        // The counter counts packets with payload only.
        let counter = if take > 0 { cc.next(pid) } else { 0 };
        out.push(afc | counter);
        if has_af {
            out.push(af.len() as u8);
            out.extend_from_slice(&af);
        }
        out.extend_from_slice(&payload[pos..pos + take]);
        debug_assert_eq!(out.len() - start, TS_PACKET);
        pos += take;
        first = false;
    }
}

/// A TS packet carrying only an adaptation field with a PCR (no payload, counter unchanged).
fn pcr_only(out: &mut Vec<u8>, pid: u16, cc: &Counters, pcr: u64) {
    let counter = match pid {
        VIDEO_PID => cc.video,
        _ => cc.audio,
    };
    // With no payload the counter repeats the last value sent (ISO 13818-1 2.4.3.3).
    let counter = counter.wrapping_sub(1) & 0x0f;
    out.extend_from_slice(&[0x47, (pid >> 8) as u8 & 0x1f, pid as u8, 0x20 | counter]);
    out.push(183);
    out.push(0x10);
    out.extend_from_slice(&pcr_bytes(pcr));
    out.resize(out.len() + 183 - 7, 0xff);
}

/// One TS packet holding a whole PSI section (both tables fit easily), padded with 0xff after
/// the section as PSI allows.
fn psi_packet(out: &mut Vec<u8>, cc: &mut Counters, pid: u16, section: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[
        0x47,
        0x40 | (pid >> 8) as u8,
        pid as u8,
        0x10 | cc.next(pid),
        0,
    ]);
    out.extend_from_slice(section);
    out.resize(start + TS_PACKET, 0xff);
}

fn psi_section(table_id: u8, ext: u16, version: u8, body: &[u8]) -> Vec<u8> {
    let section_len = 5 + body.len() + 4;
    let mut s = Vec::with_capacity(3 + section_len);
    s.push(table_id);
    s.push(0xb0 | (section_len >> 8) as u8);
    s.push(section_len as u8);
    s.extend_from_slice(&ext.to_be_bytes());
    s.push(0xc1 | ((version & 0x1f) << 1));
    s.push(0);
    s.push(0);
    s.extend_from_slice(body);
    let crc = crc32_mpeg2(&s);
    s.extend_from_slice(&crc.to_be_bytes());
    s
}

/// The PAT section: program 1 on [`PMT_PID`], transport stream id 1.
pub fn pat_section() -> Vec<u8> {
    let mut body = vec![0, 1];
    body.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
    psi_section(0x00, 1, 0, &body)
}

/// The PMT section of program 1 with the tracks present.
pub fn pmt_section(video: bool, audio: bool, version: u8) -> Vec<u8> {
    let pcr_pid = if video { VIDEO_PID } else { AUDIO_PID };
    let mut body = Vec::new();
    body.extend_from_slice(&(0xe000 | pcr_pid).to_be_bytes());
    body.extend_from_slice(&[0xf0, 0]);
    if video {
        body.push(STREAM_TYPE_H264);
        body.extend_from_slice(&(0xe000 | VIDEO_PID).to_be_bytes());
        body.extend_from_slice(&[0xf0, 0]);
    }
    if audio {
        body.push(STREAM_TYPE_ADTS);
        body.extend_from_slice(&(0xe000 | AUDIO_PID).to_be_bytes());
        body.extend_from_slice(&[0xf0, 0]);
    }
    psi_section(0x02, 1, version, &body)
}

/// The muxer of one publish session. Holds the codec configurations, continuity counters and
/// PCR state across segments; [`TsMuxer::start_segment`] begins a segment with PAT and PMT.
#[derive(Debug, Clone)]
pub struct TsMuxer {
    avc: Option<AvcConfig>,
    aac: Option<AacConfig>,
    cc: Counters,
    /// Tracks declared in the current PMT.
    declared: (bool, bool),
    /// Whether the stream has a video track; fixes the PCR PID.
    video: bool,
    pmt_version: u8,
    last_pcr: Option<u64>,
    scratch: Vec<u8>,
}

/// A video frame in FLV form: `[frame type|codec, AVC packet type, CTS (3 bytes), data]`.
const FLV_AVC: u8 = 7;
const FLV_AAC: u8 = 10;

impl TsMuxer {
    /// `video`: the stream has H.264 video (the PCR goes on its PID); else it is audio-only.
    pub fn new(video: bool) -> TsMuxer {
        TsMuxer {
            avc: None,
            aac: None,
            cc: Counters::default(),
            declared: (false, false),
            video,
            pmt_version: 0,
            last_pcr: None,
            scratch: Vec::new(),
        }
    }

    /// Declares whether the stream has video (decided by the segmenter before the first
    /// segment; it moves the PCR to the video PID).
    pub fn set_video(&mut self, video: bool) {
        self.video = video;
    }

    pub fn has_video_config(&self) -> bool {
        self.avc.is_some()
    }

    pub fn has_audio_config(&self) -> bool {
        self.aac.is_some()
    }

    pub fn aac_config(&self) -> Option<&AacConfig> {
        self.aac.as_ref()
    }

    fn tracks(&self) -> (bool, bool) {
        (self.video, self.aac.is_some())
    }

    fn write_tables(&mut self, out: &mut Vec<u8>) {
        let tracks = self.tracks();
        if tracks != self.declared {
            if self.declared != (false, false) {
                self.pmt_version = (self.pmt_version + 1) & 0x1f;
            }
            self.declared = tracks;
        }
        psi_packet(out, &mut self.cc, 0, &pat_section());
        let pmt = pmt_section(tracks.0, tracks.1, self.pmt_version);
        psi_packet(out, &mut self.cc, PMT_PID, &pmt);
    }

    /// Starts a segment: PAT and PMT. Every PES on the PCR PID carries a PCR, so the first
    /// picture of the segment does too.
    pub fn start_segment(&mut self, out: &mut Vec<u8>) {
        self.write_tables(out);
    }

    /// Takes an FLV video tag body (H.264 only). Sequence headers update the configuration and
    /// write nothing; `ts_ms` is the tag timestamp (DTS) in ms. Returns whether a picture was
    /// written.
    pub fn video(&mut self, ts_ms: u64, body: &[u8], out: &mut Vec<u8>) -> Result<bool, MuxError> {
        if body.len() < 5 {
            return Err(MuxError::Truncated("AVC video tag"));
        }
        if body[0] & 0x0f != FLV_AVC {
            return Err(MuxError::Unsupported("video codec (H.264 only)"));
        }
        match body[1] {
            0 => {
                self.avc = Some(AvcConfig::parse(&body[5..])?);
                return Ok(false);
            }
            1 => {}
            // End of sequence and unknown packet types carry no picture.
            _ => return Ok(false),
        }
        let cfg = self.avc.as_ref().ok_or(MuxError::NoConfig)?;
        let raw = ((body[2] as u32) << 16) | ((body[3] as u32) << 8) | body[4] as u32;
        // Sign-extend the 24-bit composition time offset.
        let cts = ((raw << 8) as i32 >> 8) as i64;
        let mut es = std::mem::take(&mut self.scratch);
        es.clear();
        let idr = avcc_to_annexb(cfg, &body[5..], &mut es)?;
        let keyframe = body[0] >> 4 == 1 || idr;
        let dts = ts_ms * 90 + PTS_DELAY;
        let pts = (dts as i64 + cts * 90).rem_euclid(WRAP as i64) as u64;
        let mut pes = pes_header(0xe0, es.len(), pts, Some(dts));
        pes.extend_from_slice(&es);
        self.scratch = es;
        let pcr = self.pcr_due(dts, true);
        packetise(out, &mut self.cc, VIDEO_PID, &pes, pcr, keyframe);
        Ok(true)
    }

    /// Takes an FLV audio tag body (AAC only). Returns whether a frame was written.
    pub fn audio(&mut self, ts_ms: u64, body: &[u8], out: &mut Vec<u8>) -> Result<bool, MuxError> {
        if body.len() < 2 {
            return Err(MuxError::Truncated("AAC audio tag"));
        }
        if body[0] >> 4 != FLV_AAC {
            return Err(MuxError::Unsupported("audio codec (AAC only)"));
        }
        if body[1] == 0 {
            let cfg = AacConfig::parse(&body[2..])?;
            let changed = self.aac.is_none();
            self.aac = Some(cfg);
            if changed && self.declared != (false, false) {
                // A track appeared mid-segment: announce it at once.
                self.write_tables(out);
            }
            return Ok(false);
        }
        let cfg = self.aac.ok_or(MuxError::NoConfig)?;
        let frame = &body[2..];
        if frame.is_empty() {
            return Ok(false);
        }
        let adts = cfg.adts_header(frame.len())?;
        let pts = ts_ms * 90 + PTS_DELAY;
        let mut pes = pes_header(0xc0, adts.len() + frame.len(), pts, None);
        pes.extend_from_slice(&adts);
        pes.extend_from_slice(frame);
        let pcr = self.pcr_due(pts, !self.video);
        if pcr.is_none() && self.video {
            // Video may be sparse (low frame rates, pauses): keep the PCR cadence from audio.
            if let Some(p) = self.pcr_overdue(pts) {
                pcr_only(out, VIDEO_PID, &self.cc, p);
                self.last_pcr = Some(p);
            }
        }
        packetise(out, &mut self.cc, AUDIO_PID, &pes, pcr, !self.video);
        Ok(true)
    }

    fn pcr_overdue(&self, dts: u64) -> Option<u64> {
        let pcr = dts.saturating_sub(PTS_DELAY);
        match self.last_pcr {
            Some(last) if pcr < last + PCR_INTERVAL => None,
            _ => Some(pcr),
        }
    }

    /// The PCR to put on a PES of the PCR PID (always one: cheap, and it bounds the interval by
    /// the frame interval), `None` on the other PID.
    fn pcr_due(&mut self, dts: u64, on_pcr_pid: bool) -> Option<u64> {
        if !on_pcr_pid {
            return None;
        }
        // Audio and video interleave slightly out of order; a PCR never goes back.
        let pcr = dts
            .saturating_sub(PTS_DELAY)
            .max(self.last_pcr.unwrap_or(0));
        self.last_pcr = Some(pcr);
        Some(pcr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc_check_value() {
        assert_eq!(crc32_mpeg2(b"123456789"), 0x0376_e6e7);
    }

    #[test]
    fn pat_bytes() {
        // The same PAT every common muxer writes for program 1 at PID 0x1000.
        assert_eq!(
            pat_section(),
            [
                0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01, 0xf0, 0x00, 0x2a, 0xb1,
                0x04, 0xb2
            ]
        );
    }

    #[test]
    fn pmt_declares_only_present_tracks() {
        let both = pmt_section(true, true, 0);
        assert_eq!(
            &both[..both.len() - 4],
            [
                0x02, 0xb0, 0x17, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0, 0x00, 0x1b, 0xe1,
                0x00, 0xf0, 0x00, 0x0f, 0xe1, 0x01, 0xf0, 0x00
            ]
        );
        let crc = crc32_mpeg2(&both[..both.len() - 4]);
        assert_eq!(&both[both.len() - 4..], crc.to_be_bytes());
        // A section including its CRC checks to zero.
        assert_eq!(crc32_mpeg2(&both), 0);
        let audio = pmt_section(false, true, 3);
        assert_eq!(audio[2], 0x12);
        assert_eq!(audio[5], 0xc1 | (3 << 1));
        assert_eq!(&audio[8..10], [0xe1, 0x01], "PCR on the audio PID");
        assert_eq!(audio[12], STREAM_TYPE_ADTS);
        assert_eq!(crc32_mpeg2(&audio), 0);
    }

    #[test]
    fn pes_header_bytes() {
        assert_eq!(
            pes_header(0xc0, 100, 90000, None),
            [0, 0, 1, 0xc0, 0, 108, 0x84, 0x80, 5, 0x21, 0x00, 0x05, 0xbf, 0x21]
        );
        let h = pes_header(0xe0, 10, 93003, Some(90000));
        assert_eq!(&h[..9], [0, 0, 1, 0xe0, 0, 23, 0x84, 0xc0, 10]);
        assert_eq!(&h[9..14], [0x31, 0x00, 0x05, 0xd6, 0x97]);
        assert_eq!(&h[14..19], [0x11, 0x00, 0x05, 0xbf, 0x21]);
        // equal PTS and DTS: PTS only
        assert_eq!(pes_header(0xe0, 0, 5, Some(5))[7], 0x80);
        // unbounded video PES
        assert_eq!(&pes_header(0xe0, 70000, 0, None)[4..6], [0, 0]);
    }

    #[test]
    fn timestamps_wrap_at_33_bits() {
        let a = pes_header(0xc0, 0, WRAP + 90000, None);
        let b = pes_header(0xc0, 0, 90000, None);
        assert_eq!(a, b);
        assert_eq!(&pcr_bytes(WRAP + 1), &pcr_bytes(1));
        assert_eq!(pcr_bytes(1), [0, 0, 0, 0, 0xfe, 0]);
        assert_eq!(pcr_bytes(2), [0, 0, 0, 1, 0x7e, 0]);
    }

    #[test]
    fn adts_lc_and_he_aac() {
        // AAC-LC 44.1 kHz stereo: 0x12 0x10
        let lc = AacConfig::parse(&[0x12, 0x10]).unwrap();
        assert_eq!((lc.object_type, lc.freq_index, lc.channels), (2, 4, 2));
        assert_eq!(lc.output_rate, 44100);
        assert_eq!(
            lc.adts_header(100).unwrap(),
            [0xff, 0xf1, 0x50, 0x80, 0x0d, 0x7f, 0xfc]
        );
        // HE-AAC explicit: object type 5, core 22.05 kHz, stereo, extension 44.1 kHz, core LC
        // bits: 00101 0111 0010 0100 00010 ...
        let he = AacConfig::parse(&[0x2b, 0x92, 0x08, 0x00]).unwrap();
        assert_eq!((he.object_type, he.freq_index, he.channels), (2, 7, 2));
        assert_eq!(he.output_rate, 44100);
        assert_eq!(he.adts_header(0).unwrap()[2], 0x40 | (7 << 2));
        // HE-AAC v2 (PS, object type 29): mono core
        // 11101 0110 0001 0011 00010
        let v2 = AacConfig::parse(&[0xeb, 0x09, 0x88, 0x00]).unwrap();
        assert_eq!((v2.object_type, v2.freq_index, v2.channels), (2, 6, 1));
        assert_eq!(v2.output_rate, 48000);
        // explicit frequency present in the table
        let explicit = AacConfig::parse(&[0x17, 0x80, 0x56, 0x22, 0x10]).unwrap();
        assert_eq!(explicit.freq_index, 4);
        assert!(AacConfig::parse(&[0x12]).is_err());
        assert!(lc.adts_header(9000).is_err());
        // object type 42 (USAC) cannot be framed as ADTS
        assert!(AacConfig::parse(&[0xf9, 0x42, 0x00, 0x00]).is_err());
    }

    fn avc_record(length_size: u8, sps: &[&[u8]], pps: &[&[u8]], trailer: &[u8]) -> Vec<u8> {
        let mut r = vec![
            1,
            0x64,
            0,
            0x1f,
            0xfc | (length_size - 1),
            0xe0 | sps.len() as u8,
        ];
        for s in sps {
            r.extend_from_slice(&(s.len() as u16).to_be_bytes());
            r.extend_from_slice(s);
        }
        r.push(pps.len() as u8);
        for p in pps {
            r.extend_from_slice(&(p.len() as u16).to_be_bytes());
            r.extend_from_slice(p);
        }
        r.extend_from_slice(trailer);
        r
    }

    #[test]
    fn avc_config_all_sets_and_no_trailer() {
        let rec = avc_record(
            4,
            &[&[0x67, 1, 2], &[0x67, 3]],
            &[&[0x68, 9], &[0x68, 8, 7]],
            &[0xfd, 0xf8, 0xf8, 0],
        );
        let cfg = AvcConfig::parse(&rec).unwrap();
        assert_eq!(cfg.length_size, 4);
        assert_eq!(cfg.sps, vec![vec![0x67, 1, 2], vec![0x67, 3]]);
        assert_eq!(cfg.pps, vec![vec![0x68, 9], vec![0x68, 8, 7]]);
        let mut short = rec.clone();
        short.truncate(12);
        assert!(AvcConfig::parse(&short).is_err());
    }

    fn length_prefixed(n: usize, nals: &[&[u8]]) -> Vec<u8> {
        let mut v = Vec::new();
        for nal in nals {
            let len = (nal.len() as u32).to_be_bytes();
            v.extend_from_slice(&len[4 - n..]);
            v.extend_from_slice(nal);
        }
        v
    }

    #[test]
    fn annexb_for_each_length_size() {
        for n in [1usize, 2, 4] {
            let cfg = AvcConfig {
                length_size: n,
                sps: vec![vec![0x67, 0xaa]],
                pps: vec![vec![0x68, 0xbb]],
            };
            let data = length_prefixed(n, &[&[0x06, 1], &[0x65, 2, 3]]);
            let mut out = Vec::new();
            assert!(avcc_to_annexb(&cfg, &data, &mut out).unwrap());
            assert_eq!(
                out,
                [
                    0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x67, 0xaa, 0, 0, 0, 1, 0x68, 0xbb, 0, 0, 0,
                    1, 6, 1, 0, 0, 0, 1, 0x65, 2, 3
                ]
            );
            // a non-IDR picture gets no parameter sets; an in-band AUD is not duplicated
            let data = length_prefixed(n, &[&[0x09, 0x10], &[0x41, 7]]);
            out.clear();
            assert!(!avcc_to_annexb(&cfg, &data, &mut out).unwrap());
            assert_eq!(out, [0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x41, 7]);
            // in-band SPS/PPS: the record's are not added
            let data = length_prefixed(n, &[&[0x67, 1], &[0x68, 2], &[0x65, 3]]);
            out.clear();
            avcc_to_annexb(&cfg, &data, &mut out).unwrap();
            assert_eq!(
                out,
                [
                    0, 0, 0, 1, 9, 0xf0, 0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2, 0, 0, 0, 1,
                    0x65, 3
                ]
            );
            // a length running past the end is an error and writes nothing
            let mut bad = length_prefixed(n, &[&[0x65, 1, 2]]);
            bad.pop();
            out.clear();
            assert!(avcc_to_annexb(&cfg, &bad, &mut out).is_err());
            assert!(out.is_empty());
        }
    }

    fn packets(ts: &[u8]) -> Vec<&[u8]> {
        assert_eq!(ts.len() % TS_PACKET, 0);
        ts.chunks(TS_PACKET).collect()
    }

    fn pid(p: &[u8]) -> u16 {
        (((p[1] & 0x1f) as u16) << 8) | p[2] as u16
    }

    #[test]
    fn packetise_stuffs_and_counts() {
        let mut cc = Counters::default();
        for len in [0usize, 1, 182, 183, 184, 185, 400] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let mut out = Vec::new();
            packetise(&mut out, &mut cc, AUDIO_PID, &payload, Some(90000), true);
            let mut got = Vec::new();
            for p in packets(&out) {
                assert_eq!(p[0], 0x47);
                let afc = p[3] >> 4 & 3;
                let start = if afc & 2 != 0 { 5 + p[4] as usize } else { 4 };
                got.extend_from_slice(&p[start..]);
            }
            assert_eq!(got, payload, "len {len}");
            let first = packets(&out)[0];
            assert_eq!(first[1] & 0x40, 0x40);
            assert_eq!(first[5] & 0x50, 0x50, "PCR and random access flags");
        }
        // without an adaptation field, one byte short: a lone length byte of 0
        let mut out = Vec::new();
        packetise(&mut out, &mut cc, VIDEO_PID, &[7u8; 183], None, false);
        assert_eq!(&out[3..6], [0x30, 0, 7]);
        let mut out = Vec::new();
        packetise(&mut out, &mut cc, VIDEO_PID, &[7u8; 182], None, false);
        assert_eq!(&out[4..7], [1, 0, 7]);
    }

    fn video_tag(key: bool, cts: i32, data: &[u8]) -> Vec<u8> {
        let c = (cts as u32).to_be_bytes();
        let mut v = vec![if key { 0x17 } else { 0x27 }, 1, c[1], c[2], c[3]];
        v.extend_from_slice(data);
        v
    }

    #[test]
    fn muxes_a_small_stream() {
        let mut m = TsMuxer::new(true);
        let mut out = Vec::new();
        let mut seq = vec![0x17, 0, 0, 0, 0];
        seq.extend(avc_record(4, &[&[0x67, 1]], &[&[0x68, 2]], &[]));
        assert!(!m.video(0, &seq, &mut out).unwrap());
        m.audio(0, &[0xaf, 0, 0x12, 0x10], &mut out).unwrap();
        assert!(out.is_empty());
        m.start_segment(&mut out);
        m.video(
            0,
            &video_tag(true, 40, &length_prefixed(4, &[&[0x65; 500]])),
            &mut out,
        )
        .unwrap();
        m.audio(10, &[0xaf, 1, 0x21, 0x22], &mut out).unwrap();
        m.video(
            40,
            &video_tag(false, -40, &length_prefixed(4, &[&[0x41; 10]])),
            &mut out,
        )
        .unwrap();
        let ps = packets(&out);
        assert_eq!(pid(ps[0]), 0);
        assert_eq!(pid(ps[1]), PMT_PID);
        assert_eq!(pid(ps[2]), VIDEO_PID);
        // keyframe: random access + PCR
        assert_eq!(ps[2][5], 0x50);
        // PTS = (0 + 40) * 90 + delay, DTS = delay
        let pes = &ps[2][4 + 1 + 7..];
        assert_eq!(&pes[..4], [0, 0, 1, 0xe0]);
        assert_eq!(pes[7], 0xc0);
        // negative composition offset: PTS below DTS is kept (B-frame order)
        let last_video = ps
            .iter()
            .rev()
            .find(|p| pid(p) == VIDEO_PID && p[1] & 0x40 != 0)
            .unwrap();
        let at = if last_video[3] & 0x20 != 0 {
            5 + last_video[4] as usize
        } else {
            4
        };
        let h = &last_video[at..];
        assert_eq!(h[7], 0xc0);
        let read = |b: &[u8]| {
            (((b[0] >> 1) & 7) as u64) << 30
                | (b[1] as u64) << 22
                | ((b[2] >> 1) as u64) << 15
                | (b[3] as u64) << 7
                | (b[4] >> 1) as u64
        };
        assert_eq!(read(&h[9..14]), PTS_DELAY + 40 * 90 - 40 * 90);
        assert_eq!(read(&h[14..19]), PTS_DELAY + 40 * 90);
        // audio PES with an ADTS header
        let audio = ps.iter().find(|p| pid(p) == AUDIO_PID).unwrap();
        let at = if audio[3] & 0x20 != 0 {
            5 + audio[4] as usize
        } else {
            4
        };
        assert_eq!(&audio[at + 14..at + 16], [0xff, 0xf1]);
        // continuity counters increase per PID
        let ccs: Vec<u8> = ps
            .iter()
            .filter(|p| pid(p) == VIDEO_PID)
            .map(|p| p[3] & 0xf)
            .collect();
        assert_eq!(ccs, (0..ccs.len() as u8).collect::<Vec<_>>());
    }

    #[test]
    fn sparse_video_gets_pcr_from_audio_time() {
        let mut m = TsMuxer::new(true);
        let mut out = Vec::new();
        let mut seq = vec![0x17, 0, 0, 0, 0];
        seq.extend(avc_record(4, &[&[0x67, 1]], &[&[0x68, 2]], &[]));
        m.video(0, &seq, &mut out).unwrap();
        m.audio(0, &[0xaf, 0, 0x12, 0x10], &mut out).unwrap();
        m.start_segment(&mut out);
        m.video(
            0,
            &video_tag(true, 0, &length_prefixed(4, &[&[0x65; 5]])),
            &mut out,
        )
        .unwrap();
        for t in (20..1000).step_by(23) {
            m.audio(t, &[0xaf, 1, 0x21], &mut out).unwrap();
        }
        let mut last = 0u64;
        let mut max_gap = 0;
        for p in packets(&out) {
            if pid(p) == VIDEO_PID && p[3] & 0x20 != 0 && p[4] > 0 && p[5] & 0x10 != 0 {
                let b = &p[6..12];
                let base = (b[0] as u64) << 25
                    | (b[1] as u64) << 17
                    | (b[2] as u64) << 9
                    | (b[3] as u64) << 1
                    | (b[4] >> 7) as u64;
                max_gap = max_gap.max(base - last);
                last = base;
            }
        }
        assert!(last >= 900 * 90, "PCRs kept coming: {last}");
        assert!(max_gap <= 9000, "gap {max_gap}");
    }

    #[test]
    fn errors_not_panics() {
        let mut m = TsMuxer::new(true);
        let mut out = Vec::new();
        assert_eq!(
            m.video(0, &video_tag(true, 0, &[0, 0, 0, 1, 0x65]), &mut out),
            Err(MuxError::NoConfig)
        );
        assert!(m.video(0, &[0x17, 0], &mut out).is_err());
        assert!(m.video(0, &[0x12, 1, 0, 0, 0], &mut out).is_err());
        assert!(m.audio(0, &[0xaf], &mut out).is_err());
        assert_eq!(m.audio(0, &[0xaf, 1, 1], &mut out), Err(MuxError::NoConfig));
        assert!(m.audio(0, &[0x2f, 1, 1], &mut out).is_err());
        assert!(out.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn random_input_never_panics(
            seq in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64),
            frames in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600), 0..8),
            ts in 0u64..(1u64 << 40),
        ) {
            let mut m = TsMuxer::new(true);
            let mut out = Vec::new();
            let mut vseq = vec![0x17, 0, 0, 0, 0];
            vseq.extend_from_slice(&seq);
            let _ = m.video(ts, &vseq, &mut out);
            let mut aseq = vec![0xaf, 0];
            aseq.extend_from_slice(&seq);
            let _ = m.audio(ts, &aseq, &mut out);
            m.start_segment(&mut out);
            for f in &frames {
                let _ = m.video(ts, f, &mut out);
                let _ = m.audio(ts, f, &mut out);
                let mut v = vec![0x17, 1, 0, 0, 0];
                v.extend_from_slice(f);
                let _ = m.video(ts, &v, &mut out);
            }
            proptest::prop_assert_eq!(out.len() % TS_PACKET, 0);
        }
    }
}
