//! Pieces of a live FLV response that do not touch sockets: which tracks to announce in the
//! file header, and HTTP/1.1 chunked framing around shared tag bytes.

use bytes::BytesMut;

use crate::media::{Packet, PacketKind};
use crate::rtmp::amf0::{self, Value};

/// How much media time a viewer waits for the second track before the header is written
/// with the tracks seen so far. Encoders send both sequence headers within the first frames.
pub const PROBE_SPAN_MS: u32 = 1_000;
/// Packets buffered at most while probing.
pub const PROBE_MAX_PACKETS: usize = 256;

/// Decides the FLV header's audio/video flags from the first packets of a stream: the
/// metadata's codec ids when it has them, otherwise the tracks seen before the second one is
/// overdue. (livego always announced both, and players then wait for a track that never comes.)
#[derive(Debug, Default)]
pub struct TrackProbe {
    audio: bool,
    video: bool,
    first_media_ts: Option<u32>,
    packets: usize,
}

impl TrackProbe {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next packet; `Some((has_audio, has_video))` once the header can be written
    /// (the caller then writes every packet it buffered, this one included).
    pub fn push(&mut self, p: &Packet) -> Option<(bool, bool)> {
        self.packets += 1;
        match p.kind {
            PacketKind::Meta => {
                if let Some(tracks) = tracks_from_metadata(&p.payload) {
                    return Some(tracks);
                }
            }
            PacketKind::Audio => self.audio = true,
            PacketKind::Video => self.video = true,
        }
        if self.audio && self.video {
            return Some((true, true));
        }
        if p.kind != PacketKind::Meta {
            let first = *self.first_media_ts.get_or_insert(p.timestamp);
            if p.timestamp.saturating_sub(first) >= PROBE_SPAN_MS {
                return Some((self.audio, self.video));
            }
        }
        if self.packets >= PROBE_MAX_PACKETS {
            return Some(self.seen());
        }
        None
    }

    /// The decision when the stream ends or pauses before the probe finished.
    pub fn seen(&self) -> (bool, bool) {
        if !self.audio && !self.video {
            (true, true)
        } else {
            (self.audio, self.video)
        }
    }
}

/// `onMetaData` naming its tracks: `videocodecid`/`audiocodecid` (what encoders write), or the
/// `hasVideo`/`hasAudio` booleans. `None` when it says nothing about tracks.
pub fn tracks_from_metadata(payload: &[u8]) -> Option<(bool, bool)> {
    let values = amf0::decode_all(payload).ok()?;
    if !matches!(values.first(), Some(Value::String(s)) if s == "onMetaData") {
        return None;
    }
    let props = values.iter().skip(1).find_map(|v| match v {
        Value::EcmaArray(p) | Value::Object(p) => Some(p),
        _ => None,
    })?;
    let get = |k: &str| props.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let flag = |has: &str, codec: &str| match (get(has), get(codec)) {
        (Some(Value::Boolean(b)), _) => Some(*b),
        (_, Some(Value::Number(_) | Value::String(_))) => Some(true),
        _ => None,
    };
    match (
        flag("hasAudio", "audiocodecid"),
        flag("hasVideo", "videocodecid"),
    ) {
        (None, None) => None,
        (a, v) => Some((a.unwrap_or(false), v.unwrap_or(false))),
    }
}

/// Appends the size line of one chunk of `len` bytes (hex, CRLF) to `out`. The chunk is: this
/// line, the data buffers, CRLF.
pub fn put_chunk_size_line(out: &mut BytesMut, len: usize) {
    use std::fmt::Write;
    // Writing into a BytesMut cannot fail.
    let _ = write!(out, "{len:x}\r\n");
}

pub const CRLF: &[u8] = b"\r\n";
/// The last chunk with an empty trailer: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn meta(props: &[(&str, Value)]) -> Bytes {
        let arr = Value::EcmaArray(
            props
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        );
        let mut out = BytesMut::new();
        amf0::encode(&mut out, &Value::String("onMetaData".into()));
        amf0::encode(&mut out, &arr);
        out.freeze()
    }

    fn pkt(type_id: u8, ts: u32, body: &[u8]) -> Packet {
        Packet::from_message(type_id, ts, Bytes::copy_from_slice(body)).unwrap()
    }

    #[test]
    fn metadata_codec_ids_decide_at_once() {
        let m = meta(&[("duration", 0.0.into()), ("audiocodecid", 10.0.into())]);
        assert_eq!(tracks_from_metadata(&m), Some((true, false)));
        let m = meta(&[("videocodecid", 7.0.into()), ("audiocodecid", 10.0.into())]);
        let mut p = TrackProbe::new();
        assert_eq!(p.push(&pkt(18, 0, &m)), Some((true, true)));
        let m = meta(&[("hasAudio", false.into()), ("videocodecid", 7.0.into())]);
        assert_eq!(tracks_from_metadata(&m), Some((false, true)));
        assert_eq!(tracks_from_metadata(&meta(&[("width", 1.0.into())])), None);
        assert_eq!(tracks_from_metadata(b"\x02\x00\x01x"), None);
        assert_eq!(tracks_from_metadata(&[0xff, 0, 1]), None);
    }

    #[test]
    fn both_tracks_seen_decides() {
        let mut p = TrackProbe::new();
        assert_eq!(p.push(&pkt(18, 0, &meta(&[("width", 1.0.into())]))), None);
        assert_eq!(p.push(&pkt(9, 0, &[0x17, 0, 0, 0, 0])), None);
        assert_eq!(p.push(&pkt(8, 0, &[0xaf, 0, 0x12])), Some((true, true)));
    }

    #[test]
    fn single_track_decides_after_the_span() {
        let mut p = TrackProbe::new();
        for ts in (0..PROBE_SPAN_MS).step_by(23) {
            assert_eq!(p.push(&pkt(8, 500 + ts, &[0xaf, 1, 0])), None);
        }
        assert_eq!(
            p.push(&pkt(8, 500 + PROBE_SPAN_MS, &[0xaf, 1, 0])),
            Some((true, false))
        );
        assert_eq!(TrackProbe::new().seen(), (true, true));
    }

    #[test]
    fn chunk_framing() {
        let mut out = BytesMut::new();
        put_chunk_size_line(&mut out, 0x1a2b);
        put_chunk_size_line(&mut out, 5);
        assert_eq!(&out[..], b"1a2b\r\n5\r\n");
    }
}
