//! flowscope's server watching the demo shop on the real broker: flows,
//! stuck messages, the dead-letter alert with its webhook, the live stream.

use std::time::Duration;

use flowscope_demo::faults::FaultCommand;
use flowscope_demo::topology::Service;
use flowscope_tests::broker::TestVhost;
use flowscope_tests::eventually;
use flowscope_tests::server::{TestServer, Webhook, test_config};
use flowscope_tests::shop::{Shop, ShopOptions, sample_order};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(30);

/// A server and the shop in one fresh vhost, the shop exporting traces to the server.
async fn server_and_shop(
    tweak: impl FnOnce(&mut flowscope_server::config::Config),
) -> (TestServer, Shop, tempdir::Dir) {
    let vhost = TestVhost::create().await.unwrap();
    let dir = tempdir::Dir::new();
    let mut config = test_config(&vhost, dir.path());
    tweak(&mut config);
    let server = TestServer::start(config, Some(vhost.amqp_url()))
        .await
        .unwrap();
    let options = ShopOptions {
        otlp_endpoint: Some(server.otlp_endpoint.clone()),
        tap: false,
        ..Default::default()
    };
    let shop = Shop::start_in(vhost, options).await.unwrap();
    (server, shop, dir)
}

mod tempdir {
    /// A directory removed on drop.
    #[derive(Debug)]
    pub struct Dir(std::path::PathBuf);
    impl Dir {
        pub fn new() -> Self {
            let path = std::env::temp_dir().join(format!(
                "flowscope-server-{}",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }
        pub fn path(&self) -> &std::path::Path {
            &self.0
        }
    }
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn hops(flow: &Value) -> Vec<Value> {
    flow["hops"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_normal_order_is_completed_with_its_hops_and_queue_waits() {
    let (mut server, shop, _dir) = server_and_shop(|_| {}).await;
    let order = shop
        .place_order(&sample_order("ada"))
        .await
        .unwrap()
        .to_string();
    let flow = server
        .wait_for_flow(
            &order,
            WAIT,
            "a completed flow with every hop processed",
            |f| {
                f["summary"]["status"] == "completed"
                    && hops(f)
                        .iter()
                        .filter(|h| h["processing_us"].is_number())
                        .count()
                        >= 5
            },
        )
        .await;
    let chain: Vec<(String, String, String)> = hops(&flow)
        .iter()
        .filter(|h| h["queue"] != "notification.events" && h["queue"].is_string())
        .map(|h| {
            (
                h["event_type"].as_str().unwrap().to_owned(),
                h["queue"].as_str().unwrap().to_owned(),
                h["consumer"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        chain,
        [
            (
                "OrderPlaced".into(),
                "payment.orders".into(),
                "payment".into()
            ),
            (
                "PaymentProcessed".into(),
                "inventory.payments".into(),
                "inventory".into()
            ),
            (
                "InventoryReserved".into(),
                "shipping.inventory".into(),
                "shipping".into()
            ),
            (
                "OrderShipped".into(),
                "order.outcomes".into(),
                "order".into()
            ),
        ]
    );
    for hop in hops(&flow).iter().filter(|h| h["queue"].is_string()) {
        assert!(
            hop["queue_wait_us"].as_i64().is_some_and(|w| w >= 0),
            "queue wait measured: {hop}"
        );
    }
    assert_eq!(flow["summary"]["key"], order);
    assert!(
        flow["summary"]["num_spans"].as_u64().unwrap() >= 5,
        "spans of every service"
    );
    assert_eq!(
        flow["summary"]["trace_ids"].as_array().unwrap().len(),
        1,
        "one order, one trace"
    );

    // The stored list finds it by order id too.
    let listed = eventually(WAIT, "the flow in the stored list", || async {
        let page = server.get(&format!("/api/flows?q={order}")).await?;
        Ok((page["total"] == 1 && page["items"][0]["status"] == "completed").then_some(page))
    })
    .await;
    assert_eq!(listed["items"][0]["status"], "completed");
    let map = server.get("/api/process-map").await.unwrap();
    assert_eq!(map["variants"][0]["steps"][0], "OrderPlaced");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_order_fails_at_the_payment_hop() {
    let (mut server, shop, _dir) = server_and_shop(|_| {}).await;
    shop.set_fault(FaultCommand::DeclineRate { rate: 1.0 })
        .await
        .unwrap();
    let order = shop
        .place_order(&sample_order("grace"))
        .await
        .unwrap()
        .to_string();
    let flow = server
        .wait_for_flow(&order, WAIT, "a failed flow", |f| {
            f["summary"]["status"] == "failed"
        })
        .await;
    let reason = &flow["summary"]["reason"];
    assert_eq!(
        reason["message"],
        "PaymentFailed from payment: card declined by issuer"
    );
    let hop = &hops(&flow)[reason["hop"].as_u64().unwrap() as usize];
    assert_eq!(hop["event_type"], "PaymentFailed");
    assert_eq!(hop["producer"], "payment");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_consumer_makes_its_orders_stuck_at_that_queue() {
    let (mut server, shop, _dir) = server_and_shop(|c| c.correlation.queue_wait_ms = 2_000).await;
    shop.set_fault(FaultCommand::Pause {
        service: Service::Inventory,
    })
    .await
    .unwrap();
    let order = shop
        .place_order(&sample_order("linus"))
        .await
        .unwrap()
        .to_string();
    let flow = server
        .wait_for_flow(&order, WAIT, "a stuck flow", |f| {
            f["summary"]["status"] == "stuck"
        })
        .await;
    let reason = &flow["summary"]["reason"];
    assert_eq!(reason["queue"], "inventory.payments");
    assert!(
        reason["message"]
            .as_str()
            .unwrap()
            .starts_with("waiting in inventory.payments for"),
        "{reason}"
    );
    let stuck = server.get("/api/stuck").await.unwrap();
    assert_eq!(stuck["groups"][0]["where"], "inventory.payments");
    assert_eq!(stuck["groups"][0]["count"], 1);

    // Resumed, it completes.
    shop.set_fault(FaultCommand::Resume {
        service: Service::Inventory,
    })
    .await
    .unwrap();
    server
        .wait_for_flow(&order, WAIT, "the flow to complete after resume", |f| {
            f["summary"]["status"] == "completed"
        })
        .await;
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_fires_the_dead_letter_alert_the_webhook_hears_it_and_a_purge_resolves_it() {
    let (hook, url) = Webhook::start().await;
    let (mut server, shop, _dir) = server_and_shop(|c| c.alerts.webhooks = vec![url.clone()]).await;
    // Growth is measured from a depth seen before: let flowscope see the DLQs empty first.
    eventually(
        WAIT,
        "flowscope to know payment.orders.dlq as an empty dead-letter queue",
        || async {
            let queues = server.get("/api/queues").await?;
            let known = queues.as_array().into_iter().flatten().any(|q| {
                q["name"] == "payment.orders.dlq"
                    && q["is_dead_letter_queue"] == true
                    && q["ready"] == 0
                    && q["ready_source"] != "management"
            });
            Ok(known.then_some(()))
        },
    )
    .await;
    shop.set_fault(FaultCommand::PoisonRate {
        service: Service::Order,
        rate: 1.0,
    })
    .await
    .unwrap();
    let order = shop
        .place_order(&sample_order("ken"))
        .await
        .unwrap()
        .to_string();
    let flow = server
        .wait_for_flow(&order, WAIT, "a flow failed by dead-lettering", |f| {
            f["summary"]["status"] == "failed"
                && f["summary"]["reason"]["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("dead-lettered") && m.contains("payment.orders"))
        })
        .await;
    // Notification consumes every event, so the poison lands in its DLQ too.
    assert_eq!(
        flow["summary"]["reason"]["message"],
        "dead-lettered at notification.events and payment.orders after 3 attempts: rejected"
    );

    let firing = eventually(WAIT, "the webhook to hear the DLQ alert fire", || async {
        Ok(hook
            .bodies()
            .into_iter()
            .find(|b| b["state"] == "firing" && b["subject"] == "payment.orders.dlq"))
    })
    .await;
    assert_eq!(firing["flowscope_alert"], 1);
    let reasons = firing["evidence"]["top_reasons"].to_string();
    assert!(reasons.contains("rejected"), "{firing}");
    let active = server.get("/api/alerts").await.unwrap();
    assert!(active["active"].to_string().contains("payment.orders.dlq"));

    let dead = server
        .get(&format!(
            "/api/queues/{}/payment.orders.dlq/dead-letters",
            shop.vhost.name
        ))
        .await
        .unwrap();
    assert_eq!(dead["groups"][0]["reason"], "rejected");
    assert_eq!(dead["groups"][0]["failing_service"], "payment");

    for dlq in ["payment.orders.dlq", "notification.events.dlq"] {
        let (status, body) = server
            .post(
                &format!("/api/queues/{}/{dlq}/purge", shop.vhost.name),
                json!({}),
            )
            .await
            .unwrap();
        assert_eq!(status, 200, "{body}");
    }
    eventually(WAIT, "the webhook to hear it resolve", || async {
        Ok(hook
            .bodies()
            .into_iter()
            .find(|b| b["state"] == "resolved" && b["subject"] == "payment.orders.dlq"))
    })
    .await;
    let audit = server.get("/api/audit").await.unwrap();
    assert_eq!(audit["entries"][0]["action"], "purge");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_sends_a_snapshot_then_the_updates_of_an_order() {
    let (mut server, shop, _dir) = server_and_shop(|_| {}).await;
    let resp = reqwest::get(format!("{}/api/stream", server.base))
        .await
        .unwrap();
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut resp = resp;
    let mut text = String::new();
    let mut events: Vec<(String, Value)> = Vec::new();
    let order = {
        // The first event is the snapshot.
        while events.is_empty() {
            text.push_str(std::str::from_utf8(&resp.chunk().await.unwrap().unwrap()).unwrap());
            events.extend(parse_events(&mut text));
        }
        assert_eq!(events[0].0, "snapshot");
        assert_eq!(events[0].1["type"], "snapshot");
        shop.place_order(&sample_order("ada"))
            .await
            .unwrap()
            .to_string()
    };
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let chunk = tokio::time::timeout_at(deadline, resp.chunk())
            .await
            .expect("an update of the order")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        events.extend(parse_events(&mut text));
        let seen = events.iter().any(|(name, v)| {
            name == "update"
                && v["data"]["flows"].as_array().is_some_and(|f| {
                    f.iter()
                        .any(|f| f["key"] == order.as_str() && f["status"] == "completed")
                })
        });
        if seen {
            break;
        }
    }
    server.stop().await;
}

/// Complete SSE events at the front of `text` (removed from it): (event name, JSON data).
fn parse_events(text: &mut String) -> Vec<(String, Value)> {
    let mut events = Vec::new();
    while let Some(end) = text.find("\n\n") {
        let block: String = text.drain(..end + 2).collect();
        let name = block
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or("message")
            .to_owned();
        let data: String = block
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .collect();
        if let Ok(value) = serde_json::from_str(&data) {
            events.push((name, value));
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_tokens_configured_a_request_without_one_is_refused() {
    let vhost = TestVhost::create().await.unwrap();
    let dir = tempdir::Dir::new();
    let mut config = test_config(&vhost, dir.path());
    config.auth.tokens = serde_json::from_value(json!([
        {"token": "view-123", "role": "viewer", "name": "ada"},
        {"token": "op-456", "role": "operator", "name": "grace"},
    ]))
    .unwrap();
    let mut server = TestServer::start(config, None).await.unwrap();
    let url = |p: &str| format!("{}{p}", server.base);
    let http = reqwest::Client::new();
    let resp = http.get(url("/api/flows")).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("bearer token"));
    let resp = http
        .get(url("/api/flows"))
        .bearer_auth("view-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = http
        .get(url("/api/stream?access_token=view-123"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        200,
        "EventSource passes the token in the query"
    );
    let resp = http
        .post(url("/api/queues/x/y/purge"))
        .bearer_auth("view-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let resp = http
        .get(url("/api/flows"))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(
        http.get(url("/healthz")).send().await.unwrap().status(),
        200,
        "health needs no token"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redrive_moves_dead_letters_back_to_where_they_were_published_and_is_audited() {
    use lapin::options::{
        BasicGetOptions, BasicPublishOptions, BasicRejectOptions, QueueBindOptions,
        QueueDeclareOptions,
    };
    use lapin::types::{AMQPValue, FieldTable};
    let vhost = TestVhost::create().await.unwrap();
    let conn = lapin::Connection::connect(&vhost.amqp_url(), Default::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    let declare = |name: &'static str, args: FieldTable| {
        let ch = ch.clone();
        async move {
            ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
                .await
                .unwrap()
        }
    };
    ch.exchange_declare(
        "dlx".into(),
        lapin::ExchangeKind::Direct,
        Default::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    declare("work.dlq", FieldTable::default()).await;
    ch.queue_bind(
        "work.dlq".into(),
        "dlx".into(),
        "work".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("dlx".into()),
    );
    declare("work", args).await;
    for id in ["a", "b"] {
        let props = lapin::BasicProperties::default().with_message_id(id.into());
        ch.basic_publish(
            "".into(),
            "work".into(),
            BasicPublishOptions::default(),
            b"{}",
            props,
        )
        .await
        .unwrap()
        .await
        .unwrap();
        let msg = ch
            .basic_get("work".into(), BasicGetOptions::default())
            .await
            .unwrap()
            .unwrap();
        msg.delivery
            .reject(BasicRejectOptions { requeue: false })
            .await
            .unwrap();
    }
    let depth = |q: &'static str| {
        let ch = ch.clone();
        async move {
            let options = QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            ch.queue_declare(q.into(), options, FieldTable::default())
                .await
                .unwrap()
                .message_count()
        }
    };
    // Dead-lettering (and acks) complete asynchronously: wait for the counts.
    let depths = |work: u32, dlq: u32| async move {
        eventually(
            WAIT,
            &format!("work = {work}, work.dlq = {dlq}"),
            || async move {
                Ok((depth("work").await == work && depth("work.dlq").await == dlq).then_some(()))
            },
        )
        .await
    };
    depths(0, 2).await;

    let dir = tempdir::Dir::new();
    let mut server = TestServer::start(test_config(&vhost, dir.path()), None)
        .await
        .unwrap();
    let path = format!("/api/queues/{}/work.dlq/redrive", vhost.name);
    let (status, body) = server
        .post(&path, json!({"message_id": "b"}))
        .await
        .unwrap();
    assert_eq!((status, body["moved"].as_u64()), (200, Some(1)), "{body}");
    depths(1, 1).await;
    let (status, body) = server
        .post(&path, json!({"all": true, "rate_per_sec": 100}))
        .await
        .unwrap();
    assert_eq!((status, body["moved"].as_u64()), (200, Some(1)), "{body}");
    depths(2, 0).await;
    let (status, body) = server.post(&path, json!({})).await.unwrap();
    assert_eq!(status, 400, "say which: {body}");
    let (status, body) = server
        .post(&path, json!({"message_id": "nope"}))
        .await
        .unwrap();
    assert_eq!(status, 404, "{body}");
    let audit = server.get("/api/audit").await.unwrap();
    let entries = audit["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(
        (
            entries[0]["action"].as_str(),
            entries[0]["count"].as_u64(),
            entries[0]["detail"].as_str()
        ),
        (Some("redrive"), Some(1), Some("all"))
    );
    assert_eq!(entries[1]["detail"], "message b");
    assert_eq!(entries[1]["who"], "anonymous");
    server.stop().await;
}
