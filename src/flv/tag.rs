use bytes::{BufMut, BytesMut};

/// 11-byte tag header before each tag body.
pub const TAG_HEADER_LEN: usize = 11;
/// FLV header (9 bytes) plus PreviousTagSize0 (4 bytes).
pub const FILE_HEADER_LEN: usize = 13;

const FLAG_AUDIO: u8 = 0x04;
const FLAG_VIDEO: u8 = 0x01;

/// The FLV file header with the flags of the tracks really present, then PreviousTagSize0.
/// (livego always claimed audio+video, which makes some players wait for a missing track.)
pub fn file_header(has_audio: bool, has_video: bool) -> [u8; FILE_HEADER_LEN] {
    let mut flags = 0;
    if has_audio {
        flags |= FLAG_AUDIO;
    }
    if has_video {
        flags |= FLAG_VIDEO;
    }
    [b'F', b'L', b'V', 1, flags, 0, 0, 0, 9, 0, 0, 0, 0]
}

/// Bytes of one encoded tag: header, body, PreviousTagSize.
pub fn tag_len(body_len: usize) -> usize {
    TAG_HEADER_LEN + body_len + 4
}

/// Appends one tag: type, 24-bit body size, timestamp (low 24 bits then the extension byte),
/// stream id 0, the body, then PreviousTagSize (header + body).
pub fn encode_tag(out: &mut BytesMut, tag_type: u8, timestamp: u32, body: &[u8]) {
    out.reserve(tag_len(body.len()));
    let size = body.len() as u32;
    out.put_u8(tag_type);
    out.put_slice(&size.to_be_bytes()[1..]);
    out.put_slice(&(timestamp & 0x00ff_ffff).to_be_bytes()[1..]);
    out.put_u8((timestamp >> 24) as u8);
    out.put_slice(&[0, 0, 0]);
    out.put_slice(body);
    out.put_u32(TAG_HEADER_LEN as u32 + size);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_flags_follow_tracks() {
        assert_eq!(file_header(true, true)[4], 0x05);
        assert_eq!(file_header(true, false)[4], 0x04);
        assert_eq!(file_header(false, true)[4], 0x01);
        assert_eq!(&file_header(true, true)[..4], b"FLV\x01");
        assert_eq!(&file_header(true, true)[5..], &[0, 0, 0, 9, 0, 0, 0, 0]);
    }

    #[test]
    fn tag_bytes() {
        let mut out = BytesMut::new();
        encode_tag(&mut out, 9, 0x0123_4567, &[0x17, 1, 2]);
        assert_eq!(
            &out[..],
            &[9, 0, 0, 3, 0x23, 0x45, 0x67, 0x01, 0, 0, 0, 0x17, 1, 2, 0, 0, 0, 14]
        );
        assert_eq!(out.len(), tag_len(3));
    }
}
