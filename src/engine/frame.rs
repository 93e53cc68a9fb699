use std::cell::OnceCell;

use bytes::{Bytes, BytesMut};

use crate::media::Packet;
use crate::rtmp::chunk::{encode_message, Message};

/// Chunk size announced to every RTMP player. One value for all players is what lets a frame
/// be serialised once per shard and written to every player unchanged.
pub const OUT_CHUNK_SIZE: u32 = 4096;
/// Message stream id every player is given by `createStream`.
pub const PLAY_STREAM_ID: u32 = 1;

const CSID_AUDIO: u32 = 4;
const CSID_DATA: u32 = 5;
const CSID_VIDEO: u32 = 6;

/// A packet as it is fanned out on one shard: the packet plus its wire forms, each built at
/// most once, on first use, and then shared by every player of the shard (players hold
/// `Rc<Frame>`; the wire bytes are refcounted `Bytes`).
pub struct Frame {
    pub packet: Packet,
    rtmp: OnceCell<Bytes>,
    flv: OnceCell<Bytes>,
}

impl Frame {
    pub fn new(packet: Packet) -> Self {
        Frame {
            packet,
            rtmp: OnceCell::new(),
            flv: OnceCell::new(),
        }
    }

    /// The packet as RTMP chunks: a type-0 header (absolute timestamp, stream id 1) then
    /// type-3 continuations at `OUT_CHUNK_SIZE`.
    pub fn rtmp(&self) -> &Bytes {
        self.rtmp.get_or_init(|| {
            let p = &self.packet;
            let csid = match p.kind {
                crate::media::PacketKind::Audio => CSID_AUDIO,
                crate::media::PacketKind::Video => CSID_VIDEO,
                crate::media::PacketKind::Meta => CSID_DATA,
            };
            let msg = Message {
                type_id: p.type_id(),
                timestamp: p.timestamp,
                stream_id: PLAY_STREAM_ID,
                payload: p.payload.clone(),
            };
            let mut out = BytesMut::new();
            encode_message(&mut out, OUT_CHUNK_SIZE as usize, csid, &msg);
            out.freeze()
        })
    }

    /// The packet as one FLV tag (header, body, PreviousTagSize), for HTTP-FLV viewers and
    /// recordings.
    pub fn flv(&self) -> &Bytes {
        self.flv.get_or_init(|| {
            let p = &self.packet;
            let mut out = BytesMut::with_capacity(crate::flv::tag_len(p.payload.len()));
            crate::flv::encode_tag(&mut out, p.type_id(), p.timestamp, &p.payload);
            out.freeze()
        })
    }

    /// Bytes this frame occupies on the wire as RTMP (queue accounting).
    pub fn wire_len(&self) -> usize {
        let n = self.packet.payload.len();
        n + 12 + n / OUT_CHUNK_SIZE as usize
    }
}

impl AsRef<Packet> for std::rc::Rc<Frame> {
    fn as_ref(&self) -> &Packet {
        &self.packet
    }
}
