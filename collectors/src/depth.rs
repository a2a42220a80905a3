//! Queue depths fresher than the management API: the last exact count (a
//! passive declare) plus what the firehose saw routed in and delivered out since.
//!
//! A message is counted with the time the firehose showed it: one seen
//! before the last exact read is in that count already (the firehose holds
//! messages of connections it does not know yet, and counts them when it
//! lets them go — or not at all, for flowscope's own peeks at dead-letter
//! queues).
//!
//! The two sources still race: a message the firehose shows just after an
//! exact read may already be in that count (or one it showed just before,
//! not yet). Such an estimate is off by a message until the next exact read,
//! which is then reported even when it did not change since the read before
//! ([`DepthTracker::set_exact`] says when it differs from what was last
//! reported): the estimate never outlives the next read.
//!
//! A queue the firehose shows a message routed into before it has an exact
//! base is *discovered*: the poller reads it at its next exact read rather
//! than waiting for the management API to list it.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Discovered queues held at most between two exact reads; more are found
/// again by the next message routed into them.
const MAX_DISCOVERED: usize = 1024;

/// Per-queue depth estimates, shared by the poller (exact counts) and the
/// firehose collector (deltas).
#[derive(Debug, Clone, Default)]
pub struct DepthTracker {
    inner: Arc<Mutex<Inner>>,
}

#[derive(Debug, Default)]
struct Inner {
    queues: HashMap<String, Depth>,
    /// Queues messages were routed into that have no exact base yet.
    discovered: HashSet<String>,
}

#[derive(Debug, Default)]
struct Depth {
    exact: u64,
    delta: i64,
    changed: bool,
    /// The count last reported, exact or estimated.
    reported: Option<u64>,
    /// When the exact count was read.
    read_at: Option<Instant>,
}

impl DepthTracker {
    /// An exact ready count was read: it becomes the base; deltas restart.
    /// Returns whether it differs from the count last reported for the queue
    /// (by either source): the caller then reports it, putting right an
    /// estimate that was off.
    pub fn set_exact(&self, queue: &str, ready: u64) -> bool {
        let mut inner = self.inner.lock().expect("depth lock");
        let depth = inner.queues.entry(queue.to_owned()).or_default();
        depth.exact = ready;
        depth.delta = 0;
        depth.changed = false;
        depth.read_at = Some(Instant::now());
        depth.reported.replace(ready) != Some(ready)
    }

    /// The firehose showed, at `seen`, a message routed into `queue`.
    pub fn routed(&self, queue: &str, seen: Instant) {
        let mut inner = self.inner.lock().expect("depth lock");
        if !inner.adjust(queue, 1, seen)
            && inner.discovered.len() < MAX_DISCOVERED
            && !inner.discovered.contains(queue)
        {
            inner.discovered.insert(queue.to_owned());
        }
    }

    /// The firehose showed, at `seen`, a message delivered from `queue`.
    pub fn delivered(&self, queue: &str, seen: Instant) {
        self.inner
            .lock()
            .expect("depth lock")
            .adjust(queue, -1, seen);
    }

    /// Queues discovered since last asked (see the module's doc): messages
    /// were routed into them, and they have no exact count yet.
    pub fn take_discovered(&self) -> Vec<String> {
        let mut inner = self.inner.lock().expect("depth lock");
        inner.discovered.drain().collect()
    }

    /// Queues whose estimate changed since last asked and differs from the
    /// count last reported, with the estimate (now reported).
    pub fn take_changed(&self) -> Vec<(String, u64)> {
        let mut inner = self.inner.lock().expect("depth lock");
        inner
            .queues
            .iter_mut()
            .filter_map(|(name, d)| {
                if !std::mem::take(&mut d.changed) {
                    return None;
                }
                let estimate = (d.exact as i64 + d.delta).max(0) as u64;
                (d.reported.replace(estimate) != Some(estimate)).then(|| (name.clone(), estimate))
            })
            .collect()
    }

    /// Forgets queues that no longer exist.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) {
        self.inner
            .lock()
            .expect("depth lock")
            .queues
            .retain(|name, _| keep(name));
    }
}

impl Inner {
    /// Moves `queue`'s estimate by `by`; false when it has no exact base.
    fn adjust(&mut self, queue: &str, by: i64, seen: Instant) -> bool {
        let Some(depth) = self.queues.get_mut(queue) else {
            return false;
        };
        // A message seen before the base was read is in it.
        if depth.read_at.is_none_or(|read| read <= seen) {
            depth.delta += by;
            depth.changed = true;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_move_with_the_firehose_and_reset_on_exact_counts() {
        let depth = DepthTracker::default();
        depth.routed("unknown", Instant::now());
        assert!(depth.take_changed().is_empty(), "no base, no estimate");
        assert_eq!(depth.take_discovered(), ["unknown"], "but read soon");
        depth.set_exact("q", 5);
        depth.routed("q", Instant::now());
        depth.routed("q", Instant::now());
        depth.delivered("q", Instant::now());
        assert_eq!(depth.take_changed(), [("q".to_string(), 6)]);
        assert!(depth.take_changed().is_empty());
        depth.set_exact("q", 2);
        for _ in 0..5 {
            depth.delivered("q", Instant::now());
        }
        assert_eq!(
            depth.take_changed(),
            [("q".to_string(), 0)],
            "never negative"
        );
    }

    #[test]
    fn an_exact_count_is_reported_when_it_differs_from_the_last_estimate() {
        let depth = DepthTracker::default();
        assert!(depth.set_exact("q", 3), "a first count is news");
        assert!(!depth.set_exact("q", 3), "the same count again is not");
        // The firehose reports a message the exact count already held: 4.
        depth.routed("q", Instant::now());
        assert_eq!(depth.take_changed(), [("q".to_string(), 4)]);
        assert!(
            depth.set_exact("q", 3),
            "the next read puts the estimate right though the count did not move"
        );
        // A message in and out before the next look: the estimate is what
        // was reported already, nothing to send.
        depth.routed("q", Instant::now());
        depth.delivered("q", Instant::now());
        assert!(depth.take_changed().is_empty());
        assert!(!depth.set_exact("q", 3));
    }

    #[test]
    fn a_message_seen_before_the_exact_read_is_not_counted_again() {
        let depth = DepthTracker::default();
        depth.set_exact("q", 0);
        let seen = Instant::now();
        // Held while its connection was looked up; meanwhile the queue was read.
        std::thread::sleep(std::time::Duration::from_millis(2));
        assert!(depth.set_exact("q", 1));
        depth.routed("q", seen);
        assert!(depth.take_changed().is_empty(), "already in the count");
        depth.routed("q", Instant::now());
        assert_eq!(depth.take_changed(), [("q".to_string(), 2)]);
    }

    #[test]
    fn queues_routed_into_without_a_count_are_discovered_once_per_read() {
        let depth = DepthTracker::default();
        depth.set_exact("known", 0);
        for _ in 0..3 {
            depth.routed("new", Instant::now());
            depth.routed("known", Instant::now());
        }
        depth.delivered("gone", Instant::now());
        assert_eq!(depth.take_discovered(), ["new"]);
        assert!(depth.take_discovered().is_empty(), "handed over once");
        depth.set_exact("new", 3);
        depth.routed("new", Instant::now());
        assert!(depth.take_discovered().is_empty(), "counted now");
        assert_eq!(depth.take_changed().len(), 2);
        for i in 0..MAX_DISCOVERED + 10 {
            depth.routed(&format!("q{i}"), Instant::now());
        }
        assert_eq!(depth.take_discovered().len(), MAX_DISCOVERED, "bounded");
    }
}
