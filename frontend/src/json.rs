//! Reading JSON answers into our types with less wasm.
//!
//! A derived `Deserialize` for a struct reads it from a map (a JSON object)
//! or from a sequence (a JSON array, fields in order), and serde_json's
//! `deserialize_struct` accepts both; so every struct the UI reads had its
//! fields' deserializers twice in the wasm. Our server only ever writes
//! structs as objects. [`from_str`] reads through [`ObjectsOnly`], a
//! deserializer that passes everything through unchanged except that it asks
//! for a map where a struct is wanted: the sequence half is never reached,
//! and the compiler drops it. A struct sent as an array is refused.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess,
    VariantAccess, Visitor,
};

/// Parses `text` as JSON into `T`, structs from objects only (see the
/// module docs); otherwise like `serde_json::from_str`.
pub fn from_str<T: DeserializeOwned>(text: &str) -> serde_json::Result<T> {
    let mut json = serde_json::Deserializer::from_str(text);
    let value = T::deserialize(ObjectsOnly(&mut json))?;
    json.end()?;
    Ok(value)
}

/// `value` read as `T` (structs from objects only) by way of its JSON
/// text, so that serde_json's deserializer over `Value` stays out of the
/// wasm. Numbers of up to 15 significant digits come back exactly; longer
/// ones may differ from `serde_json::from_value`'s in the last binary digit.
pub fn from_value<T: DeserializeOwned>(value: &serde_json::Value) -> Option<T> {
    from_str(&value.to_string()).ok()
}

/// Compact JSON `text` laid out as `serde_json::to_string_pretty` lays out
/// the same value (two-space indent, `"key": value`, `{}` and `[]` when
/// empty), without parsing it: the page copies a flow's JSON as the server
/// wrote it, so the model's `Serialize` code stays out of the wasm.
pub fn pretty(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    let mut depth = 0usize;
    let mut chars = text.chars().peekable();
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.extend(std::iter::repeat_n("  ", depth));
    };
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                out.push('"');
                while let Some(c) = chars.next() {
                    out.push(c);
                    match c {
                        '\\' => out.extend(chars.next()),
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '{' | '[' => {
                out.push(c);
                let close = if c == '{' { '}' } else { ']' };
                if chars.peek() == Some(&close) {
                    out.extend(chars.next());
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(',');
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_ascii_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// A deserializer that reads structs from maps only, passing every other
/// request through to the one it wraps (and wrapping what it hands on).
#[derive(Debug)]
pub struct ObjectsOnly<D>(pub D);

/// Passes `deserialize_*` methods through, wrapping the visitor.
macro_rules! forward {
    ($($method:ident)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, D::Error> {
            self.0.$method(Wrap(visitor))
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for ObjectsOnly<D> {
    type Error = D::Error;

    forward! {
        deserialize_any deserialize_bool deserialize_i8 deserialize_i16 deserialize_i32
        deserialize_i64 deserialize_i128 deserialize_u8 deserialize_u16 deserialize_u32
        deserialize_u64 deserialize_u128 deserialize_f32 deserialize_f64 deserialize_char
        deserialize_str deserialize_string deserialize_bytes deserialize_byte_buf
        deserialize_option deserialize_unit deserialize_seq deserialize_map
        deserialize_identifier deserialize_ignored_any
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Wrap(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Wrap(visitor))
    }

    /// The one change: a struct is read from a map only.
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_map(Wrap(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Wrap(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

/// A visitor handing [`ObjectsOnly`] on to whatever it visits.
struct Wrap<V>(V);

/// Passes `visit_*` methods with a plain value through.
macro_rules! forward_visit {
    ($($method:ident($ty:ty))*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.0.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Wrap<V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        self.0.expecting(f)
    }

    forward_visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64)
        visit_i128(i128) visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64)
        visit_u128(u128) visit_f32(f32) visit_f64(f64) visit_char(char) visit_str(&str)
        visit_borrowed_str(&'de str) visit_string(String) visit_bytes(&[u8])
        visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.0.visit_some(ObjectsOnly(d))
    }

    fn visit_newtype_struct<D2: Deserializer<'de>>(self, d: D2) -> Result<V::Value, D2::Error> {
        self.0.visit_newtype_struct(ObjectsOnly(d))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Access(seq))
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Access(map))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Access(data))
    }
}

/// A seed handing [`ObjectsOnly`] to what it deserializes.
struct Seed<S>(S);

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(ObjectsOnly(d))
    }
}

/// Sequence, map, enum and variant access handing [`ObjectsOnly`] on.
struct Access<A>(A);

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: EnumAccess<'de>> EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<(T::Value, Self::Variant), A::Error> {
        let (value, variant) = self.0.variant_seed(Seed(seed))?;
        Ok((value, Access(variant)))
    }
}

impl<'de, A: VariantAccess<'de>> VariantAccess<'de> for Access<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap(visitor))
    }

    /// A struct variant's fields, from a map only (its content is read
    /// like a newtype's, by [`ObjectsOnly`]).
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.newtype_variant_seed(StructSeed(visitor))
    }
}

/// Reads a struct variant's content as a map.
struct StructSeed<V>(V);

impl<'de, V: Visitor<'de>> DeserializeSeed<'de> for StructSeed<V> {
    type Value = V::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        d.deserialize_map(Wrap(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_model::{
        Alert, AlertEvidence, AlertRule, AlertState, FlowDetail, FlowStatus, FlowSummary,
        LiveSnapshot, RuleKind, Severity,
    };
    use serde::Serialize;
    use std::collections::BTreeMap;

    /// Serialises `value` and reads it back both ways: they must agree.
    fn round_trip<T: Serialize + DeserializeOwned + PartialEq + fmt::Debug>(value: &T) {
        let json = serde_json::to_string(value).unwrap();
        let ours: T = from_str(&json).unwrap();
        assert_eq!(&ours, value, "{json}");
        assert_eq!(ours, serde_json::from_str::<T>(&json).unwrap());
        assert_eq!(pretty(&json), serde_json::to_string_pretty(value).unwrap());
    }

    #[test]
    fn reads_what_serde_json_reads_from_our_wire_types() {
        round_trip(&LiveSnapshot {
            flows: vec![FlowSummary {
                id: "f".into(),
                status: FlowStatus::Failed,
                key: Some("order-1".into()),
                trace_ids: vec!["t1".into()],
                ..Default::default()
            }],
            ..Default::default()
        });
        round_trip(&FlowDetail::default());
        round_trip(&vec![Alert {
            id: "dlq:/:orders.dlq".into(),
            rule: "dlq".into(),
            severity: Severity::Critical,
            state: AlertState::Firing,
            subject: "orders.dlq".into(),
            vhost: Some("/".into()),
            summary: "grew".into(),
            evidence: AlertEvidence::default(),
            started_unix_us: 1,
            fired_unix_us: Some(2),
            resolved_unix_us: None,
            updated_unix_us: 3,
        }]);
        round_trip(&AlertRule {
            name: "dlq".into(),
            kind: RuleKind::DlqGrowth {
                queue: None,
                messages: 3,
                window_secs: 60,
            },
            for_secs: 5,
            severity: Severity::Critical,
        });
        round_trip(&BTreeMap::from([("a".to_owned(), (1i64, Some(2.5f64)))]));
        round_trip(&serde_json::json!({"any": [1, "two", null, {"x": 3.5}]}));
    }

    #[test]
    fn reads_a_value_like_serde_json_from_value() {
        let value = serde_json::json!({"rate": 0.35, "names": ["a"], "on": true, "n": 7});
        let ours: BTreeMap<String, serde_json::Value> = from_value(&value).unwrap();
        assert_eq!(ours, serde_json::from_value(value.clone()).unwrap());
        assert_eq!(from_value::<u32>(&value), None);
    }

    #[test]
    fn refuses_a_struct_written_as_an_array_and_trailing_text() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Pair {
            a: u32,
            b: String,
        }
        assert!(serde_json::from_str::<Pair>(r#"[1, "x"]"#).is_ok());
        assert!(from_str::<Pair>(r#"[1, "x"]"#).is_err());
        assert!(from_str::<Pair>(r#"{"b": "x", "a": 1}"#).is_ok());
        assert!(from_str::<Pair>(r#"{"b": "x", "a": 1} x"#).is_err());
        let err = from_str::<Pair>(r#"{"a": "one", "b": "x"}"#).unwrap_err();
        assert!(err.to_string().contains("invalid type"), "{err}");
    }

    #[test]
    fn pretty_lays_out_like_serde_json() {
        let value = serde_json::json!({
            "id": "f-1", "empty_list": [], "empty_map": {}, "n": -1.5e-7, "big": 18446744073709551615u64,
            "text": "a \"quoted\" {not: [json]}, \\ back\\slash\n and ünïcode",
            "nested": [{"a": [1, 2, [3, []]], "b": null, "c": true}, [], {}, "x"],
        });
        let compact = serde_json::to_string(&value).unwrap();
        assert_eq!(
            pretty(&compact),
            serde_json::to_string_pretty(&value).unwrap()
        );
        assert_eq!(pretty("[]"), "[]");
        assert_eq!(pretty("\"a,b\""), "\"a,b\"");
    }
}
