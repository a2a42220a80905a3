//! The alert state machine: observations in, alerts that changed state out.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use flowscope_model::{
    Alert, AlertRule, AlertState, BrokerMessage, QueueSample, RuleKind, TopologySnapshot,
};

use super::facts::Facts;
use super::rules::{self, AlertConfig, Breach};

/// How long a dead-letter alert waits, at most, for the dead letters behind
/// it (inspected right after the depth that shows them) before it fires
/// without their reasons (µs). Within the 2 s an alert has to fire.
pub const EVIDENCE_GRACE_US: i64 = 1_000_000;
/// Resolved alerts kept for [`AlertEngine::recent`], at most.
pub const MAX_RESOLVED: usize = 1_000;
/// The failure-rate window when no rule names one (seconds).
pub const DEFAULT_FAILURE_WINDOW_SECS: u64 = 300;

/// Evaluates the alert rules against what the collectors and the correlator
/// report. Pure: every input carries its time, nothing here does I/O.
#[derive(Debug)]
pub struct AlertEngine {
    config: AlertConfig,
    rules: Vec<AlertRule>,
    facts: Facts,
    /// The latest instance of each alert id, resolved ones included.
    alerts: HashMap<String, Alert>,
}

impl AlertEngine {
    /// An engine applying the configured rules and the default ones.
    pub fn new(config: AlertConfig) -> Self {
        let rules = config.effective_rules();
        let history_us = rules
            .iter()
            .filter_map(|r| match r.kind {
                RuleKind::DlqGrowth { window_secs, .. } => Some(window_secs as i64 * 1_000_000),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        Self {
            config,
            rules,
            facts: Facts::new(history_us),
            alerts: HashMap::new(),
        }
    }

    /// The rules applied: the configured ones and the default ones.
    pub fn rules(&self) -> Vec<AlertRule> {
        self.rules.clone()
    }

    /// The configuration the engine was built from.
    pub fn config(&self) -> &AlertConfig {
        &self.config
    }

    /// How often [`evaluate`](Self::evaluate) is meant to be called.
    pub fn eval_interval(&self) -> Duration {
        Duration::from_millis(self.config.eval_interval_ms)
    }

    /// The window the finished/failed counts given to
    /// [`set_flow_stats`](Self::set_flow_stats) should cover: the longest
    /// failure-rate rule's.
    pub fn failure_window_secs(&self) -> u64 {
        self.rules
            .iter()
            .filter_map(|r| match r.kind {
                RuleKind::FailureRateAbove { window_secs, .. } => Some(window_secs),
                _ => None,
            })
            .max()
            .unwrap_or(DEFAULT_FAILURE_WINDOW_SECS)
    }

    /// A queue's depth, consumers and head age. Ready counts and consumers
    /// come from the freshest source (passive declare, firehose); the
    /// management API's fill in what those cannot know.
    pub fn observe_sample(&mut self, sample: &QueueSample) {
        self.facts.observe_sample(sample);
    }

    /// Which queues are dead-letter queues, what feeds them, who consumes what.
    pub fn observe_topology(&mut self, topology: &TopologySnapshot) {
        self.facts.observe_topology(topology);
    }

    /// A dead letter found in a dead-letter queue: its reason, source queue
    /// and failing service become evidence.
    pub fn observe_dead_letter(&mut self, msg: &BrokerMessage) {
        self.facts.observe_dead_letter(msg);
    }

    /// Flows stuck now, and flows finished (and of those, failed) within
    /// [`failure_window_secs`](Self::failure_window_secs).
    pub fn set_flow_stats(&mut self, stuck: u64, finished_in_window: u64, failed_in_window: u64) {
        self.facts.stuck = stuck;
        self.facts.finished = finished_in_window;
        self.facts.failed = failed_in_window;
    }

    /// Evaluates every rule at `now_us`; returns the alerts whose state
    /// changed (new pending, pending → firing, → resolved). Evidence of
    /// alerts still active is refreshed in place.
    pub fn evaluate(&mut self, now_us: i64) -> Vec<Alert> {
        let mut changed = Vec::new();
        let mut holding = HashSet::new();
        for rule in &self.rules {
            for breach in rules::evaluate(&rule.kind, &self.facts, now_us) {
                let id = alert_id(&rule.name, &breach);
                let alert = match self.alerts.get_mut(&id) {
                    Some(alert) if alert.state != AlertState::Resolved => {
                        refresh(alert, &breach);
                        alert
                    }
                    _ => {
                        let alert = start(rule, id.clone(), &breach, now_us);
                        self.alerts.insert(id.clone(), alert);
                        let alert = self.alerts.get_mut(&id).expect("just inserted");
                        changed.push(alert.clone());
                        alert
                    }
                };
                if alert.state == AlertState::Pending && due(rule, alert, &breach, now_us) {
                    alert.state = AlertState::Firing;
                    alert.fired_unix_us = Some(now_us);
                    alert.updated_unix_us = now_us;
                    match changed.last_mut() {
                        Some(last) if last.id == id => *last = alert.clone(),
                        _ => changed.push(alert.clone()),
                    }
                }
                holding.insert(id);
            }
        }
        for alert in self.alerts.values_mut() {
            if alert.state != AlertState::Resolved && !holding.contains(&alert.id) {
                alert.state = AlertState::Resolved;
                alert.resolved_unix_us = Some(now_us);
                alert.updated_unix_us = now_us;
                changed.push(alert.clone());
            }
        }
        self.forget_old_resolved();
        changed
    }

    /// Alerts pending or firing: firing first, newest first.
    pub fn active(&self) -> Vec<Alert> {
        let mut active: Vec<Alert> = self
            .alerts
            .values()
            .filter(|a| a.state != AlertState::Resolved)
            .cloned()
            .collect();
        active.sort_by_key(|a| {
            (
                a.state != AlertState::Firing,
                std::cmp::Reverse(a.started_unix_us),
                a.id.clone(),
            )
        });
        active
    }

    /// The `n` most recently updated alerts, resolved ones included, newest first.
    pub fn recent(&self, n: usize) -> Vec<Alert> {
        let mut recent: Vec<Alert> = self.alerts.values().cloned().collect();
        recent.sort_by_key(|a| (std::cmp::Reverse(a.updated_unix_us), a.id.clone()));
        recent.truncate(n);
        recent
    }

    fn forget_old_resolved(&mut self) {
        let resolved = self
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Resolved)
            .count();
        if resolved <= MAX_RESOLVED {
            return;
        }
        let mut old: Vec<(i64, String)> = self
            .alerts
            .values()
            .filter(|a| a.state == AlertState::Resolved)
            .map(|a| (a.updated_unix_us, a.id.clone()))
            .collect();
        old.sort();
        for (_, id) in old.into_iter().take(resolved - MAX_RESOLVED) {
            self.alerts.remove(&id);
        }
    }
}

/// `"<rule>:<vhost>:<queue>"`, or `"<rule>:flows"`.
fn alert_id(rule: &str, breach: &Breach) -> String {
    match &breach.vhost {
        Some(vhost) => format!("{rule}:{vhost}:{}", breach.subject),
        None => format!("{rule}:{}", breach.subject),
    }
}

fn start(rule: &AlertRule, id: String, breach: &Breach, now_us: i64) -> Alert {
    Alert {
        id,
        rule: rule.name.clone(),
        severity: rule.severity,
        state: AlertState::Pending,
        subject: breach.subject.clone(),
        vhost: breach.vhost.clone(),
        summary: breach.summary.clone(),
        evidence: breach.evidence.clone(),
        started_unix_us: now_us,
        fired_unix_us: None,
        resolved_unix_us: None,
        updated_unix_us: now_us,
    }
}

fn refresh(alert: &mut Alert, breach: &Breach) {
    alert.summary.clone_from(&breach.summary);
    alert.evidence.clone_from(&breach.evidence);
}

/// Whether a pending alert fires: its condition held `for_secs`, and a
/// dead-letter alert has its dead letters (or waited long enough for them).
fn due(rule: &AlertRule, alert: &Alert, breach: &Breach, now_us: i64) -> bool {
    let held = now_us - alert.started_unix_us;
    held >= rule.for_secs as i64 * 1_000_000
        && (!breach.awaiting_evidence || held >= EVIDENCE_GRACE_US)
}

#[cfg(test)]
#[path = "engine_tests.rs"]
mod tests;
