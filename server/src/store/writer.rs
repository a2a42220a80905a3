//! The batching writer: gathers [`WriteBatch`]es from a bounded channel and
//! writes them in few transactions, retrying through a store's bad moments,
//! and enforces retention every hour. Encoding a batch and writing the one
//! before it overlap (two stages), so both cores work when the store is busy.
//!
//! What it holds is bounded by *items* (observations, flows, alerts), not by
//! batches: a batch of the engine can hold a hundred items or twenty thousand,
//! and a bound in batches once let ~140,000 accepted spans pile up here, more
//! than could be written in the shutdown's time. With [`BUFFERED_ITEMS_MAX`]
//! the engine waits sooner, the collectors' channel fills, and the OTLP
//! receiver answers "retry later" instead of accepting what cannot be stored.
//!
//! Counters on `/metrics`, labelled with the backend (`sqlite`, `postgres`):
//! `flowscope_store_rows_written_total`, `flowscope_store_write_failures_total`
//! (failed attempts) and `flowscope_store_rows_dropped_total` (rows given up on).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flowscope_collectors::pipeline::Metrics;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{Store, StoreConfig, WriteBatch};

/// Batches the channel holds before senders wait.
pub const WRITER_CHANNEL_BATCHES: usize = 64;
/// Items (observations, flows, alerts) queued or being written, at most,
/// before senders wait: a few seconds of writing, so that what is accepted
/// can be written when flowscope stops.
pub const BUFFERED_ITEMS_MAX: usize = 65_536;
/// How often old rows are deleted (and once at start).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);
/// Attempts at one write before its rows are given up: about a minute of
/// waiting, so a short outage loses nothing and a long one does not stall
/// the pipeline for good.
const MAX_ATTEMPTS: u32 = 8;
const FIRST_RETRY: Duration = Duration::from_millis(250);
const MAX_RETRY: Duration = Duration::from_secs(15);

/// Sends batches to a running [`StoreWriter`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct StoreWriterHandle {
    tx: mpsc::Sender<Queued>,
    room: Arc<Semaphore>,
    rows_written: Arc<AtomicU64>,
}

/// A batch and its share of [`BUFFERED_ITEMS_MAX`], given back once written.
#[derive(Debug)]
struct Queued {
    batch: WriteBatch,
    room: OwnedSemaphorePermit,
}

/// An encoded batch on its way to the write stage, with the room it holds.
struct Encoded {
    rows: super::codec::BatchRows,
    held: Vec<OwnedSemaphorePermit>,
}

/// The writer has stopped: nothing more will be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the store writer has stopped")]
pub struct StoreWriterClosed;

impl StoreWriterHandle {
    /// Queues a batch, waiting while the writer holds [`BUFFERED_ITEMS_MAX`]
    /// items (backpressure). A batch larger than that waits for an empty writer.
    pub async fn send(&self, batch: WriteBatch) -> Result<(), StoreWriterClosed> {
        if batch.is_empty() {
            return Ok(());
        }
        let items = batch.len().clamp(1, BUFFERED_ITEMS_MAX) as u32;
        let room = self
            .room
            .clone()
            .acquire_many_owned(items)
            .await
            .map_err(|_| StoreWriterClosed)?;
        self.tx
            .send(Queued { batch, room })
            .await
            .map_err(|_| StoreWriterClosed)
    }

    /// A view of the writer's progress that does not keep it running.
    pub fn progress(&self) -> WriterProgress {
        WriterProgress {
            room: self.room.clone(),
            rows_written: self.rows_written.clone(),
        }
    }
}

/// How far a [`StoreWriter`] is: for a shutdown that waits while it writes.
#[derive(Debug, Clone)]
pub struct WriterProgress {
    room: Arc<Semaphore>,
    rows_written: Arc<AtomicU64>,
}

impl WriterProgress {
    /// Items queued or being written now.
    pub fn buffered(&self) -> usize {
        BUFFERED_ITEMS_MAX.saturating_sub(self.room.available_permits())
    }

    /// Rows written since start: grows while the writer makes progress.
    pub fn rows_written(&self) -> u64 {
        self.rows_written.load(Ordering::Relaxed)
    }
}

/// Writes what the correlator produces, in batches.
#[derive(Debug)]
pub struct StoreWriter {
    store: Store,
    batch_max: usize,
    flush_interval: Duration,
    rows_written: Arc<AtomicU64>,
    write_failures: Arc<AtomicU64>,
    rows_dropped: Arc<AtomicU64>,
}

impl StoreWriter {
    /// A writer for the store, with the configuration's batching.
    pub fn new(store: Store, config: &StoreConfig, metrics: &Metrics) -> Self {
        let backend = store.backend_name();
        Self {
            batch_max: config.batch_max.max(1),
            flush_interval: Duration::from_millis(config.flush_interval_ms.max(1)),
            rows_written: metrics.counter("store_rows_written", backend),
            write_failures: metrics.counter("store_write_failures", backend),
            rows_dropped: metrics.counter("store_rows_dropped", backend),
            store,
        }
    }

    /// Starts a writer; it ends when every handle is dropped, after writing
    /// what it holds.
    pub fn spawn(
        store: Store,
        config: &StoreConfig,
        metrics: Arc<Metrics>,
    ) -> (StoreWriterHandle, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(WRITER_CHANNEL_BATCHES);
        let writer = StoreWriter::new(store, config, &metrics);
        let handle = StoreWriterHandle {
            tx,
            room: Arc::new(Semaphore::new(BUFFERED_ITEMS_MAX)),
            rows_written: writer.rows_written.clone(),
        };
        (handle, tokio::spawn(writer.run(rx)))
    }

    /// Two stages, so that encoding a batch (JSON, compression: CPU) runs
    /// while the one before it is written (the database's own thread):
    /// this task gathers and encodes, a second one writes, in order, with
    /// at most one encoded batch waiting between them.
    async fn run(self, rx: mpsc::Receiver<Queued>) {
        let writer = Arc::new(self);
        let (encoded_tx, encoded_rx) = mpsc::channel(1);
        let write_stage = tokio::spawn(Arc::clone(&writer).write_stage(encoded_rx));
        writer.gather_stage(rx, encoded_tx).await;
        if let Err(err) = write_stage.await {
            tracing::error!(error = %err, "the store's write stage failed");
        }
        tracing::info!(
            backend = writer.store.backend_name(),
            "store writer stopped"
        );
    }

    /// Gathers batches until `batch_max` items or `flush_interval`, encodes
    /// them, and hands them to the write stage, until the channel closes.
    async fn gather_stage(&self, mut rx: mpsc::Receiver<Queued>, out: mpsc::Sender<Encoded>) {
        let mut pending = WriteBatch::default();
        // The room of what `pending` holds, given back once it is written.
        let mut held: Vec<OwnedSemaphorePermit> = Vec::new();
        let mut deadline = None;
        loop {
            let flush_at = deadline.unwrap_or_else(|| Instant::now() + RETENTION_INTERVAL);
            tokio::select! {
                received = rx.recv() => {
                    let Some(Queued { batch, room }) = received else { break };
                    if pending.is_empty() {
                        deadline = Some(Instant::now() + self.flush_interval);
                    }
                    pending.merge(batch);
                    held.push(room);
                    if pending.len() >= self.batch_max {
                        self.encode(&mut pending, std::mem::take(&mut held), &out).await;
                        deadline = None;
                    }
                }
                () = tokio::time::sleep_until(flush_at), if deadline.is_some() => {
                    self.encode(&mut pending, std::mem::take(&mut held), &out).await;
                    deadline = None;
                }
            }
        }
        self.encode(&mut pending, held, &out).await;
    }

    /// Writes encoded batches in order, and enforces retention between them.
    async fn write_stage(self: Arc<Self>, mut rx: mpsc::Receiver<Encoded>) {
        let mut retention = tokio::time::interval(RETENTION_INTERVAL);
        retention.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                encoded = rx.recv() => {
                    let Some(encoded) = encoded else { break };
                    self.write(&encoded.rows).await;
                    // The room comes back only now: what is held counts until written.
                    drop(encoded.held);
                }
                _ = retention.tick() => self.enforce_retention().await,
            }
        }
    }

    /// Encodes what is pending and queues it for the write stage; a batch
    /// the store cannot encode is dropped and counted.
    async fn encode(
        &self,
        pending: &mut WriteBatch,
        held: Vec<OwnedSemaphorePermit>,
        out: &mpsc::Sender<Encoded>,
    ) {
        let mut batch = std::mem::take(pending);
        let num_alerts = batch.alerts.len();
        batch.alerts.retain(super::codec::has_alert_id);
        if batch.alerts.len() < num_alerts {
            let dropped = (num_alerts - batch.alerts.len()) as u64;
            self.rows_dropped.fetch_add(dropped, Ordering::Relaxed);
            tracing::error!(
                alerts = dropped,
                "dropped alert records without a string \"id\": the alert engine must give each one"
            );
        }
        if batch.is_empty() {
            return;
        }
        let num_items = batch.len() as u64;
        let rows = match Store::encode(batch).await {
            Ok(rows) => rows,
            Err(err) => {
                self.write_failures.fetch_add(1, Ordering::Relaxed);
                self.rows_dropped.fetch_add(num_items, Ordering::Relaxed);
                tracing::error!(error = %err, items = num_items, "dropped a batch the store cannot encode");
                return;
            }
        };
        if out.send(Encoded { rows, held }).await.is_err() {
            tracing::error!(
                items = num_items,
                "the store's write stage has stopped; this batch is not stored"
            );
        }
    }

    /// Writes encoded rows, retrying with backoff; gives up (and counts the
    /// rows dropped) after [`MAX_ATTEMPTS`] or on data the store refuses.
    async fn write(&self, rows: &super::codec::BatchRows) {
        let num_rows = rows.num_rows() as u64;
        let mut wait = FIRST_RETRY;
        for attempt in 1..=MAX_ATTEMPTS {
            let Err(err) = self.store.write_rows(rows).await else {
                self.rows_written.fetch_add(num_rows, Ordering::Relaxed);
                return;
            };
            self.write_failures.fetch_add(1, Ordering::Relaxed);
            if !err.is_retryable() || attempt == MAX_ATTEMPTS {
                self.rows_dropped.fetch_add(num_rows, Ordering::Relaxed);
                tracing::error!(error = %err, rows = num_rows, attempt, "gave up writing a batch to the store: its rows are lost");
                return;
            }
            tracing::error!(error = %err, rows = num_rows, attempt, retry_in = ?wait, "failed to write a batch to the store; retrying");
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(MAX_RETRY);
        }
    }

    async fn enforce_retention(&self) {
        match self
            .store
            .enforce_retention(flowscope_model::now_unix_us())
            .await
        {
            Ok(report) if report.num_deleted() > 0 => tracing::info!(
                observations = report.num_observations,
                queue_samples = report.num_queue_samples,
                flows = report.num_flows,
                alerts = report.num_alerts,
                size_bound_hit = report.size_bound_hit,
                size_bytes = report.size_bytes_after,
                "deleted old rows from the store"
            ),
            Ok(_) => {}
            Err(err) => tracing::error!(error = %err, "failed to delete old rows from the store"),
        }
    }
}
