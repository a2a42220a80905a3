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
pub mod hops;
pub mod ids;
pub mod process_map;
pub mod propagation;
pub mod status;

use std::collections::{BTreeMap, BTreeSet};

use foldhash::HashMap;

use flowscope_model::{FlowDetail, FlowSummary, Hop, Observation, ProcessMap};

use self::config::{CorrelationConfig, KeyRule, KeySource};
use self::flow::{FlowState, MAX_MESSAGES_PER_FLOW, MAX_SPANS_PER_FLOW};
use self::ids::Ident;
use self::process_map::ProcessMapLearner;

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
    rules: Vec<(KeyRule, KeySource)>,
    flows: HashMap<String, FlowState>,
    summaries: HashMap<String, FlowSummary>,
    index: HashMap<Ident, String>,
    learner: ProcessMapLearner,
    changed: BTreeSet<String>,
    removed: Vec<String>,
    /// Flows the process map learned from, with how many events it saw.
    learned: BTreeMap<String, usize>,
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
            flows: HashMap::default(),
            summaries: HashMap::default(),
            index: HashMap::default(),
            learner: ProcessMapLearner::default(),
            changed: BTreeSet::new(),
            removed: Vec::new(),
            learned: BTreeMap::new(),
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
            Observation::Publish(msg) => self.add_message(msg, Kind::Publish),
            Observation::Deliver(msg) => self.add_message(msg, Kind::Deliver),
            Observation::DeadLetter(msg) => self.add_message(msg, Kind::DeadLetter),
            Observation::Span(span) => {
                let ids = ids::of_span(&span, &self.rules);
                let key = key_of(&ids);
                let flow = self.flow_for(ids, span.start_unix_us);
                flow.touch(span.end_unix_us);
                if flow.key.is_none() {
                    flow.key = key;
                }
                if flow.spans.len() < MAX_SPANS_PER_FLOW {
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
        let ids = ids::of_message(&msg, &self.rules);
        let key = key_of(&ids);
        let message_id = match ids.first() {
            Some(Ident::Message(id)) => id.clone(),
            _ => ids::message_id(&msg),
        };
        let flow = self.flow_for(ids, msg.observed_unix_us);
        flow.touch(msg.observed_unix_us);
        if flow.key.is_none() {
            flow.key = key;
        }
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
    /// Runs once per observation: it clones an identifier or a flow id only
    /// when it is new to the index, the flow or the changed set.
    fn flow_for(&mut self, mut ids: Vec<Ident>, at: i64) -> &mut FlowState {
        ids.retain(|i| !ident_is_empty(i));
        let mut found: Vec<String> = Vec::new();
        for flow in ids.iter().filter_map(|i| self.index.get(i)) {
            if !found.contains(flow) {
                found.push(flow.clone());
            }
        }
        found.sort();
        let target = match found.len() {
            0 => {
                let id = flow_id(ids.first(), at);
                self.flows.entry(id.clone()).or_insert_with(|| FlowState {
                    id: id.clone(),
                    first_unix_us: at,
                    last_unix_us: at,
                    ..Default::default()
                });
                id
            }
            1 => found.remove(0),
            _ => self.merge(found),
        };
        let flow = self.flows.get_mut(&target).expect("target flow exists");
        if !flow.pending {
            flow.pending = true;
            self.changed.insert(target.clone());
        }
        for ident in ids {
            match self.index.get_mut(&ident) {
                Some(owner) if *owner == target => {}
                Some(owner) => owner.clone_from(&target),
                None => {
                    self.index.insert(ident.clone(), target.clone());
                }
            }
            // Kept sorted and unique, as `absorb` leaves them.
            if let Err(at) = flow.idents.binary_search(&ident) {
                flow.idents.insert(at, ident);
            }
        }
        flow
    }

    /// Merges flows into the oldest of them; returns its id.
    fn merge(&mut self, ids: Vec<String>) -> String {
        let target = ids
            .iter()
            .min_by_key(|id| {
                (
                    self.flows.get(*id).map_or(i64::MAX, |f| f.first_unix_us),
                    (*id).clone(),
                )
            })
            .cloned()
            .expect("at least two flows");
        for id in ids.into_iter().filter(|id| *id != target) {
            let Some(other) = self.flows.remove(&id) else {
                continue;
            };
            for ident in &other.idents {
                self.index.insert(ident.clone(), target.clone());
            }
            self.summaries.remove(&id);
            self.changed.remove(&id);
            self.learned.remove(&id);
            self.removed.push(id);
            self.flows
                .get_mut(&target)
                .expect("target flow exists")
                .absorb(other);
        }
        target
    }

    /// Re-judges flows whose status can change with time alone, and keeps
    /// the number of live flows bounded.
    ///
    /// Hops depend only on what a flow holds, so a flow not changed since its
    /// last judgement is re-judged with the hops kept then; changed flows are
    /// judged at the next take anyway.
    ///
    /// Only flows due for it are judged again: each knows when a wait of its
    /// next crosses a threshold ([`status::next_change`]), instead of all
    /// live flows (up to 20,000) twice a second, traffic or not.
    pub fn tick(&mut self, now_unix_us: i64) {
        let mut waiting = Vec::new();
        for (id, flow) in &mut self.flows {
            if flow.pending || flow.next_check_unix_us.is_none_or(|t| t > now_unix_us) {
                continue;
            }
            let (status, reason) = status::evaluate(flow, &flow.hops, &self.config, now_unix_us);
            if status != flow.status || reason != flow.reason {
                flow.pending = true;
                waiting.push(id.clone());
            } else {
                flow.next_check_unix_us =
                    status::next_change(flow, &flow.hops, &self.config, status, now_unix_us);
            }
        }
        self.changed.extend(waiting);
        self.evict();
    }

    /// Drops the excess flows: finished ones first, then the least recently seen.
    fn evict(&mut self) {
        let excess = self.flows.len().saturating_sub(self.config.max_live_flows);
        if excess == 0 {
            return;
        }
        let mut candidates: Vec<(bool, i64, &String)> = self
            .flows
            .values()
            .map(|f| (!f.status.is_final(), f.last_unix_us, &f.id))
            .collect();
        // The `excess` smallest (ids are unique, so the order is total).
        candidates.select_nth_unstable(excess - 1);
        let evicted: Vec<String> = candidates[..excess]
            .iter()
            .map(|(_, _, id)| (*id).clone())
            .collect();
        for id in evicted {
            if let Some(flow) = self.flows.remove(&id) {
                for ident in &flow.idents {
                    if self.index.get(ident) == Some(&id) {
                        self.index.remove(ident);
                    }
                }
            }
            self.summaries.remove(&id);
            self.changed.remove(&id);
            self.learned.remove(&id);
        }
    }

    /// Judges every changed flow and returns them in full, with merged-away ids.
    pub fn take_changes(&mut self, now_unix_us: i64) -> Changes {
        let mut updated = Vec::with_capacity(self.changed.len());
        for id in std::mem::take(&mut self.changed) {
            if self.judge(&id, now_unix_us)
                && let (Some(flow), Some(summary)) = (self.flows.get(&id), self.summaries.get(&id))
            {
                updated.push(flow.detail_with(summary.clone(), flow.hops.clone()));
            }
        }
        Changes {
            updated,
            removed: std::mem::take(&mut self.removed),
        }
    }

    /// Judges every changed flow like [`Correlator::take_changes`], but
    /// returns only their summaries: for when no store wants the details.
    pub fn take_summaries(&mut self, now_unix_us: i64) -> SummaryChanges {
        let mut updated = Vec::with_capacity(self.changed.len());
        for id in std::mem::take(&mut self.changed) {
            if self.judge(&id, now_unix_us)
                && let Some(summary) = self.summaries.get(&id)
            {
                updated.push(summary.clone());
            }
        }
        SummaryChanges {
            updated,
            removed: std::mem::take(&mut self.removed),
        }
    }

    /// Rebuilds one flow's hops, status and summary; teaches the process map
    /// a flow that finished. `false` for a flow no longer live.
    fn judge(&mut self, id: &str, now_unix_us: i64) -> bool {
        let Some(flow) = self.flows.get_mut(id) else {
            return false;
        };
        flow.pending = false;
        flow.hops = hops::build(flow);
        let (status, reason) = status::evaluate(flow, &flow.hops, &self.config, now_unix_us);
        flow.next_check_unix_us =
            status::next_change(flow, &flow.hops, &self.config, status, now_unix_us);
        flow.status = status;
        flow.reason = reason;
        let finished = status.is_final() || status == flowscope_model::FlowStatus::Failed;
        flow.ended_unix_us = match (finished, flow.ended_unix_us) {
            (true, None) => Some(flow.last_unix_us),
            (true, ended) => ended,
            (false, _) => None,
        };
        if finished {
            let events: Vec<(String, i64)> = flow
                .messages_in_order()
                .into_iter()
                .filter_map(|(_, r)| Some((r.event_type()?.to_owned(), r.published_unix_us()?)))
                .collect();
            // Learned once when it finishes; events after that (a
            // cancellation after a failure) move it to its real variant.
            let before = self.learned.get(id).copied().unwrap_or(0);
            if events.len() > before {
                if before == 0 {
                    self.learner.learn(id, &events);
                } else {
                    self.learner.grow(id, before, &events);
                }
                self.learned.insert(id.to_owned(), events.len());
            }
        }
        let summary = flow.summary(&flow.hops);
        match self.summaries.get_mut(id) {
            Some(kept) => *kept = summary,
            None => {
                self.summaries.insert(id.to_owned(), summary);
            }
        }
        true
    }

    /// The hops of a live flow as of its last judgement, with the vhost of
    /// its first message (for the latency learned from them).
    pub fn judged_hops(&self, id: &str) -> Option<(&str, &[Hop])> {
        let flow = self.flows.get(id)?;
        let vhost = flow
            .messages_in_order()
            .into_iter()
            .find_map(|(_, r)| r.representative())
            .map_or("", |m| m.vhost.as_str());
        Some((vhost, &flow.hops))
    }

    /// One live flow in full.
    pub fn flow(&self, id: &str) -> Option<FlowDetail> {
        let flow = self.flows.get(id)?;
        Some(flow.detail(hops::build(flow)))
    }

    /// The live flows' summaries (as of the last [`Correlator::take_changes`]).
    pub fn summaries(&self) -> impl Iterator<Item = &FlowSummary> {
        self.summaries.values()
    }

    /// The live flow an order key, message id or trace id belongs to.
    pub fn find(&self, needle: &str) -> Option<String> {
        let direct = [
            needle.parse().ok().map(Ident::Trace),
            Some(Ident::Message(needle.to_owned())),
            Some(Ident::Correlation(needle.to_owned())),
        ];
        direct
            .iter()
            .flatten()
            .find_map(|i| self.index.get(i).cloned())
            .or_else(|| {
                self.rules.iter().find_map(|(rule, _)| {
                    self.index
                        .get(&Ident::Key(rule.name.clone(), needle.to_owned()))
                        .cloned()
                })
            })
            .or_else(|| self.flows.contains_key(needle).then(|| needle.to_owned()))
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

enum Kind {
    Publish,
    Deliver,
    DeadLetter,
}

/// The business key among an observation's identifiers.
fn key_of(ids: &[Ident]) -> Option<String> {
    ids.iter().find_map(|i| match i {
        Ident::Key(_, value) => Some(value.clone()),
        _ => None,
    })
}

fn ident_is_empty(ident: &Ident) -> bool {
    match ident {
        Ident::Trace(t) => t.is_zero(),
        Ident::Message(s) | Ident::Correlation(s) => s.is_empty(),
        Ident::Key(_, v) => v.is_empty(),
    }
}

/// Digits of a flow id, in ASCII order, so that ids compare as the numbers
/// they spell (URL-safe: `-`, `0-9`, `A-Z`, `_`, `a-z`).
const ID_DIGITS: &[u8; 64] = b"-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz";

/// A flow's id: `f`, the second it was first seen (6 digits of 6 bits, up to
/// the year 4147), and a 60-bit hash of the identifier it was first seen by
/// (10 digits). Both come from the observation, so a replay after a restart
/// gives the same ids.
///
/// Ids sort by time, like a UUIDv7's: a store appends new flows at the end
/// of its indexes (by id, and its flow keys by flow). Ids that were a bare
/// hash put each new flow at a random place, and with a large store every
/// write dirtied a page per flow and index (measured: a write's commit time
/// per flow doubled over a minute at 60k spans/s).
fn flow_id(first: Option<&Ident>, first_seen_unix_us: i64) -> String {
    use std::hash::{Hash, Hasher};
    // FNV-1a: stable across processes and releases, unlike DefaultHasher.
    struct Fnv(u64);
    impl Hasher for Fnv {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for b in bytes {
                self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
            }
        }
    }
    let mut h = Fnv(0xcbf2_9ce4_8422_2325);
    first.map(Ident::text).unwrap_or_default().hash(&mut h);
    let secs = (first_seen_unix_us.max(0) / 1_000_000).min((1 << 36) - 1) as u64;
    let mut id = String::with_capacity(17);
    id.push('f');
    let digits = |value: u64, n: u32, id: &mut String| {
        for i in (0..n).rev() {
            id.push(char::from(ID_DIGITS[(value >> (6 * i) & 63) as usize]));
        }
    };
    digits(secs, 6, &mut id);
    digits(h.finish() >> 4, 10, &mut id);
    id
}

#[cfg(test)]
mod tests {
    use super::{ID_DIGITS, Ident, flow_id};

    const SECOND: i64 = 1_000_000;

    #[test]
    fn flow_ids_sort_by_the_second_first_seen() {
        let t = 1_795_000_000 * SECOND;
        let ids: Vec<String> = (0..500)
            .map(|i| {
                flow_id(
                    Some(&Ident::Key("shop.order_id".into(), format!("ord-{i}"))),
                    t + i * SECOND / 3,
                )
            })
            .collect();
        for pair in ids.windows(2) {
            let (a, b) = (&pair[0][..7], &pair[1][..7]);
            assert!(a <= b, "{} then {}: not in time order", pair[0], pair[1]);
        }
        assert!(ids[0] < ids[499]);
        // Years apart too, and a time before 1970 sorts first.
        assert!(flow_id(None, -5) < flow_id(None, t));
        assert!(flow_id(None, t) < flow_id(None, t + 3_000 * 86_400 * SECOND));
    }

    #[test]
    fn flow_ids_are_stable_distinct_and_url_safe() {
        let t = 1_795_000_000 * SECOND + 123;
        let key = |k: &str| Ident::Key("shop.order_id".into(), k.to_owned());
        assert_eq!(
            flow_id(Some(&key("ord-1")), t),
            flow_id(Some(&key("ord-1")), t)
        );
        let mut seen: Vec<String> = (0..10_000)
            .map(|i| flow_id(Some(&key(&format!("ord-{i}"))), t))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 10_000, "two identifiers got one id");
        for id in &seen {
            assert_eq!(id.len(), 17);
            assert!(id.starts_with('f'));
            assert!(id[1..].bytes().all(|b| ID_DIGITS.contains(&b)), "{id}");
        }
        assert!(
            ID_DIGITS.windows(2).all(|w| w[0] < w[1]),
            "digits out of ASCII order"
        );
    }
}
