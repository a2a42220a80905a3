//! flowscope's wire types, shared by the collectors, the server and the UI.
//!
//! Everything flowscope sees becomes an [`Observation`]: one thing seen, by
//! one source, at one time. The collectors produce them, the correlator joins
//! them into flows, `flowscope tap` prints them as JSON lines.
//!
//! The JSON form is a tagged enum, `{"type": "...", "data": {...}}`:
//!
//! | `type` | source | meaning |
//! |---|---|---|
//! | `publish` | firehose `publish.<exchange>` | a client published a message; `routed_queues` says where the broker put it (empty: unroutable) |
//! | `deliver` | firehose `deliver.<queue>` | the broker handed a message from `queue` to a consumer |
//! | `dead_letter` | DLQ inspection | a message sits in a dead-letter queue; `deaths` says from where and why |
//! | `span` | OTLP | a span a service exported |
//! | `queue_sample` | management API, passive declare, firehose | a queue's depth and rates, with the source named |
//! | `topology` | management API | exchanges, queues, bindings, connections, consumers, dead-letter edges |
//!
//! Times are Unix microseconds (`*_unix_us`): exact in JSON for every
//! consumer, JavaScript included. Header values and span attributes are
//! plain JSON values.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;

mod alert;
mod attributes;
mod flow;
mod ids;
mod live;
pub mod protobuf;
mod span;
mod topology;

pub use alert::{Alert, AlertEvidence, AlertRule, AlertState, RuleKind, Severity};
pub use attributes::Attributes;
pub use flow::{
    FlowDetail, FlowReason, FlowStatus, FlowSummary, Hop, ProcessMap, ProcessStep,
    ProcessTransition, ProcessVariant,
};
pub use ids::{IdError, SpanId, TraceId};
pub use live::{LiveSnapshot, LiveStats, LiveUpdate, QueueState, StreamMessage};
pub use span::{
    MessagingAttributes, MessagingFields, SpanEvent, SpanKind, SpanLink, SpanObservation,
    SpanStatus, StatusCode,
};
pub use topology::{
    BindingInfo, ConnectionInfo, ConsumerInfo, DeadLetterEdge, ExchangeInfo, QueueInfo,
    QueueSample, SampleSource, TopologySnapshot,
};

/// One thing seen by one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
///
/// 16 bytes: every variant's data is behind a pointer. With broker messages
/// inline every observation, spans too, was 760 bytes, copied into the
/// reader's list, the pipeline's channel and the engine's batch.
pub enum Observation {
    /// A message published to an exchange (firehose `publish.*`).
    Publish(Box<BrokerMessage>),
    /// A message delivered from a queue to a consumer (firehose `deliver.*`).
    Deliver(Box<BrokerMessage>),
    /// A message found waiting in a dead-letter queue (inspected, not consumed).
    DeadLetter(Box<BrokerMessage>),
    /// A span exported by a service over OTLP. Shared, not copied, by the
    /// correlator's flow and the store's batch.
    Span(Arc<SpanObservation>),
    /// A queue's depth at one moment.
    QueueSample(Box<QueueSample>),
    /// The broker's topology of one vhost.
    Topology(Box<TopologySnapshot>),
}

impl Observation {
    /// Which collector produced it: `firehose`, `dlq`, `otlp` or `management`.
    pub fn source(&self) -> &'static str {
        match self {
            Observation::Publish(_) | Observation::Deliver(_) => "firehose",
            Observation::DeadLetter(_) => "dlq",
            Observation::Span(_) => "otlp",
            Observation::QueueSample(sample) => sample.source.as_str(),
            Observation::Topology(_) => "management",
        }
    }
}

/// A message as the broker saw it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BrokerMessage {
    /// When flowscope saw it.
    pub observed_unix_us: i64,
    pub vhost: String,
    /// The broker node that traced it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The exchange it was published to (`""` is the default exchange).
    pub exchange: String,
    pub routing_keys: Vec<String>,
    /// For a delivery or a dead letter: the queue it came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// For a publish: the queues the broker routed it to. Empty = unroutable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routed_queues: Option<Vec<String>>,
    /// For a delivery: whether the broker had delivered it before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redelivered: Option<bool>,
    /// The client connection, as the broker names it (`"127.0.0.1:48894 -> 127.0.0.1:5672"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub channel: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The service behind the connection (the `connection_name` the client
    /// sent), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub properties: MessageProperties,
    /// W3C trace context read from the `traceparent`/`tracestate` headers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<TraceContext>,
    /// The `x-death` history, most recent first, as the broker keeps it.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub deaths: Vec<Death>,
    /// `x-first-death-queue`, `-reason`, `-exchange`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_death: Option<FirstDeath>,
    /// The body as captured (possibly cut and redacted); `None` when capture is off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Body>,
    /// The body's full size in bytes.
    pub body_size: u64,
}

impl BrokerMessage {
    /// A publish the broker could route nowhere.
    pub fn is_unroutable(&self) -> bool {
        self.routed_queues.as_ref().is_some_and(Vec::is_empty)
    }
}

/// The AMQP basic properties of a message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MessageProperties {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correlation_id: Option<String>,
    /// The `type` property: the event name, by convention.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<String>,
    /// Seconds since the Unix epoch, as AMQP carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content_encoding: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_mode: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Application headers (redacted where configured).
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub headers: BTreeMap<String, Value>,
}

/// W3C trace context.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceContext {
    /// 32 lowercase hex digits.
    pub trace_id: String,
    /// 16 lowercase hex digits: the span that published the message.
    pub span_id: String,
    pub sampled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// Parses a `traceparent` value (`00-<trace>-<span>-<flags>`); `None` if invalid.
    pub fn from_traceparent(value: &str, tracestate: Option<String>) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace_id, span_id, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let hex = |s: &str, len: usize| {
            s.len() == len
                && s.bytes().all(|b| b.is_ascii_hexdigit())
                && s.bytes().any(|b| b != b'0')
        };
        if version.len() != 2
            || version == "ff"
            || !hex(trace_id, 32)
            || !hex(span_id, 16)
            || flags.len() != 2
        {
            return None;
        }
        let flags = u8::from_str_radix(flags, 16).ok()?;
        Some(Self {
            trace_id: trace_id.to_ascii_lowercase(),
            span_id: span_id.to_ascii_lowercase(),
            sampled: flags & 1 == 1,
            tracestate,
        })
    }
}

/// One entry of `x-death`: the message was dead-lettered from `queue`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Death {
    pub queue: String,
    /// `rejected`, `expired`, `maxlen` or `delivery_limit`.
    pub reason: String,
    /// The exchange it had been published to.
    pub exchange: String,
    /// Its routing keys before dead-lettering.
    pub routing_keys: Vec<String>,
    /// How many times it was dead-lettered from this queue for this reason.
    pub count: i64,
    /// When (seconds since the Unix epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time: Option<i64>,
}

/// The `x-first-death-*` headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FirstDeath {
    pub queue: Option<String>,
    pub reason: Option<String>,
    pub exchange: Option<String>,
}

/// A captured message body.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Body {
    /// The (possibly cut) body: UTF-8 text as is, other bytes in base64.
    pub content: String,
    /// `utf8` or `base64`.
    pub encoding: String,
    /// Whether the body was cut at the configured size.
    pub truncated: bool,
    /// Whether configured fields were masked.
    pub redacted: bool,
}

/// Microseconds since the Unix epoch, now (0 if the clock is before 1970).
pub fn now_unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_round_trip_tagged() {
        let obs = Observation::Publish(Box::new(BrokerMessage {
            observed_unix_us: 1,
            vhost: "/".into(),
            exchange: "shop.events".into(),
            routing_keys: vec!["order.placed".into()],
            routed_queues: Some(vec![]),
            properties: MessageProperties {
                kind: Some("OrderPlaced".into()),
                ..Default::default()
            },
            ..Default::default()
        }));
        let json = serde_json::to_value(&obs).unwrap();
        assert_eq!(json["type"], "publish");
        assert_eq!(json["data"]["properties"]["type"], "OrderPlaced");
        assert_eq!(json["data"]["routed_queues"], serde_json::json!([]));
        let back: Observation = serde_json::from_value(json).unwrap();
        assert_eq!(back, obs);
        let Observation::Publish(msg) = back else {
            unreachable!()
        };
        assert!(msg.is_unroutable());
    }

    #[test]
    fn traceparent_parses_and_rejects_garbage() {
        let cx = TraceContext::from_traceparent(
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            None,
        )
        .unwrap();
        assert_eq!(cx.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(cx.sampled);
        for bad in [
            "",
            "00-0000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-xyz-01",
        ] {
            assert_eq!(TraceContext::from_traceparent(bad, None), None, "{bad}");
        }
    }
}
