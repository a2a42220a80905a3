//! The correlator: observations in, flows out.
//!
//! Every observation carries identifiers ([`ids`]): a trace id (from the
//! AMQP `traceparent` or the span, span links included), a message id, a
//! correlation id, a business key found by the configured rules. A flow is
//! the connected set of observations sharing any of them: an observation
//! that touches two flows merges them. Each flow's hops ([`hops`]) and status
//! ([`status`]) are derived from what it holds; finished flows teach the
//! process map ([`process_map`]).
//!
//! The correlator is plain data with no I/O: the server feeds it, ticks it
//! every second (time alone makes flows stuck or quiet), and takes the
//! changed flows to store and stream.

pub mod config;
pub mod flow;
pub mod flow_id;
pub mod hops;
pub mod ids;
mod live_set;
pub mod process_map;
pub mod propagation;
mod queue;
pub mod slab;
pub mod stats;
pub mod status;

use std::borrow::Cow;
use std::sync::Arc;

use smallvec::SmallVec;

use flowscope_model::{FlowDetail, FlowStatus, FlowSummary, Hop, Observation, ProcessMap, TraceId};

use self::config::{CorrelationConfig, KeyRule, KeySource};
use self::flow::{FlowState, MAX_MESSAGES_PER_FLOW, MAX_SPANS_PER_FLOW};
use self::flow_id::FlowId;
use self::ids::{IdentKey, IdentKeys, IdentRef};
use self::process_map::ProcessMapLearner;
use self::queue::Queue;
use self::slab::{Flows, Index, Slot};
pub use self::stats::FlowStats;
use self::stats::Tally;

/// Spans room is made for in a flow at its first span.
const SPANS_FIRST_RESERVED: usize = 8;

/// What changed since the last [`Correlator::take_changes`].
#[derive(Debug, Default)]
pub struct Changes {
    /// Flows that are new or changed, in full.
    pub updated: Vec<FlowDetail>,
    /// Flows merged into others (their ids are gone).
    pub removed: Vec<String>,
}

/// What changed since the last take, as summaries only
/// ([`Correlator::take_summaries`]): what the live stream needs when nothing
/// is stored, without copying every changed flow's messages and spans.
#[derive(Debug, Default)]
pub struct SummaryChanges {
    /// Flows that are new or changed, their list lines.
    pub updated: Vec<FlowSummary>,
    /// Flows merged into others (their ids are gone).
    pub removed: Vec<String>,
}

/// Joins observations into flows.
#[derive(Debug)]
pub struct Correlator {
    config: CorrelationConfig,
    /// Shared so that an observation's identifiers can borrow rule names
    /// while the flows change.
    rules: Arc<[(KeyRule, KeySource)]>,
    /// The live flows, each in a slot ([`slab`]): what follows refers to
    /// them by slot.
    flows: Flows,
    /// Which flow each identifier belongs to, by its key.
    index: Index,
    keys: IdentKeys,
    learner: ProcessMapLearner,
    /// Flows changed since the last take, pushed as each becomes `pending`;
    /// at the take, an id whose flow left or was judged already is passed
    /// over.
    changed: Vec<Slot>,
    /// When each live flow's status may next change with time alone
    /// (its `next_check_unix_us`), soonest first: the tick takes the due
    /// ones instead of looking at every live flow. An entry counts while
    /// its flow's time is the entry's ([`due_at`]).
    due: Queue<i64>,
    /// Every live flow by when it may go when there are too many
    /// ([`FlowState::order`]): finished first, then the least recently
    /// seen. Kept as flows are judged, so that making room takes the first
    /// few instead of looking at every live flow. An entry counts while its
    /// flow's order is the entry's ([`in_order`]).
    order: Queue<(bool, i64)>,
    /// The live flows the alert rules count, kept as they are judged.
    tally: Tally,
    /// Flows whose hops the last take rebuilt ([`Correlator::learn_new_hops`]),
    /// with their ids (a slot may hold another flow by then).
    new_hops: Vec<(Slot, FlowId)>,
    removed: Vec<String>,
    /// The last observation known by its trace alone: that trace, its
    /// flow's slot, and [`Flows::removals`] then. Exporters send a trace's
    /// spans together: while no flow has left since, the next span of that
    /// trace is in that flow without hashing its trace id and looking it up.
    last_trace: Option<(TraceId, Slot, u64)>,
}

impl Correlator {
    /// A correlator with these rules; fails on a rule that does not parse.
    pub fn new(config: CorrelationConfig) -> Result<Self, String> {
        let rules = config
            .keys
            .iter()
            .map(|rule| rule.source().map(|source| (rule.clone(), source)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            config,
            rules,
            flows: Flows::default(),
            index: Index::default(),
            keys: IdentKeys::default(),
            learner: ProcessMapLearner::default(),
            changed: Vec::new(),
            due: Queue::default(),
            order: Queue::default(),
            tally: Tally::default(),
            new_hops: Vec::new(),
            removed: Vec::new(),
            last_trace: None,
        })
    }

    /// The rules in force.
    pub fn config(&self) -> &CorrelationConfig {
        &self.config
    }

    /// Takes in one observation; `false` for those that are not about flows
    /// (queue samples, topology).
    pub fn ingest(&mut self, observation: Observation) -> bool {
        match observation {
            Observation::Publish(msg)
            | Observation::Deliver(msg)
            | Observation::DeadLetter(msg)
                if msg.properties.kind.is_none()
                    && msg.properties.message_id.is_none()
                    && msg.trace.is_none()
                    && msg.properties.correlation_id.is_none() =>
            {
                // Nothing to join it by: not part of any flow (probes, bare messages).
                false
            }
            Observation::Publish(msg) => self.add_message(*msg, Kind::Publish),
            Observation::Deliver(msg) => self.add_message(*msg, Kind::Deliver),
            Observation::DeadLetter(msg) => self.add_message(*msg, Kind::DeadLetter),
            Observation::Span(span) => {
                let rules = Arc::clone(&self.rules);
                let ids = ids::of_span(&span, &rules);
                let flow = self.flow_for(&ids, span.start_unix_us);
                if flow.key.is_none() {
                    flow.key = key_of(&ids);
                }
                drop(ids);
                // Hops are made of messages and of spans about one (by its
                // id); any other span changes none.
                if span
                    .messaging
                    .as_ref()
                    .is_some_and(|m| m.message_id().is_some())
                {
                    flow.dirty = true;
                }
                flow.touch(span.end_unix_us);
                if flow.spans.len() < MAX_SPANS_PER_FLOW {
                    if flow.spans.capacity() == 0 {
                        // Room for a traced order's spans at once, not grown 4 → 8.
                        flow.spans.reserve_exact(SPANS_FIRST_RESERVED);
                    }
                    flow.spans.push(span);
                } else {
                    flow.num_dropped += 1;
                }
                true
            }
            Observation::QueueSample(_) | Observation::Topology(_) => false,
        }
    }

    fn add_message(&mut self, msg: flowscope_model::BrokerMessage, kind: Kind) -> bool {
        let rules = Arc::clone(&self.rules);
        let ids = ids::of_message(&msg, &rules);
        let message_id = match ids.first() {
            Some(IdentRef::Message(id)) => id.to_string(),
            _ => ids::message_id(&msg),
        };
        let flow = self.flow_for(&ids, msg.observed_unix_us);
        if flow.key.is_none() {
            flow.key = key_of(&ids);
        }
        drop(ids);
        flow.dirty = true;
        flow.touch(msg.observed_unix_us);
        if !flow.messages.contains_key(&message_id) && flow.messages.len() >= MAX_MESSAGES_PER_FLOW
        {
            flow.num_dropped += 1;
            return true;
        }
        let record = flow.messages.entry(message_id).or_default();
        match kind {
            Kind::Publish => record.publish = Some(msg),
            Kind::Deliver => record.deliveries.push(msg),
            Kind::DeadLetter => record.dead_letters.push(msg),
        }
        true
    }

    /// The flow these identifiers belong to: found, created, or several merged.
    ///
    /// Runs once per observation: its identifiers are hashed to their keys
    /// once (not at all for the next span of the trace just seen, see
    /// `last_trace`), and nothing is copied. Marks the flow changed.
    fn flow_for(&mut self, ids: &[IdentRef<'_>], at: i64) -> &mut FlowState {
        let trace_alone = match ids {
            [ident @ IdentRef::Trace(trace)] if !ident.is_empty() => Some(*trace),
            _ => None,
        };
        let removals = self.flows.removals();
        let target = match (trace_alone, self.last_trace) {
            (Some(trace), Some((last, slot, then))) if trace == last && then == removals => slot,
            _ => self.find_or_make(ids, at),
        };
        if let Some(trace) = trace_alone {
            self.last_trace = Some((trace, target, self.flows.removals()));
        }
        let flow = self.flows.get_mut(target).expect("target flow exists");
        if !flow.pending {
            flow.pending = true;
            self.changed.push(target);
        }
        flow
    }

    /// The slot of the flow an observation with these identifiers is in:
    /// found by them (flows they join merged), or new; the index points
    /// each of them there.
    fn find_or_make(&mut self, ids: &[IdentRef<'_>], at: i64) -> Slot {
        let keyed: SmallVec<[(IdentKey, Option<TraceId>); 6]> = ids
            .iter()
            .filter(|i| !i.is_empty())
            .map(|i| {
                let trace = match i {
                    IdentRef::Trace(t) => Some(*t),
                    _ => None,
                };
                (self.keys.key(i), trace)
            })
            .collect();
        // Each key's flow as found: a key found in the flow the observation
        // ends up in needs no second look.
        let owners: SmallVec<[Option<Slot>; 6]> =
            keyed.iter().map(|(k, _)| self.index.get(*k)).collect();
        let mut found: SmallVec<[Slot; 2]> = SmallVec::new();
        for flow in owners.iter().flatten() {
            if !found.contains(flow) {
                found.push(*flow);
            }
        }
        let target = match found.len() {
            0 => {
                let id = FlowId::new(ids.iter().find(|i| !i.is_empty()), at);
                // A live flow of the same id: first seen by the same
                // identifier in the same second (its identifiers were
                // let go when it merged, say).
                match self.flows.slot_of(id) {
                    Some(slot) => slot,
                    None => {
                        let slot = self.flows.insert(Box::new(FlowState {
                            id,
                            first_unix_us: at,
                            last_unix_us: at,
                            order: (true, at),
                            ..Default::default()
                        }));
                        self.order.push((true, at), slot);
                        slot
                    }
                }
            }
            1 => found[0],
            _ => self.merge(&found),
        };
        let flow = self.flows.get_mut(target).expect("target flow exists");
        for ((key, trace), owner) in keyed.into_iter().zip(owners) {
            if owner == Some(target) {
                continue;
            }
            // Pointing elsewhere: not after a merge (it moves the merged
            // flows' identifiers); kept for the index and flows to agree.
            if self.index.set(key, target) != Some(target) {
                flow.keep_key(key, trace);
            }
        }
        target
    }

    /// Merges flows into the oldest of them; returns its slot.
    fn merge(&mut self, slots: &[Slot]) -> Slot {
        let target = *slots
            .iter()
            .min_by_key(|slot| {
                self.flows
                    .get(**slot)
                    .map_or((i64::MAX, FlowId::MAX), |f| (f.first_unix_us, f.id))
            })
            .expect("at least two flows");
        for slot in slots.iter().filter(|slot| **slot != target) {
            let Some(other) = self.flows.remove(*slot) else {
                continue;
            };
            // Its entries in `due` and `order` no longer count.
            self.tally.add(other.id, other.judged(), -1);
            for key in &other.keys {
                self.index.repoint(*key, target);
            }
            self.removed.push(other.id.to_string());
            self.flows
                .get_mut(target)
                .expect("target flow exists")
                .absorb(*other);
        }
        target
    }

    /// Judges every changed flow and returns them in full, with merged-away ids.
    pub fn take_changes(&mut self, now_unix_us: i64) -> Changes {
        self.new_hops.clear();
        let mut updated = Vec::with_capacity(self.changed.len());
        for slot in std::mem::take(&mut self.changed) {
            if let Some(flow) = self.judge(slot, now_unix_us) {
                updated.push(flow.detail(flow.hops.clone()));
            }
        }
        self.sweep();
        Changes {
            updated,
            removed: std::mem::take(&mut self.removed),
        }
    }

    /// Judges every changed flow like [`Correlator::take_changes`], but
    /// returns only their summaries: for when no store wants the details.
    pub fn take_summaries(&mut self, now_unix_us: i64) -> SummaryChanges {
        self.new_hops.clear();
        let mut updated = Vec::with_capacity(self.changed.len());
        for slot in std::mem::take(&mut self.changed) {
            if let Some(flow) = self.judge(slot, now_unix_us) {
                updated.push(flow.summary(&flow.hops));
            }
        }
        self.sweep();
        SummaryChanges {
            updated,
            removed: std::mem::take(&mut self.removed),
        }
    }

    /// Judges every changed flow like [`Correlator::take_changes`], but
    /// makes nothing of them: for when no one wants the changes (no store,
    /// no one on the live stream). Returns the merged-away ids.
    pub fn judge_changes(&mut self, now_unix_us: i64) -> Vec<String> {
        self.new_hops.clear();
        for slot in std::mem::take(&mut self.changed) {
            self.judge(slot, now_unix_us);
        }
        self.sweep();
        std::mem::take(&mut self.removed)
    }

    /// Sweeps the stale entries out of `due` and `order` once they
    /// outnumber the live flows.
    fn sweep(&mut self) {
        let live = self.flows.len();
        self.due.sweep(live, due_at(&self.flows));
        self.order.sweep(live, in_order(&self.flows));
    }

    /// Judges one flow: its status, and its hops too when it holds
    /// something new (a judgement for time alone keeps them). Teaches the
    /// process map a flow that finished. The caller makes what it needs of
    /// the flow (the flow keeps no summary: a kept copy was cloned at every
    /// judgement and freed, long idle, when the flow left). `None` for a
    /// flow no longer live.
    fn judge(&mut self, slot: Slot, now_unix_us: i64) -> Option<&FlowState> {
        // Not live any more, or already judged (a flow let go and another
        // put in its slot since: the slot was pushed twice).
        let flow = self.flows.get_mut(slot).filter(|f| f.pending)?;
        let id = flow.id;
        flow.pending = false;
        self.tally.add(id, flow.judged(), -1);
        let dirty = std::mem::take(&mut flow.dirty);
        if dirty {
            flow.hops = hops::build(flow);
            self.new_hops.push((slot, id));
        }
        let (status, reason) = status::evaluate(flow, &flow.hops, &self.config, now_unix_us);
        let next = status::next_change(flow, &flow.hops, &self.config, status, now_unix_us);
        set_next_check(&mut self.due, slot, flow, next);
        flow.status = status;
        flow.reason = reason;
        let finished = status.is_final() || status == flowscope_model::FlowStatus::Failed;
        flow.ended_unix_us = match (finished, flow.ended_unix_us) {
            (true, None) => Some(flow.last_unix_us),
            (true, ended) => ended,
            (false, _) => None,
        };
        let order = (!status.is_final(), flow.last_unix_us);
        if order != flow.order {
            self.order.push(order, slot);
            flow.order = order;
        }
        flow.judged = true;
        self.tally.add(id, flow.judged(), 1);
        // Learned once when it finishes; events after that (a cancellation
        // after a failure) move it to its real variant.
        if finished && (dirty || flow.learned == 0) {
            let events: Vec<(String, i64)> = flow
                .messages_in_order()
                .into_iter()
                .filter_map(|(_, r)| Some((r.event_type()?.to_owned(), r.published_unix_us()?)))
                .collect();
            let before = flow.learned;
            if events.len() > before {
                if before == 0 {
                    self.learner.learn(&id.to_string(), &events);
                } else {
                    self.learner.grow(&id.to_string(), before, &events);
                }
                flow.learned = events.len();
            }
        }
        Some(flow)
    }

    /// Hands over the hops the last take rebuilt, each with the vhost of
    /// its flow's first message (for the latency learned from them): a
    /// flow judged again for time alone is not handed over again.
    pub fn learn_new_hops(&mut self, mut learn: impl FnMut(&str, &[Hop])) {
        for (slot, id) in std::mem::take(&mut self.new_hops) {
            let Some(flow) = self.flows.get(slot).filter(|f| f.id == id) else {
                continue;
            };
            let vhost = flow
                .messages_in_order()
                .into_iter()
                .find_map(|(_, r)| r.representative())
                .map_or("", |m| m.vhost.as_str());
            learn(vhost, &flow.hops);
        }
    }

    /// One live flow in full.
    pub fn flow(&self, id: &str) -> Option<FlowDetail> {
        let flow = self.flows.get(self.flows.slot_of(FlowId::parse(id)?)?)?;
        Some(flow.detail(hops::build(flow)))
    }

    /// The summaries of the live flows judged so far (their status as of
    /// the last take), made on the way; `status` picks those judged so.
    pub fn summaries(&self, status: Option<FlowStatus>) -> impl Iterator<Item = FlowSummary> {
        self.flows
            .values()
            .filter(move |f| f.judged && status.is_none_or(|s| f.status == s))
            .map(|f| f.summary(&f.hops))
    }

    /// The live flow an order key, message id or trace id belongs to.
    pub fn find(&self, needle: &str) -> Option<String> {
        let direct = [
            needle.parse().ok().map(IdentRef::Trace),
            Some(IdentRef::Message(Cow::Borrowed(needle))),
            Some(IdentRef::Correlation(Cow::Borrowed(needle))),
        ];
        direct
            .iter()
            .flatten()
            .find_map(|i| self.index.get(self.keys.key(i)))
            .or_else(|| {
                self.rules.iter().find_map(|(rule, _)| {
                    let key = IdentRef::Key(&rule.name, Cow::Borrowed(needle));
                    self.index.get(self.keys.key(&key))
                })
            })
            .or_else(|| self.flows.slot_of(FlowId::parse(needle)?))
            .and_then(|slot| self.flows.get(slot))
            .map(|flow| flow.id.to_string())
    }

    /// The process map learned so far.
    pub fn process_map(&self) -> ProcessMap {
        self.learner.snapshot()
    }

    /// Which services lose or restart trace context.
    pub fn propagation(&self) -> propagation::PropagationReport {
        propagation::report(self.flows.values())
    }

    /// Live flows.
    pub fn num_flows(&self) -> usize {
        self.flows.len()
    }
}

/// Sets when a flow is next due for the tick, keeping `due` in step (an
/// entry under its earlier time no longer counts).
fn set_next_check(due: &mut Queue<i64>, slot: Slot, flow: &mut FlowState, next: Option<i64>) {
    if flow.next_check_unix_us == next {
        return;
    }
    if let Some(t) = next {
        due.push(t, slot);
    }
    flow.next_check_unix_us = next;
}

/// Whether an entry in `due` counts: its slot holds a flow due then.
fn due_at(flows: &Flows) -> impl Fn(i64, Slot) -> bool + '_ {
    move |at, slot| {
        flows
            .get(slot)
            .is_some_and(|f| f.next_check_unix_us == Some(at))
    }
}

/// Whether an entry in `order` counts: its slot holds a flow in that place.
fn in_order(flows: &Flows) -> impl Fn((bool, i64), Slot) -> bool + '_ {
    move |order, slot| flows.get(slot).is_some_and(|f| f.order == order)
}

enum Kind {
    Publish,
    Deliver,
    DeadLetter,
}

/// The business key among an observation's identifiers.
fn key_of(ids: &[IdentRef<'_>]) -> Option<String> {
    ids.iter().find_map(|i| match i {
        IdentRef::Key(_, value) => Some(value.to_string()),
        _ => None,
    })
}

#[cfg(test)]
mod tests;
