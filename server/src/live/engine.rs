//! The engine: observations in; live state, live updates and store batches out.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use flowscope_collectors::pipeline::Metrics;
use flowscope_collectors::pipeline::ObservationRx;
use flowscope_model::{LiveUpdate, Observation, now_unix_us};
use tokio::sync::broadcast;

use super::SharedLive;
use crate::alerts::notify::NotifierHandle;
use crate::store::{StoreWriterHandle, WriteBatch};

/// How often changes are published and handed to the store.
pub const PUBLISH_INTERVAL: Duration = Duration::from_millis(100);
/// How often time-dependent judgements are redone (stuck, quiet, alerts).
pub const TICK_INTERVAL: Duration = Duration::from_millis(500);
/// How long a due publish waits for a send to wake the engine before its
/// timer does (when no observations come).
pub const RIDE_SLACK: Duration = Duration::from_millis(20);
/// Observations taken under one lock: at least this many when waiting (whole
/// batches, so a large OTLP export is taken at once).
const INGEST_BATCH: usize = 1_000;

/// Runs the live state.
#[derive(Debug)]
pub struct Engine {
    pub live: SharedLive,
    pub bus: broadcast::Sender<LiveUpdate>,
    pub store: Option<StoreWriterHandle>,
    pub notifier: Option<NotifierHandle>,
    pub metrics: Arc<Metrics>,
}

impl Engine {
    /// Consumes observations until the channel closes (the collectors
    /// stopped), then publishes and stores what is left.
    ///
    /// Observations are taken in when [`INGEST_BATCH`] of them wait, and
    /// before each publish: not as each export arrives. What is published
    /// is the same (nothing is published between two publishes), and the
    /// correlator's code and data, long idle and far from the caches when a
    /// small export comes in, are brought back once per batch.
    ///
    /// Publishing (every [`PUBLISH_INTERVAL`]) and the tick (every
    /// [`TICK_INTERVAL`], just before a publish) ride on the wake-ups
    /// senders cause anyway: once a publish is due, the next send wakes
    /// the engine for it. Only when none comes within [`RIDE_SLACK`] does a
    /// timer wake it. Under load the process is then woken by exports
    /// alone, not also by the two timers (12 a second) when they did not
    /// fall on an export (docs/benchmarks.md, sixteenth sitting).
    pub async fn run(self, mut observations: ObservationRx) {
        let start = Instant::now();
        let mut next_publish = start + PUBLISH_INTERVAL;
        let mut next_tick = start + TICK_INTERVAL;
        let timer = tokio::time::sleep_until((next_publish + RIDE_SLACK).into());
        tokio::pin!(timer);
        let mut pending: Vec<Observation> = Vec::new();
        let mut batch: Vec<Observation> = Vec::new();
        loop {
            tokio::select! {
                () = observations.filled_or_due(INGEST_BATCH, next_publish) => {}
                () = timer.as_mut() => {}
            }
            let mut closed = false;
            loop {
                match observations.try_recv_many(&mut batch, INGEST_BATCH) {
                    Ok(0) => break,
                    Ok(_) => {
                        if self.store.is_some() {
                            // The store writes what was seen, the correlator keeps
                            // its own copy; with no store the batch is moved in whole.
                            pending.extend(batch.iter().cloned());
                        }
                        self.ingest(&mut batch);
                    }
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if closed {
                break;
            }
            let now = Instant::now();
            if now >= next_publish {
                if now >= next_tick {
                    self.tick();
                    next_tick = later(next_tick, TICK_INTERVAL, now);
                }
                self.publish(&mut pending).await;
                next_publish = later(next_publish, PUBLISH_INTERVAL, now);
                timer.as_mut().reset((next_publish + RIDE_SLACK).into());
            }
        }
        self.tick();
        self.publish(&mut pending).await;
        if let Some(notifier) = self.notifier {
            notifier.shutdown(std::time::Duration::from_secs(5)).await;
        }
        tracing::info!("engine stopped");
    }

    /// Feeds a batch to the live state, moving each observation to where it
    /// is kept. The buffer is left empty with its room: the next batch is
    /// taken into it, not into one grown again by doubling (a fresh
    /// allocation per doubling, on pages the kernel zeroes: ~5.5 % of the
    /// CPU at 10k spans/s, docs/benchmarks.md, twelfth sitting).
    fn ingest(&self, batch: &mut Vec<Observation>) {
        let mut live = self.live.write().expect("live lock");
        live.correlator.prefetch(batch);
        for obs in batch.drain(..) {
            match &obs {
                Observation::QueueSample(sample) => {
                    live.queues.observe(sample);
                    live.alerts.observe_sample(sample);
                    continue;
                }
                Observation::Topology(topology) => {
                    live.queues.observe_topology(topology);
                    live.alerts.observe_topology(topology);
                }
                Observation::DeadLetter(msg) => {
                    live.alerts.observe_dead_letter(msg);
                    live.traffic.dead_lettered(msg);
                }
                Observation::Publish(msg) => live.traffic.published(msg),
                Observation::Deliver(msg) if !msg.deaths.is_empty() => {
                    live.traffic.dead_lettered(msg);
                }
                Observation::Deliver(_) | Observation::Span(_) => {}
            }
            if let Observation::Topology(topology) = obs {
                live.topology.insert(topology.vhost.clone(), *topology);
            } else {
                live.correlator.ingest(obs);
            }
        }
    }

    fn tick(&self) {
        let now = now_unix_us();
        let mut live = self.live.write().expect("live lock");
        let window_us = live.alerts.failure_window_secs() as i64 * 1_000_000;
        let stats = live.correlator.tick_with_stats(now, window_us);
        live.alerts
            .set_flow_stats(stats.stuck, stats.finished, stats.failed);
    }

    async fn publish(&self, pending: &mut Vec<Observation>) {
        let now = now_unix_us();
        let (update, batch) = {
            let mut guard = self.live.write().expect("live lock");
            let live = &mut *guard;
            // Whole flows only for the store; the live stream needs their summaries.
            let (summaries, details, removed) = if self.store.is_some() {
                let changes = live.correlator.take_changes(now);
                let summaries = changes.updated.iter().map(|f| f.summary.clone()).collect();
                (summaries, changes.updated, changes.removed)
            } else if self.bus.receiver_count() == 0 {
                // No store and no one on the live stream: judge, make
                // nothing (a client that connects now starts from a
                // snapshot of the live flows, taken after this).
                (Vec::new(), Vec::new(), live.correlator.judge_changes(now))
            } else {
                let changes = live.correlator.take_summaries(now);
                (changes.updated, Vec::new(), changes.removed)
            };
            let traffic = &mut live.traffic;
            live.correlator
                .learn_new_hops(|vhost, hops| traffic.learn(vhost, hops));
            let alerts = live.alerts.evaluate(now);
            live.stats.num_live_flows = live.correlator.num_flows();
            live.stats.observations_received = sum(&self.metrics, "observations_received");
            live.stats.observations_dropped = sum(&self.metrics, "observations_dropped");
            let update = LiveUpdate {
                flows: summaries,
                removed_flows: removed.clone(),
                queues: live.queues.take_changed(),
                alerts: alerts.clone(),
                stats: Some(live.stats.clone()),
            };
            let batch = WriteBatch {
                observations: std::mem::take(pending),
                flows: details,
                deleted_flows: removed,
                alerts: alerts
                    .iter()
                    .filter_map(|a| serde_json::to_value(a).ok())
                    .collect(),
            };
            (update, batch)
        };
        if let Some(notifier) = &self.notifier {
            for alert in &update.alerts {
                notifier.notify(alert.clone());
            }
        }
        if update.flows.len()
            + update.queues.len()
            + update.alerts.len()
            + update.removed_flows.len()
            > 0
        {
            let _ = self.bus.send(update);
        }
        if let Some(store) = &self.store
            && !batch.is_empty()
            && store.send(batch).await.is_err()
        {
            tracing::error!("the store writer has stopped; this batch is not stored");
        }
    }
}

fn sum(metrics: &Metrics, name: &'static str) -> u64 {
    ["firehose", "otlp", "management", "passive_declare", "dlq"]
        .iter()
        .map(|source| metrics.counter(name, source).load(Ordering::Relaxed))
        .sum()
}

/// The next time of a schedule every `interval` from `last`: the one
/// after `now`, skipping those missed (a late publish is not followed by
/// others in a burst).
fn later(last: Instant, interval: Duration, now: Instant) -> Instant {
    let next = last + interval;
    if next > now { next } else { now + interval }
}
