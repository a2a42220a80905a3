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

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Per-queue depth estimates, shared by the poller (exact counts) and the
/// firehose collector (deltas).
#[derive(Debug, Clone, Default)]
pub struct DepthTracker {
    queues: Arc<Mutex<HashMap<String, Depth>>>,
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
        let mut queues = self.queues.lock().expect("depth lock");
        let depth = queues.entry(queue.to_owned()).or_default();
        depth.exact = ready;
        depth.delta = 0;
        depth.changed = false;
        depth.read_at = Some(Instant::now());
        depth.reported.replace(ready) != Some(ready)
    }

    /// The firehose showed, at `seen`, a message routed into `queue`.
    pub fn routed(&self, queue: &str, seen: Instant) {
        self.adjust(queue, 1, seen);
    }

    /// The firehose showed, at `seen`, a message delivered from `queue`.
    pub fn delivered(&self, queue: &str, seen: Instant) {
        self.adjust(queue, -1, seen);
    }

    fn adjust(&self, queue: &str, by: i64, seen: Instant) {
        // Only queues with an exact base are estimated; a message seen before
        // the base was read is in it.
        if let Some(depth) = self.queues.lock().expect("depth lock").get_mut(queue)
            && depth.read_at.is_none_or(|read| read <= seen)
        {
            depth.delta += by;
            depth.changed = true;
        }
    }

    /// Queues whose estimate changed since last asked and differs from the
    /// count last reported, with the estimate (now reported).
    pub fn take_changed(&self) -> Vec<(String, u64)> {
        let mut queues = self.queues.lock().expect("depth lock");
        queues
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
        self.queues
            .lock()
            .expect("depth lock")
            .retain(|name, _| keep(name));
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
}
