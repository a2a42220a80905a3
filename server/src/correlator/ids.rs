//! The identifiers an observation carries: any two observations that share
//! one belong to the same flow.

use flowscope_model::{BrokerMessage, SpanObservation, TraceId};
use serde_json::Value;

use super::config::{KeyRule, KeySource};

/// One identifier. The business key keeps its rule name apart from ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ident {
    Trace(TraceId),
    Message(String),
    Correlation(String),
    Key(String, String),
}

impl Ident {
    /// A stable text form, for flow ids.
    pub fn text(&self) -> String {
        match self {
            Ident::Trace(t) => format!("trace:{t}"),
            Ident::Message(m) => format!("msg:{m}"),
            Ident::Correlation(c) => format!("corr:{c}"),
            Ident::Key(name, value) => format!("key:{name}={value}"),
        }
    }
}

/// The id a message is known by: its `message_id`, else a fingerprint of
/// what identifies it (so publish and deliver copies still meet).
pub fn message_id(msg: &BrokerMessage) -> String {
    if let Some(id) = &msg.properties.message_id {
        return id.clone();
    }
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    msg.exchange.hash(&mut h);
    msg.properties.correlation_id.hash(&mut h);
    msg.properties.kind.hash(&mut h);
    msg.properties.timestamp.hash(&mut h);
    msg.body.as_ref().map(|b| &b.content).hash(&mut h);
    msg.body_size.hash(&mut h);
    format!("fp-{:016x}", h.finish())
}

/// The business key a message carries, by the first rule that finds one.
pub fn message_key(
    msg: &BrokerMessage,
    rules: &[(KeyRule, KeySource)],
) -> Option<(String, String)> {
    rules.iter().find_map(|(rule, source)| {
        let value = match source {
            KeySource::Header(name) => msg.properties.headers.get(name).and_then(text),
            KeySource::Property(name) => match name.as_str() {
                "message_id" => msg.properties.message_id.clone(),
                "correlation_id" => msg.properties.correlation_id.clone(),
                "type" => msg.properties.kind.clone(),
                "app_id" => msg.properties.app_id.clone(),
                "user_id" => msg.properties.user_id.clone(),
                _ => None,
            },
            KeySource::JsonPointer(pointer) => {
                let body = msg
                    .body
                    .as_ref()
                    .filter(|b| b.encoding == "utf8" && !b.truncated)?;
                let json: Value = serde_json::from_str(&body.content).ok()?;
                json.pointer(pointer).and_then(text)
            }
            KeySource::Attribute(_) => None,
        }?;
        Some((rule.name.clone(), value))
    })
}

/// The business key a span carries.
pub fn span_key(
    span: &SpanObservation,
    rules: &[(KeyRule, KeySource)],
) -> Option<(String, String)> {
    rules.iter().find_map(|(rule, source)| match source {
        KeySource::Attribute(name) => span.attributes.text(name).map(|v| (rule.name.clone(), v)),
        _ => None,
    })
}

fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Every identifier of a broker message.
pub fn of_message(msg: &BrokerMessage, rules: &[(KeyRule, KeySource)]) -> Vec<Ident> {
    let mut ids = vec![Ident::Message(message_id(msg))];
    // A trace context was checked as 32 hex digits when it was read.
    if let Some(trace) = msg.trace.as_ref().and_then(|t| t.trace_id.parse().ok()) {
        ids.push(Ident::Trace(trace));
    }
    if let Some(corr) = &msg.properties.correlation_id {
        ids.push(Ident::Correlation(corr.clone()));
    }
    if let Some((name, value)) = message_key(msg, rules) {
        ids.push(Ident::Key(name, value));
    }
    ids
}

/// Every identifier of a span: its trace, the traces it links to, the
/// message it handled, the conversation, the business key.
pub fn of_span(span: &SpanObservation, rules: &[(KeyRule, KeySource)]) -> Vec<Ident> {
    let mut ids = vec![Ident::Trace(span.trace_id)];
    ids.extend(span.links.iter().map(|l| Ident::Trace(l.trace_id)));
    if let Some(m) = &span.messaging {
        if let Some(id) = &m.message_id {
            ids.push(Ident::Message(id.clone()));
        }
        if let Some(conv) = &m.conversation_id {
            ids.push(Ident::Correlation(conv.clone()));
        }
    }
    if let Some((name, value)) = span_key(span, rules) {
        ids.push(Ident::Key(name, value));
    }
    ids
}
