//! The demo shop on the real broker: each test runs the five services as
//! processes in a fresh vhost and watches what they publish.

use std::time::Duration;

use flowscope_demo::events::routing_key_of;
use flowscope_demo::faults::FaultCommand;
use flowscope_demo::topology::Service;
use flowscope_tests::eventually;
use flowscope_tests::otlp::SpanSink;
use flowscope_tests::shop::{Shop, ShopOptions, TapMessage, sample_order};
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use sqlx::Row;
use uuid::Uuid;

/// Time an order gets to go through the whole shop.
const FLOW: Duration = Duration::from_secs(20);

fn sequence(events: &[TapMessage]) -> Vec<(String, String)> {
    events
        .iter()
        .map(|m| (m.event_type.clone(), m.app_id.clone()))
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_order_completes_and_every_service_sees_its_event() {
    let shop = Shop::start(ShopOptions::default()).await.unwrap();
    let id = shop.place_order(&sample_order("ada")).await.unwrap();

    let order = shop.wait_for_status(id, "completed", FLOW).await;
    assert_eq!(order["total_cents"], 7998);
    assert!(
        order["history"][1]["detail"]
            .as_str()
            .unwrap()
            .contains("tracking number")
    );
    shop.wait_for_event(id, "OrderCompleted", FLOW).await;
    let events = shop.events_for(id);
    assert_eq!(
        sequence(&events),
        pairs(&[
            ("OrderPlaced", "order"),
            ("PaymentProcessed", "payment"),
            ("InventoryReserved", "inventory"),
            ("OrderShipped", "shipping"),
            ("OrderCompleted", "order"),
        ])
    );
    let mut ids = Vec::new();
    for msg in &events {
        let body = msg.json();
        assert_eq!(body["schema_version"], 1);
        assert_eq!(body["event_type"], msg.event_type.as_str());
        assert_eq!(body["order_id"], id.to_string());
        assert_eq!(
            Some(msg.routing_key.as_str()),
            routing_key_of(&msg.event_type)
        );
        assert!(
            msg.headers["traceparent"].starts_with("00-"),
            "{:?}",
            msg.headers
        );
        ids.push(
            msg.message_id
                .parse::<Uuid>()
                .expect("message_id is a UUID"),
        );
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every message has its own id");

    // The notification service recorded every one of the five events.
    let db = shop.database(Service::Notification).await.unwrap();
    let kinds: Vec<String> = eventually(FLOW, "five notifications", || {
        let db = db.clone();
        async move {
            let rows =
                sqlx::query("SELECT event_type FROM notifications WHERE order_id = ? ORDER BY id")
                    .bind(id.to_string())
                    .fetch_all(&db)
                    .await?;
            let kinds: Vec<String> = rows.iter().map(|r| r.get("event_type")).collect();
            Ok((kinds.len() == 5).then_some(kinds))
        }
    })
    .await;
    assert_eq!(
        kinds,
        [
            "OrderPlaced",
            "PaymentProcessed",
            "InventoryReserved",
            "OrderShipped",
            "OrderCompleted"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_payment_cancels_the_order_and_nothing_ships() {
    let shop = Shop::start(ShopOptions::default()).await.unwrap();
    shop.set_fault(FaultCommand::DeclineRate { rate: 1.0 })
        .await
        .unwrap();
    let id = shop.place_order(&sample_order("grace")).await.unwrap();

    let order = shop.wait_for_status(id, "cancelled", FLOW).await;
    assert!(
        order["reason"].as_str().unwrap().contains("payment failed"),
        "{order}"
    );
    shop.wait_for_event(id, "OrderCancelled", FLOW).await;
    assert_eq!(
        sequence(&shop.events_for(id)),
        pairs(&[
            ("OrderPlaced", "order"),
            ("PaymentFailed", "payment"),
            ("OrderCancelled", "order")
        ])
    );
    let shipping = shop.database(Service::Shipping).await.unwrap();
    let shipped: i64 = sqlx::query("SELECT COUNT(*) AS n FROM shipments WHERE order_id = ?")
        .bind(id.to_string())
        .fetch_one(&shipping)
        .await
        .unwrap()
        .get("n");
    assert_eq!(shipped, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_stock_refunds_the_payment_and_cancels_the_order() {
    let shop = Shop::start(ShopOptions::default()).await.unwrap();
    shop.set_fault(FaultCommand::OutOfStockRate { rate: 1.0 })
        .await
        .unwrap();
    let id = shop.place_order(&sample_order("linus")).await.unwrap();

    let order = shop.wait_for_status(id, "cancelled", FLOW).await;
    assert!(
        order["reason"].as_str().unwrap().contains("refunded"),
        "{order}"
    );
    shop.wait_for_event(id, "OrderCancelled", FLOW).await;
    assert_eq!(
        sequence(&shop.events_for(id)),
        pairs(&[
            ("OrderPlaced", "order"),
            ("PaymentProcessed", "payment"),
            ("InventoryFailed", "inventory"),
            ("PaymentRefunded", "payment"),
            ("OrderCancelled", "order"),
        ])
    );
    let payments = shop.database(Service::Payment).await.unwrap();
    let status: String = sqlx::query("SELECT status FROM payments WHERE order_id = ?")
        .bind(id.to_string())
        .fetch_one(&payments)
        .await
        .unwrap()
        .get("status");
    assert_eq!(status, "refunded");
}

fn text(value: &AMQPValue) -> String {
    flowscope_demo::amqp::header_str(value)
        .unwrap_or_default()
        .to_owned()
}

fn x_death(headers: &FieldTable) -> Vec<FieldTable> {
    match headers.inner().get("x-death") {
        Some(AMQPValue::FieldArray(entries)) => entries
            .as_slice()
            .iter()
            .filter_map(|e| match e {
                AMQPValue::FieldTable(t) => Some(t.clone()),
                _ => None,
            })
            .collect(),
        _ => vec![],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_message_is_retried_then_dead_lettered_with_its_reason() {
    let (sink, endpoint) = SpanSink::start().await.unwrap();
    let options = ShopOptions {
        otlp_endpoint: Some(endpoint),
        max_attempts: 3,
        ..Default::default()
    };
    let shop = Shop::start(options).await.unwrap();
    shop.set_fault(FaultCommand::PoisonRate {
        service: Service::Order,
        rate: 1.0,
    })
    .await
    .unwrap();
    let id = shop.place_order(&sample_order("ken")).await.unwrap();
    let placed = shop.wait_for_event(id, "OrderPlaced", FLOW).await;
    assert_eq!(placed.headers["x-shop-fault"], "poison");

    eventually(FLOW, "the poison message in payment.orders.dlq", || async {
        Ok((shop.queue_depth("payment.orders.dlq").await? == 1).then_some(()))
    })
    .await;
    let dead = shop
        .take_message("payment.orders.dlq")
        .await
        .unwrap()
        .expect("a dead letter");
    let props = &dead.delivery.properties;
    assert_eq!(
        props.message_id().as_ref().unwrap().as_str(),
        placed.message_id
    );
    assert_eq!(
        dead.delivery.data, placed.body,
        "the body is kept as published"
    );
    let deaths = x_death(props.headers().as_ref().expect("headers"));
    assert_eq!(deaths.len(), 1, "{deaths:?}");
    let death = deaths[0].inner();
    assert_eq!(text(&death["reason"]), "rejected");
    assert_eq!(text(&death["queue"]), "payment.orders");
    assert_eq!(text(&death["exchange"]), "shop.events");
    let AMQPValue::FieldArray(keys) = &death["routing-keys"] else {
        panic!("routing-keys")
    };
    assert_eq!(
        keys.as_slice().iter().map(text).collect::<Vec<_>>(),
        ["order.placed"]
    );

    // Retried: three processing attempts, each an error span with the message id.
    let attempts = eventually(FLOW, "three failed payment attempts", || {
        let spans = sink.spans();
        let id = placed.message_id.clone();
        async move {
            let attempts: Vec<_> = spans
                .into_iter()
                .filter(|s| {
                    s.service == "payment" && s.attr("messaging.message.id") == Some(id.as_str())
                })
                .collect();
            Ok((attempts.len() >= 3).then_some(attempts))
        }
    })
    .await;
    assert_eq!(attempts.len(), 3, "no fourth attempt");
    assert!(
        attempts.iter().all(|s| s.status_code == 2),
        "every attempt failed"
    );
    // The order itself never moved on.
    assert_eq!(shop.order(id).await.unwrap()["status"], "placed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_twice_is_charged_once() {
    let shop = Shop::start(ShopOptions::default()).await.unwrap();
    let first = shop.place_order(&sample_order("margaret")).await.unwrap();
    shop.wait_for_status(first, "completed", FLOW).await;
    let placed = shop.wait_for_event(first, "OrderPlaced", FLOW).await;

    // The broker delivers the very same message again (same message_id, body, headers).
    let mut headers = FieldTable::default();
    for (k, v) in &placed.headers {
        headers.insert(k.as_str().into(), AMQPValue::LongString(v.as_str().into()));
    }
    let props = BasicProperties::default()
        .with_message_id(placed.message_id.as_str().into())
        .with_correlation_id(placed.correlation_id.as_str().into())
        .with_type("OrderPlaced".into())
        .with_app_id("order".into())
        .with_content_type("application/json".into())
        .with_headers(headers);
    shop.publish("order.placed", &placed.body, props)
        .await
        .unwrap();
    // payment handles its queue in order: once a later order is paid, the duplicate was seen.
    let second = shop.place_order(&sample_order("dennis")).await.unwrap();
    shop.wait_for_event(second, "PaymentProcessed", FLOW).await;

    let charged: Vec<_> = shop
        .events_for(first)
        .into_iter()
        .filter(|m| m.event_type == "PaymentProcessed")
        .collect();
    assert_eq!(charged.len(), 1, "one PaymentProcessed for the order");
    let payments = shop.database(Service::Payment).await.unwrap();
    let rows: i64 = sqlx::query("SELECT COUNT(*) AS n FROM payments WHERE order_id = ?")
        .bind(first.to_string())
        .fetch_one(&payments)
        .await
        .unwrap()
        .get("n");
    assert_eq!(rows, 1, "one charge");
    assert_eq!(shop.queue_depth("payment.orders.dlq").await.unwrap(), 0);
    assert!(
        shop.log(Service::Payment)
            .contains("duplicate delivery skipped")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_continue_the_producers_trace() {
    let (sink, endpoint) = SpanSink::start().await.unwrap();
    let shop = Shop::start(ShopOptions {
        otlp_endpoint: Some(endpoint),
        ..Default::default()
    })
    .await
    .unwrap();
    let id = shop.place_order(&sample_order("barbara")).await.unwrap();
    shop.wait_for_status(id, "completed", FLOW).await;
    let placed = shop.wait_for_event(id, "OrderPlaced", FLOW).await;
    let traceparent: Vec<&str> = placed.headers["traceparent"].split('-').collect();
    let (trace_id, producer_span) = (traceparent[1].to_owned(), traceparent[2].to_owned());

    // Every service's consumer span sits in the order's one trace.
    let consumers = eventually(FLOW, "a consumer span from every service", || {
        let spans = sink.spans();
        let trace_id = trace_id.clone();
        async move {
            let consumers: Vec<_> = spans
                .into_iter()
                .filter(|s| s.kind == 5 && s.trace_id == trace_id)
                .collect();
            let all = Service::ALL
                .iter()
                .all(|svc| consumers.iter().any(|s| s.service == svc.name()));
            Ok(all.then_some(consumers))
        }
    })
    .await;
    let payment = consumers
        .iter()
        .find(|s| s.service == "payment")
        .expect("payment consumer span");
    assert_eq!(
        payment.parent_span_id, producer_span,
        "child of the publish span"
    );
    assert_eq!(payment.name, "process payment.orders");
    assert_eq!(payment.attr("messaging.system"), Some("rabbitmq"));
    assert_eq!(payment.attr("messaging.operation.type"), Some("process"));
    assert_eq!(
        payment.attr("messaging.destination.name"),
        Some("shop.events")
    );
    assert_eq!(
        payment.attr("messaging.rabbitmq.destination.routing_key"),
        Some("order.placed")
    );
    assert_eq!(
        payment.attr("messaging.message.id"),
        Some(placed.message_id.as_str())
    );
    assert_eq!(payment.attr("shop.order_id"), Some(id.to_string().as_str()));

    let spans = sink.spans();
    let producer = spans
        .iter()
        .find(|s| s.span_id == producer_span)
        .expect("the order service's publish span");
    assert_eq!((producer.service.as_str(), producer.kind), ("order", 4));
    assert_eq!(producer.attr("messaging.operation.type"), Some("send"));
    assert_eq!(producer.trace_id, trace_id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_survives_a_dropped_broker_connection() {
    let shop = Shop::start(ShopOptions::default()).await.unwrap();
    let before = shop.place_order(&sample_order("frances")).await.unwrap();
    shop.wait_for_status(before, "completed", FLOW).await;

    let closed = eventually(
        FLOW,
        "the payment connection in the management API",
        || async {
            let n = shop.vhost.close_connections_named("payment").await?;
            Ok((n > 0).then_some(n))
        },
    )
    .await;
    assert_eq!(closed, 1);
    let after = shop.place_order(&sample_order("ada")).await.unwrap();
    shop.wait_for_status(after, "completed", Duration::from_secs(40))
        .await;
    assert!(
        shop.log(Service::Payment).contains("reconnecting"),
        "{}",
        shop.log(Service::Payment)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_consumer_lets_messages_pile_up_until_resumed() {
    let shop = Shop::start(ShopOptions::default()).await.unwrap();
    shop.set_fault(FaultCommand::Pause {
        service: Service::Payment,
    })
    .await
    .unwrap();
    eventually(FLOW, "payment's consumer to go", || async {
        Ok((shop.queue_consumers("payment.orders").await? == 0).then_some(()))
    })
    .await;
    let ids = [
        shop.place_order(&sample_order("ada")).await.unwrap(),
        shop.place_order(&sample_order("grace")).await.unwrap(),
    ];
    eventually(FLOW, "two orders waiting in payment.orders", || async {
        Ok((shop.queue_depth("payment.orders").await? == 2).then_some(()))
    })
    .await;
    assert_eq!(shop.order(ids[0]).await.unwrap()["status"], "placed");

    shop.set_fault(FaultCommand::Resume {
        service: Service::Payment,
    })
    .await
    .unwrap();
    for id in ids {
        shop.wait_for_status(id, "completed", FLOW).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_never_acks_holds_the_order_until_switched_back() {
    let shop = Shop::start(ShopOptions::default()).await.unwrap();
    shop.set_fault(FaultCommand::NoAck {
        service: Service::Shipping,
        enabled: true,
    })
    .await
    .unwrap();
    let id = shop.place_order(&sample_order("linus")).await.unwrap();
    shop.wait_for_event(id, "InventoryReserved", FLOW).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(shop.order(id).await.unwrap()["status"], "placed");
    assert_eq!(
        shop.queue_depth("shipping.inventory").await.unwrap(),
        0,
        "taken, not waiting"
    );
    assert!(
        shop.events_for(id)
            .iter()
            .all(|m| m.event_type != "OrderShipped")
    );

    shop.set_fault(FaultCommand::NoAck {
        service: Service::Shipping,
        enabled: false,
    })
    .await
    .unwrap();
    shop.wait_for_status(id, "completed", FLOW).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_stops_cleanly_on_sigterm() {
    let mut shop = Shop::start(ShopOptions::default()).await.unwrap();
    let id = shop.place_order(&sample_order("ken")).await.unwrap();
    shop.wait_for_status(id, "completed", FLOW).await;
    for service in [Service::Payment, Service::Order] {
        let status = shop.terminate(service).await.unwrap();
        assert!(status.success(), "{service} exited with {status}");
        assert!(
            shop.log(service).contains("stopped"),
            "{}",
            shop.log(service)
        );
    }
    assert_eq!(shop.queue_consumers("payment.orders").await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_order_api_explains_bad_requests() {
    let shop = Shop::start(ShopOptions {
        services: vec![Service::Order],
        ..Default::default()
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let url = format!("{}/orders", shop.order_url);
    let mut order = sample_order("ada");
    order.total_cents = 1;
    let resp = http.post(&url).json(&order).send().await.unwrap();
    assert_eq!(resp.status(), 422);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("add up to 7998"),
        "{body}"
    );

    let resp = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"customer\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(!body["error"].as_str().unwrap().is_empty());

    let resp = http
        .get(format!("{url}/{}", Uuid::new_v4()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = http.get(format!("{url}/not-a-uuid")).send().await.unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_runs_normally_when_no_otlp_receiver_listens() {
    // Traces go to a port nobody listens on: exports fail, orders do not wait for them.
    let closed = flowscope_tests::shop::free_port().unwrap();
    let shop = Shop::start(ShopOptions {
        otlp_endpoint: Some(format!("http://127.0.0.1:{closed}")),
        ..Default::default()
    })
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let ids = [
        shop.place_order(&sample_order("ada")).await.unwrap(),
        shop.place_order(&sample_order("grace")).await.unwrap(),
    ];
    for id in ids {
        shop.wait_for_status(id, "completed", FLOW).await;
    }
    eprintln!(
        "two orders completed in {:?} without a trace receiver",
        started.elapsed()
    );
    // Trace context still travels in the messages.
    let placed = shop.wait_for_event(ids[0], "OrderPlaced", FLOW).await;
    assert!(placed.headers["traceparent"].starts_with("00-"));
}
