//! The store: observations, flows, queue samples and alerts, kept on disk.
//!
//! One [`Store`] type over two small backends chosen by the URL:
//! `sqlite://data/flowscope.db` (the default: an embedded file, WAL mode,
//! no fsync per write) or `postgres://user@host/db` (several servers can share
//! it). Both run the same SQL (`sql.rs`, executed by the generic
//! `sql_store.rs`), the same row conversions (`codec.rs`) and the same
//! retention (`retention.rs`); `sqlite.rs` and `postgres.rs` hold what
//! differs: connecting, the table definitions, measuring size.
//!
//! ```text
//! Correlator ──► StoreWriterHandle::send(WriteBatch) ──► StoreWriter (coalesce, one transaction per flush, retry)
//!                                                             │                     └─ enforce_retention, hourly
//!                                                             ▼
//! API ◄── Store::flows / flow / lookup / queue_history / alerts / stats
//! server start ◄── Store::observations_since (replay into the correlator)
//! ```
//!
//! Each observation is stored once, compressed: the observations of a batch
//! go into blocks of up to 128 (`blocks.rs`: zstd of JSON lines), and a flow
//! row holds its summary, its hops (zstd JSON) and, instead of copies of its
//! messages and spans, references `(block id, line)` to the observations they
//! came from (`items.rs`; a message the store cannot place is kept inline).
//! A flow rewritten as it grows so rewrites a few hundred bytes, not its
//! events, and its lookup keys are changed, not rewritten: the write reads
//! the keys stored for its flows first, inserts the new ones and deletes the
//! ones a flow lost (PostgreSQL keeps a dead copy of every row and index
//! entry an update or delete touches, until `VACUUM`, in files that do not
//! shrink).
//!
//! Tables (the same in both backends):
//!
//! | table | columns | indexes |
//! |---|---|---|
//! | `observation_blocks` | `seq` (write order), `id` (random, named before writing), `min_unix_us`, `max_unix_us`, `num_observations`, `data` (zstd of JSON lines; a line deleted by retention is empty) | `id`, `max_unix_us` |
//! | `queue_samples` | `vhost`, `queue`, `unix_us`, `source`, `ready`, `unacked`, `consumers`, `publish_rate`, `deliver_rate`, `ack_rate`, `head_message_timestamp` | `(vhost, queue, unix_us)`, `unix_us` |
//! | `flows` | `id` (key), `business_key`, `status`, `started_unix_us`, `last_seen_unix_us`, `services`, `event_types` (`\|a\|b\|`), `summary` (zstd JSON), `hops` (zstd JSON), `items` (the messages and spans: references into blocks, see `items.rs`) | `started_unix_us`, `last_seen_unix_us`, `(status, started_unix_us)` |
//! | `flow_keys` | `value` (a business key, message id, trace id or correlation id), `flow_id` | key `(value, flow_id)`, `flow_id` |
//! | `alerts` | `id` (key), `updated_unix_us`, `doc` (the alert, JSON) | `updated_unix_us` |
//!
//! Queue samples are observations too, but live in their own table so a
//! queue's history is an indexed range scan; `observation_blocks` holds the rest.
//!
//! A store written by flowscope before blocks (a table `observations`, one
//! row per observation), or by the first layout with blocks (keys stored
//! with their kind, `flow_keys.kind`; never released), is refused at open
//! with [`StoreError::OldSchema`], which says to move it away: it is not
//! converted.

mod blocks;
mod codec;
mod error;
mod items;
mod postgres;
mod read;
mod retention;
mod sql;
mod sql_store;
mod sqlite;
mod writer;
mod written_keys;

use std::sync::{Arc, Mutex};

use flowscope_model::{FlowDetail, FlowStatus, FlowSummary, Observation, QueueSample};
use serde::{Deserialize, Serialize};

pub use error::{Result, StoreError};
pub use writer::{StoreWriter, StoreWriterClosed, StoreWriterHandle, WriterProgress};

/// The store used when none is configured: a file next to the working directory.
pub const DEFAULT_STORE_URL: &str = "sqlite://data/flowscope.db";
/// Three days: long enough to look back over a weekend's incidents.
pub const DEFAULT_RETENTION_HOURS: u64 = 72;
/// 1 GiB: weeks of a demo's traffic, small enough for any laptop.
pub const DEFAULT_MAX_SIZE_MIB: u64 = 1024;
/// Items (observations, flows, alerts) per transaction: large enough to
/// amortize the commit, small enough to keep a transaction short.
pub const DEFAULT_BATCH_MAX: usize = 2000;
/// A batch waits at most this long: what the UI shows from the store is this fresh.
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 200;
/// Flows per page when the filter says 0.
pub const DEFAULT_FLOW_LIMIT: usize = 50;
/// The largest page of flows one request gets.
pub const MAX_FLOW_LIMIT: usize = 500;

/// Where and how long data is kept (`[store]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `sqlite://<path>` (relative to the working directory, or
    /// `sqlite:///abs/path`) or `postgres://user[:password]@host[:port]/db`;
    /// `none` stores nothing (flows live in memory only: correlation, the
    /// live view and alerts still work; history and restarts do not).
    pub url: String,
    /// Rows older than this are deleted (0: kept until the size bound).
    pub retention_hours: u64,
    /// The store's size bound, oldest rows deleted first beyond it (0: no
    /// bound). SQLite: the file's size; PostgreSQL: the tables' live data.
    pub max_size_mib: u64,
    /// Items written in one transaction, at most.
    pub batch_max: usize,
    /// How long the writer gathers items before it writes them.
    pub flush_interval_ms: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: DEFAULT_STORE_URL.to_owned(),
            retention_hours: DEFAULT_RETENTION_HOURS,
            max_size_mib: DEFAULT_MAX_SIZE_MIB,
            batch_max: DEFAULT_BATCH_MAX,
            flush_interval_ms: DEFAULT_FLUSH_INTERVAL_MS,
        }
    }
}

impl StoreConfig {
    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> std::result::Result<(), String> {
        codec::StoreUrl::parse(&self.url).map_err(|err| err.to_string())?;
        if self.batch_max == 0 {
            return Err("store.batch_max must be at least 1".into());
        }
        if self.flush_interval_ms == 0 {
            return Err("store.flush_interval_ms must be at least 1".into());
        }
        Ok(())
    }
}

/// What one transaction writes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WriteBatch {
    /// Observations as seen; queue samples go to their own table.
    pub observations: Vec<Observation>,
    /// Flows, new or changed: upserted by `summary.id`, their lookup keys replaced.
    pub flows: Vec<FlowDetail>,
    /// Flows merged into others: deleted with their keys (after the upserts).
    pub deleted_flows: Vec<String>,
    /// Alert records (JSON with a string `"id"` and `"updated_unix_us"`): upserted by id.
    pub alerts: Vec<serde_json::Value>,
}

impl WriteBatch {
    /// Items in the batch.
    pub fn len(&self) -> usize {
        self.observations.len() + self.flows.len() + self.deleted_flows.len() + self.alerts.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a later batch, so that writing the result is writing both in order.
    pub fn merge(&mut self, later: WriteBatch) {
        if !later.deleted_flows.is_empty() {
            let gone: std::collections::HashSet<&str> =
                later.deleted_flows.iter().map(String::as_str).collect();
            self.flows.retain(|f| !gone.contains(f.summary.id.as_str()));
        }
        if !later.flows.is_empty() && !self.deleted_flows.is_empty() {
            let back: std::collections::HashSet<&str> =
                later.flows.iter().map(|f| f.summary.id.as_str()).collect();
            self.deleted_flows.retain(|id| !back.contains(id.as_str()));
        }
        self.observations.extend(later.observations);
        self.flows.extend(later.flows);
        self.deleted_flows.extend(later.deleted_flows);
        self.alerts.extend(later.alerts);
    }
}

/// Which flows to list. Every field narrows; the default lists the newest 50.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FlowFilter {
    pub status: Option<FlowStatus>,
    /// A service that took part (exact name).
    pub service: Option<String>,
    /// An event type seen in the flow (exact name).
    pub event_type: Option<String>,
    /// A process-map variant: exactly these event types, in this order
    /// (the flow's `event_types`).
    pub variant: Option<Vec<String>>,
    /// A part of the flow's id or business key, or of one of its trace,
    /// message or correlation ids (case-insensitive).
    pub text: Option<String>,
    /// Flows started at or after this time.
    pub since_unix_us: Option<i64>,
    /// Flows started before this time.
    pub until_unix_us: Option<i64>,
    /// Page size: 0 means [`DEFAULT_FLOW_LIMIT`], at most [`MAX_FLOW_LIMIT`].
    pub limit: usize,
    /// Flows to skip (newest first).
    pub offset: usize,
}

impl FlowFilter {
    /// The page size actually used.
    pub fn effective_limit(&self) -> usize {
        match self.limit {
            0 => DEFAULT_FLOW_LIMIT,
            n => n.min(MAX_FLOW_LIMIT),
        }
    }
}

/// One page of a list, and how many items the whole list has.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Items matching the filter, over all pages.
    pub total: u64,
    pub offset: usize,
    pub limit: usize,
}

/// Rows deleted by [`Store::enforce_retention`], and the size around it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetentionReport {
    pub num_observations: u64,
    pub num_queue_samples: u64,
    pub num_flows: u64,
    pub num_alerts: u64,
    /// Whether the size bound (not only age) deleted rows.
    pub size_bound_hit: bool,
    /// The size measured against the bound, before and after.
    pub size_bytes_before: u64,
    pub size_bytes_after: u64,
}

impl RetentionReport {
    /// Rows deleted in all.
    pub fn num_deleted(&self) -> u64 {
        self.num_observations + self.num_queue_samples + self.num_flows + self.num_alerts
    }
}

/// Row counts and size on disk.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreStats {
    /// `sqlite` or `postgres`.
    pub backend: String,
    pub num_observations: u64,
    pub num_queue_samples: u64,
    pub num_flows: u64,
    pub num_flow_keys: u64,
    pub num_alerts: u64,
    /// SQLite: the file (page count × page size); PostgreSQL: the tables and
    /// their indexes (`pg_total_relation_size`).
    pub size_bytes: u64,
}

/// The store: cheap to clone, every clone shares one connection pool.
#[derive(Debug, Clone)]
pub struct Store {
    backend: Backend,
    limits: Arc<Limits>,
    /// Where recent messages and spans are, for flows to refer to them.
    locations: Arc<Mutex<items::Locations>>,
}

#[derive(Debug, Clone)]
enum Backend {
    Sqlite(sqlite::SqliteStore),
    Postgres(postgres::PgStore),
}

/// What retention enforces.
#[derive(Debug, Clone, Copy)]
struct Limits {
    retention_us: Option<i64>,
    max_size_bytes: Option<u64>,
}

/// Runs `$body` with `$b` bound to whichever backend the store has.
macro_rules! dispatch {
    ($self:ident, $b:ident => $body:expr) => {
        match &$self.backend {
            Backend::Sqlite($b) => $body,
            Backend::Postgres($b) => $body,
        }
    };
}

impl Store {
    /// Opens the store the URL names, creating its directory, tables and indexes.
    pub async fn open(config: &StoreConfig) -> Result<Store> {
        let backend = match codec::StoreUrl::parse(&config.url)? {
            codec::StoreUrl::Sqlite(path) => {
                Backend::Sqlite(sqlite::SqliteStore::open(&path).await?)
            }
            codec::StoreUrl::Postgres(url) => {
                Backend::Postgres(postgres::PgStore::open(&url).await?)
            }
        };
        let hours = i64::try_from(config.retention_hours).unwrap_or(i64::MAX / 3_600_000_000);
        let limits = Limits {
            retention_us: (hours > 0).then(|| hours.saturating_mul(3_600_000_000)),
            max_size_bytes: (config.max_size_mib > 0)
                .then(|| config.max_size_mib.saturating_mul(1024 * 1024)),
        };
        Ok(Store {
            backend,
            limits: Arc::new(limits),
            locations: Arc::default(),
        })
    }

    /// `sqlite` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite(_) => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }

    /// Writes a batch in one transaction: all of it, or nothing.
    pub async fn write(&self, batch: WriteBatch) -> Result<()> {
        let rows = Self::encode(batch).await?;
        self.write_rows(&rows).await
    }

    /// Turns a batch into rows, off the async threads (JSON encoding and
    /// compression are CPU work).
    async fn encode(batch: WriteBatch) -> Result<codec::BatchRows> {
        blocking(move || codec::BatchRows::encode(batch)).await
    }

    /// Writes encoded rows in one transaction. The blocks' messages and
    /// spans are remembered first, so the flows of this batch and later ones
    /// refer to them instead of storing them again.
    async fn write_rows(&self, rows: &codec::BatchRows) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let items = self.flow_items(rows).await?;
        dispatch!(self, b => b.write(rows, &items).await)
    }

    /// Each flow's `items` column: references where the observation is
    /// known, the message or span itself where not.
    async fn flow_items(&self, rows: &codec::BatchRows) -> Result<Vec<Vec<u8>>> {
        let locations: Vec<Vec<Option<items::Location>>> = {
            let mut known = self.locations.lock().unwrap_or_else(|p| p.into_inner());
            for block in &rows.blocks {
                for &(identity, line) in &block.identities {
                    known.insert(identity, (block.id, line));
                }
            }
            let flows = rows.flows.iter();
            flows
                .map(|f| f.items.iter().map(|(id, _)| known.get(*id)).collect())
                .collect()
        };
        let all_known = locations.iter().flatten().all(Option::is_some);
        let encode = |flows: &[codec::FlowRow], locations: &[Vec<Option<items::Location>>]| {
            flows
                .iter()
                .zip(locations)
                .map(|(flow, at)| {
                    let resolved: Vec<_> = flow
                        .items
                        .iter()
                        .zip(at)
                        .map(|((_, value), at)| match at {
                            Some(at) => items::Resolved::At(*at),
                            None => items::Resolved::Inline(value),
                        })
                        .collect();
                    items::encode_items(flow.num_messages, &resolved)
                })
                .collect::<Result<Vec<_>>>()
        };
        if all_known {
            // References only: a few bytes per item, no CPU worth a thread.
            return encode(&rows.flows, &locations);
        }
        let flows = rows.flows.clone();
        blocking(move || encode(&flows, &locations)).await
    }

    /// A page of flows matching the filter, newest first, and how many match.
    pub async fn flows(&self, filter: &FlowFilter) -> Result<Page<FlowSummary>> {
        let (items, total) = dispatch!(self, b => b.flows(filter).await)?;
        Ok(Page {
            items,
            total,
            offset: filter.offset,
            limit: filter.effective_limit(),
        })
    }

    /// Everything stored about one flow.
    pub async fn flow(&self, id: &str) -> Result<Option<FlowDetail>> {
        dispatch!(self, b => b.flow(id).await)
    }

    /// Ids of the flows whose business key, message id, trace id or
    /// correlation id is exactly `needle`, newest first.
    pub async fn lookup(&self, needle: &str) -> Result<Vec<String>> {
        dispatch!(self, b => b.lookup(needle).await)
    }

    /// A queue's samples since a time, oldest first. Beyond `max_points`, the
    /// range is cut in `max_points` equal buckets and the last sample of
    /// each is returned.
    pub async fn queue_history(
        &self,
        vhost: &str,
        queue: &str,
        since_unix_us: i64,
        max_points: usize,
    ) -> Result<Vec<QueueSample>> {
        let max_points = max_points.max(1);
        let mut samples =
            dispatch!(self, b => b.queue_history(vhost, queue, since_unix_us, max_points).await)?;
        codec::thin_samples(&mut samples, max_points);
        Ok(samples)
    }

    /// The most recently updated alert records, newest first.
    pub async fn alerts(&self, limit: usize) -> Result<Vec<serde_json::Value>> {
        dispatch!(self, b => b.alerts(limit).await)
    }

    /// Observations (queue samples aside) seen at or after a time, in the
    /// order they were stored: a replay then rebuilds the same flows, with the same ids.
    pub async fn observations_since(
        &self,
        since_unix_us: i64,
        limit: usize,
    ) -> Result<Vec<Observation>> {
        let (observations, located) =
            dispatch!(self, b => b.observations_since(since_unix_us, limit).await)?;
        let mut known = self.locations.lock().unwrap_or_else(|p| p.into_inner());
        for (identity, location) in located {
            known.insert(identity, location);
        }
        Ok(observations)
    }

    /// Deletes rows older than the retention, then the oldest rows of every
    /// table until the store is back under its size bound (with 10 % to spare).
    pub async fn enforce_retention(&self, now_unix_us: i64) -> Result<RetentionReport> {
        let cutoff = self.limits.retention_us.map(|age| now_unix_us - age);
        let max = self.limits.max_size_bytes;
        dispatch!(self, b => b.enforce_retention(cutoff, max).await)
    }

    /// Row counts and size.
    pub async fn stats(&self) -> Result<StoreStats> {
        dispatch!(self, b => b.stats().await)
    }

    /// Closes every connection; clones of this store stop working.
    pub async fn close(&self) {
        dispatch!(self, b => b.close().await)
    }
}

/// Runs CPU work (encoding, compression) on the blocking threads.
async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    match tokio::task::spawn_blocking(work).await {
        Ok(done) => done,
        Err(join) => match join.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => panic!("the runtime shut down while the store was encoding or decoding"),
        },
    }
}
