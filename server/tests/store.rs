//! The store, the same tests on both backends: SQLite in a temporary file,
//! and the local PostgreSQL (`FLOWSCOPE_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`), each test in its own schema.

//!
//! The harness and fixtures are in `store_common/`; the layout on disk
//! (blocks, references, the old schema) is tested in `store_layout.rs`.

mod store_common;

use std::sync::Arc;

use flowscope_collectors::pipeline::Metrics;
use flowscope_model::{Body, FlowDetail, FlowStatus, Observation, now_unix_us};
use flowscope_server::store::{FlowFilter, Store, StoreConfig, StoreWriter, WriteBatch};
use store_common::*;

on_both_backends!(
    a_batch_reads_back_through_every_query,
    an_upsert_changes_status_and_keys,
    deleted_flows_disappear,
    retention_by_age_deletes_old_rows_and_keeps_new_ones,
    the_size_bound_deletes_oldest_rows_first,
    a_reopened_store_still_has_everything,
    observations_since_returns_them_in_the_order_they_were_stored,
    the_writer_flushes_everything_when_closed,
);

// ---------------------------------------------------------------- tests

async fn a_batch_reads_back_through_every_query(db: TestDb) {
    let store = db.open().await;
    store.write(full_batch()).await.unwrap();

    let page = store.flows(&FlowFilter::default()).await.unwrap();
    let newest_first: Vec<_> = page.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        newest_first,
        ["flow-6", "flow-5", "flow-4", "flow-3", "flow-2", "flow-1"]
    );
    assert_eq!((page.total, page.offset, page.limit), (6, 0, 50));
    assert_eq!(page.items[5], six_flows()[0].summary);

    let by_status = FlowFilter {
        status: Some(FlowStatus::Failed),
        ..Default::default()
    };
    assert_eq!(ids(&store, by_status).await, (vec!["flow-2".into()], 1));
    let by_service = |s: &str| FlowFilter {
        service: Some(s.into()),
        ..Default::default()
    };
    assert_eq!(ids(&store, by_service("payment-service")).await.1, 6);
    assert_eq!(
        ids(&store, by_service("payment")).await.1,
        0,
        "services match whole names"
    );
    let by_event = FlowFilter {
        event_type: Some("PaymentDeclined".into()),
        ..Default::default()
    };
    assert_eq!(ids(&store, by_event).await, (vec!["flow-2".into()], 1));
    let by_variant = |steps: &[&str]| FlowFilter {
        variant: Some(steps.iter().map(|s| s.to_string()).collect()),
        ..Default::default()
    };
    let declined = by_variant(&["OrderPlaced", "PaymentDeclined"]);
    assert_eq!(ids(&store, declined).await, (vec!["flow-2".into()], 1));
    assert_eq!(
        ids(&store, by_variant(&["OrderPlaced"])).await.1,
        0,
        "a variant is the whole path, not a prefix"
    );

    assert_eq!(
        ids(&store, text("order-3")).await,
        (vec!["flow-3".into()], 1)
    );
    assert_eq!(
        ids(&store, text("ORDER-3")).await,
        (vec!["flow-3".into()], 1)
    );
    assert_eq!(
        ids(&store, text("msg-4-2")).await,
        (vec!["flow-4".into()], 1)
    );
    assert_eq!(
        ids(&store, text(&trace_id(5))).await,
        (vec!["flow-5".into()], 1)
    );
    assert_eq!(
        ids(&store, text("a3ce929d00000001")).await,
        (vec!["flow-1".into()], 1)
    );
    assert_eq!(
        ids(&store, text("order-%")).await.1,
        0,
        "wildcards are literal"
    );
    assert_eq!(ids(&store, text("flow-")).await.1, 6);

    let window = FlowFilter {
        since_unix_us: Some(T0 + 2 * SECOND),
        until_unix_us: Some(T0 + 4 * SECOND),
        ..Default::default()
    };
    assert_eq!(
        ids(&store, window).await,
        (vec!["flow-4".into(), "flow-3".into()], 2)
    );
    let second_page = FlowFilter {
        limit: 2,
        offset: 2,
        ..Default::default()
    };
    let page = store.flows(&second_page).await.unwrap();
    let items: Vec<_> = page.items.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(
        (items, page.total, page.offset, page.limit),
        (vec!["flow-4", "flow-3"], 6, 2, 2)
    );
    let huge = FlowFilter {
        limit: 10_000,
        ..Default::default()
    };
    assert_eq!(store.flows(&huge).await.unwrap().limit, 500);

    assert_eq!(
        store.flow("flow-2").await.unwrap(),
        Some(six_flows()[1].clone())
    );
    assert_eq!(store.flow("flow-404").await.unwrap(), None);

    assert_eq!(store.lookup("order-5").await.unwrap(), ["flow-5"]);
    assert_eq!(store.lookup("msg-3-1").await.unwrap(), ["flow-3"]);
    assert_eq!(store.lookup(&trace_id(1)).await.unwrap(), ["flow-1"]);
    assert!(store.lookup("order-404").await.unwrap().is_empty());

    let history = store
        .queue_history("/", "payment.orders", T0 + 5 * SECOND, 100)
        .await
        .unwrap();
    let times: Vec<_> = history
        .iter()
        .map(|s| (s.observed_unix_us - T0) / SECOND)
        .collect();
    assert_eq!(times, (5..20).collect::<Vec<_>>());
    assert_eq!(history[0], sample("payment.orders", T0 + 5 * SECOND, 5));
    let thinned = store
        .queue_history("/", "payment.orders", T0, 5)
        .await
        .unwrap();
    assert!(
        thinned.len() <= 5 && thinned.len() >= 4,
        "{}",
        thinned.len()
    );
    assert!(
        thinned
            .windows(2)
            .all(|w| w[0].observed_unix_us < w[1].observed_unix_us)
    );
    assert_eq!(thinned.last().unwrap().observed_unix_us, T0 + 19 * SECOND);
    assert_eq!(
        store
            .queue_history("/", "other.queue", 0, 10)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        store
            .queue_history("/", "nope", 0, 10)
            .await
            .unwrap()
            .is_empty()
    );

    let alerts = store.alerts(10).await.unwrap();
    assert_eq!(alerts, [alert("dlq-2", T0 + SECOND), alert("dlq-1", T0)]);
    assert_eq!(store.alerts(1).await.unwrap().len(), 1);

    let stats = store.stats().await.unwrap();
    assert_eq!(
        (
            stats.num_observations,
            stats.num_queue_samples,
            stats.num_flows,
            stats.num_alerts
        ),
        (6 * 4, 21, 6, 2)
    );
    // Per flow: its key (also its correlation id: one key), trace id and two message ids.
    assert_eq!(stats.num_flow_keys, 6 * 4, "{stats:?}");
    assert!(stats.size_bytes > 0, "{stats:?}");
}

/// Writes flows alone, as the engine does when they change.
async fn write_flows(store: &Store, flows: Vec<FlowDetail>) {
    let batch = WriteBatch {
        flows,
        ..Default::default()
    };
    store.write(batch).await.unwrap();
}

async fn an_upsert_changes_status_and_keys(db: TestDb) {
    let store = db.open().await;
    let mut flow = order_flow(1, FlowStatus::InFlight, "PaymentProcessed", T0);
    write_flows(&store, vec![flow.clone()]).await;
    assert_eq!(store.lookup("order-1").await.unwrap(), ["flow-1"]);

    flow.summary.status = FlowStatus::Completed;
    flow.summary.key = Some("order-1-renamed".into());
    flow.hops[1].message_id = "msg-1-replaced".into();
    flow.messages[1].properties.message_id = Some("msg-1-replaced".into());
    for m in &mut flow.messages {
        m.properties.correlation_id = flow.summary.key.clone();
    }
    write_flows(&store, vec![flow.clone()]).await;

    let completed = FlowFilter {
        status: Some(FlowStatus::Completed),
        ..Default::default()
    };
    assert_eq!(ids(&store, completed).await, (vec!["flow-1".into()], 1));
    let in_flight = FlowFilter {
        status: Some(FlowStatus::InFlight),
        ..Default::default()
    };
    assert_eq!(ids(&store, in_flight).await.1, 0);
    assert!(store.lookup("order-1").await.unwrap().is_empty());
    assert!(store.lookup("msg-1-2").await.unwrap().is_empty());
    assert_eq!(store.lookup("order-1-renamed").await.unwrap(), ["flow-1"]);
    assert_eq!(store.lookup("msg-1-replaced").await.unwrap(), ["flow-1"]);
    assert_eq!(store.flow("flow-1").await.unwrap(), Some(flow.clone()));
    assert_eq!(store.stats().await.unwrap().num_flows, 1);

    // Rewritten once more with a key added and none lost: old and new keys find it.
    let mut extra = flow.messages[0].clone();
    extra.properties.message_id = Some("msg-1-extra".into());
    flow.messages.push(extra);
    write_flows(&store, vec![flow.clone()]).await;
    for key in ["msg-1-extra", "msg-1-replaced", "order-1-renamed"] {
        assert_eq!(store.lookup(key).await.unwrap(), ["flow-1"], "{key}");
    }
    assert!(store.lookup("order-1").await.unwrap().is_empty());
}

async fn deleted_flows_disappear(db: TestDb) {
    let store = db.open().await;
    let flows = six_flows();
    store
        .write(WriteBatch {
            flows: flows[..2].to_vec(),
            ..Default::default()
        })
        .await
        .unwrap();

    // flow-1 merged into flow-2: flow-2 now carries order-1's messages too.
    let mut merged = flows[1].clone();
    merged.messages.extend(flows[0].messages.clone());
    store
        .write(WriteBatch {
            flows: vec![merged],
            deleted_flows: vec!["flow-1".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.flow("flow-1").await.unwrap(), None);
    assert_eq!(
        ids(&store, FlowFilter::default()).await,
        (vec!["flow-2".into()], 1)
    );
    assert_eq!(store.lookup("msg-1-1").await.unwrap(), ["flow-2"]);
    // Its business key went with it; its messages still carry order-1 as correlation id.
    assert_eq!(store.lookup("order-1").await.unwrap(), ["flow-2"]);

    // Batches merged by the writer keep their order: an upsert then a delete is a delete.
    let mut batch = WriteBatch {
        flows: vec![flows[2].clone()],
        ..Default::default()
    };
    batch.merge(WriteBatch {
        deleted_flows: vec!["flow-3".into()],
        ..Default::default()
    });
    store.write(batch).await.unwrap();
    assert_eq!(store.flow("flow-3").await.unwrap(), None);
    assert!(store.lookup("order-3").await.unwrap().is_empty());
}

async fn retention_by_age_deletes_old_rows_and_keeps_new_ones(db: TestDb) {
    let store = db.open().await;
    let now = now_unix_us();
    let (old, new) = (now - 100 * HOUR, now - HOUR);
    let old_flow = order_flow(1, FlowStatus::Completed, "PaymentProcessed", old);
    let new_flow = order_flow(2, FlowStatus::Completed, "PaymentProcessed", new);
    let mut observations = observations_of(&old_flow);
    observations.extend(observations_of(&new_flow));
    observations.push(Observation::QueueSample(Box::new(sample(
        "payment.orders",
        old,
        1,
    ))));
    observations.push(Observation::QueueSample(Box::new(sample(
        "payment.orders",
        new,
        2,
    ))));
    store
        .write(WriteBatch {
            observations,
            flows: vec![old_flow, new_flow.clone()],
            deleted_flows: vec![],
            alerts: vec![alert("old", old), alert("new", new)],
        })
        .await
        .unwrap();

    let report = store.enforce_retention(now).await.unwrap();
    assert_eq!(
        (
            report.num_observations,
            report.num_queue_samples,
            report.num_flows,
            report.num_alerts
        ),
        (4, 1, 1, 1),
        "{report:?}"
    );
    assert!(!report.size_bound_hit);

    assert_eq!(store.flow("flow-1").await.unwrap(), None);
    assert!(store.lookup("order-1").await.unwrap().is_empty());
    assert_eq!(store.flow("flow-2").await.unwrap(), Some(new_flow.clone()));
    assert_eq!(store.lookup("order-2").await.unwrap(), ["flow-2"]);
    let kept = store.observations_since(0, 100).await.unwrap();
    assert_eq!(by_time(kept), by_time(observations_of(&new_flow)));
    let history = store
        .queue_history("/", "payment.orders", 0, 10)
        .await
        .unwrap();
    assert_eq!(history, [sample("payment.orders", new, 2)]);
    assert_eq!(store.alerts(10).await.unwrap(), [alert("new", new)]);
    assert_eq!(store.enforce_retention(now).await.unwrap().num_deleted(), 0);

    // A flow retention deleted and written again (still live) is found by its keys again.
    let again = order_flow(1, FlowStatus::Completed, "PaymentProcessed", now);
    write_flows(&store, vec![again]).await;
    assert_eq!(store.lookup("order-1").await.unwrap(), ["flow-1"]);
}

async fn the_size_bound_deletes_oldest_rows_first(mut db: TestDb) {
    db.config.max_size_mib = 1;
    db.config.retention_hours = 0;
    let store = db.open().await;
    // ~7 MiB of publishes with random hex bodies (~3.5 MiB once compressed), oldest first.
    let mut batch = WriteBatch::default();
    for i in 0..3000 {
        let mut m = message(
            i,
            1,
            "OrderPlaced",
            "order-service",
            "payment.orders",
            T0 + i64::from(i) * SECOND,
        );
        let noise: String = (0..72)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        m.body = Some(Body {
            content: noise,
            encoding: "utf8".into(),
            truncated: false,
            redacted: false,
        });
        batch.observations.push(Observation::Publish(Box::new(m)));
    }
    store.write(batch).await.unwrap();

    let report = store.enforce_retention(now_unix_us()).await.unwrap();
    assert!(report.size_bound_hit, "{report:?}");
    assert!(report.size_bytes_before > 1 << 20, "{report:?}");
    assert!(report.size_bytes_after <= 1 << 20, "{report:?}");
    let kept = store.observations_since(0, 10_000).await.unwrap();
    assert_eq!(kept.len() as u64, 3000 - report.num_observations);
    assert!(!kept.is_empty() && kept.len() < 1000, "{} kept", kept.len());
    let times: Vec<i64> = kept.iter().map(time).collect();
    assert_eq!(
        times.last(),
        Some(&(T0 + 2999 * SECOND)),
        "the newest are kept"
    );
    assert_eq!(
        times[0],
        T0 + (3000 - times.len() as i64) * SECOND,
        "the oldest went"
    );
}

async fn a_reopened_store_still_has_everything(db: TestDb) {
    let store = db.open().await;
    store.write(full_batch()).await.unwrap();
    let before = store.stats().await.unwrap();
    let page_before = store.flows(&FlowFilter::default()).await.unwrap();
    store.close().await;
    drop(store);

    let store = db.open().await;
    let after = store.stats().await.unwrap();
    assert_eq!(
        (
            after.num_observations,
            after.num_queue_samples,
            after.num_flows,
            after.num_flow_keys,
            after.num_alerts
        ),
        (
            before.num_observations,
            before.num_queue_samples,
            before.num_flows,
            before.num_flow_keys,
            before.num_alerts
        )
    );
    assert_eq!(
        store.flows(&FlowFilter::default()).await.unwrap(),
        page_before
    );
    for flow in six_flows() {
        assert_eq!(
            store.flow(&flow.summary.id).await.unwrap(),
            Some(flow.clone())
        );
        assert_eq!(
            store
                .lookup(flow.summary.key.as_deref().unwrap())
                .await
                .unwrap(),
            [flow.summary.id]
        );
    }
    assert_eq!(
        store
            .queue_history("/", "payment.orders", 0, 100)
            .await
            .unwrap()
            .len(),
        20
    );
    assert_eq!(store.alerts(10).await.unwrap().len(), 2);
    // Writing again after a reopen works, and keeps what was there.
    store
        .write(WriteBatch {
            deleted_flows: vec!["flow-6".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.stats().await.unwrap().num_flows, 5);
}

async fn observations_since_returns_them_in_the_order_they_were_stored(db: TestDb) {
    let store = db.open().await;
    let flows = six_flows();
    // Written newest flow first, in two batches: a replay must see this order
    // (it is the order the correlator saw them), not the observations' clocks.
    let mut written = Vec::new();
    for chunk in [&flows[3..], &flows[..3]] {
        let observations: Vec<Observation> = chunk.iter().rev().flat_map(observations_of).collect();
        written.extend(observations.clone());
        store
            .write(WriteBatch {
                observations,
                ..Default::default()
            })
            .await
            .unwrap();
    }
    store
        .write(WriteBatch {
            observations: vec![Observation::QueueSample(Box::new(sample(
                "payment.orders",
                T0,
                1,
            )))],
            ..Default::default()
        })
        .await
        .unwrap();
    let all = store.observations_since(0, 1000).await.unwrap();
    assert_eq!(all.len(), 24, "queue samples are not replayed");
    assert_eq!(all, written);
    assert_eq!(
        by_time(all.clone()),
        by_time(flows.iter().flat_map(observations_of).collect())
    );

    let later = store.observations_since(T0 + 3 * SECOND, 5).await.unwrap();
    let expected: Vec<Observation> = written
        .iter()
        .filter(|o| time(o) >= T0 + 3 * SECOND)
        .take(5)
        .cloned()
        .collect();
    assert_eq!(later.len(), 5);
    assert_eq!(later, expected);
}

async fn the_writer_flushes_everything_when_closed(mut db: TestDb) {
    db.config.batch_max = 5;
    db.config.flush_interval_ms = 20;
    // The fixtures are from 2023: the writer's retention run at start must keep them.
    db.config.retention_hours = 0;
    let store = db.open().await;
    let metrics = Arc::new(Metrics::default());
    let (handle, task) = StoreWriter::spawn(store.clone(), &db.config, metrics.clone());
    let flows = six_flows();
    for flow in &flows {
        let batch = WriteBatch {
            observations: observations_of(flow),
            flows: vec![flow.clone()],
            ..Default::default()
        };
        handle.send(batch).await.unwrap();
    }
    // Some are written by size or time, the rest when the channel closes.
    drop(handle);
    tokio::time::timeout(std::time::Duration::from_secs(30), task)
        .await
        .unwrap()
        .unwrap();

    let stats = store.stats().await.unwrap();
    assert_eq!((stats.num_flows, stats.num_observations), (6, 24));
    let backend = store.backend_name();
    assert_eq!(metrics.value("store_rows_written", backend), 6 + 24);
    assert_eq!(metrics.value("store_write_failures", backend), 0);
    assert!(
        metrics
            .render()
            .contains("flowscope_store_rows_written_total")
    );
}

#[tokio::test]
async fn bad_urls_say_what_failed_and_what_to_do() {
    let open = |url: String| async move {
        let config = StoreConfig {
            url,
            ..StoreConfig::default()
        };
        Store::open(&config).await.unwrap_err().to_string()
    };
    let err = open("mysql://x".into()).await;
    assert!(
        err.contains("unsupported store URL") && err.contains("sqlite://"),
        "{err}"
    );

    // A directory cannot be created under a plain file, even by root.
    let file = std::env::temp_dir().join(format!("flowscope-store-file-{}", uuid::Uuid::new_v4()));
    std::fs::write(&file, "not a directory").unwrap();
    let err = open(format!("sqlite://{}/sub/flowscope.db", file.display())).await;
    std::fs::remove_file(&file).unwrap();
    assert!(
        err.contains("cannot create the directory") && err.contains("writable"),
        "{err}"
    );

    let err = open("postgres://flowscope:secret@127.0.0.1:1/test".into()).await;
    assert!(
        err.contains(
            "PostgreSQL at postgres://flowscope:***@127.0.0.1:1/test refused the connection"
        ),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    assert!(
        StoreConfig {
            url: "redis://x".into(),
            ..Default::default()
        }
        .validate()
        .is_err()
    );
    assert!(StoreConfig::default().validate().is_ok());
}
