//! Attribute values written as JSON straight from their encoding.

use serde_json::Value;

use super::{KeyValueRef, MAX_VALUE_DEPTH, Reader, Wire, base64, double, read_any_value};

/// A key-value's value, written as JSON straight from its encoding (as
/// [`read_any_value`] reads it, without building a [`Value`]).
#[derive(Debug)]
pub struct JsonValue<'a>(pub KeyValueRef<'a>);

impl serde::Serialize for JsonValue<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        match (self.0.merged, self.0.value) {
            (false, None) => serializer.serialize_unit(),
            (false, Some(bytes)) => AnyValueJson(bytes, 0).serialize(serializer),
            // A value given in parts merges: rare, read whole.
            (true, _) => self.0.value(0).unwrap_or(Value::Null).serialize(serializer),
        }
    }
}

/// An encoded `AnyValue`, written as JSON.
#[derive(Debug)]
struct AnyValueJson<'a>(&'a [u8], u32);

impl serde::Serialize for AnyValueJson<'_> {
    fn serialize<S: serde::Serializer>(
        &self,
        serializer: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap as _, SerializeSeq as _};
        // The last field that is a value wins, as in `read_any_value`.
        let mut last = None;
        let mut reader = Reader::new(self.0);
        while let Ok(Some(field)) = reader.field() {
            if (1..=8).contains(&field.0) {
                last = Some(field);
            }
        }
        match last {
            Some((1, Wire::Len(s))) => {
                serializer.serialize_str(std::str::from_utf8(s).unwrap_or(""))
            }
            Some((2, Wire::Varint(b))) => serializer.serialize_bool(b != 0),
            Some((3, Wire::Varint(i))) => serializer.serialize_i64(i as i64),
            Some((4, Wire::Fixed64(bits))) => double(f64::from_bits(bits)).serialize(serializer),
            Some((7, Wire::Len(b))) => serializer.serialize_str(&base64(b)),
            Some((5, Wire::Len(array))) if self.1 < MAX_VALUE_DEPTH => {
                let mut seq = serializer.serialize_seq(None)?;
                let mut items = Reader::new(array);
                while let Ok(Some(item)) = items.field() {
                    if let (1, Wire::Len(v)) = item {
                        seq.serialize_element(&AnyValueJson(v, self.1 + 1))?;
                    }
                }
                seq.end()
            }
            Some((6, Wire::Len(_))) => {
                // Key-value lists are rare in attributes: read whole (sorted, last key wins).
                let value = read_any_value(self.0, None, self.1).unwrap_or(Value::Null);
                let mut map = serializer.serialize_map(None)?;
                if let Value::Object(entries) = value {
                    for (k, v) in &entries {
                        map.serialize_entry(k, v)?;
                    }
                }
                map.end()
            }
            _ => serializer.serialize_unit(),
        }
    }
}
