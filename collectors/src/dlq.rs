//! Dead-letter queues, read without removing anything.
//!
//! Dead-lettering emits no firehose event, so when a dead-letter queue grows
//! the [`DeadLetterInspector`] takes up to N messages with `basic.get`
//! (unacknowledged, so the broker keeps them), turns each new one into a
//! `dead_letter` observation with its `x-death` history, and hands them all
//! back with one `basic.nack(multiple, requeue)`: they return to their
//! places. At most one inspection per queue per interval.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use flowscope_model::now_unix_us;
use lapin::Channel;
use lapin::options::{BasicGetOptions, BasicNackOptions};

use crate::firehose::convert;
use crate::pipeline::ObservationSender;
use crate::redact::RedactConfig;

/// Message ids remembered as already reported, at most.
const MAX_SEEN: usize = 100_000;

/// Peeks at dead-letter queues of one vhost.
#[derive(Debug)]
pub struct DeadLetterInspector {
    pub vhost: String,
    pub max_messages: u16,
    pub interval: Duration,
    pub redact: RedactConfig,
    pub sender: ObservationSender,
    last: HashMap<String, Instant>,
    seen: HashSet<String>,
    seen_order: VecDeque<String>,
}

impl DeadLetterInspector {
    /// An inspector reporting through `sender`.
    pub fn new(
        vhost: String,
        max_messages: u16,
        interval: Duration,
        redact: RedactConfig,
        sender: ObservationSender,
    ) -> Self {
        Self {
            vhost,
            max_messages,
            interval,
            redact,
            sender,
            last: HashMap::new(),
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
        }
    }

    /// Whether `queue` may be inspected now (rate bound).
    pub fn due(&self, queue: &str) -> bool {
        self.max_messages > 0
            && self
                .last
                .get(queue)
                .is_none_or(|t| t.elapsed() >= self.interval)
    }

    /// Peeks at up to `max_messages` of `queue` and reports the new ones;
    /// returns how many were new. Every message is handed back.
    pub async fn inspect(&mut self, channel: &Channel, queue: &str) -> lapin::Result<usize> {
        self.last.insert(queue.to_owned(), Instant::now());
        let mut last_tag = None;
        let mut found = Vec::new();
        let result = async {
            for _ in 0..self.max_messages {
                let Some(msg) = channel
                    .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                    .await?
                else {
                    break;
                };
                let d = &msg.delivery;
                last_tag = Some(d.delivery_tag);
                let id = d
                    .properties
                    .message_id()
                    .as_ref()
                    .map(|id| id.to_string())
                    .unwrap_or_else(|| format!("body-{:x}", fingerprint(&d.data)));
                found.push((
                    id,
                    convert::dead_letter(&self.vhost, queue, d, now_unix_us(), &self.redact),
                ));
            }
            Ok::<_, lapin::Error>(())
        }
        .await;
        if let Some(tag) = last_tag {
            let back = BasicNackOptions {
                multiple: true,
                requeue: true,
            };
            channel.basic_nack(tag, back).await?;
        }
        result?;
        let mut new = 0;
        for (id, observation) in found {
            if self.remember(format!("{queue}\u{0}{id}")) {
                new += 1;
                let _ = self.sender.send_or_drop(observation);
            }
        }
        Ok(new)
    }

    fn remember(&mut self, key: String) -> bool {
        if !self.seen.insert(key.clone()) {
            return false;
        }
        self.seen_order.push_back(key);
        if self.seen_order.len() > MAX_SEEN
            && let Some(old) = self.seen_order.pop_front()
        {
            self.seen.remove(&old);
        }
        true
    }
}

fn fingerprint(data: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}
