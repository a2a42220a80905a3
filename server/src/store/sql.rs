//! SQL both backends run: the same statements with `$n` placeholders
//! (SQLite takes them too), executed by one generic
//! [`SqlStore`](super::sql_store::SqlStore). What differs between the
//! backends is their [`Dialect`].

use std::collections::{HashMap, HashSet};

use sqlx::Database;

use super::FlowFilter;
use super::codec::{self, BatchRows, FlowRow};

/// Bind parameters per statement. Small on purpose: SQLite finds a `$n`
/// parameter's slot by a linear scan of the statement's names, so binding
/// costs O(n²) per statement (at 8000 it took 27 % of a write's CPU); 300
/// costs little and still puts 100 observations in one statement. (Built
/// statements reach SQLite with anonymous `?` placeholders, bound without a
/// scan: see [`anonymous_placeholders`].)
const CHUNK_BINDS: usize = 300;

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(super) enum Bind<'a> {
    Str(&'a str),
    String(String),
    OptStr(Option<&'a str>),
    Int(i64),
    OptInt(Option<i64>),
    OptReal(Option<f64>),
    Bytes(&'a [u8]),
}

/// What differs between the backends' SQL.
pub(super) trait Dialect: Database {
    /// Case-insensitive `LIKE`.
    const ILIKE: &'static str;
    /// `f(haystack, needle)`: the needle's 1-based position, 0 when absent.
    const POSITION: &'static str;
    /// The values, as this backend's arguments.
    fn arguments(binds: &[Bind<'_>]) -> Self::Arguments;
    /// The SQL text as this backend runs it best (`$n` placeholders as given
    /// by default).
    fn sql(sql: String, _binds: usize) -> String {
        sql
    }
    /// Rows a statement changed.
    fn rows_affected(result: &Self::QueryResult) -> u64;
}

/// SQL text built with `$n` placeholders, and the values bound to them.
#[derive(Debug, Default)]
pub(super) struct Statement<'a> {
    pub sql: String,
    pub binds: Vec<Bind<'a>>,
}

impl<'a> Statement<'a> {
    pub(super) fn new(sql: impl Into<String>) -> Self {
        Self {
            sql: sql.into(),
            binds: Vec::new(),
        }
    }

    /// Appends SQL text (constants only: values go through [`Self::bind`]).
    pub(super) fn push(&mut self, sql: &str) -> &mut Self {
        self.sql.push_str(sql);
        self
    }

    /// Appends a placeholder for the value.
    pub(super) fn bind(&mut self, value: Bind<'a>) -> &mut Self {
        self.binds.push(value);
        self.sql.push('$');
        self.sql.push_str(&self.binds.len().to_string());
        self
    }

    /// The SQL text and the arguments, for backend `D`.
    pub(super) fn into_query<D: Dialect>(self) -> (String, D::Arguments) {
        let args = D::arguments(&self.binds);
        (D::sql(self.sql, self.binds.len()), args)
    }

    /// Appends `(v1, v2, …)`.
    fn tuple(&mut self, values: Vec<Bind<'a>>) -> &mut Self {
        self.push("(");
        for (i, value) in values.into_iter().enumerate() {
            if i > 0 {
                self.push(", ");
            }
            self.bind(value);
        }
        self.push(")")
    }
}

/// `sql` with each placeholder `$n` written `?`, when its placeholders are
/// `$1, $2, …, $count` in order, each once (as [`Statement::bind`] writes
/// them); otherwise `sql` unchanged. For SQLite, which binds anonymous `?`
/// parameters by position but finds a numbered one's slot by a scan of all
/// the statement's names: for a 300-value insert, ~45,000 comparisons.
pub(super) fn anonymous_placeholders(sql: String, count: usize) -> String {
    let bytes = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut copied = 0;
    let mut expected = 1;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'$' {
            i += 1;
            continue;
        }
        let digits = bytes[i + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let number = sql[i + 1..i + 1 + digits].parse::<usize>();
        if number != Ok(expected) {
            return sql;
        }
        out.push_str(&sql[copied..i]);
        out.push('?');
        expected += 1;
        i += 1 + digits;
        copied = i;
    }
    if expected != count + 1 {
        return sql;
    }
    out.push_str(&sql[copied..]);
    out
}

/// `INSERT INTO <head> VALUES (…), (…)<tail>` for each chunk of rows.
fn inserts<'r>(
    head: &str,
    tail: &str,
    rows: impl IntoIterator<Item = Vec<Bind<'r>>>,
    width: usize,
) -> Vec<Statement<'r>> {
    let rows: Vec<_> = rows.into_iter().collect();
    rows.chunks(CHUNK_BINDS / width)
        .map(|chunk| {
            let mut statement = Statement::new(format!("INSERT INTO {head} VALUES "));
            for (i, row) in chunk.iter().enumerate() {
                if i > 0 {
                    statement.push(", ");
                }
                statement.tuple(row.clone());
            }
            statement.push(tail);
            statement
        })
        .collect()
}

/// `<head> IN (…)` for each chunk of ids.
fn in_list<'r>(head: &str, ids: &[&'r str]) -> Vec<Statement<'r>> {
    ids.chunks(CHUNK_BINDS)
        .map(|chunk| {
            let mut statement = Statement::new(format!("{head} IN "));
            let binds: Vec<_> = chunk.iter().map(|id| Bind::Str(id)).collect();
            statement.tuple(binds);
            statement
        })
        .collect()
}

/// The lookup keys stored for some flows before a write: flow id → values.
pub(super) type StoredKeys = HashMap<String, HashSet<String>>;

/// The queries reading the stored keys of these flows (`flow_id, value`
/// rows), run in the write's transaction before [`write_statements`].
pub(super) fn stored_keys_queries<'r>(flow_ids: &[&'r str]) -> Vec<Statement<'r>> {
    in_list(
        "SELECT flow_id, value FROM flow_keys WHERE flow_id",
        flow_ids,
    )
}

/// The statements that write a batch, in order; `items` is each flow's
/// `items` column (see [`super::items`]), `stored_keys` the keys its flows
/// had (from [`stored_keys_queries`]).
pub(super) fn write_statements<'r>(
    rows: &'r BatchRows,
    items: &'r [Vec<u8>],
    stored_keys: &'r StoredKeys,
) -> Vec<Statement<'r>> {
    let mut out = inserts(
        "observation_blocks (id, min_unix_us, max_unix_us, num_observations, data)",
        "",
        rows.blocks.iter().map(|b| {
            vec![
                Bind::Int(b.id),
                Bind::Int(b.min_unix_us),
                Bind::Int(b.max_unix_us),
                Bind::Int(b.num_observations),
                Bind::Bytes(&b.data),
            ]
        }),
        5,
    );
    out.extend(inserts(
        "queue_samples (vhost, queue, unix_us, source, ready, unacked, consumers, \
         publish_rate, deliver_rate, ack_rate, head_message_timestamp)",
        "",
        rows.samples.iter().map(|s| {
            vec![
                Bind::Str(&s.vhost),
                Bind::Str(&s.queue),
                Bind::Int(s.unix_us),
                Bind::Str(s.source),
                Bind::OptInt(s.ready),
                Bind::OptInt(s.unacked),
                Bind::OptInt(s.consumers),
                Bind::OptReal(s.publish_rate),
                Bind::OptReal(s.deliver_rate),
                Bind::OptReal(s.ack_rate),
                Bind::OptInt(s.head_message_timestamp),
            ]
        }),
        11,
    ));
    out.extend(inserts(
        "flows (id, business_key, status, started_unix_us, last_seen_unix_us, services, \
         event_types, summary, hops, items)",
        " ON CONFLICT (id) DO UPDATE SET business_key = excluded.business_key, \
         status = excluded.status, started_unix_us = excluded.started_unix_us, \
         last_seen_unix_us = excluded.last_seen_unix_us, services = excluded.services, \
         event_types = excluded.event_types, summary = excluded.summary, hops = excluded.hops, \
         items = excluded.items",
        rows.flows
            .iter()
            .zip(items)
            .map(|(f, items)| flow_binds(f, items)),
        10,
    ));
    out.extend(key_statements(rows, stored_keys));
    let deleted: Vec<&str> = rows.deleted_flows.iter().map(String::as_str).collect();
    out.extend(in_list("DELETE FROM flow_keys WHERE flow_id", &deleted));
    out.extend(in_list("DELETE FROM flows WHERE id", &deleted));
    out.extend(inserts(
        "alerts (id, updated_unix_us, doc)",
        " ON CONFLICT (id) DO UPDATE SET updated_unix_us = excluded.updated_unix_us, \
         doc = excluded.doc",
        rows.alerts.iter().map(|a| {
            vec![
                Bind::Str(&a.id),
                Bind::Int(a.updated_unix_us),
                Bind::Str(&a.doc),
            ]
        }),
        3,
    ));
    out
}

/// A flow's keys are changed, not replaced: its new keys inserted, the ones
/// it lost deleted (rare), the others left alone. A growing flow is
/// rewritten often; rewriting its keys each time left a dead copy of every
/// key row and index entry behind on PostgreSQL.
fn key_statements<'r>(rows: &'r BatchRows, stored_keys: &'r StoredKeys) -> Vec<Statement<'r>> {
    let mut out = Vec::new();
    let mut added = Vec::new();
    for f in &rows.flows {
        let stored = stored_keys.get(&f.id);
        let is_stored = |value: &str| stored.is_some_and(|s| s.contains(value));
        added.extend(f.keys.iter().filter(|v| !is_stored(v)).map(|v| (&f.id, v)));
        let lost = stored.into_iter().flatten();
        for value in lost.filter(|v| f.keys.binary_search(v).is_err()) {
            let mut delete = Statement::new("DELETE FROM flow_keys WHERE flow_id = ");
            delete
                .bind(Bind::Str(&f.id))
                .push(" AND value = ")
                .bind(Bind::Str(value));
            out.push(delete);
        }
    }
    out.extend(inserts(
        "flow_keys (flow_id, value)",
        " ON CONFLICT DO NOTHING",
        added
            .into_iter()
            .map(|(id, value)| vec![Bind::Str(id), Bind::Str(value)]),
        2,
    ));
    out
}

fn flow_binds<'r>(f: &'r FlowRow, items: &'r [u8]) -> Vec<Bind<'r>> {
    vec![
        Bind::Str(&f.id),
        Bind::OptStr(f.business_key.as_deref()),
        Bind::Str(f.status),
        Bind::Int(f.started_unix_us),
        Bind::Int(f.last_seen_unix_us),
        Bind::Str(&f.services),
        Bind::Str(&f.event_types),
        Bind::Bytes(&f.summary),
        Bind::Bytes(&f.hops),
        Bind::Bytes(items),
    ]
}

/// ` WHERE …` for a flow filter.
pub(super) fn push_flow_where<'a>(
    statement: &mut Statement<'a>,
    filter: &'a FlowFilter,
    dialect: (&str, &str),
) {
    let (ilike, position) = dialect;
    statement.push(" WHERE 1 = 1");
    if let Some(status) = filter.status {
        statement
            .push(" AND status = ")
            .bind(Bind::Str(status.as_str()));
    }
    for (column, item) in [
        ("services", &filter.service),
        ("event_types", &filter.event_type),
    ] {
        if let Some(item) = item.as_deref().filter(|s| !s.is_empty()) {
            statement
                .push(&format!(" AND {position}({column}, "))
                .bind(Bind::String(codec::list_needle(item)))
                .push(") > 0");
        }
    }
    if let Some(variant) = &filter.variant {
        statement
            .push(" AND event_types = ")
            .bind(Bind::String(codec::list_text(variant)));
    }
    if let Some(text) = filter
        .text
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let pattern = codec::like_pattern(text);
        statement
            .push(&format!(" AND (id {ilike} "))
            .bind(Bind::String(pattern.clone()))
            .push(&format!(" ESCAPE '\\' OR business_key {ilike} "))
            .bind(Bind::String(pattern.clone()))
            .push(&format!(
                " ESCAPE '\\' OR id IN (SELECT flow_id FROM flow_keys WHERE value {ilike} "
            ))
            .bind(Bind::String(pattern))
            .push(" ESCAPE '\\'))");
    }
    if let Some(since) = filter.since_unix_us {
        statement
            .push(" AND started_unix_us >= ")
            .bind(Bind::Int(since));
    }
    if let Some(until) = filter.until_unix_us {
        statement
            .push(" AND started_unix_us < ")
            .bind(Bind::Int(until));
    }
}

pub(super) fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) const FLOW_BY_ID: &str = "SELECT summary, hops, items FROM flows WHERE id = $1";

pub(super) const LOOKUP: &str = "SELECT k.flow_id FROM flow_keys k JOIN flows f ON f.id = k.flow_id \
     WHERE k.value = $1 GROUP BY k.flow_id, f.started_unix_us \
     ORDER BY f.started_unix_us DESC, k.flow_id DESC";

pub(super) const QUEUE_RANGE: &str = "SELECT COUNT(*), MIN(unix_us), MAX(unix_us) FROM queue_samples \
     WHERE vhost = $1 AND queue = $2 AND unix_us >= $3";

/// The columns [`codec::SampleTuple`] reads.
macro_rules! sample_columns {
    () => {
        "vhost, queue, unix_us, source, ready, unacked, consumers, publish_rate, \
         deliver_rate, ack_rate, head_message_timestamp"
    };
}

pub(super) const QUEUE_SAMPLES: &str = concat!(
    "SELECT ",
    sample_columns!(),
    " FROM queue_samples WHERE vhost = $1 AND queue = $2 AND unix_us >= $3 ORDER BY unix_us"
);

/// The last sample of each bucket: `$4` the first time, `$5` the bucket width.
pub(super) const QUEUE_SAMPLES_BUCKETED: &str = concat!(
    "SELECT ",
    sample_columns!(),
    " FROM queue_samples WHERE vhost = $1 AND queue = $2 AND unix_us >= $3 AND unix_us IN \
     (SELECT MAX(unix_us) FROM queue_samples WHERE vhost = $1 AND queue = $2 AND unix_us >= $3 \
     GROUP BY (unix_us - $4) / $5) ORDER BY unix_us"
);

pub(super) const ALERTS: &str = "SELECT doc FROM alerts ORDER BY updated_unix_us DESC, id LIMIT $1";

/// The next page of blocks holding observations seen at or after `$1`, after block `$2`.
pub(super) const BLOCKS_SINCE: &str = "SELECT seq, id, data FROM observation_blocks \
     WHERE max_unix_us >= $1 AND seq > $2 ORDER BY seq LIMIT $3";

/// The first block holding observations seen at or after `$1`.
pub(super) const FIRST_BLOCK_SINCE: &str =
    "SELECT MIN(seq) FROM observation_blocks WHERE max_unix_us >= $1";

/// Blocks by id: `SELECT id, data … WHERE id IN (…)` is built with [`blocks_by_id`].
pub(super) fn blocks_by_id<'a>(ids: &[i64]) -> Statement<'a> {
    let mut statement = Statement::new("SELECT id, data FROM observation_blocks WHERE id IN ");
    statement.tuple(ids.iter().map(|id| Bind::Int(*id)).collect());
    statement
}

pub(super) const COUNTS: &str = "SELECT \
     (SELECT CAST(COALESCE(SUM(num_observations), 0) AS BIGINT) FROM observation_blocks), \
     (SELECT COUNT(*) FROM queue_samples), (SELECT COUNT(*) FROM flows), \
     (SELECT COUNT(*) FROM flow_keys), (SELECT COUNT(*) FROM alerts)";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_statements_reach_sqlite_with_anonymous_placeholders() {
        let mut statement = Statement::new("INSERT INTO t VALUES ");
        let rows: Vec<Vec<Bind<'_>>> = (0..12)
            .map(|n| vec![Bind::Int(n), Bind::Str("x")])
            .collect();
        for (i, row) in rows.into_iter().enumerate() {
            if i > 0 {
                statement.push(", ");
            }
            statement.tuple(row);
        }
        assert!(statement.sql.contains("$24"));
        let sql = anonymous_placeholders(statement.sql, 24);
        assert!(!sql.contains('$'), "{sql}");
        assert_eq!(sql.matches('?').count(), 24);
        assert!(sql.starts_with("INSERT INTO t VALUES (?, ?), (?, ?)"));
    }

    #[test]
    fn reused_or_unordered_placeholders_stay_numbered() {
        let same = |sql: &str, binds| anonymous_placeholders(sql.to_owned(), binds) == sql;
        // Reused: `$1` stands for one value in two places.
        assert!(same(QUEUE_SAMPLES_BUCKETED, 5));
        assert!(same("SELECT $2, $1", 2));
        // Fewer placeholders than values bound: sqlx would report it, not us.
        assert!(same("SELECT $1", 2));
        assert_eq!(
            anonymous_placeholders("SELECT $1 + $2".into(), 2),
            "SELECT ? + ?"
        );
        assert_eq!(anonymous_placeholders("SELECT 1".into(), 0), "SELECT 1");
    }
}
