//! The SQLite backend: one file, WAL mode, `synchronous = NORMAL` (a commit
//! is durable at the next checkpoint, not fsynced one by one: a crash of the
//! machine, not of flowscope, may lose the last moments).

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{
    SqliteArguments, SqliteAutoVacuum, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions,
    SqliteQueryResult, SqliteSynchronous,
};
use sqlx::{Arguments, Sqlite};

use super::retention::RetentionOps;
use super::sql::{Bind, Dialect, Statement};
use super::sql_store::SqlStore;
use super::{Result, StoreError, StoreStats, codec};

/// The SQLite store.
pub(super) type SqliteStore = SqlStore<Sqlite>;

/// Readers run beside the one writer (WAL); more would only queue.
const MAX_CONNECTIONS: u32 = 4;
/// Bytes per page of a new file (SQLite's default is 4 KiB).
const PAGE_SIZE: u32 = 16 * 1024;
/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS observation_blocks (
    seq INTEGER PRIMARY KEY,
    id INTEGER NOT NULL UNIQUE,
    min_unix_us INTEGER NOT NULL,
    max_unix_us INTEGER NOT NULL,
    num_observations INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS observation_blocks_by_time ON observation_blocks (max_unix_us);

CREATE TABLE IF NOT EXISTS queue_samples (
    vhost TEXT NOT NULL,
    queue TEXT NOT NULL,
    unix_us INTEGER NOT NULL,
    source TEXT NOT NULL,
    ready INTEGER,
    unacked INTEGER,
    consumers INTEGER,
    publish_rate REAL,
    deliver_rate REAL,
    ack_rate REAL,
    head_message_timestamp INTEGER
);
CREATE INDEX IF NOT EXISTS queue_samples_by_queue ON queue_samples (vhost, queue, unix_us);
CREATE INDEX IF NOT EXISTS queue_samples_by_time ON queue_samples (unix_us);

CREATE TABLE IF NOT EXISTS flows (
    id TEXT PRIMARY KEY,
    business_key TEXT,
    status TEXT NOT NULL,
    started_unix_us INTEGER NOT NULL,
    last_seen_unix_us INTEGER NOT NULL,
    services TEXT NOT NULL,
    event_types TEXT NOT NULL,
    summary BLOB NOT NULL,
    hops BLOB NOT NULL,
    items BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS flows_by_start ON flows (started_unix_us);
CREATE INDEX IF NOT EXISTS flows_by_last_seen ON flows (last_seen_unix_us);
CREATE INDEX IF NOT EXISTS flows_by_status ON flows (status, started_unix_us);

CREATE TABLE IF NOT EXISTS flow_keys (
    flow_id TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (value, flow_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS flow_keys_by_flow ON flow_keys (flow_id);

CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    updated_unix_us INTEGER NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_by_update ON alerts (updated_unix_us);
";

/// Whether the file holds an older layout: one row per observation (table
/// `observations`), or lookup keys with their kind (`flow_keys.kind`,
/// before keys were written as changes).
const OLD_SCHEMA: &str = "SELECT \
    (SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'observations') \
    + (SELECT COUNT(*) FROM pragma_table_info('flow_keys') WHERE name = 'kind')";

impl Dialect for Sqlite {
    // ASCII-case-insensitive already.
    const ILIKE: &'static str = "LIKE";
    const POSITION: &'static str = "instr";

    fn arguments(binds: &[Bind<'_>]) -> SqliteArguments {
        let mut args = SqliteArguments::default();
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

    fn sql(sql: String, binds: usize) -> String {
        super::sql::anonymous_placeholders(sql, binds)
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

impl SqliteStore {
    /// Opens (or creates) the file and its tables.
    pub(super) async fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                dir: dir.to_owned(),
                path: path.to_owned(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            // A new file only: a block (~20 KB) or a flow row in one or two
            // pages, so a cold read is a few disk reads, not a dozen.
            .page_size(PAGE_SIZE)
            // Lets retention give deleted pages back to the file system.
            .auto_vacuum(SqliteAutoVacuum::Incremental)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|source| StoreError::OpenSqlite {
                path: path.to_owned(),
                source,
            })?;
        let (old,): (i64,) = sqlx::query_as(OLD_SCHEMA)
            .fetch_one(&pool)
            .await
            .map_err(|source| StoreError::Schema { source })?;
        if old > 0 {
            pool.close().await;
            return Err(StoreError::OldSchema {
                location: path.display().to_string(),
            });
        }
        sqlx::raw_sql(SCHEMA)
            .execute(&pool)
            .await
            .map_err(|source| StoreError::Schema { source })?;
        tracing::info!(path = %path.display(), "opened the SQLite store");
        Ok(SqlStore::new(pool))
    }

    /// Row counts, and the file's size.
    pub(super) async fn stats(&self) -> Result<StoreStats> {
        let (observations, samples, flows, keys, alerts) = self.counts().await?;
        let size = self
            .scalar(
                "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()".into(),
                None,
            )
            .await?;
        Ok(StoreStats {
            backend: "sqlite".into(),
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

impl RetentionOps for SqliteStore {
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

    /// The file's pages in use (free pages aside).
    async fn used_bytes(&self) -> Result<u64> {
        let used = self
            .scalar(
                "SELECT (page_count - freelist_count) * page_size \
             FROM pragma_page_count(), pragma_freelist_count(), pragma_page_size()"
                    .into(),
                None,
            )
            .await?;
        Ok(codec::count(used.unwrap_or(0)))
    }

    /// Gives free pages back and empties the write-ahead log.
    async fn reclaim(&self) -> Result<()> {
        for pragma in [
            "PRAGMA incremental_vacuum",
            "PRAGMA wal_checkpoint(TRUNCATE)",
        ] {
            sqlx::raw_sql(pragma)
                .execute(&self.pool)
                .await
                .map_err(StoreError::query("give deleted space back"))?;
        }
        Ok(())
    }
}
