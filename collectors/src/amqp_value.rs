//! AMQP field values to JSON, leniently: brokers and clients pick whatever
//! integer width fits, strings come as long strings or byte arrays.

use base64::Engine as _;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::{Map, Value, json};

/// Any AMQP value as JSON. Byte arrays that are UTF-8 become strings, others
/// `{"base64": "…"}`; timestamps become integers (seconds).
pub fn to_json(value: &AMQPValue) -> Value {
    match value {
        AMQPValue::Boolean(b) => json!(b),
        AMQPValue::ShortShortInt(n) => json!(n),
        AMQPValue::ShortShortUInt(n) => json!(n),
        AMQPValue::ShortInt(n) => json!(n),
        AMQPValue::ShortUInt(n) => json!(n),
        AMQPValue::LongInt(n) => json!(n),
        AMQPValue::LongUInt(n) => json!(n),
        AMQPValue::LongLongInt(n) => json!(n),
        AMQPValue::Float(f) => json!(f),
        AMQPValue::Double(f) => json!(f),
        AMQPValue::DecimalValue(d) => {
            json!(f64::from(d.value) / 10f64.powi(i32::from(d.scale)))
        }
        AMQPValue::ShortString(s) => json!(s.as_str()),
        AMQPValue::LongString(s) => bytes_to_json(s.as_bytes()),
        AMQPValue::ByteArray(b) => bytes_to_json(b.as_slice()),
        AMQPValue::FieldArray(a) => Value::Array(a.as_slice().iter().map(to_json).collect()),
        AMQPValue::Timestamp(t) => json!(t),
        AMQPValue::FieldTable(t) => table_to_json(t),
        AMQPValue::Void => Value::Null,
    }
}

/// A field table as a JSON object.
pub fn table_to_json(table: &FieldTable) -> Value {
    Value::Object(
        table
            .inner()
            .iter()
            .map(|(k, v)| (k.to_string(), to_json(v)))
            .collect::<Map<_, _>>(),
    )
}

fn bytes_to_json(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => json!(s),
        Err(_) => json!({ "base64": base64::engine::general_purpose::STANDARD.encode(bytes) }),
    }
}

/// A value as text, if it is text (long/short string or UTF-8 byte array).
pub fn as_str(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        AMQPValue::ByteArray(b) => std::str::from_utf8(b.as_slice()).ok(),
        _ => None,
    }
}

/// A value as an integer, whatever integer type (or timestamp) it came as.
pub fn as_i64(value: &AMQPValue) -> Option<i64> {
    Some(match value {
        AMQPValue::ShortShortInt(n) => i64::from(*n),
        AMQPValue::ShortShortUInt(n) => i64::from(*n),
        AMQPValue::ShortInt(n) => i64::from(*n),
        AMQPValue::ShortUInt(n) => i64::from(*n),
        AMQPValue::LongInt(n) => i64::from(*n),
        AMQPValue::LongUInt(n) => i64::from(*n),
        AMQPValue::LongLongInt(n) => *n,
        AMQPValue::Timestamp(t) => i64::try_from(*t).ok()?,
        AMQPValue::LongString(_) | AMQPValue::ShortString(_) => {
            as_str(value)?.trim().parse().ok()?
        }
        _ => return None,
    })
}

/// A value as a list of strings (a field array of strings, or one string).
pub fn as_strings(value: &AMQPValue) -> Vec<String> {
    match value {
        AMQPValue::FieldArray(a) => a
            .as_slice()
            .iter()
            .filter_map(as_str)
            .map(str::to_owned)
            .collect(),
        other => as_str(other)
            .map(|s| vec![s.to_owned()])
            .unwrap_or_default(),
    }
}

/// A value as a bool (booleans, or integers 0/1).
pub fn as_bool(value: &AMQPValue) -> Option<bool> {
    match value {
        AMQPValue::Boolean(b) => Some(*b),
        other => as_i64(other).map(|n| n != 0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_of_any_width_and_text_of_any_kind() {
        assert_eq!(as_i64(&AMQPValue::LongInt(7)), Some(7));
        assert_eq!(as_i64(&AMQPValue::LongLongInt(-3)), Some(-3));
        assert_eq!(
            as_i64(&AMQPValue::Timestamp(1_700_000_000)),
            Some(1_700_000_000)
        );
        assert_eq!(as_i64(&AMQPValue::LongString("42".into())), Some(42));
        assert_eq!(
            as_str(&AMQPValue::ByteArray(b"abc".to_vec().into())),
            Some("abc")
        );
        assert_eq!(
            to_json(&AMQPValue::ByteArray(vec![0xff, 0x00].into())),
            json!({"base64": "/wA="})
        );
        let array = AMQPValue::FieldArray(
            vec![
                AMQPValue::LongString("a".into()),
                AMQPValue::ShortString("b".into()),
            ]
            .into(),
        );
        assert_eq!(as_strings(&array), ["a", "b"]);
    }
}
