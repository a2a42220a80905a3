//! Queue depths fresher than the management API: the last exact count (a
//! passive declare) plus what the firehose saw routed in and delivered out since.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
}

impl DepthTracker {
    /// An exact ready count was read: it becomes the base; deltas restart.
    pub fn set_exact(&self, queue: &str, ready: u64) {
        let mut queues = self.queues.lock().expect("depth lock");
        let depth = queues.entry(queue.to_owned()).or_default();
        depth.exact = ready;
        depth.delta = 0;
        depth.changed = false;
    }

    /// The firehose saw a message routed into `queue`.
    pub fn routed(&self, queue: &str) {
        self.adjust(queue, 1);
    }

    /// The firehose saw a message delivered from `queue`.
    pub fn delivered(&self, queue: &str) {
        self.adjust(queue, -1);
    }

    fn adjust(&self, queue: &str, by: i64) {
        // Only queues with an exact base are estimated.
        if let Some(depth) = self.queues.lock().expect("depth lock").get_mut(queue) {
            depth.delta += by;
            depth.changed = true;
        }
    }

    /// Queues whose estimate changed since last asked, with the estimate.
    pub fn take_changed(&self) -> Vec<(String, u64)> {
        let mut queues = self.queues.lock().expect("depth lock");
        queues
            .iter_mut()
            .filter(|(_, d)| d.changed)
            .map(|(name, d)| {
                d.changed = false;
                (name.clone(), (d.exact as i64 + d.delta).max(0) as u64)
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
        depth.routed("unknown");
        assert!(depth.take_changed().is_empty(), "no base, no estimate");
        depth.set_exact("q", 5);
        depth.routed("q");
        depth.routed("q");
        depth.delivered("q");
        assert_eq!(depth.take_changed(), [("q".to_string(), 6)]);
        assert!(depth.take_changed().is_empty());
        depth.set_exact("q", 2);
        for _ in 0..5 {
            depth.delivered("q");
        }
        assert_eq!(
            depth.take_changed(),
            [("q".to_string(), 0)],
            "never negative"
        );
    }
}
