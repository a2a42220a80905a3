//! How observations are joined and judged; `[correlation]` in the TOML file.
//!
//! ```toml
//! [correlation]
//! terminal_events = ["OrderCompleted", "OrderCancelled"]
//! failure_events = ["PaymentFailed", "InventoryFailed"]
//! compensating_events = ["PaymentRefunded"]
//! [[correlation.keys]]
//! name = "order_id"
//! from = "json:/order_id"          # or header:<name>, property:<name>, attribute:<span attribute>
//! ```

use serde::{Deserialize, Serialize};

/// A message waiting in a queue longer than this makes its flow stuck.
pub const DEFAULT_QUEUE_WAIT_MS: u64 = 30_000;
/// A delivered message not processed within this makes its flow stuck.
pub const DEFAULT_PROCESSING_MS: u64 = 30_000;
/// A flow with configured terminal events that has none after this is stuck.
pub const DEFAULT_FLOW_DEADLINE_SECS: u64 = 300;
/// Without terminal events, a flow quiet this long with nothing pending is completed.
pub const DEFAULT_QUIESCENCE_SECS: u64 = 10;
/// Flows kept in memory at most; older finished ones are in the store only.
pub const DEFAULT_MAX_LIVE_FLOWS: usize = 20_000;

/// Correlation rules and thresholds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorrelationConfig {
    /// Business keys: where to find them.
    pub keys: Vec<KeyRule>,
    /// Event types (AMQP `type`) that end a flow.
    pub terminal_events: Vec<String>,
    /// Event types that report a business failure.
    pub failure_events: Vec<String>,
    /// Event types that undo earlier work after a failure.
    pub compensating_events: Vec<String>,
    /// Milliseconds a message may wait in a queue before its flow is stuck.
    pub queue_wait_ms: u64,
    /// Milliseconds a delivered message may go unprocessed before its flow is stuck.
    pub processing_ms: u64,
    /// Seconds a flow may go without a terminal event (when some are configured).
    pub flow_deadline_secs: u64,
    /// Seconds of quiet that complete a flow when no terminal events are configured.
    pub quiescence_secs: u64,
    /// Flows kept live in memory.
    pub max_live_flows: usize,
}

impl Default for CorrelationConfig {
    fn default() -> Self {
        Self {
            keys: Vec::new(),
            terminal_events: Vec::new(),
            failure_events: Vec::new(),
            compensating_events: Vec::new(),
            queue_wait_ms: DEFAULT_QUEUE_WAIT_MS,
            processing_ms: DEFAULT_PROCESSING_MS,
            flow_deadline_secs: DEFAULT_FLOW_DEADLINE_SECS,
            quiescence_secs: DEFAULT_QUIESCENCE_SECS,
            max_live_flows: DEFAULT_MAX_LIVE_FLOWS,
        }
    }
}

impl CorrelationConfig {
    /// The demo shop's rules (also in `demo/flowscope.toml`).
    pub fn demo_shop() -> Self {
        let key = |from: &str| KeyRule {
            name: "order_id".into(),
            from: from.into(),
        };
        Self {
            keys: vec![
                key("json:/order_id"),
                key("attribute:shop.order_id"),
                key("property:correlation_id"),
            ],
            terminal_events: vec!["OrderCompleted".into(), "OrderCancelled".into()],
            failure_events: vec!["PaymentFailed".into(), "InventoryFailed".into()],
            compensating_events: vec!["PaymentRefunded".into()],
            ..Self::default()
        }
    }

    /// Checks every key rule parses.
    pub fn validate(&self) -> Result<(), String> {
        for rule in &self.keys {
            rule.source()?;
        }
        Ok(())
    }
}

/// A business key and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyRule {
    /// The key's name, e.g. `order_id`.
    pub name: String,
    /// `header:<name>`, `property:<message_id|correlation_id|type|app_id>`,
    /// `json:<JSON pointer into the body>`, or `attribute:<span attribute>`.
    pub from: String,
}

/// A parsed [`KeyRule::from`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Header(String),
    Property(String),
    JsonPointer(String),
    Attribute(String),
}

impl KeyRule {
    /// Parses `from`, with an error that shows the accepted forms.
    pub fn source(&self) -> Result<KeySource, String> {
        let bad = || {
            format!(
                "correlation.keys {:?}: from = {:?} is not one of header:<name>, property:<name>, json:/<pointer>, attribute:<name>",
                self.name, self.from
            )
        };
        let (kind, arg) = self.from.split_once(':').ok_or_else(bad)?;
        if arg.is_empty() {
            return Err(bad());
        }
        Ok(match kind {
            "header" => KeySource::Header(arg.into()),
            "property"
                if ["message_id", "correlation_id", "type", "app_id", "user_id"].contains(&arg) =>
            {
                KeySource::Property(arg.into())
            }
            "json" if arg.starts_with('/') => KeySource::JsonPointer(arg.into()),
            "attribute" => KeySource::Attribute(arg.into()),
            _ => return Err(bad()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_rules_parse_or_explain() {
        let rule = |from: &str| KeyRule {
            name: "k".into(),
            from: from.into(),
        };
        assert_eq!(
            rule("json:/order_id").source(),
            Ok(KeySource::JsonPointer("/order_id".into()))
        );
        assert_eq!(
            rule("header:x-order").source(),
            Ok(KeySource::Header("x-order".into()))
        );
        assert!(
            rule("json:order_id")
                .source()
                .unwrap_err()
                .contains("json:/<pointer>")
        );
        assert!(rule("property:nope").source().is_err());
        assert!(CorrelationConfig::demo_shop().validate().is_ok());
    }
}
