//! `flowscope-bench storage`: flowscope's own store, SQLite and PostgreSQL.
//!
//! 1. **write**: `--events` seeded events ([`events`]) go through the
//!    correlator and into the store as the server does it — a producer task
//!    ingests a chunk, takes the changed flows and hands a `WriteBatch`
//!    (observations + flows) to a writer task calling `Store::write`, two
//!    stages on the two cores. Events per second over the whole run.
//! 2. **size**: the store's size (SQLite: page count × page size after a WAL
//!    checkpoint; PostgreSQL: `pg_total_relation_size` of its tables) per
//!    event, against the same events in the [`naive`] schema.
//! 3. **lookups** of a flow by order key and by trace id (`Store::lookup`,
//!    then `Store::flow` of the newest match: what the UI's search does),
//!    p50 and p99, **warm** (the second pass over the same keys in one open
//!    store) and **cold** (each lookup a key not looked up before, on a
//!    freshly opened store — a new connection, so SQLite's page cache is
//!    empty — after the store's files were dropped from the OS page cache
//!    with `posix_fadvise(DONTNEED)`; PostgreSQL's own `shared_buffers`
//!    (128 MB here) cannot be emptied without a restart and are not).
//!
//! The PostgreSQL run uses a database it creates beside `--postgres` and
//! drops at the end; the SQLite files go in a directory it removes.

mod cold;
pub mod events;
mod naive;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use flowscope_server::correlator::Correlator;
use flowscope_server::correlator::config::{CorrelationConfig, KeyRule};
use flowscope_server::store::{Store, StoreConfig, WriteBatch};
use sqlx::{AssertSqlSafe, Connection as _};

use crate::measure::{self, Row};
use events::Chunks;

/// `flowscope-bench storage`.
#[derive(Debug, Clone, clap::Args)]
pub struct StorageArgs {
    /// Events written (12 per order).
    #[arg(long, default_value_t = 10_000_000)]
    pub events: u64,
    /// Seed of the event generator.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Backends to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "sqlite,postgres"
    )]
    pub backend: Vec<Backend>,
    /// An existing PostgreSQL database to connect to; the bench creates its own beside it.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
    /// Cold lookups per key kind.
    #[arg(long, default_value_t = 100)]
    pub cold_lookups: usize,
    /// Warm lookups per key kind.
    #[arg(long, default_value_t = 1_000)]
    pub warm_lookups: usize,
    /// Directory for the SQLite files [default: the system's temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// A store backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What kind of key a lookup uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Order,
    Trace,
}

/// The correlation rules of the demo shop, with `OrderShipped` ending a flow.
fn correlation() -> CorrelationConfig {
    let key = |from: &str| KeyRule {
        name: "order_id".into(),
        from: from.into(),
    };
    CorrelationConfig {
        keys: vec![
            key("json:/order_id"),
            key("attribute:shop.order_id"),
            key("property:correlation_id"),
        ],
        terminal_events: vec!["OrderShipped".into()],
        failure_events: vec!["PaymentFailed".into()],
        ..CorrelationConfig::default()
    }
}

/// Runs every backend asked for and prints the table.
pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    let mut rows = Vec::new();
    for &backend in &args.backend {
        rows.extend(match backend {
            Backend::Sqlite => sqlite(&args).await?,
            Backend::Postgres => postgres(&args).await?,
        });
    }
    measure::print_rows(&rows)
}

async fn sqlite(args: &StorageArgs) -> anyhow::Result<Vec<Row>> {
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!("flowscope-bench-storage-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let result = sqlite_in(args, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn sqlite_in(args: &StorageArgs, dir: &std::path::Path) -> anyhow::Result<Vec<Row>> {
    let db = dir.join("flowscope.db");
    let url = format!("sqlite://{}", db.display());
    let written = write(args, &url).await?;
    {
        let mut conn = sqlx::SqliteConnection::connect(&url).await?;
        sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut conn)
            .await?;
        conn.close().await?;
    }
    let size = open(&url).await?.stats().await?.size_bytes;
    eprintln!("  sqlite: {size} bytes; writing the naive schema");
    let naive = naive::sqlite(&dir.join("naive.db"), args.seed, args.events).await?;
    let files = cold::sqlite_files(&db);
    let lookups = lookups(args, &url, &files).await?;
    Ok(report(
        "SQLite",
        args.events,
        written,
        size,
        naive,
        &lookups,
    ))
}

async fn postgres(args: &StorageArgs) -> anyhow::Result<Vec<Row>> {
    let name = format!("flowscope_bench_{}", std::process::id());
    let base = args
        .postgres
        .rsplit_once('/')
        .map(|(base, _)| base)
        .context("--postgres must be postgres://host[:port]/database")?;
    let url = format!("{base}/{name}");
    let mut admin = sqlx::PgConnection::connect(&args.postgres)
        .await
        .with_context(|| format!("connecting to {}", args.postgres))?;
    sqlx::raw_sql(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await?;
    let result = postgres_in(args, &url).await;
    sqlx::raw_sql(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await?;
    admin.close().await?;
    result
}

async fn postgres_in(args: &StorageArgs, url: &str) -> anyhow::Result<Vec<Row>> {
    let written = write(args, url).await?;
    {
        let mut conn = sqlx::PgConnection::connect(url).await?;
        sqlx::raw_sql("VACUUM ANALYZE").execute(&mut conn).await?;
        conn.close().await?;
    }
    let size = open(url).await?.stats().await?.size_bytes;
    eprintln!("  postgres: {size} bytes; writing the naive schema");
    print_postgres_sizes(url).await?;
    let naive = naive::postgres(url, args.seed, args.events).await?;
    let files = cold::postgres_files(url).await.unwrap_or_else(|err| {
        eprintln!("  cannot find PostgreSQL's files ({err:#}); cold = fresh connection only");
        Vec::new()
    });
    let lookups = lookups(args, url, &files).await?;
    Ok(report(
        "PostgreSQL",
        args.events,
        written,
        size,
        naive,
        &lookups,
    ))
}

/// Prints each table's size: its rows (with TOAST) and each of its indexes,
/// so a change of layout shows where the bytes went.
async fn print_postgres_sizes(url: &str) -> anyhow::Result<()> {
    let mut conn = sqlx::PgConnection::connect(url).await?;
    let sizes: Vec<(String, i64)> = sqlx::query_as(
        "SELECT c.relname::TEXT, pg_table_size(c.oid) FROM pg_class c \
         JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'i') \
         ORDER BY pg_table_size(c.oid) DESC",
    )
    .fetch_all(&mut conn)
    .await?;
    conn.close().await?;
    let list: Vec<String> = sizes
        .iter()
        .filter(|(_, bytes)| *bytes > 0)
        .map(|(name, bytes)| format!("{name} {:.1} MB", *bytes as f64 / 1e6))
        .collect();
    eprintln!("  postgres relations: {}", list.join(", "));
    Ok(())
}

async fn open(url: &str) -> anyhow::Result<Store> {
    let config = StoreConfig {
        url: url.to_owned(),
        ..StoreConfig::default()
    };
    Ok(Store::open(&config).await?)
}

/// Correlates and writes every event; returns events per second.
async fn write(args: &StorageArgs, url: &str) -> anyhow::Result<f64> {
    let store = open(url).await?;
    let (tx, mut rx) = tokio::sync::mpsc::channel::<WriteBatch>(4);
    let (seed, total) = (args.seed, args.events);
    let started = Instant::now();
    let producer = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut correlator = Correlator::new(correlation()).map_err(anyhow::Error::msg)?;
        for chunk in Chunks::new(seed, total) {
            let observations: Vec<_> = chunk.into_iter().map(|(_, event)| event).collect();
            let now = observations.iter().map(observed_unix_us).max().unwrap_or(0);
            for event in &observations {
                correlator.ingest(event.clone());
            }
            correlator.tick(now);
            let changes = correlator.take_changes(now);
            let batch = WriteBatch {
                observations,
                flows: changes.updated,
                deleted_flows: changes.removed,
                alerts: Vec::new(),
            };
            if tx.blocking_send(batch).is_err() {
                break;
            }
        }
        Ok(())
    });
    let mut done = 0u64;
    let mut report_at = Instant::now() + Duration::from_secs(10);
    while let Some(batch) = rx.recv().await {
        done += batch.observations.len() as u64;
        store.write(batch).await?;
        if Instant::now() >= report_at {
            let rate = done as f64 / started.elapsed().as_secs_f64();
            eprintln!("  {done} of {total} events written ({rate:.0}/s)");
            report_at += Duration::from_secs(10);
        }
    }
    producer.await??;
    let rate = done as f64 / started.elapsed().as_secs_f64();
    let stats = store.stats().await?;
    eprintln!(
        "  wrote {done} events in {:.1} s ({rate:.0}/s): {} observations, {} flows, {} keys",
        started.elapsed().as_secs_f64(),
        stats.num_observations,
        stats.num_flows,
        stats.num_flow_keys
    );
    anyhow::ensure!(
        stats.num_observations == total,
        "the store holds {} observations, not {total}",
        stats.num_observations
    );
    store.close().await;
    Ok(rate)
}

fn observed_unix_us(event: &flowscope_model::Observation) -> i64 {
    use flowscope_model::Observation::*;
    match event {
        Publish(m) | Deliver(m) | DeadLetter(m) => m.observed_unix_us,
        Span(s) => s.observed_unix_us,
        _ => 0,
    }
}

/// Lookup latencies in milliseconds, per key kind: (warm, cold).
type Latencies = Vec<(KeyKind, Vec<f64>, Vec<f64>)>;

/// The key of kind `kind` of the `n`-th sampled order (stream `stream`).
fn sample_key(args: &StorageArgs, kind: KeyKind, stream: u64, n: u64) -> String {
    let orders = events::num_orders(args.events).max(1);
    let order = events::mix(args.seed ^ stream.wrapping_mul(0x1000_0000) ^ n) % orders;
    match kind {
        KeyKind::Order => events::order_id(args.seed, order),
        KeyKind::Trace => events::trace_id(args.seed, order),
    }
}

/// Finds the flow of `key` and reads it; the time in milliseconds.
async fn timed_lookup(store: &Store, key: &str) -> anyhow::Result<f64> {
    let start = Instant::now();
    let ids = store.lookup(key).await?;
    let id = ids
        .first()
        .with_context(|| format!("no flow found for {key}"))?;
    let flow = store.flow(id).await?;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    anyhow::ensure!(flow.is_some(), "flow {id} found by {key} but not readable");
    Ok(ms)
}

async fn lookups(args: &StorageArgs, url: &str, files: &[PathBuf]) -> anyhow::Result<Latencies> {
    let mut out = Vec::new();
    for (i, kind) in [KeyKind::Order, KeyKind::Trace].into_iter().enumerate() {
        let store = open(url).await?;
        let keys: Vec<String> = (0..args.warm_lookups as u64)
            .map(|n| sample_key(args, kind, 2 * i as u64, n))
            .collect();
        for key in &keys {
            timed_lookup(&store, key).await?;
        }
        let mut warm = Vec::with_capacity(keys.len());
        for key in &keys {
            warm.push(timed_lookup(&store, key).await?);
        }
        store.close().await;
        let mut cold_ms = Vec::with_capacity(args.cold_lookups);
        for n in 0..args.cold_lookups as u64 {
            let key = sample_key(args, kind, 2 * i as u64 + 1, n);
            for file in files {
                cold::evict(file)?;
            }
            let store = open(url).await?;
            // Connected before the clock starts (PostgreSQL's pool connects lazily).
            store.alerts(1).await?;
            cold_ms.push(timed_lookup(&store, &key).await?);
            store.close().await;
        }
        out.push((kind, warm, cold_ms));
    }
    Ok(out)
}

fn report(
    backend: &str,
    events: u64,
    rate: f64,
    size: u64,
    naive: u64,
    lookups: &Latencies,
) -> Vec<Row> {
    let bench = format!("storage, {backend}, {events} events");
    let per_event = |bytes: u64| bytes as f64 / events.max(1) as f64;
    let mut rows = vec![
        Row {
            benchmark: bench.clone(),
            metric: "write rate (correlated + stored)".into(),
            unit: "events/s".into(),
            peer: None,
            flowscope: rate,
            goal: "—".into(),
        },
        Row {
            benchmark: bench.clone(),
            metric: "bytes per event (peer: naive JSON rows)".into(),
            unit: "B".into(),
            peer: Some(per_event(naive)),
            flowscope: per_event(size),
            goal: "≤ 0.35× naive".into(),
        },
    ];
    for (kind, warm, cold) in lookups {
        let key = match kind {
            KeyKind::Order => "order key",
            KeyKind::Trace => "trace id",
        };
        for (temp, values) in [("warm", warm), ("cold", cold)] {
            for (q, goal) in [(0.5, "—"), (0.99, "≤ 10 ms")] {
                rows.push(Row {
                    benchmark: bench.clone(),
                    metric: format!("lookup by {key}, {temp}, p{:.0}", q * 100.0),
                    unit: "ms".into(),
                    peer: None,
                    flowscope: measure::quantile(values, q),
                    goal: goal.into(),
                });
            }
        }
    }
    rows
}
