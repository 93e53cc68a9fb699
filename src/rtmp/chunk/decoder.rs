//! Chunk stream decoder: bytes in, complete messages out.
//!
//! Input is appended to one buffer; a chunk is only consumed once its header and payload piece
//! are all present, so parsing restarts cleanly after a short read. A message that fits in one
//! chunk is a zero-copy slice of that buffer; a multi-chunk message is assembled into a buffer
//! of exactly its length, allocated only after the length passed the size limit and the budget
//! that all partly received messages of the peer share.

use std::fmt;

use bytes::{Buf, BytesMut};

use super::{Message, DEFAULT_CHUNK_SIZE, EXTENDED_TIMESTAMP, MAX_CHUNK_SIZE};

/// Resource limits of one decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkLimits {
    /// Largest message accepted (the wire format cannot express more than 16 MiB - 1).
    pub max_message_size: usize,
    /// Most distinct chunk stream ids one peer may use.
    pub max_chunk_streams: usize,
    /// Largest chunk size the peer may announce (never more than 2^31 - 1).
    pub max_chunk_size: u32,
}

impl Default for ChunkLimits {
    fn default() -> Self {
        ChunkLimits {
            max_message_size: 16 * 1024 * 1024,
            max_chunk_streams: 64,
            max_chunk_size: 16 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChunkError {
    MessageTooLarge {
        csid: u32,
        length: usize,
        max: usize,
    },
    TooManyChunkStreams {
        max: usize,
    },
    InvalidChunkSize {
        size: u32,
        max: u32,
    },
    /// A header type that needs previous state arrived on a chunk stream never seen before.
    NoPreviousHeader {
        csid: u32,
        fmt: u8,
    },
    /// A type 0/1/2 header arrived while the chunk stream's previous message was incomplete.
    InterruptedMessage {
        csid: u32,
        fmt: u8,
        missing: usize,
    },
    /// Starting this message would make the partly received messages of all chunk streams
    /// together longer than the decoder's budget.
    AssemblyBudget {
        csid: u32,
        length: usize,
        budget: usize,
    },
}

impl fmt::Display for ChunkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChunkError::MessageTooLarge { csid, length, max } => write!(
                f,
                "chunk stream {csid}: message of {length} bytes exceeds the limit of {max}"
            ),
            ChunkError::TooManyChunkStreams { max } => {
                write!(f, "peer uses more than {max} chunk streams")
            }
            ChunkError::InvalidChunkSize { size, max } => {
                write!(f, "invalid chunk size {size} (allowed 1..={max})")
            }
            ChunkError::NoPreviousHeader { csid, fmt } => write!(
                f,
                "chunk stream {csid}: type-{fmt} header without a previous message header"
            ),
            ChunkError::InterruptedMessage { csid, fmt, missing } => write!(
                f,
                "chunk stream {csid}: type-{fmt} header while {missing} bytes of the previous message are missing"
            ),
            ChunkError::AssemblyBudget {
                csid,
                length,
                budget,
            } => write!(
                f,
                "chunk stream {csid}: a message of {length} bytes would take the partly received \
                 messages past {budget} bytes"
            ),
        }
    }
}

impl std::error::Error for ChunkError {}

/// Per chunk stream state: the last message header (for deltas and header compression) and the
/// message being assembled.
struct ChunkStream {
    csid: u32,
    timestamp: u32,
    /// Delta a type-3 header starting a new message applies (after type 0: the timestamp).
    delta: u32,
    length: usize,
    type_id: u8,
    stream_id: u32,
    /// The last type 0/1/2 header used the extended timestamp field, holding `ext_value`.
    ext: bool,
    ext_value: u32,
    partial: Option<BytesMut>,
}

/// What a parsed (not yet committed) chunk header says.
struct Header {
    fmt: u8,
    csid: u32,
    /// Index into `streams`, or `None` for a new chunk stream.
    index: Option<usize>,
    header_len: usize,
    /// 24-bit field or extended value (timestamp for type 0, delta for 1/2).
    ts: u32,
    ext: bool,
    length: usize,
    type_id: u8,
    stream_id: u32,
}

/// Receive block of a peer that sends media (see [`ChunkDecoder::receive_in_blocks`]).
const MEDIA_BLOCK: usize = 16 << 10;

pub struct ChunkDecoder {
    limits: ChunkLimits,
    chunk_size: usize,
    buf: BytesMut,
    streams: Vec<ChunkStream>,
    /// Least room a refill of `buf` makes (0: just what the read needs).
    block: usize,
    /// Sum of the declared lengths of the partly received messages (their buffers are sized
    /// exactly, so this is what they hold allocated).
    reserved: usize,
}

fn u24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn u32be(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl ChunkDecoder {
    pub fn new(limits: ChunkLimits) -> Self {
        ChunkDecoder {
            limits,
            chunk_size: DEFAULT_CHUNK_SIZE as usize,
            buf: BytesMut::new(),
            streams: Vec::new(),
            block: 0,
            reserved: 0,
        }
    }

    /// How many bytes the partly received messages may reserve together. A peer announcing
    /// long messages on many chunk streams and sending one byte of each would otherwise make
    /// the decoder reserve max_chunk_streams x max_message_size (1 GiB by default). Real
    /// encoders interleave one large message (video) with small ones (audio, data).
    fn assembly_budget(&self) -> usize {
        self.limits.max_message_size.saturating_add(1 << 20)
    }

    pub fn limits(&self) -> &ChunkLimits {
        &self.limits
    }

    pub fn chunk_size(&self) -> u32 {
        self.chunk_size as u32
    }

    /// Applies the peer's Set Chunk Size; values outside 1..=min(2^31-1, max_chunk_size) fail.
    pub fn set_chunk_size(&mut self, size: u32) -> Result<(), ChunkError> {
        let max = self.limits.max_chunk_size.min(MAX_CHUNK_SIZE);
        if size == 0 || size > max {
            return Err(ChunkError::InvalidChunkSize { size, max });
        }
        self.chunk_size = size as usize;
        Ok(())
    }

    /// Drops the partly received message of `csid` (the peer's Abort message).
    pub fn abort(&mut self, csid: u32) {
        if let Some(s) = self.streams.iter_mut().find(|s| s.csid == csid) {
            if s.partial.take().is_some() {
                self.reserved -= s.length;
            }
        }
    }

    /// For a peer that sends media (a publisher, a pulled stream): whole messages are split off
    /// the receive buffer without a copy, so a buffer stays allocated while any of them lives
    /// (a GOP cache keeps them for seconds) and each refill needs a new allocation. Refilling a
    /// 16 KiB block at a time makes that one allocation (and one promotion to a shared buffer)
    /// per block instead of per read: ~8 % of a publisher's CPU. Other peers (players send a
    /// few acks) keep an exactly sized buffer, which is reused in place.
    pub fn receive_in_blocks(&mut self) {
        self.block = MEDIA_BLOCK;
    }

    /// Appends received bytes; call [`next_message`](Self::next_message) until it returns `None`.
    pub fn push(&mut self, input: &[u8]) {
        if self.buf.capacity() - self.buf.len() < input.len() {
            self.buf.reserve(input.len().max(self.block));
        }
        self.buf.extend_from_slice(input);
    }

    /// Bytes received but not yet consumed as whole chunks.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Bytes held in partly assembled messages.
    pub fn assembling(&self) -> usize {
        self.streams
            .iter()
            .filter_map(|s| s.partial.as_ref().map(BytesMut::len))
            .sum()
    }

    /// Removes everything buffered (for handing the connection to another owner).
    pub fn take_buffered(&mut self) -> BytesMut {
        self.buf.split()
    }

    /// Next complete message, `Ok(None)` when more input is needed.
    pub fn next_message(&mut self) -> Result<Option<Message>, ChunkError> {
        Ok(self.next_with_csid()?.map(|(_, m)| m))
    }

    /// Like [`next_message`](Self::next_message), with the chunk stream the message came on
    /// (replies to commands go back on the same chunk stream).
    pub fn next_with_csid(&mut self) -> Result<Option<(u32, Message)>, ChunkError> {
        loop {
            let Some(h) = self.parse_header()? else {
                return Ok(None);
            };
            let csid = h.csid;
            if let Some(m) = self.commit(h)? {
                return Ok(Some((csid, m)));
            }
        }
    }

    /// Parses the header at the front of the buffer without consuming it; `None` when the
    /// header, or the payload piece it announces, is not complete yet.
    fn parse_header(&self) -> Result<Option<Header>, ChunkError> {
        let b = &self.buf[..];
        let Some(&b0) = b.first() else {
            return Ok(None);
        };
        let fmt = b0 >> 6;
        let (csid, mut pos) = match b0 & 0x3F {
            0 => match b.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(None),
            },
            1 => match (b.get(1), b.get(2)) {
                (Some(&b1), Some(&b2)) => (64 + u32::from(b1) + 256 * u32::from(b2), 3),
                _ => return Ok(None),
            },
            n => (u32::from(n), 1),
        };
        let index = self.streams.iter().position(|s| s.csid == csid);
        let state = index.map(|i| &self.streams[i]);
        if let Some(p) = state.and_then(|s| s.partial.as_ref()) {
            if fmt != 3 {
                let missing = state.map_or(0, |s| s.length) - p.len();
                return Err(ChunkError::InterruptedMessage { csid, fmt, missing });
            }
        }
        let field_len = [11, 7, 3, 0][usize::from(fmt)];
        if b.len() < pos + field_len {
            return Ok(None);
        }
        let f = &b[pos..pos + field_len];
        pos += field_len;
        let mut h = Header {
            fmt,
            csid,
            index,
            header_len: 0,
            ts: 0,
            ext: false,
            length: 0,
            type_id: 0,
            stream_id: 0,
        };
        match (fmt, state) {
            (0, _) => {
                h.ts = u24(&f[0..3]);
                h.length = u24(&f[3..6]) as usize;
                h.type_id = f[6];
                h.stream_id = u32::from_le_bytes([f[7], f[8], f[9], f[10]]);
            }
            (1, s) => {
                h.ts = u24(&f[0..3]);
                h.length = u24(&f[3..6]) as usize;
                h.type_id = f[6];
                // A type 1 on a fresh chunk stream (tolerated) implies message stream 0.
                h.stream_id = s.map_or(0, |s| s.stream_id);
            }
            (_, None) => return Err(ChunkError::NoPreviousHeader { csid, fmt }),
            (2, Some(s)) => {
                h.ts = u24(&f[0..3]);
                h.length = s.length;
                h.type_id = s.type_id;
                h.stream_id = s.stream_id;
            }
            (_, Some(s)) => {
                h.ts = s.delta;
                h.length = s.length;
                h.type_id = s.type_id;
                h.stream_id = s.stream_id;
            }
        }
        if fmt < 3 {
            if h.ts == EXTENDED_TIMESTAMP {
                if b.len() < pos + 4 {
                    return Ok(None);
                }
                h.ts = u32be(&b[pos..pos + 4]);
                h.ext = true;
                pos += 4;
            }
        } else if let Some(s) = state.filter(|s| s.ext) {
            // Type 3 after an extended header: the 4 bytes are optional in practice (the spec
            // was ambiguous), so they are consumed only if they repeat the stored value.
            let want = s.ext_value.to_be_bytes();
            let avail = &b[pos..];
            if avail.len() >= 4 {
                if avail[..4] == want {
                    pos += 4;
                }
            } else if avail == &want[..avail.len()] {
                return Ok(None);
            }
        }
        let already = state
            .and_then(|s| s.partial.as_ref())
            .map_or(0, BytesMut::len);
        if already == 0 && h.length > self.limits.max_message_size {
            return Err(ChunkError::MessageTooLarge {
                csid,
                length: h.length,
                max: self.limits.max_message_size,
            });
        }
        if index.is_none() && self.streams.len() >= self.limits.max_chunk_streams {
            return Err(ChunkError::TooManyChunkStreams {
                max: self.limits.max_chunk_streams,
            });
        }
        let piece = (h.length - already).min(self.chunk_size);
        if b.len() < pos + piece {
            return Ok(None);
        }
        if already == 0 && piece < h.length && self.reserved + h.length > self.assembly_budget() {
            return Err(ChunkError::AssemblyBudget {
                csid,
                length: h.length,
                budget: self.assembly_budget(),
            });
        }
        h.header_len = pos;
        Ok(Some(h))
    }

    /// Consumes the chunk described by `h`; returns the message it completes, if any.
    fn commit(&mut self, h: Header) -> Result<Option<Message>, ChunkError> {
        let index = match h.index {
            Some(i) => i,
            None => {
                self.streams.push(ChunkStream {
                    csid: h.csid,
                    timestamp: 0,
                    delta: 0,
                    length: 0,
                    type_id: 0,
                    stream_id: 0,
                    ext: false,
                    ext_value: 0,
                    partial: None,
                });
                self.streams.len() - 1
            }
        };
        let s = &mut self.streams[index];
        let continuing = s.partial.is_some();
        if !continuing {
            match h.fmt {
                0 => {
                    s.timestamp = h.ts;
                    s.delta = h.ts;
                }
                3 => s.timestamp = s.timestamp.wrapping_add(s.delta),
                _ => {
                    s.delta = h.ts;
                    s.timestamp = s.timestamp.wrapping_add(h.ts);
                }
            }
            if h.fmt < 3 {
                s.ext = h.ext;
                s.ext_value = h.ts;
            }
            s.length = h.length;
            s.type_id = h.type_id;
            s.stream_id = h.stream_id;
        }
        self.buf.advance(h.header_len);
        let already = s.partial.as_ref().map_or(0, BytesMut::len);
        let piece = (s.length - already).min(self.chunk_size);
        let payload = if !continuing && piece == s.length {
            self.buf.split_to(piece).freeze()
        } else {
            let p = s.partial.get_or_insert_with(|| {
                self.reserved += s.length;
                BytesMut::with_capacity(s.length)
            });
            p.extend_from_slice(&self.buf[..piece]);
            self.buf.advance(piece);
            if p.len() < s.length {
                return Ok(None);
            }
            self.reserved -= s.length;
            s.partial.take().map(BytesMut::freeze).unwrap_or_default()
        };
        Ok(Some(Message {
            type_id: s.type_id,
            timestamp: s.timestamp,
            stream_id: s.stream_id,
            payload,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{encode_message, MAX_CSID, MIN_CSID};
    use super::*;
    use bytes::{BufMut, Bytes};
    use proptest::prelude::*;
    use std::collections::{BTreeMap, VecDeque};

    fn decoder() -> ChunkDecoder {
        ChunkDecoder::new(ChunkLimits::default())
    }

    fn drain(d: &mut ChunkDecoder) -> Result<Vec<Message>, ChunkError> {
        let mut v = Vec::new();
        while let Some(m) = d.next_message()? {
            v.push(m);
        }
        Ok(v)
    }

    fn msg(type_id: u8, timestamp: u32, stream_id: u32, payload: &[u8]) -> Message {
        Message {
            type_id,
            timestamp,
            stream_id,
            payload: Bytes::copy_from_slice(payload),
        }
    }

    #[test]
    fn reads_of_any_size_land_in_blocks_and_messages_come_out_whole() {
        // Small reads (a player's acks), reads near the block size and reads far beyond it,
        // with and without blocks.
        let reads = [
            1usize,
            7,
            1000,
            MEDIA_BLOCK - 1,
            MEDIA_BLOCK,
            MEDIA_BLOCK + 1,
            300_000,
        ];
        for (read, blocks) in reads.into_iter().flat_map(|r| [(r, false), (r, true)]) {
            let mut d = decoder();
            if blocks {
                d.receive_in_blocks();
            }
            d.set_chunk_size(65536).unwrap();
            let mut bytes = BytesMut::new();
            let big: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
            let sent = [msg(9, 0, 1, &big), msg(8, 10, 1, b"tail")];
            for m in &sent {
                encode_message(&mut bytes, 65536, 6, m);
            }
            let mut got = Vec::new();
            for piece in bytes.chunks(read) {
                d.push(piece);
                got.extend(drain(&mut d).unwrap());
            }
            assert_eq!(got, sent, "reads of {read} bytes, blocks {blocks}");
            assert_eq!(d.buffered(), 0);
        }
    }

    #[test]
    fn header_types_accumulate_deltas() {
        let mut d = decoder();
        let mut b = vec![
            0x04, 0, 0, 100, 0, 0, 2, 8, 1, 0, 0, 0, b'a', b'b', // type 0, ts 100
            0x44, 0, 0, 20, 0, 0, 1, 9, b'c', // type 1, +20, len 1, video
            0x84, 0, 0, 5, b'd', // type 2, +5
            0xC4, b'e', // type 3, +5 again
        ];
        d.push(&b);
        let got = drain(&mut d).unwrap();
        assert_eq!(
            got,
            vec![
                msg(8, 100, 1, b"ab"),
                msg(9, 120, 1, b"c"),
                msg(9, 125, 1, b"d"),
                msg(9, 130, 1, b"e"),
            ]
        );
        // Type 3 directly after a type 0 repeats the type-0 timestamp as delta (spec 5.3.1.2.4).
        b = vec![0x05, 0, 0, 10, 0, 0, 1, 8, 0, 0, 0, 0, b'x', 0xC5, b'y'];
        d.push(&b);
        let got = drain(&mut d).unwrap();
        assert_eq!(got[1].timestamp, 20);
    }

    #[test]
    fn two_and_three_byte_csids_do_not_alias() {
        let mut d = decoder();
        let mut b = Vec::new();
        // csid 64+6=70 (2-byte form) and 64+6+256=326 (3-byte form) and 6 (1-byte).
        b.extend_from_slice(&[0x00, 6, 0, 0, 1, 0, 0, 1, 8, 0, 0, 0, 0, b'a']);
        b.extend_from_slice(&[0x01, 6, 1, 0, 0, 2, 0, 0, 1, 9, 0, 0, 0, 0, b'b']);
        b.extend_from_slice(&[0x06, 0, 0, 3, 0, 0, 1, 18, 0, 0, 0, 0, b'c']);
        b.extend_from_slice(&[0xC0, 6, b'd']); // type 3 on 70
        b.extend_from_slice(&[0xC1, 6, 1, b'e']); // type 3 on 326
        d.push(&b);
        let got = drain(&mut d).unwrap();
        let ids: Vec<(u8, u32)> = got.iter().map(|m| (m.type_id, m.timestamp)).collect();
        assert_eq!(ids, vec![(8, 1), (9, 2), (18, 3), (8, 2), (9, 4)]);
    }

    #[test]
    fn extended_timestamp_type3_continuation_is_tolerant() {
        // Type 0 with extended ts, chunk size 2, continuation WITH the 4 bytes.
        let mut d = decoder();
        d.set_chunk_size(2).unwrap();
        d.push(&[
            0x04, 0xFF, 0xFF, 0xFF, 0, 0, 3, 8, 1, 0, 0, 0, 1, 0, 0, 0, b'a', b'b', 0xC4, 1, 0, 0,
            0, b'c',
        ]);
        assert_eq!(drain(&mut d).unwrap(), vec![msg(8, 0x0100_0000, 1, b"abc")]);
        // Same without the 4 bytes in the continuation.
        let mut d = decoder();
        d.set_chunk_size(2).unwrap();
        d.push(&[
            0x04, 0xFF, 0xFF, 0xFF, 0, 0, 3, 8, 1, 0, 0, 0, 1, 0, 0, 0, b'a', b'b', 0xC4, b'c',
        ]);
        assert_eq!(drain(&mut d).unwrap(), vec![msg(8, 0x0100_0000, 1, b"abc")]);
    }

    #[test]
    fn extended_delta_and_new_message_by_type3() {
        let mut d = decoder();
        d.push(&[
            0x04, 0, 0, 10, 0, 0, 1, 8, 1, 0, 0, 0, b'a', // ts 10
            0x84, 0xFF, 0xFF, 0xFF, 0x01, 0, 0, 0, b'b', // type 2, extended delta 2^24
            0xC4, 0x01, 0, 0, 0, b'c', // type 3 new message repeating the extended field
            0xC4, b'd', // type 3 without it
        ]);
        let ts: Vec<u32> = drain(&mut d).unwrap().iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![10, 10 + (1 << 24), 10 + (2 << 24), 10 + (3 << 24)]);
    }

    #[test]
    fn type3_extended_prefix_waits_for_more_bytes() {
        let mut d = decoder();
        d.set_chunk_size(1).unwrap();
        d.push(&[
            0x04, 0xFF, 0xFF, 0xFF, 0, 0, 2, 8, 1, 0, 0, 0, 1, 2, 3, 4, b'a', 0xC4, 1, 2,
        ]);
        assert_eq!(drain(&mut d).unwrap(), vec![]);
        d.push(&[3, 4, b'b']);
        assert_eq!(drain(&mut d).unwrap(), vec![msg(8, 0x0102_0304, 1, b"ab")]);
    }

    #[test]
    fn timestamps_wrap() {
        let mut d = decoder();
        d.push(&[
            0x04, 0xFF, 0xFF, 0xFF, 0, 0, 0, 8, 1, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xF0, // ts
            0x44, 0, 0, 0x20, 0, 0, 0, 8, // +0x20 wraps
        ]);
        let ts: Vec<u32> = drain(&mut d).unwrap().iter().map(|m| m.timestamp).collect();
        assert_eq!(ts, vec![0xFFFF_FFF0, 0x10]);
    }

    #[test]
    fn limits_are_enforced() {
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_message_size: 100,
            max_chunk_streams: 2,
            max_chunk_size: 1000,
        });
        assert_eq!(
            d.set_chunk_size(0),
            Err(ChunkError::InvalidChunkSize { size: 0, max: 1000 })
        );
        assert!(d.set_chunk_size(1001).is_err());
        assert!(d.set_chunk_size(1000).is_ok());
        d.push(&[0x04, 0, 0, 0, 0, 0, 101, 9, 0, 0, 0, 0]);
        let e = d.next_message().unwrap_err();
        assert_eq!(
            e.to_string(),
            "chunk stream 4: message of 101 bytes exceeds the limit of 100"
        );
        let mut d = ChunkDecoder::new(ChunkLimits {
            max_chunk_streams: 2,
            ..ChunkLimits::default()
        });
        for csid in [3u8, 4, 5] {
            d.push(&[csid, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0]);
        }
        assert_eq!(
            drain(&mut d),
            Err(ChunkError::TooManyChunkStreams { max: 2 })
        );
        // Default limits never allow more than the protocol's maximum.
        assert!(decoder().set_chunk_size(MAX_CHUNK_SIZE).is_err());
    }

    #[test]
    fn header_needing_state_on_a_fresh_csid() {
        let mut d = decoder();
        d.push(&[0x83, 0, 0, 1]);
        assert_eq!(
            d.next_message(),
            Err(ChunkError::NoPreviousHeader { csid: 3, fmt: 2 })
        );
        let mut d = decoder();
        d.push(&[0x44, 0, 0, 7, 0, 0, 1, 8, b'z']);
        assert_eq!(drain(&mut d).unwrap(), vec![msg(8, 7, 0, b"z")]);
    }

    #[test]
    fn interrupted_message_and_abort() {
        let mut d = decoder();
        d.set_chunk_size(1).unwrap();
        d.push(&[0x04, 0, 0, 0, 0, 0, 3, 8, 1, 0, 0, 0, b'a']);
        assert_eq!(drain(&mut d).unwrap(), vec![]);
        assert_eq!(d.assembling(), 1);
        d.abort(4);
        assert_eq!(d.assembling(), 0);
        // After the abort a new message may start on the same chunk stream.
        d.push(&[0x04, 0, 0, 0, 0, 0, 1, 8, 1, 0, 0, 0, b'z']);
        assert_eq!(drain(&mut d).unwrap(), vec![msg(8, 0, 1, b"z")]);
        d.push(&[0x04, 0, 0, 0, 0, 0, 3, 8, 1, 0, 0, 0, b'a']);
        d.push(&[0x04, 0, 0, 0, 0, 0, 3, 8, 1, 0, 0, 0, b'a']);
        assert_eq!(
            drain(&mut d),
            Err(ChunkError::InterruptedMessage {
                csid: 4,
                fmt: 0,
                missing: 2
            })
        );
    }

    #[test]
    fn single_chunk_message_is_zero_copy() {
        let mut d = decoder();
        d.push(&[0x04, 0, 0, 0, 0, 0, 4, 8, 1, 0, 0, 0, 1, 2, 3, 4]);
        let base = d.buf.as_ptr() as usize;
        let m = d.next_message().unwrap().unwrap();
        assert_eq!(m.payload.as_ptr() as usize, base + 12);
    }

    #[test]
    fn multi_chunk_message_is_allocated_exactly() {
        let mut d = decoder();
        let m = msg(9, 0, 1, &[5u8; 300]);
        let mut out = BytesMut::new();
        encode_message(&mut out, 128, 6, &m);
        d.push(&out[..140]);
        assert_eq!(drain(&mut d).unwrap(), vec![]);
        let cap = d.streams[0].partial.as_ref().unwrap().capacity();
        assert_eq!(cap, 300);
        d.push(&out[140..]);
        assert_eq!(drain(&mut d).unwrap(), vec![m]);
    }

    /// A test-only encoder that compresses headers (types 1/2/3) the way real encoders do and
    /// interleaves chunks of different chunk streams, to exercise the decoder's state tracking.
    struct Prev {
        timestamp: u32,
        delta: u32,
        length: usize,
        type_id: u8,
        stream_id: u32,
    }

    fn compressed_chunks(
        prev: &mut Option<Prev>,
        cs: usize,
        csid: u32,
        m: &Message,
    ) -> Vec<Vec<u8>> {
        let basic = |fmt: u8, out: &mut Vec<u8>| {
            let mut b = BytesMut::new();
            match csid {
                2..=63 => b.put_u8((fmt << 6) | csid as u8),
                64..=319 => b.put_slice(&[fmt << 6, (csid - 64) as u8]),
                _ => b.put_slice(&[(fmt << 6) | 1, (csid - 64) as u8, ((csid - 64) >> 8) as u8]),
            }
            out.extend_from_slice(&b);
        };
        let (fmt, field) = match prev {
            Some(p) if p.stream_id == m.stream_id => {
                let delta = m.timestamp.wrapping_sub(p.timestamp);
                if p.length == m.payload.len() && p.type_id == m.type_id {
                    if delta == p.delta {
                        (3, delta)
                    } else {
                        (2, delta)
                    }
                } else {
                    (1, delta)
                }
            }
            _ => (0, m.timestamp),
        };
        // For a type 3 the field equals the previous header's, so this matches its flag.
        let ext = field >= EXTENDED_TIMESTAMP;
        let mut first = Vec::new();
        basic(fmt, &mut first);
        let f24 = field.min(EXTENDED_TIMESTAMP).to_be_bytes();
        let len = (m.payload.len() as u32).to_be_bytes();
        match fmt {
            0 => {
                first.extend_from_slice(&f24[1..]);
                first.extend_from_slice(&len[1..]);
                first.push(m.type_id);
                first.extend_from_slice(&m.stream_id.to_le_bytes());
            }
            1 => {
                first.extend_from_slice(&f24[1..]);
                first.extend_from_slice(&len[1..]);
                first.push(m.type_id);
            }
            2 => first.extend_from_slice(&f24[1..]),
            _ => {}
        }
        if ext {
            first.extend_from_slice(&field.to_be_bytes());
        }
        let mut chunks = vec![first];
        for (i, piece) in m.payload.chunks(cs).enumerate() {
            if i > 0 {
                let mut c = Vec::new();
                basic(3, &mut c);
                if ext {
                    c.extend_from_slice(&field.to_be_bytes());
                }
                chunks.push(c);
            }
            chunks.last_mut().unwrap().extend_from_slice(piece);
        }
        *prev = Some(Prev {
            timestamp: m.timestamp,
            delta: field,
            length: m.payload.len(),
            type_id: m.type_id,
            stream_id: m.stream_id,
        });
        chunks
    }

    fn arb_message() -> impl Strategy<Value = Message> {
        (
            prop_oneof![Just(8u8), Just(9), Just(18), Just(20), any::<u8>()],
            prop_oneof![any::<u32>(), 0u32..1000, 0xFF_FFF0u32..0x0100_0010],
            prop_oneof![Just(0u32), Just(1), any::<u32>()],
            prop::collection::vec(any::<u8>(), 0..2000),
        )
            .prop_map(|(type_id, timestamp, stream_id, p)| Message {
                type_id,
                timestamp,
                stream_id,
                payload: Bytes::from(p),
            })
    }

    fn feed_split(
        d: &mut ChunkDecoder,
        bytes: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<Message>, ChunkError> {
        let mut got = Vec::new();
        let mut pos = 0;
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (bytes.len() + 1)).collect();
        cuts.sort_unstable();
        cuts.push(bytes.len());
        for c in cuts {
            d.push(&bytes[pos..c.max(pos)]);
            pos = c.max(pos);
            got.extend(drain(d)?);
        }
        Ok(got)
    }

    proptest! {
        #[test]
        fn encode_decode_round_trip(
            chunk_size in prop_oneof![1usize..=300, 1usize..=65536],
            msgs in prop::collection::vec((MIN_CSID..=MAX_CSID, arb_message()), 1..12),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            let mut bytes = BytesMut::new();
            for (csid, m) in &msgs {
                encode_message(&mut bytes, chunk_size, *csid, m);
            }
            let mut d = decoder();
            d.set_chunk_size(chunk_size as u32).unwrap();
            let got = feed_split(&mut d, &bytes, &cuts).unwrap();
            let want: Vec<Message> = msgs.into_iter().map(|(_, m)| m).collect();
            prop_assert_eq!(got, want);
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn compressed_interleaved_round_trip(
            chunk_size in 1usize..=600,
            msgs in prop::collection::vec((prop_oneof![2u32..=8, 64u32..=70, 320u32..=330], arb_message()), 1..16),
            cuts in prop::collection::vec(any::<usize>(), 0..20),
        ) {
            // Per chunk stream: its messages' chunk lists, in order.
            let mut queues: BTreeMap<u32, VecDeque<Vec<Vec<u8>>>> = BTreeMap::new();
            let mut prev: BTreeMap<u32, Option<Prev>> = BTreeMap::new();
            let mut want: BTreeMap<u32, Vec<Message>> = BTreeMap::new();
            for (csid, m) in &msgs {
                let p = prev.entry(*csid).or_insert(None);
                let chunks = compressed_chunks(p, chunk_size, *csid, m);
                queues.entry(*csid).or_default().push_back(chunks);
                want.entry(*csid).or_default().push(m.clone());
            }
            // Round-robin one chunk per chunk stream.
            let mut bytes = Vec::new();
            let mut cursors: BTreeMap<u32, usize> = BTreeMap::new();
            loop {
                let mut progressed = false;
                for (csid, q) in queues.iter_mut() {
                    if let Some(chunks) = q.front() {
                        let i = cursors.entry(*csid).or_insert(0);
                        bytes.extend_from_slice(&chunks[*i]);
                        *i += 1;
                        if *i == chunks.len() {
                            q.pop_front();
                            *i = 0;
                        }
                        progressed = true;
                    }
                }
                if !progressed {
                    break;
                }
            }
            let mut d = decoder();
            d.set_chunk_size(chunk_size as u32).unwrap();
            let got = feed_split(&mut d, &bytes, &cuts).unwrap();
            // Messages carry no csid; group them back by the order of their chunk streams'
            // completion is not recoverable, so compare the multiset per (type, ts, payload).
            let mut got_sorted: Vec<_> = got.iter().map(|m| (m.type_id, m.timestamp, m.stream_id, m.payload.clone())).collect();
            let mut want_sorted: Vec<_> = want.values().flatten().map(|m| (m.type_id, m.timestamp, m.stream_id, m.payload.clone())).collect();
            got_sorted.sort();
            want_sorted.sort();
            prop_assert_eq!(got_sorted, want_sorted);
        }

        #[test]
        fn random_bytes_never_panic(
            chunk_size in 1u32..=512,
            bytes in prop::collection::vec(any::<u8>(), 0..4096),
            cuts in prop::collection::vec(any::<usize>(), 0..8),
        ) {
            let mut d = ChunkDecoder::new(ChunkLimits { max_message_size: 4096, ..ChunkLimits::default() });
            d.set_chunk_size(chunk_size).unwrap();
            let _ = feed_split(&mut d, &bytes, &cuts);
            prop_assert_eq!(d.reserved, declared_partial(&d));
            prop_assert!(d.reserved <= d.assembly_budget());
        }
    }

    /// What the partly received messages declare, counted the slow way.
    fn declared_partial(d: &ChunkDecoder) -> usize {
        d.streams
            .iter()
            .filter(|s| s.partial.is_some())
            .map(|s| s.length)
            .sum()
    }

    #[test]
    fn partial_messages_share_one_budget() {
        let mut d = decoder();
        d.set_chunk_size(1).unwrap();
        let budget = ChunkLimits::default().max_message_size + (1 << 20);
        // The longest length the wire can express.
        let max = (1 << 24) - 1;
        let header = |csid: u8, len: usize| {
            let l = (len as u32).to_be_bytes();
            [csid, 0, 0, 0, l[1], l[2], l[3], 9, 1, 0, 0, 0, b'x']
        };
        // One message of the largest size and small ones beside it are fine.
        d.push(&header(4, max));
        d.push(&header(5, 1000));
        assert_eq!(drain(&mut d).unwrap(), vec![]);
        assert_eq!(d.reserved, max + 1000);
        // A second large one is refused before anything is allocated for it.
        d.push(&header(6, max));
        assert_eq!(
            drain(&mut d),
            Err(ChunkError::AssemblyBudget {
                csid: 6,
                length: max,
                budget,
            })
        );
        assert_eq!(d.reserved, declared_partial(&d));
        // Aborting frees the budget.
        d.abort(4);
        assert_eq!(d.reserved, 1000);
    }
}
