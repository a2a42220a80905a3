//! The firehose tap and the management poller against the real broker, each
//! test in its own vhost.

use std::time::Duration;

use flowscope_collectors::config::{FirehoseConfig, ManagementConfig};
use flowscope_collectors::redact::{MASK, RedactConfig};
use flowscope_model::{BrokerMessage, Observation, SampleSource};
use flowscope_tests::amqp::{
    bind, connect, exchange, publish, publish_until_tapped, queue, wait_until_tapped,
};
use flowscope_tests::broker::TestVhost;
use flowscope_tests::eventually;
use flowscope_tests::observe::{CollectorSetup, ObservationLog, start_collectors};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicRejectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, ExchangeKind};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(15);

/// `name`, dead-lettering through direct exchange `dlx` into `<name>.dlq`.
async fn queue_with_dlq(ch: &Channel, name: &str) {
    exchange(ch, "dlx", ExchangeKind::Direct).await;
    let dlq = format!("{name}.dlq");
    queue(ch, &dlq, FieldTable::default()).await;
    bind(ch, &dlq, "dlx", name).await;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString("dlx".into()),
    );
    args.insert(
        "x-dead-letter-routing-key".into(),
        AMQPValue::LongString(name.into()),
    );
    queue(ch, name, args).await;
}

fn publish_of<'a>(obs: &'a Observation, message_id: &str) -> Option<&'a BrokerMessage> {
    match obs {
        Observation::Publish(m) if m.properties.message_id.as_deref() == Some(message_id) => {
            Some(m)
        }
        _ => None,
    }
}

fn firehose_only(config: FirehoseConfig) -> CollectorSetup {
    CollectorSetup {
        firehose: Some(config),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_yields_a_publish_and_a_deliver_observation_with_every_field() {
    let vhost = TestVhost::create().await.unwrap();
    let redact = RedactConfig {
        headers: vec!["authorization".into()],
        json_pointers: vec!["/card".into()],
        ..Default::default()
    };
    let (_collectors, rx) = start_collectors(
        &vhost,
        firehose_only(FirehoseConfig {
            redact,
            ..Default::default()
        }),
    );
    let log = ObservationLog::drain(rx);
    let (_pub_conn, ch) = connect(&vhost, "test-publisher").await;
    wait_until_tapped(&log, &ch).await;
    exchange(&ch, "t.events", ExchangeKind::Topic).await;
    queue(&ch, "t.q", FieldTable::default()).await;
    bind(&ch, "t.q", "t.events", "order.#").await;

    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    );
    headers.insert(
        "tracestate".into(),
        AMQPValue::LongString("vendor=x".into()),
    );
    headers.insert("x-attempt".into(), AMQPValue::LongInt(7));
    headers.insert(
        "authorization".into(),
        AMQPValue::LongString("Bearer s3cret".into()),
    );
    let props = BasicProperties::default()
        .with_message_id("m-42".into())
        .with_correlation_id("order-4711".into())
        .with_type("OrderPlaced".into())
        .with_app_id("order".into())
        .with_timestamp(1_700_000_000)
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_headers(headers);
    let body =
        serde_json::to_vec(&json!({"order_id": "4711", "card": "4111 1111 1111 1111"})).unwrap();
    publish(&ch, "t.events", "order.placed", &body, props).await;

    // Consumed by a named consumer connection.
    let (_sub_conn, sub) = connect(&vhost, "test-consumer").await;
    let mut consumer = sub
        .basic_consume(
            "t.q".into(),
            "c".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    consumer.next().await.unwrap().unwrap();

    let published = log
        .wait_for(WAIT, "the publish", |o| publish_of(o, "m-42").cloned())
        .await;
    assert_eq!(published.vhost, vhost.name);
    assert_eq!(published.exchange, "t.events");
    assert_eq!(published.routing_keys, ["order.placed"]);
    assert_eq!(
        published.routed_queues.as_deref(),
        Some(&["t.q".to_string()][..])
    );
    assert_eq!(published.service.as_deref(), Some("test-publisher"));
    assert_eq!(published.user.as_deref(), Some("guest"));
    assert!(
        published.connection.is_some() && published.channel.is_some() && published.node.is_some()
    );
    let p = &published.properties;
    assert_eq!(p.correlation_id.as_deref(), Some("order-4711"));
    assert_eq!(p.kind.as_deref(), Some("OrderPlaced"));
    assert_eq!(p.app_id.as_deref(), Some("order"));
    assert_eq!(p.timestamp, Some(1_700_000_000));
    assert_eq!(p.content_type.as_deref(), Some("application/json"));
    assert_eq!(p.delivery_mode, Some(2));
    assert_eq!(p.headers["x-attempt"], 7);
    assert_eq!(p.headers["authorization"], MASK, "redacted at ingest");
    let trace = published.trace.as_ref().unwrap();
    assert_eq!(
        (trace.trace_id.as_str(), trace.span_id.as_str()),
        ("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7")
    );
    assert_eq!(trace.tracestate.as_deref(), Some("vendor=x"));
    let captured = published.body.as_ref().unwrap();
    assert!(
        captured.redacted
            && captured.content.contains("4711")
            && !captured.content.contains("4111"),
        "{captured:?}"
    );
    assert_eq!(published.body_size, body.len() as u64);

    let delivered = log
        .wait_for(WAIT, "the deliver", |o| match o {
            Observation::Deliver(m) if m.properties.message_id.as_deref() == Some("m-42") => {
                Some(m.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(delivered.queue.as_deref(), Some("t.q"));
    assert_eq!(delivered.redelivered, Some(false));
    assert_eq!(delivered.service.as_deref(), Some("test-consumer"));
    assert_eq!(delivered.trace, published.trace);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unroutable_message_is_recognisable_and_a_full_pipeline_drops_and_counts() {
    let vhost = TestVhost::create().await.unwrap();
    let (collectors, rx) = start_collectors(&vhost, firehose_only(FirehoseConfig::default()));
    let log = ObservationLog::drain(rx);
    let (_conn, ch) = connect(&vhost, "test-publisher").await;
    wait_until_tapped(&log, &ch).await;
    exchange(&ch, "nowhere", ExchangeKind::Direct).await;
    publish(
        &ch,
        "nowhere",
        "lost",
        b"{}",
        BasicProperties::default().with_message_id("lost-1".into()),
    )
    .await;
    let lost = log
        .wait_for(WAIT, "the unroutable publish", |o| {
            publish_of(o, "lost-1").cloned()
        })
        .await;
    assert!(lost.is_unroutable());
    assert_eq!(
        collectors.metrics.value("observations_dropped", "firehose"),
        0
    );

    // A pipeline nobody drains: the tap keeps consuming, drops and counts.
    let vhost = TestVhost::create().await.unwrap();
    let setup = CollectorSetup {
        channel_capacity: Some(1),
        ..firehose_only(FirehoseConfig::default())
    };
    let (stuck, _rx_never_read) = start_collectors(&vhost, setup);
    let (_conn2, ch2) = connect(&vhost, "test-publisher").await;
    exchange(&ch2, "burst", ExchangeKind::Fanout).await;
    // Same allowance as `wait_until_tapped`: on a busy machine the tap on a
    // fresh vhost can take longer than `WAIT` to turn tracing on and bind.
    eventually(
        Duration::from_secs(30),
        "firehose drops to be counted",
        || async {
            for _ in 0..20 {
                publish(&ch2, "burst", "", b"x", BasicProperties::default()).await;
            }
            Ok((stuck.metrics.value("observations_dropped", "firehose") >= 10).then_some(()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_letter_nobody_consumes_is_reported_with_its_reason_and_stays() {
    let vhost = TestVhost::create().await.unwrap();
    let (_conn, ch) = connect(&vhost, "test-app").await;
    queue_with_dlq(&ch, "work").await;
    publish(
        &ch,
        "",
        "work",
        b"{\"order_id\":\"9\"}",
        BasicProperties::default().with_message_id("dead-1".into()),
    )
    .await;
    let msg = ch
        .basic_get("work".into(), BasicGetOptions::default())
        .await
        .unwrap()
        .unwrap();
    msg.delivery
        .reject(BasicRejectOptions { requeue: false })
        .await
        .unwrap();

    let management = ManagementConfig {
        topology_interval_ms: 500,
        ..Default::default()
    };
    let (_collectors, rx) = start_collectors(
        &vhost,
        CollectorSetup {
            management: Some(management),
            ..Default::default()
        },
    );
    let log = ObservationLog::drain(rx);
    let dead = log
        .wait_for(WAIT, "the dead letter", |o| match o {
            Observation::DeadLetter(m) if m.properties.message_id.as_deref() == Some("dead-1") => {
                Some(m.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(dead.queue.as_deref(), Some("work.dlq"));
    assert_eq!(dead.deaths.len(), 1);
    assert_eq!(dead.deaths[0].reason, "rejected");
    assert_eq!(dead.deaths[0].queue, "work");
    assert_eq!(dead.deaths[0].routing_keys, ["work"]);
    assert_eq!(
        dead.first_death.as_ref().unwrap().queue.as_deref(),
        Some("work")
    );
    assert_eq!(dead.body.as_ref().unwrap().content, "{\"order_id\":\"9\"}");

    // Still there, reported once.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let q = ch
        .queue_declare(
            "work.dlq".into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    assert_eq!(q.message_count(), 1, "inspection must not consume");
    let reports = log
        .all()
        .iter()
        .filter(|o| matches!(o, Observation::DeadLetter(_)))
        .count();
    assert_eq!(reports, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_poller_reads_exact_depths_within_two_seconds_and_dead_letter_topology() {
    let vhost = TestVhost::create().await.unwrap();
    let (_conn, ch) = connect(&vhost, "test-app").await;
    queue_with_dlq(&ch, "orders").await;

    let management = ManagementConfig {
        topology_interval_ms: 500,
        ..Default::default()
    };
    let (_collectors, rx) = start_collectors(
        &vhost,
        CollectorSetup {
            management: Some(management),
            ..Default::default()
        },
    );
    let log = ObservationLog::drain(rx);
    let topology = log
        .wait_for(WAIT, "the topology", |o| match o {
            // The management API lists a new connection with its next statistics round.
            Observation::Topology(t)
                if !t.dead_letter_edges.is_empty()
                    && t.connections
                        .iter()
                        .any(|c| c.client_name.as_deref() == Some("test-app")) =>
            {
                Some(t.clone())
            }
            _ => None,
        })
        .await;
    let edge = &topology.dead_letter_edges[0];
    assert_eq!(
        (edge.queue.as_str(), edge.exchange.as_str()),
        ("orders", "dlx")
    );
    assert_eq!(edge.targets, ["orders.dlq"]);

    // Let the poller see the empty queue, then put 7 messages in it.
    log.wait_for(WAIT, "a first exact sample", |o| match o {
        Observation::QueueSample(s)
            if s.queue == "orders" && s.source == SampleSource::PassiveDeclare =>
        {
            Some(())
        }
        _ => None,
    })
    .await;
    for i in 0..7 {
        publish(
            &ch,
            "",
            "orders",
            format!("{i}").as_bytes(),
            BasicProperties::default(),
        )
        .await;
    }
    let started = std::time::Instant::now();
    log.wait_for(Duration::from_secs(2), "depth 7 within 2 s", |o| match o {
        Observation::QueueSample(s) if s.queue == "orders" && s.messages_ready == Some(7) => {
            Some(())
        }
        _ => None,
    })
    .await;
    eprintln!("depth 7 seen after {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_tap_resumes_after_a_forced_close_and_turns_tracing_back_on() {
    let vhost = TestVhost::create().await.unwrap();
    let config = FirehoseConfig {
        reassert_tracing_secs: 1,
        ..Default::default()
    };
    let (_collectors, rx) = start_collectors(&vhost, firehose_only(config));
    let log = ObservationLog::drain(rx);
    let (_conn, ch) = connect(&vhost, "test-publisher").await;
    wait_until_tapped(&log, &ch).await;

    // What a broker restart does: tracing forgotten, connections gone.
    vhost.set_tracing(false).await.unwrap();
    let closed = eventually(WAIT, "flowscope's tap connection", || async {
        let n = vhost
            .close_connections_named(&format!("flowscope-firehose {}", vhost.name))
            .await?;
        Ok((n > 0).then_some(n))
    })
    .await;
    assert_eq!(closed, 1);
    exchange(&ch, "after", ExchangeKind::Fanout).await;
    publish_until_tapped(&log, &ch, "after", "a publish seen after the drop").await;
    let info = vhost.mgmt_get("vhosts/{vhost}").await.unwrap();
    assert_eq!(info["tracing"], true);
}

/// The depth a viewer sees after messages from a connection flowscope did not
/// know yet: the firehose holds them until it learns the connection's name,
/// and must not count them a second time when it lets them go (by then an
/// exact count holds them).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_held_for_a_new_connection_are_counted_into_the_depth_once() {
    let vhost = TestVhost::create().await.unwrap();
    let (_conn, ch) = connect(&vhost, "test-app").await;
    queue(&ch, "orders", FieldTable::default()).await;
    let (_collectors, rx) = start_collectors(
        &vhost,
        CollectorSetup {
            firehose: Some(FirehoseConfig::default()),
            management: Some(ManagementConfig::default()),
            ..Default::default()
        },
    );
    let log = ObservationLog::drain(rx);
    wait_until_tapped(&log, &ch).await;
    let ready = |o: &Observation| match o {
        Observation::QueueSample(s)
            if s.queue == "orders" && s.source != SampleSource::Management =>
        {
            s.messages_ready
        }
        _ => None,
    };
    log.wait_for(WAIT, "an exact count of the empty queue", |o| {
        ready(o).filter(|&n| n == 0)
    })
    .await;

    // A connection opened now is unknown until the management API lists it.
    // Whether an exact count (every 500 ms) holds its messages before they are
    // let go is up to the broker's timing: two connections, one after another.
    let mut connections = Vec::new();
    let mut in_queue = 0;
    for attempt in 0..2 {
        let (late_conn, late) = connect(&vhost, &format!("late-app-{attempt}")).await;
        connections.push(late_conn);
        let ids: Vec<String> = (0..5).map(|i| format!("late-{attempt}-{i}")).collect();
        for id in &ids {
            let props = BasicProperties::default().with_message_id(id.as_str().into());
            publish(&late, "", "orders", b"x", props).await;
        }
        in_queue += 5;
        let released = eventually(WAIT, "the held publishes let go", || {
            let all = log.all();
            let last = all
                .iter()
                .rposition(|o| publish_of(o, &ids[4]).is_some())
                .filter(|_| {
                    ids.iter()
                        .all(|id| all.iter().any(|o| publish_of(o, id).is_some()))
                });
            async move { Ok(last) }
        })
        .await;
        // Past the next exact read and the next estimates.
        tokio::time::sleep(Duration::from_millis(1_200)).await;
        let after: Vec<u64> = log.all()[released..].iter().filter_map(ready).collect();
        assert!(
            after.iter().all(|&n| n <= in_queue),
            "{in_queue} messages in the queue, yet the depth shown after the held publishes went out: {after:?}"
        );
        let shown = log.all().iter().rev().find_map(ready);
        assert_eq!(shown, Some(in_queue), "the depth a viewer sees");
    }
}
