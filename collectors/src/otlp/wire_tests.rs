//! [`wire`](super::wire) against prost + [`convert`](super::convert): the same
//! observations from the same bytes, the same refusals.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, KeyValueList,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, span};
use prost::Message as _;

use super::convert::spans_from_otlp;
use super::wire::{WireError, spans_from_protobuf};

/// A small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }

    fn word(&mut self) -> String {
        const WORDS: &[&str] = &[
            "messaging.system",
            "messaging.destination.name",
            "messaging.destination",
            "messaging.message.id",
            "messaging.operation",
            "shop.order_id",
            "http.route",
            "service.name",
            "host.name",
            "",
            "ünïcode ✓",
        ];
        WORDS[self.below(WORDS.len() as u64) as usize].to_owned()
    }

    fn value(&mut self, depth: u32) -> Option<AnyValue> {
        let value = match self.below(if depth > 2 { 6 } else { 9 }) {
            0 => return None,
            1 => None,
            2 => Some(OtlpValue::StringValue(self.word())),
            3 => Some(OtlpValue::BoolValue(self.below(2) == 1)),
            4 => Some(OtlpValue::IntValue(self.next() as i64)),
            5 => Some(OtlpValue::DoubleValue(match self.below(4) {
                0 => f64::NAN,
                1 => f64::INFINITY,
                _ => (self.next() as i64) as f64 / 7.0,
            })),
            6 => {
                let len = self.below(5) as usize;
                Some(OtlpValue::BytesValue(self.bytes(len)))
            }
            7 => Some(OtlpValue::ArrayValue(ArrayValue {
                values: (0..self.below(3))
                    .map(|_| self.value(depth + 1).unwrap_or_default())
                    .collect(),
            })),
            _ => Some(OtlpValue::KvlistValue(KeyValueList {
                values: self.attributes(depth + 1),
            })),
        };
        Some(AnyValue { value })
    }

    fn attributes(&mut self, depth: u32) -> Vec<KeyValue> {
        (0..self.below(6))
            .map(|_| KeyValue {
                key: self.word(),
                value: self.value(depth),
                ..Default::default()
            })
            .collect()
    }

    /// An id that is valid most of the time.
    fn id(&mut self, len: usize) -> Vec<u8> {
        match self.below(40) {
            0 => vec![0; len],
            1 => self.bytes(len - 1),
            _ => self.bytes(len),
        }
    }

    fn span(&mut self) -> Span {
        Span {
            trace_id: self.id(16),
            span_id: self.id(8),
            parent_span_id: match self.below(3) {
                0 => Vec::new(),
                _ => self.id(8),
            },
            trace_state: "k=v".into(),
            name: self.word(),
            kind: self.below(8) as i32,
            start_time_unix_nano: self.next(),
            end_time_unix_nano: self.next(),
            attributes: self.attributes(0),
            dropped_attributes_count: 3,
            events: (0..self.below(3))
                .map(|_| span::Event {
                    time_unix_nano: self.next(),
                    name: self.word(),
                    attributes: self.attributes(0),
                    ..Default::default()
                })
                .collect(),
            links: (0..self.below(3))
                .map(|_| span::Link {
                    trace_id: self.id(16),
                    span_id: self.id(8),
                    attributes: self.attributes(0),
                    flags: 1,
                    ..Default::default()
                })
                .collect(),
            status: match self.below(4) {
                0 => None,
                code => Some(Status {
                    message: self.word(),
                    code: code as i32 - 1,
                }),
            },
            flags: 0x100,
            ..Default::default()
        }
    }

    fn request(&mut self) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: (0..1 + self.below(3))
                .map(|_| ResourceSpans {
                    resource: (self.below(4) > 0).then(|| Resource {
                        attributes: self.attributes(0),
                        ..Default::default()
                    }),
                    scope_spans: (0..self.below(3))
                        .map(|_| ScopeSpans {
                            scope: (self.below(3) > 0).then(|| InstrumentationScope {
                                name: self.word(),
                                version: "1.0".into(),
                                ..Default::default()
                            }),
                            spans: (0..self.below(5)).map(|_| self.span()).collect(),
                            schema_url: "https://opentelemetry.io/schemas/1.26.0".into(),
                        })
                        .collect(),
                    schema_url: String::new(),
                })
                .collect(),
        }
    }
}

/// What prost + convert make of these bytes, errors as text.
fn through_prost(bytes: &[u8]) -> Result<String, String> {
    let request = ExportTraceServiceRequest::decode(bytes).map_err(|_| "malformed".to_owned())?;
    spans_from_otlp(request, 7)
        .map(|obs| format!("{obs:?}"))
        .map_err(|err| err.to_string())
}

/// What the wire reader makes of them, in the same form.
fn through_wire(bytes: &[u8]) -> Result<String, String> {
    match spans_from_protobuf(bytes, 7) {
        Ok(obs) => Ok(format!("{obs:?}")),
        Err(WireError::Malformed(_)) => Err("malformed".to_owned()),
        Err(WireError::Invalid(err)) => Err(err.to_string()),
    }
}

#[test]
fn varied_requests_read_the_same_as_through_prost() {
    let mut rng = Rng(0x5eed_f00d);
    let mut num_spans = 0;
    let mut num_refused = 0;
    for _ in 0..2_000 {
        let request = rng.request();
        let bytes = request.encode_to_vec();
        let expected = through_prost(&bytes);
        assert_eq!(through_wire(&bytes), expected, "{request:?}");
        match expected {
            Ok(_) => {
                num_spans += spans_from_protobuf(&bytes, 7).unwrap().len();
            }
            Err(_) => num_refused += 1,
        }
    }
    // The generator exercised both outcomes.
    assert!(
        num_spans > 1_000 && num_refused > 50,
        "{num_spans} {num_refused}"
    );
}

#[test]
fn every_truncation_is_refused_or_read_as_prost_reads_it() {
    let mut rng = Rng(42);
    let mut request = rng.request();
    request.resource_spans[0].scope_spans.push(ScopeSpans {
        spans: vec![rng.span(), rng.span()],
        ..Default::default()
    });
    let bytes = request.encode_to_vec();
    for cut in 0..bytes.len() {
        let head = &bytes[..cut];
        // Both refuse (the reader may stop at an invalid span before it
        // reaches the cut, prost decodes first), or both read the same.
        match (through_wire(head), through_prost(head)) {
            (Err(_), Err(_)) => {}
            (wire, prost) => assert_eq!(wire, prost, "cut at {cut}"),
        }
    }
}

#[test]
fn a_resource_after_its_spans_still_names_their_service() {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "late resource".into(),
        ..Default::default()
    };
    let scope_spans = ScopeSpans {
        spans: vec![span],
        ..Default::default()
    };
    let resource = Resource {
        attributes: vec![KeyValue {
            key: "service.name".into(),
            value: Some(AnyValue {
                value: Some(OtlpValue::StringValue("payment".into())),
            }),
            ..Default::default()
        }],
        ..Default::default()
    };
    // ResourceSpans with field 2 (scope_spans) before field 1 (resource).
    let mut resource_spans = Vec::new();
    prost::encoding::message::encode(2, &scope_spans, &mut resource_spans);
    prost::encoding::message::encode(1, &resource, &mut resource_spans);
    let mut request = Vec::new();
    prost::encoding::bytes::encode(1, &resource_spans, &mut request);

    assert_eq!(through_wire(&request), through_prost(&request));
    let observations = spans_from_protobuf(&request, 0).unwrap();
    let [flowscope_model::Observation::Span(span)] = observations.as_slice() else {
        panic!("{observations:?}")
    };
    assert_eq!(&*span.service, "payment");
}

#[test]
fn unknown_fields_are_skipped_and_bad_text_is_refused() {
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        name: "n".into(),
        ..Default::default()
    };
    let mut encoded = span.encode_to_vec();
    // Field 99 as a varint, field 100 as 8 bytes, field 101 as 4 bytes.
    encoded.extend_from_slice(&[0x98, 0x06, 0x2a]);
    encoded.extend_from_slice(&[0xa1, 0x06, 1, 2, 3, 4, 5, 6, 7, 8]);
    encoded.extend_from_slice(&[0xad, 0x06, 1, 2, 3, 4]);
    let request = wrap_span(&encoded);
    assert_eq!(through_wire(&request), through_prost(&request));
    assert_eq!(spans_from_protobuf(&request, 0).unwrap().len(), 1);

    // A span name that is not UTF-8.
    let mut bad = Vec::new();
    prost::encoding::bytes::encode(5, &vec![0xff, 0xfe], &mut bad);
    let request = wrap_span(&bad);
    let err = spans_from_protobuf(&request, 0).unwrap_err();
    assert!(
        err.to_string().contains("span name is not valid UTF-8"),
        "{err}"
    );
    assert_eq!(through_prost(&request), Err("malformed".into()));
}

#[test]
fn attributes_apart_from_one_another_read_as_prost_reads_them() {
    let kv = |key: &str, value: &str| KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(OtlpValue::StringValue(value.into())),
        }),
        ..Default::default()
    };
    let mut encoded = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        attributes: vec![kv("a", "1"), kv("messaging.message.id", "m-1")],
        ..Default::default()
    }
    .encode_to_vec();
    // After other fields: the name, then more attributes, one given again.
    prost::encoding::string::encode(5, &"late".to_owned(), &mut encoded);
    for late in [kv("b", "2"), kv("a", "last")] {
        prost::encoding::message::encode(9, &late, &mut encoded);
    }
    let request = wrap_span(&encoded);
    assert_eq!(through_wire(&request), through_prost(&request));
    let observations = spans_from_protobuf(&request, 0).unwrap();
    let [flowscope_model::Observation::Span(span)] = observations.as_slice() else {
        panic!("{observations:?}")
    };
    assert_eq!(
        serde_json::to_value(&span.attributes).unwrap(),
        serde_json::json!({"a": "last", "b": "2", "messaging.message.id": "m-1"})
    );
    assert_eq!(
        span.messaging.as_ref().and_then(|m| m.message_id()),
        Some("m-1")
    );
}

#[test]
fn deeply_nested_values_are_refused_not_overflowing_the_stack() {
    let mut value = AnyValue {
        value: Some(OtlpValue::IntValue(1)),
    };
    for _ in 0..200 {
        value = AnyValue {
            value: Some(OtlpValue::ArrayValue(ArrayValue {
                values: vec![value],
            })),
        };
    }
    let span = Span {
        trace_id: vec![1; 16],
        span_id: vec![2; 8],
        attributes: vec![KeyValue {
            key: "deep".into(),
            value: Some(value),
            ..Default::default()
        }],
        ..Default::default()
    };
    let request = wrap_span(&span.encode_to_vec());
    let err = spans_from_protobuf(&request, 0).unwrap_err();
    assert!(err.to_string().contains("nested deeper than"), "{err}");
}

/// A request holding one span given as encoded bytes.
fn wrap_span(span: &[u8]) -> Vec<u8> {
    let mut scope_spans = Vec::new();
    prost::encoding::bytes::encode(2, &span.to_vec(), &mut scope_spans);
    let mut resource_spans = Vec::new();
    prost::encoding::bytes::encode(2, &scope_spans, &mut resource_spans);
    let mut request = Vec::new();
    prost::encoding::bytes::encode(1, &resource_spans, &mut request);
    request
}
