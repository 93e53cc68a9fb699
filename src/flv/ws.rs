//! WebSocket (RFC 6455) pieces for WebSocket-FLV: the handshake's accept key and frame
//! encoding/decoding. Sans-I/O; SHA-1 and base64 are small enough to keep here (SHA-1 is used
//! only for the handshake, where its weakness does not matter).

use bytes::{Buf, BufMut, Bytes, BytesMut};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// Largest client frame payload we accept (viewers only send control frames and small text).
pub const MAX_CLIENT_PAYLOAD: usize = 64 * 1024;

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(client_key: &str) -> String {
    let mut input = client_key.trim().as_bytes().to_vec();
    input.extend_from_slice(GUID.as_bytes());
    base64(&sha1(&input))
}

/// SHA-1 (FIPS 180-4).
pub fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xefcd_ab89,
        0x98ba_dcfe,
        0x1032_5476,
        0xc3d2_e1f0,
    ];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, &wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5a82_7999),
                20..=39 => (b ^ c ^ d, 0x6ed9_eba1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8f1b_bcdc),
                _ => (b ^ c ^ d, 0xca62_c1d6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (hv, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *hv = hv.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

/// Standard base64 with padding.
pub fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The header of an unmasked server frame (FIN set) carrying `len` payload bytes; the payload
/// itself is sent after it as separate buffers, so FLV bytes are never copied.
pub fn frame_header(opcode: u8, len: usize) -> Bytes {
    let mut out = BytesMut::with_capacity(10);
    put_frame_header(&mut out, opcode, len);
    out.freeze()
}

/// Appends the header of an unmasked, final server frame to `out` (at most 10 bytes).
pub fn put_frame_header(out: &mut impl BufMut, opcode: u8, len: usize) {
    out.put_u8(0x80 | (opcode & 0x0f));
    if len < 126 {
        out.put_u8(len as u8);
    } else if len <= usize::from(u16::MAX) {
        out.put_u8(126);
        out.put_u16(len as u16);
    } else {
        out.put_u8(127);
        out.put_u64(len as u64);
    }
}

/// A whole unmasked server frame.
pub fn frame(opcode: u8, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::from(&frame_header(opcode, payload.len())[..]);
    out.put_slice(payload);
    out.freeze()
}

/// One decoded client frame (payload unmasked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    pub fin: bool,
    pub opcode: u8,
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsError {
    /// Clients must mask every frame (RFC 6455 §5.1).
    Unmasked,
    TooLarge(u64),
    /// Reserved bits set without a negotiated extension, or an unknown opcode.
    Protocol(&'static str),
}

impl std::fmt::Display for WsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WsError::Unmasked => write!(f, "unmasked client frame"),
            WsError::TooLarge(n) => write!(f, "client frame of {n} bytes is too large"),
            WsError::Protocol(why) => write!(f, "websocket protocol error: {why}"),
        }
    }
}

/// Decodes the next client frame from the front of `buf`, consuming it. `Ok(None)`: need more
/// bytes. Payloads are bounded by `MAX_CLIENT_PAYLOAD`, so a client cannot make us buffer more.
pub fn decode_client_frame(buf: &mut BytesMut) -> Result<Option<ClientFrame>, WsError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let b0 = buf[0];
    let b1 = buf[1];
    if b0 & 0x70 != 0 {
        return Err(WsError::Protocol("reserved bits set"));
    }
    let opcode = b0 & 0x0f;
    if !matches!(
        opcode,
        OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
    ) {
        return Err(WsError::Protocol("unknown opcode"));
    }
    if b1 & 0x80 == 0 {
        return Err(WsError::Unmasked);
    }
    let (len, mut pos) = match b1 & 0x7f {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    if len > MAX_CLIENT_PAYLOAD as u64 {
        return Err(WsError::TooLarge(len));
    }
    if opcode >= OP_CLOSE && (len > 125 || b0 & 0x80 == 0) {
        return Err(WsError::Protocol("bad control frame"));
    }
    let len = len as usize;
    if buf.len() < pos + 4 + len {
        return Ok(None);
    }
    let mask = [buf[pos], buf[pos + 1], buf[pos + 2], buf[pos + 3]];
    pos += 4;
    buf.advance(pos);
    let mut payload = buf.split_to(len);
    for (i, b) in payload.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
    Ok(Some(ClientFrame {
        fin: b0 & 0x80 != 0,
        opcode,
        payload: payload.freeze(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(&sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
    }

    #[test]
    fn base64_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }

    #[test]
    fn rfc6455_accept_example() {
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    #[test]
    fn server_frame_lengths() {
        assert_eq!(&frame_header(OP_BINARY, 5)[..], &[0x82, 5]);
        assert_eq!(&frame_header(OP_BINARY, 126)[..], &[0x82, 126, 0, 126]);
        assert_eq!(
            &frame_header(OP_BINARY, 65535)[..],
            &[0x82, 126, 0xff, 0xff]
        );
        assert_eq!(
            &frame_header(OP_BINARY, 65536)[..],
            &[0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]
        );
        assert_eq!(&frame(OP_PONG, b"hi")[..], &[0x8a, 2, b'h', b'i']);
    }

    fn masked(opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
        let mut out = vec![0x80 | opcode];
        if payload.len() < 126 {
            out.push(0x80 | payload.len() as u8);
        } else {
            out.push(0x80 | 126);
            out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn decodes_rfc_masked_hello_in_pieces() {
        // RFC 6455 §5.7: a masked text "Hello".
        let raw = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        for cut in 0..raw.len() {
            let mut b = BytesMut::from(&raw[..cut]);
            assert_eq!(decode_client_frame(&mut b), Ok(None));
        }
        let mut b = BytesMut::from(&raw[..]);
        let f = decode_client_frame(&mut b).unwrap().unwrap();
        assert_eq!(
            (f.fin, f.opcode, &f.payload[..]),
            (true, OP_TEXT, &b"Hello"[..])
        );
        assert!(b.is_empty());
    }

    #[test]
    fn two_frames_and_medium_length() {
        let big = vec![7u8; 300];
        let mut raw = masked(OP_PING, b"p", [1, 2, 3, 4]);
        raw.extend(masked(OP_BINARY, &big, [9, 8, 7, 6]));
        let mut b = BytesMut::from(&raw[..]);
        assert_eq!(
            decode_client_frame(&mut b).unwrap().unwrap().opcode,
            OP_PING
        );
        let f = decode_client_frame(&mut b).unwrap().unwrap();
        assert_eq!(&f.payload[..], &big[..]);
    }

    #[test]
    fn rejects_bad_frames() {
        let mut b = BytesMut::from(&[0x81u8, 0x05, b'H', b'e', b'l', b'l', b'o'][..]);
        assert_eq!(decode_client_frame(&mut b), Err(WsError::Unmasked));
        let mut b = BytesMut::from(&[0x82u8, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0][..]);
        assert!(matches!(
            decode_client_frame(&mut b),
            Err(WsError::TooLarge(_))
        ));
        let mut b = BytesMut::from(&[0xc2u8, 0x80, 0, 0, 0, 0][..]);
        assert!(matches!(
            decode_client_frame(&mut b),
            Err(WsError::Protocol(_))
        ));
        let mut b = BytesMut::from(&[0x09u8, 0x80, 0, 0, 0, 0][..]);
        assert!(matches!(
            decode_client_frame(&mut b),
            Err(WsError::Protocol(_))
        ));
    }

    proptest! {
        #[test]
        fn never_panics(data in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut b = BytesMut::from(&data[..]);
            for _ in 0..10 {
                match decode_client_frame(&mut b) {
                    Ok(Some(_)) => {}
                    _ => break,
                }
            }
        }
    }
}
