//! Command messages (types 20 and 17): parsing and the replies sessions build.

use std::fmt;

use bytes::BytesMut;

use super::amf0::{self, AmfError, Value};
use super::amf3;
use super::chunk::{Message, COMMAND_AMF0, COMMAND_AMF3};

/// A decoded command: `name(transaction_id, object, args...)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    pub name: String,
    pub transaction_id: f64,
    /// Command object (often Null).
    pub object: Value,
    pub args: Vec<Value>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum CommandError {
    NotCommand(u8),
    Amf(AmfError),
    /// The body does not start with a string name (or has no transaction id).
    Malformed(&'static str),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::NotCommand(t) => write!(f, "message type {t} is not a command"),
            CommandError::Amf(e) => write!(f, "command: {e}"),
            CommandError::Malformed(why) => write!(f, "malformed command: {why}"),
        }
    }
}

impl std::error::Error for CommandError {}

impl From<AmfError> for CommandError {
    fn from(e: AmfError) -> Self {
        CommandError::Amf(e)
    }
}

/// Decodes a type-20 (AMF0) or type-17 (AMF3 form: 0x00 then AMF0) command message.
pub fn parse(msg: &Message) -> Result<Command, CommandError> {
    let body = match msg.type_id {
        COMMAND_AMF0 => &msg.payload[..],
        COMMAND_AMF3 => amf3::amf0_body(&msg.payload),
        t => return Err(CommandError::NotCommand(t)),
    };
    let mut values = amf0::decode_all(body)?.into_iter();
    let name = match values.next() {
        Some(Value::String(s)) => s,
        Some(Value::Avmplus(amf3::Value::String(s))) => s,
        Some(_) => return Err(CommandError::Malformed("name is not a string")),
        None => return Err(CommandError::Malformed("empty command")),
    };
    // Some clients omit the transaction id of notifications; 0 is what they mean.
    let transaction_id = match values.next() {
        Some(v) => v
            .as_f64()
            .ok_or(CommandError::Malformed("transaction id is not a number"))?,
        None => 0.0,
    };
    let object = values.next().unwrap_or(Value::Null);
    Ok(Command {
        name,
        transaction_id,
        object,
        args: values.collect(),
    })
}

/// Builds an AMF0 command message with timestamp 0.
pub fn build(stream_id: u32, name: &str, transaction_id: f64, values: &[Value]) -> Message {
    let mut out = BytesMut::with_capacity(64 + name.len());
    amf0::encode_string(&mut out, name);
    amf0::encode(&mut out, &Value::Number(transaction_id));
    for v in values {
        amf0::encode(&mut out, v);
    }
    Message {
        type_id: COMMAND_AMF0,
        timestamp: 0,
        stream_id,
        payload: out.freeze(),
    }
}

/// `onStatus(0, null, {level, code, description})` on `stream_id`.
pub fn on_status(stream_id: u32, level: &str, code: &str, description: &str) -> Message {
    build(
        stream_id,
        "onStatus",
        0.0,
        &[
            Value::Null,
            amf0::object(&[
                ("level", level.into()),
                ("code", code.into()),
                ("description", description.into()),
            ]),
        ],
    )
}

/// Status object fields of an `onStatus` or `_result`/`_error` info object.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusInfo {
    pub level: String,
    pub code: String,
    pub description: String,
}

impl StatusInfo {
    /// Reads level/code/description from an info object; missing fields are empty.
    pub fn from_value(v: &Value) -> Self {
        let field = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
        StatusInfo {
            level: field("level"),
            code: field("code"),
            description: field("description"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    #[test]
    fn parses_amf0_and_amf3_forms() {
        let m = build(
            0,
            "connect",
            1.0,
            &[amf0::object(&[("app", "live".into())])],
        );
        let c = parse(&m).unwrap();
        assert_eq!(c.name, "connect");
        assert_eq!(c.transaction_id, 1.0);
        assert_eq!(c.object.get("app").and_then(Value::as_str), Some("live"));
        assert!(c.args.is_empty());
        let mut p = vec![0u8];
        p.extend_from_slice(&m.payload);
        let m17 = Message {
            type_id: COMMAND_AMF3,
            payload: Bytes::from(p),
            ..m
        };
        assert_eq!(parse(&m17).unwrap(), c);
    }

    #[test]
    fn on_status_bytes() {
        let m = on_status(1, "status", "C", "D");
        let want: Vec<u8> = [
            &[0x02, 0, 8][..],
            b"onStatus",
            &[0x00, 0, 0, 0, 0, 0, 0, 0, 0],
            &[0x05, 0x03],
            &[0, 5],
            b"level",
            &[0x02, 0, 6],
            b"status",
            &[0, 4],
            b"code",
            &[0x02, 0, 1, b'C'],
            &[0, 11],
            b"description",
            &[0x02, 0, 1, b'D'],
            &[0, 0, 9],
        ]
        .concat();
        assert_eq!(&m.payload[..], &want[..]);
        assert_eq!((m.type_id, m.stream_id, m.timestamp), (20, 1, 0));
        let c = parse(&m).unwrap();
        assert_eq!(
            StatusInfo::from_value(&c.args[0]),
            StatusInfo {
                level: "status".into(),
                code: "C".into(),
                description: "D".into()
            }
        );
    }

    #[test]
    fn malformed_commands() {
        let empty = Message {
            type_id: 20,
            timestamp: 0,
            stream_id: 0,
            payload: Bytes::new(),
        };
        assert_eq!(parse(&empty), Err(CommandError::Malformed("empty command")));
        let num = Message {
            payload: amf0::encode_all(&[Value::Number(1.0)]).freeze(),
            ..empty.clone()
        };
        assert!(matches!(parse(&num), Err(CommandError::Malformed(_))));
        let bad_txn = Message {
            payload: amf0::encode_all(&["x".into(), "y".into()]).freeze(),
            ..empty.clone()
        };
        assert!(matches!(parse(&bad_txn), Err(CommandError::Malformed(_))));
        let audio = Message {
            type_id: 8,
            ..empty
        };
        assert_eq!(parse(&audio), Err(CommandError::NotCommand(8)));
    }

    proptest! {
        #[test]
        fn random_bodies_never_panic(t in prop_oneof![Just(17u8), Just(20)], p in prop::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&Message { type_id: t, timestamp: 0, stream_id: 0, payload: Bytes::from(p) });
        }
    }
}
