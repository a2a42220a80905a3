//! Keeping the live set in memory without waiting on it: reading ahead
//! what a batch of spans is about to look up, and letting the excess
//! flows go in groups read ahead together.
//!
//! With the live set full (10k spans/s of payload B: ~20k flows, ~140k
//! identifiers, ~190 MiB) almost nothing the correlator touches is in the
//! caches; a miss waited on alone costs what a handful in flight together
//! cost (docs/benchmarks.md, ninth sitting).

use std::borrow::Cow;
use std::sync::Arc;

use smallvec::SmallVec;

use flowscope_model::Observation;

use super::Correlator;
use super::ids::{IdentKey, IdentRef};
use super::slab::Slot;

impl Correlator {
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
    /// In groups: a group's flows, their identifiers' index entries and
    /// their spans (long idle, far from the caches) are read ahead
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
                for key in &flow.keys {
                    seen ^= self.index.touch(*key);
                }
                // A span's counter, and the two blocks it owns: freeing
                // them writes into each, and a write that misses holds up
                // the atomic decrements after it.
                for span in &flow.spans {
                    seen ^= Arc::strong_count(span) as u64;
                    seen ^= u64::from(span.attributes.touch());
                    seen ^= u64::from(span.messaging.as_ref().map_or(0, |m| m.touch()));
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
