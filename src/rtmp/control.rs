//! Protocol control messages (types 1, 2, 3, 5, 6) and user control events (type 4):
//! builders producing [`Message`]s for chunk stream 2 / message stream 0, and a parser.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::chunk::{
    Message, ABORT, ACKNOWLEDGEMENT, SET_CHUNK_SIZE, SET_PEER_BANDWIDTH, USER_CONTROL,
    WINDOW_ACK_SIZE,
};

/// Chunk stream reserved for protocol control messages.
pub const CONTROL_CSID: u32 = 2;

/// Set Peer Bandwidth limit types.
pub const LIMIT_HARD: u8 = 0;
pub const LIMIT_SOFT: u8 = 1;
pub const LIMIT_DYNAMIC: u8 = 2;

const EVENT_STREAM_BEGIN: u16 = 0;
const EVENT_STREAM_EOF: u16 = 1;
const EVENT_STREAM_DRY: u16 = 2;
const EVENT_SET_BUFFER_LENGTH: u16 = 3;
const EVENT_STREAM_IS_RECORDED: u16 = 4;
const EVENT_PING_REQUEST: u16 = 6;
const EVENT_PING_RESPONSE: u16 = 7;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserControlEvent {
    StreamBegin(u32),
    StreamEof(u32),
    StreamDry(u32),
    SetBufferLength {
        stream_id: u32,
        millis: u32,
    },
    StreamIsRecorded(u32),
    PingRequest(u32),
    PingResponse(u32),
    /// Events this implementation does not act on (e.g. SWF verification).
    Other {
        event_type: u16,
        data: Bytes,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlMessage {
    SetChunkSize(u32),
    Abort { csid: u32 },
    Acknowledgement { sequence: u32 },
    WindowAckSize(u32),
    SetPeerBandwidth { size: u32, limit_type: u8 },
    UserControl(UserControlEvent),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlError {
    NotControl(u8),
    TooShort { type_id: u8, length: usize },
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlError::NotControl(t) => write!(f, "message type {t} is not a control message"),
            ControlError::TooShort { type_id, length } => write!(
                f,
                "control message type {type_id} too short ({length} bytes)"
            ),
        }
    }
}

impl std::error::Error for ControlError {}

fn control(type_id: u8, payload: &[u8]) -> Message {
    Message {
        type_id,
        timestamp: 0,
        stream_id: 0,
        payload: Bytes::copy_from_slice(payload),
    }
}

pub fn set_chunk_size(size: u32) -> Message {
    // The top bit is reserved and must be zero.
    control(SET_CHUNK_SIZE, &(size & 0x7FFF_FFFF).to_be_bytes())
}

pub fn abort(csid: u32) -> Message {
    control(ABORT, &csid.to_be_bytes())
}

pub fn acknowledgement(sequence: u32) -> Message {
    control(ACKNOWLEDGEMENT, &sequence.to_be_bytes())
}

pub fn window_ack_size(size: u32) -> Message {
    control(WINDOW_ACK_SIZE, &size.to_be_bytes())
}

pub fn set_peer_bandwidth(size: u32, limit_type: u8) -> Message {
    let b = size.to_be_bytes();
    control(SET_PEER_BANDWIDTH, &[b[0], b[1], b[2], b[3], limit_type])
}

pub fn user_control(event: &UserControlEvent) -> Message {
    let mut p = BytesMut::with_capacity(10);
    let mut id = |t: u16, v: u32| {
        p.put_u16(t);
        p.put_u32(v);
    };
    match event {
        UserControlEvent::StreamBegin(s) => id(EVENT_STREAM_BEGIN, *s),
        UserControlEvent::StreamEof(s) => id(EVENT_STREAM_EOF, *s),
        UserControlEvent::StreamDry(s) => id(EVENT_STREAM_DRY, *s),
        UserControlEvent::StreamIsRecorded(s) => id(EVENT_STREAM_IS_RECORDED, *s),
        UserControlEvent::PingRequest(t) => id(EVENT_PING_REQUEST, *t),
        UserControlEvent::PingResponse(t) => id(EVENT_PING_RESPONSE, *t),
        UserControlEvent::SetBufferLength { stream_id, millis } => {
            id(EVENT_SET_BUFFER_LENGTH, *stream_id);
            p.put_u32(*millis);
        }
        UserControlEvent::Other { event_type, data } => {
            p.put_u16(*event_type);
            p.put_slice(data);
        }
    }
    Message {
        type_id: USER_CONTROL,
        timestamp: 0,
        stream_id: 0,
        payload: p.freeze(),
    }
}

fn be32(p: &[u8], type_id: u8) -> Result<u32, ControlError> {
    match p.get(..4) {
        Some(b) => Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]])),
        None => Err(ControlError::TooShort {
            type_id,
            length: p.len(),
        }),
    }
}

/// Parses a protocol control or user control message. Trailing bytes are ignored.
pub fn parse(msg: &Message) -> Result<ControlMessage, ControlError> {
    let p = &msg.payload[..];
    let t = msg.type_id;
    Ok(match t {
        SET_CHUNK_SIZE => ControlMessage::SetChunkSize(be32(p, t)? & 0x7FFF_FFFF),
        ABORT => ControlMessage::Abort { csid: be32(p, t)? },
        ACKNOWLEDGEMENT => ControlMessage::Acknowledgement {
            sequence: be32(p, t)?,
        },
        WINDOW_ACK_SIZE => ControlMessage::WindowAckSize(be32(p, t)?),
        SET_PEER_BANDWIDTH => {
            let size = be32(p, t)?;
            // Some peers omit the limit type; treat it as dynamic.
            let limit_type = p.get(4).copied().unwrap_or(LIMIT_DYNAMIC);
            ControlMessage::SetPeerBandwidth { size, limit_type }
        }
        USER_CONTROL => {
            if p.len() < 2 {
                return Err(ControlError::TooShort {
                    type_id: t,
                    length: p.len(),
                });
            }
            let event_type = u16::from_be_bytes([p[0], p[1]]);
            let data = &p[2..];
            let ev = match event_type {
                EVENT_STREAM_BEGIN => UserControlEvent::StreamBegin(be32(data, t)?),
                EVENT_STREAM_EOF => UserControlEvent::StreamEof(be32(data, t)?),
                EVENT_STREAM_DRY => UserControlEvent::StreamDry(be32(data, t)?),
                EVENT_STREAM_IS_RECORDED => UserControlEvent::StreamIsRecorded(be32(data, t)?),
                EVENT_PING_REQUEST => UserControlEvent::PingRequest(be32(data, t)?),
                EVENT_PING_RESPONSE => UserControlEvent::PingResponse(be32(data, t)?),
                EVENT_SET_BUFFER_LENGTH => UserControlEvent::SetBufferLength {
                    stream_id: be32(data, t)?,
                    millis: be32(data.get(4..).unwrap_or(&[]), t)?,
                },
                _ => UserControlEvent::Other {
                    event_type,
                    data: msg.payload.slice(2..),
                },
            };
            ControlMessage::UserControl(ev)
        }
        other => return Err(ControlError::NotControl(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn builder_bytes() {
        assert_eq!(&set_chunk_size(4096).payload[..], &[0, 0, 0x10, 0]);
        assert_eq!(set_chunk_size(4096).type_id, 1);
        assert_eq!(
            &window_ack_size(2_500_000).payload[..],
            &[0, 0x26, 0x25, 0xA0]
        );
        assert_eq!(
            &set_peer_bandwidth(2_500_000, LIMIT_DYNAMIC).payload[..],
            &[0, 0x26, 0x25, 0xA0, 2]
        );
        assert_eq!(&acknowledgement(7).payload[..], &[0, 0, 0, 7]);
        assert_eq!(
            &user_control(&UserControlEvent::StreamBegin(1)).payload[..],
            &[0, 0, 0, 0, 0, 1]
        );
        assert_eq!(
            &user_control(&UserControlEvent::StreamEof(1)).payload[..],
            &[0, 1, 0, 0, 0, 1]
        );
        assert_eq!(
            &user_control(&UserControlEvent::StreamIsRecorded(1)).payload[..],
            &[0, 4, 0, 0, 0, 1]
        );
        assert_eq!(
            &user_control(&UserControlEvent::PingResponse(9)).payload[..],
            &[0, 7, 0, 0, 0, 9]
        );
    }

    #[test]
    fn parse_round_trips() {
        for m in [
            ControlMessage::SetChunkSize(4096),
            ControlMessage::Abort { csid: 5 },
            ControlMessage::Acknowledgement { sequence: 1 },
            ControlMessage::WindowAckSize(5),
            ControlMessage::SetPeerBandwidth {
                size: 3,
                limit_type: LIMIT_HARD,
            },
        ] {
            let built = match &m {
                ControlMessage::SetChunkSize(n) => set_chunk_size(*n),
                ControlMessage::Abort { csid } => abort(*csid),
                ControlMessage::Acknowledgement { sequence } => acknowledgement(*sequence),
                ControlMessage::WindowAckSize(n) => window_ack_size(*n),
                ControlMessage::SetPeerBandwidth { size, limit_type } => {
                    set_peer_bandwidth(*size, *limit_type)
                }
                ControlMessage::UserControl(e) => user_control(e),
            };
            assert_eq!(parse(&built).unwrap(), m);
        }
        for e in [
            UserControlEvent::PingRequest(77),
            UserControlEvent::SetBufferLength {
                stream_id: 1,
                millis: 3000,
            },
            UserControlEvent::Other {
                event_type: 26,
                data: Bytes::from_static(&[1, 2]),
            },
        ] {
            assert_eq!(
                parse(&user_control(&e)).unwrap(),
                ControlMessage::UserControl(e)
            );
        }
    }

    #[test]
    fn short_and_foreign_messages() {
        let short = Message {
            type_id: 1,
            timestamp: 0,
            stream_id: 0,
            payload: Bytes::from_static(&[0, 0]),
        };
        assert_eq!(
            parse(&short),
            Err(ControlError::TooShort {
                type_id: 1,
                length: 2
            })
        );
        let media = Message {
            type_id: 9,
            ..short
        };
        assert_eq!(parse(&media), Err(ControlError::NotControl(9)));
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(t in 1u8..=6, p in prop::collection::vec(any::<u8>(), 0..12)) {
            let _ = parse(&Message { type_id: t, timestamp: 0, stream_id: 0, payload: Bytes::from(p) });
        }
    }
}
