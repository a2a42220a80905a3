//! Who publishes where and how long messages wait: the edges of the pipeline view.

use std::collections::{BTreeMap, VecDeque};

use flowscope_model::{BrokerMessage, Hop};

/// Dead letters kept per dead-letter queue.
const DEAD_LETTERS_KEPT: usize = 500;
/// Weight of a new latency sample in the moving average.
const EWMA_ALPHA: f64 = 0.2;

/// Publish counts, hop latencies and recent dead letters.
#[derive(Debug, Default)]
pub struct Traffic {
    /// (vhost, service, exchange) → messages published.
    pub publishes: BTreeMap<(String, String, String), u64>,
    /// (vhost, queue) → (mean queue wait µs, mean processing µs).
    pub latency: BTreeMap<(String, String), (f64, f64)>,
    /// (vhost, dead-letter queue) → its recent dead letters.
    pub dead_letters: BTreeMap<(String, String), VecDeque<BrokerMessage>>,
}

impl Traffic {
    /// Counts a publish.
    pub fn published(&mut self, msg: &BrokerMessage) {
        let service = msg
            .service
            .clone()
            .or_else(|| msg.properties.app_id.clone())
            .unwrap_or_else(|| "unknown".into());
        *self
            .publishes
            .entry((msg.vhost.clone(), service, msg.exchange.clone()))
            .or_default() += 1;
    }

    /// Keeps a dead letter (by message id, latest copy wins).
    pub fn dead_lettered(&mut self, msg: &BrokerMessage) {
        let Some(queue) = msg.queue.clone() else {
            return;
        };
        let list = self
            .dead_letters
            .entry((msg.vhost.clone(), queue))
            .or_default();
        list.retain(|m| {
            m.properties.message_id.is_none()
                || m.properties.message_id != msg.properties.message_id
        });
        if list.len() == DEAD_LETTERS_KEPT {
            list.pop_front();
        }
        list.push_back(msg.clone());
    }

    /// Learns hop latencies from an updated flow's hops.
    pub fn learn(&mut self, vhost: &str, hops: &[Hop]) {
        for hop in hops {
            let (Some(queue), Some(wait)) = (&hop.queue, hop.queue_wait_us) else {
                continue;
            };
            let entry = self
                .latency
                .entry((vhost.to_owned(), queue.to_string()))
                .or_insert((wait as f64, hop.processing_us.unwrap_or(0) as f64));
            entry.0 += EWMA_ALPHA * (wait as f64 - entry.0);
            if let Some(processing) = hop.processing_us {
                entry.1 += EWMA_ALPHA * (processing as f64 - entry.1);
            }
        }
    }

    /// Forgets dead letters no longer in their queue (it was purged or redriven).
    pub fn clear_dead_letters(&mut self, vhost: &str, queue: &str) {
        self.dead_letters
            .remove(&(vhost.to_owned(), queue.to_owned()));
    }
}
