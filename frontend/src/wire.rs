//! Reading the live stream's messages with less wasm.
//!
//! [`StreamMessage`] is adjacently tagged (`{"type": …, "data": …}`). Its
//! derived `Deserialize` must also accept `data` before `type`, so it holds a
//! second deserializer for the whole snapshot and update (through serde's
//! buffered `Content`): about 20 KB of wasm for a case that never happens,
//! since the server always writes `type` first. [`stream_message`] reads
//! the same JSON in one pass and says so when `data` comes first.

use std::fmt;

use flowscope_model::{LiveSnapshot, LiveUpdate, StreamMessage};
use serde::Deserializer;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};

use crate::json::ObjectsOnly;

/// Parses one message of the live stream (`type` before `data`, as the
/// server writes them; other keys are ignored, as the derived impl does).
pub fn stream_message(text: &str) -> serde_json::Result<StreamMessage> {
    let mut json = serde_json::Deserializer::from_str(text);
    let message = ObjectsOnly(&mut json).deserialize_map(MessageVisitor)?;
    json.end()?;
    Ok(message)
}

/// Which variant the `type` key named.
enum Kind {
    Snapshot,
    Update,
}

struct MessageVisitor;

impl<'de> Visitor<'de> for MessageVisitor {
    type Value = StreamMessage;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a stream message: {\"type\": \"snapshot\" or \"update\", \"data\": {…}}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StreamMessage, A::Error> {
        let mut kind = None;
        let mut message = None;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "type" => {
                    kind = Some(match map.next_value::<String>()?.as_str() {
                        "snapshot" => Kind::Snapshot,
                        "update" => Kind::Update,
                        other => {
                            return Err(de::Error::unknown_variant(other, &["snapshot", "update"]));
                        }
                    });
                }
                "data" => {
                    message = Some(match kind {
                        Some(Kind::Snapshot) => {
                            StreamMessage::Snapshot(map.next_value::<Box<LiveSnapshot>>()?)
                        }
                        Some(Kind::Update) => {
                            StreamMessage::Update(map.next_value::<Box<LiveUpdate>>()?)
                        }
                        None => {
                            return Err(de::Error::custom(
                                "stream message: `type` must come before `data`",
                            ));
                        }
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        match (kind, message) {
            (_, Some(message)) => Ok(message),
            (None, None) => Err(de::Error::missing_field("type")),
            (Some(_), None) => Err(de::Error::missing_field("data")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_model::{FlowStatus, FlowSummary, LiveStats, QueueState};

    fn snapshot() -> StreamMessage {
        StreamMessage::Snapshot(Box::new(LiveSnapshot {
            flows: vec![FlowSummary {
                id: "flow-1".into(),
                status: FlowStatus::Stuck,
                services: vec!["order".into(), "payment".into()],
                ..Default::default()
            }],
            queues: vec![QueueState {
                vhost: "/".into(),
                name: "orders".into(),
                ready: 7,
                history: vec![(1, 2), (3, 4)],
                ..Default::default()
            }],
            alerts: vec![],
            stats: LiveStats {
                observations_received: 42,
                demo: true,
                ..Default::default()
            },
        }))
    }

    fn update() -> StreamMessage {
        StreamMessage::Update(Box::new(LiveUpdate {
            removed_flows: vec!["flow-0".into()],
            stats: Some(LiveStats::default()),
            ..Default::default()
        }))
    }

    #[test]
    fn reads_what_the_server_writes_like_the_derived_impl() {
        for message in [snapshot(), update()] {
            let json = serde_json::to_string(&message).unwrap();
            assert_eq!(stream_message(&json).unwrap(), message);
            assert_eq!(
                serde_json::from_str::<StreamMessage>(&json).unwrap(),
                message
            );
        }
    }

    #[test]
    fn ignores_unknown_keys_and_rejects_what_is_not_a_message() {
        let json = serde_json::to_string(&update()).unwrap();
        let with_extra = json.replacen('{', r#"{"id":3,"#, 1);
        assert_eq!(stream_message(&with_extra).unwrap(), update());

        let data_first = r#"{"data":{},"type":"update"}"#;
        let err = stream_message(data_first).unwrap_err().to_string();
        assert!(err.contains("`type` must come before `data`"), "{err}");
        assert!(stream_message(r#"{"type":"gossip","data":{}}"#).is_err());
        assert!(stream_message(r#"{"type":"update"}"#).is_err());
        assert!(stream_message(r#"{"type":"update","data":{}} trailing"#).is_err());
        assert!(stream_message("[]").is_err());
    }
}
