//! Every queue's state, merged from the three sources as samples arrive.
//!
//! `ready` comes from whichever source saw the queue last (a passive declare
//! or a firehose estimate is newer than the management API's number, which
//! lags by seconds); unacked, rates and the head message's age come from the
//! management API; consumers from the freshest of management and passive
//! declare. A short history of ready counts (one point per second) feeds the
//! sparklines; the store keeps the long one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use flowscope_model::{QueueSample, QueueState, SampleSource, TopologySnapshot};

/// Seconds of history kept per queue in memory.
pub const HISTORY_SECS: usize = 900;
/// Queues shown at most (a broker with more is summarized by the biggest).
pub const MAX_QUEUES: usize = 2_000;

/// A management API number this much younger than the last exact count is
/// still older than it (the API lags by up to ~8 s).
const MANAGEMENT_LAG_US: i64 = 8_000_000;

#[derive(Debug, Default)]
struct Entry {
    state: QueueState,
    history: VecDeque<(i64, u64)>,
    /// When a passive declare or the firehose last gave `ready`.
    last_fresh_us: i64,
}

/// The queues of every watched vhost.
#[derive(Debug, Default)]
pub struct QueueBoard {
    queues: BTreeMap<(String, String), Entry>,
    dead_letter_queues: BTreeSet<(String, String)>,
    dead_letter_target: BTreeMap<(String, String), String>,
    changed: BTreeSet<(String, String)>,
}

impl QueueBoard {
    /// Takes in a sample; returns whether the queue's state changed.
    pub fn observe(&mut self, sample: &QueueSample) -> bool {
        let key = (sample.vhost.clone(), sample.queue.clone());
        if !self.queues.contains_key(&key) && self.queues.len() >= MAX_QUEUES {
            return false;
        }
        let entry = self.queues.entry(key.clone()).or_default();
        let before = entry.state.clone();
        let fresh = sample.source != SampleSource::Management;
        if fresh {
            entry.last_fresh_us = entry.last_fresh_us.max(sample.observed_unix_us);
        }
        let s = &mut entry.state;
        s.vhost.clone_from(&sample.vhost);
        s.name.clone_from(&sample.queue);
        let takes_ready =
            fresh || sample.observed_unix_us - entry.last_fresh_us > MANAGEMENT_LAG_US;
        if let Some(ready) = sample.messages_ready
            && takes_ready
        {
            s.ready = ready;
            s.ready_source = sample.source.as_str().to_owned();
        }
        if let Some(consumers) = sample.consumers {
            s.consumers = consumers;
        }
        if sample.source == SampleSource::Management {
            s.unacked = sample.messages_unacked.unwrap_or(s.unacked);
            s.publish_rate = sample.publish_rate.unwrap_or(0.0);
            s.deliver_rate = sample.deliver_rate.unwrap_or(0.0);
            s.ack_rate = sample.ack_rate.unwrap_or(0.0);
            s.oldest_age_secs = sample
                .head_message_timestamp
                .map(|t| (sample.observed_unix_us as f64 / 1e6 - t as f64).max(0.0));
        }
        s.updated_unix_us = s.updated_unix_us.max(sample.observed_unix_us);
        s.is_dead_letter_queue = self.dead_letter_queues.contains(&key);
        s.dead_letter_queue = self.dead_letter_target.get(&key).cloned();
        let second = sample.observed_unix_us / 1_000_000;
        match entry.history.back_mut() {
            Some((t, ready)) if *t / 1_000_000 == second => *ready = s.ready,
            _ => {
                if entry.history.len() == HISTORY_SECS {
                    entry.history.pop_front();
                }
                entry.history.push_back((sample.observed_unix_us, s.ready));
            }
        }
        let changed = strip(&entry.state) != strip(&before);
        if changed {
            self.changed.insert(key);
        }
        changed
    }

    /// Learns which queues are dead-letter queues and where each dead-letters to.
    pub fn observe_topology(&mut self, topology: &TopologySnapshot) {
        let vhost = &topology.vhost;
        self.dead_letter_queues.retain(|(v, _)| v != vhost);
        self.dead_letter_target.retain(|(v, _), _| v != vhost);
        for edge in &topology.dead_letter_edges {
            for target in &edge.targets {
                self.dead_letter_queues
                    .insert((vhost.clone(), target.clone()));
            }
            if let Some(first) = edge.targets.first() {
                self.dead_letter_target
                    .insert((vhost.clone(), edge.queue.clone()), first.clone());
            }
        }
        // Queues gone from the broker leave the board.
        let present: BTreeSet<&str> = topology.queues.iter().map(|q| q.name.as_str()).collect();
        self.queues
            .retain(|(v, q), _| v != vhost || present.contains(q.as_str()));
        for ((v, q), entry) in self.queues.iter_mut().filter(|((v, _), _)| v == vhost) {
            let key = (v.clone(), q.clone());
            let is_dlq = self.dead_letter_queues.contains(&key);
            let target = self.dead_letter_target.get(&key).cloned();
            if entry.state.is_dead_letter_queue != is_dlq || entry.state.dead_letter_queue != target
            {
                entry.state.is_dead_letter_queue = is_dlq;
                entry.state.dead_letter_queue = target;
                self.changed.insert(key);
            }
        }
    }

    /// Every queue, with `history_points` of history each (0: none).
    pub fn all(&self, history_points: usize) -> Vec<QueueState> {
        self.queues
            .values()
            .map(|e| with_history(e, history_points))
            .collect()
    }

    /// One queue with its full in-memory history.
    pub fn get(&self, vhost: &str, name: &str) -> Option<QueueState> {
        self.queues
            .get(&(vhost.to_owned(), name.to_owned()))
            .map(|e| with_history(e, HISTORY_SECS))
    }

    /// Queues changed since last asked (without history).
    pub fn take_changed(&mut self) -> Vec<QueueState> {
        std::mem::take(&mut self.changed)
            .into_iter()
            .filter_map(|key| self.queues.get(&key).map(|e| with_history(e, 0)))
            .collect()
    }
}

fn with_history(entry: &Entry, points: usize) -> QueueState {
    let mut state = entry.state.clone();
    let skip = entry.history.len().saturating_sub(points);
    state.history = entry.history.iter().skip(skip).copied().collect();
    state
}

/// The parts of a state worth an update (the timestamp alone is not).
fn strip(state: &QueueState) -> QueueState {
    QueueState {
        updated_unix_us: 0,
        history: Vec::new(),
        ..state.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(source: SampleSource, at: i64, ready: u64) -> QueueSample {
        QueueSample {
            observed_unix_us: at,
            source,
            vhost: "/".into(),
            queue: "q".into(),
            messages_ready: Some(ready),
            messages_unacked: Some(1),
            consumers: Some(2),
            publish_rate: Some(3.0),
            deliver_rate: None,
            ack_rate: None,
            head_message_timestamp: None,
        }
    }

    #[test]
    fn the_freshest_source_gives_ready_and_management_gives_rates() {
        let mut board = QueueBoard::default();
        board.observe(&sample(SampleSource::PassiveDeclare, 2_000_000, 7));
        // A management sample shortly after (it lags) does not undo the exact count.
        board.observe(&sample(SampleSource::Management, 3_000_000, 3));
        let q = board.get("/", "q").unwrap();
        assert_eq!((q.ready, q.ready_source.as_str()), (7, "passive_declare"));
        assert_eq!((q.unacked, q.publish_rate), (1, 3.0));
        board.observe(&sample(SampleSource::Firehose, 4_500_000, 9));
        let q = board.get("/", "q").unwrap();
        assert_eq!((q.ready, q.ready_source.as_str()), (9, "firehose"));
        assert_eq!(q.history.len(), 3, "one point per second");
        // Without exact sources for a while, the management API is the truth again.
        board.observe(&sample(SampleSource::Management, 20_000_000, 4));
        assert_eq!(board.get("/", "q").unwrap().ready, 4);
        assert_eq!(board.take_changed().len(), 1);
        assert!(board.take_changed().is_empty());
    }
}
