//! Alerts: the rules the alert engine evaluates and the alerts it raises.
//!
//! # Rules
//!
//! An [`AlertRule`] is a name, a [`RuleKind`] (flattened into the rule, with
//! the kind's name under `"kind"`), how long the condition must hold before
//! the alert fires, and a [`Severity`]. In TOML:
//!
//! ```toml
//! [[alerts.rules]]
//! name = "orders-backlog"
//! kind = "queue_depth_above"
//! queue = "*.orders"        # exact, or a glob where `*` matches anything
//! threshold = 1000
//! for_secs = 30
//! severity = "critical"
//! ```
//!
//! | `kind` | fields | condition |
//! |---|---|---|
//! | `dlq_depth_above` | `queue` (optional), `threshold` | a dead-letter queue holds more than `threshold` ready messages |
//! | `dlq_growth` | `queue` (optional), `messages`, `window_secs` | a dead-letter queue grew by at least `messages` within `window_secs` |
//! | `queue_depth_above` | `queue`, `threshold` | more than `threshold` ready messages |
//! | `oldest_message_age_above` | `queue`, `seconds` | the message at the head is older than `seconds` |
//! | `no_consumers` | `queue` | the queue has no consumer |
//! | `stuck_above` | `threshold` | more than `threshold` flows are stuck |
//! | `failure_rate_above` | `share`, `window_secs`, `min_flows` | of the flows finished within the window (at least `min_flows`), more than `share` (0.0–1.0) failed |
//!
//! Without `queue`, the dead-letter rules apply to every dead-letter queue
//! (every queue that is the target of some queue's dead-letter exchange).
//!
//! # Alerts
//!
//! An [`Alert`] is one instance of a rule's condition on one subject (a queue,
//! or `"flows"`). It goes `pending` (the condition holds, `for_secs` not yet
//! over) → `firing` → `resolved` (the condition cleared). Its `id` is stable
//! for the rule and subject (`"<rule>:<vhost>:<queue>"`, or `"<rule>:flows"`):
//! a later breach is a new instance under the same id, with a new
//! `started_unix_us`. In JSON:
//!
//! ```json
//! {"id": "dlq-growth:/:payment.orders.dlq", "rule": "dlq-growth",
//!  "severity": "warning", "state": "firing",
//!  "subject": "payment.orders.dlq", "vhost": "/",
//!  "summary": "payment.orders.dlq grew by 5 messages in 60 s",
//!  "evidence": {"queue": "payment.orders.dlq", "value": 5.0, "threshold": 1.0,
//!               "top_reasons": [["rejected", 5]],
//!               "failing_services": [["payment", 5]],
//!               "source_queues": ["payment.orders"]},
//!  "started_unix_us": 1700000000000000, "fired_unix_us": 1700000000000000,
//!  "updated_unix_us": 1700000000000000}
//! ```
//!
//! `top_reasons` and `failing_services` are `[name, count]` pairs, most
//! frequent first; `fired_unix_us` and `resolved_unix_us` are left out until
//! they happen.

use serde::{Deserialize, Serialize};

/// A condition to watch, with how long it must hold and how bad it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    /// Unique among the rules; the Alertmanager `alertname`.
    pub name: String,
    /// What to watch (flattened: its fields sit next to `name`).
    #[serde(flatten)]
    pub kind: RuleKind,
    /// Seconds the condition must hold before the alert fires (0: at once).
    #[serde(default)]
    pub for_secs: u64,
    #[serde(default)]
    pub severity: Severity,
}

/// What a rule watches. Queue names are exact, or globs where `*` matches
/// any run of characters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RuleKind {
    /// A dead-letter queue holds more than `threshold` ready messages.
    DlqDepthAbove {
        /// `None`: every dead-letter queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
        threshold: u64,
    },
    /// A dead-letter queue's depth now exceeds its lowest depth within the
    /// last `window_secs` by at least `messages`.
    DlqGrowth {
        /// `None`: every dead-letter queue.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        queue: Option<String>,
        messages: u64,
        window_secs: u64,
    },
    /// More than `threshold` ready messages.
    QueueDepthAbove { queue: String, threshold: u64 },
    /// The oldest ready message is older than `seconds` (from the head
    /// message's timestamp property, as the management API reports it).
    OldestMessageAgeAbove { queue: String, seconds: u64 },
    /// The queue has no consumer.
    NoConsumers { queue: String },
    /// More than `threshold` flows are stuck.
    StuckAbove { threshold: u64 },
    /// More than `share` (0.0–1.0) of the flows finished within the last
    /// `window_secs` failed, counted once at least `min_flows` finished.
    FailureRateAbove {
        share: f64,
        window_secs: u64,
        min_flows: u64,
    },
}

impl RuleKind {
    /// The kind's name as in JSON (`dlq_growth`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            RuleKind::DlqDepthAbove { .. } => "dlq_depth_above",
            RuleKind::DlqGrowth { .. } => "dlq_growth",
            RuleKind::QueueDepthAbove { .. } => "queue_depth_above",
            RuleKind::OldestMessageAgeAbove { .. } => "oldest_message_age_above",
            RuleKind::NoConsumers { .. } => "no_consumers",
            RuleKind::StuckAbove { .. } => "stuck_above",
            RuleKind::FailureRateAbove { .. } => "failure_rate_above",
        }
    }
}

/// How bad an alert is; the Alertmanager `severity` label.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    /// The default: worth a look, not worth waking someone.
    #[default]
    Warning,
    Info,
}

impl Severity {
    /// The severity as in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Warning => "warning",
            Severity::Info => "info",
        }
    }
}

/// Where an alert stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    /// The condition holds, for less than the rule's `for_secs` so far.
    Pending,
    /// The condition has held for `for_secs`: notifications went out.
    Firing,
    /// The condition cleared.
    Resolved,
}

impl AlertState {
    /// The state as in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One instance of a rule's condition on one subject.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Stable for the rule and subject: `"<rule>:<vhost>:<queue>"` or `"<rule>:flows"`.
    pub id: String,
    /// The rule's name.
    pub rule: String,
    pub severity: Severity,
    pub state: AlertState,
    /// The queue, or `"flows"`.
    pub subject: String,
    /// The queue's vhost; `None` for flow rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<String>,
    /// A sentence: "payment.orders.dlq grew by 5 messages in 60 s".
    pub summary: String,
    pub evidence: AlertEvidence,
    /// When the condition was first seen true.
    pub started_unix_us: i64,
    /// When it went firing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fired_unix_us: Option<i64>,
    /// When the condition cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_unix_us: Option<i64>,
    /// When anything about the alert last changed.
    pub updated_unix_us: i64,
}

/// What the alert is based on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AlertEvidence {
    /// The queue concerned; `None` for flow rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The measured value: messages, seconds, flows, or a share (0.0–1.0).
    pub value: f64,
    /// The rule's threshold, in the same unit.
    pub threshold: f64,
    /// `x-death` reasons of the dead letters seen, most frequent first.
    #[serde(default)]
    pub top_reasons: Vec<(String, u64)>,
    /// Services whose messages were dead-lettered (the consumers of the
    /// source queue, else the producer), most frequent first.
    #[serde(default)]
    pub failing_services: Vec<(String, u64)>,
    /// The queues that dead-letter into the queue concerned.
    #[serde(default)]
    pub source_queues: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rules_are_flat_and_tagged_by_kind() {
        let rule: AlertRule = serde_json::from_value(json!({
            "name": "backlog", "kind": "queue_depth_above",
            "queue": "payment.*", "threshold": 10, "for_secs": 30
        }))
        .unwrap();
        assert_eq!(
            rule.kind,
            RuleKind::QueueDepthAbove {
                queue: "payment.*".into(),
                threshold: 10
            }
        );
        assert_eq!(rule.severity, Severity::Warning);
        let back = serde_json::to_value(&rule).unwrap();
        assert_eq!(back["kind"], "queue_depth_above");
        assert_eq!(back["severity"], "warning");
        assert_eq!(serde_json::from_value::<AlertRule>(back).unwrap(), rule);

        let dlq: AlertRule = serde_json::from_value(json!({
            "name": "dlq", "kind": "dlq_growth", "messages": 1, "window_secs": 60
        }))
        .unwrap();
        assert_eq!(
            dlq.kind,
            RuleKind::DlqGrowth {
                queue: None,
                messages: 1,
                window_secs: 60
            }
        );
        assert_eq!(dlq.kind.as_str(), "dlq_growth");
    }

    #[test]
    fn a_misspelt_rule_field_is_refused_and_named() {
        let err = serde_json::from_value::<AlertRule>(json!({
            "name": "x", "kind": "no_consumers", "queue": "q", "for_sec": 5
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("for_sec"), "{err}");
        let err = serde_json::from_value::<AlertRule>(json!({
            "name": "x", "kind": "no_consumer", "queue": "q"
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("no_consumer"), "{err}");
    }

    #[test]
    fn alerts_round_trip_with_pairs_as_arrays() {
        let alert = Alert {
            id: "dlq-growth:/:payment.orders.dlq".into(),
            rule: "dlq-growth".into(),
            severity: Severity::Warning,
            state: AlertState::Firing,
            subject: "payment.orders.dlq".into(),
            vhost: Some("/".into()),
            summary: "payment.orders.dlq grew by 5 messages in 60 s".into(),
            evidence: AlertEvidence {
                queue: Some("payment.orders.dlq".into()),
                value: 5.0,
                threshold: 1.0,
                top_reasons: vec![("rejected".into(), 5)],
                failing_services: vec![("payment".into(), 5)],
                source_queues: vec!["payment.orders".into()],
            },
            started_unix_us: 1,
            fired_unix_us: Some(1),
            resolved_unix_us: None,
            updated_unix_us: 1,
        };
        let json = serde_json::to_value(&alert).unwrap();
        assert_eq!(json["state"], "firing");
        assert_eq!(json["evidence"]["top_reasons"], json!([["rejected", 5]]));
        assert!(json.get("resolved_unix_us").is_none());
        assert_eq!(serde_json::from_value::<Alert>(json).unwrap(), alert);
    }
}
