//! An FLV reader and media comparators written for the tests only, independent of `src/`, so a
//! bug in the server's own FLV code cannot hide itself by being used to check its output.

use std::fmt;

pub const TAG_AUDIO: u8 = 8;
pub const TAG_VIDEO: u8 = 9;
pub const TAG_SCRIPT: u8 = 18;

/// Larger than any tag our 8 s test media can contain; a size beyond it means the file is corrupt.
const MAX_TAG_SIZE: usize = 16 * 1024 * 1024;

#[derive(Clone, PartialEq, Eq)]
pub struct Tag {
    pub kind: u8,
    pub timestamp: u32,
    pub data: Vec<u8>,
}

impl fmt::Debug for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let head: Vec<String> = self
            .data
            .iter()
            .take(6)
            .map(|b| format!("{b:02x}"))
            .collect();
        write!(
            f,
            "Tag{{kind:{} ts:{} len:{} head:{}}}",
            self.kind,
            self.timestamp,
            self.data.len(),
            head.join("")
        )
    }
}

impl Tag {
    pub fn is_audio(&self) -> bool {
        self.kind == TAG_AUDIO
    }

    pub fn is_video(&self) -> bool {
        self.kind == TAG_VIDEO
    }

    /// Frame type 1 in the FLV video tag header.
    pub fn is_keyframe(&self) -> bool {
        self.is_video() && self.data.first().is_some_and(|b| b >> 4 == 1)
    }

    /// AVC sequence header (AVCPacketType 0) or AAC sequence header (AACPacketType 0).
    pub fn is_sequence_header(&self) -> bool {
        match self.kind {
            TAG_VIDEO => self.data.len() >= 2 && self.data[0] & 0x0f == 7 && self.data[1] == 0,
            TAG_AUDIO => self.data.len() >= 2 && self.data[0] >> 4 == 10 && self.data[1] == 0,
            _ => false,
        }
    }

    /// AVC end-of-sequence marker: muxers add their own at the end of a file, so it is not media.
    pub fn is_end_of_sequence(&self) -> bool {
        self.is_video() && self.data.len() >= 2 && self.data[0] & 0x0f == 7 && self.data[1] == 2
    }

    /// Audio or video frames that carry media (not sequence headers, not markers, not empty).
    pub fn is_media_frame(&self) -> bool {
        (self.is_audio() || self.is_video())
            && !self.data.is_empty()
            && !self.is_sequence_header()
            && !self.is_end_of_sequence()
    }
}

/// Parses a complete FLV file. Every length is checked against the input; a truncated last tag
/// (a recorder killed mid-write) is an error, reported with its offset.
pub fn parse_flv(bytes: &[u8]) -> Result<Vec<Tag>, String> {
    if bytes.len() < 9 || &bytes[..3] != b"FLV" {
        return Err(format!(
            "not an FLV file (len {}, starts {:02x?})",
            bytes.len(),
            &bytes[..bytes.len().min(3)]
        ));
    }
    let header_len = u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) as usize;
    if !(9..=bytes.len()).contains(&header_len) {
        return Err(format!("bad FLV header length {header_len}"));
    }
    let mut pos = header_len;
    // PreviousTagSize0.
    pos = pos
        .checked_add(4)
        .filter(|p| *p <= bytes.len())
        .ok_or("missing PreviousTagSize0")?;
    let mut tags = Vec::new();
    while pos < bytes.len() {
        let head = bytes
            .get(pos..pos + 11)
            .ok_or_else(|| format!("truncated tag header at offset {pos}"))?;
        let kind = head[0] & 0x1f;
        let size = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        let timestamp = u32::from_be_bytes([head[7], head[4], head[5], head[6]]);
        if size > MAX_TAG_SIZE {
            return Err(format!("tag at offset {pos} claims {size} bytes"));
        }
        let data_start = pos + 11;
        let data = bytes
            .get(data_start..data_start + size)
            .ok_or_else(|| format!("truncated tag body at offset {pos} (size {size})"))?;
        let trailer = bytes
            .get(data_start + size..data_start + size + 4)
            .ok_or_else(|| format!("missing PreviousTagSize after tag at offset {pos}"))?;
        let prev = u32::from_be_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
        if prev != size + 11 {
            return Err(format!(
                "PreviousTagSize {prev} != {} after tag at offset {pos}",
                size + 11
            ));
        }
        tags.push(Tag {
            kind,
            timestamp,
            data: data.to_vec(),
        });
        pos = data_start + size + 4;
    }
    Ok(tags)
}

/// Writes tags as an FLV file (used by the self-tests to build inputs the parser must accept).
pub fn write_flv(tags: &[Tag]) -> Vec<u8> {
    let mut out = b"FLV\x01\x05\x00\x00\x00\x09\x00\x00\x00\x00".to_vec();
    for t in tags {
        let size = t.data.len() as u32;
        out.push(t.kind);
        out.extend_from_slice(&size.to_be_bytes()[1..]);
        out.extend_from_slice(&t.timestamp.to_be_bytes()[1..]);
        out.push((t.timestamp >> 24) as u8);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(&t.data);
        out.extend_from_slice(&(size + 11).to_be_bytes());
    }
    out
}

pub fn read_flv(path: &std::path::Path) -> Vec<Tag> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    parse_flv(&bytes).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

pub fn video_frames(tags: &[Tag]) -> Vec<&Tag> {
    tags.iter()
        .filter(|t| t.is_video() && t.is_media_frame())
        .collect()
}

pub fn audio_frames(tags: &[Tag]) -> Vec<&Tag> {
    tags.iter()
        .filter(|t| t.is_audio() && t.is_media_frame())
        .collect()
}

pub fn keyframes(tags: &[Tag]) -> Vec<&Tag> {
    tags.iter()
        .filter(|t| t.is_keyframe() && t.is_media_frame())
        .collect()
}

pub fn sequence_headers(tags: &[Tag], kind: u8) -> Vec<&Tag> {
    tags.iter()
        .filter(|t| t.kind == kind && t.is_sequence_header())
        .collect()
}

/// What a successful comparison found, for tests that want to assert more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MediaMatch {
    /// Index in the source's video frames of the first received video frame.
    pub video_start: usize,
    pub video_frames: usize,
    pub audio_start: usize,
    pub audio_frames: usize,
    /// received timestamp - source timestamp, the same for every frame of both tracks.
    pub offset: i64,
}

fn describe(t: &Tag) -> String {
    format!("{t:?}")
}

/// Compares one track: `received` must equal `source[start..start + received.len()]` payload for
/// payload, with one constant timestamp offset. Returns the offset.
fn match_track(
    track: &str,
    source: &[&Tag],
    start: usize,
    received: &[&Tag],
    offset: Option<i64>,
) -> Result<i64, String> {
    if start + received.len() > source.len() {
        return Err(format!(
            "{track}: received {} frames from source index {start}, but the source has only {}",
            received.len(),
            source.len()
        ));
    }
    let mut offset = offset;
    for (i, r) in received.iter().enumerate() {
        let s = source[start + i];
        if r.data.len() != s.data.len() || r.data != s.data {
            let first_diff = r
                .data
                .iter()
                .zip(&s.data)
                .position(|(a, b)| a != b)
                .unwrap_or(r.data.len().min(s.data.len()));
            return Err(format!(
                "{track} frame {i} (source index {}): payload differs: received {} bytes, \
                 source {} bytes, first difference at byte {first_diff}; received {}, source {}",
                start + i,
                r.data.len(),
                s.data.len(),
                describe(r),
                describe(s)
            ));
        }
        let d = r.timestamp as i64 - s.timestamp as i64;
        match offset {
            None => offset = Some(d),
            Some(o) if o != d => {
                return Err(format!(
                    "{track} frame {i} (source index {}): timestamp offset {d} ms, expected {o} ms \
                     (received ts {}, source ts {})",
                    start + i,
                    r.timestamp,
                    s.timestamp
                ))
            }
            Some(_) => {}
        }
    }
    offset.ok_or_else(|| format!("{track}: no frames received"))
}

/// Checks that `received` (a player's recording) carries exactly the source's audio and video.
///
/// Tracks are compared separately because the cross-track order of frames with equal or close
/// timestamps is chosen by each muxer's interleaver, not by the server. Metadata is skipped.
/// Every received frame must be a byte-exact source frame, in order, with no gap, and the
/// recording must run to the end of the source. Timestamps differ by one constant across both
/// tracks (sequence headers excepted: a recorder stamps them as it likes).
///
/// `from_keyframe == false`: every source frame is received. `true` (late joiner): the recording
/// starts with the sequence headers, its first video frame is a keyframe, and from there on it is
/// a contiguous tail of the source; audio starts within 100 ms of that keyframe.
pub fn compare_media(
    source: &[Tag],
    received: &[Tag],
    from_keyframe: bool,
) -> Result<MediaMatch, String> {
    let src_v = video_frames(source);
    let src_a = audio_frames(source);
    let rcv_v = video_frames(received);
    let rcv_a = audio_frames(received);
    if src_v.is_empty() && src_a.is_empty() {
        return Err("the source has no audio or video frames".into());
    }

    // Sequence headers: the last one the source sent before media must be received before the
    // first frame of that track, byte for byte.
    for (kind, name) in [(TAG_VIDEO, "video"), (TAG_AUDIO, "audio")] {
        let Some(src_sh) = sequence_headers(source, kind)
            .first()
            .map(|t| t.data.clone())
        else {
            continue;
        };
        let first_frame = received
            .iter()
            .position(|t| t.kind == kind && t.is_media_frame());
        let before = &received[..first_frame.unwrap_or(received.len())];
        let rcv_sh = before
            .iter()
            .rev()
            .find(|t| t.kind == kind && t.is_sequence_header());
        match rcv_sh {
            None => {
                return Err(format!(
                    "no {name} sequence header before the first {name} frame \
                     (first {name} frame at received tag index {first_frame:?})"
                ))
            }
            Some(t) if t.data != src_sh => {
                return Err(format!(
                    "{name} sequence header differs: received {} bytes {:02x?}, source {} bytes {:02x?}",
                    t.data.len(),
                    &t.data[..t.data.len().min(16)],
                    src_sh.len(),
                    &src_sh[..src_sh.len().min(16)]
                ))
            }
            Some(_) => {}
        }
    }

    let (video_start, audio_start) = if !from_keyframe {
        (0, 0)
    } else {
        let first = rcv_v
            .first()
            .ok_or("late joiner received no video frames")?;
        if !first.is_keyframe() {
            return Err(format!(
                "late joiner's first video frame is not a keyframe: {}",
                describe(first)
            ));
        }
        // The received video is a tail of the source, so its length fixes where it starts; a
        // keyframe payload check then tells a real match from a coincidence of counts.
        let vstart = src_v.len().checked_sub(rcv_v.len()).ok_or_else(|| {
            format!(
                "late joiner received {} video frames, more than the source's {}",
                rcv_v.len(),
                src_v.len()
            )
        })?;
        if !src_v[vstart].is_keyframe() || src_v[vstart].data != first.data {
            let found = src_v
                .iter()
                .position(|s| s.data == first.data)
                .map(|i| format!("source index {i}"))
                .unwrap_or_else(|| "nowhere in the source".into());
            return Err(format!(
                "late joiner's first video frame is {found}, but a contiguous tail would start at \
                 source index {vstart} (received {} video frames of {}): frames lost or duplicated",
                rcv_v.len(),
                src_v.len()
            ));
        }
        let astart = src_a.len().checked_sub(rcv_a.len()).ok_or_else(|| {
            format!(
                "late joiner received {} audio frames, more than the source's {}",
                rcv_a.len(),
                src_a.len()
            )
        })?;
        if let Some(a) = src_a.get(astart) {
            let kf_ts = src_v[vstart].timestamp as i64;
            if (a.timestamp as i64 - kf_ts).abs() > 100 {
                return Err(format!(
                    "late joiner's audio starts at source ts {} but its first keyframe is at {kf_ts}",
                    a.timestamp
                ));
            }
        }
        (vstart, astart)
    };

    if !from_keyframe {
        if rcv_v.len() != src_v.len() {
            let at = rcv_v
                .iter()
                .zip(&src_v)
                .position(|(r, s)| r.data != s.data)
                .unwrap_or(rcv_v.len().min(src_v.len()));
            return Err(format!(
                "received {} video frames, the source has {}; first mismatch at video index {at}",
                rcv_v.len(),
                src_v.len()
            ));
        }
        if rcv_a.len() != src_a.len() {
            let at = rcv_a
                .iter()
                .zip(&src_a)
                .position(|(r, s)| r.data != s.data)
                .unwrap_or(rcv_a.len().min(src_a.len()));
            return Err(format!(
                "received {} audio frames, the source has {}; first mismatch at audio index {at}",
                rcv_a.len(),
                src_a.len()
            ));
        }
    }

    let mut offset = None;
    if !rcv_v.is_empty() {
        offset = Some(match_track("video", &src_v, video_start, &rcv_v, None)?);
    }
    if !rcv_a.is_empty() {
        offset = Some(match_track("audio", &src_a, audio_start, &rcv_a, offset)?);
    }
    Ok(MediaMatch {
        video_start,
        video_frames: rcv_v.len(),
        audio_start,
        audio_frames: rcv_a.len(),
        offset: offset.unwrap_or(0),
    })
}

#[track_caller]
pub fn assert_same_media(source: &[Tag], received: &[Tag], from_keyframe: bool) -> MediaMatch {
    match compare_media(source, received, from_keyframe) {
        Ok(m) => m,
        Err(e) => panic!(
            "media mismatch (from_keyframe={from_keyframe}, source {} tags, received {} tags): {e}",
            source.len(),
            received.len()
        ),
    }
}

/// Finds the longest run of `received[at..]` that equals a contiguous range of `source`, starting
/// where `received[at]` first occurs in `source`.
/// Returns (source start, run length). Used where a stream switches sources (takeover).
pub fn contiguous_run(source: &[&Tag], received: &[&Tag], at: usize) -> Option<(usize, usize)> {
    let first = received.get(at)?;
    let start = source.iter().position(|s| s.data == first.data)?;
    let len = received[at..]
        .iter()
        .zip(&source[start..])
        .take_while(|(r, s)| r.data == s.data)
        .count();
    Some((start, len))
}
