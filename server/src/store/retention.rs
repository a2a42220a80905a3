//! Retention, the same for both backends: by age, then by size.
//!
//! Observations go by block: by age, a block whose newest observation is
//! older than the cutoff goes whole, and a block across the cutoff is
//! rewritten without its old lines; by size, the oldest blocks go whole.
//! Counts are of observations, not blocks.

use std::future::Future;

use super::{Result, RetentionReport};

/// Rounds of size-bound deletion at most, should rows differ widely in size.
const MAX_SIZE_ROUNDS: usize = 4;

/// What retention needs of a backend.
pub(super) trait RetentionOps {
    /// Runs a statement with one integer parameter `$1`; returns the rows it changed.
    fn delete_rows(&self, sql: String, arg: i64) -> impl Future<Output = Result<u64>> + Send;
    /// Runs a query (with an integer parameter `$1` if given) returning one nullable integer.
    fn query_number(
        &self,
        sql: String,
        arg: Option<i64>,
    ) -> impl Future<Output = Result<Option<i64>>> + Send;
    /// The bytes the data takes, as compared with the size bound.
    fn used_bytes(&self) -> impl Future<Output = Result<u64>> + Send;
    /// Gives space freed by deletions back, where the backend can.
    fn reclaim(&self) -> impl Future<Output = Result<()>> + Send;
    /// Deletes the observations older than `cutoff` from blocks that also
    /// hold newer ones; returns how many went.
    fn trim_blocks(&self, cutoff: i64) -> impl Future<Output = Result<u64>> + Send;
}

/// A table and the time its rows age by.
#[derive(Debug, Clone, Copy)]
struct Aged {
    table: &'static str,
    time: &'static str,
}

const OBSERVATIONS: Aged = Aged {
    table: "observation_blocks",
    time: "max_unix_us",
};
const QUEUE_SAMPLES: Aged = Aged {
    table: "queue_samples",
    time: "unix_us",
};
const FLOWS: Aged = Aged {
    table: "flows",
    time: "last_seen_unix_us",
};
const ALERTS: Aged = Aged {
    table: "alerts",
    time: "updated_unix_us",
};

/// Deletes the rows of `aged` whose time is `op` (`<` or `<=`) `$1`, with
/// the lookup keys of deleted flows; returns the rows (for blocks: the
/// observations) deleted.
async fn delete_older<B: RetentionOps>(b: &B, aged: Aged, op: &str, time: i64) -> Result<u64> {
    let Aged {
        table,
        time: column,
    } = aged;
    if table == OBSERVATIONS.table {
        let observations = b
            .query_number(
                format!(
                    "SELECT CAST(COALESCE(SUM(num_observations), 0) AS BIGINT) \
                     FROM {table} WHERE {column} {op} $1"
                ),
                Some(time),
            )
            .await?
            .unwrap_or(0);
        b.delete_rows(format!("DELETE FROM {table} WHERE {column} {op} $1"), time)
            .await?;
        return Ok(u64::try_from(observations).unwrap_or(0));
    }
    if table == "flows" {
        b.delete_rows(
            format!(
                "DELETE FROM flow_keys WHERE flow_id IN \
                 (SELECT id FROM flows WHERE {column} {op} $1)"
            ),
            time,
        )
        .await?;
    }
    b.delete_rows(format!("DELETE FROM {table} WHERE {column} {op} $1"), time)
        .await
}

fn count(report: &mut RetentionReport, aged: Aged) -> &mut u64 {
    match aged.table {
        "observation_blocks" => &mut report.num_observations,
        "queue_samples" => &mut report.num_queue_samples,
        "flows" => &mut report.num_flows,
        _ => &mut report.num_alerts,
    }
}

/// Deletes what is older than `cutoff`, then the oldest share of each
/// table until the size is under 90 % of `max_bytes`.
pub(super) async fn enforce<B: RetentionOps>(
    b: &B,
    cutoff: Option<i64>,
    max_bytes: Option<u64>,
) -> Result<RetentionReport> {
    let mut report = RetentionReport {
        size_bytes_before: b.used_bytes().await?,
        ..Default::default()
    };
    if let Some(cutoff) = cutoff {
        for aged in [OBSERVATIONS, QUEUE_SAMPLES, FLOWS, ALERTS] {
            *count(&mut report, aged) += delete_older(b, aged, "<", cutoff).await?;
        }
        report.num_observations += b.trim_blocks(cutoff).await?;
        if report.num_deleted() > 0 {
            b.reclaim().await?;
        }
    }
    if let Some(max) = max_bytes {
        let target = max - max / 10;
        for _ in 0..MAX_SIZE_ROUNDS {
            let used = b.used_bytes().await?;
            if used <= max && !(report.size_bound_hit && used > target) {
                break;
            }
            report.size_bound_hit = true;
            let share = 1.0 - target as f64 / used as f64;
            let mut deleted = 0;
            for aged in [OBSERVATIONS, QUEUE_SAMPLES, FLOWS] {
                let n = delete_oldest_share(b, aged, share).await?;
                *count(&mut report, aged) += n;
                deleted += n;
            }
            if deleted == 0 {
                break;
            }
            b.reclaim().await?;
        }
    }
    report.size_bytes_after = b.used_bytes().await?;
    Ok(report)
}

/// Deletes the oldest `share` (0 to 1) of a table's rows.
async fn delete_oldest_share<B: RetentionOps>(b: &B, aged: Aged, share: f64) -> Result<u64> {
    let Aged { table, time } = aged;
    let rows = b
        .query_number(format!("SELECT COUNT(*) FROM {table}"), None)
        .await?
        .unwrap_or(0);
    let n = (rows as f64 * share).ceil() as i64;
    if n <= 0 {
        return Ok(0);
    }
    let nth = b
        .query_number(
            format!("SELECT {time} FROM {table} ORDER BY {time} LIMIT 1 OFFSET $1"),
            Some(n - 1),
        )
        .await?;
    match nth {
        Some(nth) => delete_older(b, aged, "<=", nth).await,
        None => Ok(0),
    }
}
