//! OTLP trace export requests → [`Observation::Span`]s.
//!
//! Pure functions, no I/O: ids become lowercase hex, times Unix microseconds,
//! attribute values plain JSON, and the messaging attributes are normalized
//! across semantic-convention generations.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use flowscope_model::{
    Attributes, MessagingAttributes, Observation, SpanEvent, SpanId, SpanKind, SpanLink,
    SpanObservation, SpanStatus, StatusCode, TraceId,
};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as OtlpValue;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use serde_json::Value;

/// The service name OpenTelemetry prescribes when a resource has none.
pub(super) const UNKNOWN_SERVICE: &str = "unknown_service";

/// Why a request's spans could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertError {
    /// A trace or span id has the wrong length or is all zeros.
    #[error("{0}")]
    InvalidId(String),
}

/// Converts every span of an export request, or refuses the whole request.
pub fn spans_from_otlp(
    request: ExportTraceServiceRequest,
    observed_unix_us: i64,
) -> Result<Vec<Observation>, ConvertError> {
    let num_spans = request
        .resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let mut observations = Vec::with_capacity(num_spans);
    for resource_spans in request.resource_spans {
        let mut resource = attributes_to_json(
            resource_spans
                .resource
                .map(|r| r.attributes)
                .unwrap_or_default(),
        );
        let service: Arc<str> = match resource.remove("service.name") {
            Some(Value::String(name)) if !name.is_empty() => name.into(),
            _ => UNKNOWN_SERVICE.into(),
        };
        let resource = Arc::new(resource);
        for scope_spans in resource_spans.scope_spans {
            let scope: Arc<str> = scope_spans.scope.map(|s| s.name).unwrap_or_default().into();
            for span in scope_spans.spans {
                let mut observation = span_from_otlp(span, observed_unix_us)?;
                observation.service.clone_from(&service);
                observation.scope.clone_from(&scope);
                observation.resource.clone_from(&resource);
                observations.push(Observation::Span(Arc::new(observation)));
            }
        }
    }
    Ok(observations)
}

/// One span, without its resource and scope (the caller fills them in).
fn span_from_otlp(mut span: Span, observed_unix_us: i64) -> Result<SpanObservation, ConvertError> {
    let trace_id = TraceId(checked_id(&span.trace_id, "trace id", &span)?);
    let span_id = SpanId(checked_id(&span.span_id, "span id", &span)?);
    let parent_span_id = if span.parent_span_id.iter().all(|b| *b == 0) {
        None
    } else {
        Some(SpanId(checked_id(
            &span.parent_span_id,
            "parent span id",
            &span,
        )?))
    };
    let links = std::mem::take(&mut span.links)
        .into_iter()
        .map(|link| link_from_otlp(link, &span))
        .collect::<Result<Vec<_>, _>>()?;
    let attributes = Attributes::from(attributes_to_json(span.attributes));
    Ok(SpanObservation {
        observed_unix_us,
        trace_id,
        span_id,
        parent_span_id,
        kind: SpanKind::from_otlp(span.kind),
        start_unix_us: nanos_to_micros(span.start_time_unix_nano),
        end_unix_us: nanos_to_micros(span.end_time_unix_nano),
        status: status_from_otlp(span.status),
        messaging: MessagingAttributes::from_attributes(&attributes),
        attributes,
        events: span.events.into_iter().map(event_from_otlp).collect(),
        links,
        name: span.name.into(),
        ..SpanObservation::default()
    })
}

fn link_from_otlp(link: span::Link, span: &Span) -> Result<SpanLink, ConvertError> {
    Ok(SpanLink {
        trace_id: TraceId(checked_id(&link.trace_id, "link trace id", span)?),
        span_id: SpanId(checked_id(&link.span_id, "link span id", span)?),
        attributes: attributes_to_json(link.attributes),
    })
}

/// An event; `exception.*` attributes come through like any others.
fn event_from_otlp(event: span::Event) -> SpanEvent {
    SpanEvent {
        name: event.name,
        time_unix_us: nanos_to_micros(event.time_unix_nano),
        attributes: attributes_to_json(event.attributes),
    }
}

fn status_from_otlp(status: Option<opentelemetry_proto::tonic::trace::v1::Status>) -> SpanStatus {
    status.map_or_else(SpanStatus::default, |status| SpanStatus {
        code: StatusCode::from_otlp(status.code),
        message: status.message,
    })
}

/// An id of `N` bytes; refuses other lengths and all zeros.
fn checked_id<const N: usize>(id: &[u8], what: &str, span: &Span) -> Result<[u8; N], ConvertError> {
    check_id(id, what, &span.name, &span.span_id)
}

/// An id of `N` bytes, or an error naming the span (its name and id).
pub(super) fn check_id<const N: usize>(
    id: &[u8],
    what: &str,
    span_name: &str,
    span_id: &[u8],
) -> Result<[u8; N], ConvertError> {
    match <[u8; N]>::try_from(id) {
        Ok(bytes) if bytes.iter().any(|b| *b != 0) => Ok(bytes),
        _ => Err(ConvertError::InvalidId(format!(
            "span {span_name:?} (span id {}) has an invalid {what} {:?}: expected {N} bytes, not all zero",
            hex(span_id),
            hex(id),
        ))),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    out
}

/// Nanoseconds to microseconds; `u64::MAX / 1000` fits in an `i64`, so this never wraps.
pub(super) fn nanos_to_micros(nanos: u64) -> i64 {
    (nanos / 1000) as i64
}

/// OTLP key-values to a JSON map (a repeated key: the last one wins).
///
/// Inserted one by one: for the handful of attributes a span has, this
/// skips the sort buffer `collect` would allocate.
fn attributes_to_json(attributes: Vec<KeyValue>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for kv in attributes {
        map.insert(kv.key, any_value_to_json(kv.value));
    }
    map
}

/// Any OTLP value as JSON: bytes in base64, key-value lists as objects,
/// non-finite doubles as their names (`"NaN"`, `"inf"`), empty as `null`.
fn any_value_to_json(value: Option<AnyValue>) -> Value {
    match value.and_then(|v| v.value) {
        None | Some(OtlpValue::StringValueStrindex(_)) => Value::Null,
        Some(OtlpValue::StringValue(s)) => Value::String(s),
        Some(OtlpValue::BoolValue(b)) => Value::Bool(b),
        Some(OtlpValue::IntValue(i)) => Value::from(i),
        Some(OtlpValue::DoubleValue(d)) => serde_json::Number::from_f64(d)
            .map_or_else(|| Value::String(d.to_string()), Value::Number),
        Some(OtlpValue::BytesValue(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        Some(OtlpValue::ArrayValue(a)) => Value::Array(
            a.values
                .into_iter()
                .map(|v| any_value_to_json(Some(v)))
                .collect(),
        ),
        Some(OtlpValue::KvlistValue(kv)) => {
            Value::Object(attributes_to_json(kv.values).into_iter().collect())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::{ArrayValue, InstrumentationScope, KeyValueList};
    use opentelemetry_proto::tonic::resource::v1::Resource;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Status};
    use serde_json::json;

    fn kv(key: &str, value: OtlpValue) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn text(s: &str) -> OtlpValue {
        OtlpValue::StringValue(s.into())
    }

    fn request(resource: Vec<KeyValue>, span: Span) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "shop.orders".into(),
                        ..Default::default()
                    }),
                    spans: vec![span],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn publish_span() -> Span {
        Span {
            trace_id: vec![0xAB; 16],
            span_id: vec![0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08],
            parent_span_id: vec![0x0C; 8],
            name: "shop.events publish".into(),
            kind: 4,
            start_time_unix_nano: 1_700_000_000_123_456_789,
            end_time_unix_nano: 1_700_000_000_223_456_789,
            attributes: vec![
                kv("messaging.system", text("rabbitmq")),
                kv("messaging.destination.name", text("shop.events")),
                kv("messaging.message.id", text("m-1")),
                kv(
                    "messaging.rabbitmq.destination.routing_key",
                    text("order.placed"),
                ),
                kv("retries", OtlpValue::IntValue(2)),
                kv("ratio", OtlpValue::DoubleValue(0.5)),
                kv("raw", OtlpValue::BytesValue(vec![0xff, 0x00])),
                kv(
                    "tags",
                    OtlpValue::ArrayValue(ArrayValue {
                        values: vec![AnyValue {
                            value: Some(text("a")),
                        }],
                    }),
                ),
                kv(
                    "order",
                    OtlpValue::KvlistValue(KeyValueList {
                        values: vec![kv("id", OtlpValue::BoolValue(true))],
                    }),
                ),
            ],
            events: vec![span::Event {
                time_unix_nano: 1_700_000_000_200_000_000,
                name: "exception".into(),
                attributes: vec![kv("exception.type", text("PaymentDeclined"))],
                ..Default::default()
            }],
            links: vec![span::Link {
                trace_id: vec![0x11; 16],
                span_id: vec![0x22; 8],
                attributes: vec![kv("link.reason", text("batch"))],
                ..Default::default()
            }],
            status: Some(Status {
                message: "card declined".into(),
                code: 2,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_span_with_new_semconv_attributes_and_a_link_converts() {
        let resource = vec![
            kv("service.name", text("payment")),
            kv("host.name", text("box-1")),
        ];
        let observations = spans_from_otlp(request(resource, publish_span()), 42).unwrap();
        let [Observation::Span(span)] = observations.as_slice() else {
            panic!("{observations:?}")
        };
        assert_eq!(&*span.service, "payment");
        assert_eq!(&*span.scope, "shop.orders");
        assert_eq!(
            span.resource,
            BTreeMap::from([("host.name".to_owned(), json!("box-1"))]).into()
        );
        assert_eq!(span.observed_unix_us, 42);
        assert_eq!(span.trace_id, "ab".repeat(16));
        assert_eq!(span.span_id, "0102030405060708");
        assert_eq!(
            span.parent_span_id.map(|p| p.to_string()).as_deref(),
            Some("0c0c0c0c0c0c0c0c")
        );
        assert_eq!(span.kind, SpanKind::Producer);
        assert_eq!(
            (span.start_unix_us, span.end_unix_us),
            (1_700_000_000_123_456, 1_700_000_000_223_456)
        );
        assert!(span.status.is_error());
        assert_eq!(span.status.message, "card declined");
        assert_eq!(span.attributes.get("retries").unwrap(), json!(2));
        assert_eq!(span.attributes.get("ratio").unwrap(), json!(0.5));
        assert_eq!(span.attributes.get("raw").unwrap(), json!("/wA="));
        assert_eq!(span.attributes.get("tags").unwrap(), json!(["a"]));
        assert_eq!(span.attributes.get("order").unwrap(), json!({"id": true}));
        assert_eq!(span.events[0].name, "exception");
        assert_eq!(
            span.events[0].attributes["exception.type"],
            json!("PaymentDeclined")
        );
        assert_eq!(span.events[0].time_unix_us, 1_700_000_000_200_000);
        assert_eq!(span.links[0].trace_id, "11".repeat(16));
        assert_eq!(span.links[0].span_id, "22".repeat(8));
        assert_eq!(span.links[0].attributes["link.reason"], json!("batch"));
        let messaging = span.messaging.as_ref().unwrap();
        assert_eq!(messaging.system(), Some("rabbitmq"));
        assert_eq!(messaging.destination(), Some("shop.events"));
        assert_eq!(messaging.message_id(), Some("m-1"));
        assert_eq!(messaging.routing_key(), Some("order.placed"));
    }

    #[test]
    fn a_root_span_without_service_name_is_an_unknown_service() {
        let span = Span {
            parent_span_id: vec![],
            status: None,
            ..publish_span()
        };
        let observations = spans_from_otlp(request(vec![], span), 0).unwrap();
        let [Observation::Span(span)] = observations.as_slice() else {
            panic!("{observations:?}")
        };
        assert_eq!(&*span.service, "unknown_service");
        assert_eq!(span.parent_span_id, None);
        assert_eq!(span.status.code, "unset");
    }

    #[test]
    fn an_invalid_id_is_refused_naming_the_span() {
        let span = Span {
            trace_id: vec![1, 2, 3],
            ..publish_span()
        };
        let err = spans_from_otlp(request(vec![], span), 0).unwrap_err();
        let message = err.to_string();
        assert!(
            message.contains("shop.events publish") && message.contains("trace id"),
            "{message}"
        );
        assert!(message.contains("0102030405060708"), "{message}");

        let link = span::Link {
            span_id: vec![0; 8],
            trace_id: vec![1; 16],
            ..Default::default()
        };
        let span = Span {
            links: vec![link],
            ..publish_span()
        };
        let err = spans_from_otlp(request(vec![], span), 0).unwrap_err();
        assert!(err.to_string().contains("link span id"), "{err}");
    }
}
