//! What the store tests share: a store of their own on either backend
//! ([`TestDb`]), [`on_both_backends!`], and fixtures (the flows of a small
//! shop and the observations behind them).

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use flowscope_model::{
    Body, BrokerMessage, FlowDetail, FlowReason, FlowStatus, FlowSummary, Hop, MessageProperties,
    MessagingAttributes, MessagingFields, Observation, QueueSample, SampleSource, SpanId, SpanKind,
    SpanObservation, SpanStatus, StatusCode, TraceContext,
};
use flowscope_server::store::{FlowFilter, Store, StoreConfig, WriteBatch};
use serde_json::{Value, json};
use sqlx::Connection;

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// 2023-11-14T22:13:20Z: fixtures are not "now", so retention never sees them.
pub const T0: i64 = 1_700_000_000_000_000;
pub const SECOND: i64 = 1_000_000;
pub const HOUR: i64 = 3600 * SECOND;

// ---------------------------------------------------------------- harness

/// A store location of its own, removed at the end of the test.
pub struct TestDb {
    pub config: StoreConfig,
    pub dir: Option<PathBuf>,
    /// (server URL, schema) for PostgreSQL.
    schema: Option<(String, String)>,
}

impl TestDb {
    pub async fn sqlite() -> Self {
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

    pub async fn postgres() -> Self {
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

    pub async fn open(&self) -> Store {
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
#[macro_export]
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

// ---------------------------------------------------------------- fixtures

pub fn trace_id(n: u32) -> String {
    format!("4bf92f3577b34da6a3ce929d{n:08x}")
}

pub fn message_id(n: u32, leg: u32) -> String {
    format!("msg-{n}-{leg}")
}

pub fn message(
    n: u32,
    leg: u32,
    event: &str,
    producer: &str,
    queue: &str,
    t: i64,
) -> BrokerMessage {
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
            span_id: "00f067aa0ba902b7".parse().unwrap(),
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

pub fn span(n: u32, service: &str, t: i64, error: bool) -> SpanObservation {
    SpanObservation {
        observed_unix_us: t + 5_000,
        service: service.into(),
        scope: "lapin-otel".into(),
        trace_id: trace_id(n).parse().unwrap(),
        span_id: SpanId(u64::from(0xabc0 + n).to_be_bytes()),
        parent_span_id: Some("00f067aa0ba902b7".parse().unwrap()),
        name: "payment.orders process".into(),
        kind: SpanKind::Consumer,
        start_unix_us: t,
        end_unix_us: t + 4_000,
        status: SpanStatus {
            code: if error {
                StatusCode::Error
            } else {
                StatusCode::Ok
            },
            message: if error { "card declined" } else { "" }.into(),
        },
        attributes: BTreeMap::from([("messaging.system".to_owned(), json!("rabbitmq"))]).into(),
        messaging: MessagingAttributes::new(MessagingFields {
            system: Some("rabbitmq"),
            operation: Some("process"),
            message_id: Some(&message_id(n, 1)),
            queue: Some("payment.orders"),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn hop(
    n: u32,
    leg: u32,
    event: &str,
    producer: &str,
    queue: &str,
    consumer: &str,
    t: i64,
) -> Hop {
    Hop {
        message_id: message_id(n, leg).into(),
        event_type: Some(event.into()),
        producer: Some(producer.into()),
        exchange: "shop.events".into(),
        routing_key: event.to_lowercase().into(),
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
pub fn order_flow(n: u32, status: FlowStatus, second: &str, started: i64) -> FlowDetail {
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
        spans: vec![Arc::new(span(
            n,
            "payment-service",
            started + 1_000,
            failed,
        ))],
        hops,
        messages,
    }
}

/// Flows 1..=6, one second apart; flow 2 failed (payment declined), flow 3 in flight.
pub fn six_flows() -> Vec<FlowDetail> {
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

pub fn sample(queue: &str, t: i64, ready: u64) -> QueueSample {
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

pub fn alert(id: &str, updated: i64) -> Value {
    json!({ "id": id, "updated_unix_us": updated, "rule": "dlq_growing",
            "state": "firing", "queue": "payment.orders.dlq", "value": 3 })
}

/// The observations behind a flow: its publishes, a delivery and its span.
pub fn observations_of(flow: &FlowDetail) -> Vec<Observation> {
    let mut out: Vec<_> = flow
        .messages
        .iter()
        .cloned()
        .map(|m| Observation::Publish(Box::new(m)))
        .collect();
    let mut delivered = flow.messages[0].clone();
    delivered.observed_unix_us += 1_000;
    delivered.queue = Some("payment.orders".into());
    delivered.routed_queues = None;
    delivered.redelivered = Some(false);
    out.push(Observation::Deliver(Box::new(delivered)));
    out.extend(flow.spans.iter().cloned().map(Observation::Span));
    out
}

pub fn time(observation: &Observation) -> i64 {
    match observation {
        Observation::Publish(m) | Observation::Deliver(m) => m.observed_unix_us,
        Observation::Span(s) => s.observed_unix_us,
        other => panic!("unexpected {other:?}"),
    }
}

/// Oldest first, as the store replays them.
pub fn by_time(mut observations: Vec<Observation>) -> Vec<Observation> {
    observations.sort_by_key(time);
    observations
}

pub fn full_batch() -> WriteBatch {
    let flows = six_flows();
    let mut observations: Vec<_> = flows.iter().flat_map(observations_of).collect();
    for i in 0..20 {
        observations.push(Observation::QueueSample(Box::new(sample(
            "payment.orders",
            T0 + i * SECOND,
            i as u64,
        ))));
    }
    observations.push(Observation::QueueSample(Box::new(sample(
        "other.queue",
        T0,
        99,
    ))));
    WriteBatch {
        observations,
        flows,
        deleted_flows: vec![],
        alerts: vec![alert("dlq-1", T0), alert("dlq-2", T0 + SECOND)],
    }
}

pub async fn ids(store: &Store, filter: FlowFilter) -> (Vec<String>, u64) {
    let page = store.flows(&filter).await.unwrap();
    (page.items.into_iter().map(|s| s.id).collect(), page.total)
}

pub fn text(t: &str) -> FlowFilter {
    FlowFilter {
        text: Some(t.into()),
        ..Default::default()
    }
}
