//! The identifiers an observation carries: any two observations that share
//! one belong to the same flow.
//!
//! An observation's identifiers are read borrowed ([`IdentRef`]) and looked
//! up as they are; only one new to the correlator is copied, once, into an
//! [`Ident`] whose text the index and its flow share.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use flowscope_model::{BrokerMessage, SpanObservation, TraceId};
use serde_json::Value;
use smallvec::SmallVec;

use super::config::{KeyRule, KeySource};

/// One identifier, kept. The business key keeps its rule name apart from ids.
#[derive(Debug, Clone)]
pub enum Ident {
    Trace(TraceId),
    Message(Arc<str>),
    Correlation(Arc<str>),
    Key(Arc<str>, Arc<str>),
}

/// One identifier as an observation carries it (borrowed where it can be).
/// Hashes and compares like the [`Ident`] it becomes.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum IdentRef<'a> {
    Trace(TraceId),
    Message(Cow<'a, str>),
    Correlation(Cow<'a, str>),
    Key(&'a str, Cow<'a, str>),
}

/// An observation's identifiers (a span has three or four).
pub type Idents<'a> = SmallVec<[IdentRef<'a>; 4]>;

impl Ident {
    /// Borrowed, to compare with an [`IdentRef`].
    pub fn as_ref(&self) -> IdentRef<'_> {
        match self {
            Ident::Trace(t) => IdentRef::Trace(*t),
            Ident::Message(m) => IdentRef::Message(Cow::Borrowed(m)),
            Ident::Correlation(c) => IdentRef::Correlation(Cow::Borrowed(c)),
            Ident::Key(name, value) => IdentRef::Key(name, Cow::Borrowed(value)),
        }
    }
}

impl IdentRef<'_> {
    /// Kept: the text copied once.
    pub fn to_ident(&self) -> Ident {
        match self {
            IdentRef::Trace(t) => Ident::Trace(*t),
            IdentRef::Message(m) => Ident::Message(Arc::from(&**m)),
            IdentRef::Correlation(c) => Ident::Correlation(Arc::from(&**c)),
            IdentRef::Key(name, value) => Ident::Key(Arc::from(*name), Arc::from(&**value)),
        }
    }

    /// A stable text form, for flow ids.
    pub fn text(&self) -> String {
        match self {
            IdentRef::Trace(t) => format!("trace:{t}"),
            IdentRef::Message(m) => format!("msg:{m}"),
            IdentRef::Correlation(c) => format!("corr:{c}"),
            IdentRef::Key(name, value) => format!("key:{name}={value}"),
        }
    }

    /// Whether it identifies nothing (an empty id, an all-zero trace).
    pub fn is_empty(&self) -> bool {
        match self {
            IdentRef::Trace(t) => t.is_zero(),
            IdentRef::Message(s) | IdentRef::Correlation(s) | IdentRef::Key(_, s) => s.is_empty(),
        }
    }
}

impl Hash for IdentRef<'_> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            IdentRef::Trace(t) => {
                state.write_u8(0);
                t.hash(state);
            }
            IdentRef::Message(m) => {
                state.write_u8(1);
                str::hash(m, state);
            }
            IdentRef::Correlation(c) => {
                state.write_u8(2);
                str::hash(c, state);
            }
            IdentRef::Key(name, value) => {
                state.write_u8(3);
                str::hash(name, state);
                str::hash(value, state);
            }
        }
    }
}

impl Hash for Ident {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_ref().hash(state);
    }
}

impl PartialEq for Ident {
    fn eq(&self, other: &Self) -> bool {
        self.as_ref() == other.as_ref()
    }
}

impl Eq for Ident {}

impl PartialOrd for Ident {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Ident {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_ref().cmp(&other.as_ref())
    }
}

impl hashbrown::Equivalent<Ident> for IdentRef<'_> {
    fn equivalent(&self, key: &Ident) -> bool {
        *self == key.as_ref()
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
pub fn message_key<'a>(
    msg: &'a BrokerMessage,
    rules: &'a [(KeyRule, KeySource)],
) -> Option<(&'a str, Cow<'a, str>)> {
    rules.iter().find_map(|(rule, source)| {
        let value = match source {
            KeySource::Header(name) => msg.properties.headers.get(name).and_then(text),
            KeySource::Property(name) => match name.as_str() {
                "message_id" => msg.properties.message_id.as_deref().map(Cow::Borrowed),
                "correlation_id" => msg.properties.correlation_id.as_deref().map(Cow::Borrowed),
                "type" => msg.properties.kind.as_deref().map(Cow::Borrowed),
                "app_id" => msg.properties.app_id.as_deref().map(Cow::Borrowed),
                "user_id" => msg.properties.user_id.as_deref().map(Cow::Borrowed),
                _ => None,
            },
            KeySource::JsonPointer(pointer) => {
                let body = msg
                    .body
                    .as_ref()
                    .filter(|b| b.encoding == "utf8" && !b.truncated)?;
                let json: Value = serde_json::from_str(&body.content).ok()?;
                json.pointer(pointer)
                    .and_then(text)
                    .map(|v| Cow::Owned(v.into_owned()))
            }
            KeySource::Attribute(_) => None,
        }?;
        Some((rule.name.as_str(), value))
    })
}

/// The business key a span carries.
pub fn span_key<'a>(
    span: &'a SpanObservation,
    rules: &'a [(KeyRule, KeySource)],
) -> Option<(&'a str, Cow<'a, str>)> {
    rules.iter().find_map(|(rule, source)| match source {
        KeySource::Attribute(name) => span.attributes.text(name).map(|v| (rule.name.as_str(), v)),
        _ => None,
    })
}

fn text(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Every identifier of a broker message, its message id first.
pub fn of_message<'a>(msg: &'a BrokerMessage, rules: &'a [(KeyRule, KeySource)]) -> Idents<'a> {
    let id = match &msg.properties.message_id {
        Some(id) => Cow::Borrowed(id.as_str()),
        None => Cow::Owned(message_id(msg)),
    };
    let mut ids = Idents::new();
    ids.push(IdentRef::Message(id));
    // A trace context was checked as 32 hex digits when it was read.
    if let Some(trace) = msg.trace.as_ref().and_then(|t| t.trace_id.parse().ok()) {
        ids.push(IdentRef::Trace(trace));
    }
    if let Some(corr) = &msg.properties.correlation_id {
        ids.push(IdentRef::Correlation(Cow::Borrowed(corr)));
    }
    if let Some((name, value)) = message_key(msg, rules) {
        ids.push(IdentRef::Key(name, value));
    }
    ids
}

/// Every identifier of a span: its trace, the traces it links to, the
/// message it handled, the conversation, the business key.
pub fn of_span<'a>(span: &'a SpanObservation, rules: &'a [(KeyRule, KeySource)]) -> Idents<'a> {
    let mut ids = Idents::new();
    ids.push(IdentRef::Trace(span.trace_id));
    ids.extend(span.links.iter().map(|l| IdentRef::Trace(l.trace_id)));
    if let Some(m) = &span.messaging {
        if let Some(id) = &m.message_id {
            ids.push(IdentRef::Message(Cow::Borrowed(id)));
        }
        if let Some(conv) = &m.conversation_id {
            ids.push(IdentRef::Correlation(Cow::Borrowed(conv)));
        }
    }
    if let Some((name, value)) = span_key(span, rules) {
        ids.push(IdentRef::Key(name, value));
    }
    ids
}
