//! Spans received over OTLP, with their messaging attributes normalized.

use std::collections::BTreeMap;
use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Attributes, SpanId, TraceId};

mod messaging;

use self::messaging::messaging_from_json;
pub use self::messaging::{MessagingAttributes, MessagingFields};

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
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        deserialize_with = "messaging_from_json"
    )]
    pub messaging: Option<MessagingAttributes>,
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
