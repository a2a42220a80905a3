//! Keeping the live set in memory without waiting on it: reading ahead
//! what a batch of spans is about to look up, judging the flows time alone
//! may change (the tick) and letting the excess flows go, both in groups
//! read ahead together.
//!
//! With the live set full (10k spans/s of payload B: ~20k flows, ~140k
//! identifiers, ~190 MiB) almost nothing the correlator touches is in the
//! caches; a miss waited on alone costs what a handful in flight together
//! cost (docs/benchmarks.md, ninth sitting).

use std::borrow::Cow;
use std::sync::Arc;

use smallvec::SmallVec;

use flowscope_model::Observation;

use super::ids::{IdentKey, IdentRef};
use super::slab::Slot;
use super::{Correlator, FlowStats, set_next_check, status};

impl Correlator {
    /// Re-judges flows whose status can change with time alone, and keeps
    /// the number of live flows bounded.
    ///
    /// Hops depend only on what a flow holds, so a flow not changed since its
    /// last judgement is re-judged with the hops kept then; changed flows are
    /// judged at the next take anyway.
    ///
    /// Only flows due for it are judged again: each knows when a wait of its
    /// next crosses a threshold ([`status::next_change`]), and those times
    /// are kept in order (`due`), so a tick looks at the due flows only, not
    /// at every live flow (up to 20,000) twice a second.
    pub fn tick(&mut self, now_unix_us: i64) {
        self.tick_with_stats(now_unix_us, 0);
    }

    /// [`Correlator::tick`], counting the live flows as it evicts (one
    /// pass over them): stuck, and finished (of which failed) less than
    /// `window_us` ago, as of their last judgement.
    pub fn tick_with_stats(&mut self, now_unix_us: i64, window_us: i64) -> FlowStats {
        // In groups: the due flows, long idle and far from the caches, are
        // read ahead together so that their misses overlap, where finding
        // each through the queue waited for one miss after another. A
        // flow's next check is always later than now: a group's judgements
        // never make another flow due in this tick.
        const GROUP: usize = 32;
        let mut group = Vec::with_capacity(GROUP);
        loop {
            group.clear();
            self.due.pop_due(|at| at <= now_unix_us, GROUP, &mut group);
            if group.is_empty() {
                break;
            }
            let seen = group
                .iter()
                .filter_map(|(_, slot)| self.flows.get(*slot))
                .fold(0, |seen, f| {
                    seen ^ f.next_check_unix_us.unwrap_or(0) ^ f.last_unix_us ^ f.hops.len() as i64
                });
            std::hint::black_box(seen);
            for &(at, slot) in &group {
                let Some(flow) = self.flows.get_mut(slot) else {
                    continue;
                };
                if flow.next_check_unix_us != Some(at) {
                    continue; // stale: judged since, or another flow in the slot
                }
                flow.next_check_unix_us = None;
                if flow.pending {
                    // Judged at the next take, which sets its next check.
                    continue;
                }
                let (status, reason) =
                    status::evaluate(flow, &flow.hops, &self.config, now_unix_us);
                if status != flow.status || reason != flow.reason {
                    flow.pending = true;
                    self.changed.push(slot);
                } else {
                    let next =
                        status::next_change(flow, &flow.hops, &self.config, status, now_unix_us);
                    set_next_check(&mut self.due, slot, flow, next);
                }
            }
        }
        self.evict();
        self.sweep();
        self.tally.stats(now_unix_us - window_us)
    }

    /// Reads ahead the index entries a batch of spans is about to look up:
    /// their traces and message ids, most of them new (a miss each), are
    /// fetched together instead of one after another as each span is
    /// taken in. Changes nothing; call before [`Correlator::ingest`] for
    /// each.
    pub fn prefetch(&self, batch: &[Observation]) {
        // Hashed first, then read in a loop of loads alone: the processor
        // has them all in flight at once only when nothing else (hashing,
        // calls) sits between them.
        //
        // By 128 spans (two keys at most each): the keys stay on the stack,
        // where a batch of thousands grew a buffer on the heap, a fresh
        // allocation per doubling (~2.5 % of the CPU at 10k spans/s).
        let mut seen = 0u64;
        for chunk in batch.chunks(128) {
            let mut keys: SmallVec<[IdentKey; 256]> = SmallVec::new();
            // A trace's spans come together: its entry is fetched once.
            let mut last_trace = None;
            for observation in chunk {
                if let Observation::Span(span) = observation {
                    if last_trace != Some(span.trace_id) {
                        keys.push(self.keys.key(&IdentRef::Trace(span.trace_id)));
                        last_trace = Some(span.trace_id);
                    }
                    if let Some(id) = span.messaging.as_ref().and_then(|m| m.message_id()) {
                        keys.push(self.keys.key(&IdentRef::Message(Cow::Borrowed(id))));
                    }
                }
            }
            seen = keys
                .iter()
                .fold(seen, |seen, key| seen ^ self.index.touch(*key));
        }
        std::hint::black_box(seen);
    }

    /// Drops the excess flows, finished ones first, then the least
    /// recently seen, as of their last judgement ([`Correlator::order`]).
    ///
    /// In groups: a group's flows, their entries by id and their
    /// identifiers' in the index, and their spans (long idle, far from the caches) are read ahead
    /// together, so that their misses overlap, before they are let go.
    pub(super) fn evict(&mut self) {
        const GROUP: usize = 32;
        let mut excess = self.flows.len().saturating_sub(self.config.max_live_flows);
        while excess > 0 {
            let want = excess.min(GROUP);
            let mut group: SmallVec<[Slot; GROUP]> = SmallVec::new();
            while group.len() < want
                && let Some((_, slot)) = self.order.pop(super::in_order(&self.flows))
            {
                // A flow whose order went back to an earlier one has two
                // entries that count.
                if !group.contains(&slot) {
                    group.push(slot);
                }
            }
            if group.is_empty() {
                break;
            }
            excess -= group.len();
            let mut seen = 0u64;
            for flow in group.iter().filter_map(|slot| self.flows.get(*slot)) {
                seen ^= self.flows.touch(flow.id);
                for key in &flow.keys {
                    seen ^= self.index.touch(*key);
                }
                // A span's counter, and the two blocks it owns: freeing
                // them writes into each, and a write that misses holds up
                // the atomic decrements after it. And the fields its drop
                // reads, over the several cache lines the span spans.
                for span in &flow.spans {
                    seen ^= Arc::strong_count(span) as u64;
                    seen ^= u64::from(span.attributes.touch());
                    seen ^= u64::from(span.messaging.as_ref().map_or(0, |m| m.touch()));
                    seen ^= (span.name.len()
                        ^ span.status.message.capacity()
                        ^ span.events.capacity()
                        ^ span.links.capacity()
                        ^ Arc::as_ptr(&span.resource).addr()) as u64;
                }
            }
            std::hint::black_box(seen);
            for slot in group {
                self.let_go(slot);
            }
        }
    }

    /// Lets a flow go (too many live), with everything that points at it.
    fn let_go(&mut self, slot: Slot) {
        let Some(flow) = self.flows.remove(slot) else {
            return;
        };
        self.tally.add(flow.id, flow.judged(), -1);
        // Its entries in `due` and `order` no longer count.
        for key in &flow.keys {
            self.index.remove(*key, slot);
        }
    }
}
