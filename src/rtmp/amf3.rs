//! The part of AMF3 that shows up in RTMP: values behind the AMF0 0x11 switch, and the
//! "AMF3 command form" of message types 15 and 17 (one leading 0x00 byte, then AMF0 values).
//!
//! Bounded like AMF0: U29 lengths are checked against the remaining input before allocating,
//! counts cannot exceed the remaining bytes, depth is shared with AMF0's limit, and object
//! references / externalizable objects are refused (RTMP commands never need them).

use bytes::{BufMut, BytesMut};

use super::amf0::{AmfError, Reader, MAX_DEPTH};

const MARKER_UNDEFINED: u8 = 0x00;
const MARKER_NULL: u8 = 0x01;
const MARKER_FALSE: u8 = 0x02;
const MARKER_TRUE: u8 = 0x03;
const MARKER_INTEGER: u8 = 0x04;
const MARKER_DOUBLE: u8 = 0x05;
const MARKER_STRING: u8 = 0x06;
const MARKER_XML_DOC: u8 = 0x07;
const MARKER_DATE: u8 = 0x08;
const MARKER_ARRAY: u8 = 0x09;
const MARKER_OBJECT: u8 = 0x0A;
const MARKER_XML: u8 = 0x0B;
const MARKER_BYTE_ARRAY: u8 = 0x0C;

/// Largest and smallest values of the 29-bit signed AMF3 integer.
pub const INTEGER_MAX: i32 = (1 << 28) - 1;
pub const INTEGER_MIN: i32 = -(1 << 28);

/// An AMF3 value (the subset RTMP peers send).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Undefined,
    Null,
    Boolean(bool),
    Integer(i32),
    Double(f64),
    String(String),
    /// Both XML markers (legacy XMLDocument and E4X XML).
    Xml(String),
    Date(f64),
    Array {
        assoc: Vec<(String, Value)>,
        dense: Vec<Value>,
    },
    Object {
        class: String,
        sealed: Vec<(String, Value)>,
        dynamic: Vec<(String, Value)>,
    },
    ByteArray(Vec<u8>),
}

struct Tables {
    strings: Vec<String>,
    /// (class name, sealed member names, dynamic)
    traits: Vec<(String, Vec<String>, bool)>,
}

/// Decodes one AMF3 value from the front of `data`; returns it and the bytes used.
pub fn decode(data: &[u8]) -> Result<(Value, usize), AmfError> {
    let mut r = Reader::new(data);
    let v = decode_value_from(&mut r, 0)?;
    Ok((v, r.pos()))
}

/// Entry point for the AMF0 0x11 switch: a fresh reference context per switched value.
pub(crate) fn decode_value_from(r: &mut Reader<'_>, depth: usize) -> Result<Value, AmfError> {
    let mut t = Tables {
        strings: Vec::new(),
        traits: Vec::new(),
    };
    value(r, &mut t, depth)
}

fn u29(r: &mut Reader<'_>) -> Result<u32, AmfError> {
    let mut v: u32 = 0;
    for _ in 0..3 {
        let b = r.u8()?;
        v = (v << 7) | u32::from(b & 0x7F);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    let b = r.u8()?;
    Ok((v << 8) | u32::from(b))
}

fn bounded_count(r: &Reader<'_>, offset: usize, count: u32) -> Result<usize, AmfError> {
    if count as usize > r.remaining() {
        return Err(AmfError::BadCount {
            offset,
            count: u64::from(count),
        });
    }
    Ok(count as usize)
}

fn string(r: &mut Reader<'_>, t: &mut Tables) -> Result<String, AmfError> {
    let offset = r.pos();
    let h = u29(r)?;
    if h & 1 == 0 {
        let index = (h >> 1) as usize;
        return t
            .strings
            .get(index)
            .cloned()
            .ok_or(AmfError::BadReference { offset, index });
    }
    let s = r.utf8((h >> 1) as usize)?;
    if !s.is_empty() {
        t.strings.push(s.clone());
    }
    Ok(s)
}

/// Header of a reference-able complex value: returns the inline length/count field.
fn inline_header(r: &mut Reader<'_>, marker: u8) -> Result<u32, AmfError> {
    let offset = r.pos();
    let h = u29(r)?;
    if h & 1 == 0 {
        return Err(AmfError::UnsupportedMarker { offset, marker });
    }
    Ok(h >> 1)
}

fn value(r: &mut Reader<'_>, t: &mut Tables, depth: usize) -> Result<Value, AmfError> {
    if depth > MAX_DEPTH {
        return Err(AmfError::TooDeep);
    }
    let offset = r.pos();
    let marker = r.u8()?;
    Ok(match marker {
        MARKER_UNDEFINED => Value::Undefined,
        MARKER_NULL => Value::Null,
        MARKER_FALSE => Value::Boolean(false),
        MARKER_TRUE => Value::Boolean(true),
        MARKER_INTEGER => {
            let v = u29(r)?;
            // Sign-extend from 29 bits.
            Value::Integer(((v << 3) as i32) >> 3)
        }
        MARKER_DOUBLE => Value::Double(r.f64()?),
        MARKER_STRING => Value::String(string(r, t)?),
        MARKER_XML_DOC | MARKER_XML => {
            let len = inline_header(r, marker)? as usize;
            Value::Xml(r.utf8(len)?)
        }
        MARKER_DATE => {
            inline_header(r, marker)?;
            Value::Date(r.f64()?)
        }
        MARKER_BYTE_ARRAY => {
            let len = inline_header(r, marker)? as usize;
            Value::ByteArray(r.take(len)?.to_vec())
        }
        MARKER_ARRAY => {
            let count_offset = r.pos();
            let count = inline_header(r, marker)?;
            let mut assoc = Vec::new();
            loop {
                let key = string(r, t)?;
                if key.is_empty() {
                    break;
                }
                assoc.push((key, value(r, t, depth + 1)?));
            }
            let count = bounded_count(r, count_offset, count)?;
            let mut dense = Vec::with_capacity(count);
            for _ in 0..count {
                dense.push(value(r, t, depth + 1)?);
            }
            Value::Array { assoc, dense }
        }
        MARKER_OBJECT => object(r, t, depth, offset)?,
        _ => return Err(AmfError::UnknownMarker { offset, marker }),
    })
}

fn object(
    r: &mut Reader<'_>,
    t: &mut Tables,
    depth: usize,
    offset: usize,
) -> Result<Value, AmfError> {
    let h_offset = r.pos();
    let h = u29(r)?;
    if h & 1 == 0 {
        return Err(AmfError::UnsupportedMarker {
            offset,
            marker: MARKER_OBJECT,
        });
    }
    let (class, names, dynamic) = if h & 2 == 0 {
        let index = (h >> 2) as usize;
        t.traits.get(index).cloned().ok_or(AmfError::BadReference {
            offset: h_offset,
            index,
        })?
    } else {
        if h & 4 != 0 {
            // Externalizable: the format is class-specific and unknowable here.
            return Err(AmfError::UnsupportedMarker {
                offset,
                marker: MARKER_OBJECT,
            });
        }
        let dynamic = h & 8 != 0;
        let count = bounded_count(r, h_offset, h >> 4)?;
        let class = string(r, t)?;
        let mut names = Vec::with_capacity(count);
        for _ in 0..count {
            names.push(string(r, t)?);
        }
        t.traits.push((class.clone(), names.clone(), dynamic));
        (class, names, dynamic)
    };
    let mut sealed = Vec::with_capacity(names.len());
    for name in names {
        sealed.push((name, value(r, t, depth + 1)?));
    }
    let mut dyn_members = Vec::new();
    if dynamic {
        loop {
            let key = string(r, t)?;
            if key.is_empty() {
                break;
            }
            dyn_members.push((key, value(r, t, depth + 1)?));
        }
    }
    Ok(Value::Object {
        class,
        sealed,
        dynamic: dyn_members,
    })
}

fn put_u29(out: &mut BytesMut, v: u32) {
    let v = v & 0x1FFF_FFFF;
    if v < 0x80 {
        out.put_u8(v as u8);
    } else if v < 0x4000 {
        out.put_slice(&[((v >> 7) | 0x80) as u8, (v & 0x7F) as u8]);
    } else if v < 0x20_0000 {
        out.put_slice(&[
            ((v >> 14) | 0x80) as u8,
            (((v >> 7) & 0x7F) | 0x80) as u8,
            (v & 0x7F) as u8,
        ]);
    } else {
        out.put_slice(&[
            ((v >> 22) | 0x80) as u8,
            (((v >> 15) & 0x7F) | 0x80) as u8,
            (((v >> 8) & 0x7F) | 0x80) as u8,
            (v & 0xFF) as u8,
        ]);
    }
}

/// Strings are always written inline (no reference table): valid AMF3 and simpler to verify.
/// Strings longer than the 28-bit length field cannot occur in a 16 MiB message.
fn put_string(out: &mut BytesMut, s: &str) {
    let len = s.len().min(0x0FFF_FFFF);
    put_u29(out, ((len as u32) << 1) | 1);
    out.put_slice(&s.as_bytes()[..len]);
}

/// Appends the AMF3 encoding of `v` (no marker switch byte).
pub fn encode(out: &mut BytesMut, v: &Value) {
    match v {
        Value::Undefined => out.put_u8(MARKER_UNDEFINED),
        Value::Null => out.put_u8(MARKER_NULL),
        Value::Boolean(false) => out.put_u8(MARKER_FALSE),
        Value::Boolean(true) => out.put_u8(MARKER_TRUE),
        Value::Integer(i) if (INTEGER_MIN..=INTEGER_MAX).contains(i) => {
            out.put_u8(MARKER_INTEGER);
            put_u29(out, *i as u32);
        }
        Value::Integer(i) => {
            out.put_u8(MARKER_DOUBLE);
            out.put_f64(f64::from(*i));
        }
        Value::Double(d) => {
            out.put_u8(MARKER_DOUBLE);
            out.put_f64(*d);
        }
        Value::String(s) => {
            out.put_u8(MARKER_STRING);
            put_string(out, s);
        }
        Value::Xml(s) => {
            out.put_u8(MARKER_XML);
            put_string(out, s);
        }
        Value::Date(ms) => {
            out.put_u8(MARKER_DATE);
            out.put_u8(1);
            out.put_f64(*ms);
        }
        Value::ByteArray(b) => {
            out.put_u8(MARKER_BYTE_ARRAY);
            let len = b.len().min(0x0FFF_FFFF);
            put_u29(out, ((len as u32) << 1) | 1);
            out.put_slice(&b[..len]);
        }
        Value::Array { assoc, dense } => {
            out.put_u8(MARKER_ARRAY);
            put_u29(out, ((dense.len().min(0x0FFF_FFFF) as u32) << 1) | 1);
            for (k, v) in assoc.iter().filter(|(k, _)| !k.is_empty()) {
                put_string(out, k);
                encode(out, v);
            }
            out.put_u8(0x01);
            for v in dense {
                encode(out, v);
            }
        }
        Value::Object {
            class,
            sealed,
            dynamic,
        } => {
            out.put_u8(MARKER_OBJECT);
            // Inline traits, not externalizable, always dynamic so `dynamic` round-trips.
            let count = sealed.len().min(0x00FF_FFFF) as u32;
            put_u29(out, (count << 4) | 0b1011);
            put_string(out, class);
            for (k, _) in sealed.iter().take(count as usize) {
                put_string(out, k);
            }
            for (_, v) in sealed.iter().take(count as usize) {
                encode(out, v);
            }
            for (k, v) in dynamic.iter().filter(|(k, _)| !k.is_empty()) {
                put_string(out, k);
                encode(out, v);
            }
            out.put_u8(0x01);
        }
    }
}

/// Body of a type-15 (data) or type-17 (command) message as AMF0 bytes: the format selector
/// byte 0x00 is dropped. A body that starts directly with an AMF0 value (some peers omit the
/// selector) is returned unchanged; the values may still switch to AMF3 with 0x11.
pub fn amf0_body(payload: &[u8]) -> &[u8] {
    match payload.first() {
        Some(0x00) => &payload[1..],
        _ => payload,
    }
}

/// Offset of the AMF0 body inside a type-15/17 payload (see [`amf0_body`]).
pub fn amf0_body_offset(payload: &[u8]) -> usize {
    usize::from(payload.first() == Some(&0x00))
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
    fn u29_forms() {
        for (v, bytes) in [
            (0u32, vec![0x00]),
            (0x7F, vec![0x7F]),
            (0x80, vec![0x81, 0x00]),
            (0x3FFF, vec![0xFF, 0x7F]),
            (0x4000, vec![0x81, 0x80, 0x00]),
            (0x1F_FFFF, vec![0xFF, 0xFF, 0x7F]),
            (0x20_0000, vec![0x80, 0xC0, 0x80, 0x00]),
            (0x1FFF_FFFF, vec![0xFF, 0xFF, 0xFF, 0xFF]),
        ] {
            let mut b = BytesMut::new();
            put_u29(&mut b, v);
            assert_eq!(b.to_vec(), bytes, "{v:#x}");
            assert_eq!(u29(&mut Reader::new(&bytes)).unwrap(), v);
        }
    }

    #[test]
    fn integers_sign_extend() {
        assert_eq!(
            decode(&[0x04, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap().0,
            Value::Integer(-1)
        );
        assert_eq!(enc(&Value::Integer(-1)), [0x04, 0xFF, 0xFF, 0xFF, 0xFF]);
        // Out of 29-bit range: written as a double.
        assert_eq!(enc(&Value::Integer(1 << 29))[0], MARKER_DOUBLE);
    }

    #[test]
    fn string_references() {
        // Array with assoc "ab" -> "ab"(ref 0), dense empty.
        let b = [0x09, 0x01, 0x05, b'a', b'b', 0x06, 0x00, 0x01];
        assert_eq!(
            decode(&b).unwrap().0,
            Value::Array {
                assoc: vec![("ab".into(), Value::String("ab".into()))],
                dense: vec![]
            }
        );
        // Reference to a string never seen.
        assert!(matches!(
            decode(&[0x06, 0x02]),
            Err(AmfError::BadReference { index: 1, .. })
        ));
    }

    #[test]
    fn object_with_traits_reference() {
        // Array of two objects sharing traits {class "", sealed ["a"], not dynamic}.
        let b = [
            0x09, 0x05, 0x01, // dense count 2, no assoc
            0x0A, 0x13, 0x01, 0x03, b'a', 0x04, 0x01, // object, traits inline, a=1
            0x0A, 0x01, 0x04, 0x02, // object, traits ref 0, a=2
        ];
        let v = decode(&b).unwrap().0;
        let obj = |n| Value::Object {
            class: String::new(),
            sealed: vec![("a".into(), Value::Integer(n))],
            dynamic: vec![],
        };
        assert_eq!(
            v,
            Value::Array {
                assoc: vec![],
                dense: vec![obj(1), obj(2)]
            }
        );
    }

    #[test]
    fn refused_forms() {
        // Object reference.
        assert!(matches!(
            decode(&[0x0A, 0x00]),
            Err(AmfError::UnsupportedMarker { .. })
        ));
        // Externalizable traits.
        assert!(matches!(
            decode(&[0x0A, 0x07, 0x01]),
            Err(AmfError::UnsupportedMarker { .. })
        ));
        // Vector / dictionary markers.
        assert!(matches!(
            decode(&[0x0D]),
            Err(AmfError::UnknownMarker { .. })
        ));
        // Huge dense count.
        assert!(matches!(
            decode(&[0x09, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
            Err(AmfError::BadCount { .. })
        ));
        // Huge sealed count.
        assert!(matches!(
            decode(&[0x0A, 0xFF, 0xFF, 0xFF, 0xFB]),
            Err(AmfError::BadCount { .. })
        ));
    }

    #[test]
    fn depth_limit() {
        let mut b = Vec::new();
        for _ in 0..40 {
            b.extend_from_slice(&[0x09, 0x03, 0x01]);
        }
        b.push(0x01);
        assert_eq!(decode(&b), Err(AmfError::TooDeep));
    }

    #[test]
    fn command_form() {
        assert_eq!(amf0_body(&[0x00, 0x02, 0x00, 0x00]), &[0x02, 0, 0]);
        assert_eq!(amf0_body(&[0x02, 0x00, 0x00]), &[0x02, 0, 0]);
        assert_eq!(amf0_body(&[]), &[] as &[u8]);
        assert_eq!(amf0_body_offset(&[0x00, 0x02]), 1);
    }

    fn arb_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Undefined),
            Just(Value::Null),
            any::<bool>().prop_map(Value::Boolean),
            (INTEGER_MIN..=INTEGER_MAX).prop_map(Value::Integer),
            (-1e300f64..1e300).prop_map(Value::Double),
            ".{0,12}".prop_map(Value::String),
            ".{0,8}".prop_map(Value::Xml),
            (-1e15f64..1e15).prop_map(Value::Date),
            prop::collection::vec(any::<u8>(), 0..16).prop_map(Value::ByteArray),
        ];
        leaf.prop_recursive(4, 40, 5, |inner| {
            let props = prop::collection::vec(("[a-z]{1,5}", inner.clone()), 0..4);
            prop_oneof![
                (props.clone(), prop::collection::vec(inner, 0..4))
                    .prop_map(|(assoc, dense)| Value::Array { assoc, dense }),
                ("[A-Za-z]{0,5}", props.clone(), props).prop_map(|(class, sealed, dynamic)| {
                    Value::Object {
                        class,
                        sealed,
                        dynamic,
                    }
                }),
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
            let _ = decode(&b);
        }
    }
}
