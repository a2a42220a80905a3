//! Tests of the protobuf reader and writer.

use super::*;
use serde_json::json;

#[test]
fn json_values_survive_encoding_and_reading() {
    for value in [
        json!(null),
        json!(true),
        json!(-3),
        json!(0.5),
        json!(u64::MAX),
        json!("text ✓"),
        json!(["a", 1, null, [2]]),
        json!({"id": true, "nested": {"k": "v"}}),
    ] {
        let encoded = encode_key_value("k", &value);
        check_key_value(&encoded, 0).unwrap();
        let mut map = BTreeMap::new();
        read_key_value(&encoded, &mut map, 0).unwrap();
        let expected = match &value {
            Value::Number(n) if n.as_i64().is_none() => json!(n.as_f64().unwrap()),
            other => other.clone(),
        };
        assert_eq!(map["k"], expected, "{value}");
    }
}

#[test]
fn a_string_that_is_not_utf8_is_refused_wherever_it_lies() {
    let string = |bytes: &[u8]| {
        let mut value = Vec::new();
        put_len(&mut value, 1, bytes);
        value
    };
    let key_value = |value: &[u8]| {
        let mut kv = Vec::new();
        put_len(&mut kv, 1, b"k");
        put_len(&mut kv, 2, value);
        kv
    };
    let array = |item: &[u8]| {
        let (mut list, mut value) = (Vec::new(), Vec::new());
        put_len(&mut list, 1, item);
        put_len(&mut value, 5, &list);
        value
    };
    let kv_list = |kv: &[u8]| {
        let (mut list, mut value) = (Vec::new(), Vec::new());
        put_len(&mut list, 1, kv);
        put_len(&mut value, 6, &list);
        value
    };
    let bad = string(&[b'a', 0xff]);
    for (what, value) in [
        ("string", bad.clone()),
        ("in an array", array(&bad)),
        ("in a key-value list", kv_list(&key_value(&bad))),
    ] {
        let err = check_key_value(&key_value(&value), 0).unwrap_err();
        assert!(err.to_string().contains("not valid UTF-8"), "{what}: {err}");
    }
    let good = string("✓".as_bytes());
    for value in [good.clone(), array(&good), kv_list(&key_value(&good))] {
        check_key_value(&key_value(&value), 0).unwrap();
    }
}

#[test]
fn usual_key_values_check_as_they_do_field_by_field() {
    let mut encodings: Vec<Vec<u8>> = [
        json!("ord-1"),
        json!("✓"),
        json!(""),
        json!(0),
        json!(-1),
        json!(i64::MAX),
        json!(true),
        json!(2.5),
        json!("x".repeat(200)),
        json!([1]),
        json!(null),
    ]
    .iter()
    .map(|v| encode_key_value("k", v))
    .collect();
    // Varints of every length (one too long), a bool, a bad string.
    for len in 1..=11 {
        let mut int = vec![0x18];
        int.extend(std::iter::repeat_n(0xff, len - 1));
        int.push(if len == 10 { 1 } else { 2 });
        encodings.push(wrap_value(&int));
    }
    encodings.push(wrap_value(&[0x10, 1]));
    encodings.push(wrap_value(&[0x0a, 2, b'a', 0xff]));
    encodings.push(wrap_value(&[0x21, 0, 0, 0]));
    // Keys not ASCII: valid, and not UTF-8, before a string and an int.
    for value in [json!("v"), json!(7)] {
        encodings.push(encode_key_value("ключ", &value));
        let mut bad_key = Vec::new();
        put_len(&mut bad_key, 1, &[b'k', 0xff]);
        let value = encode_key_value("k", &value);
        bad_key.extend_from_slice(&value[3..]);
        encodings.push(bad_key);
    }
    // Every cut of each.
    let cuts: Vec<Vec<u8>> = encodings
        .iter()
        .flat_map(|e| (0..e.len()).map(|n| e[..n].to_vec()))
        .collect();
    encodings.extend(cuts);
    let mut simple = 0;
    for bytes in &encodings {
        let usual = check_key_value(bytes, 0);
        let field_by_field = check_key_value_field_by_field(bytes, 0);
        simple += usize::from(simple_key_value(bytes).is_some());
        // The key alone, when given, is the key of a record that checks.
        if let Some(key) = simple_key(bytes) {
            let checked = field_by_field.as_ref().map(KeyValueRef::key_bytes);
            assert_eq!(checked.ok(), Some(key), "{bytes:?}");
        }
        match (usual, field_by_field) {
            (Ok(a), Ok(b)) => {
                assert_eq!(
                    (a.key(), a.value, a.merged, a.bytes),
                    (b.key(), b.value, b.merged, b.bytes),
                    "{bytes:?}"
                );
            }
            (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string(), "{bytes:?}"),
            (a, b) => panic!("{bytes:?}: {a:?} but field by field {b:?}"),
        }
    }
    assert!(
        simple >= 15,
        "the usual layout was read in place {simple} times"
    );
}

/// A key-value `k` holding these `AnyValue` bytes.
fn wrap_value(value: &[u8]) -> Vec<u8> {
    let mut kv = Vec::new();
    put_len(&mut kv, 1, b"k");
    put_len(&mut kv, 2, value);
    kv
}

#[test]
fn raw_key_is_the_last_key_given_in_any_layout() {
    let short = encode_key_value("k", &json!("v"));
    let long = encode_key_value("k", &json!("v".repeat(200)));
    let no_value = encode_key_value("k", &json!(null));
    let mut value_first = Vec::new();
    put_len(&mut value_first, 2, &encode_any_value(&json!(1)));
    put_len(&mut value_first, 1, b"k");
    let mut two_keys = encode_key_value("first", &json!(1));
    put_len(&mut two_keys, 1, b"k");
    let mut unknown_field = encode_key_value("k", &json!(1));
    put_len(&mut unknown_field, 7, b"x");
    for (what, bytes) in [
        ("short", &short),
        ("long value", &long),
        ("no value", &no_value),
        ("value first", &value_first),
        ("two keys", &two_keys),
        ("unknown field", &unknown_field),
    ] {
        assert_eq!(raw_key(bytes), b"k", "{what}");
        assert_eq!(split_key_value(bytes).unwrap().key(), "k", "{what}");
    }
}

#[test]
fn base64_pads_like_the_standard_alphabet() {
    assert_eq!(base64(b""), "");
    assert_eq!(base64(&[0xff]), "/w==");
    assert_eq!(base64(&[0xff, 0x00]), "/wA=");
    assert_eq!(base64(b"abc"), "YWJj");
    assert_eq!(base64(b"abcd"), "YWJjZA==");
}
