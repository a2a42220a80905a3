//! What can go wrong with the store, each error saying what to do about it.

use std::path::PathBuf;

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "unsupported store URL {url:?}: use sqlite://<path> (like {}) or postgres://user@host:port/database",
        super::DEFAULT_STORE_URL
    )]
    UnsupportedUrl { url: String },
    #[error(
        "cannot create the directory {dir} for the SQLite store at {path}: {source}; check the path and that its parent is writable"
    )]
    CreateDir {
        dir: PathBuf,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "cannot open the SQLite store at {path}: {source}; check the directory is writable and the file, if it exists, is a SQLite database"
    )]
    OpenSqlite { path: PathBuf, source: sqlx::Error },
    #[error(
        "invalid PostgreSQL URL {url}: {source}; expected postgres://user[:password]@host[:port]/database"
    )]
    PostgresUrl { url: String, source: sqlx::Error },
    #[error(
        "PostgreSQL at {url} refused the connection: {reason}; check the server runs and the URL's host, port, user, password and database"
    )]
    ConnectPostgres { url: String, reason: String },
    #[error("cannot create the store's tables: {source}; {hint}", hint = hint(.source))]
    Schema { source: sqlx::Error },
    #[error("the store failed to {what}: {source}; {hint}", hint = hint(.source))]
    Query {
        what: &'static str,
        source: sqlx::Error,
    },
    #[error("cannot {what}: {source}; the stored data does not match this version of flowscope")]
    Json {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error(
        "cannot {what} stored data: {source}; the store file is damaged, move it away to start afresh"
    )]
    Compression {
        what: &'static str,
        source: std::io::Error,
    },
    #[error(
        "cannot read {what}: the stored bytes are malformed; the store is damaged, move it away to start afresh"
    )]
    Corrupt { what: &'static str },
    #[error(
        "the store at {location} was written by an older flowscope (one row per observation in a table `observations`, or lookup keys with a `kind` column), which this version cannot read or convert; keep it elsewhere and start with an empty store: move the SQLite file away, or for PostgreSQL drop its tables observations, queue_samples, flows, flow_keys and alerts (or point store.url at a new file or database)"
    )]
    OldSchema { location: String },
    #[error(
        "alert record without a string \"id\": {doc}; every alert the alert engine stores needs one"
    )]
    AlertWithoutId { doc: String },
}

/// What the store functions return.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

impl StoreError {
    /// Whether trying the same thing again later may succeed (the database
    /// was busy, unreachable or full), as opposed to data it will never take.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Query { .. } | StoreError::Schema { .. })
    }

    /// A closure naming what failed, for `map_err`.
    pub(super) fn query(what: &'static str) -> impl FnOnce(sqlx::Error) -> StoreError {
        move |source| StoreError::Query { what, source }
    }
}

/// What to do about a database error.
fn hint(err: &sqlx::Error) -> &'static str {
    const FULL: &str =
        "the disk is full: free space, or lower store.retention_hours or store.max_size_mib";
    const UNREACHABLE: &str = "the database is unreachable: check it runs and the network";
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            // PostgreSQL SQLSTATEs have five characters; SQLite extended codes fewer digits.
            if code.len() == 5 {
                match code.as_str() {
                    "53100" => FULL,
                    c if c.starts_with("08") || c.starts_with("57P") => UNREACHABLE,
                    c if c.starts_with("53") => {
                        "PostgreSQL is out of resources: check its memory and connection limits"
                    }
                    _ => "check the PostgreSQL server's log",
                }
            } else {
                match code.parse::<i32>().map(|c| c & 0xff) {
                    Ok(13) => FULL,
                    Ok(5 | 6) => {
                        "the database is locked: check no other process writes the same SQLite file"
                    }
                    Ok(8) => "the database is read-only: check the file's permissions",
                    Ok(10) => "a disk I/O error: check the disk",
                    Ok(11 | 26) => {
                        "the file is corrupt or not a SQLite database: move it away to start afresh"
                    }
                    _ => "check the database is healthy",
                }
            }
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::PoolTimedOut => UNREACHABLE,
        sqlx::Error::PoolClosed => "the store was closed: flowscope is shutting down",
        _ => "check the database is healthy",
    }
}
