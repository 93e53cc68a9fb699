//! RTMP chunk stream layer: the message model, the decoder (chunks in, messages out) and the
//! shared encoder (one message in, chunks out).

mod decoder;
mod encoder;

pub use decoder::{ChunkDecoder, ChunkError, ChunkLimits};
pub use encoder::{encode_message, encoded_len};

use bytes::Bytes;

/// Chunk size every connection starts with, in both directions.
pub const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest chunk size the protocol can express (the field is 31 bits).
pub const MAX_CHUNK_SIZE: u32 = 0x7FFF_FFFF;
/// Largest message the 24-bit length field can express.
pub const MAX_MESSAGE_LEN: usize = 0xFF_FFFF;
/// Timestamps at or above this are sent in the extended timestamp field.
pub const EXTENDED_TIMESTAMP: u32 = 0xFF_FFFF;
/// Lowest and highest chunk stream ids (0 and 1 select the 2- and 3-byte basic headers).
pub const MIN_CSID: u32 = 2;
pub const MAX_CSID: u32 = 65599;

pub const SET_CHUNK_SIZE: u8 = 1;
pub const ABORT: u8 = 2;
pub const ACKNOWLEDGEMENT: u8 = 3;
pub const USER_CONTROL: u8 = 4;
pub const WINDOW_ACK_SIZE: u8 = 5;
pub const SET_PEER_BANDWIDTH: u8 = 6;
pub const AUDIO: u8 = 8;
pub const VIDEO: u8 = 9;
pub const DATA_AMF3: u8 = 15;
pub const SHARED_OBJECT_AMF3: u8 = 16;
pub const COMMAND_AMF3: u8 = 17;
pub const DATA_AMF0: u8 = 18;
pub const SHARED_OBJECT_AMF0: u8 = 19;
pub const COMMAND_AMF0: u8 = 20;
pub const AGGREGATE: u8 = 22;

/// One complete RTMP message. `timestamp` is absolute (deltas already accumulated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub type_id: u8,
    pub timestamp: u32,
    pub stream_id: u32,
    pub payload: Bytes,
}
