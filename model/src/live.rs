//! The live view: what the server streams to the UI and answers on `/api`.
//!
//! The stream (`GET /api/stream`, Server-Sent Events) sends one
//! [`StreamMessage`] per event: a `snapshot` on connect (and again whenever
//! the client fell behind), then `update`s holding only what changed,
//! coalesced to at most ten a second.

use serde::{Deserialize, Serialize};

use crate::{Alert, FlowSummary};

/// One queue as the dashboard shows it, merged from every source.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueState {
    pub vhost: String,
    pub name: String,
    /// Ready messages, from the freshest source.
    pub ready: u64,
    /// Where `ready` came from: `management`, `passive_declare` or `firehose`.
    pub ready_source: String,
    pub unacked: u64,
    pub consumers: u64,
    pub publish_rate: f64,
    pub deliver_rate: f64,
    pub ack_rate: f64,
    /// Age of the oldest ready message in seconds, where the broker reports it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_age_secs: Option<f64>,
    /// A dead-letter queue (the target of some queue's dead-letter exchange).
    pub is_dead_letter_queue: bool,
    /// Where this queue's dead letters go.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_queue: Option<String>,
    pub updated_unix_us: i64,
    /// Recent ready counts, one point per second at most: (unix µs, ready).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub history: Vec<(i64, u64)>,
}

/// Counters of the server itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveStats {
    pub num_live_flows: usize,
    pub observations_received: u64,
    pub observations_dropped: u64,
    /// Updates this client missed because it fell behind (it got a fresh snapshot).
    pub stream_lagged: u64,
    /// Whether the demo shop's fault switches can be flipped from the UI.
    pub demo: bool,
}

/// Everything the dashboard needs to start.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveSnapshot {
    /// The most recent flows (newest first, capped).
    pub flows: Vec<FlowSummary>,
    pub queues: Vec<QueueState>,
    pub alerts: Vec<Alert>,
    pub stats: LiveStats,
}

/// What changed since the last message.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LiveUpdate {
    pub flows: Vec<FlowSummary>,
    /// Flows merged into others.
    pub removed_flows: Vec<String>,
    pub queues: Vec<QueueState>,
    pub alerts: Vec<Alert>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stats: Option<LiveStats>,
}

impl LiveUpdate {
    /// Nothing in it.
    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
            && self.removed_flows.is_empty()
            && self.queues.is_empty()
            && self.alerts.is_empty()
            && self.stats.is_none()
    }

    /// Folds a later update in: the latest version of each flow, queue and alert wins.
    pub fn merge(&mut self, later: LiveUpdate) {
        fn upsert<T, K: PartialEq>(list: &mut Vec<T>, items: Vec<T>, key: impl Fn(&T) -> K) {
            for item in items {
                match list.iter().position(|x| key(x) == key(&item)) {
                    Some(i) => list[i] = item,
                    None => list.push(item),
                }
            }
        }
        self.flows.retain(|f| !later.removed_flows.contains(&f.id));
        upsert(&mut self.flows, later.flows, |f| f.id.clone());
        self.removed_flows.extend(later.removed_flows);
        upsert(&mut self.queues, later.queues, |q| {
            (q.vhost.clone(), q.name.clone())
        });
        upsert(&mut self.alerts, later.alerts, |a| a.id.clone());
        if later.stats.is_some() {
            self.stats = later.stats;
        }
    }
}

/// One message of the live stream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data", rename_all = "snake_case")]
pub enum StreamMessage {
    Snapshot(Box<LiveSnapshot>),
    Update(Box<LiveUpdate>),
}
