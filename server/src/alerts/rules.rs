//! The alert configuration, the rules applied by default, and what each
//! rule finds in the [`Facts`] — pure functions of the facts and the time.
//!
//! ```toml
//! [alerts]
//! default_dlq_growth = true        # the `dlq-growth` rule on every dead-letter queue
//! default_growth_messages = 1
//! default_growth_window_secs = 60
//! webhooks = ["http://127.0.0.1:9000/hook"]
//! alertmanager_url = "http://127.0.0.1:9093"
//!
//! [[alerts.rules]]
//! name = "payments-backlog"
//! kind = "queue_depth_above"
//! queue = "payment.*"
//! threshold = 100
//! for_secs = 30
//! severity = "critical"
//! ```

use std::collections::{BTreeMap, BTreeSet, HashSet};

use flowscope_model::{AlertEvidence, AlertRule, RuleKind, Severity};
use serde::{Deserialize, Serialize};

use super::facts::{Facts, QueueFacts};

/// The name of the rule applied by default to every dead-letter queue.
pub const DEFAULT_GROWTH_RULE: &str = "dlq-growth";
/// One dead letter is worth a look: each is an order that did not go through.
pub const DEFAULT_GROWTH_MESSAGES: u64 = 1;
/// A minute: long enough to see growth between samples, short enough that
/// an alert resolves soon after the dead-lettering stops.
pub const DEFAULT_GROWTH_WINDOW_SECS: u64 = 60;
/// Twice a second: an alert fires well within 2 s of its condition.
pub const DEFAULT_EVAL_INTERVAL_MS: u64 = 500;
/// The dashboard's default address, for links in notifications.
pub const DEFAULT_UI_URL: &str = "http://127.0.0.1:8080";
/// Reasons and services listed in evidence, at most.
const TOP_N: usize = 5;

/// Alert rules and where notifications go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertConfig {
    /// Rules in addition to the default one.
    pub rules: Vec<AlertRule>,
    /// Apply the `dlq-growth` rule to every dead-letter queue (a configured
    /// rule of the same name replaces it).
    pub default_dlq_growth: bool,
    /// Messages a dead-letter queue must grow by for the default rule to fire.
    pub default_growth_messages: u64,
    /// Seconds over which the default rule measures growth.
    pub default_growth_window_secs: u64,
    /// URLs that get each firing and resolved alert as JSON (`POST`).
    pub webhooks: Vec<String>,
    /// An Alertmanager's base URL; alerts go to `<url>/api/v2/alerts`.
    /// Written `""` when unset, so that `FLOWSCOPE_ALERTS_ALERTMANAGER_URL`
    /// finds the key to override.
    #[serde(with = "empty_is_none")]
    pub alertmanager_url: Option<String>,
    /// Milliseconds between rule evaluations.
    pub eval_interval_ms: u64,
    /// The dashboard's address as users reach it, for links in notifications.
    pub ui_url: String,
}

impl Default for AlertConfig {
    fn default() -> Self {
        Self {
            rules: Vec::new(),
            default_dlq_growth: true,
            default_growth_messages: DEFAULT_GROWTH_MESSAGES,
            default_growth_window_secs: DEFAULT_GROWTH_WINDOW_SECS,
            webhooks: Vec::new(),
            alertmanager_url: None,
            eval_interval_ms: DEFAULT_EVAL_INTERVAL_MS,
            ui_url: DEFAULT_UI_URL.to_owned(),
        }
    }
}

impl AlertConfig {
    /// The rules applied: the configured ones, then the default one unless
    /// turned off or replaced by a configured rule of its name.
    pub fn effective_rules(&self) -> Vec<AlertRule> {
        let mut rules = self.rules.clone();
        if self.default_dlq_growth && !rules.iter().any(|r| r.name == DEFAULT_GROWTH_RULE) {
            rules.push(AlertRule {
                name: DEFAULT_GROWTH_RULE.to_owned(),
                kind: RuleKind::DlqGrowth {
                    queue: None,
                    messages: self.default_growth_messages,
                    window_secs: self.default_growth_window_secs,
                },
                for_secs: 0,
                severity: Severity::Warning,
            });
        }
        rules
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = HashSet::new();
        for rule in self.effective_rules() {
            let name = &rule.name;
            if name.is_empty() || name.contains(':') {
                return Err(format!(
                    "alerts.rules: rule name {name:?} must be non-empty and without ':' (it is part of alert ids)"
                ));
            }
            if !names.insert(name.clone()) {
                return Err(format!(
                    "alerts.rules: two rules are named {name:?}; names must be unique"
                ));
            }
            validate_kind(&rule.kind).map_err(|e| format!("alerts.rules {name:?}: {e}"))?;
        }
        if self.eval_interval_ms == 0 {
            return Err("alerts.eval_interval_ms must be at least 1".into());
        }
        for url in self
            .webhooks
            .iter()
            .chain(&self.alertmanager_url)
            .chain([&self.ui_url])
        {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => return Err(format!("alerts: {url:?} is not an http(s) URL")),
            }
        }
        Ok(())
    }
}

fn validate_kind(kind: &RuleKind) -> Result<(), String> {
    match kind {
        RuleKind::DlqGrowth { messages: 0, .. } => Err("messages must be at least 1".into()),
        RuleKind::DlqGrowth { window_secs: 0, .. }
        | RuleKind::FailureRateAbove { window_secs: 0, .. } => {
            Err("window_secs must be at least 1".into())
        }
        RuleKind::FailureRateAbove { share, .. } if !(0.0..1.0).contains(share) => Err(format!(
            "share {share} must be from 0.0 up to (not including) 1.0"
        )),
        RuleKind::QueueDepthAbove { queue, .. }
        | RuleKind::OldestMessageAgeAbove { queue, .. }
        | RuleKind::NoConsumers { queue }
            if queue.is_empty() =>
        {
            Err("queue must name a queue or a glob such as \"*\"".into())
        }
        _ => Ok(()),
    }
}

/// `None` as `""`: TOML has no null, and a key must exist to be overridden.
mod empty_is_none {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<String>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(value.as_deref().unwrap_or_default())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
        let value = Option::<String>::deserialize(d)?;
        Ok(value.filter(|s| !s.trim().is_empty()))
    }
}

/// A rule's condition holding on one subject.
#[derive(Debug, Clone, PartialEq)]
pub struct Breach {
    /// The queue's vhost; `None` for flow rules.
    pub vhost: Option<String>,
    /// The queue, or `"flows"`.
    pub subject: String,
    pub summary: String,
    pub evidence: AlertEvidence,
    /// A dead-letter rule that has not yet seen the dead letters behind it:
    /// firing waits a moment for them, so notifications carry the reasons.
    pub awaiting_evidence: bool,
}

/// Where `rule`'s condition holds now.
pub fn evaluate(rule: &RuleKind, facts: &Facts, now_us: i64) -> Vec<Breach> {
    match rule {
        RuleKind::DlqDepthAbove { queue, threshold } => dlq_targets(facts, queue.as_deref())
            .filter_map(|((vhost, name), q)| {
                let ready = q.ready?;
                (ready > *threshold).then(|| {
                    let summary = format!(
                        "{name} holds {ready} dead {} (threshold {threshold})",
                        plural(ready, "letter", "letters")
                    );
                    dlq_breach(facts, vhost, name, summary, ready, *threshold, None)
                })
            })
            .collect(),
        RuleKind::DlqGrowth {
            queue,
            messages,
            window_secs,
        } => {
            let window_us = *window_secs as i64 * 1_000_000;
            dlq_targets(facts, queue.as_deref())
                .filter_map(|((vhost, name), q)| {
                    let grown = q.growth(now_us, window_us);
                    (grown >= *messages).then(|| {
                        let summary = format!(
                            "{name} grew by {grown} {} in {window_secs} s",
                            plural(grown, "message", "messages")
                        );
                        let since = Some(now_us - window_us);
                        dlq_breach(facts, vhost, name, summary, grown, *messages, since)
                    })
                })
                .collect()
        }
        RuleKind::QueueDepthAbove { queue, threshold } => queue_targets(facts, queue)
            .filter_map(|((vhost, name), q)| {
                let ready = q.ready.filter(|r| r > threshold)?;
                let summary = format!("{name} has {ready} ready messages (threshold {threshold})");
                Some(queue_breach(
                    vhost,
                    name,
                    summary,
                    ready as f64,
                    *threshold as f64,
                ))
            })
            .collect(),
        RuleKind::OldestMessageAgeAbove { queue, seconds } => queue_targets(facts, queue)
            .filter_map(|((vhost, name), q)| {
                let age = q.oldest_age_secs(now_us).filter(|a| *a > *seconds as f64)?;
                let summary = format!(
                    "the oldest message in {name} is {age:.0} s old (threshold {seconds} s)"
                );
                Some(queue_breach(vhost, name, summary, age, *seconds as f64))
            })
            .collect(),
        RuleKind::NoConsumers { queue } => queue_targets(facts, queue)
            // A glob leaves dead-letter queues out: they normally have no consumer.
            .filter(|((vhost, name), _)| !queue.contains('*') || !facts.is_dlq(vhost, name))
            .filter(|(_, q)| q.consumers == Some(0))
            .map(|((vhost, name), _)| {
                queue_breach(vhost, name, format!("{name} has no consumers"), 0.0, 0.0)
            })
            .collect(),
        RuleKind::StuckAbove { threshold } => {
            let stuck = facts.stuck;
            (stuck > *threshold)
                .then(|| {
                    let summary = format!(
                        "{stuck} {} stuck (threshold {threshold})",
                        plural(stuck, "flow is", "flows are")
                    );
                    flows_breach(summary, stuck as f64, *threshold as f64)
                })
                .into_iter()
                .collect()
        }
        RuleKind::FailureRateAbove {
            share,
            window_secs,
            min_flows,
        } => {
            let (finished, failed) = (facts.finished, facts.failed);
            let rate = failed as f64 / finished.max(1) as f64;
            (finished > 0 && finished >= *min_flows && rate > *share)
                .then(|| {
                    let summary = format!(
                        "{:.0}% of the flows finished in the last {window_secs} s failed ({failed} of {finished}; threshold {:.0}%)",
                        rate * 100.0,
                        share * 100.0
                    );
                    flows_breach(summary, rate, *share)
                })
                .into_iter()
                .collect()
        }
    }
}

/// Whether `name` matches `pattern`: exact, or a glob where `*` matches any
/// run of characters (dots included).
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

type Target<'a> = (&'a (String, String), &'a QueueFacts);

fn dlq_targets<'a>(facts: &'a Facts, queue: Option<&'a str>) -> impl Iterator<Item = Target<'a>> {
    facts
        .queues()
        .filter(move |((vhost, name), _)| match queue {
            None => facts.is_dlq(vhost, name),
            Some(pattern) => glob_match(pattern, name),
        })
}

fn queue_targets<'a>(facts: &'a Facts, pattern: &'a str) -> impl Iterator<Item = Target<'a>> {
    facts
        .queues()
        .filter(move |((_, name), _)| glob_match(pattern, name))
}

/// A dead-letter queue's breach, with the reasons, services and sources of
/// its dead letters (those seen since `since`, when there are any).
fn dlq_breach(
    facts: &Facts,
    vhost: &str,
    dlq: &str,
    summary: String,
    value: u64,
    threshold: u64,
    since: Option<i64>,
) -> Breach {
    let all: Vec<_> = facts.dead_letters(vhost, dlq).collect();
    let recent: Vec<_> = all
        .iter()
        .copied()
        .filter(|d| since.is_none_or(|t| d.observed_unix_us >= t))
        .collect();
    let records = if recent.is_empty() { &all } else { &recent };
    let mut sources: BTreeSet<String> = facts.dlq_sources(vhost, dlq).cloned().collect();
    sources.extend(records.iter().filter_map(|d| d.source_queue.clone()));
    let services = records.iter().filter_map(|d| {
        d.service.clone().or_else(|| {
            let source = d.source_queue.as_deref()?;
            facts.consumer_service(vhost, source)
        })
    });
    Breach {
        vhost: Some(vhost.to_owned()),
        subject: dlq.to_owned(),
        summary,
        evidence: AlertEvidence {
            queue: Some(dlq.to_owned()),
            value: value as f64,
            threshold: threshold as f64,
            top_reasons: top(records.iter().map(|d| d.reason.clone())),
            failing_services: top(services),
            source_queues: sources.into_iter().collect(),
        },
        awaiting_evidence: recent.is_empty(),
    }
}

fn queue_breach(vhost: &str, queue: &str, summary: String, value: f64, threshold: f64) -> Breach {
    Breach {
        vhost: Some(vhost.to_owned()),
        subject: queue.to_owned(),
        summary,
        evidence: AlertEvidence {
            queue: Some(queue.to_owned()),
            value,
            threshold,
            ..Default::default()
        },
        awaiting_evidence: false,
    }
}

fn flows_breach(summary: String, value: f64, threshold: f64) -> Breach {
    Breach {
        vhost: None,
        subject: "flows".to_owned(),
        summary,
        evidence: AlertEvidence {
            value,
            threshold,
            ..Default::default()
        },
        awaiting_evidence: false,
    }
}

/// The most frequent names with their counts, most frequent first.
fn top(names: impl Iterator<Item = String>) -> Vec<(String, u64)> {
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    for name in names {
        *counts.entry(name).or_default() += 1;
    }
    let mut counts: Vec<_> = counts.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts.truncate(TOP_N);
    counts
}

fn plural(n: u64, one: &'static str, many: &'static str) -> &'static str {
    if n == 1 { one } else { many }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob_match("payment.orders", "payment.orders"));
        assert!(!glob_match("payment.orders", "payment.orders.dlq"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("payment.*", "payment.orders.dlq"));
        assert!(glob_match("*.dlq", "payment.orders.dlq"));
        assert!(glob_match("p*o*s.dlq", "payment.orders.dlq"));
        assert!(!glob_match("*.dlq", "payment.orders"));
        assert!(!glob_match("a*a", "a"));
    }

    #[test]
    fn the_default_rule_is_applied_unless_replaced_or_off() {
        let mut config = AlertConfig::default();
        let rules = config.effective_rules();
        assert_eq!(rules.len(), 1);
        assert_eq!(rules[0].name, DEFAULT_GROWTH_RULE);
        config.rules.push(AlertRule {
            name: DEFAULT_GROWTH_RULE.into(),
            kind: RuleKind::DlqGrowth {
                queue: None,
                messages: 3,
                window_secs: 10,
            },
            for_secs: 0,
            severity: Severity::Critical,
        });
        assert_eq!(config.effective_rules(), config.rules);
        config.rules.clear();
        config.default_dlq_growth = false;
        assert!(config.effective_rules().is_empty());
    }

    #[test]
    fn toml_rules_read_flat_and_typos_are_named() {
        let config: AlertConfig = toml::from_str(
            r#"
            webhooks = ["http://127.0.0.1:9/hook"]
            [[rules]]
            name = "backlog"
            kind = "queue_depth_above"
            queue = "payment.*"
            threshold = 100
            for_secs = 30
            severity = "critical"
            [[rules]]
            name = "failures"
            kind = "failure_rate_above"
            share = 0.2
            window_secs = 300
            min_flows = 10
            "#,
        )
        .unwrap();
        assert_eq!(config.rules.len(), 2);
        assert_eq!(config.rules[0].for_secs, 30);
        assert_eq!(config.rules[0].severity, Severity::Critical);
        config.validate().unwrap();
        // As the configuration loader reads it: through a `toml::Value`.
        let value = toml::Value::try_from(&config).unwrap();
        assert_eq!(AlertConfig::deserialize(value).unwrap(), config);
        let err = toml::from_str::<AlertConfig>(
            "[[rules]]\nname = \"x\"\nkind = \"no_consumers\"\nqueue = \"q\"\nthreshhold = 1\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("threshhold"), "{err}");
        let err = toml::from_str::<AlertConfig>("webhook = []\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("webhook"), "{err}");
    }

    #[test]
    fn an_unset_alertmanager_url_is_a_key_that_can_be_overridden() {
        let value = toml::Value::try_from(AlertConfig::default()).unwrap();
        assert_eq!(value["alertmanager_url"].as_str(), Some(""));
        let back: AlertConfig = value.try_into().unwrap();
        assert_eq!(back, AlertConfig::default());
        let set: AlertConfig = toml::from_str("alertmanager_url = \"http://am:9093\"").unwrap();
        assert_eq!(set.alertmanager_url.as_deref(), Some("http://am:9093"));
    }

    #[test]
    fn validation_names_what_cannot_work() {
        let mut config = AlertConfig::default();
        config.rules.push(AlertRule {
            name: "rate".into(),
            kind: RuleKind::FailureRateAbove {
                share: 1.5,
                window_secs: 60,
                min_flows: 1,
            },
            for_secs: 0,
            severity: Severity::Info,
        });
        let err = config.validate().unwrap_err();
        assert!(err.contains("rate") && err.contains("share"), "{err}");
        config.rules[0].kind = RuleKind::StuckAbove { threshold: 0 };
        config.validate().unwrap();
        config.webhooks.push("ftp://x".into());
        assert!(config.validate().unwrap_err().contains("ftp://x"));
    }
}
