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
use tokio::sync::mpsc;

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

/// Creates the observation channel.
pub fn channel(capacity: usize) -> (mpsc::Sender<Observation>, mpsc::Receiver<Observation>) {
    mpsc::channel(capacity)
}

/// One source's handle on the observation channel.
#[derive(Debug, Clone)]
pub struct ObservationSender {
    tx: mpsc::Sender<Observation>,
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
}

impl ObservationSender {
    /// A sender counting under `source` (`firehose`, `otlp`, `management`, …).
    pub fn new(tx: mpsc::Sender<Observation>, metrics: &Metrics, source: &'static str) -> Self {
        Self {
            tx,
            received: metrics.counter("observations_received", source),
            dropped: metrics.counter("observations_dropped", source),
        }
    }

    /// Waits for room: for sources that must not lose data and can wait.
    pub async fn send(&self, observation: Observation) -> Result<(), SendError> {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.tx.send(observation).await.map_err(|_| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            SendError::Closed
        })
    }

    /// Sends now or drops and counts: for samples superseded by the next one.
    pub fn send_or_drop(&self, observation: Observation) -> Result<(), SendError> {
        self.received.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(observation).map_err(|err| {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            match err {
                mpsc::error::TrySendError::Full(_) => SendError::Full,
                mpsc::error::TrySendError::Closed(_) => SendError::Closed,
            }
        })
    }

    /// All or nothing: accepts the whole batch if there is room for it now,
    /// else refuses it (the sender retries), so accepted data is never dropped.
    pub fn send_batch(&self, batch: Vec<Observation>) -> Result<(), SendError> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len();
        let permits = self.tx.try_reserve_many(n).map_err(|err| match err {
            mpsc::error::TrySendError::Full(_) => SendError::Full,
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        });
        match permits {
            Ok(permits) => {
                for (permit, obs) in permits.zip(batch) {
                    permit.send(obs);
                }
                self.received.fetch_add(n as u64, Ordering::Relaxed);
                Ok(())
            }
            Err(err) => {
                self.dropped.fetch_add(n as u64, Ordering::Relaxed);
                Err(err)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_model::{QueueSample, SampleSource};

    fn sample() -> Observation {
        Observation::QueueSample(Box::new(QueueSample {
            observed_unix_us: 0,
            source: SampleSource::Management,
            vhost: "/".into(),
            queue: "q".into(),
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
        sender.send_batch(vec![sample(), sample()]).unwrap();
        assert_eq!(
            sender.send_batch(vec![sample(), sample()]),
            Err(SendError::Full)
        );
        assert_eq!(metrics.value("observations_received", "otlp"), 2);
        assert_eq!(metrics.value("observations_dropped", "otlp"), 2);
        assert!(rx.try_recv().is_ok() && rx.try_recv().is_ok() && rx.try_recv().is_err());
        let text = metrics.render();
        assert!(
            text.contains("flowscope_observations_dropped_total{source=\"otlp\"} 2"),
            "{text}"
        );
    }
}
