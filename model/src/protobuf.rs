//! The protobuf wire format, as far as OTLP attributes need it: reading
//! fields, OTLP `AnyValue`s to JSON, JSON back to `AnyValue`s.
//!
//! Each field is a varint key `(number << 3) | wire type`, then a varint
//! (0), 8 bytes (1), a length and that many bytes (2) or 4 bytes (5).
//! Unknown fields are skipped; a singular field seen twice: the last wins
//! (messages merge), as protobuf prescribes. The OTLP receiver reads whole
//! export requests with the same [`Reader`].

use std::collections::BTreeMap;

use serde_json::{Number, Value};

/// How deep attribute values may nest (arrays in key-value lists in …):
/// deeper values are refused rather than risking the stack.
pub const MAX_VALUE_DEPTH: u32 = 32;

/// Why bytes are not the protobuf they should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtobufError(pub String);

impl std::fmt::Display for ProtobufError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ProtobufError {}

/// `Result` with a [`ProtobufError`].
pub type Result<T> = std::result::Result<T, ProtobufError>;

/// An error saying what was malformed.
pub fn malformed<T>(what: impl Into<String>) -> Result<T> {
    Err(ProtobufError(what.into()))
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

/// A cursor over one message's bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    /// A reader at the start of a message.
    #[inline]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }

    /// Bytes not read yet.
    #[inline]
    pub fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// The bytes not read yet.
    #[inline]
    pub fn rest(&self) -> &'a [u8] {
        self.bytes
    }

    /// The next field, `None` at the end of the message.
    ///
    /// The usual field (numbers 1 to 15, a one-byte length or varint, or
    /// eight bytes) is read here, inlined into the caller's loop: called,
    /// its result went through memory and was waited for after every
    /// field (~5 % of the CPU of receiving tiny spans). Any other goes
    /// through [`Reader::any_field`].
    #[inline(always)]
    pub fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>> {
        if let [key, rest @ ..] = self.bytes
            && (0x08..0x80).contains(key)
        {
            let number = u32::from(key >> 3);
            match key & 7 {
                2 => {
                    if let [len, body @ ..] = rest
                        && *len < 0x80
                        && let Some((head, tail)) = body.split_at_checked(usize::from(*len))
                    {
                        self.bytes = tail;
                        return Ok(Some((number, Wire::Len(head))));
                    }
                }
                1 => {
                    if let Some((value, tail)) = rest.split_first_chunk::<8>() {
                        self.bytes = tail;
                        return Ok(Some((number, Wire::Fixed64(u64::from_le_bytes(*value)))));
                    }
                }
                0 => {
                    if let [value, tail @ ..] = rest
                        && *value < 0x80
                    {
                        self.bytes = tail;
                        return Ok(Some((number, Wire::Varint(u64::from(*value)))));
                    }
                }
                _ => {}
            }
        }
        self.any_field()
    }

    /// [`Reader::field`] for any field, and for the end of the message.
    #[inline(never)]
    fn any_field(&mut self) -> Result<Option<(u32, Wire<'a>)>> {
        if self.bytes.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return malformed(format!("field number {number} is out of range"));
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => Wire::Fixed64(u64::from_le_bytes(self.take::<8>()?)),
            2 => {
                let len = self.varint()?;
                if len > self.bytes.len() as u64 {
                    return malformed("a length runs past the end of the message");
                }
                let (head, rest) = self.bytes.split_at(len as usize);
                self.bytes = rest;
                Wire::Len(head)
            }
            5 => {
                self.take::<4>()?;
                Wire::Fixed32
            }
            other => return malformed(format!("unsupported wire type {other}")),
        };
        Ok(Some((number as u32, value)))
    }

    #[inline]
    fn varint(&mut self) -> Result<u64> {
        // Most varints here (keys, lengths of short strings) are one byte.
        if let Some((&byte, rest)) = self.bytes.split_first()
            && byte < 0x80
        {
            self.bytes = rest;
            return Ok(u64::from(byte));
        }
        let mut value = 0u64;
        for (i, byte) in self.bytes.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                if i == 9 && *byte > 1 {
                    break;
                }
                self.bytes = &self.bytes[i + 1..];
                return Ok(value);
            }
        }
        malformed("a varint is cut short or too long")
    }

    #[inline]
    fn take<const N: usize>(&mut self) -> Result<[u8; N]> {
        let Some((head, rest)) = self.bytes.split_first_chunk::<N>() else {
            return malformed("a fixed-width value is cut short");
        };
        self.bytes = rest;
        Ok(*head)
    }
}

/// Text as UTF-8, or an error naming `what`.
#[inline]
pub fn utf8<'a>(bytes: &'a [u8], what: &str) -> Result<&'a str> {
    std::str::from_utf8(bytes).or_else(|_| malformed(format!("the {what} is not valid UTF-8")))
}

/// A `KeyValue`, its key read, its value not yet.
#[derive(Debug, Clone, Copy)]
pub struct KeyValueRef<'a> {
    /// The key (the last one given), checked as UTF-8 ([`KeyValueRef::key`]):
    /// kept as bytes so that the usual ASCII key is checked word by word
    /// with its value, not by a call of its own.
    key: &'a [u8],
    /// The whole message, for a value given in several parts.
    bytes: &'a [u8],
    /// The value's bytes, when given once; `None` when absent.
    value: Option<&'a [u8]>,
    /// Whether the value was given more than once (the parts merge).
    merged: bool,
}

impl KeyValueRef<'_> {
    /// The value as JSON (`null` when absent).
    pub fn value(&self, depth: u32) -> Result<Value> {
        if !self.merged {
            return self
                .value
                .map_or(Ok(Value::Null), |v| read_any_value(v, None, depth));
        }
        let mut value = None;
        let mut reader = Reader::new(self.bytes);
        while let Some(field) = reader.field()? {
            if let (2, Wire::Len(v)) = field {
                value = Some(read_any_value(v, value.take(), depth)?);
            }
        }
        Ok(value.unwrap_or(Value::Null))
    }

    /// The value when it is text: a string or a number, as ids are read.
    pub fn text(&self) -> Option<String> {
        match self.value(0).ok()? {
            Value::String(s) => Some(s),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

impl<'a> KeyValueRef<'a> {
    /// The key.
    pub fn key(&self) -> &'a str {
        // Checked when read: every way of making one does.
        std::str::from_utf8(self.key).unwrap_or_default()
    }

    /// The key's bytes: for comparing, without the check [`KeyValueRef::key`] makes.
    pub fn key_bytes(&self) -> &'a [u8] {
        self.key
    }

    /// The value when it is a string given once, borrowed: ids and names
    /// read without a copy. `None` for any other value (read
    /// [`KeyValueRef::text`] then).
    pub fn borrowed_str(&self) -> Option<&'a str> {
        std::str::from_utf8(self.string_bytes()?).ok()
    }

    /// [`KeyValueRef::borrowed_str`]'s bytes, not checked again: for text
    /// checked when it arrived ([`check_key_value`]) and joined with other
    /// text before one check of the whole.
    pub fn string_bytes(&self) -> Option<&'a [u8]> {
        if self.merged {
            return None;
        }
        let mut reader = Reader::new(self.value?);
        let mut text = None;
        while let Some(field) = reader.field().ok()? {
            text = match field {
                (1, Wire::Len(s)) => Some(s),
                _ => return None,
            };
        }
        text
    }
}

/// A `KeyValue`'s key, and where its value is. Checks the fields' types,
/// not the value's content.
#[inline]
pub fn split_key_value(bytes: &[u8]) -> Result<KeyValueRef<'_>> {
    let mut kv = KeyValueRef {
        key: &[],
        bytes,
        value: None,
        merged: false,
    };
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(k)) => {
                utf8(k, "attribute key")?;
                kv.key = k;
            }
            (2, Wire::Len(v)) => {
                kv.merged = kv.value.is_some();
                kv.value = Some(v);
            }
            (1 | 2, _) => return malformed("an attribute holds a field of the wrong type"),
            _ => {}
        }
    }
    Ok(kv)
}

/// A `KeyValue`'s key as bytes, not checked (for finding a key among
/// attributes that were checked when they arrived).
#[inline]
pub fn raw_key(bytes: &[u8]) -> &[u8] {
    // The usual layout is read in place; anything else field by field.
    if let Some((key, _)) = usual_layout(bytes) {
        return key;
    }
    let mut key: &[u8] = &[];
    let mut reader = Reader::new(bytes);
    while let Ok(Some(field)) = reader.field() {
        if let (1, Wire::Len(k)) = field {
            key = k;
        }
    }
    key
}

/// A `KeyValue` laid out as usual — a short key, then at most one short
/// value — as its key and value bytes; `None` for any other layout.
#[inline]
fn usual_layout(bytes: &[u8]) -> Option<(&[u8], Option<&[u8]>)> {
    let [0x0a, key_len, rest @ ..] = bytes else {
        return None;
    };
    if *key_len >= 0x80 {
        return None;
    }
    let (key, after) = rest.split_at_checked(usize::from(*key_len))?;
    match after {
        [] => Some((key, None)),
        [0x12, len, value @ ..] if *len < 0x80 && value.len() == usize::from(*len) => {
            Some((key, Some(value)))
        }
        _ => None,
    }
}

/// One `KeyValue` into a map (a repeated key: the last one wins).
pub fn read_key_value(bytes: &[u8], map: &mut BTreeMap<String, Value>, depth: u32) -> Result<()> {
    let kv = split_key_value(bytes)?;
    map.insert(kv.key().to_owned(), kv.value(depth)?);
    Ok(())
}

/// An `AnyValue` as JSON: bytes in base64, key-value lists as objects,
/// non-finite doubles as their names (`"NaN"`, `"inf"`), empty (or a
/// string-table index, unsupported) as `null`. `before` is the value of an
/// earlier copy of the message: it stays unless this one has a value.
pub fn read_any_value(bytes: &[u8], before: Option<Value>, depth: u32) -> Result<Value> {
    if depth >= MAX_VALUE_DEPTH {
        return malformed(format!(
            "attribute values nested deeper than {MAX_VALUE_DEPTH}"
        ));
    }
    let mut value = before.unwrap_or(Value::Null);
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        value = match field {
            (1, Wire::Len(s)) => Value::String(utf8(s, "string value")?.to_owned()),
            (2, Wire::Varint(b)) => Value::Bool(b != 0),
            (3, Wire::Varint(i)) => Value::from(i as i64),
            (4, Wire::Fixed64(bits)) => double(f64::from_bits(bits)),
            (5, Wire::Len(array)) => {
                let mut values = Vec::new();
                let mut items = Reader::new(array);
                while let Some(item) = items.field()? {
                    match item {
                        (1, Wire::Len(v)) => values.push(read_any_value(v, None, depth + 1)?),
                        (1, _) => return malformed("an array value holds a non-message"),
                        _ => {}
                    }
                }
                Value::Array(values)
            }
            (6, Wire::Len(list)) => {
                let mut map = BTreeMap::new();
                let mut entries = Reader::new(list);
                while let Some(entry) = entries.field()? {
                    match entry {
                        (1, Wire::Len(kv)) => read_key_value(kv, &mut map, depth + 1)?,
                        (1, _) => return malformed("a key-value list holds a non-message"),
                        _ => {}
                    }
                }
                Value::Object(map.into_iter().collect())
            }
            (7, Wire::Len(b)) => Value::String(base64(b)),
            (8, Wire::Varint(_)) => Value::Null,
            (1..=8, _) => return malformed("an attribute value has the wrong type"),
            _ => continue,
        };
    }
    Ok(value)
}

/// Checks a `KeyValue` as [`read_key_value`] would read it, without
/// building anything; hands back its key and where its value lies.
pub fn check_key_value(bytes: &[u8], depth: u32) -> Result<KeyValueRef<'_>> {
    if depth < MAX_VALUE_DEPTH
        && let Some(kv) = simple_key_value(bytes)
    {
        return Ok(kv);
    }
    check_key_value_field_by_field(bytes, depth)
}

/// The key of a `KeyValue` in the usual layout that checks as
/// [`check_key_value`] would check it; `None` for any other (check it
/// with [`check_key_value`] then, for its key or the error).
///
/// Two words, handed back in registers: [`KeyValueRef`], returned by a
/// call or merged from two paths, went through memory, written word by
/// word and read back in wider loads the processor cannot forward from
/// the stores — a stall per attribute (docs/benchmarks.md, eighteenth
/// sitting).
#[inline(always)]
pub fn simple_key(bytes: &[u8]) -> Option<&[u8]> {
    simple_key_value(bytes).map(|kv| kv.key)
}

/// The usual key-value (a short key, then a short value that is one
/// string, integer, boolean or double), checked in place; `None` for any
/// other, or for one that does not check (read field by field then, for
/// the error).
#[inline]
fn simple_key_value(bytes: &[u8]) -> Option<KeyValueRef<'_>> {
    let (key, Some(value)) = usual_layout(bytes)? else {
        return None;
    };
    // All ASCII (as most are): the key and a string value are valid
    // UTF-8, checked in one pass over the record.
    let ascii = bytes.is_ascii();
    let checks = (ascii || key.is_ascii() || std::str::from_utf8(key).is_ok())
        && match value {
            [0x0a, len, text @ ..] => {
                *len < 0x80
                    && text.len() == usize::from(*len)
                    && (ascii || std::str::from_utf8(text).is_ok())
            }
            // A varint: every byte but the last has its top bit set; ten
            // bytes at most, the tenth 0 or 1.
            [0x10 | 0x18, int @ ..] => match int.split_last() {
                Some((last, head)) => {
                    *last < 0x80
                        && head.iter().all(|b| *b >= 0x80)
                        && (int.len() < 10 || (int.len() == 10 && *last <= 1))
                }
                None => false,
            },
            [0x21, double @ ..] => double.len() == 8,
            _ => false,
        };
    if !checks {
        return None;
    }
    Some(KeyValueRef {
        key,
        bytes,
        value: Some(value),
        merged: false,
    })
}

/// [`check_key_value`] for any layout.
fn check_key_value_field_by_field(bytes: &[u8], depth: u32) -> Result<KeyValueRef<'_>> {
    let kv = split_key_value(bytes)?;
    // Text within a message that is all ASCII is valid UTF-8: checked
    // once, word by word, not string by string.
    let text = if bytes.is_ascii() {
        Text::Ascii
    } else {
        Text::Check
    };
    if !kv.merged {
        if let Some(v) = kv.value {
            check_any_value(v, depth, text)?;
        }
        return Ok(kv);
    }
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        if let (2, Wire::Len(v)) = field {
            check_any_value(v, depth, text)?;
        }
    }
    Ok(kv)
}

/// Whether strings in a value still need checking as UTF-8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Text {
    /// Known ASCII (the message around them is).
    Ascii,
    Check,
}

fn check_any_value(bytes: &[u8], depth: u32, text: Text) -> Result<()> {
    if depth >= MAX_VALUE_DEPTH {
        return malformed(format!(
            "attribute values nested deeper than {MAX_VALUE_DEPTH}"
        ));
    }
    let mut reader = Reader::new(bytes);
    while let Some(field) = reader.field()? {
        match field {
            (1, Wire::Len(s)) if text == Text::Check => {
                utf8(s, "string value")?;
            }
            (1, Wire::Len(_)) => {}
            (2 | 3 | 8, Wire::Varint(_)) | (4, Wire::Fixed64(_)) | (7, Wire::Len(_)) => {}
            (5, Wire::Len(array)) => {
                let mut items = Reader::new(array);
                while let Some(item) = items.field()? {
                    match item {
                        (1, Wire::Len(v)) => check_any_value(v, depth + 1, text)?,
                        (1, _) => return malformed("an array value holds a non-message"),
                        _ => {}
                    }
                }
            }
            (6, Wire::Len(list)) => {
                let mut entries = Reader::new(list);
                while let Some(entry) = entries.field()? {
                    match entry {
                        (1, Wire::Len(kv)) => {
                            check_key_value(kv, depth + 1)?;
                        }
                        (1, _) => return malformed("a key-value list holds a non-message"),
                        _ => {}
                    }
                }
            }
            (1..=8, _) => return malformed("an attribute value has the wrong type"),
            _ => {}
        }
    }
    Ok(())
}

/// A double as JSON: a number, or its name when it is not finite.
fn double(d: f64) -> Value {
    Number::from_f64(d).map_or_else(|| Value::String(d.to_string()), Value::Number)
}

/// Standard base64 with padding.
fn base64(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(DIGITS[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

mod encode;
mod json;
#[cfg(test)]
use encode::encode_any_value;
pub use encode::{encode_key_value, put_len, put_varint};
pub use json::JsonValue;

#[cfg(test)]
mod tests;
