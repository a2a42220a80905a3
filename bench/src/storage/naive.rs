//! The naive schema flowscope's store is compared with: one row per event,
//! `(id, order_key, json)`, the event as compact JSON, and an index on the
//! order key. Same events, same SQLite settings (WAL, `synchronous = NORMAL`).

use std::path::Path;

use sqlx::{AssertSqlSafe, Connection as _, Executor as _};

use super::events::{Chunks, order_id};

/// The naive table, with its index.
const SQLITE_TABLE: &str = "CREATE TABLE naive_events (id INTEGER PRIMARY KEY, order_key TEXT NOT NULL, json TEXT NOT NULL);
CREATE INDEX naive_events_by_order ON naive_events (order_key);";
const POSTGRES_TABLE: &str = "CREATE TABLE naive_events (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, order_key TEXT NOT NULL, json TEXT NOT NULL);
CREATE INDEX naive_events_by_order ON naive_events (order_key);";

/// `INSERT … VALUES ($1, $2), ($3, $4), …` for `rows` rows.
fn insert_sql(rows: usize) -> String {
    let mut sql = String::from("INSERT INTO naive_events (order_key, json) VALUES ");
    for i in 0..rows {
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!("(${}, ${})", 2 * i + 1, 2 * i + 2));
    }
    sql
}

/// Each event as `(order key, JSON)`.
fn rows(
    chunk: Vec<(u64, flowscope_model::Observation)>,
    seed: u64,
) -> anyhow::Result<Vec<(String, String)>> {
    chunk
        .into_iter()
        .map(|(order, event)| Ok((order_id(seed, order), serde_json::to_string(&event)?)))
        .collect()
}

/// Writes the events into a fresh SQLite file; returns its size in bytes.
pub async fn sqlite(path: &Path, seed: u64, events: u64) -> anyhow::Result<u64> {
    use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let mut db = sqlx::SqliteConnection::connect_with(&options).await?;
    sqlx::raw_sql(SQLITE_TABLE).execute(&mut db).await?;
    for chunk in Chunks::new(seed, events) {
        let rows = rows(chunk, seed)?;
        let mut tx = db.begin().await?;
        // SQLite allows 32 766 parameters per statement.
        for part in rows.chunks(8_000) {
            let sql = insert_sql(part.len());
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (key, json) in part {
                query = query.bind(key).bind(json);
            }
            tx.execute(query).await?;
        }
        tx.commit().await?;
    }
    sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&mut db)
        .await?;
    let (size,): (i64,) = sqlx::query_as(
        "SELECT page_count * page_size FROM pragma_page_count(), pragma_page_size()",
    )
    .fetch_one(&mut db)
    .await?;
    db.close().await?;
    Ok(size as u64)
}

/// Writes the events into a new table of the database `url` names; returns
/// `pg_total_relation_size` (table, index and TOAST).
pub async fn postgres(url: &str, seed: u64, events: u64) -> anyhow::Result<u64> {
    let mut db = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(POSTGRES_TABLE).execute(&mut db).await?;
    for chunk in Chunks::new(seed, events) {
        let rows = rows(chunk, seed)?;
        let mut tx = db.begin().await?;
        for part in rows.chunks(8_000) {
            let sql = insert_sql(part.len());
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (key, json) in part {
                query = query.bind(key).bind(json);
            }
            tx.execute(query).await?;
        }
        tx.commit().await?;
    }
    sqlx::raw_sql("VACUUM ANALYZE naive_events")
        .execute(&mut db)
        .await?;
    let (size,): (i64,) = sqlx::query_as("SELECT pg_total_relation_size('naive_events')")
        .fetch_one(&mut db)
        .await?;
    db.close().await?;
    Ok(size as u64)
}

#[cfg(test)]
mod tests {
    #[test]
    fn inserts_number_their_placeholders() {
        assert_eq!(
            super::insert_sql(2),
            "INSERT INTO naive_events (order_key, json) VALUES ($1, $2), ($3, $4)"
        );
    }
}
