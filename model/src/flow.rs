//! Flows: what the correlator makes of observations.
//!
//! A **flow** is the connected set of observations that share an identifier
//! (trace id, message id, correlation id, business key). Its **hops** are
//! message legs: producer service → exchange → queue → consumer service, with
//! publish, deliver and processed times. Its **status** says where it is and,
//! when it went wrong, which hop and why.

use std::sync::Arc;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use crate::{BrokerMessage, Death, SpanObservation};

/// Where a flow stands.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum FlowStatus {
    /// Messages still moving, nothing wrong yet.
    #[default]
    InFlight,
    /// A terminal event was seen (or, without configured ones, it went quiet with nothing pending).
    Completed,
    /// A span erred or a message was dead-lettered, and no compensation followed.
    Failed,
    /// A compensating event followed a failure.
    Compensated,
    /// A message waits too long in a queue or a consumer, is unroutable, or
    /// no terminal event came within the flow deadline.
    Stuck,
}

impl FlowStatus {
    /// The status as in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            FlowStatus::InFlight => "in_flight",
            FlowStatus::Completed => "completed",
            FlowStatus::Failed => "failed",
            FlowStatus::Compensated => "compensated",
            FlowStatus::Stuck => "stuck",
        }
    }

    /// Whether nothing more is expected of the flow.
    pub fn is_final(&self) -> bool {
        matches!(self, FlowStatus::Completed | FlowStatus::Compensated)
    }
}

/// Why a flow has its status, in words, and where.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowReason {
    /// The hop (index into the flow's hops) it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hop: Option<usize>,
    /// The queue it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// The service it concerns, if one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A sentence: "dead-lettered at payment.orders after 3 attempts: rejected".
    pub message: String,
}

/// One line of the flow list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowSummary {
    /// Stable id of the flow.
    pub id: String,
    /// The business key (an order id), when a rule found one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub status: FlowStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<FlowReason>,
    pub started_unix_us: i64,
    pub last_seen_unix_us: i64,
    /// When it reached a final status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_unix_us: Option<i64>,
    /// The latest event type seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_step: Option<String>,
    pub services: Vec<String>,
    pub event_types: Vec<String>,
    pub trace_ids: Vec<String>,
    pub num_messages: usize,
    pub num_spans: usize,
    pub num_hops: usize,
}

/// One message leg of a flow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Hop {
    /// The message's id (or its fingerprint when it has none).
    pub message_id: CompactString,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_type: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub producer: Option<CompactString>,
    pub exchange: CompactString,
    pub routing_key: CompactString,
    /// The queue of this leg (a message routed to two queues is two hops).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumer: Option<CompactString>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub published_unix_us: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivered_unix_us: Option<i64>,
    /// When the consumer finished (end of its processing span).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processed_unix_us: Option<i64>,
    /// Delivered minus published.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_wait_us: Option<i64>,
    /// Processed minus delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub processing_us: Option<i64>,
    /// Deliveries beyond the first.
    pub redeliveries: u32,
    /// Set when the message was dead-lettered from this hop's queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_lettered: Option<Death>,
    /// The consumer's processing failed (error span) at least once.
    pub failed: bool,
    /// Published, and the broker could route it nowhere.
    pub unroutable: bool,
}

/// Everything known about one flow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowDetail {
    pub summary: FlowSummary,
    pub hops: Vec<Hop>,
    /// Each message once (its publish as the broker saw it, else a delivery or a dead letter).
    pub messages: Vec<BrokerMessage>,
    /// Shared with the live flow they come from (a flow's detail is taken
    /// for every change, so its spans are not copied).
    pub spans: Vec<Arc<SpanObservation>>,
}

/// The learned process map: which event types follow which.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessMap {
    pub steps: Vec<ProcessStep>,
    pub transitions: Vec<ProcessTransition>,
    pub variants: Vec<ProcessVariant>,
}

/// An event type and how often it was seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessStep {
    pub event_type: String,
    pub count: u64,
}

/// `from` was followed by `to`, this often, this fast.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessTransition {
    pub from: String,
    pub to: String,
    pub count: u64,
    pub p50_us: i64,
    pub p95_us: i64,
    pub p99_us: i64,
}

/// A path through the process (happy path, declined, out of stock…) and its share.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProcessVariant {
    pub steps: Vec<String>,
    pub count: u64,
    /// Of all finished flows, 0.0 to 1.0.
    pub share: f64,
    /// A few flows that took it.
    pub example_flow_ids: Vec<String>,
}
