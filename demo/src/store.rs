//! Each service's own SQLite database: business tables, an inbox and an outbox.
//!
//! - The **inbox** records the `message_id` of every message a service has
//!   processed, in the same transaction as its business changes, so a
//!   redelivered duplicate is recognised and never applied twice.
//! - The **outbox** holds the events a service decided to publish, written in
//!   that same transaction; the [`crate::relay`] publishes them with confirms
//!   and marks them sent. A crash between commit and publish loses nothing.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use chrono::Utc;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqliteConnection, SqlitePool};
use uuid::Uuid;

use crate::events::Envelope;

/// Tables every service has.
const COMMON_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS inbox (
        message_id TEXT PRIMARY KEY,
        received_at TEXT NOT NULL
    )",
    "CREATE TABLE IF NOT EXISTS outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        message_id TEXT NOT NULL UNIQUE,
        source_message_id TEXT,
        order_id TEXT NOT NULL,
        event_type TEXT NOT NULL,
        routing_key TEXT NOT NULL,
        body BLOB NOT NULL,
        trace_context TEXT NOT NULL,
        created_at TEXT NOT NULL,
        sent_at TEXT
    )",
    "CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent_at IS NULL",
];

/// How many outbox rows the relay takes per round.
pub const OUTBOX_BATCH: i64 = 100;

/// A service's database.
#[derive(Debug, Clone)]
pub struct Store {
    pool: SqlitePool,
}

/// An event waiting in the outbox.
#[derive(Debug, Clone)]
pub struct OutboxRow {
    pub message_id: String,
    pub order_id: String,
    pub event_type: String,
    pub routing_key: String,
    pub body: Vec<u8>,
    /// W3C trace context of the span that decided the event (its parent).
    pub trace_context: HashMap<String, String>,
}

impl Store {
    /// Opens (creating if needed) `path` and applies the common and the
    /// service's own schema.
    pub async fn open(path: &Path, schema: &[&str]) -> sqlx::Result<Self> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(sqlx::Error::Io)?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        for statement in COMMON_SCHEMA.iter().chain(schema) {
            // Schema statements are constants of this crate, never user input.
            sqlx::query(sqlx::AssertSqlSafe(*statement))
                .execute(&pool)
                .await?;
        }
        Ok(Self { pool })
    }

    /// The connection pool, for the service's own queries.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Whether a message with this id was already processed.
    pub async fn is_processed(&self, message_id: &str) -> sqlx::Result<bool> {
        let row = sqlx::query("SELECT 1 FROM inbox WHERE message_id = ?")
            .bind(message_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.is_some())
    }

    /// Oldest events not yet confirmed by the broker.
    pub async fn unsent(&self) -> sqlx::Result<Vec<OutboxRow>> {
        let rows = sqlx::query(
            "SELECT message_id, order_id, event_type, routing_key, body, trace_context
             FROM outbox WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
        )
        .bind(OUTBOX_BATCH)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| OutboxRow {
                message_id: row.get("message_id"),
                order_id: row.get("order_id"),
                event_type: row.get("event_type"),
                routing_key: row.get("routing_key"),
                body: row.get("body"),
                trace_context: serde_json::from_str(row.get::<&str, _>("trace_context"))
                    .unwrap_or_default(),
            })
            .collect())
    }

    /// Records that the broker confirmed an outbox event.
    pub async fn mark_sent(&self, message_id: &str) -> sqlx::Result<()> {
        sqlx::query("UPDATE outbox SET sent_at = ? WHERE message_id = ?")
            .bind(Utc::now().to_rfc3339())
            .bind(message_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

/// Records `message_id` as processed, inside the caller's transaction.
pub async fn mark_processed(tx: &mut SqliteConnection, message_id: &str) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO inbox (message_id, received_at) VALUES (?, ?)")
        .bind(message_id)
        .bind(Utc::now().to_rfc3339())
        .execute(tx)
        .await?;
    Ok(())
}

/// Puts an event into the outbox, inside the caller's transaction; returns its message id.
pub async fn enqueue(
    tx: &mut SqliteConnection,
    envelope: &Envelope,
    source_message_id: Option<&str>,
    trace_context: &HashMap<String, String>,
) -> sqlx::Result<String> {
    let message_id = Uuid::new_v4().to_string();
    sqlx::query(
        "INSERT INTO outbox (message_id, source_message_id, order_id, event_type, routing_key,
                             body, trace_context, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&message_id)
    .bind(source_message_id)
    .bind(envelope.order_id.to_string())
    .bind(envelope.event.name())
    .bind(envelope.event.routing_key())
    .bind(envelope.to_body())
    .bind(serde_json::to_string(trace_context).expect("a string map serializes"))
    .bind(Utc::now().to_rfc3339())
    .execute(tx)
    .await?;
    Ok(message_id)
}
