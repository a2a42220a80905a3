//! The one bounded observation channel every collector feeds, with counters.
//!
//! Each source has its own [`ObservationSender`]: it counts what it received
//! and what it dropped, and the counters are shown on `/metrics` as
//! `flowscope_observations_received_total{source="…"}` and
//! `flowscope_observations_dropped_total{source="…"}`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use flowscope_model::Observation;

mod channel;

use channel::Refused;
pub use channel::{ObservationRx, ObservationTx};

/// Observations the channel holds before senders wait or drop.
pub const DEFAULT_CHANNEL_CAPACITY: usize = 65_536;

/// Per-source counters, shared by the collectors and `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, &'static str), Arc<AtomicU64>>>,
    gauges: Mutex<BTreeMap<(&'static str, String), Arc<AtomicU64>>>,
}

impl Metrics {
    /// A counter `flowscope_<name>_total{source="<source>"}`, created at zero.
    pub fn counter(&self, name: &'static str, source: &'static str) -> Arc<AtomicU64> {
        self.counters
            .lock()
            .expect("metrics lock")
            .entry((name, source))
            .or_default()
            .clone()
    }

    /// A gauge `flowscope_<name>{label}` (label like `queue="x"`), created at zero.
    pub fn gauge(&self, name: &'static str, label: String) -> Arc<AtomicU64> {
        self.gauges
            .lock()
            .expect("metrics lock")
            .entry((name, label))
            .or_default()
            .clone()
    }

    /// The current value of a counter.
    pub fn value(&self, name: &'static str, source: &'static str) -> u64 {
        self.counter(name, source).load(Ordering::Relaxed)
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let counters = self.counters.lock().expect("metrics lock");
        let mut last = "";
        for ((name, source), value) in counters.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE flowscope_{name}_total counter");
                last = name;
            }
            let _ = writeln!(
                out,
                "flowscope_{name}_total{{source=\"{source}\"}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        let gauges = self.gauges.lock().expect("metrics lock");
        let mut last = "";
        for ((name, label), value) in gauges.iter() {
            if *name != last {
                let _ = writeln!(out, "# TYPE flowscope_{name} gauge");
                last = name;
            }
            let _ = writeln!(
                out,
                "flowscope_{name}{{{label}}} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}

/// Creates the observation channel, holding at most `capacity` observations.
pub fn channel(capacity: usize) -> (ObservationTx, ObservationRx) {
    channel::channel(capacity)
}

/// One source's handle on the observation channel.
#[derive(Debug, Clone)]
pub struct ObservationSender {
    tx: ObservationTx,
    received: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

/// Why observations were not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// The channel is full: the pipeline is behind. Retry later.
    #[error("the observation pipeline is full")]
    Full,
    /// The pipeline has shut down.
    #[error("the observation pipeline is closed")]
    Closed,
    /// More at once than the pipeline ever holds: never accepted as it is.
    #[error(
        "{count} observations at once are more than the pipeline holds \
         (pipeline.channel_capacity = {capacity}); send fewer at a time or raise it"
    )]
    TooMany { count: usize, capacity: usize },
}

impl SendError {
    fn from_refused(refused: Refused, count: usize) -> Self {
        match refused {
            Refused::Full => SendError::Full,
            Refused::Closed => SendError::Closed,
            Refused::TooMany { capacity } => SendError::TooMany { count, capacity },
        }
    }
}

impl ObservationSender {
    /// A sender counting under `source` (`firehose`, `otlp`, `management`, …).
    pub fn new(tx: ObservationTx, metrics: &Metrics, source: &'static str) -> Self {
        Self {
            tx,
            received: metrics.counter("observations_received", source),
            dropped: metrics.counter("observations_dropped", source),
        }
    }

    /// Waits for room: for sources that must not lose data and can wait.
    pub async fn send(&self, observation: Observation) -> Result<(), SendError> {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.tx.send(observation).await.map_err(|refused| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            SendError::from_refused(refused, 1)
        })
    }

    /// Sends now or drops and counts: for samples superseded by the next one.
    pub fn send_or_drop(&self, observation: Observation) -> Result<(), SendError> {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(observation).map_err(|refused| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            SendError::from_refused(refused, 1)
        })
    }

    /// All or nothing: accepts the whole batch if there is room for it now,
    /// else refuses it (the sender retries), so accepted data is never dropped.
    pub fn send_batch(&self, batch: Vec<Observation>) -> Result<(), SendError> {
        let n = batch.len();
        match self.tx.try_send_batch(batch) {
            Ok(()) => {
                self.received.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(refused) => {
                self.dropped.fetch_add(n as u64, Ordering::Relaxed);
                Err(SendError::from_refused(refused, n))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flowscope_model::{QueueSample, SampleSource};

    /// A queue sample of `queue`: an observation to send in tests.
    pub(crate) fn sample(queue: &str) -> Observation {
        Observation::QueueSample(Box::new(QueueSample {
            observed_unix_us: 0,
            source: SampleSource::Management,
            vhost: "/".into(),
            queue: queue.into(),
            messages_ready: Some(1),
            messages_unacked: None,
            consumers: None,
            publish_rate: None,
            deliver_rate: None,
            ack_rate: None,
            head_message_timestamp: None,
        }))
    }

    #[test]
    fn a_full_channel_refuses_whole_batches_and_counts_them() {
        let metrics = Metrics::default();
        let (tx, mut rx) = channel(3);
        let sender = ObservationSender::new(tx, &metrics, "otlp");
        sender.send_batch(vec![sample("q"), sample("q")]).unwrap();
        assert_eq!(
            sender.send_batch(vec![sample("q"), sample("q")]),
            Err(SendError::Full)
        );
        assert_eq!(metrics.value("observations_received", "otlp"), 2);
        assert_eq!(metrics.value("observations_dropped", "otlp"), 2);
        assert_eq!(rx.try_recv_many(&mut Vec::new(), 10), Ok(2));
        let text = metrics.render();
        assert!(
            text.contains("flowscope_observations_dropped_total{source=\"otlp\"} 2"),
            "{text}"
        );
    }
}
