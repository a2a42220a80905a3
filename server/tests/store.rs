//! The store, the same tests on both backends: SQLite in a temporary file,
//! and the local PostgreSQL (`FLOWSCOPE_TEST_POSTGRES_URL`, by default
//! `postgres://postgres@127.0.0.1:5432/test`), each test in its own schema.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use flowscope_collectors::pipeline::Metrics;
use flowscope_model::{
    Body, BrokerMessage, FlowDetail, FlowReason, FlowStatus, FlowSummary, Hop, MessageProperties,
    MessagingAttributes, Observation, QueueSample, SampleSource, SpanKind, SpanObservation,
    SpanStatus, TraceContext, now_unix_us,
};
use flowscope_server::store::{FlowFilter, Store, StoreConfig, StoreWriter, WriteBatch};
use serde_json::{Value, json};
use sqlx::Connection;

const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// 2023-11-14T22:13:20Z: fixtures are not "now", so retention never sees them.
const T0: i64 = 1_700_000_000_000_000;
const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3600 * SECOND;

// ---------------------------------------------------------------- harness

/// A store location of its own, removed at the end of the test.
struct TestDb {
    config: StoreConfig,
    dir: Option<PathBuf>,
    /// (server URL, schema) for PostgreSQL.
    schema: Option<(String, String)>,
}

impl TestDb {
    async fn sqlite() -> Self {
        let dir = std::env::temp_dir().join(format!("flowscope-store-{}", uuid::Uuid::new_v4()));
        let config = StoreConfig {
            url: format!("sqlite://{}/store.db", dir.display()),
            ..StoreConfig::default()
        };
        Self {
            config,
            dir: Some(dir),
            schema: None,
        }
    }

    async fn postgres() -> Self {
        let base = std::env::var("FLOWSCOPE_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        let schema = format!("fs_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        let mut conn = sqlx::PgConnection::connect(&base)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {base} is needed for these tests: {e}"));
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let config = StoreConfig {
            url: format!("{base}?options=-c%20search_path%3D{schema}"),
            ..StoreConfig::default()
        };
        Self {
            config,
            dir: None,
            schema: Some((base, schema)),
        }
    }

    async fn open(&self) -> Store {
        Store::open(&self.config).await.unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
        // Runs even when the test panicked, on a runtime of its own.
        if let Some((base, schema)) = self.schema.take() {
            let drop_schema = move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                        let sql = format!("DROP SCHEMA IF EXISTS {schema} CASCADE");
                        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                            .execute(&mut conn)
                            .await;
                    }
                });
            };
            let _ = std::thread::spawn(drop_schema).join();
        }
    }
}

/// Each test function runs once per backend: `sqlite::<name>`, `postgres::<name>`.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test] async fn $name() { super::$name(super::TestDb::sqlite().await).await })*
        }
        mod postgres {
            $(#[tokio::test] async fn $name() { super::$name(super::TestDb::postgres().await).await })*
        }
    };
}

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

// ---------------------------------------------------------------- fixtures

fn trace_id(n: u32) -> String {
    format!("4bf92f3577b34da6a3ce929d{n:08x}")
}

fn message_id(n: u32, leg: u32) -> String {
    format!("msg-{n}-{leg}")
}

fn message(n: u32, leg: u32, event: &str, producer: &str, queue: &str, t: i64) -> BrokerMessage {
    let key = format!("order-{n}");
    let body = json!({ "order_id": key, "amount_cents": 4200 + n }).to_string();
    BrokerMessage {
        observed_unix_us: t,
        vhost: "/".into(),
        node: Some("rabbit@localhost".into()),
        exchange: "shop.events".into(),
        routing_keys: vec![event.to_lowercase()],
        routed_queues: Some(vec![queue.into()]),
        connection: Some("127.0.0.1:48894 -> 127.0.0.1:5672".into()),
        channel: Some(1),
        user: Some("guest".into()),
        service: Some(producer.into()),
        properties: MessageProperties {
            message_id: Some(message_id(n, leg)),
            correlation_id: Some(key),
            kind: Some(event.into()),
            content_type: Some("application/json".into()),
            delivery_mode: Some(2),
            timestamp: Some(t / SECOND),
            headers: BTreeMap::from([(
                "traceparent".to_owned(),
                json!(format!("00-{}-00f067aa0ba902b7-01", trace_id(n))),
            )]),
            ..Default::default()
        },
        trace: Some(TraceContext {
            trace_id: trace_id(n),
            span_id: "00f067aa0ba902b7".into(),
            sampled: true,
            tracestate: None,
        }),
        body_size: body.len() as u64,
        body: Some(Body {
            content: body,
            encoding: "utf8".into(),
            truncated: false,
            redacted: false,
        }),
        ..Default::default()
    }
}

fn span(n: u32, service: &str, t: i64, error: bool) -> SpanObservation {
    SpanObservation {
        observed_unix_us: t + 5_000,
        service: service.into(),
        scope: "lapin-otel".into(),
        trace_id: trace_id(n),
        span_id: format!("{:016x}", 0xabc0 + n),
        parent_span_id: Some("00f067aa0ba902b7".into()),
        name: "payment.orders process".into(),
        kind: SpanKind::Consumer,
        start_unix_us: t,
        end_unix_us: t + 4_000,
        status: SpanStatus {
            code: if error { "error" } else { "ok" }.into(),
            message: if error { "card declined" } else { "" }.into(),
        },
        attributes: BTreeMap::from([("messaging.system".to_owned(), json!("rabbitmq"))]),
        messaging: Some(MessagingAttributes {
            system: Some("rabbitmq".into()),
            operation: Some("process".into()),
            message_id: Some(message_id(n, 1)),
            queue: Some("payment.orders".into()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn hop(n: u32, leg: u32, event: &str, producer: &str, queue: &str, consumer: &str, t: i64) -> Hop {
    Hop {
        message_id: message_id(n, leg),
        event_type: Some(event.into()),
        producer: Some(producer.into()),
        exchange: "shop.events".into(),
        routing_key: event.to_lowercase(),
        queue: Some(queue.into()),
        consumer: Some(consumer.into()),
        published_unix_us: Some(t),
        delivered_unix_us: Some(t + 1_000),
        processed_unix_us: Some(t + 5_000),
        queue_wait_us: Some(1_000),
        processing_us: Some(4_000),
        ..Default::default()
    }
}

/// Order `n`, started at `started`: OrderPlaced, then `second` (PaymentProcessed or
/// PaymentDeclined); two hops, two messages, one span.
fn order_flow(n: u32, status: FlowStatus, second: &str, started: i64) -> FlowDetail {
    let t1 = started + 10_000;
    let hops = vec![
        hop(
            n,
            1,
            "OrderPlaced",
            "order-service",
            "payment.orders",
            "payment-service",
            started,
        ),
        hop(
            n,
            2,
            second,
            "payment-service",
            "inventory.payments",
            "inventory-service",
            t1,
        ),
    ];
    let messages = vec![
        message(
            n,
            1,
            "OrderPlaced",
            "order-service",
            "payment.orders",
            started,
        ),
        message(n, 2, second, "payment-service", "inventory.payments", t1),
    ];
    let failed = status == FlowStatus::Failed;
    FlowDetail {
        summary: FlowSummary {
            id: format!("flow-{n}"),
            key: Some(format!("order-{n}")),
            status,
            reason: failed.then(|| FlowReason {
                hop: Some(1),
                queue: Some("inventory.payments".into()),
                service: Some("payment-service".into()),
                message: "payment declined: card declined".into(),
            }),
            started_unix_us: started,
            last_seen_unix_us: t1 + 5_000,
            ended_unix_us: status.is_final().then_some(t1 + 5_000),
            current_step: Some(second.into()),
            services: vec![
                "order-service".into(),
                "payment-service".into(),
                "inventory-service".into(),
            ],
            event_types: vec!["OrderPlaced".into(), second.into()],
            trace_ids: vec![trace_id(n)],
            num_messages: 2,
            num_spans: 1,
            num_hops: 2,
        },
        spans: vec![span(n, "payment-service", started + 1_000, failed)],
        hops,
        messages,
    }
}

/// Flows 1..=6, one second apart; flow 2 failed (payment declined), flow 3 in flight.
fn six_flows() -> Vec<FlowDetail> {
    (1..=6)
        .map(|n| {
            let started = T0 + i64::from(n - 1) * SECOND;
            match n {
                2 => order_flow(n, FlowStatus::Failed, "PaymentDeclined", started),
                3 => order_flow(n, FlowStatus::InFlight, "PaymentProcessed", started),
                _ => order_flow(n, FlowStatus::Completed, "PaymentProcessed", started),
            }
        })
        .collect()
}

fn sample(queue: &str, t: i64, ready: u64) -> QueueSample {
    QueueSample {
        observed_unix_us: t,
        source: SampleSource::Management,
        vhost: "/".into(),
        queue: queue.into(),
        messages_ready: Some(ready),
        messages_unacked: Some(1),
        consumers: Some(2),
        publish_rate: Some(1.5),
        deliver_rate: Some(1.25),
        ack_rate: None,
        head_message_timestamp: Some(t / SECOND),
    }
}

fn alert(id: &str, updated: i64) -> Value {
    json!({ "id": id, "updated_unix_us": updated, "rule": "dlq_growing",
            "state": "firing", "queue": "payment.orders.dlq", "value": 3 })
}

/// The observations behind a flow: its publishes, a delivery and its span.
fn observations_of(flow: &FlowDetail) -> Vec<Observation> {
    let mut out: Vec<_> = flow
        .messages
        .iter()
        .cloned()
        .map(Observation::Publish)
        .collect();
    let mut delivered = flow.messages[0].clone();
    delivered.observed_unix_us += 1_000;
    delivered.queue = Some("payment.orders".into());
    delivered.routed_queues = None;
    delivered.redelivered = Some(false);
    out.push(Observation::Deliver(delivered));
    out.extend(
        flow.spans
            .iter()
            .cloned()
            .map(|s| Observation::Span(Box::new(s))),
    );
    out
}

fn time(observation: &Observation) -> i64 {
    match observation {
        Observation::Publish(m) | Observation::Deliver(m) => m.observed_unix_us,
        Observation::Span(s) => s.observed_unix_us,
        other => panic!("unexpected {other:?}"),
    }
}

/// Oldest first, as the store replays them.
fn by_time(mut observations: Vec<Observation>) -> Vec<Observation> {
    observations.sort_by_key(time);
    observations
}

fn full_batch() -> WriteBatch {
    let flows = six_flows();
    let mut observations: Vec<_> = flows.iter().flat_map(observations_of).collect();
    for i in 0..20 {
        observations.push(Observation::QueueSample(sample(
            "payment.orders",
            T0 + i * SECOND,
            i as u64,
        )));
    }
    observations.push(Observation::QueueSample(sample("other.queue", T0, 99)));
    WriteBatch {
        observations,
        flows,
        deleted_flows: vec![],
        alerts: vec![alert("dlq-1", T0), alert("dlq-2", T0 + SECOND)],
    }
}

async fn ids(store: &Store, filter: FlowFilter) -> (Vec<String>, u64) {
    let page = store.flows(&filter).await.unwrap();
    (page.items.into_iter().map(|s| s.id).collect(), page.total)
}

fn text(t: &str) -> FlowFilter {
    FlowFilter {
        text: Some(t.into()),
        ..Default::default()
    }
}

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
    // Per flow: its key, trace id, two message ids and a correlation id.
    assert_eq!(stats.num_flow_keys, 6 * 5, "{stats:?}");
    assert!(stats.size_bytes > 0, "{stats:?}");
}

async fn an_upsert_changes_status_and_keys(db: TestDb) {
    let store = db.open().await;
    let mut flow = order_flow(1, FlowStatus::InFlight, "PaymentProcessed", T0);
    store
        .write(WriteBatch {
            flows: vec![flow.clone()],
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(store.lookup("order-1").await.unwrap(), ["flow-1"]);

    flow.summary.status = FlowStatus::Completed;
    flow.summary.key = Some("order-1-renamed".into());
    flow.hops[1].message_id = "msg-1-replaced".into();
    flow.messages[1].properties.message_id = Some("msg-1-replaced".into());
    for m in &mut flow.messages {
        m.properties.correlation_id = flow.summary.key.clone();
    }
    store
        .write(WriteBatch {
            flows: vec![flow.clone()],
            ..Default::default()
        })
        .await
        .unwrap();

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
    assert_eq!(store.flow("flow-1").await.unwrap(), Some(flow));
    assert_eq!(store.stats().await.unwrap().num_flows, 1);
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
    observations.push(Observation::QueueSample(sample("payment.orders", old, 1)));
    observations.push(Observation::QueueSample(sample("payment.orders", new, 2)));
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
}

async fn the_size_bound_deletes_oldest_rows_first(mut db: TestDb) {
    db.config.max_size_mib = 1;
    db.config.retention_hours = 0;
    let store = db.open().await;
    // ~4 MiB of publishes with incompressible bodies, oldest first.
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
        let noise: String = (0..36)
            .map(|_| uuid::Uuid::new_v4().simple().to_string())
            .collect();
        m.body = Some(Body {
            content: noise,
            encoding: "utf8".into(),
            truncated: false,
            redacted: false,
        });
        batch.observations.push(Observation::Publish(m));
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
            observations: vec![Observation::QueueSample(sample("payment.orders", T0, 1))],
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
