//! What the alert engine knows of the broker: queue depths and their recent
//! history, which queues are dead-letter queues and what feeds them, who
//! consumes what, the dead letters seen, and the flow counts.
//!
//! Pure bookkeeping: observations in, questions answered; no clock, no I/O.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use flowscope_model::{BrokerMessage, QueueSample, SampleSource, TopologySnapshot};

/// A fresh ready count (passive declare or firehose) keeps the management
/// API's counts, which lag 3–8 s, out of a queue's numbers this long (µs):
/// three of the passive declare's 10 s heartbeats.
pub const FRESH_PRECEDENCE_US: i64 = 30 * 1_000_000;
/// Depth changes kept per queue, at most (the oldest go first).
pub const MAX_HISTORY_POINTS: usize = 1_024;
/// A queue first seen this long after its vhost's first sample was created
/// while flowscope watched (it started empty).
pub const NEW_QUEUE_AFTER_US: i64 = 5 * 1_000_000;
/// Dead letters remembered per dead-letter queue, at most.
pub const MAX_DEAD_LETTERS: usize = 1_000;

/// A queue by vhost and name.
pub type QueueKey = (String, String);

/// One queue's latest numbers, from the freshest source for each.
#[derive(Debug, Clone, Default)]
pub struct QueueFacts {
    /// Ready messages.
    pub ready: Option<u64>,
    pub unacked: Option<u64>,
    pub consumers: Option<u64>,
    /// The head message's timestamp property (seconds since the epoch).
    pub head_timestamp: Option<i64>,
    /// When any sample of the queue was last seen.
    pub last_seen_us: i64,
    /// When a passive declare or firehose count was last seen.
    fresh_ready_us: Option<i64>,
    /// When a passive declare's consumer count was last seen.
    fresh_consumers_us: Option<i64>,
    /// `(when, ready)` at each change, oldest first.
    history: VecDeque<(i64, u64)>,
}

impl QueueFacts {
    /// How much the ready count grew within the last `window_us`: now minus
    /// the lowest count in effect at any moment of the window.
    pub fn growth(&self, now_us: i64, window_us: i64) -> u64 {
        let Some(&(_, current)) = self.history.back() else {
            return 0;
        };
        let cutoff = now_us - window_us;
        let mut lowest = current;
        for &(at, ready) in self.history.iter().rev() {
            lowest = lowest.min(ready);
            if at <= cutoff {
                // The count in effect when the window opened.
                break;
            }
        }
        current - lowest
    }

    /// Age of the oldest ready message in seconds, when known.
    pub fn oldest_age_secs(&self, now_us: i64) -> Option<f64> {
        if self.ready == Some(0) {
            return None;
        }
        let head = self.head_timestamp?;
        Some((now_us as f64 / 1e6 - head as f64).max(0.0))
    }

    fn record_ready(&mut self, at: i64, ready: u64, keep_us: i64) {
        self.ready = Some(ready);
        let at = self.history.back().map_or(at, |&(last, _)| at.max(last));
        if self.history.back().is_none_or(|&(_, last)| last != ready) {
            self.history.push_back((at, ready));
        }
        // Keep the window, plus the one point in effect when it opened.
        while self.history.len() > 1
            && (self.history.len() > MAX_HISTORY_POINTS || self.history[1].0 <= at - keep_us)
        {
            self.history.pop_front();
        }
    }
}

/// One dead letter seen in a dead-letter queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterRecord {
    pub observed_unix_us: i64,
    /// The latest `x-death` reason (`rejected`, `expired`, …).
    pub reason: String,
    /// The queue it was dead-lettered from.
    pub source_queue: Option<String>,
    /// The service that failed it, when known.
    pub service: Option<String>,
}

/// What one vhost's topology says.
#[derive(Debug, Clone, Default)]
struct VhostFacts {
    /// Dead-letter queue → the queues that dead-letter into it.
    dlq_sources: BTreeMap<String, BTreeSet<String>>,
    /// Queue → the services consuming it.
    consumers: BTreeMap<String, BTreeSet<String>>,
}

/// Everything observed, as the rules read it.
#[derive(Debug, Default)]
pub struct Facts {
    queues: HashMap<QueueKey, QueueFacts>,
    vhosts: HashMap<String, VhostFacts>,
    dead_letters: HashMap<QueueKey, VecDeque<DeadLetterRecord>>,
    /// How long depth history must reach back (the longest growth window).
    history_us: i64,
    /// When each vhost's first sample was seen.
    vhost_first_seen_us: HashMap<String, i64>,
    /// Stuck flows now, and finished / failed flows within the failure window.
    pub stuck: u64,
    pub finished: u64,
    pub failed: u64,
}

impl Facts {
    /// Facts keeping `history_us` of depth history.
    pub fn new(history_us: i64) -> Self {
        Self {
            history_us,
            ..Default::default()
        }
    }

    /// Takes a queue sample, preferring fresh sources over the management API.
    pub fn observe_sample(&mut self, sample: &QueueSample) {
        let at = sample.observed_unix_us;
        let key = (sample.vhost.clone(), sample.queue.clone());
        let first_of_vhost = *self
            .vhost_first_seen_us
            .entry(sample.vhost.clone())
            .or_insert(at);
        let is_new = !self.queues.contains_key(&key);
        let queue = self.queues.entry(key.clone()).or_default();
        if is_new && at - first_of_vhost >= NEW_QUEUE_AFTER_US {
            // A queue that appeared while flowscope watched started empty:
            // what it holds at first sight is growth.
            queue.record_ready(at - 1, 0, self.history_us);
        }
        queue.last_seen_us = queue.last_seen_us.max(at);
        let recent = |t: Option<i64>| t.is_some_and(|t| at - t < FRESH_PRECEDENCE_US);
        let (ready, consumers) = match sample.source {
            SampleSource::Management => {
                queue.unacked = sample.messages_unacked.or(queue.unacked);
                queue.head_timestamp = sample.head_message_timestamp;
                (
                    sample
                        .messages_ready
                        .filter(|_| !recent(queue.fresh_ready_us)),
                    sample
                        .consumers
                        .filter(|_| !recent(queue.fresh_consumers_us)),
                )
            }
            SampleSource::PassiveDeclare | SampleSource::Firehose => {
                if sample.messages_ready.is_some() {
                    queue.fresh_ready_us = Some(at);
                }
                if sample.consumers.is_some() {
                    queue.fresh_consumers_us = Some(at);
                }
                (sample.messages_ready, sample.consumers)
            }
        };
        if let Some(consumers) = consumers {
            queue.consumers = Some(consumers);
        }
        if let Some(ready) = ready {
            queue.record_ready(at, ready, self.history_us);
            if ready == 0 {
                // Purged or drained: the dead letters seen are gone with it.
                self.dead_letters.remove(&key);
            }
        }
    }

    /// Learns dead-letter queues and consumers; forgets deleted queues.
    pub fn observe_topology(&mut self, topology: &TopologySnapshot) {
        let mut facts = VhostFacts::default();
        for edge in &topology.dead_letter_edges {
            for target in &edge.targets {
                facts
                    .dlq_sources
                    .entry(target.clone())
                    .or_default()
                    .insert(edge.queue.clone());
            }
        }
        for consumer in &topology.consumers {
            let service = consumer.client_name.clone().or_else(|| {
                topology
                    .connections
                    .iter()
                    .find(|c| c.name == consumer.connection)
                    .and_then(|c| c.client_name.clone())
            });
            if let Some(service) = service {
                facts
                    .consumers
                    .entry(consumer.queue.clone())
                    .or_default()
                    .insert(service);
            }
        }
        let vhost = &topology.vhost;
        let present: BTreeSet<&str> = topology.queues.iter().map(|q| q.name.as_str()).collect();
        // A queue sampled after the snapshot was taken may just be newer than it.
        self.queues.retain(|(v, name), q| {
            v != vhost
                || present.contains(name.as_str())
                || q.last_seen_us > topology.observed_unix_us
        });
        let queues = &self.queues;
        self.dead_letters.retain(|key, _| {
            queues.contains_key(key) || key.0 != *vhost || present.contains(key.1.as_str())
        });
        self.vhosts.insert(vhost.clone(), facts);
    }

    /// Remembers a dead letter found in a dead-letter queue, with its reason
    /// and the service that failed it.
    pub fn observe_dead_letter(&mut self, msg: &BrokerMessage) {
        let Some(dlq) = msg.queue.clone() else {
            return;
        };
        let death = msg.deaths.first();
        let source_queue = death
            .map(|d| d.queue.clone())
            .or_else(|| msg.first_death.as_ref().and_then(|f| f.queue.clone()));
        let reason = death
            .map(|d| d.reason.clone())
            .or_else(|| msg.first_death.as_ref().and_then(|f| f.reason.clone()))
            .unwrap_or_else(|| "unknown".to_owned());
        // The consumer of the source queue failed it; else name the producer.
        let service = source_queue
            .as_deref()
            .and_then(|q| self.consumer_service(&msg.vhost, q))
            .or_else(|| msg.properties.app_id.clone())
            .or_else(|| msg.service.clone());
        let records = self
            .dead_letters
            .entry((msg.vhost.clone(), dlq))
            .or_default();
        records.push_back(DeadLetterRecord {
            observed_unix_us: msg.observed_unix_us,
            reason,
            source_queue,
            service,
        });
        if records.len() > MAX_DEAD_LETTERS {
            records.pop_front();
        }
    }

    /// Every queue sampled so far.
    pub fn queues(&self) -> impl Iterator<Item = (&QueueKey, &QueueFacts)> {
        self.queues.iter()
    }

    /// Whether the queue is the target of some queue's dead-letter exchange.
    pub fn is_dlq(&self, vhost: &str, queue: &str) -> bool {
        self.vhosts
            .get(vhost)
            .is_some_and(|v| v.dlq_sources.contains_key(queue))
    }

    /// The queues that dead-letter into `dlq`, by topology.
    pub fn dlq_sources(&self, vhost: &str, dlq: &str) -> impl Iterator<Item = &String> {
        self.vhosts
            .get(vhost)
            .and_then(|v| v.dlq_sources.get(dlq))
            .into_iter()
            .flatten()
    }

    /// The dead letters seen in `dlq`, oldest first.
    pub fn dead_letters(&self, vhost: &str, dlq: &str) -> impl Iterator<Item = &DeadLetterRecord> {
        self.dead_letters
            .get(&(vhost.to_owned(), dlq.to_owned()))
            .into_iter()
            .flatten()
    }

    /// The service(s) consuming `queue`, by topology (`"a, b"` when several).
    pub fn consumer_service(&self, vhost: &str, queue: &str) -> Option<String> {
        let services = self.vhosts.get(vhost)?.consumers.get(queue)?;
        (!services.is_empty()).then(|| services.iter().cloned().collect::<Vec<_>>().join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000;

    fn sample(source: SampleSource, at: i64, ready: u64) -> QueueSample {
        QueueSample {
            observed_unix_us: at,
            source,
            vhost: "/".into(),
            queue: "q".into(),
            messages_ready: Some(ready),
            messages_unacked: Some(0),
            consumers: Some(1),
            publish_rate: None,
            deliver_rate: None,
            ack_rate: None,
            head_message_timestamp: None,
        }
    }

    fn queue(facts: &Facts) -> &QueueFacts {
        facts.queues().next().unwrap().1
    }

    #[test]
    fn growth_is_measured_from_the_lowest_count_in_the_window() {
        let mut facts = Facts::new(60 * SEC);
        for (at, ready) in [(0, 0), (50, 5), (70, 3), (80, 4)] {
            facts.observe_sample(&sample(SampleSource::PassiveDeclare, at * SEC, ready));
        }
        // At 80 s over 20 s: 5 was in effect at 60 s, 3 came at 70 s.
        assert_eq!(queue(&facts).growth(80 * SEC, 20 * SEC), 1);
        assert_eq!(queue(&facts).growth(80 * SEC, 60 * SEC), 4);
        assert_eq!(queue(&facts).growth(200 * SEC, 60 * SEC), 0);
    }

    #[test]
    fn lagging_management_counts_do_not_override_fresh_ones() {
        let mut facts = Facts::new(60 * SEC);
        facts.observe_sample(&sample(SampleSource::PassiveDeclare, 10 * SEC, 0));
        facts.observe_sample(&sample(SampleSource::Management, 11 * SEC, 5));
        assert_eq!(queue(&facts).ready, Some(0));
        assert_eq!(queue(&facts).growth(11 * SEC, 60 * SEC), 0);
        // With no fresh count for a while, the management API is the truth.
        facts.observe_sample(&sample(SampleSource::Management, 50 * SEC, 5));
        assert_eq!(queue(&facts).ready, Some(5));
    }

    #[test]
    fn a_queue_that_appears_while_watched_grew_from_zero() {
        let mut facts = Facts::new(60 * 1_000_000);
        let other = |at| QueueSample {
            queue: "other".into(),
            ..sample(SampleSource::Management, at, 0)
        };
        facts.observe_sample(&other(0));
        // Seen first with 1 message, 10 s after flowscope started watching the vhost.
        facts.observe_sample(&sample(SampleSource::PassiveDeclare, 10_000_000, 1));
        let q = facts.queues().find(|(k, _)| k.1 == "q").unwrap().1;
        assert_eq!(q.growth(10_000_000, 60_000_000), 1);
        // A queue already there at start is not growth.
        let mut facts = Facts::new(60 * 1_000_000);
        facts.observe_sample(&sample(SampleSource::PassiveDeclare, 0, 3));
        assert_eq!(queue(&facts).growth(0, 60_000_000), 0);
    }
}
