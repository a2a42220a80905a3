//! The two OTLP payloads, encoded once and stamped per request.
//!
//! - **A** (`tiny`): 100 spans per request in 10 traces, each span a name, ids,
//!   times and 2 int attributes — the cost of the receiver per span.
//! - **B** (`messaging`): 100 realistic messaging spans per request (~540 B each
//!   encoded): 20 orders, each a trace across five services (`order` publishes,
//!   `payment`, `inventory`, `shipping`, `notification` process), with
//!   `messaging.system/destination/operation`, a routing key, a message id and
//!   the business key `shop.order_id`.
//!
//! Requests are protobuf-encoded once into a [`Template`]; each request sent is
//! a copy with its trace ids, message ids and order ids overwritten in place
//! with the request's sequence number, and its span times moved to the time
//! of sending (they sit at known offsets), so every request carries new
//! traces and new orders, timed as an exporter would, for the cost of a
//! `memcpy`.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message as _;
use prost::bytes::Bytes;

/// Spans in every request of both payloads.
pub const SPANS_PER_REQUEST: usize = 100;
/// Payload A: spans per trace.
const TINY_SPANS_PER_TRACE: usize = 10;
/// Payload B: the services an order crosses, in order; each emits one span per order.
const SERVICES: [(&str, &str, &str); 5] = [
    ("order", "publish", "order.placed"),
    ("payment", "process", "order.placed"),
    ("inventory", "process", "payment.processed"),
    ("shipping", "process", "inventory.reserved"),
    ("notification", "process", "order.shipped"),
];

/// The first 8 bytes of every trace id in a template: overwritten per request.
const TRACE_MAGIC: [u8; 8] = [0xf1, 0x05, 0xc0, 0x9e, 0xbe, 0x4c, 0x7a, 0x35];
/// 16 characters inside every message id and order id: overwritten per request by
/// the request's sequence number in hex.
const TEXT_MAGIC: &[u8; 16] = b"QZQZQZQZQZQZQZQZ";

/// Which payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Payload {
    /// A: 100 tiny spans per request, 2 int attributes each.
    Tiny,
    /// B: 100 realistic messaging spans per request (~540 B each) with business keys.
    Messaging,
}

impl Payload {
    /// The payload's letter in the docs.
    pub fn letter(self) -> &'static str {
        match self {
            Payload::Tiny => "A",
            Payload::Messaging => "B",
        }
    }

    /// The request, with placeholders where ids change per request.
    pub fn request(self, now_unix_nanos: u64) -> ExportTraceServiceRequest {
        match self {
            Payload::Tiny => tiny_request(now_unix_nanos),
            Payload::Messaging => messaging_request(now_unix_nanos),
        }
    }
}

/// An encoded request and where its per-request ids sit.
#[derive(Debug, Clone)]
pub struct Template {
    bytes: Vec<u8>,
    trace_offsets: Vec<usize>,
    text_offsets: Vec<usize>,
    /// Where each span start and end time sits, and its time after the template's.
    time_offsets: Vec<(usize, u64)>,
    num_spans: usize,
}

impl Template {
    /// Encodes a payload's request.
    pub fn new(payload: Payload, now_unix_nanos: u64) -> Self {
        let request = payload.request(now_unix_nanos);
        let num_spans = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        let bytes = request.encode_to_vec();
        Self {
            trace_offsets: find_all(&bytes, &TRACE_MAGIC),
            text_offsets: find_all(&bytes, TEXT_MAGIC),
            time_offsets: find_times(&bytes, now_unix_nanos),
            bytes,
            num_spans,
        }
    }

    /// Spans per request.
    pub fn num_spans(&self) -> usize {
        self.num_spans
    }

    /// Encoded bytes per request.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// The request number `seq` (from 0), sent at `now_unix_nanos`: fresh
    /// trace, message and order ids, spans starting at `now_unix_nanos`.
    pub fn stamp(&self, seq: u64, now_unix_nanos: u64) -> Bytes {
        let mut bytes = self.bytes.clone();
        for &(at, after) in &self.time_offsets {
            bytes[at..at + 8].copy_from_slice(&(now_unix_nanos + after).to_le_bytes());
        }
        // Never all zeros: a trace id of zeros is invalid.
        let id = (seq + 1).to_be_bytes();
        for &at in &self.trace_offsets {
            bytes[at..at + 8].copy_from_slice(&id);
        }
        let text = format!("{:016x}", seq + 1);
        for &at in &self.text_offsets {
            bytes[at..at + 16].copy_from_slice(text.as_bytes());
        }
        Bytes::from(bytes)
    }
}

/// The span times in an encoded request whose spans start at or after
/// `base` (within a minute): each a `fixed64` field 7 or 8 of a span
/// (tag bytes 0x39, 0x41), as (offset of the value, nanoseconds after `base`).
fn find_times(bytes: &[u8], base: u64) -> Vec<(usize, u64)> {
    const WITHIN_NANOS: u64 = 60_000_000_000;
    let mut found = Vec::new();
    let mut at = 0;
    while at + 9 <= bytes.len() {
        let value = u64::from_le_bytes(bytes[at + 1..at + 9].try_into().expect("8 bytes"));
        let after = value.wrapping_sub(base);
        if matches!(bytes[at], 0x39 | 0x41) && after < WITHIN_NANOS {
            found.push((at + 1, after));
            at += 9;
        } else {
            at += 1;
        }
    }
    found
}

/// Offsets of every occurrence of `needle` (non-overlapping).
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    let mut found = Vec::new();
    let mut at = 0;
    while at + needle.len() <= haystack.len() {
        if &haystack[at..at + needle.len()] == needle {
            found.push(at);
            at += needle.len();
        } else {
            at += 1;
        }
    }
    found
}

fn trace_id(index: usize) -> Vec<u8> {
    let mut id = TRACE_MAGIC.to_vec();
    id.extend_from_slice(&(index as u64 + 1).to_be_bytes());
    id
}

fn span_id(trace: usize, index: usize) -> Vec<u8> {
    ((trace as u64) << 16 | (index as u64 + 1))
        .to_be_bytes()
        .to_vec()
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(s: &str) -> any_value::Value {
    any_value::Value::StringValue(s.into())
}

fn resource_spans(service: &str, scope: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", text(service))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: scope.into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Payload A.
fn tiny_request(now: u64) -> ExportTraceServiceRequest {
    let spans = (0..SPANS_PER_REQUEST)
        .map(|i| {
            let (trace, index) = (i / TINY_SPANS_PER_TRACE, i % TINY_SPANS_PER_TRACE);
            Span {
                trace_id: trace_id(trace),
                span_id: span_id(trace, index),
                parent_span_id: if index == 0 {
                    Vec::new()
                } else {
                    span_id(trace, 0)
                },
                name: "op".into(),
                kind: 1,
                start_time_unix_nano: now,
                end_time_unix_nano: now + 1_000,
                attributes: vec![
                    kv("a", any_value::Value::IntValue(i as i64)),
                    kv("b", any_value::Value::IntValue(7)),
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans("bench-a", "bench", spans)],
    }
}

/// Payload B.
fn messaging_request(now: u64) -> ExportTraceServiceRequest {
    let orders = SPANS_PER_REQUEST / SERVICES.len();
    let resource_spans = SERVICES
        .iter()
        .enumerate()
        .map(|(step, (service, operation, routing_key))| {
            let spans = (0..orders)
                .map(|order| messaging_span(now, order, step, operation, routing_key))
                .collect();
            resource_spans(service, "shop.messaging", spans)
        })
        .collect();
    ExportTraceServiceRequest { resource_spans }
}

fn messaging_span(now: u64, order: usize, step: usize, operation: &str, routing_key: &str) -> Span {
    let magic = std::str::from_utf8(TEXT_MAGIC).expect("ascii");
    let order_id = format!("ord-{magic}-{order:04}");
    let message_id = format!("msg-{magic}-{order:04}-{step}");
    let start = now + step as u64 * 2_000_000;
    Span {
        trace_id: trace_id(order),
        span_id: span_id(order, step),
        parent_span_id: if step == 0 {
            Vec::new()
        } else {
            span_id(order, step - 1)
        },
        name: format!("shop.events {operation}"),
        kind: if step == 0 { 4 } else { 5 },
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1_500_000,
        attributes: vec![
            kv("messaging.system", text("rabbitmq")),
            kv("messaging.destination.name", text("shop.events")),
            kv("messaging.operation", text(operation)),
            kv(
                "messaging.rabbitmq.destination.routing_key",
                text(routing_key),
            ),
            kv("messaging.message.id", text(&message_id)),
            kv(
                "messaging.message.body.size",
                any_value::Value::IntValue(412),
            ),
            kv("network.peer.address", text("127.0.0.1")),
            kv("network.peer.port", any_value::Value::IntValue(5672)),
            kv("server.address", text("rabbitmq.shop.internal")),
            kv("shop.order_id", text(&order_id)),
            kv("shop.customer_tier", text("gold")),
        ],
        status: Some(Status {
            code: 1,
            message: String::new(),
        }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000_000_000_000;

    fn decode(bytes: &[u8]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest::decode(bytes).unwrap()
    }

    #[test]
    fn payload_a_is_100_tiny_spans_with_2_int_attributes() {
        let template = Template::new(Payload::Tiny, 1_700_000_000_000_000_000);
        assert_eq!(template.num_spans(), 100);
        assert_eq!(template.trace_offsets.len(), 100);
        let per_span = template.len() / template.num_spans();
        assert!((70..=90).contains(&per_span), "{per_span} B per span");
        let request = decode(&template.stamp(0, NOW));
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert!(spans.iter().all(|s| s.attributes.len() == 2));
    }

    #[test]
    fn payload_b_spans_are_about_540_bytes_with_business_keys() {
        let template = Template::new(Payload::Messaging, 1_700_000_000_000_000_000);
        assert_eq!(template.num_spans(), 100);
        let per_span = template.len() / template.num_spans();
        assert!((510..=560).contains(&per_span), "{per_span} B per span");
        // Every span: a trace id, a message id and an order id to stamp.
        assert_eq!(template.trace_offsets.len(), 100);
        assert_eq!(template.text_offsets.len(), 200);
    }

    #[test]
    fn stamping_gives_each_request_its_own_ids_and_stays_valid() {
        let template = Template::new(Payload::Messaging, 1_700_000_000_000_000_000);
        let (first, second) = (
            decode(&template.stamp(0, NOW)),
            decode(&template.stamp(41, NOW)),
        );
        let span =
            |r: &ExportTraceServiceRequest| r.resource_spans[1].scope_spans[0].spans[3].clone();
        let (a, b) = (span(&first), span(&second));
        assert_eq!(a.trace_id[..8], 1u64.to_be_bytes());
        assert_eq!(b.trace_id[..8], 42u64.to_be_bytes());
        assert_eq!(a.trace_id[8..], b.trace_id[8..]);
        let order = |s: &Span| match &s.attributes[9].value.as_ref().unwrap().value {
            Some(any_value::Value::StringValue(v)) => v.clone(),
            other => panic!("{other:?}"),
        };
        assert_eq!(order(&a), "ord-0000000000000001-0003");
        assert_eq!(order(&b), "ord-000000000000002a-0003");
        assert_eq!(template.stamp(7, NOW).len(), template.len());
    }

    #[test]
    fn stamping_times_each_request_at_its_sending() {
        for payload in [Payload::Tiny, Payload::Messaging] {
            let template = Template::new(payload, NOW);
            assert_eq!(template.time_offsets.len(), 2 * template.num_spans());
            let later = NOW + 3_600_000_000_123;
            let spans = |r: ExportTraceServiceRequest| -> Vec<Span> {
                let scopes = r.resource_spans.into_iter().flat_map(|r| r.scope_spans);
                scopes.flat_map(|s| s.spans).collect()
            };
            let (first, second) = (
                spans(decode(&template.stamp(0, NOW))),
                spans(decode(&template.stamp(0, later))),
            );
            for (a, b) in first.iter().zip(&second) {
                assert!(
                    a.start_time_unix_nano >= NOW && a.end_time_unix_nano > a.start_time_unix_nano
                );
                assert_eq!(b.start_time_unix_nano - a.start_time_unix_nano, later - NOW);
                assert_eq!(b.end_time_unix_nano - a.end_time_unix_nano, later - NOW);
                assert_eq!((&a.name, &a.attributes), (&b.name, &b.attributes));
            }
        }
    }
}
