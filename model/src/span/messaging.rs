//! A span's messaging attributes, kept compact.

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::Attributes;
use crate::protobuf::KeyValueRef;

/// Messaging attributes, whichever semantic-convention generation the
/// service used (`messaging.destination.name` or `messaging.destination`, …).
///
/// Kept in the span (32 bytes) with their text in one block: one
/// allocation per messaging span, where a boxed struct of strings took
/// one for the struct and one for each value longer than 24 bytes
/// (message ids usually are), each freed when the span's flow left memory.
/// Read with the accessors, or all at once as [`MessagingFields`]
/// ([`MessagingAttributes::fields`]); made from [`MessagingFields`]
/// ([`MessagingAttributes::new`]). Written and read as JSON like the
/// fields.
#[derive(Clone, PartialEq, Eq)]
pub struct MessagingAttributes {
    /// The values, one after another.
    text: Box<str>,
    /// Where each field's value ends in `text` (it starts where the one
    /// before ends).
    ends: [u16; 7],
    /// Which fields have a value (bit per field).
    present: u8,
}

/// The messaging attributes as text, each `None` when absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MessagingFields<'a> {
    /// `messaging.system`, e.g. `rabbitmq`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<&'a str>,
    /// `messaging.operation.type` (new) or `messaging.operation` (old):
    /// `send`/`publish`, `receive`, `process`, `create`, `settle`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<&'a str>,
    /// `messaging.destination.name` (new) or `messaging.destination` (old): the exchange.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<&'a str>,
    /// `messaging.message.id` (new) or `messaging.message_id` (old).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<&'a str>,
    /// `messaging.message.conversation_id` (new) or `messaging.conversation_id` (old).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<&'a str>,
    /// `messaging.rabbitmq.destination.routing_key` (new) or `messaging.rabbitmq.routing_key` (old).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<&'a str>,
    /// `messaging.destination.subscription.name` or `messaging.consumer.group.name`: the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<&'a str>,
}

impl<'a> MessagingFields<'a> {
    fn to_array(self) -> [Option<&'a str>; 7] {
        [
            self.system,
            self.operation,
            self.destination,
            self.message_id,
            self.conversation_id,
            self.routing_key,
            self.queue,
        ]
    }
}

/// The same fields, owned: what JSON is read into.
#[derive(Default, Deserialize)]
#[serde(default)]
struct OwnedMessagingFields {
    system: Option<String>,
    operation: Option<String>,
    destination: Option<String>,
    message_id: Option<String>,
    conversation_id: Option<String>,
    routing_key: Option<String>,
    queue: Option<String>,
}

/// Where each messaging attribute is read from, newest convention first:
/// a key's field (in [`MessagingFields`] order) and rank. A `match`, so a
/// key is compared with the names of its length only.
fn messaging_key(key: &[u8]) -> Option<(usize, usize)> {
    Some(match key {
        b"messaging.system" => (0, 0),
        b"messaging.operation.type" => (1, 0),
        b"messaging.operation" => (1, 1),
        b"messaging.destination.name" => (2, 0),
        b"messaging.destination" => (2, 1),
        b"messaging.message.id" => (3, 0),
        b"messaging.message_id" => (3, 1),
        b"messaging.message.conversation_id" => (4, 0),
        b"messaging.conversation_id" => (4, 1),
        b"messaging.rabbitmq.destination.routing_key" => (5, 0),
        b"messaging.rabbitmq.routing_key" => (5, 1),
        b"messaging.destination.subscription.name" => (6, 0),
        b"messaging.consumer.group.name" => (6, 1),
        b"messaging.rabbitmq.queue" => (6, 2),
        _ => return None,
    })
}

impl MessagingAttributes {
    /// From the fields given; `None` when none is. Values that would take
    /// the text past 64 KiB are left out (no identifier is that long).
    pub fn new(fields: MessagingFields<'_>) -> Option<Self> {
        Self::from_values(
            fields
                .to_array()
                .map(|v| v.map(|v| Cow::Borrowed(v.as_bytes()))),
        )
    }

    /// From each field's text as bytes, checked as UTF-8 once, joined (a
    /// field whose bytes are not UTF-8 is left out).
    fn from_values(values: [Option<Cow<'_, [u8]>>; 7]) -> Option<Self> {
        let len: usize = values.iter().flatten().map(|v| v.len()).sum();
        let mut text = Vec::with_capacity(len.min(usize::from(u16::MAX)));
        let mut ends = [0u16; 7];
        let mut present = 0u8;
        for (i, value) in values.iter().enumerate() {
            if let Some(value) = value
                && text.len() + value.len() <= usize::from(u16::MAX)
            {
                text.extend_from_slice(value);
                present |= 1 << i;
            }
            ends[i] = text.len() as u16;
        }
        if present == 0 {
            return None;
        }
        match String::from_utf8(text) {
            Ok(text) => Some(Self {
                text: text.into_boxed_str(),
                ends,
                present,
            }),
            Err(_) => {
                Self::from_values(values.map(|v| v.filter(|v| std::str::from_utf8(v).is_ok())))
            }
        }
    }

    fn value(&self, field: usize) -> Option<&str> {
        if self.present & (1 << field) == 0 {
            return None;
        }
        let start = if field == 0 { 0 } else { self.ends[field - 1] };
        self.text
            .get(usize::from(start)..usize::from(self.ends[field]))
    }

    /// Reads the first byte of the text (0 when empty): brings it into
    /// the cache ahead of use, such as freeing it.
    pub fn touch(&self) -> u8 {
        self.text.as_bytes().first().copied().unwrap_or(0)
    }

    /// All the fields.
    pub fn fields(&self) -> MessagingFields<'_> {
        MessagingFields {
            system: self.value(0),
            operation: self.value(1),
            destination: self.value(2),
            message_id: self.value(3),
            conversation_id: self.value(4),
            routing_key: self.value(5),
            queue: self.value(6),
        }
    }

    /// `messaging.system`.
    pub fn system(&self) -> Option<&str> {
        self.value(0)
    }

    /// `messaging.operation(.type)`.
    pub fn operation(&self) -> Option<&str> {
        self.value(1)
    }

    /// `messaging.destination(.name)`: the exchange.
    pub fn destination(&self) -> Option<&str> {
        self.value(2)
    }

    /// `messaging.message.id` / `messaging.message_id`.
    pub fn message_id(&self) -> Option<&str> {
        self.value(3)
    }

    /// `messaging.(message.)conversation_id`.
    pub fn conversation_id(&self) -> Option<&str> {
        self.value(4)
    }

    /// The RabbitMQ routing key.
    pub fn routing_key(&self) -> Option<&str> {
        self.value(5)
    }

    /// The queue (subscription, consumer group).
    pub fn queue(&self) -> Option<&str> {
        self.value(6)
    }

    /// Reads them from a span's attributes in one pass; `None` when the
    /// span has none.
    pub fn from_attributes(attributes: &Attributes) -> Option<Self> {
        Self::from_key_values(attributes.with_prefix("messaging."))
    }

    /// Reads them from a span's key-values, in the order given (those not
    /// about messaging are passed over): the OTLP reader hands over the
    /// ones it read anyway, so that they are not looked for again.
    pub fn from_key_values<'a>(
        key_values: impl IntoIterator<Item = KeyValueRef<'a>>,
    ) -> Option<Self> {
        let key_values: Vec<KeyValueRef<'a>> = key_values.into_iter().collect();
        Self::from_key_value_slice(&key_values)
    }

    /// [`MessagingAttributes::from_key_values`] from a list: the OTLP
    /// reader's, read once for every span that has any.
    pub fn from_key_value_slice(key_values: &[KeyValueRef<'_>]) -> Option<Self> {
        // None given (most spans of most services): nothing to look through.
        if key_values.is_empty() {
            return None;
        }
        // Per field, where in the list the key-value given for each of its
        // keys (by rank) is, the last one given winning: 168 bytes to
        // clear and fill, where the key-values themselves were a kilobyte.
        const NONE: usize = usize::MAX;
        let mut found = [[NONE; 3]; 7];
        let mut any = false;
        for (at, kv) in key_values.iter().enumerate() {
            if let Some((field, rank)) = messaging_key(kv.key_bytes()) {
                found[field][rank] = at;
                any = true;
            }
        }
        if !any {
            return None;
        }
        // The first key, by rank, whose value is text or a number.
        let values: [_; 7] = std::array::from_fn(|field| {
            found[field]
                .iter()
                .filter(|at| **at != NONE)
                .find_map(|at| {
                    let kv = &key_values[*at];
                    match kv.string_bytes() {
                        Some(text) => Some(Cow::Borrowed(text)),
                        None => kv.text().map(|t| Cow::Owned(t.into_bytes())),
                    }
                })
        });
        Self::from_values(values)
    }
}

impl fmt::Debug for MessagingAttributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.fields().fmt(f)
    }
}

impl Serialize for MessagingAttributes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.fields().serialize(serializer)
    }
}

/// A span's messaging attributes from JSON: an object with none set (or
/// `null`) is none.
pub(super) fn messaging_from_json<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<MessagingAttributes>, D::Error> {
    Ok(Option::<OwnedMessagingFields>::deserialize(deserializer)?.and_then(|o| o.attributes()))
}

impl OwnedMessagingFields {
    fn attributes(&self) -> Option<MessagingAttributes> {
        MessagingAttributes::new(MessagingFields {
            system: self.system.as_deref(),
            operation: self.operation.as_deref(),
            destination: self.destination.as_deref(),
            message_id: self.message_id.as_deref(),
            conversation_id: self.conversation_id.as_deref(),
            routing_key: self.routing_key.as_deref(),
            queue: self.queue.as_deref(),
        })
    }
}

impl<'de> Deserialize<'de> for MessagingAttributes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        OwnedMessagingFields::deserialize(deserializer)?
            .attributes()
            .ok_or_else(|| serde::de::Error::custom("no messaging attribute is set"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SpanObservation;
    use serde_json::{Value, json};

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
        assert_eq!(a.destination(), Some("shop.events"));
        assert_eq!(a.routing_key(), Some("order.placed"));
        assert!(
            MessagingAttributes::from_attributes(&attrs(&[("http.route", json!("/"))])).is_none()
        );
    }

    #[test]
    fn a_messaging_value_that_is_not_utf8_is_left_out_and_the_rest_kept() {
        let mut values: [Option<Cow<'_, [u8]>>; 7] = Default::default();
        values[0] = Some(Cow::Borrowed(b"rabbitmq"));
        values[3] = Some(Cow::Borrowed(&[b'm', 0xff]));
        values[5] = Some(Cow::Borrowed("r\u{e9}".as_bytes()));
        let m = MessagingAttributes::from_values(values).unwrap();
        assert_eq!(m.system(), Some("rabbitmq"));
        assert_eq!(m.message_id(), None);
        assert_eq!(m.routing_key(), Some("r\u{e9}"));
    }

    #[test]
    fn every_messaging_key_is_read_into_its_field_newest_convention_first() {
        let names: [&[&str]; 7] = [
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
        for (field, names) in names.iter().enumerate() {
            for (rank, name) in names.iter().enumerate() {
                // Given with every older name of its field, listed first.
                let given: Vec<(&str, Value)> = names[rank..]
                    .iter()
                    .rev()
                    .map(|n| (*n, json!(format!("from {n}"))))
                    .collect();
                let m = MessagingAttributes::from_attributes(&attrs(&given)).unwrap();
                let mut expected = [None; 7];
                let value = format!("from {name}");
                expected[field] = Some(value.as_str());
                assert_eq!(m.fields().to_array(), expected, "{name}");
            }
        }
    }

    #[test]
    fn messaging_attributes_keep_each_value_apart_and_read_as_json_as_before() {
        let fields = MessagingFields {
            system: Some("rabbitmq"),
            message_id: Some("msg-00000000000000ff-0001-3"),
            routing_key: Some(""),
            queue: Some("payment.orders"),
            ..Default::default()
        };
        let m = MessagingAttributes::new(fields).unwrap();
        assert_eq!(m.fields(), fields);
        assert_eq!(m.destination(), None);
        assert_eq!(m.routing_key(), Some(""), "an empty value is still given");
        let json = serde_json::to_value(&m).unwrap();
        assert_eq!(
            json,
            json!({"system": "rabbitmq", "message_id": "msg-00000000000000ff-0001-3",
                   "routing_key": "", "queue": "payment.orders"})
        );
        assert_eq!(
            serde_json::from_value::<MessagingAttributes>(json).unwrap(),
            m
        );
        assert!(MessagingAttributes::new(MessagingFields::default()).is_none());

        // A span written before keeps its messaging attributes; an empty object is none.
        let span: SpanObservation = serde_json::from_value(json!({
            "observed_unix_us": 1, "service": "s", "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331", "name": "n", "kind": "consumer",
            "start_unix_us": 1, "end_unix_us": 2, "status": {"code": "ok"},
            "messaging": {"system": "rabbitmq", "message_id": "m-1"}
        }))
        .unwrap();
        let m = span.messaging.unwrap();
        assert_eq!(
            (m.system(), m.message_id()),
            (Some("rabbitmq"), Some("m-1"))
        );
        let span: SpanObservation = serde_json::from_value(json!({
            "observed_unix_us": 1, "service": "s", "trace_id": "0af7651916cd43dd8448eb211c80319c",
            "span_id": "b7ad6b7169203331", "name": "n", "kind": "consumer",
            "start_unix_us": 1, "end_unix_us": 2, "status": {"code": "ok"}, "messaging": {}
        }))
        .unwrap();
        assert!(span.messaging.is_none());

        // Text past 64 KiB in all is left out, field by field.
        let long = "x".repeat(40_000);
        let m = MessagingAttributes::new(MessagingFields {
            system: Some(&long),
            message_id: Some(&long),
            queue: Some("q"),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(m.system().map(str::len), Some(40_000));
        assert_eq!((m.message_id(), m.queue()), (None, Some("q")));
    }
}
