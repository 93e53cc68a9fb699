//! Data messages (types 18 and 15): the `@setDataFrame` wrapper publishers put around
//! `onMetaData`, removed on ingest and added back when publishing to another server.

use bytes::{BufMut, BytesMut};

use super::amf0;
use super::amf3;
use super::chunk::{Message, DATA_AMF0, DATA_AMF3};

pub const SET_DATA_FRAME: &str = "@setDataFrame";

/// AMF0 encoding of the `@setDataFrame` string.
const SET_DATA_FRAME_AMF0: &[u8] = b"\x02\x00\x0d@setDataFrame";

/// Normalises an incoming data message to an AMF0 (type 18) message whose payload no longer
/// starts with `@setDataFrame`; the payload is a zero-copy slice of the original. Type 15
/// loses its AMF3-form selector byte. Other data (onMetaData sent directly, onTextData, ...)
/// keeps its body.
pub fn strip_set_data_frame(msg: &Message) -> Message {
    let start = if msg.type_id == DATA_AMF3 {
        amf3::amf0_body_offset(&msg.payload)
    } else {
        0
    };
    let body = &msg.payload[start..];
    let skip = if body.starts_with(SET_DATA_FRAME_AMF0) {
        SET_DATA_FRAME_AMF0.len()
    } else {
        0
    };
    Message {
        type_id: DATA_AMF0,
        timestamp: msg.timestamp,
        stream_id: msg.stream_id,
        payload: msg.payload.slice(start + skip..),
    }
}

/// Name of a data message (its first AMF0 string), after any `@setDataFrame` wrapper.
pub fn data_name(msg: &Message) -> Option<String> {
    let stripped = strip_set_data_frame(msg);
    match amf0::decode(&stripped.payload) {
        Ok((v, _)) => v.as_str().map(str::to_owned),
        Err(_) => None,
    }
}

/// Prepends `@setDataFrame` to an `onMetaData` data message that lacks it (what servers expect
/// from a publisher). Anything else is returned unchanged.
pub fn add_set_data_frame(msg: &Message) -> Message {
    let is_amf0 = msg.type_id == DATA_AMF0;
    if !is_amf0 || msg.payload.starts_with(SET_DATA_FRAME_AMF0) {
        return msg.clone();
    }
    if data_name(msg).as_deref() != Some("onMetaData") {
        return msg.clone();
    }
    let mut p = BytesMut::with_capacity(SET_DATA_FRAME_AMF0.len() + msg.payload.len());
    p.put_slice(SET_DATA_FRAME_AMF0);
    p.put_slice(&msg.payload);
    Message {
        payload: p.freeze(),
        ..msg.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rtmp::amf0::Value;
    use bytes::Bytes;

    fn meta_body() -> Vec<u8> {
        amf0::encode_all(&[
            "onMetaData".into(),
            Value::EcmaArray(vec![("width".into(), Value::Number(1280.0))]),
        ])
        .to_vec()
    }

    fn data(type_id: u8, p: Vec<u8>) -> Message {
        Message {
            type_id,
            timestamp: 3,
            stream_id: 1,
            payload: Bytes::from(p),
        }
    }

    #[test]
    fn strip_is_a_zero_copy_slice() {
        let mut p = SET_DATA_FRAME_AMF0.to_vec();
        p.extend_from_slice(&meta_body());
        let m = data(18, p);
        let s = strip_set_data_frame(&m);
        assert_eq!(&s.payload[..], &meta_body()[..]);
        assert_eq!(
            s.payload.as_ptr(),
            m.payload[SET_DATA_FRAME_AMF0.len()..].as_ptr()
        );
        assert_eq!((s.type_id, s.timestamp, s.stream_id), (18, 3, 1));
    }

    #[test]
    fn amf3_form_is_normalised() {
        let mut p = vec![0u8];
        p.extend_from_slice(SET_DATA_FRAME_AMF0);
        p.extend_from_slice(&meta_body());
        let s = strip_set_data_frame(&data(15, p));
        assert_eq!(s.type_id, 18);
        assert_eq!(&s.payload[..], &meta_body()[..]);
    }

    #[test]
    fn other_data_is_kept() {
        let m = data(18, meta_body());
        assert_eq!(strip_set_data_frame(&m), m);
        assert_eq!(data_name(&m).as_deref(), Some("onMetaData"));
        assert_eq!(data_name(&data(18, vec![0x05])), None);
    }

    #[test]
    fn add_round_trips() {
        let m = data(18, meta_body());
        let added = add_set_data_frame(&m);
        assert!(added.payload.starts_with(SET_DATA_FRAME_AMF0));
        assert_eq!(add_set_data_frame(&added), added, "not added twice");
        assert_eq!(strip_set_data_frame(&added), m);
        let text = data(18, amf0::encode_all(&["onTextData".into()]).to_vec());
        assert_eq!(add_set_data_frame(&text), text);
    }
}
