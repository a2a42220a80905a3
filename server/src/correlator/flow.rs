//! One flow's observations, as the correlator keeps them.

use std::collections::BTreeMap;
use std::sync::Arc;

use flowscope_model::{
    BrokerMessage, FlowDetail, FlowReason, FlowStatus, FlowSummary, Hop, SpanObservation, TraceId,
};
use smallvec::SmallVec;

use super::flow_id::FlowId;
use super::ids::IdentKey;

/// Messages one flow keeps in detail, at most (a correlation id shared by
/// everything would otherwise grow one flow without bound).
pub const MAX_MESSAGES_PER_FLOW: usize = 2_000;
/// Spans one flow keeps, at most.
pub const MAX_SPANS_PER_FLOW: usize = 5_000;

/// Everything the broker said about one message.
#[derive(Debug, Clone, Default)]
pub struct MessageRecord {
    pub publish: Option<BrokerMessage>,
    pub deliveries: Vec<BrokerMessage>,
    pub dead_letters: Vec<BrokerMessage>,
}

impl MessageRecord {
    /// The best copy: the publish, else a delivery, else a dead letter.
    pub fn representative(&self) -> Option<&BrokerMessage> {
        self.publish
            .as_ref()
            .or_else(|| self.deliveries.first())
            .or_else(|| self.dead_letters.first())
    }

    /// When the message was published (or first seen).
    pub fn published_unix_us(&self) -> Option<i64> {
        self.publish
            .as_ref()
            .map(|p| p.observed_unix_us)
            .or_else(|| self.representative().map(|m| m.observed_unix_us))
    }

    /// The event type (AMQP `type`).
    pub fn event_type(&self) -> Option<&str> {
        self.representative()
            .and_then(|m| m.properties.kind.as_deref())
    }
}

/// One flow.
#[derive(Debug, Clone, Default)]
pub struct FlowState {
    pub id: FlowId,
    pub key: Option<String>,
    pub messages: BTreeMap<String, MessageRecord>,
    /// Shared with the observation that brought them (and the store's batch).
    pub spans: Vec<Arc<SpanObservation>>,
    /// The keys of its identifiers in the correlator's index, sorted and unique.
    /// Inline up to 8: an order's trace, key and a message id per step.
    pub keys: SmallVec<[IdentKey; 8]>,
    /// Its traces (those among its identifiers), sorted and unique.
    pub traces: SmallVec<[TraceId; 1]>,
    pub first_unix_us: i64,
    pub last_unix_us: i64,
    pub status: FlowStatus,
    pub reason: Option<FlowReason>,
    pub ended_unix_us: Option<i64>,
    /// Observations beyond the per-flow bounds, counted not kept.
    pub num_dropped: u64,
    /// Waiting in the correlator's changed set for the next judgement.
    pub pending: bool,
    /// Holds observations that may change its hops (messages, spans about
    /// a message) and that they were not built from: the next judgement
    /// rebuilds them (a judgement for time alone, or after spans about no
    /// message, does not).
    pub dirty: bool,
    /// Where it stands in the correlator's eviction order: not finished,
    /// and last seen, as of its last judgement (or creation).
    pub order: (bool, i64),
    /// The hops as of the last judgement (they change only with what the
    /// flow holds, so time-driven re-judging reuses them).
    pub hops: Vec<Hop>,
    /// When time alone may next change its status (a wait crossing a
    /// threshold): the tick re-judges it only then. `None`: never.
    pub next_check_unix_us: Option<i64>,
    /// Judged at least once (its status is one, not the default).
    pub judged: bool,
    /// Events the process map learned from this flow.
    pub learned: usize,
}

impl FlowState {
    /// Notes the time of an observation.
    pub fn touch(&mut self, at: i64) {
        if self.first_unix_us == 0 || at < self.first_unix_us {
            self.first_unix_us = at;
        }
        self.last_unix_us = self.last_unix_us.max(at);
    }

    /// Its status and end as of its last judgement, if it had one.
    pub fn judged(&self) -> Option<(FlowStatus, Option<i64>)> {
        self.judged.then_some((self.status, self.ended_unix_us))
    }

    /// Keeps an identifier's key (once), and its trace when it is one.
    pub fn keep_key(&mut self, key: IdentKey, trace: Option<TraceId>) {
        if let Err(at) = self.keys.binary_search(&key) {
            self.keys.insert(at, key);
            if let Some(trace) = trace
                && let Err(at) = self.traces.binary_search(&trace)
            {
                self.traces.insert(at, trace);
            }
        }
    }

    /// Takes in another flow (they share an identifier).
    pub fn absorb(&mut self, other: FlowState) {
        for (id, record) in other.messages {
            let mine = self.messages.entry(id).or_default();
            if mine.publish.is_none() {
                mine.publish = record.publish;
            }
            mine.deliveries.extend(record.deliveries);
            mine.dead_letters.extend(record.dead_letters);
        }
        self.spans.extend(other.spans);
        self.keys.extend(other.keys);
        self.keys.sort_unstable();
        self.keys.dedup();
        self.traces.extend(other.traces);
        self.traces.sort_unstable();
        self.traces.dedup();
        self.dirty = true;
        if self.key.is_none() {
            self.key = other.key;
        }
        self.touch(other.first_unix_us);
        self.touch(other.last_unix_us);
        self.num_dropped += other.num_dropped;
    }

    /// Messages in publish order.
    pub fn messages_in_order(&self) -> Vec<(&String, &MessageRecord)> {
        let mut list: Vec<_> = self.messages.iter().collect();
        list.sort_by_key(|(_, r)| r.published_unix_us().unwrap_or(i64::MAX));
        list
    }

    /// Event types in the order they were published, each once.
    pub fn event_types(&self) -> Vec<String> {
        let mut seen = Vec::new();
        for (_, record) in self.messages_in_order() {
            if let Some(kind) = record.event_type()
                && !seen.iter().any(|s| s == kind)
            {
                seen.push(kind.to_owned());
            }
        }
        seen
    }

    /// Services seen publishing, consuming or tracing in the flow.
    pub fn services(&self) -> Vec<String> {
        let mut services: Vec<&str> = self
            .messages
            .values()
            .flat_map(|r| r.publish.iter().chain(&r.deliveries))
            .filter_map(|m| m.service.as_deref().or(m.properties.app_id.as_deref()))
            .chain(self.spans.iter().map(|s| &*s.service))
            .collect();
        services.sort_unstable();
        services.dedup();
        services.into_iter().map(str::to_owned).collect()
    }

    /// The list line.
    pub fn summary(&self, hops: &[Hop]) -> FlowSummary {
        // Sorted as bytes, so as their hex.
        let trace_ids: Vec<String> = self.traces.iter().map(TraceId::to_string).collect();
        let event_types = self.event_types();
        FlowSummary {
            id: self.id.to_string(),
            key: self.key.clone(),
            status: self.status,
            reason: self.reason.clone(),
            started_unix_us: self.first_unix_us,
            last_seen_unix_us: self.last_unix_us,
            ended_unix_us: self.ended_unix_us,
            current_step: event_types.last().cloned(),
            services: self.services(),
            event_types,
            trace_ids,
            num_messages: self.messages.len(),
            num_spans: self.spans.len(),
            num_hops: hops.len(),
        }
    }

    /// Everything, for the detail view and the store.
    pub fn detail(&self, hops: Vec<Hop>) -> FlowDetail {
        let summary = self.summary(&hops);
        let mut spans = self.spans.clone();
        spans.sort_by_key(|s| s.start_unix_us);
        FlowDetail {
            summary,
            messages: self
                .messages_in_order()
                .into_iter()
                .filter_map(|(_, r)| r.representative().cloned())
                .collect(),
            hops,
            spans,
        }
    }
}
