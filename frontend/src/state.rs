//! The dashboard's live state: a pure reducer over the stream's messages,
//! and the view models the pages read.
//!
//! No Leptos here, so it is tested natively. [`DashboardState::apply`] takes
//! each [`StreamMessage`]: a snapshot replaces everything, an update merges
//! (flows upserted by id and removed flows dropped, queues by
//! `(vhost, name)`, alerts by id, the latest stats). The state stays bounded:
//! at most [`MAX_FLOWS`] flows (newest first), [`MAX_ALERTS`] alerts and
//! [`MAX_HISTORY_POINTS`] depth points per queue.

use std::collections::{BTreeMap, BTreeSet};

use flowscope_model::{
    Alert, AlertState, FlowStatus, FlowSummary, LiveSnapshot, LiveStats, LiveUpdate, QueueState,
    StreamMessage,
};

use crate::sort::{self, CollectTree};

/// Flows kept at most (newest first): enough for the list and the pipeline's
/// flow order, small enough to filter on every update.
pub const MAX_FLOWS: usize = 1000;
/// Alerts kept at most; resolved ones go first.
pub const MAX_ALERTS: usize = 200;
/// Depth points kept per queue for its sparkline (about two minutes).
pub const MAX_HISTORY_POINTS: usize = 120;
/// A dead-letter queue whose depth went up this recently counts as growing.
pub const DLQ_GROWTH_WINDOW_US: i64 = 120 * 1_000_000;
/// More flows than this in one message are merged by sorting the whole list
/// once; fewer are placed one by one (see `upsert_flows`).
const BULK_UPSERT: usize = 64;

/// Every flow status, in the order the UI lists them.
pub const STATUSES: [FlowStatus; 5] = [
    FlowStatus::InFlight,
    FlowStatus::Completed,
    FlowStatus::Failed,
    FlowStatus::Compensated,
    FlowStatus::Stuck,
];

/// What the dashboard knows, as the stream told it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DashboardState {
    /// Newest first (by start time), at most [`MAX_FLOWS`].
    pub flows: Vec<FlowSummary>,
    /// By `(vhost, name)`.
    pub queues: BTreeMap<(String, String), QueueEntry>,
    /// The latest version of each alert.
    pub alerts: Vec<Alert>,
    /// The server's counters, as last sent.
    pub stats: LiveStats,
    pub num_snapshots: u64,
    pub num_updates: u64,
    /// Flows dropped here because more than [`MAX_FLOWS`] were live.
    pub num_flows_evicted: u64,
}

/// One queue with what the dashboard adds to it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueEntry {
    /// As last sent (its `history` is moved into [`QueueEntry::history`]).
    pub state: QueueState,
    /// Recent ready counts: (unix µs, ready), oldest first.
    pub history: Vec<(i64, u64)>,
    /// When its ready count last went up.
    pub grew_unix_us: Option<i64>,
}

/// How a queue row should look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum QueueHealth {
    /// A dead-letter queue that grew within [`DLQ_GROWTH_WINDOW_US`].
    DlqGrowing,
    /// A dead-letter queue holding messages.
    DlqNotEmpty,
    /// Messages wait and nobody consumes them.
    NoConsumers,
    /// Messages wait.
    Backlog,
    Ok,
}

impl QueueHealth {
    /// The CSS class of a row or node with this health.
    pub fn class(self) -> &'static str {
        match self {
            QueueHealth::DlqGrowing => "health-dlq-growing",
            QueueHealth::DlqNotEmpty => "health-dlq",
            QueueHealth::NoConsumers => "health-no-consumers",
            QueueHealth::Backlog => "health-backlog",
            QueueHealth::Ok => "health-ok",
        }
    }
}

impl QueueEntry {
    /// How the queue is doing at `now_unix_us`.
    pub fn health(&self, now_unix_us: i64) -> QueueHealth {
        let q = &self.state;
        if q.is_dead_letter_queue && q.ready > 0 {
            let growing = self
                .grew_unix_us
                .is_some_and(|t| now_unix_us - t <= DLQ_GROWTH_WINDOW_US);
            return if growing {
                QueueHealth::DlqGrowing
            } else {
                QueueHealth::DlqNotEmpty
            };
        }
        if q.ready > 0 && q.consumers == 0 && !q.is_dead_letter_queue {
            QueueHealth::NoConsumers
        } else if q.ready > 0 {
            QueueHealth::Backlog
        } else {
            QueueHealth::Ok
        }
    }

    fn from_state(mut state: QueueState) -> Self {
        let mut history = std::mem::take(&mut state.history);
        if history
            .last()
            .is_none_or(|(t, _)| *t < state.updated_unix_us)
        {
            history.push((state.updated_unix_us, state.ready));
        }
        let skip = history.len().saturating_sub(MAX_HISTORY_POINTS);
        history.drain(..skip);
        let grew_unix_us = history
            .windows(2)
            .rev()
            .find(|w| w[1].1 > w[0].1)
            .map(|w| w[1].0);
        Self {
            state,
            history,
            grew_unix_us,
        }
    }

    fn merge(&mut self, mut state: QueueState) {
        let history = std::mem::take(&mut state.history);
        for point in history {
            self.push_point(point);
        }
        self.push_point((state.updated_unix_us, state.ready));
        self.state = state;
    }

    fn push_point(&mut self, (at, ready): (i64, u64)) {
        match self.history.last_mut() {
            Some(last) if last.0 > at => return,
            Some(last) if last.0 == at => {
                if ready > last.1 {
                    self.grew_unix_us = Some(at);
                }
                last.1 = ready;
                return;
            }
            Some(last) if ready > last.1 => self.grew_unix_us = Some(at),
            None if ready > self.state.ready => self.grew_unix_us = Some(at),
            _ => {}
        }
        self.history.push((at, ready));
        if self.history.len() > MAX_HISTORY_POINTS {
            self.history.remove(0);
        }
    }
}

/// What the flow list shows: every field optional.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlowFilter {
    pub status: Option<FlowStatus>,
    pub service: Option<String>,
    pub event_type: Option<String>,
    /// A process-map variant: exactly these event types, in this order.
    pub variant: Option<Vec<String>>,
    /// Part of the flow id, order key, trace id, current step or a service (any case).
    pub text: String,
}

impl FlowFilter {
    /// Whether `flow` passes.
    pub fn matches(&self, flow: &FlowSummary) -> bool {
        self.status.is_none_or(|s| flow.status == s)
            && self
                .service
                .as_ref()
                .is_none_or(|s| flow.services.contains(s))
            && self
                .event_type
                .as_ref()
                .is_none_or(|e| flow.event_types.contains(e))
            && self.variant.as_ref().is_none_or(|v| flow.event_types == *v)
            && self.matches_text(flow)
    }

    fn matches_text(&self, flow: &FlowSummary) -> bool {
        let text = crate::text::lowercase(self.text.trim());
        if text.is_empty() {
            return true;
        }
        let has = |s: &str| crate::text::lowercase(s).contains(&text);
        has(&flow.id)
            || flow.key.as_deref().is_some_and(has)
            || flow.current_step.as_deref().is_some_and(has)
            || flow.trace_ids.iter().any(|t| has(t))
            || flow.services.iter().any(|s| has(s))
    }
}

/// Flows per status, in the order of [`STATUSES`] (every status; an array
/// rather than one more map type in the wasm).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StatusCounts(pub [usize; STATUSES.len()]);

impl StatusCounts {
    /// Flows with `status`.
    pub fn of(&self, status: FlowStatus) -> usize {
        status_index(status).map_or(0, |i| self.0[i])
    }
}

/// Where `status` is in [`STATUSES`].
fn status_index(status: FlowStatus) -> Option<usize> {
    STATUSES.iter().position(|s| *s == status)
}

impl DashboardState {
    /// Applies one stream message: a snapshot replaces, an update merges.
    pub fn apply(&mut self, message: StreamMessage) {
        match message {
            StreamMessage::Snapshot(snapshot) => self.replace(*snapshot),
            StreamMessage::Update(update) => self.merge(*update),
        }
    }

    fn replace(&mut self, snapshot: LiveSnapshot) {
        let evicted = self.num_flows_evicted;
        let (snapshots, updates) = (self.num_snapshots, self.num_updates);
        *self = Self {
            queues: snapshot
                .queues
                .into_iter()
                .map(|q| ((q.vhost.clone(), q.name.clone()), QueueEntry::from_state(q)))
                .collect_tree(),
            alerts: snapshot.alerts,
            stats: snapshot.stats,
            num_snapshots: snapshots + 1,
            num_updates: updates,
            num_flows_evicted: evicted,
            flows: Vec::new(),
        };
        self.upsert_flows(snapshot.flows);
        self.bound_alerts();
    }

    fn merge(&mut self, update: LiveUpdate) {
        self.num_updates += 1;
        if !update.removed_flows.is_empty() {
            // `&str` sets, like the rest of the UI's: one set type in the wasm.
            let removed: BTreeSet<&str> = update
                .removed_flows
                .iter()
                .map(String::as_str)
                .collect_tree();
            self.flows.retain(|f| !removed.contains(f.id.as_str()));
        }
        self.upsert_flows(update.flows);
        for queue in update.queues {
            let key = (queue.vhost.clone(), queue.name.clone());
            match self.queues.get_mut(&key) {
                Some(entry) => entry.merge(queue),
                None => {
                    self.queues.insert(key, QueueEntry::from_state(queue));
                }
            }
        }
        for alert in update.alerts {
            match self.alerts.iter_mut().find(|a| a.id == alert.id) {
                Some(existing) => *existing = alert,
                None => self.alerts.push(alert),
            }
        }
        self.bound_alerts();
        if let Some(stats) = update.stats {
            self.stats = stats;
        }
    }

    /// Upserts `flows`, keeping the list newest first. A live update brings
    /// a handful of flows: each is patched in place (its start time, the sort
    /// key, rarely changes) or inserted at its place, so the 1,000 flows are
    /// not re-sorted on every update; only a big batch (a snapshot) sorts.
    fn upsert_flows(&mut self, flows: Vec<FlowSummary>) {
        if flows.is_empty() {
            return;
        }
        if flows.len() > BULK_UPSERT {
            self.upsert_bulk(flows);
        } else {
            for flow in flows {
                self.upsert_one(flow);
            }
        }
        if self.flows.len() > MAX_FLOWS {
            self.num_flows_evicted += (self.flows.len() - MAX_FLOWS) as u64;
            self.flows.truncate(MAX_FLOWS);
        }
    }

    /// Replaces the flows already held and appends the new ones (in the
    /// order they first come; the last copy of a flow wins), then sorts.
    fn upsert_bulk(&mut self, flows: Vec<FlowSummary>) {
        let mut all = std::mem::take(&mut self.flows);
        all.extend(flows);
        // Where each flow goes: the first position of its id. Keyed by `&str`
        // like the layout's maps (one map type fewer in the wasm).
        let mut first: BTreeMap<&str, usize> = BTreeMap::new();
        let target: Vec<usize> = all
            .iter()
            .enumerate()
            .map(|(i, f)| *first.entry(f.id.as_str()).or_insert(i))
            .collect();
        let mut slots: Vec<Option<FlowSummary>> = Vec::new();
        slots.resize_with(all.len(), || None);
        for (flow, at) in all.into_iter().zip(target) {
            slots[at] = Some(flow);
        }
        self.flows = slots.into_iter().flatten().collect();
        sort::sort_by_key(&mut self.flows, |f| std::cmp::Reverse(f.started_unix_us));
    }

    fn upsert_one(&mut self, flow: FlowSummary) {
        match self.flows.iter().position(|f| f.id == flow.id) {
            Some(i) if self.flows[i].started_unix_us == flow.started_unix_us => {
                self.flows[i] = flow;
            }
            Some(i) => {
                self.flows.remove(i);
                self.insert_sorted(flow);
            }
            None => self.insert_sorted(flow),
        }
    }

    /// Inserts after every flow that started at the same time or later (as
    /// a stable sort of the appended flow would place it).
    fn insert_sorted(&mut self, flow: FlowSummary) {
        let at = self
            .flows
            .partition_point(|f| f.started_unix_us >= flow.started_unix_us);
        self.flows.insert(at, flow);
    }

    fn bound_alerts(&mut self) {
        if self.alerts.len() <= MAX_ALERTS {
            return;
        }
        // Keep every open alert and the most recently changed resolved ones.
        sort::sort_by_key(&mut self.alerts, |a| {
            (
                a.state == AlertState::Resolved,
                std::cmp::Reverse(a.updated_unix_us),
            )
        });
        self.alerts.truncate(MAX_ALERTS);
    }

    /// The flow with `id`, if live.
    pub fn flow(&self, id: &str) -> Option<&FlowSummary> {
        self.flows.iter().find(|f| f.id == id)
    }

    /// The queue `name` of `vhost`.
    pub fn queue(&self, vhost: &str, name: &str) -> Option<&QueueEntry> {
        self.queues.get(&(vhost.to_owned(), name.to_owned()))
    }

    /// The first `limit` flows passing `filter` (newest first), and how many pass.
    pub fn filtered_flows(&self, filter: &FlowFilter, limit: usize) -> (Vec<FlowSummary>, usize) {
        filter_flows(&self.flows, filter, limit)
    }

    /// How many flows have each status.
    pub fn status_counts(&self) -> StatusCounts {
        let mut counts = StatusCounts::default();
        for i in self.flows.iter().filter_map(|f| status_index(f.status)) {
            counts.0[i] += 1;
        }
        counts
    }

    /// Every service seen in the flows, sorted.
    pub fn services(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .flows
            .iter()
            .flat_map(|f| &f.services)
            .map(String::as_str)
            .collect_tree();
        set.into_iter().map(str::to_owned).collect()
    }

    /// Every event type seen in the flows, sorted.
    pub fn event_types(&self) -> Vec<String> {
        let set: BTreeSet<&str> = self
            .flows
            .iter()
            .flat_map(|f| &f.event_types)
            .map(String::as_str)
            .collect_tree();
        set.into_iter().map(str::to_owned).collect()
    }

    /// Queues for the queue list: growing dead-letter queues first, then by
    /// vhost and name (so that a DLQ follows its queue).
    pub fn queue_rows(&self, now_unix_us: i64) -> Vec<(QueueHealth, &QueueEntry)> {
        let mut rows: Vec<(QueueHealth, &QueueEntry)> = self
            .queues
            .values()
            .map(|q| (q.health(now_unix_us), q))
            .collect();
        sort::sort_by(&mut rows, |a, b| {
            let first = |h: QueueHealth| h != QueueHealth::DlqGrowing;
            first(a.0).cmp(&first(b.0)).then_with(|| {
                (&a.1.state.vhost, &a.1.state.name).cmp(&(&b.1.state.vhost, &b.1.state.name))
            })
        });
        rows
    }

    /// Alerts not resolved, most severe first, then newest.
    pub fn active_alerts(&self) -> Vec<&Alert> {
        let mut active: Vec<&Alert> = self
            .alerts
            .iter()
            .filter(|a| a.state != AlertState::Resolved)
            .collect();
        sort::sort_by_key(&mut active, |a| {
            (a.severity, std::cmp::Reverse(a.started_unix_us))
        });
        active
    }
}

/// The first `limit` of `flows` passing `filter`, and how many pass.
pub fn filter_flows(
    flows: &[FlowSummary],
    filter: &FlowFilter,
    limit: usize,
) -> (Vec<FlowSummary>, usize) {
    let mut total = 0;
    let mut shown = Vec::new();
    for flow in flows.iter().filter(|f| filter.matches(f)) {
        total += 1;
        if shown.len() < limit {
            shown.push(flow.clone());
        }
    }
    (shown, total)
}

#[cfg(test)]
mod tests;
