//! `flowscope-bench alert`: from a dead-lettering to the webhook call.
//!
//! `flowscope serve` watches a fresh vhost on the private node with the default `dlq-growth`
//! rule (every dead-letter queue, 1 message) and one webhook: a listener in this process that
//! notes when each call arrives. `--samples` source queues each dead-letter through the direct
//! exchange `bench.alert.dlx` into a DLQ of their own, so each sample raises a distinct alert
//! (no waiting for the previous one to resolve). Each sample: publish one message to a source
//! queue, take it with `basic.get`, note the wall time and reject it without requeue — the
//! broker dead-letters it at once — then wait for the webhook call that names that DLQ as
//! firing. Samples are spaced by a random 0.5–1.5 s so they fall anywhere in flowscope's
//! polling and evaluation cycles.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use axum::Router;
use axum::routing::post;
use lapin::BasicProperties;
use lapin::options::{
    BasicGetOptions, BasicRejectOptions, ExchangeDeclareOptions, QueueBindOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use rand::Rng;
use serde_json::Value;

use crate::measure::{Row, print_rows, quantile};
use crate::rabbit::flowscope::serve;
use crate::rabbit::publish::{PacedPublisher, declare_queue};
use crate::rabbit::{BenchNode, encode};

const VHOST: &str = "bench-alert";
const DLX: &str = "bench.alert.dlx";

/// Options of `flowscope-bench alert`.
#[derive(Debug, Clone, clap::Args)]
pub struct AlertArgs {
    /// Dead-letterings timed (each into a DLQ of its own).
    #[arg(long, default_value_t = 12)]
    pub samples: usize,
    /// Where flowscope serve listens.
    #[arg(long, default_value = "127.0.0.1:18081")]
    pub listen: SocketAddr,
    /// The flowscope binary (default: `flowscope` beside this executable).
    #[arg(long)]
    pub flowscope_bin: Option<PathBuf>,
    /// Leave the private RabbitMQ node running at the end.
    #[arg(long)]
    pub keep_node: bool,
}

/// Webhook calls received: (wall-clock ms, body).
type Calls = Arc<Mutex<Vec<(f64, Value)>>>;

fn source(i: usize) -> String {
    format!("bench.alert.src.{i}")
}

fn dlq(i: usize) -> String {
    format!("bench.alert.dlq.{i}")
}

/// Runs the benchmark and prints p50/p99.
pub async fn run(args: AlertArgs, repo: &Path) -> anyhow::Result<()> {
    let bin = args
        .flowscope_bin
        .clone()
        .unwrap_or_else(|| crate::rabbit::flowscope::default_bin(repo));
    let node = BenchNode::start(repo).await?;
    let result = run_with_node(&args, &node, &bin).await;
    node.mgmt
        .delete(&format!("vhosts/{}", encode(VHOST)))
        .await
        .ok();
    node.finish(args.keep_node).await?;
    report(&result?)
}

async fn run_with_node(args: &AlertArgs, node: &BenchNode, bin: &Path) -> anyhow::Result<Vec<f64>> {
    node.mgmt.fresh_vhost(VHOST).await?;
    let publisher = PacedPublisher::connect(&node.vhost_url(VHOST), "bench-alert-service").await?;
    declare_topology(&publisher, args.samples).await?;

    let calls: Calls = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    let received = calls.clone();
    let app = Router::new().route(
        "/hook",
        post(move |body: axum::Json<Value>| async move {
            received
                .lock()
                .expect("calls lock")
                .push((wall_ms(), body.0));
            "ok"
        }),
    );
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let dir = std::env::temp_dir().join(format!("flowscope-bench-alert-{}", std::process::id()));
    let extra = [("FLOWSCOPE_ALERTS_WEBHOOKS", format!("[\"{hook}\"]"))];
    let flowscope = serve(bin, node, VHOST, args.listen, &dir, &extra).await?;
    let result = async {
        wait_until_dlqs_known(args, args.samples).await?;
        let mut latencies = Vec::new();
        for i in 0..args.samples {
            latencies.push(sample(&publisher, &calls, i).await?);
            let pause = rand::rng().random_range(500..1500);
            tokio::time::sleep(Duration::from_millis(pause)).await;
        }
        anyhow::Ok(latencies)
    }
    .await;
    flowscope.stop().await?;
    server.abort();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn declare_topology(publisher: &PacedPublisher, n: usize) -> anyhow::Result<()> {
    let channel = publisher.channel();
    channel
        .exchange_declare(
            DLX.into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    for i in 0..n {
        declare_queue(channel, &dlq(i), FieldTable::default()).await?;
        channel
            .queue_bind(
                dlq(i).as_str().into(),
                DLX.into(),
                dlq(i).as_str().into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DLX.into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(dlq(i).as_str().into()),
        );
        declare_queue(channel, &source(i), args).await?;
    }
    Ok(())
}

/// Waits (at most 60 s) until flowscope lists every DLQ as a dead-letter queue: its topology
/// poll (every 5 s) tells it which queues are DLQs.
async fn wait_until_dlqs_known(args: &AlertArgs, n: usize) -> anyhow::Result<()> {
    let client = reqwest::Client::new();
    let url = format!("http://{}/api/queues", args.listen);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let queues: Value = client.get(&url).send().await?.json().await?;
        let known = queues
            .as_array()
            .map(|qs| {
                qs.iter()
                    .filter(|q| q["is_dead_letter_queue"] == Value::Bool(true))
                    .count()
            })
            .unwrap_or(0);
        if known >= n {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("flowscope knows {known} of {n} dead-letter queues after 60 s");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One dead-lettering into DLQ `i`; the latency to its webhook call in milliseconds.
async fn sample(publisher: &PacedPublisher, calls: &Calls, i: usize) -> anyhow::Result<f64> {
    let channel = publisher.channel();
    publisher
        .publish_confirmed(
            &source(i),
            b"{\"order_id\":\"bench\"}",
            BasicProperties::default(),
        )
        .await?;
    let message = channel
        .basic_get(source(i).as_str().into(), BasicGetOptions::default())
        .await?
        .with_context(|| format!("{} is empty right after a confirmed publish", source(i)))?;
    let rejected_ms = wall_ms();
    channel
        .basic_reject(
            message.delivery.delivery_tag,
            BasicRejectOptions { requeue: false },
        )
        .await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let name = dlq(i);
    loop {
        let hit = calls
            .lock()
            .expect("calls lock")
            .iter()
            .find(|(_, body)| body["subject"] == name.as_str() && body["state"] == "firing")
            .map(|(at, _)| *at);
        if let Some(at) = hit {
            let latency = at - rejected_ms;
            eprintln!("alert: sample {}: {latency:.0} ms", i + 1);
            return Ok(latency);
        }
        if Instant::now() > deadline {
            bail!("no firing webhook call for {name} within 30 s of the dead-lettering");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
        * 1000.0
}

fn report(latencies: &[f64]) -> anyhow::Result<()> {
    println!(
        "\n### Alert latency: dead-lettering → webhook call ({} samples)\n",
        latencies.len()
    );
    let row = |metric: &str, value: f64| Row {
        benchmark: "alert latency (dlq-growth)".into(),
        metric: metric.into(),
        unit: "ms".into(),
        peer: None,
        flowscope: value,
        goal: "≤ 2000 ms".into(),
    };
    print_rows(&[
        row("p50", quantile(latencies, 0.5)),
        row("p99", quantile(latencies, 0.99)),
        row("max", latencies.iter().copied().fold(f64::NAN, f64::max)),
    ])?;
    let p99 = quantile(latencies, 0.99);
    println!(
        "\ngoal: p99 {p99:.0} ms ≤ 2000 ms: {}",
        if p99 <= 2000.0 { "met" } else { "MISSED" }
    );
    Ok(())
}
