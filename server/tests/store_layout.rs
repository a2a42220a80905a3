//! The store's layout on disk, on both backends: observations stored once,
//! in compressed blocks; flows that refer to them; retention by block; and
//! a store of the layout before blocks refused with what to do.

mod store_common;

use flowscope_model::{FlowDetail, FlowStatus, Observation, now_unix_us};
use flowscope_server::store::{Store, StoreError, WriteBatch};
use sqlx::Connection;
use store_common::*;

on_both_backends!(
    a_flow_written_in_several_steps_reads_back_whole,
    a_flow_written_after_its_observations_reads_back_whole,
    a_reopened_store_replays_in_order_and_flows_still_grow,
    retention_deletes_old_blocks_and_trims_the_one_across_the_cutoff,
    events_take_less_room_than_their_json,
    an_old_store_is_refused_with_what_to_do,
    a_store_with_keys_by_kind_is_refused_too,
);

/// Flow `n` as the correlator sees it after `step` (1 to 3) of its observations.
fn flow_at_step(n: u32, step: usize) -> (FlowDetail, Vec<Observation>) {
    let whole = order_flow(n, FlowStatus::Completed, "PaymentProcessed", T0);
    let observations = observations_of(&whole);
    let mut flow = whole.clone();
    match step {
        1 => {
            flow.summary.status = FlowStatus::InFlight;
            flow.messages.truncate(1);
            flow.hops.truncate(1);
            flow.spans.clear();
            (flow, observations[..1].to_vec())
        }
        2 => {
            flow.summary.status = FlowStatus::InFlight;
            flow.spans.clear();
            (flow, observations[1..3].to_vec())
        }
        _ => (flow, observations[3..].to_vec()),
    }
}

async fn write(store: &Store, observations: Vec<Observation>, flows: Vec<FlowDetail>) {
    store
        .write(WriteBatch {
            observations,
            flows,
            ..Default::default()
        })
        .await
        .unwrap();
}

async fn a_flow_written_in_several_steps_reads_back_whole(db: TestDb) {
    let store = db.open().await;
    for step in 1..=3 {
        let (flow, observations) = flow_at_step(1, step);
        write(&store, observations, vec![flow.clone()]).await;
        assert_eq!(
            store.flow("flow-1").await.unwrap(),
            Some(flow),
            "step {step}"
        );
    }
    let (whole, _) = flow_at_step(1, 3);
    // Each observation is counted once, however often its flow was written.
    assert_eq!(store.stats().await.unwrap().num_observations, 4);
    // Rewritten without new observations (a status change): still whole.
    let mut stuck = whole.clone();
    stuck.summary.status = FlowStatus::Stuck;
    write(&store, vec![], vec![stuck.clone()]).await;
    assert_eq!(store.flow("flow-1").await.unwrap(), Some(stuck.clone()));

    store.close().await;
    let store = db.open().await;
    assert_eq!(store.flow("flow-1").await.unwrap(), Some(stuck));
}

async fn a_flow_written_after_its_observations_reads_back_whole(db: TestDb) {
    let store = db.open().await;
    let flows = six_flows();
    write(
        &store,
        flows.iter().flat_map(observations_of).collect(),
        vec![],
    )
    .await;
    // A flow with no observation behind it is kept whole too.
    let mut without = order_flow(7, FlowStatus::Failed, "PaymentDeclined", T0);
    without.messages[0].properties.message_id = Some("never-observed".into());
    let mut written = flows.clone();
    written.push(without);
    write(&store, vec![], written.clone()).await;
    for flow in written {
        assert_eq!(
            store.flow(&flow.summary.id).await.unwrap(),
            Some(flow.clone())
        );
    }
}

async fn a_reopened_store_replays_in_order_and_flows_still_grow(db: TestDb) {
    let store = db.open().await;
    // 150 flows' observations in two batches, the first more than one block.
    let flows: Vec<FlowDetail> = (1..=150)
        .map(|n| {
            order_flow(
                n,
                FlowStatus::Completed,
                "PaymentProcessed",
                T0 + i64::from(n),
            )
        })
        .collect();
    let mut written = Vec::new();
    for chunk in flows.chunks(100) {
        let observations: Vec<Observation> = chunk.iter().flat_map(observations_of).collect();
        written.extend(observations.clone());
        write(&store, observations, vec![]).await;
    }
    let (first, _) = flow_at_step(1000, 2);
    let (_, early) = flow_at_step(1000, 1);
    let (_, middle) = flow_at_step(1000, 2);
    written.extend(early.iter().chain(&middle).cloned());
    write(
        &store,
        early.into_iter().chain(middle).collect(),
        vec![first],
    )
    .await;
    store.close().await;

    let store = db.open().await;
    let replayed = store.observations_since(0, 100_000).await.unwrap();
    assert_eq!(replayed.len(), written.len());
    assert_eq!(replayed, written);
    let since = T0 + 100;
    let expected: Vec<Observation> = written
        .iter()
        .filter(|o| time(o) >= since)
        .take(300)
        .cloned()
        .collect();
    assert_eq!(
        store.observations_since(since, 300).await.unwrap(),
        expected
    );

    // After the replay, the flow in flight gets its last observations.
    let (whole, last) = flow_at_step(1000, 3);
    write(&store, last, vec![whole.clone()]).await;
    assert_eq!(store.flow("flow-1000").await.unwrap(), Some(whole));
}

async fn retention_deletes_old_blocks_and_trims_the_one_across_the_cutoff(db: TestDb) {
    let store = db.open().await;
    let now = now_unix_us();
    let (old, new) = (now - 100 * HOUR, now - HOUR);
    let ancient = order_flow(1, FlowStatus::Completed, "PaymentProcessed", old);
    let recent = order_flow(2, FlowStatus::Completed, "PaymentProcessed", new);
    // A block of old observations only, then one holding old and new ones.
    write(&store, observations_of(&ancient), vec![]).await;
    let mut across = observations_of(&ancient);
    across.extend(observations_of(&recent));
    write(&store, across, vec![ancient, recent.clone()]).await;
    assert_eq!(store.stats().await.unwrap().num_observations, 12);

    let report = store.enforce_retention(now).await.unwrap();
    assert_eq!(
        (report.num_observations, report.num_flows),
        (8, 1),
        "{report:?}"
    );
    assert_eq!(store.stats().await.unwrap().num_observations, 4);
    assert_eq!(
        store.observations_since(0, 100).await.unwrap(),
        observations_of(&recent)
    );
    assert_eq!(store.flow("flow-2").await.unwrap(), Some(recent));
    assert_eq!(store.enforce_retention(now).await.unwrap().num_deleted(), 0);

    // A flow outliving its first observations keeps its summary and the rest.
    let mut long = order_flow(3, FlowStatus::Completed, "PaymentProcessed", old);
    long.messages[1].observed_unix_us = new;
    std::sync::Arc::make_mut(&mut long.spans[0]).observed_unix_us = new;
    long.summary.last_seen_unix_us = new;
    write(&store, observations_of(&long), vec![long.clone()]).await;
    store.enforce_retention(now).await.unwrap();
    let read = store.flow("flow-3").await.unwrap().unwrap();
    assert_eq!(read.summary, long.summary);
    assert_eq!(read.hops, long.hops);
    assert_eq!(read.messages, long.messages[1..]);
    assert_eq!(read.spans, long.spans);
}

async fn events_take_less_room_than_their_json(db: TestDb) {
    let store = db.open().await;
    let flows: Vec<FlowDetail> = (1..=2000)
        .map(|n| {
            order_flow(
                n,
                FlowStatus::Completed,
                "PaymentProcessed",
                T0 + i64::from(n),
            )
        })
        .collect();
    let observations: Vec<Observation> = flows.iter().flat_map(observations_of).collect();
    let json_bytes: usize = observations
        .iter()
        .map(|o| serde_json::to_string(o).unwrap().len())
        .sum();
    for (flows, observations) in flows.chunks(100).zip(observations.chunks(400)) {
        write(&store, observations.to_vec(), flows.to_vec()).await;
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.num_observations, 8000);
    // Flows, keys and indexes included (the layout before blocks took more than the JSON).
    assert!(
        (stats.size_bytes as usize) < json_bytes,
        "{} bytes on disk for {json_bytes} bytes of JSON",
        stats.size_bytes
    );
}

async fn an_old_store_is_refused_with_what_to_do(db: TestDb) {
    let old_table = "CREATE TABLE observations (seq BIGINT PRIMARY KEY, unix_us BIGINT NOT NULL, \
                     kind TEXT NOT NULL, json TEXT NOT NULL)";
    assert_refused(db, old_table).await;
}

/// The first layout with blocks kept each lookup key with its kind, and a
/// JSON summary: never released, refused the same way.
async fn a_store_with_keys_by_kind_is_refused_too(db: TestDb) {
    let old_table = "CREATE TABLE flow_keys (flow_id TEXT NOT NULL, kind TEXT NOT NULL, \
                     value TEXT NOT NULL, PRIMARY KEY (flow_id, kind, value))";
    assert_refused(db, old_table).await;
}

/// Creates `old_table` in the test's store, then checks that opening it
/// fails and says what to do.
async fn assert_refused(db: TestDb, old_table: &'static str) {
    if let Some(dir) = &db.dir {
        std::fs::create_dir_all(dir).unwrap();
        let url = format!("sqlite://{}/store.db?mode=rwc", dir.display());
        let mut conn = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::raw_sql(old_table).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    } else {
        let mut conn = sqlx::PgConnection::connect(&db.config.url).await.unwrap();
        sqlx::raw_sql(old_table).execute(&mut conn).await.unwrap();
        conn.close().await.unwrap();
    }
    let err = Store::open(&db.config).await.unwrap_err();
    assert!(matches!(err, StoreError::OldSchema { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("older flowscope"), "{message}");
    assert!(message.contains("move the SQLite file away"), "{message}");
    assert!(message.contains("store.url"), "{message}");
}
