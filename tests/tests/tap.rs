//! The collectors together: the demo shop watched by the firehose tap, the
//! management poller and the OTLP receiver; and `flowscope tap` as a process.

use std::collections::HashSet;
use std::io::BufRead;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowscope_collectors::config::{FirehoseConfig, ManagementConfig};
use flowscope_collectors::otlp::{OtlpConfig, OtlpReceiver};
use flowscope_collectors::pipeline::{Metrics, ObservationSender};
use flowscope_model::{Observation, SpanKind};
use flowscope_tests::broker::TestVhost;
use flowscope_tests::eventually;
use flowscope_tests::observe::{CollectorSetup, ObservationLog, start_collectors};
use flowscope_tests::shop::{Shop, ShopOptions, free_port, sample_order, workspace_binary};
use lapin::options::{BasicPublishOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties, ExchangeKind};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_of_the_demo_shop_is_seen_by_broker_and_spans_under_one_trace_id() {
    // The OTLP receiver first: the services export to it.
    let metrics = Metrics::default();
    let (tx, otlp_rx) = flowscope_collectors::pipeline::channel(10_000);
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", grpc.local_addr().unwrap());
    let receiver = OtlpReceiver::new(
        OtlpConfig::default(),
        ObservationSender::new(tx, &metrics, "otlp"),
    );
    let stop = CancellationToken::new();
    tokio::spawn(receiver.serve(grpc, http, stop.clone()));
    let spans = ObservationLog::drain(otlp_rx);

    let shop = Shop::start(ShopOptions {
        otlp_endpoint: Some(endpoint),
        ..Default::default()
    })
    .await
    .unwrap();
    let setup = CollectorSetup {
        firehose: Some(FirehoseConfig::default()),
        management: Some(ManagementConfig::default()),
        ..Default::default()
    };
    let (_collectors, rx) = start_collectors(&shop.vhost, setup);
    let broker = ObservationLog::drain(rx);
    // The tap is live once it sees the shop's own control traffic.
    eventually(WAIT, "the tap to see traffic", || async {
        shop.set_fault(flowscope_demo::faults::FaultCommand::Show)
            .await?;
        Ok(broker
            .all()
            .iter()
            .any(|o| matches!(o, Observation::Publish(_)))
            .then_some(()))
    })
    .await;

    let id = shop
        .place_order(&sample_order("ada"))
        .await
        .unwrap()
        .to_string();
    shop.wait_for_status(id.parse().unwrap(), "completed", WAIT)
        .await;
    let events = [
        "OrderPlaced",
        "PaymentProcessed",
        "InventoryReserved",
        "OrderShipped",
        "OrderCompleted",
    ];
    let of_order = |o: &Observation| match o {
        Observation::Publish(m) | Observation::Deliver(m)
            if m.properties.correlation_id.as_deref() == Some(id.as_str()) =>
        {
            Some(m.clone())
        }
        _ => None,
    };
    // Each event: published by its service, delivered to its business consumer and to notification.
    let messages = eventually(WAIT, "publish and deliver of every event", || {
        let found: Vec<(bool, Box<flowscope_model::BrokerMessage>)> = broker
            .all()
            .iter()
            .filter_map(|o| of_order(o).map(|m| (matches!(o, Observation::Publish(_)), m)))
            // The test's own tap queue is a consumer too; only the shop's count here.
            .filter(|(_, m)| m.service.as_deref() != Some("test-harness"))
            .collect();
        async move {
            let complete = events.iter().all(|e| {
                let of = |publish: bool| {
                    found
                        .iter()
                        .filter(|(p, m)| *p == publish && m.properties.kind.as_deref() == Some(*e))
                        .count()
                };
                let deliveries = if *e == "OrderCompleted" { 1 } else { 2 };
                of(true) == 1 && of(false) == deliveries
            });
            Ok(complete.then_some(found))
        }
    })
    .await;
    let trace_ids: HashSet<String> = messages
        .iter()
        .map(|(_, m)| m.trace.as_ref().expect("trace context").trace_id.clone())
        .collect();
    assert_eq!(trace_ids.len(), 1, "one order, one trace: {trace_ids:?}");
    let trace_id = trace_ids.into_iter().next().unwrap();
    for (publish, m) in &messages {
        if *publish {
            assert_eq!(
                m.service.as_deref(),
                m.properties.app_id.as_deref(),
                "publisher named by its connection"
            );
        } else {
            assert!(m.service.is_some(), "consumer named: {m:?}");
        }
    }

    // Spans of every service in that trace, producer and consumer kinds among them.
    let services = eventually(
        WAIT,
        "spans of all five services, order producing and payment consuming",
        || {
            let found: Vec<(String, SpanKind)> = spans
                .all()
                .iter()
                .filter_map(|o| match o {
                    Observation::Span(s) if s.trace_id == trace_id => {
                        Some((s.service.to_string(), s.kind))
                    }
                    _ => None,
                })
                .collect();
            async move {
                // A service's spans are exported as each ends: its consumer
                // span (the parent) after the producer span inside it.
                let names: HashSet<&str> = found.iter().map(|(s, _)| s.as_str()).collect();
                let has = |service: &str, kind: SpanKind| {
                    found.iter().any(|(s, k)| s == service && *k == kind)
                };
                let kinds = has("order", SpanKind::Producer) && has("payment", SpanKind::Consumer);
                Ok((names.len() == 5 && kinds).then_some(found))
            }
        },
    )
    .await;
    let names: HashSet<&str> = services.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        HashSet::from(["order", "payment", "inventory", "shipping", "notification"])
    );
    stop.cancel();
}

/// Lines a child process printed, read in the background.
fn read_lines(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stream)
            .lines()
            .map_while(Result::ok)
        {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowscope_tap_prints_json_lines_and_its_queue_stays_bounded_while_it_is_stopped() {
    let vhost = TestVhost::create().await.unwrap();
    let metrics_port = free_port().unwrap();
    let mut tap = std::process::Command::new(workspace_binary(
        "flowscope",
        "FLOWSCOPE_BIN",
        "flowscope-server",
    ))
    .args([
        "tap",
        "--no-otlp",
        "--no-management",
        "--only",
        "publish,deliver",
    ])
    .args([
        "--vhost",
        &vhost.name,
        "--metrics-addr",
        &format!("127.0.0.1:{metrics_port}"),
    ])
    .env("FLOWSCOPE_FIREHOSE_TAP_MAX_LENGTH", "50")
    .env("FLOWSCOPE_FIREHOSE_PREFETCH", "20")
    .stdout(Stdio::piped())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    let lines = read_lines(tap.stdout.take().unwrap());
    let conn = Connection::connect(&vhost.amqp_url(), ConnectionProperties::default())
        .await
        .unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        "probe".into(),
        ExchangeKind::Fanout,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let publish = |n: usize| {
        let ch = ch.clone();
        async move {
            for i in 0..n {
                ch.basic_publish(
                    "probe".into(),
                    "".into(),
                    BasicPublishOptions::default(),
                    format!("{i}").as_bytes(),
                    BasicProperties::default(),
                )
                .await?
                .await?;
            }
            anyhow::Ok(())
        }
    };
    let printed = |lines: &Arc<Mutex<Vec<String>>>| {
        lines
            .lock()
            .unwrap()
            .iter()
            .filter(|l| {
                let v: serde_json::Value = serde_json::from_str(l).expect("every line is JSON");
                v["type"] == "publish" && v["data"]["exchange"] == "probe"
            })
            .count()
    };
    eventually(
        Duration::from_secs(30),
        "the tap to print a probe",
        || async {
            publish(1).await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
            Ok((printed(&lines) > 0).then_some(()))
        },
    )
    .await;

    // flowscope frozen: the broker keeps at most 50 tap messages for it.
    let pid = Pid::from_raw(tap.id() as i32);
    kill(pid, Signal::SIGSTOP).unwrap();
    publish(300).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The tap queue is exclusive to flowscope's connection: ask the management
    // API, whose numbers settle within its 5 s statistics round. The broker
    // holds at most 50 ready messages plus the 20 in flight (the prefetch).
    let (ready, unacked) = eventually(WAIT, "the tap queue to fill to its bound", || async {
        let queues = vhost
            .mgmt_get("queues/{vhost}?columns=name,messages_ready,messages_unacknowledged")
            .await?;
        let counts = queues
            .as_array()
            .into_iter()
            .flatten()
            .find(|q| {
                q["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("flowscope.tap."))
            })
            .and_then(|q| {
                Some((
                    q["messages_ready"].as_u64()?,
                    q["messages_unacknowledged"].as_u64()?,
                ))
            });
        Ok(counts.filter(|(ready, unacked)| ready + unacked >= 60))
    })
    .await;
    assert!(ready <= 50, "tap queue holds {ready} ready > 50");
    assert!(unacked <= 20, "{unacked} unacked > prefetch 20");

    // Thawed, it goes on.
    kill(pid, Signal::SIGCONT).unwrap();
    let before = printed(&lines);
    eventually(WAIT, "the tap to print again", || async {
        publish(1).await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok((printed(&lines) > before).then_some(()))
    })
    .await;
    let metrics = reqwest::get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("flowscope_observations_received_total{source=\"firehose\"}"),
        "{metrics}"
    );

    kill(pid, Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || tap.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "flowscope tap exited with {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_management_api_the_tap_says_so_and_keeps_retrying() {
    let vhost = TestVhost::create().await.unwrap();
    let closed = free_port().unwrap();
    let mut tap = std::process::Command::new(workspace_binary(
        "flowscope",
        "FLOWSCOPE_BIN",
        "flowscope-server",
    ))
    .args(["tap", "--no-otlp", "--vhost", &vhost.name])
    .args(["--management-url", &format!("http://127.0.0.1:{closed}")])
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let stderr = read_lines(tap.stderr.take().unwrap());
    let said = eventually(WAIT, "an error that names the fix", || {
        let text = stderr.lock().unwrap().join("\n");
        async move {
            Ok((text.contains("does not answer")
                && text.contains("rabbitmq-plugins enable rabbitmq_management"))
            .then_some(text))
        }
    })
    .await;
    assert!(said.contains("retry"), "{said}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        tap.try_wait().unwrap().is_none(),
        "flowscope tap must keep running"
    );
    kill(Pid::from_raw(tap.id() as i32), Signal::SIGTERM).unwrap();
    let status = tokio::task::spawn_blocking(move || tap.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "{status}");
}
