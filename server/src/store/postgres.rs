//! The PostgreSQL backend: the same tables, for several flowscope servers
//! sharing one store. Tables go in the first schema of the connection's
//! `search_path` (`?options=-c%20search_path%3Dmy_schema` in the URL).

use std::time::Duration;

use sqlx::postgres::{PgArguments, PgConnectOptions, PgPoolOptions, PgQueryResult};
use sqlx::{Arguments, Connection, PgConnection, Postgres};

use super::retention::RetentionOps;
use super::sql::{Bind, Dialect, Statement};
use super::sql_store::SqlStore;
use super::{Result, StoreError, StoreStats, codec};

/// The PostgreSQL store.
pub(super) type PgStore = SqlStore<Postgres>;

/// Connections per server: the writer, retention and the API's readers.
const MAX_CONNECTIONS: u32 = 8;
/// How long opening (or borrowing) a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Serializes table creation among servers starting together.
const SCHEMA_LOCK: i64 = 0x666c_6f77_7363_6f70; // "flowscop"

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS observation_blocks (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id BIGINT NOT NULL UNIQUE,
    min_unix_us BIGINT NOT NULL,
    max_unix_us BIGINT NOT NULL,
    num_observations BIGINT NOT NULL,
    data BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS observation_blocks_by_time ON observation_blocks (max_unix_us);
-- zstd already: no point in PostgreSQL compressing it again.
ALTER TABLE observation_blocks ALTER COLUMN data SET STORAGE EXTERNAL;

CREATE TABLE IF NOT EXISTS queue_samples (
    vhost TEXT NOT NULL,
    queue TEXT NOT NULL,
    unix_us BIGINT NOT NULL,
    source TEXT NOT NULL,
    ready BIGINT,
    unacked BIGINT,
    consumers BIGINT,
    publish_rate DOUBLE PRECISION,
    deliver_rate DOUBLE PRECISION,
    ack_rate DOUBLE PRECISION,
    head_message_timestamp BIGINT
);
CREATE INDEX IF NOT EXISTS queue_samples_by_queue ON queue_samples (vhost, queue, unix_us);
CREATE INDEX IF NOT EXISTS queue_samples_by_time ON queue_samples (unix_us);

CREATE TABLE IF NOT EXISTS flows (
    id TEXT PRIMARY KEY,
    business_key TEXT,
    status TEXT NOT NULL,
    started_unix_us BIGINT NOT NULL,
    last_seen_unix_us BIGINT NOT NULL,
    services TEXT NOT NULL,
    event_types TEXT NOT NULL,
    summary BYTEA NOT NULL,
    hops BYTEA NOT NULL,
    items BYTEA NOT NULL
);
CREATE INDEX IF NOT EXISTS flows_by_start ON flows (started_unix_us);
CREATE INDEX IF NOT EXISTS flows_by_last_seen ON flows (last_seen_unix_us);
CREATE INDEX IF NOT EXISTS flows_by_status ON flows (status, started_unix_us);

CREATE TABLE IF NOT EXISTS flow_keys (
    flow_id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (value, flow_id)
);
CREATE INDEX IF NOT EXISTS flow_keys_by_flow ON flow_keys (flow_id);

CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    updated_unix_us BIGINT NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_update ON alerts (updated_unix_us);
";

/// Whether the database holds an older layout: one row per observation
/// (table `observations`), or lookup keys with their kind (`flow_keys.kind`,
/// before keys were written as changes).
const OLD_SCHEMA: &str = "SELECT to_regclass('observations') IS NOT NULL OR EXISTS \
    (SELECT 1 FROM information_schema.columns WHERE table_schema = current_schema() \
    AND table_name = 'flow_keys' AND column_name = 'kind')";

/// The bytes of live rows: what is stored, compressed, plus a tuple header.
/// `pg_total_relation_size` does not shrink when rows are deleted (the space
/// is reused, not returned), so bounding it would delete more every hour.
const LIVE_BYTES: &str = "SELECT (
    (SELECT COALESCE(SUM(pg_column_size(data)), 0) + COUNT(*) * 80 FROM observation_blocks)
  + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM queue_samples t)
  + (SELECT COALESCE(SUM(pg_column_size(summary) + pg_column_size(hops) + pg_column_size(items)), 0) + COUNT(*) * 40 FROM flows)
  + (SELECT COALESCE(SUM(pg_column_size(t.*)), 0) FROM flow_keys t)
  + (SELECT COALESCE(SUM(pg_column_size(doc)), 0) FROM alerts)
)::BIGINT";

const TOTAL_BYTES: &str = "SELECT (pg_total_relation_size('observation_blocks') \
    + pg_total_relation_size('queue_samples') + pg_total_relation_size('flows') \
    + pg_total_relation_size('flow_keys') + pg_total_relation_size('alerts'))::BIGINT";

impl Dialect for Postgres {
    const ILIKE: &'static str = "ILIKE";
    const POSITION: &'static str = "strpos";

    fn arguments(binds: &[Bind<'_>]) -> PgArguments {
        let mut args = PgArguments::default();
        for bind in binds {
            let added = match bind {
                Bind::Str(s) => args.add(*s),
                Bind::String(s) => args.add(s.clone()),
                Bind::OptStr(s) => args.add(*s),
                Bind::Int(n) => args.add(*n),
                Bind::OptInt(n) => args.add(*n),
                Bind::OptReal(x) => args.add(*x),
                Bind::Bytes(b) => args.add(*b),
            };
            added.expect("text and numbers always encode");
        }
        args
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl PgStore {
    /// Connects, and creates the tables that are missing.
    pub(super) async fn open(url: &str) -> Result<Self> {
        let shown = codec::redact_url(url);
        let options: PgConnectOptions = url.parse().map_err(|source| StoreError::PostgresUrl {
            url: shown.clone(),
            source,
        })?;
        // One connection first, to report why it fails (the pool would retry
        // a refused connection until its timeout and report only that).
        let refused = |reason: String| StoreError::ConnectPostgres {
            url: shown.clone(),
            reason,
        };
        let first = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| refused(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|err| refused(err.to_string()))?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_lazy_with(options);
        let old = create_tables(&pool)
            .await
            .map_err(|source| StoreError::Schema { source })?;
        if old {
            pool.close().await;
            return Err(StoreError::OldSchema { location: shown });
        }
        tracing::info!(url = %shown, "opened the PostgreSQL store");
        Ok(SqlStore::new(pool))
    }

    /// Row counts, and the tables' size with their indexes.
    pub(super) async fn stats(&self) -> Result<StoreStats> {
        let (observations, samples, flows, keys, alerts) = self.counts().await?;
        let size = self.scalar(TOTAL_BYTES.into(), None).await?;
        Ok(StoreStats {
            backend: "postgres".into(),
            num_observations: codec::count(observations),
            num_queue_samples: codec::count(samples),
            num_flows: codec::count(flows),
            num_flow_keys: codec::count(keys),
            num_alerts: codec::count(alerts),
            size_bytes: codec::count(size.unwrap_or(0)),
        })
    }

    pub(super) async fn enforce_retention(
        &self,
        cutoff: Option<i64>,
        max_bytes: Option<u64>,
    ) -> Result<super::RetentionReport> {
        super::retention::enforce(self, cutoff, max_bytes).await
    }
}

/// Creates the missing tables; `true` (and nothing created) when the
/// database holds an older layout.
async fn create_tables(pool: &sqlx::PgPool) -> std::result::Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SCHEMA_LOCK)
        .execute(&mut *tx)
        .await?;
    let (old,): (bool,) = sqlx::query_as(OLD_SCHEMA).fetch_one(&mut *tx).await?;
    if old {
        return Ok(true);
    }
    sqlx::raw_sql(SCHEMA).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(false)
}

impl RetentionOps for PgStore {
    async fn trim_blocks(&self, cutoff: i64) -> Result<u64> {
        SqlStore::trim_blocks(self, cutoff).await
    }

    async fn delete_rows(&self, sql: String, arg: i64) -> Result<u64> {
        // Flows retention deletes may come back (a live flow rewritten).
        self.forget_written_keys();
        let mut statement = Statement::new(sql);
        statement.binds.push(Bind::Int(arg));
        self.execute(statement, "delete old rows").await
    }

    async fn query_number(&self, sql: String, arg: Option<i64>) -> Result<Option<i64>> {
        self.scalar(sql, arg).await
    }

    async fn used_bytes(&self) -> Result<u64> {
        let used = self.scalar(LIVE_BYTES.into(), None).await?;
        Ok(codec::count(used.unwrap_or(0)))
    }

    /// Nothing to do: autovacuum makes deleted rows' space reusable.
    async fn reclaim(&self) -> Result<()> {
        Ok(())
    }
}
