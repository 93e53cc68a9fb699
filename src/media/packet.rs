use bytes::Bytes;

/// What a packet carries. The payload is always the body of an FLV tag of that kind (which is
/// also the RTMP message payload), so no protocol needs to re-encode media.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketKind {
    Audio,
    Video,
    /// AMF0 `onMetaData` + object, with any `@setDataFrame` prefix already removed.
    Meta,
}

/// One media message of a stream. Cheap to clone (the payload is refcounted) and `Send`, so it
/// crosses shards as is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub kind: PacketKind,
    /// Milliseconds on the stream's normalised timeline (see `TimestampNormaliser`).
    pub timestamp: u32,
    /// A video frame a decoder can start from (FLV frame type 1), not a sequence header.
    pub keyframe: bool,
    /// A codec configuration record (AVC/HEVC decoder configuration, AAC AudioSpecificConfig).
    pub sequence_header: bool,
    pub payload: Bytes,
}

/// RTMP/FLV message type ids of the three kinds.
pub const TYPE_AUDIO: u8 = 8;
pub const TYPE_VIDEO: u8 = 9;
pub const TYPE_DATA_AMF0: u8 = 18;

const VIDEO_FRAME_KEY: u8 = 1;
const VIDEO_CODEC_AVC: u8 = 7;
const VIDEO_CODEC_HEVC_LEGACY: u8 = 12;
const VIDEO_CODEC_AV1_LEGACY: u8 = 13;
/// Enhanced RTMP: the top bit of the first video byte announces a FourCC header.
const VIDEO_EX_HEADER: u8 = 0x80;
const VIDEO_EX_SEQUENCE_START: u8 = 0;
const VIDEO_EX_MPEG2TS_SEQUENCE_START: u8 = 5;
const AUDIO_FORMAT_AAC: u8 = 10;

impl Packet {
    /// A packet from a message received over RTMP (publisher or pull relay). AMF3 data messages
    /// (type 15) carry one format byte before plain AMF0, so they become ordinary AMF0 data.
    /// Metadata and sequence headers live as long as the stream and get their own copy: the
    /// received payload shares its chunk decoder's input buffer (up to a whole socket read),
    /// which it would otherwise pin for that long.
    pub fn from_rtmp_message(type_id: u8, timestamp: u32, payload: Bytes) -> Option<Packet> {
        let (type_id, payload) = if type_id == 15 && !payload.is_empty() {
            (TYPE_DATA_AMF0, payload.slice(1..))
        } else {
            (type_id, payload)
        };
        let mut p = Packet::from_message(type_id, timestamp, payload)?;
        if p.kind == PacketKind::Meta || p.sequence_header {
            p.payload = Bytes::copy_from_slice(&p.payload);
        }
        Some(p)
    }

    /// Builds a packet from an RTMP message, classifying it from the FLV tag header bytes.
    /// Returns `None` for message types that are not media and for empty payloads.
    pub fn from_message(type_id: u8, timestamp: u32, payload: Bytes) -> Option<Packet> {
        let kind = match type_id {
            TYPE_AUDIO => PacketKind::Audio,
            TYPE_VIDEO => PacketKind::Video,
            TYPE_DATA_AMF0 => PacketKind::Meta,
            _ => return None,
        };
        if payload.is_empty() {
            return None;
        }
        let (keyframe, sequence_header) = match kind {
            PacketKind::Video => classify_video(&payload),
            PacketKind::Audio => (false, is_aac_sequence_header(&payload)),
            PacketKind::Meta => (false, false),
        };
        Some(Packet {
            kind,
            timestamp,
            keyframe,
            sequence_header,
            payload,
        })
    }

    /// The RTMP/FLV message type id of this packet.
    pub fn type_id(&self) -> u8 {
        match self.kind {
            PacketKind::Audio => TYPE_AUDIO,
            PacketKind::Video => TYPE_VIDEO,
            PacketKind::Meta => TYPE_DATA_AMF0,
        }
    }

    /// True for an AMF0 `onMetaData` data message (other data, e.g. cue points, is relayed
    /// but not cached as the stream's metadata).
    pub fn is_on_metadata(&self) -> bool {
        self.kind == PacketKind::Meta && self.payload.starts_with(b"\x02\x00\x0aonMetaData")
    }

    pub fn is_video(&self) -> bool {
        self.kind == PacketKind::Video
    }

    pub fn is_audio(&self) -> bool {
        self.kind == PacketKind::Audio
    }
}

/// Returns (keyframe, sequence header) for a video tag body, legacy or enhanced RTMP.
fn classify_video(p: &[u8]) -> (bool, bool) {
    let b0 = p[0];
    if b0 & VIDEO_EX_HEADER != 0 {
        let frame_type = (b0 >> 4) & 0x07;
        let packet_type = b0 & 0x0f;
        let seq = packet_type == VIDEO_EX_SEQUENCE_START
            || packet_type == VIDEO_EX_MPEG2TS_SEQUENCE_START;
        return (frame_type == VIDEO_FRAME_KEY && !seq, seq);
    }
    let frame_type = b0 >> 4;
    let codec = b0 & 0x0f;
    let has_packet_type = matches!(
        codec,
        VIDEO_CODEC_AVC | VIDEO_CODEC_HEVC_LEGACY | VIDEO_CODEC_AV1_LEGACY
    );
    let seq = has_packet_type && p.len() > 1 && p[1] == 0;
    (frame_type == VIDEO_FRAME_KEY && !seq, seq)
}

fn is_aac_sequence_header(p: &[u8]) -> bool {
    p[0] >> 4 == AUDIO_FORMAT_AAC && p.len() > 1 && p[1] == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(t: u8, body: &[u8]) -> Option<Packet> {
        Packet::from_message(t, 0, Bytes::copy_from_slice(body))
    }

    #[test]
    fn rtmp_messages_amf3_data_and_long_lived_copies() {
        // One received block holding a sequence header and an inter frame.
        let block = Bytes::from_static(&[0x17, 0, 0, 0, 0, 1, 0x27, 1, 0, 0, 0, 9]);
        let inside = |p: &Packet| {
            let r = block.as_ptr_range();
            r.contains(&p.payload.as_ptr())
        };
        let seq = Packet::from_rtmp_message(9, 0, block.slice(..6)).unwrap();
        assert!(seq.sequence_header);
        assert_eq!(&seq.payload[..], &block[..6]);
        assert!(
            !inside(&seq),
            "kept for the stream's life: must not pin the block"
        );
        let inter = Packet::from_rtmp_message(9, 40, block.slice(6..)).unwrap();
        assert!(inside(&inter), "frames stay zero-copy");
        // AMF3 data: the format byte goes, the AMF0 body stays.
        let mut amf3 = vec![0u8, 0x02, 0, 10];
        amf3.extend_from_slice(b"onMetaData");
        let meta = Packet::from_rtmp_message(15, 0, Bytes::from(amf3)).unwrap();
        assert_eq!(meta.kind, PacketKind::Meta);
        assert_eq!(meta.type_id(), TYPE_DATA_AMF0);
        assert_eq!(&meta.payload[..3], &[0x02, 0, 10]);
        assert!(Packet::from_rtmp_message(15, 0, Bytes::new()).is_none());
    }

    #[test]
    fn classifies_avc() {
        let seq = pkt(9, &[0x17, 0, 0, 0, 0, 1]).unwrap();
        assert!(seq.sequence_header && !seq.keyframe);
        let key = pkt(9, &[0x17, 1, 0, 0, 0, 9]).unwrap();
        assert!(key.keyframe && !key.sequence_header);
        let inter = pkt(9, &[0x27, 1, 0, 0, 0, 9]).unwrap();
        assert!(!inter.keyframe && !inter.sequence_header);
    }

    #[test]
    fn classifies_enhanced_hevc() {
        // IsExHeader | key frame | SequenceStart, FourCC hvc1
        let seq = pkt(9, &[0x90, b'h', b'v', b'c', b'1', 1]).unwrap();
        assert!(seq.sequence_header && !seq.keyframe);
        // IsExHeader | key frame | CodedFramesX
        let key = pkt(9, &[0x93, b'h', b'v', b'c', b'1', 1]).unwrap();
        assert!(key.keyframe);
    }

    #[test]
    fn classifies_aac_and_mp3() {
        assert!(pkt(8, &[0xaf, 0, 0x12, 0x10]).unwrap().sequence_header);
        assert!(!pkt(8, &[0xaf, 1, 0x21]).unwrap().sequence_header);
        assert!(!pkt(8, &[0x2f]).unwrap().sequence_header);
        // a one-byte AAC tag (livego panicked on this) is plain audio
        assert!(!pkt(8, &[0xaf]).unwrap().sequence_header);
    }

    #[test]
    fn rejects_non_media_and_empty() {
        assert!(pkt(20, &[2, 0, 1, b'x']).is_none());
        assert!(pkt(9, &[]).is_none());
        assert_eq!(pkt(18, &[2]).unwrap().kind, PacketKind::Meta);
    }
}
