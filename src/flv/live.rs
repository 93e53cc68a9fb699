//! Pieces of a live FLV response that do not touch sockets: which tracks to announce in the
//! file header, and the framing (HTTP/1.1 chunked, WebSocket, none) around shared tag bytes.

use std::ops::Deref;

use bytes::Bytes;

use super::ws;

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
            // Wrap-safe, like every comparison of stream timestamps.
            if p.timestamp.wrapping_sub(first) as i32 >= PROBE_SPAN_MS as i32 {
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

/// How a live FLV body is framed on the wire. The tag bytes themselves are shared by every
/// viewer; only a few bytes of framing before and after them are the viewer's own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// HTTP/1.1 chunked: size line, data, CRLF.
    Chunked,
    /// HTTP/1.0: the body is delimited by the connection's end.
    Plain,
    /// One binary WebSocket message per piece.
    WebSocket,
}

impl BodyFraming {
    /// What goes before a piece of `len` body bytes.
    pub fn head(self, len: usize) -> FrameHead {
        let mut h = FrameHead {
            buf: [0; FrameHead::MAX],
            len: 0,
        };
        match self {
            BodyFraming::Chunked => {
                let digits = (usize::BITS - len.leading_zeros()).div_ceil(4).max(1) as usize;
                for (i, b) in h.buf[..digits].iter_mut().enumerate() {
                    let nibble = (len >> (4 * (digits - 1 - i))) & 0xf;
                    *b = b"0123456789abcdef"[nibble];
                }
                h.buf[digits..digits + 2].copy_from_slice(CRLF);
                h.len = digits + 2;
            }
            BodyFraming::WebSocket => {
                let mut w = &mut h.buf[..];
                ws::put_frame_header(&mut w, ws::OP_BINARY, len);
                h.len = FrameHead::MAX - w.len();
            }
            BodyFraming::Plain => {}
        }
        h
    }

    /// What goes after a piece of body.
    pub fn tail(self) -> &'static [u8] {
        match self {
            BodyFraming::Chunked => CRLF,
            BodyFraming::WebSocket | BodyFraming::Plain => &[],
        }
    }

    /// What ends the body (the connection's end for `Plain`).
    pub fn end(self) -> Option<Bytes> {
        match self {
            BodyFraming::Chunked => Some(Bytes::from_static(LAST_CHUNK)),
            BodyFraming::WebSocket => Some(ws::frame(ws::OP_CLOSE, &1000u16.to_be_bytes())),
            BodyFraming::Plain => None,
        }
    }
}

/// The framing before one piece of body, built on the stack (no allocation per viewer per
/// write).
#[derive(Clone, Copy, Debug)]
pub struct FrameHead {
    buf: [u8; FrameHead::MAX],
    len: usize,
}

impl FrameHead {
    /// A chunk size line (16 hex digits and CRLF) is the longest; a WebSocket header is 10.
    const MAX: usize = 18;
    pub const EMPTY: FrameHead = FrameHead {
        buf: [0; FrameHead::MAX],
        len: 0,
    };
}

impl Deref for FrameHead {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[..self.len]
    }
}

pub const CRLF: &[u8] = b"\r\n";
/// The last chunk with an empty trailer: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;

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
        // The same across the 32-bit wrap of stream timestamps.
        let mut p = TrackProbe::new();
        let start = u32::MAX - 400;
        for ts in (0..PROBE_SPAN_MS).step_by(23) {
            assert_eq!(p.push(&pkt(8, start.wrapping_add(ts), &[0xaf, 1, 0])), None);
        }
        assert_eq!(
            p.push(&pkt(8, start.wrapping_add(PROBE_SPAN_MS), &[0xaf, 1, 0])),
            Some((true, false))
        );
    }

    #[test]
    fn chunk_framing() {
        let head = |n| BodyFraming::Chunked.head(n).to_vec();
        assert_eq!(head(0x1a2b), b"1a2b\r\n");
        assert_eq!(head(5), b"5\r\n");
        assert_eq!(head(0), b"0\r\n");
        assert_eq!(head(0x10), b"10\r\n");
        assert_eq!(head(usize::MAX), b"ffffffffffffffff\r\n");
        assert_eq!(BodyFraming::Chunked.tail(), b"\r\n");
        assert_eq!(&*BodyFraming::Chunked.end().unwrap(), b"0\r\n\r\n");
    }

    #[test]
    fn websocket_and_plain_framing() {
        let head = |n| BodyFraming::WebSocket.head(n).to_vec();
        assert_eq!(head(5), [0x82, 5]);
        assert_eq!(head(300), [0x82, 126, 1, 44]);
        assert_eq!(head(70_000), [0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
        assert!(BodyFraming::WebSocket.tail().is_empty());
        assert_eq!(
            &*BodyFraming::WebSocket.end().unwrap(),
            &[0x88, 2, 0x03, 0xe8]
        );
        assert!(BodyFraming::Plain.head(100).is_empty());
        assert!(BodyFraming::Plain.tail().is_empty());
        assert_eq!(BodyFraming::Plain.end(), None);
        assert!(FrameHead::EMPTY.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn chunk_head_is_the_hex_length(len in proptest::num::usize::ANY) {
            let head = BodyFraming::Chunked.head(len);
            let text = std::str::from_utf8(&head).unwrap();
            let hex = text.strip_suffix("\r\n").unwrap();
            proptest::prop_assert_eq!(usize::from_str_radix(hex, 16).unwrap(), len);
            proptest::prop_assert_eq!(hex, format!("{len:x}"));
        }
    }
}
