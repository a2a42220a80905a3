//! Spans received over OTLP, with their messaging attributes normalized.

use std::collections::BTreeMap;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Attributes, SpanId, TraceId};

/// A span a service exported.
///
/// Kept in memory while its flow is live (up to 20,000 flows), so it is
/// kept small: ids are bytes, what every span of one request shares
/// (service, scope, resource) is shared, not copied, and the rarely
/// present parts are boxed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanObservation {
    pub observed_unix_us: i64,
    /// The resource's `service.name` (`unknown_service` when absent, as OTel says).
    pub service: Arc<str>,
    /// The instrumentation scope's name.
    #[serde(skip_serializing_if = "str::is_empty", default)]
    pub scope: Arc<str>,
    /// Written as 32 lowercase hex digits.
    pub trace_id: TraceId,
    /// Written as 16 lowercase hex digits.
    pub span_id: SpanId,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_span_id: Option<SpanId>,
    /// Up to 24 bytes kept inline.
    pub name: CompactString,
    pub kind: SpanKind,
    pub start_unix_us: i64,
    pub end_unix_us: i64,
    pub status: SpanStatus,
    #[serde(skip_serializing_if = "Attributes::is_empty", default)]
    pub attributes: Attributes,
    /// Resource attributes besides `service.name`.
    #[serde(skip_serializing_if = "is_empty_map", default)]
    pub resource: Arc<BTreeMap<String, Value>>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub events: Vec<SpanEvent>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub links: Vec<SpanLink>,
    /// The messaging attributes, read from the old or the new semantic conventions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messaging: Option<Box<MessagingAttributes>>,
}

fn is_empty_map(map: &Arc<BTreeMap<String, Value>>) -> bool {
    map.is_empty()
}

/// OTLP span kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    /// From the OTLP enum number; unknown numbers are `Unspecified`.
    pub fn from_otlp(kind: i32) -> Self {
        match kind {
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => SpanKind::Unspecified,
        }
    }
}

/// A span's status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SpanStatus {
    /// Written `unset`, `ok` or `error`.
    pub code: StatusCode,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub message: String,
}

impl SpanStatus {
    /// Whether the span failed.
    pub fn is_error(&self) -> bool {
        self.code == StatusCode::Error
    }
}

/// OTLP status code.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusCode {
    #[default]
    Unset,
    Ok,
    Error,
}

impl StatusCode {
    /// From the OTLP enum number; unknown numbers are `Unset`.
    pub fn from_otlp(code: i32) -> Self {
        match code {
            1 => StatusCode::Ok,
            2 => StatusCode::Error,
            _ => StatusCode::Unset,
        }
    }

    /// As written: `unset`, `ok` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusCode::Unset => "unset",
            StatusCode::Ok => "ok",
            StatusCode::Error => "error",
        }
    }
}

impl PartialEq<&str> for StatusCode {
    fn eq(&self, text: &&str) -> bool {
        self.as_str() == *text
    }
}

/// An event in a span (an `exception`, say).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanEvent {
    pub name: String,
    pub time_unix_us: i64,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub attributes: BTreeMap<String, Value>,
}

/// A link to another span: joins flows exactly as parent/child does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub attributes: BTreeMap<String, Value>,
}

/// Messaging attributes, whichever semantic-convention generation the
/// service used (`messaging.destination.name` or `messaging.destination`, …).
///
/// Each up to 24 bytes is kept inline (systems, operations, exchanges,
/// routing keys usually are): one allocation per span, not one per field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessagingAttributes {
    /// `messaging.system`, e.g. `rabbitmq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<CompactString>,
    /// `messaging.operation.type` (new) or `messaging.operation` (old):
    /// `send`/`publish`, `receive`, `process`, `create`, `settle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<CompactString>,
    /// `messaging.destination.name` (new) or `messaging.destination` (old): the exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<CompactString>,
    /// `messaging.message.id` (new) or `messaging.message_id` (old).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<CompactString>,
    /// `messaging.message.conversation_id` (new) or `messaging.conversation_id` (old).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<CompactString>,
    /// `messaging.rabbitmq.destination.routing_key` (new) or `messaging.rabbitmq.routing_key` (old).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<CompactString>,
    /// `messaging.destination.subscription.name` or `messaging.consumer.group.name`: the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<CompactString>,
}

/// Where each messaging attribute is read from, newest convention first.
const MESSAGING_KEYS: [&[&str]; 7] = [
    &["messaging.system"],
    &["messaging.operation.type", "messaging.operation"],
    &["messaging.destination.name", "messaging.destination"],
    &["messaging.message.id", "messaging.message_id"],
    &[
        "messaging.message.conversation_id",
        "messaging.conversation_id",
    ],
    &[
        "messaging.rabbitmq.destination.routing_key",
        "messaging.rabbitmq.routing_key",
    ],
    &[
        "messaging.destination.subscription.name",
        "messaging.consumer.group.name",
        "messaging.rabbitmq.queue",
    ],
];

impl MessagingAttributes {
    /// Reads them from a span's attributes in one pass; `None` when the
    /// span has none.
    pub fn from_attributes(attributes: &Attributes) -> Option<Box<Self>> {
        // Per field, the key-value given for each of its keys (by rank).
        let mut found = [[None; 3]; 7];
        for kv in attributes.with_prefix("messaging.") {
            for (field, names) in MESSAGING_KEYS.iter().enumerate() {
                if let Some(rank) = names.iter().position(|n| *n == kv.key) {
                    found[field][rank] = Some(kv);
                }
            }
        }
        // The first key, by rank, whose value is text or a number.
        let read = |field: usize| {
            found[field]
                .iter()
                .flatten()
                .find_map(|kv| match kv.borrowed_str() {
                    Some(text) => Some(CompactString::from(text)),
                    None => kv.text().map(CompactString::from),
                })
        };
        let attrs = Self {
            system: read(0),
            operation: read(1),
            destination: read(2),
            message_id: read(3),
            conversation_id: read(4),
            routing_key: read(5),
            queue: read(6),
        };
        (attrs != Self::default()).then(|| Box::new(attrs))
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
    fn old_and_new_semantic_conventions_read_the_same() {
        let new = attrs(&[
            ("messaging.system", json!("rabbitmq")),
            ("messaging.destination.name", json!("shop.events")),
            ("messaging.message.id", json!("m-1")),
            (
                "messaging.rabbitmq.destination.routing_key",
                json!("order.placed"),
            ),
            ("messaging.operation.type", json!("send")),
        ]);
        let old = attrs(&[
            ("messaging.system", json!("rabbitmq")),
            ("messaging.destination", json!("shop.events")),
            ("messaging.message_id", json!("m-1")),
            ("messaging.rabbitmq.routing_key", json!("order.placed")),
            ("messaging.operation", json!("send")),
        ]);
        let a = MessagingAttributes::from_attributes(&new).unwrap();
        assert_eq!(a, MessagingAttributes::from_attributes(&old).unwrap());
        assert_eq!(a.destination.as_deref(), Some("shop.events"));
        assert_eq!(a.routing_key.as_deref(), Some("order.placed"));
        assert!(
            MessagingAttributes::from_attributes(&attrs(&[("http.route", json!("/"))])).is_none()
        );
    }
}
