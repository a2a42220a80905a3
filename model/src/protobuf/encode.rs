//! Writing protobuf: the few fields and key-values flowscope encodes
//! itself (attributes made from JSON, tests).

use serde_json::Value;

/// Appends a length-delimited field.
pub fn put_len(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    put_varint(out, u64::from(number) << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push(value as u8 | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A `KeyValue` message for a JSON key and value (the inverse of
/// [`read_key_value`](super::read_key_value), up to bytes values, which
/// stay base64 text).
pub fn encode_key_value(key: &str, value: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(key.len() + 16);
    put_len(&mut out, 1, key.as_bytes());
    if !value.is_null() {
        put_len(&mut out, 2, &encode_any_value(value));
    }
    out
}

pub(super) fn encode_any_value(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    match value {
        Value::Null => {}
        Value::Bool(b) => {
            put_varint(&mut out, 2 << 3);
            put_varint(&mut out, u64::from(*b));
        }
        Value::Number(n) => match n.as_i64() {
            Some(i) => {
                put_varint(&mut out, 3 << 3);
                put_varint(&mut out, i as u64);
            }
            None => {
                put_varint(&mut out, 4 << 3 | 1);
                out.extend_from_slice(&n.as_f64().unwrap_or(f64::NAN).to_le_bytes());
            }
        },
        Value::String(s) => put_len(&mut out, 1, s.as_bytes()),
        Value::Array(items) => {
            let mut array = Vec::new();
            for item in items {
                put_len(&mut array, 1, &encode_any_value(item));
            }
            put_len(&mut out, 5, &array);
        }
        Value::Object(map) => {
            let mut list = Vec::new();
            for (k, v) in map {
                put_len(&mut list, 1, &encode_key_value(k, v));
            }
            put_len(&mut out, 6, &list);
        }
    }
    out
}
