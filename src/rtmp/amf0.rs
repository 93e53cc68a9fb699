//! AMF0 values: bounded decoder and encoder.
//!
//! Every length read from the wire is checked against the bytes that remain before anything is
//! allocated, nesting is limited to [`MAX_DEPTH`], and element counts can never exceed the number
//! of bytes left (each element needs at least one byte), so hostile input costs at most a few
//! times its own size in memory.

use std::fmt;

use bytes::{BufMut, BytesMut};

use super::amf3;

/// Deepest nesting of objects/arrays accepted by the decoders.
pub const MAX_DEPTH: usize = 32;

const MARKER_NUMBER: u8 = 0x00;
const MARKER_BOOLEAN: u8 = 0x01;
const MARKER_STRING: u8 = 0x02;
const MARKER_OBJECT: u8 = 0x03;
const MARKER_MOVIECLIP: u8 = 0x04;
const MARKER_NULL: u8 = 0x05;
const MARKER_UNDEFINED: u8 = 0x06;
const MARKER_REFERENCE: u8 = 0x07;
const MARKER_ECMA_ARRAY: u8 = 0x08;
const MARKER_OBJECT_END: u8 = 0x09;
const MARKER_STRICT_ARRAY: u8 = 0x0A;
const MARKER_DATE: u8 = 0x0B;
const MARKER_LONG_STRING: u8 = 0x0C;
const MARKER_UNSUPPORTED: u8 = 0x0D;
const MARKER_RECORDSET: u8 = 0x0E;
const MARKER_XML_DOCUMENT: u8 = 0x0F;
const MARKER_TYPED_OBJECT: u8 = 0x10;
const MARKER_AVMPLUS: u8 = 0x11;

/// An AMF0 value. Objects keep their key order (encoders and players may care).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Boolean(bool),
    /// Both the short (u16 length) and the long (u32 length) string forms.
    String(String),
    Object(Vec<(String, Value)>),
    Null,
    Undefined,
    EcmaArray(Vec<(String, Value)>),
    StrictArray(Vec<Value>),
    /// Milliseconds since the epoch and the (unused by Flash) time-zone field.
    Date {
        millis: f64,
        timezone: i16,
    },
    Unsupported,
    XmlDocument(String),
    TypedObject {
        class: String,
        properties: Vec<(String, Value)>,
    },
    /// A value switched to AMF3 with the 0x11 marker.
    Avmplus(amf3::Value),
}

impl Value {
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            Value::Avmplus(amf3::Value::String(s)) => Some(s),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            Value::Avmplus(amf3::Value::Double(n)) => Some(*n),
            Value::Avmplus(amf3::Value::Integer(n)) => Some(f64::from(*n)),
            _ => None,
        }
    }

    /// Properties of an object-like value (object, ECMA array, typed object).
    pub fn properties(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Object(p) | Value::EcmaArray(p) => Some(p),
            Value::TypedObject { properties, .. } => Some(properties),
            _ => None,
        }
    }

    /// First property named `key` of an object-like value.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.properties()?
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }

    /// True for `Null` and `Undefined` (AMF0 or AMF3), which clients use interchangeably.
    pub fn is_nullish(&self) -> bool {
        matches!(
            self,
            Value::Null
                | Value::Undefined
                | Value::Avmplus(amf3::Value::Null)
                | Value::Avmplus(amf3::Value::Undefined)
        )
    }
}

/// Why an AMF0 or AMF3 payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AmfError {
    /// The input ended inside a value; `needed` bytes were required at `offset`.
    Truncated {
        offset: usize,
        needed: usize,
    },
    UnknownMarker {
        offset: usize,
        marker: u8,
    },
    /// A legal marker that this implementation refuses (references, movieclip, recordset, ...).
    UnsupportedMarker {
        offset: usize,
        marker: u8,
    },
    InvalidUtf8 {
        offset: usize,
    },
    TooDeep,
    /// A declared element count cannot fit in the remaining input.
    BadCount {
        offset: usize,
        count: u64,
    },
    /// An AMF3 reference points outside its table.
    BadReference {
        offset: usize,
        index: usize,
    },
    UnexpectedObjectEnd {
        offset: usize,
    },
}

impl fmt::Display for AmfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AmfError::Truncated { offset, needed } => {
                write!(
                    f,
                    "amf: truncated at byte {offset} ({needed} more bytes needed)"
                )
            }
            AmfError::UnknownMarker { offset, marker } => {
                write!(
                    f,
                    "amf: unknown type marker 0x{marker:02x} at byte {offset}"
                )
            }
            AmfError::UnsupportedMarker { offset, marker } => {
                write!(
                    f,
                    "amf: unsupported type marker 0x{marker:02x} at byte {offset}"
                )
            }
            AmfError::InvalidUtf8 { offset } => {
                write!(f, "amf: invalid UTF-8 string at byte {offset}")
            }
            AmfError::TooDeep => write!(f, "amf: nesting deeper than {MAX_DEPTH}"),
            AmfError::BadCount { offset, count } => {
                write!(
                    f,
                    "amf: element count {count} at byte {offset} exceeds the input"
                )
            }
            AmfError::BadReference { offset, index } => {
                write!(f, "amf: reference {index} at byte {offset} is out of range")
            }
            AmfError::UnexpectedObjectEnd { offset } => {
                write!(
                    f,
                    "amf: object-end marker outside an object at byte {offset}"
                )
            }
        }
    }
}

impl std::error::Error for AmfError {}

/// A read position over a byte slice; shared by the AMF0 and AMF3 decoders.
pub(crate) struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], AmfError> {
        if n > self.remaining() {
            return Err(AmfError::Truncated {
                offset: self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn peek_u8(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, AmfError> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, AmfError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, AmfError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn f64(&mut self) -> Result<f64, AmfError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(f64::from_be_bytes(a))
    }

    /// UTF-8 string of `len` bytes; the length is checked before anything is allocated.
    pub(crate) fn utf8(&mut self, len: usize) -> Result<String, AmfError> {
        let offset = self.pos;
        let b = self.take(len)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| AmfError::InvalidUtf8 { offset })
    }
}

/// Decodes one value from the front of `data`; returns it and the number of bytes it used.
pub fn decode(data: &[u8]) -> Result<(Value, usize), AmfError> {
    let mut r = Reader::new(data);
    let v = decode_value(&mut r, 0)?;
    Ok((v, r.pos()))
}

/// Decodes every value in `data` (a command or data message body).
pub fn decode_all(data: &[u8]) -> Result<Vec<Value>, AmfError> {
    let mut r = Reader::new(data);
    let mut out = Vec::new();
    while r.remaining() > 0 {
        out.push(decode_value(&mut r, 0)?);
    }
    Ok(out)
}

fn decode_value(r: &mut Reader<'_>, depth: usize) -> Result<Value, AmfError> {
    if depth > MAX_DEPTH {
        return Err(AmfError::TooDeep);
    }
    let offset = r.pos();
    let marker = r.u8()?;
    Ok(match marker {
        MARKER_NUMBER => Value::Number(r.f64()?),
        MARKER_BOOLEAN => Value::Boolean(r.u8()? != 0),
        MARKER_STRING => {
            let len = usize::from(r.u16()?);
            Value::String(r.utf8(len)?)
        }
        MARKER_LONG_STRING => {
            let len = r.u32()? as usize;
            Value::String(r.utf8(len)?)
        }
        MARKER_XML_DOCUMENT => {
            let len = r.u32()? as usize;
            Value::XmlDocument(r.utf8(len)?)
        }
        MARKER_OBJECT => Value::Object(decode_properties(r, depth)?),
        MARKER_NULL => Value::Null,
        MARKER_UNDEFINED => Value::Undefined,
        MARKER_UNSUPPORTED => Value::Unsupported,
        MARKER_ECMA_ARRAY => {
            // The count is only a hint (encoders get it wrong); the end marker is authoritative.
            let _count = r.u32()?;
            Value::EcmaArray(decode_properties(r, depth)?)
        }
        MARKER_STRICT_ARRAY => {
            let count_offset = r.pos();
            let count = r.u32()?;
            if count as usize > r.remaining() {
                return Err(AmfError::BadCount {
                    offset: count_offset,
                    count: u64::from(count),
                });
            }
            let mut items = Vec::with_capacity(count as usize);
            for _ in 0..count {
                items.push(decode_value(r, depth + 1)?);
            }
            Value::StrictArray(items)
        }
        MARKER_DATE => {
            let millis = r.f64()?;
            let timezone = r.u16()? as i16;
            Value::Date { millis, timezone }
        }
        MARKER_TYPED_OBJECT => {
            let len = usize::from(r.u16()?);
            let class = r.utf8(len)?;
            let properties = decode_properties(r, depth)?;
            Value::TypedObject { class, properties }
        }
        MARKER_AVMPLUS => Value::Avmplus(amf3::decode_value_from(r, depth + 1)?),
        MARKER_OBJECT_END => return Err(AmfError::UnexpectedObjectEnd { offset }),
        MARKER_MOVIECLIP | MARKER_REFERENCE | MARKER_RECORDSET => {
            return Err(AmfError::UnsupportedMarker { offset, marker })
        }
        _ => return Err(AmfError::UnknownMarker { offset, marker }),
    })
}

/// Key/value pairs up to the empty-key + object-end terminator.
fn decode_properties(r: &mut Reader<'_>, depth: usize) -> Result<Vec<(String, Value)>, AmfError> {
    if depth + 1 > MAX_DEPTH {
        return Err(AmfError::TooDeep);
    }
    let mut props = Vec::new();
    loop {
        let len = usize::from(r.u16()?);
        if len == 0 && r.peek_u8() == Some(MARKER_OBJECT_END) {
            r.u8()?;
            return Ok(props);
        }
        let key = r.utf8(len)?;
        let value = decode_value(r, depth + 1)?;
        props.push((key, value));
    }
}

/// Appends the encoding of `v` to `out`.
pub fn encode(out: &mut BytesMut, v: &Value) {
    match v {
        Value::Number(n) => {
            out.put_u8(MARKER_NUMBER);
            out.put_f64(*n);
        }
        Value::Boolean(b) => {
            out.put_u8(MARKER_BOOLEAN);
            out.put_u8(u8::from(*b));
        }
        Value::String(s) => encode_string(out, s),
        Value::Object(props) => {
            out.put_u8(MARKER_OBJECT);
            encode_properties(out, props);
        }
        Value::Null => out.put_u8(MARKER_NULL),
        Value::Undefined => out.put_u8(MARKER_UNDEFINED),
        Value::Unsupported => out.put_u8(MARKER_UNSUPPORTED),
        Value::EcmaArray(props) => {
            out.put_u8(MARKER_ECMA_ARRAY);
            out.put_u32(u32::try_from(props.len()).unwrap_or(u32::MAX));
            encode_properties(out, props);
        }
        Value::StrictArray(items) => {
            out.put_u8(MARKER_STRICT_ARRAY);
            out.put_u32(u32::try_from(items.len()).unwrap_or(u32::MAX));
            for item in items {
                encode(out, item);
            }
        }
        Value::Date { millis, timezone } => {
            out.put_u8(MARKER_DATE);
            out.put_f64(*millis);
            out.put_u16(*timezone as u16);
        }
        Value::XmlDocument(s) => {
            out.put_u8(MARKER_XML_DOCUMENT);
            put_u32_len(out, s.as_bytes());
        }
        Value::TypedObject { class, properties } => {
            out.put_u8(MARKER_TYPED_OBJECT);
            put_u16_key(out, class);
            encode_properties(out, properties);
        }
        Value::Avmplus(v) => {
            out.put_u8(MARKER_AVMPLUS);
            amf3::encode(out, v);
        }
    }
}

/// Encodes a string value, switching to the long form when it does not fit a u16 length.
pub fn encode_string(out: &mut BytesMut, s: &str) {
    if s.len() > usize::from(u16::MAX) {
        out.put_u8(MARKER_LONG_STRING);
        put_u32_len(out, s.as_bytes());
    } else {
        out.put_u8(MARKER_STRING);
        out.put_u16(s.len() as u16);
        out.put_slice(s.as_bytes());
    }
}

fn put_u32_len(out: &mut BytesMut, b: &[u8]) {
    // Strings over 4 GiB cannot exist in a message (max 16 MiB); truncation is unreachable.
    let len = u32::try_from(b.len()).unwrap_or(u32::MAX);
    out.put_u32(len);
    out.put_slice(&b[..len as usize]);
}

/// Keys and class names have only the u16-length form; longer ones are truncated at a char
/// boundary rather than producing an undecodable stream.
fn put_u16_key(out: &mut BytesMut, key: &str) {
    let mut end = key.len().min(usize::from(u16::MAX));
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&key.as_bytes()[..end]);
}

fn encode_properties(out: &mut BytesMut, props: &[(String, Value)]) {
    for (k, v) in props {
        put_u16_key(out, k);
        encode(out, v);
    }
    out.put_slice(&[0, 0, MARKER_OBJECT_END]);
}

/// Encodes a sequence of values (a command or data message body).
pub fn encode_all(values: &[Value]) -> BytesMut {
    let mut out = BytesMut::with_capacity(128);
    for v in values {
        encode(&mut out, v);
    }
    out
}

/// Shorthand for building objects: `object(&[("level", "status".into())])`.
pub fn object(props: &[(&str, Value)]) -> Value {
    Value::Object(
        props
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
    )
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::String(s.to_owned())
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::String(s)
    }
}

impl From<f64> for Value {
    fn from(n: f64) -> Self {
        Value::Number(n)
    }
}

impl From<bool> for Value {
    fn from(b: bool) -> Self {
        Value::Boolean(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut b = BytesMut::new();
        encode(&mut b, v);
        b.to_vec()
    }

    #[test]
    fn number_bytes() {
        assert_eq!(
            enc(&Value::Number(1.0)),
            [0x00, 0x3F, 0xF0, 0, 0, 0, 0, 0, 0]
        );
    }

    #[test]
    fn string_and_object_bytes() {
        assert_eq!(enc(&"ab".into()), [0x02, 0, 2, b'a', b'b']);
        let o = object(&[("a", Value::Boolean(true)), ("b", Value::Null)]);
        assert_eq!(
            enc(&o),
            [0x03, 0, 1, b'a', 0x01, 1, 0, 1, b'b', 0x05, 0, 0, 0x09]
        );
        assert_eq!(decode(&enc(&o)).unwrap(), (o, 13));
    }

    #[test]
    fn ecma_array_and_strict_array_bytes() {
        let e = Value::EcmaArray(vec![("x".into(), Value::Number(0.0))]);
        let b = enc(&e);
        assert_eq!(&b[..5], &[0x08, 0, 0, 0, 1]);
        assert_eq!(decode(&b).unwrap().0, e);
        let s = Value::StrictArray(vec![Value::Undefined, Value::Boolean(false)]);
        assert_eq!(enc(&s), [0x0A, 0, 0, 0, 2, 0x06, 0x01, 0]);
    }

    #[test]
    fn ecma_array_count_is_only_a_hint() {
        // Count says 5 but one property follows; the terminator wins.
        let b = [0x08, 0, 0, 0, 5, 0, 1, b'k', 0x05, 0, 0, 0x09];
        assert_eq!(
            decode(&b).unwrap().0,
            Value::EcmaArray(vec![("k".into(), Value::Null)])
        );
    }

    #[test]
    fn long_string_switch() {
        let s = "x".repeat(70_000);
        let b = enc(&Value::String(s.clone()));
        assert_eq!(&b[..5], &[0x0C, 0, 1, 0x11, 0x70]);
        assert_eq!(decode(&b).unwrap().0, Value::String(s));
        // A short string can also arrive in long form.
        assert_eq!(
            decode(&[0x0C, 0, 0, 0, 1, b'z']).unwrap().0,
            Value::String("z".into())
        );
    }

    #[test]
    fn date_typed_object_xml() {
        let d = Value::Date {
            millis: 1.5e12,
            timezone: -60,
        };
        assert_eq!(decode(&enc(&d)).unwrap().0, d);
        let t = Value::TypedObject {
            class: "C".into(),
            properties: vec![("p".into(), Value::Number(2.0))],
        };
        assert_eq!(&enc(&t)[..4], &[0x10, 0, 1, b'C']);
        assert_eq!(decode(&enc(&t)).unwrap().0, t);
        let x = Value::XmlDocument("<a/>".into());
        assert_eq!(enc(&x), [0x0F, 0, 0, 0, 4, b'<', b'a', b'/', b'>']);
    }

    #[test]
    fn avmplus_switch() {
        // 0x11 then AMF3 integer 5.
        assert_eq!(
            decode(&[0x11, 0x04, 0x05]).unwrap().0,
            Value::Avmplus(amf3::Value::Integer(5))
        );
    }

    #[test]
    fn huge_declared_lengths_are_rejected_without_allocating() {
        assert!(matches!(
            decode(&[0x0C, 0xFF, 0xFF, 0xFF, 0xFF, b'a']),
            Err(AmfError::Truncated { .. })
        ));
        assert!(matches!(
            decode(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFF, 0x05]),
            Err(AmfError::BadCount { .. })
        ));
    }

    #[test]
    fn refused_markers() {
        for m in [0x04u8, 0x07, 0x0E] {
            assert!(matches!(
                decode(&[m, 0, 0]),
                Err(AmfError::UnsupportedMarker { marker, .. }) if marker == m
            ));
        }
        assert!(matches!(
            decode(&[0x42]),
            Err(AmfError::UnknownMarker { .. })
        ));
        assert!(matches!(
            decode(&[0x09]),
            Err(AmfError::UnexpectedObjectEnd { .. })
        ));
        assert!(matches!(
            decode(&[0x02, 0, 1, 0xFF]),
            Err(AmfError::InvalidUtf8 { .. })
        ));
    }

    #[test]
    fn depth_limit() {
        // 40 nested strict arrays of one element.
        let mut b = Vec::new();
        for _ in 0..40 {
            b.extend_from_slice(&[0x0A, 0, 0, 0, 1]);
        }
        b.push(0x05);
        assert_eq!(decode(&b), Err(AmfError::TooDeep));
        // 40 nested objects.
        let mut b = Vec::new();
        for _ in 0..40 {
            b.extend_from_slice(&[0x03, 0, 1, b'k']);
        }
        assert_eq!(decode(&b), Err(AmfError::TooDeep));
        // 30 levels are fine.
        let mut v = Value::Null;
        for _ in 0..30 {
            v = Value::StrictArray(vec![v]);
        }
        assert_eq!(decode(&enc(&v)).unwrap().0, v);
    }

    #[test]
    fn decode_all_reads_a_command() {
        let vals = vec![
            Value::from("connect"),
            Value::Number(1.0),
            object(&[("app", "live".into())]),
        ];
        let b = encode_all(&vals);
        assert_eq!(decode_all(&b).unwrap(), vals);
        assert!(decode_all(&b[..b.len() - 1]).is_err());
    }

    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            (-1e300f64..1e300).prop_map(Value::Number),
            any::<bool>().prop_map(Value::Boolean),
            ".{0,20}".prop_map(Value::String),
            Just(Value::Null),
            Just(Value::Undefined),
            Just(Value::Unsupported),
            ((-1e15f64..1e15), any::<i16>())
                .prop_map(|(millis, timezone)| Value::Date { millis, timezone }),
            ".{0,10}".prop_map(Value::XmlDocument),
            any::<i32>().prop_map(|i| Value::Avmplus(amf3::Value::Integer(
                i.clamp(-(1 << 28), (1 << 28) - 1)
            ))),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            let props = prop::collection::vec(("[a-z]{0,6}", inner.clone()), 0..5);
            prop_oneof![
                props.clone().prop_map(Value::Object),
                props.clone().prop_map(Value::EcmaArray),
                prop::collection::vec(inner, 0..5).prop_map(Value::StrictArray),
                ("[A-Za-z]{0,6}", props)
                    .prop_map(|(class, properties)| Value::TypedObject { class, properties }),
            ]
        })
    }

    proptest! {
        #[test]
        fn round_trip(v in arb_value()) {
            let b = enc(&v);
            let (d, used) = decode(&b).unwrap();
            prop_assert_eq!(used, b.len());
            prop_assert_eq!(d, v);
        }

        #[test]
        fn random_bytes_never_panic(b in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_all(&b);
        }

        #[test]
        fn truncations_error_cleanly(v in arb_value(), cut in any::<prop::sample::Index>()) {
            let b = enc(&v);
            let n = cut.index(b.len());
            if n < b.len() {
                prop_assert!(decode(&b[..n]).is_err());
            }
        }
    }
}
