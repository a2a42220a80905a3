//! [`Attributes`]: a span's attributes, kept as their OTLP encoding.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

use crate::protobuf::{self, KeyValueRef, Reader, Wire};

/// A span's attributes: the OTLP protobuf encoding of its key-values, in
/// place when short, else in one heap block, read when asked.
///
/// A span carries ten or so attributes; as a `BTreeMap<String, Value>` they
/// were ~20 heap blocks to allocate when the span arrived and to free when
/// its flow left memory — most of flowscope's CPU per span. They are
/// written (JSON), read back and compared as the map they stand for
/// ([`Attributes::to_map`]); a key given twice: the last one wins.
#[derive(Clone, Default)]
pub struct Attributes {
    /// `KeyValue` messages, each as a field-1 record (tag, length, bytes):
    /// the layout of a repeated field; or as field-9 records, a span's
    /// attributes copied as they lay in its encoding
    /// ([`Attributes::from_checked_span_field`]).
    encoded: Encoded,
}

/// Encodings up to this long are kept in place: two or three small
/// attributes (`a=1, b=7`: 18 bytes; `http.method=GET`: 21).
///
/// A span in its `Arc` was 272 bytes, which mimalloc serves from its
/// 320-byte size class: 48 bytes taken anyway. In place the encoding takes
/// 48 bytes (this, its length and the variant), 32 more than a pointer and
/// a length — in the same class, and a span of a few small attributes has
/// one heap block, not two, to allocate when it arrives and to free, cold,
/// when its flow leaves.
const INLINE_ATTRIBUTE_BYTES: usize = 46;

/// Bytes in place or in a block of their own.
#[derive(Clone)]
enum Encoded {
    Inline {
        len: u8,
        bytes: [u8; INLINE_ATTRIBUTE_BYTES],
    },
    Heap(Box<[u8]>),
}

impl Default for Encoded {
    fn default() -> Self {
        Encoded::new(&[])
    }
}

impl Encoded {
    /// A copy of `bytes`: in place when they fit.
    fn new(bytes: &[u8]) -> Self {
        if bytes.len() <= INLINE_ATTRIBUTE_BYTES {
            let mut inline = [0; INLINE_ATTRIBUTE_BYTES];
            inline[..bytes.len()].copy_from_slice(bytes);
            Encoded::Inline {
                len: bytes.len() as u8,
                bytes: inline,
            }
        } else {
            Encoded::Heap(bytes.into())
        }
    }

    /// Bytes written into a buffer: kept in place when they fit (the
    /// buffer is dropped), else the buffer becomes the block.
    fn from_vec(bytes: Vec<u8>) -> Self {
        if bytes.len() <= INLINE_ATTRIBUTE_BYTES {
            Encoded::new(&bytes)
        } else {
            Encoded::Heap(bytes.into_boxed_slice())
        }
    }

    #[inline]
    fn as_slice(&self) -> &[u8] {
        match self {
            Encoded::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Encoded::Heap(bytes) => bytes,
        }
    }
}

/// The field number of a span's attributes in OTLP's `Span`.
const SPAN_ATTRIBUTES_FIELD: u32 = 9;

impl Attributes {
    /// From `KeyValue` messages already checked with
    /// [`protobuf::check_key_value`] (the OTLP receiver's case).
    pub fn from_checked_key_values(key_values: &[&[u8]]) -> Self {
        let len = key_values
            .iter()
            .map(|kv| 1 + varint_len(kv.len()) + kv.len())
            .sum();
        if len <= INLINE_ATTRIBUTE_BYTES {
            // Written in place: no buffer on the heap.
            let mut bytes = [0; INLINE_ATTRIBUTE_BYTES];
            let mut at = 0;
            for kv in key_values {
                // A record shorter than 46 bytes: its length is one byte.
                bytes[at] = 0x0a;
                bytes[at + 1] = kv.len() as u8;
                bytes[at + 2..at + 2 + kv.len()].copy_from_slice(kv);
                at += 2 + kv.len();
            }
            debug_assert_eq!(at, len);
            return Self {
                encoded: Encoded::Inline {
                    len: len as u8,
                    bytes,
                },
            };
        }
        let mut encoded = Vec::with_capacity(len);
        for kv in key_values {
            protobuf::put_len(&mut encoded, 1, kv);
        }
        Self {
            encoded: Encoded::Heap(encoded.into_boxed_slice()),
        }
    }

    /// From a run of a span's encoding that is attribute records (field 9,
    /// each `KeyValue` checked with [`protobuf::check_key_value`]) and
    /// nothing else: one copy, not a record at a time.
    pub fn from_checked_span_field(records: &[u8]) -> Self {
        debug_assert!({
            let mut reader = Reader::new(records);
            std::iter::from_fn(|| reader.field().transpose())
                .all(|f| matches!(f, Ok((SPAN_ATTRIBUTES_FIELD, Wire::Len(_)))))
        });
        Self {
            encoded: Encoded::new(records),
        }
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.encoded.as_slice().is_empty()
    }

    /// Reads the first byte of the encoding (0 when empty): brings its
    /// block, when it has one, into the cache ahead of use, such as
    /// freeing it.
    pub fn touch(&self) -> u8 {
        self.encoded.as_slice().first().copied().unwrap_or(0)
    }

    /// Each key-value, its value not yet read, in the order given (a key
    /// may repeat: the last one counts).
    pub fn iter(&self) -> impl Iterator<Item = KeyValueRef<'_>> {
        self.records()
            .filter_map(|kv| protobuf::split_key_value(kv).ok())
    }

    /// The key-values whose key starts with `prefix`, found by comparing
    /// bytes, in the order given.
    pub fn with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = KeyValueRef<'a>> {
        self.records()
            .filter(|kv| protobuf::raw_key(kv).starts_with(prefix.as_bytes()))
            .filter_map(|kv| protobuf::split_key_value(kv).ok())
    }

    /// Each `KeyValue` message's bytes, in the order given.
    fn records(&self) -> impl Iterator<Item = &[u8]> {
        let mut records = Reader::new(self.encoded.as_slice());
        std::iter::from_fn(move || {
            // The usual record (field 1 or 9, shorter than 128 bytes) read
            // in place; any other through the reader.
            if let [0x0a | 0x4a, len, rest @ ..] = records.rest()
                && *len < 0x80
                && let Some((kv, after)) = rest.split_at_checked(usize::from(*len))
            {
                records = Reader::new(after);
                return Some(kv);
            }
            loop {
                match records.field() {
                    Ok(Some((1 | SPAN_ATTRIBUTES_FIELD, Wire::Len(kv)))) => return Some(kv),
                    Ok(Some(_)) => {}
                    Ok(None) | Err(_) => return None,
                }
            }
        })
    }

    /// The key-value given last for `key`, found by comparing bytes.
    pub fn find(&self, key: &str) -> Option<KeyValueRef<'_>> {
        let record = self
            .records()
            .filter(|kv| protobuf::raw_key(kv) == key.as_bytes())
            .last()?;
        protobuf::split_key_value(record).ok()
    }

    /// One attribute's value.
    pub fn get(&self, key: &str) -> Option<Value> {
        Some(self.find(key)?.value(0).unwrap_or(Value::Null))
    }

    /// One attribute as text: a string (not empty) or a number, as the
    /// correlator reads ids and keys.
    /// Borrowed when the value is a string given once (the usual case).
    pub fn text(&self, key: &str) -> Option<Cow<'_, str>> {
        let kv = self.find(key)?;
        if let Some(text) = kv.borrowed_str() {
            return (!text.is_empty()).then_some(Cow::Borrowed(text));
        }
        match kv.value(0).unwrap_or(Value::Null) {
            Value::String(s) if !s.is_empty() => Some(Cow::Owned(s)),
            Value::Number(n) => Some(Cow::Owned(n.to_string())),
            _ => None,
        }
    }

    /// All of them as a map.
    pub fn to_map(&self) -> BTreeMap<String, Value> {
        self.iter()
            .map(|kv| (kv.key().to_owned(), kv.value(0).unwrap_or(Value::Null)))
            .collect()
    }
}

fn varint_len(n: usize) -> usize {
    (64 - (n as u64 | 1).leading_zeros() as usize).div_ceil(7)
}

impl From<BTreeMap<String, Value>> for Attributes {
    fn from(map: BTreeMap<String, Value>) -> Self {
        map.iter().map(|(k, v)| (k.as_str(), v)).collect()
    }
}

impl<'a> FromIterator<(&'a str, &'a Value)> for Attributes {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a Value)>>(pairs: I) -> Self {
        let mut encoded = Vec::new();
        for (key, value) in pairs {
            protobuf::put_len(&mut encoded, 1, &protobuf::encode_key_value(key, value));
        }
        Self {
            encoded: Encoded::from_vec(encoded),
        }
    }
}

impl PartialEq for Attributes {
    fn eq(&self, other: &Self) -> bool {
        self.encoded.as_slice() == other.encoded.as_slice() || self.to_map() == other.to_map()
    }
}

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.to_map()).finish()
    }
}

/// Written straight from the encoding, in the order given, each key once
/// (its last value): no map is built, strings are not copied.
impl Serialize for Attributes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let records: Vec<&[u8]> = self.records().collect();
        let keys: Vec<&[u8]> = records.iter().map(|kv| protobuf::raw_key(kv)).collect();
        let mut map = serializer.serialize_map(None)?;
        for (i, record) in records.iter().enumerate() {
            if keys[i + 1..].contains(&keys[i]) {
                continue;
            }
            let Ok(kv) = protobuf::split_key_value(record) else {
                continue;
            };
            map.serialize_entry(kv.key(), &protobuf::JsonValue(kv))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Attributes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::<String, Value>::deserialize(deserializer).map(Attributes::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn attrs(pairs: &[(&str, Value)]) -> Attributes {
        pairs.iter().map(|(k, v)| (*k, v)).collect()
    }

    #[test]
    fn they_read_and_write_as_the_map_they_stand_for() {
        let a = attrs(&[
            ("b", json!(2)),
            ("a", json!("x")),
            ("b", json!("last wins")),
            ("n", json!(null)),
            ("o", json!({"k": [1, 2.5]})),
        ]);
        assert_eq!(a.get("b"), Some(json!("last wins")));
        assert_eq!(a.get("n"), Some(json!(null)));
        assert_eq!(a.get("missing"), None);
        assert_eq!(a.text("a").as_deref(), Some("x"));
        let json = serde_json::to_value(&a).unwrap();
        assert_eq!(
            json,
            json!({"a": "x", "b": "last wins", "n": null, "o": {"k": [1, 2.5]}})
        );
        let back: Attributes = serde_json::from_value(json).unwrap();
        assert_eq!(back, a);
        assert!(Attributes::default().is_empty() && !a.is_empty());
    }

    #[test]
    fn text_is_borrowed_from_a_string_and_read_from_anything_else() {
        let a = attrs(&[
            ("s", json!("ord-1")),
            ("n", json!(42)),
            ("empty", json!("")),
            ("flag", json!(true)),
            ("list", json!(["a"])),
        ]);
        assert!(matches!(a.text("s"), Some(Cow::Borrowed("ord-1"))));
        assert!(matches!(a.text("n"), Some(Cow::Owned(n)) if n == "42"));
        for not_text in ["empty", "flag", "list", "missing"] {
            assert_eq!(a.text(not_text), None, "{not_text}");
        }
    }

    #[test]
    fn records_long_and_short_of_either_field_are_all_read_in_order() {
        let long = "x".repeat(300);
        let a = attrs(&[
            ("a", json!(1)),
            ("long", json!(long)),
            ("b", json!("short")),
        ]);
        let keys: Vec<&str> = a.iter().map(|kv| kv.key()).collect();
        assert_eq!(keys, ["a", "long", "b"]);
        assert_eq!(a.get("long"), Some(json!(long)));
        assert_eq!(a.get("b"), Some(json!("short")));
        // The same records as a span's field 9.
        let b = Attributes::from_checked_span_field(&span_field(&a));
        assert_eq!(b.to_map(), a.to_map());
        assert_eq!(b.get("long"), Some(json!(long)));
    }

    #[test]
    fn a_few_small_attributes_are_kept_in_place_and_read_like_any_others() {
        let small = attrs(&[("a", json!(1)), ("b", json!(7))]);
        let key_values: Vec<Vec<u8>> = small.records().map(<[u8]>::to_vec).collect();
        let refs: Vec<&[u8]> = key_values.iter().map(Vec::as_slice).collect();
        // 18 bytes: in place, however they were made.
        for a in [
            small.clone(),
            Attributes::from_checked_key_values(&refs),
            Attributes::from_checked_span_field(&span_field(&small)),
        ] {
            assert!(matches!(a.encoded, Encoded::Inline { len: 18, .. }));
            assert_eq!(a, small);
            assert_eq!(a.get("b"), Some(json!(7)));
            assert_eq!(a.to_map().len(), 2);
        }
        // Exactly as long as fits, and one byte longer.
        let fits = attrs(&[("k", json!("x".repeat(INLINE_ATTRIBUTE_BYTES - 9)))]);
        assert_eq!(fits.encoded.as_slice().len(), INLINE_ATTRIBUTE_BYTES);
        assert!(matches!(fits.encoded, Encoded::Inline { .. }));
        let over = attrs(&[("k", json!("x".repeat(INLINE_ATTRIBUTE_BYTES - 8)))]);
        assert!(matches!(over.encoded, Encoded::Heap(_)));
        for a in [fits, over] {
            let refs: Vec<&[u8]> = a.records().collect();
            let made = Attributes::from_checked_key_values(&refs);
            assert_eq!(made.encoded.as_slice(), a.encoded.as_slice());
            assert_eq!(made.get("k"), a.get("k"));
        }
        assert!(Attributes::default().is_empty());
    }

    #[test]
    fn a_span_in_its_arc_stays_within_mimallocs_320_byte_class() {
        // The room taken in place is paid for by the size class the span
        // was in already (see `INLINE_ATTRIBUTE_BYTES`): a field more
        // that moves it to the next class (384) costs every span 64 bytes.
        assert_eq!(std::mem::size_of::<Attributes>(), 48);
        let in_arc = std::mem::size_of::<crate::SpanObservation>() + 16;
        assert!(in_arc > 256 && in_arc <= 320, "{in_arc} bytes");
    }

    fn span_field(a: &Attributes) -> Vec<u8> {
        let mut field = Vec::new();
        for kv in a.records() {
            protobuf::put_len(&mut field, SPAN_ATTRIBUTES_FIELD, kv);
        }
        field
    }

    #[test]
    fn varint_lengths_match_the_encoder() {
        for n in [0usize, 1, 127, 128, 16_383, 16_384, 1 << 21] {
            let mut out = Vec::new();
            protobuf::put_varint(&mut out, n as u64);
            assert_eq!(varint_len(n), out.len(), "{n}");
        }
    }
}
