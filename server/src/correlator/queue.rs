//! Live flows in order of a key (when each is next due; which goes first
//! when there are too many), soonest first, for the tick and for making
//! room.
//!
//! A binary heap with entries left in place when they go stale: a flow
//! whose key changes gets a new entry, and one that leaves gets none
//! removed; an entry counts only while its slot holds a flow with that key
//! (the caller's `current`), and stale ones are passed over when they come
//! up, or swept out together when they outnumber the live flows. A B-tree
//! kept exact instead cost an insertion and a removal per flow judged, each
//! a walk over nodes far from the caches: ~120 ns per span at 10k tiny
//! spans/s with 20,000 live flows (docs/benchmarks.md, eleventh sitting);
//! the heap's new entries, later than most, mostly stay at its bottom.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use super::slab::Slot;

/// Slots by key, soonest first, stale entries included.
#[derive(Debug)]
pub struct Queue<K> {
    heap: BinaryHeap<Reverse<(K, Slot)>>,
}

impl<K: Ord + Copy> Default for Queue<K> {
    fn default() -> Self {
        Self {
            heap: BinaryHeap::new(),
        }
    }
}

/// Stale entries are swept out at once when there are more than this many
/// entries beyond twice the live flows.
pub const SLACK: usize = 4096;

impl<K: Ord + Copy> Queue<K> {
    /// Adds `slot` under `key`; its entry under an earlier key goes stale.
    pub fn push(&mut self, key: K, slot: Slot) {
        self.heap.push(Reverse((key, slot)));
    }

    /// Sweeps out the stale entries when they outnumber the `live` flows
    /// (with some slack); `current` tells whether an entry still counts.
    pub fn sweep(&mut self, live: usize, current: impl Fn(K, Slot) -> bool) {
        if self.heap.len() > 2 * live + SLACK {
            self.heap.retain(|Reverse((k, s))| current(*k, *s));
        }
    }

    /// Takes the soonest entry that still counts, stale ones before it dropped.
    pub fn pop(&mut self, current: impl Fn(K, Slot) -> bool) -> Option<(K, Slot)> {
        while let Some(Reverse((key, slot))) = self.heap.pop() {
            if current(key, slot) {
                return Some((key, slot));
            }
        }
        None
    }

    /// Takes up to `max` of the soonest entries whose keys are `due`, into
    /// `out`, without looking at whether they still count (the caller
    /// does, once it has read their flows ahead together).
    pub fn pop_due(&mut self, due: impl Fn(K) -> bool, max: usize, out: &mut Vec<(K, Slot)>) {
        while out.len() < max
            && let Some(&Reverse((key, slot))) = self.heap.peek()
            && due(key)
        {
            self.heap.pop();
            out.push((key, slot));
        }
    }

    /// Entries, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether `slot` has an entry under `key` (stale or not).
    #[cfg(test)]
    pub fn contains(&self, key: K, slot: Slot) -> bool {
        self.heap.iter().any(|Reverse(entry)| *entry == (key, slot))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_come_soonest_first_and_stale_ones_are_passed_over() {
        let mut keys: Vec<Option<i64>> = vec![None; 8];
        let mut queue = Queue::default();
        for (slot, key) in [(1, 30), (2, 10), (3, 20), (2, 40)] {
            keys[slot as usize] = Some(key);
            queue.push(key, slot);
        }
        // Slot 2 moved later, slot 3 left: their old entries are stale.
        keys[3] = None;
        let current = |k: i64, s: Slot| keys[s as usize] == Some(k);
        let mut due = Vec::new();
        queue.pop_due(|k| k <= 20, 8, &mut due);
        assert_eq!(
            due,
            [(10, 2), (20, 3)],
            "due ones, stale or not, soonest first"
        );
        assert!(!due.iter().any(|(k, s)| current(*k, *s)), "both stale");
        due.clear();
        queue.pop_due(|k| k <= 40, 1, &mut due);
        assert_eq!(due, [(30, 1)], "no more than asked for");
        assert_eq!(queue.pop(current), Some((40, 2)));
        assert_eq!(queue.pop(current), None);
    }

    #[test]
    fn stale_entries_are_swept_before_they_outnumber_the_live_flows() {
        let mut queue = Queue::default();
        // One live flow whose key moves on every push: all but one entry stale.
        for key in 0..100_000i64 {
            queue.push(key, 0);
            queue.sweep(1, |k, _| k == key);
            assert!(queue.len() <= 2 + SLACK + 1, "{} entries", queue.len());
        }
        assert_eq!(queue.pop(|k, _| k == 99_999), Some((99_999, 0)));
        assert_eq!(queue.pop(|k, _| k == 99_999), None);
    }
}
