//! The chunk serialiser shared by every writer: sessions use it for control and command
//! messages, the engine uses it once per media packet for all players of a shard.

use bytes::{BufMut, BytesMut};

use super::{Message, EXTENDED_TIMESTAMP, MAX_CSID, MIN_CSID};

fn basic_header_len(csid: u32) -> usize {
    match csid {
        0..=63 => 1,
        64..=319 => 2,
        _ => 3,
    }
}

#[inline]
fn put_basic_header(out: &mut BytesMut, fmt: u8, csid: u32) {
    match csid {
        0..=63 => out.put_u8((fmt << 6) | csid as u8),
        64..=319 => out.put_slice(&[fmt << 6, (csid - 64) as u8]),
        _ => {
            let id = csid - 64;
            out.put_slice(&[(fmt << 6) | 1, id as u8, (id >> 8) as u8]);
        }
    }
}

fn clamp_csid(csid: u32) -> u32 {
    debug_assert!(
        (MIN_CSID..=MAX_CSID).contains(&csid),
        "chunk stream id {csid} out of range"
    );
    csid.clamp(MIN_CSID, MAX_CSID)
}

/// Exact number of bytes [`encode_message`] appends.
pub fn encoded_len(chunk_size: usize, csid: u32, msg: &Message) -> usize {
    let chunk_size = chunk_size.max(1);
    let basic = basic_header_len(clamp_csid(csid));
    let ext = if msg.timestamp >= EXTENDED_TIMESTAMP {
        4
    } else {
        0
    };
    let len = msg.payload.len();
    let continuations = len.saturating_sub(1) / chunk_size;
    basic + 11 + ext + len + continuations * (basic + ext)
}

/// Appends `msg` as chunks: a type-0 header (absolute timestamp) on the first chunk and type-3
/// headers on the rest, the extended timestamp repeated in every chunk when needed. Every
/// message is self-contained, so the bytes are identical for every receiver and can be
/// interleaved with other writers' messages on other chunk streams.
///
/// The payload must fit the 24-bit length field (decoded messages always do); a `chunk_size`
/// of 0 is treated as 1.
pub fn encode_message(out: &mut BytesMut, chunk_size: usize, csid: u32, msg: &Message) {
    let chunk_size = chunk_size.max(1);
    let csid = clamp_csid(csid);
    debug_assert!(msg.payload.len() <= super::MAX_MESSAGE_LEN);
    out.reserve(encoded_len(chunk_size, csid, msg));

    let ext = msg.timestamp >= EXTENDED_TIMESTAMP;
    let ts_field = msg.timestamp.min(EXTENDED_TIMESTAMP);
    let len = msg.payload.len() as u32;
    put_basic_header(out, 0, csid);
    let mut header = [0u8; 11];
    header[0..3].copy_from_slice(&ts_field.to_be_bytes()[1..]);
    header[3..6].copy_from_slice(&len.to_be_bytes()[1..]);
    header[6] = msg.type_id;
    header[7..11].copy_from_slice(&msg.stream_id.to_le_bytes());
    out.put_slice(&header);
    if ext {
        out.put_u32(msg.timestamp);
    }

    let mut pieces = msg.payload.chunks(chunk_size);
    if let Some(first) = pieces.next() {
        out.put_slice(first);
    }
    for piece in pieces {
        put_basic_header(out, 3, csid);
        if ext {
            out.put_u32(msg.timestamp);
        }
        out.put_slice(piece);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg(type_id: u8, timestamp: u32, stream_id: u32, payload: &[u8]) -> Message {
        Message {
            type_id,
            timestamp,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn single_chunk_bytes() {
        let mut out = BytesMut::new();
        encode_message(&mut out, 128, 3, &msg(20, 0x010203, 1, b"ab"));
        assert_eq!(
            out.to_vec(),
            [0x03, 1, 2, 3, 0, 0, 2, 20, 1, 0, 0, 0, b'a', b'b']
        );
    }

    #[test]
    fn continuation_chunks_and_csid_forms() {
        let mut out = BytesMut::new();
        encode_message(&mut out, 2, 64, &msg(9, 5, 0, b"abcde"));
        assert_eq!(
            out.to_vec(),
            [
                0x00, 0, 0, 0, 5, 0, 0, 5, 9, 0, 0, 0, 0, b'a', b'b', 0xC0, 0, b'c', b'd', 0xC0, 0,
                b'e'
            ]
        );
        let mut out = BytesMut::new();
        encode_message(&mut out, 128, 65599, &msg(8, 0, 0, b""));
        assert_eq!(
            out.to_vec(),
            [0x01, 0xFF, 0xFF, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0]
        );
    }

    #[test]
    fn extended_timestamp_in_every_chunk() {
        let mut out = BytesMut::new();
        encode_message(&mut out, 1, 4, &msg(8, 0x0100_0000, 1, b"xy"));
        assert_eq!(
            out.to_vec(),
            [
                0x04, 0xFF, 0xFF, 0xFF, 0, 0, 2, 8, 1, 0, 0, 0, 1, 0, 0, 0, b'x', 0xC4, 1, 0, 0, 0,
                b'y'
            ]
        );
        // Exactly 0xFFFFFF also uses the escape.
        let mut out = BytesMut::new();
        encode_message(&mut out, 128, 4, &msg(8, 0xFF_FFFF, 1, b""));
        assert_eq!(&out[1..4], &[0xFF, 0xFF, 0xFF]);
        assert_eq!(&out[12..16], &[0, 0xFF, 0xFF, 0xFF]);
    }

    #[test]
    fn encoded_len_is_exact() {
        for (cs, csid, ts, n) in [
            (128usize, 3u32, 0u32, 0usize),
            (128, 3, 0, 128),
            (128, 3, 0, 129),
            (1, 300, 0x0100_0000, 7),
            (4096, 6, 5, 16384),
            (0, 2, 0, 3),
        ] {
            let m = msg(9, ts, 1, &vec![7u8; n]);
            let mut out = BytesMut::new();
            encode_message(&mut out, cs, csid, &m);
            assert_eq!(out.len(), encoded_len(cs, csid, &m), "{cs} {csid} {ts} {n}");
        }
    }
}
