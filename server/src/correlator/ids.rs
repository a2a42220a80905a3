//! The identifiers an observation carries: any two observations that share
//! one belong to the same flow.
//!
//! An observation's identifiers are read borrowed ([`IdentRef`]); the
//! correlator keeps each as a 128-bit hash of it ([`IdentKey`]), never
//! its text (its index, 96 bits of that: [`super::slab::Index`]): looking
//! one up compares integers in the table
//! instead of following a pointer to text kept elsewhere (a cache miss
//! into memory left idle for seconds, which this kind of machine makes
//! expensive), and keeping one allocates nothing.

use std::borrow::Cow;
use std::hash::BuildHasher;

use flowscope_model::{BrokerMessage, SpanObservation, TraceId};
use serde_json::Value;
use smallvec::SmallVec;
use xxhash_rust::xxh3::{Xxh3, xxh3_128_with_seed};

use super::config::{KeyRule, KeySource};
use super::flow_id::FlowId;

/// One identifier as an observation carries it (borrowed where it can be).
/// The business key keeps its rule name apart from ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentRef<'a> {
    Trace(TraceId),
    Message(Cow<'a, str>),
    Correlation(Cow<'a, str>),
    Key(&'a str, Cow<'a, str>),
}

/// An observation's identifiers (a span has three or four).
pub type Idents<'a> = SmallVec<[IdentRef<'a>; 4]>;

/// An identifier as the correlator keeps it: a 128-bit hash of its kind
/// and text ([`IdentKeys::key`]), of which the index compares 96 bits
/// (two identifiers share those with a chance of about n / 2⁹⁶ for each
/// new one among n live: [`super::slab::Index`]). The seed is drawn per
/// process, so no one can choose identifiers that collide.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentKey(u128);

impl IdentKey {
    /// The hash.
    pub fn bits(self) -> u128 {
        self.0
    }

    /// A key of these bits.
    #[cfg(test)]
    pub fn from_bits(bits: u128) -> Self {
        Self(bits)
    }
}

/// Makes [`IdentKey`]s with one process-wide random seed.
#[derive(Debug, Clone, Copy)]
pub struct IdentKeys {
    seed: u64,
}

impl Default for IdentKeys {
    fn default() -> Self {
        Self {
            seed: std::hash::RandomState::new().hash_one(0x666c_6f77_u64),
        }
    }
}

/// Identifiers up to this long (kind, rule name and text) are hashed from
/// a buffer on the stack; longer ones are streamed.
const INLINE_KEY_BYTES: usize = 256;
/// Most identifiers (a trace, a message id, an order key) fit in this.
const SHORT_KEY_BYTES: usize = 64;

impl IdentKeys {
    /// The key of one identifier.
    pub fn key(&self, ident: &IdentRef<'_>) -> IdentKey {
        // Kind, then (for a business key) the rule name's length and the
        // name, then the text: no two identifiers spell the same bytes.
        let (kind, name, text): (u8, &str, &[u8]) = match ident {
            IdentRef::Trace(t) => (0, "", &t.0),
            IdentRef::Message(m) => (1, "", m.as_bytes()),
            IdentRef::Correlation(c) => (2, "", c.as_bytes()),
            IdentRef::Key(name, value) => (3, name, value.as_bytes()),
        };
        let name_len = (name.len() as u32).to_le_bytes();
        let len = 1 + name_len.len() + name.len() + text.len();
        if len <= SHORT_KEY_BYTES {
            // Most: a buffer that takes two stores to clear, not eight.
            IdentKey(self.hash_on_stack::<SHORT_KEY_BYTES>(kind, name, text))
        } else if len <= INLINE_KEY_BYTES {
            IdentKey(self.hash_on_stack::<INLINE_KEY_BYTES>(kind, name, text))
        } else {
            let mut h = Xxh3::with_seed(self.seed);
            h.update(&[kind]);
            h.update(&name_len);
            h.update(name.as_bytes());
            h.update(text);
            IdentKey(h.digest128())
        }
    }
}

impl IdentKeys {
    /// Hashes kind, name length, name and text laid out in an `N`-byte
    /// buffer (they fit).
    #[inline]
    /// The key a live flow is found by its id with ([`super::slab::Flows`]
    /// keeps them in an index of their own).
    pub fn flow_key(&self, id: FlowId) -> IdentKey {
        IdentKey(xxh3_128_with_seed(&id.to_le_bytes(), self.seed))
    }

    fn hash_on_stack<const N: usize>(&self, kind: u8, name: &str, text: &[u8]) -> u128 {
        let len = 5 + name.len() + text.len();
        let mut buf = [0u8; N];
        buf[0] = kind;
        buf[1..5].copy_from_slice(&(name.len() as u32).to_le_bytes());
        buf[5..5 + name.len()].copy_from_slice(name.as_bytes());
        buf[5 + name.len()..len].copy_from_slice(text);
        xxh3_128_with_seed(&buf[..len], self.seed)
    }
}

impl IdentRef<'_> {
    /// Writes a stable text form out, for flow ids.
    pub fn write_text(&self, out: &mut impl std::fmt::Write) -> std::fmt::Result {
        match self {
            IdentRef::Trace(t) => write!(out, "trace:{t}"),
            IdentRef::Message(m) => write!(out, "msg:{m}"),
            IdentRef::Correlation(c) => write!(out, "corr:{c}"),
            IdentRef::Key(name, value) => write!(out, "key:{name}={value}"),
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
        if let Some(id) = m.message_id() {
            ids.push(IdentRef::Message(Cow::Borrowed(id)));
        }
        if let Some(conv) = m.conversation_id() {
            ids.push(IdentRef::Correlation(Cow::Borrowed(conv)));
        }
    }
    if let Some((name, value)) = span_key(span, rules) {
        ids.push(IdentRef::Key(name, value));
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_hashes_the_same_bytes_however_long_the_identifier() {
        let keys = IdentKeys::default();
        for len in [0, 1, 50, 55, 56, 59, 60, 100, 246, 251, 252, 300] {
            let text = "x".repeat(len);
            for ident in [
                IdentRef::Message(Cow::Borrowed(&text)),
                IdentRef::Key("shop.order_id", Cow::Borrowed(&text)),
            ] {
                let (kind, name) = match &ident {
                    IdentRef::Key(name, _) => (3u8, *name),
                    _ => (1, ""),
                };
                let mut bytes = vec![kind];
                bytes.extend_from_slice(&(name.len() as u32).to_le_bytes());
                bytes.extend_from_slice(name.as_bytes());
                bytes.extend_from_slice(text.as_bytes());
                assert_eq!(
                    keys.key(&ident),
                    IdentKey(xxh3_128_with_seed(&bytes, keys.seed)),
                    "{len}"
                );
            }
        }
        let a = |i: IdentRef<'_>| keys.key(&i);
        assert_ne!(
            a(IdentRef::Message(Cow::Borrowed("a"))),
            a(IdentRef::Correlation(Cow::Borrowed("a")))
        );
    }
}
