//! Live flows in order of a key (when each is next due; which goes first
//! when there are too many), soonest first, for the tick and for making
//! room.
//!
//! A heap with entries left in place when they go stale: a flow whose key
//! changes gets a new entry, and one that leaves gets none removed; an
//! entry counts only while its slot holds a flow with that key (the
//! caller's `current`), and stale ones are passed over when they come up,
//! or swept out together when they outnumber the live flows. A B-tree kept
//! exact instead cost an insertion and a removal per flow judged, each a
//! walk over nodes far from the caches: ~120 ns per span at 10k tiny
//! spans/s with 20,000 live flows (docs/benchmarks.md, eleventh sitting);
//! the heap's new entries, later than most, mostly stay at its bottom.
//!
//! Four children to a node, not two: with ~40,000 entries a pop walks 8
//! levels, not 15, each a miss (the entries are long idle), and a node's
//! children lie side by side, mostly on one cache line; the extra
//! comparisons are on what is already fetched.

use super::slab::Slot;

/// Children per node.
const ARITY: usize = 4;

/// Slots by key, soonest first, stale entries included.
#[derive(Debug)]
pub struct Queue<K> {
    /// A 4-ary min-heap: the children of `i` are `4i + 1 ..= 4i + 4`.
    heap: Vec<(K, Slot)>,
}

impl<K: Ord + Copy> Default for Queue<K> {
    fn default() -> Self {
        Self { heap: Vec::new() }
    }
}

/// Stale entries are swept out at once when there are more than this many
/// entries beyond twice the live flows.
pub const SLACK: usize = 4096;

impl<K: Ord + Copy> Queue<K> {
    /// Adds `slot` under `key`; its entry under an earlier key goes stale.
    pub fn push(&mut self, key: K, slot: Slot) {
        let entry = (key, slot);
        let mut at = self.heap.len();
        self.heap.push(entry);
        while at > 0 {
            let parent = (at - 1) / ARITY;
            if self.heap[parent] <= entry {
                break;
            }
            self.heap[at] = self.heap[parent];
            at = parent;
        }
        self.heap[at] = entry;
    }

    /// Sweeps out the stale entries when they outnumber the `live` flows
    /// (with some slack); `current` tells whether an entry still counts.
    pub fn sweep(&mut self, live: usize, current: impl Fn(K, Slot) -> bool) {
        if self.heap.len() > 2 * live + SLACK {
            self.heap.retain(|(k, s)| current(*k, *s));
            // Floyd's: each parent sifted down, from the last one up.
            for at in (0..self.heap.len().div_ceil(ARITY)).rev() {
                self.sift_down(at);
            }
        }
    }

    /// Takes the soonest entry that still counts, stale ones before it dropped.
    pub fn pop(&mut self, current: impl Fn(K, Slot) -> bool) -> Option<(K, Slot)> {
        while let Some((key, slot)) = self.pop_first() {
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
            && let Some(&(key, _)) = self.heap.first()
            && due(key)
            && let Some(entry) = self.pop_first()
        {
            out.push(entry);
        }
    }

    /// Takes the soonest entry, stale or not.
    fn pop_first(&mut self) -> Option<(K, Slot)> {
        let last = self.heap.pop()?;
        let Some(first) = self.heap.first_mut() else {
            return Some(last);
        };
        let first = std::mem::replace(first, last);
        self.sift_down(0);
        Some(first)
    }

    /// Moves the entry at `at` down until no child is sooner.
    fn sift_down(&mut self, mut at: usize) {
        let len = self.heap.len();
        let entry = self.heap[at];
        loop {
            let first = at * ARITY + 1;
            if first >= len {
                break;
            }
            let mut soonest = first;
            for child in first + 1..(first + ARITY).min(len) {
                if self.heap[child] < self.heap[soonest] {
                    soonest = child;
                }
            }
            if self.heap[soonest] >= entry {
                break;
            }
            self.heap[at] = self.heap[soonest];
            at = soonest;
        }
        self.heap[at] = entry;
    }

    /// Entries, stale ones included.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether `slot` has an entry under `key` (stale or not).
    #[cfg(test)]
    pub fn contains(&self, key: K, slot: Slot) -> bool {
        self.heap.contains(&(key, slot))
    }
}

#[cfg(test)]
mod tests {
    use std::cmp::Reverse;
    use std::collections::BinaryHeap;

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
    fn entries_come_in_key_order_whatever_order_they_were_pushed_in() {
        // Keys from a fixed pseudo-random sequence, many repeated, pushed
        // and taken interleaved, with a sweep (a rebuild) in the middle.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % 1000) as i64
        };
        // The reference: the standard library's binary heap.
        let mut queue = Queue::default();
        let mut expected = BinaryHeap::new();
        for slot in 0..9_000u32 {
            let key = next();
            queue.push(key, slot);
            expected.push(Reverse((key, slot)));
            if slot % 3 == 0 {
                let Reverse(soonest) = expected.pop().unwrap();
                assert_eq!(queue.pop(|_, _| true), Some(soonest));
            }
        }
        // Odd slots leave: the sweep keeps the even ones, still in order.
        let mut expected: Vec<_> = expected
            .into_iter()
            .map(|Reverse(entry)| entry)
            .filter(|(_, slot)| slot % 2 == 0)
            .collect();
        queue.sweep(0, |_, slot| slot % 2 == 0);
        assert_eq!(queue.len(), expected.len(), "swept to the live entries");
        expected.sort_unstable();
        let mut taken = Vec::new();
        while let Some(entry) = queue.pop(|_, _| true) {
            taken.push(entry);
        }
        assert_eq!(taken, expected);
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
