//! The operations both backends share, generic over the backend: a
//! connection pool running the statements of [`super::sql`].

use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

use flowscope_model::{FlowDetail, FlowSummary, QueueSample};
use serde_json::Value;
use sqlx::{AssertSqlSafe, Database, Executor, FromRow, IntoArguments, Pool};

use super::codec::{self, BatchRows, SampleTuple};
use super::sql::{
    ALERTS, BLOCKS_SINCE, Bind, COUNTS, Dialect, FIRST_BLOCK_SINCE, FLOW_BY_ID, LOOKUP,
    QUEUE_RANGE, QUEUE_SAMPLES, QUEUE_SAMPLES_BUCKETED, Statement, StoredKeys, blocks_by_id,
    push_flow_where, stored_keys_queries, to_i64, write_statements,
};
use super::written_keys::WrittenKeys;
use super::{FlowFilter, Result, StoreError, blocking, read};

/// Blocks read per query by `observations_since`: ~5 MB of JSON at most.
const REPLAY_PAGE_BLOCKS: i64 = 16;
/// Block ids per query when a flow is read.
const BLOCK_IDS_PER_QUERY: usize = 200;

/// Row counts: observations, queue samples, flows, flow keys, alerts.
pub(super) type Counts = (i64, i64, i64, i64, i64);

/// A store on one backend: a connection pool and the operations both share.
#[derive(Debug)]
pub(super) struct SqlStore<D: Database> {
    pub(super) pool: Pool<D>,
    /// The keys this store wrote for recent flows (shared by its clones).
    written_keys: Arc<Mutex<WrittenKeys>>,
    dialect: PhantomData<D>,
}

impl<D: Database> Clone for SqlStore<D> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            written_keys: self.written_keys.clone(),
            dialect: PhantomData,
        }
    }
}

impl<D: Database> SqlStore<D> {
    pub(super) fn new(pool: Pool<D>) -> Self {
        Self {
            pool,
            written_keys: Arc::default(),
            dialect: PhantomData,
        }
    }

    /// Rows were deleted behind the writer's back (retention): what it
    /// remembers having written is read from the store again.
    pub(super) fn forget_written_keys(&self) {
        *self.written_keys.lock().unwrap_or_else(|p| p.into_inner()) = WrittenKeys::default();
    }
}

impl<D: Dialect> SqlStore<D>
where
    for<'c> &'c mut D::Connection: Executor<'c, Database = D>,
    D::Arguments: IntoArguments<D>,
    for<'r> (String,): FromRow<'r, D::Row>,
    for<'r> (String, String): FromRow<'r, D::Row>,
    for<'r> (Vec<u8>,): FromRow<'r, D::Row>,
    for<'r> (Vec<u8>, Vec<u8>, Vec<u8>): FromRow<'r, D::Row>,
    for<'r> (i64, i64, Vec<u8>): FromRow<'r, D::Row>,
    for<'r> (i64, Vec<u8>): FromRow<'r, D::Row>,
    for<'r> (i64,): FromRow<'r, D::Row>,
    for<'r> (Option<i64>,): FromRow<'r, D::Row>,
    for<'r> (i64, Option<i64>, Option<i64>): FromRow<'r, D::Row>,
    for<'r> Counts: FromRow<'r, D::Row>,
    for<'r> SampleTuple: FromRow<'r, D::Row>,
{
    /// Runs a statement; returns the rows it changed.
    pub(super) async fn execute(
        &self,
        statement: Statement<'_>,
        what: &'static str,
    ) -> Result<u64> {
        let (sql, args) = statement.into_query::<D>();
        let done = sqlx::query_with(AssertSqlSafe(sql), args)
            .execute(&self.pool)
            .await
            .map_err(StoreError::query(what))?;
        Ok(D::rows_affected(&done))
    }

    /// Runs a query; returns its rows as tuples.
    async fn fetch<T>(&self, statement: Statement<'_>, what: &'static str) -> Result<Vec<T>>
    where
        T: for<'r> FromRow<'r, D::Row> + Send + Unpin,
    {
        let (sql, args) = statement.into_query::<D>();
        sqlx::query_as_with(AssertSqlSafe(sql), args)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query(what))
    }

    /// Runs a query returning one row.
    async fn fetch_one<T>(&self, statement: Statement<'_>, what: &'static str) -> Result<T>
    where
        T: for<'r> FromRow<'r, D::Row> + Send + Unpin,
    {
        let (sql, args) = statement.into_query::<D>();
        sqlx::query_as_with(AssertSqlSafe(sql), args)
            .fetch_one(&self.pool)
            .await
            .map_err(StoreError::query(what))
    }

    /// A one-integer query with one optional integer parameter, for retention.
    pub(super) async fn scalar(&self, sql: String, arg: Option<i64>) -> Result<Option<i64>> {
        let mut statement = Statement::new(sql);
        statement.binds.extend(arg.map(Bind::Int));
        let (value,): (Option<i64>,) = self.fetch_one(statement, "measure a table").await?;
        Ok(value)
    }

    /// Writes a batch in one transaction; `items` is each flow's `items` column.
    pub(super) async fn write(&self, rows: &BatchRows, items: &[Vec<u8>]) -> Result<()> {
        let what = "write a batch";
        // The stored keys of the flows this store wrote recently are known;
        // the others' are read in the write's transaction.
        let mut stored_keys = StoredKeys::new();
        let mut unknown: Vec<&str> = Vec::new();
        {
            let written = self.written_keys.lock().unwrap_or_else(|p| p.into_inner());
            for flow in &rows.flows {
                match written.stored(&flow.id, &flow.keys) {
                    Some(stored) => {
                        stored_keys.insert(flow.id.clone(), stored);
                    }
                    None => unknown.push(&flow.id),
                }
            }
        }
        let mut tx = self.pool.begin().await.map_err(StoreError::query(what))?;
        for statement in stored_keys_queries(&unknown) {
            let (sql, args) = statement.into_query::<D>();
            let found: Vec<(String, String)> = sqlx::query_as_with(AssertSqlSafe(sql), args)
                .fetch_all(&mut *tx)
                .await
                .map_err(StoreError::query(what))?;
            for (id, value) in found {
                stored_keys.entry(id).or_default().insert(value);
            }
        }
        for statement in write_statements(rows, items, &stored_keys) {
            let (sql, args) = statement.into_query::<D>();
            sqlx::query_with(AssertSqlSafe(sql), args)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query(what))?;
        }
        tx.commit().await.map_err(StoreError::query(what))?;
        let mut written = self.written_keys.lock().unwrap_or_else(|p| p.into_inner());
        for flow in &rows.flows {
            written.wrote(&flow.id, &flow.keys);
        }
        for id in &rows.deleted_flows {
            written.forget(id);
        }
        Ok(())
    }

    pub(super) async fn flows(&self, filter: &FlowFilter) -> Result<(Vec<FlowSummary>, u64)> {
        let dialect = (D::ILIKE, D::POSITION);
        let mut count = Statement::new("SELECT COUNT(*) FROM flows");
        push_flow_where(&mut count, filter, dialect);
        let (total,): (i64,) = self.fetch_one(count, "count flows").await?;
        let mut page = Statement::new("SELECT summary FROM flows");
        push_flow_where(&mut page, filter, dialect);
        page.push(" ORDER BY started_unix_us DESC, id DESC LIMIT ")
            .bind(Bind::Int(to_i64(filter.effective_limit())))
            .push(" OFFSET ")
            .bind(Bind::Int(to_i64(filter.offset)));
        let rows: Vec<(Vec<u8>,)> = self.fetch(page, "list flows").await?;
        let items = rows
            .iter()
            .map(|(summary,)| codec::decode_summary(summary))
            .collect::<Result<_>>()?;
        Ok((items, codec::count(total)))
    }

    pub(super) async fn flow(&self, id: &str) -> Result<Option<FlowDetail>> {
        let mut statement = Statement::new(FLOW_BY_ID);
        statement.binds.push(Bind::Str(id));
        let rows: Vec<(Vec<u8>, Vec<u8>, Vec<u8>)> = self.fetch(statement, "read a flow").await?;
        let Some((summary, hops, items)) = rows.into_iter().next() else {
            return Ok(None);
        };
        let stored = super::items::decode_items(&items)?;
        let mut ids: Vec<i64> = stored.block_ids().collect();
        ids.sort_unstable();
        ids.dedup();
        let mut blocks = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(BLOCK_IDS_PER_QUERY) {
            let found: Vec<(i64, Vec<u8>)> = self
                .fetch(blocks_by_id(chunk), "read a flow's observations")
                .await?;
            blocks.extend(found);
        }
        blocking(move || read::assemble_flow(&summary, &hops, stored, blocks))
            .await
            .map(Some)
    }

    pub(super) async fn lookup(&self, needle: &str) -> Result<Vec<String>> {
        let mut statement = Statement::new(LOOKUP);
        statement.binds.push(Bind::Str(needle));
        let rows: Vec<(String,)> = self.fetch(statement, "look a flow up").await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    pub(super) async fn queue_history(
        &self,
        vhost: &str,
        queue: &str,
        since_unix_us: i64,
        max_points: usize,
    ) -> Result<Vec<QueueSample>> {
        let what = "read a queue's history";
        let range = [Bind::Str(vhost), Bind::Str(queue), Bind::Int(since_unix_us)];
        let mut statement = Statement::new(QUEUE_RANGE);
        statement.binds.extend(range.clone());
        let (n, min, max): (i64, Option<i64>, Option<i64>) =
            self.fetch_one(statement, what).await?;
        let (Some(min), Some(max)) = (min, max) else {
            return Ok(Vec::new());
        };
        let mut statement;
        if codec::count(n) <= max_points as u64 {
            statement = Statement::new(QUEUE_SAMPLES);
            statement.binds.extend(range);
        } else {
            statement = Statement::new(QUEUE_SAMPLES_BUCKETED);
            statement.binds.extend(range);
            let width = codec::bucket_width(min, max, max_points);
            statement.binds.extend([Bind::Int(min), Bind::Int(width)]);
        }
        let rows: Vec<SampleTuple> = self.fetch(statement, what).await?;
        Ok(rows.into_iter().map(codec::sample_from_tuple).collect())
    }

    pub(super) async fn alerts(&self, limit: usize) -> Result<Vec<Value>> {
        let mut statement = Statement::new(ALERTS);
        statement.binds.push(Bind::Int(to_i64(limit)));
        let rows: Vec<(String,)> = self.fetch(statement, "read alerts").await?;
        rows.iter().map(|(doc,)| codec::decode_alert(doc)).collect()
    }

    /// The observations seen at or after a time, in the order stored, and
    /// where the messages and spans among them are.
    pub(super) async fn observations_since(
        &self,
        since_unix_us: i64,
        limit: usize,
    ) -> Result<read::Replayed> {
        let what = "read observations";
        let (mut out, mut located) = (Vec::new(), Vec::new());
        let Some(first) = self
            .scalar(FIRST_BLOCK_SINCE.into(), Some(since_unix_us))
            .await?
        else {
            return Ok((out, located));
        };
        let mut after = first - 1;
        while out.len() < limit {
            let mut statement = Statement::new(BLOCKS_SINCE);
            statement.binds.extend([
                Bind::Int(since_unix_us),
                Bind::Int(after),
                Bind::Int(REPLAY_PAGE_BLOCKS),
            ]);
            let rows: Vec<(i64, i64, Vec<u8>)> = self.fetch(statement, what).await?;
            let Some(&(last, _, _)) = rows.last() else {
                break;
            };
            after = last;
            let wanted = limit - out.len();
            let (page, page_located) =
                blocking(move || read::observations_in(rows, since_unix_us, wanted)).await?;
            out.extend(page);
            located.extend(page_located);
        }
        Ok((out, located))
    }

    /// Deletes the observations older than `cutoff` from the blocks that
    /// also hold newer ones (the others go whole); returns how many went.
    pub(super) async fn trim_blocks(&self, cutoff: i64) -> Result<u64> {
        let what = "delete old observations";
        let mut statement =
            Statement::new("SELECT id, data FROM observation_blocks WHERE min_unix_us < $1");
        statement.binds.push(Bind::Int(cutoff));
        let rows: Vec<(i64, Vec<u8>)> = self.fetch(statement, what).await?;
        let mut deleted = 0;
        for (id, data) in rows {
            let Some(t) = blocking(move || super::blocks::trim_block(&data, cutoff)).await? else {
                continue;
            };
            let mut statement = if t.num_observations == 0 {
                Statement::new("DELETE FROM observation_blocks WHERE id = $1")
            } else {
                let mut update = Statement::new(
                    "UPDATE observation_blocks SET data = $2, num_observations = $3, \
                     min_unix_us = $4, max_unix_us = $5 WHERE id = $1",
                );
                update.binds.push(Bind::Int(id));
                update.binds.extend([
                    Bind::Bytes(&t.data),
                    Bind::Int(t.num_observations),
                    Bind::Int(t.min_unix_us),
                    Bind::Int(t.max_unix_us),
                ]);
                update
            };
            if statement.binds.is_empty() {
                statement.binds.push(Bind::Int(id));
            }
            self.execute(statement, what).await?;
            deleted += t.num_deleted;
        }
        Ok(deleted)
    }

    /// Row counts of every table.
    pub(super) async fn counts(&self) -> Result<Counts> {
        self.fetch_one(Statement::new(COUNTS), "count rows").await
    }

    pub(super) async fn close(&self) {
        self.pool.close().await;
    }
}
