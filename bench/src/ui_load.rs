//! `flowscope-bench ui-load`: the dashboard under load in headless Chromium.
//!
//! Declares `--queues` queues on the private broker node (`scripts/bench-rabbitmq`), publishes
//! one `OrderPlaced` per order for `--flows` orders (left in their queues, so every flow stays
//! live and every queue has a depth), then keeps publishing the next events of random orders
//! into random queues so that flows and queue depths change all the time. `flowscope serve`
//! taps the node; Chromium opens each view and records, over `--secs` seconds of steady state,
//! the long tasks (> 50 ms, `PerformanceObserver` of type `longtask`), the DOM size and how
//! many live-stream messages the page received per second.
//!
//! There is no peer here: the figures are flowscope's own, against the issue's budget
//! (no long task, < 1,400 DOM nodes, at 10 updates/s).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use flowscope_tests::browser::{Browser, built_ui};
use flowscope_tests::shop::free_port;
use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::Value;

use crate::measure::{Row, median, print_rows};

/// Options of `flowscope-bench ui-load`.
#[derive(Debug, Clone, clap::Args)]
pub struct UiLoadArgs {
    /// Live flows (orders) to create.
    #[arg(long, default_value_t = 1000)]
    flows: usize,
    /// Queues to declare.
    #[arg(long, default_value_t = 200)]
    queues: usize,
    /// Messages per second published while the page is measured (each one changes a flow and
    /// a queue; the server coalesces the live stream to at most 10 updates/s).
    #[arg(long, default_value_t = 50)]
    publish_rate: u32,
    /// Measured seconds per view.
    #[arg(long, default_value_t = 20)]
    secs: u64,
    /// AMQP URL of the private node (no vhost).
    #[arg(long, default_value = "amqp://guest:guest@127.0.0.1:5673")]
    amqp_url: String,
    /// Management API of the private node.
    #[arg(long, default_value = "http://127.0.0.1:15673")]
    management_url: String,
    /// The `flowscope` binary (default: the release build in the target dir).
    #[arg(long)]
    flowscope: Option<PathBuf>,
    /// The built UI to serve (default: the workspace's `dist/`): lets a
    /// before/after comparison keep a copy of the old build elsewhere.
    #[arg(long)]
    ui_dir: Option<PathBuf>,
}

/// The vhost this benchmark creates on the private node, and deletes after.
const VHOST: &str = "flowscope-ui-load";
/// The views measured, by URL path.
const VIEWS: [&str; 6] = ["/", "/flows", "/queues", "/process", "/stuck", "/alerts"];
/// Events published after `OrderPlaced`, in order (the flows never finish: they stay live).
const NEXT_EVENTS: [&str; 3] = ["PaymentProcessed", "InventoryReserved", "ShipmentScheduled"];

/// Runs the benchmark and prints one row per view and figure.
pub async fn run(args: UiLoadArgs) -> anyhow::Result<()> {
    let dist = match &args.ui_dir {
        Some(dir) => {
            anyhow::ensure!(
                dir.join("index.html").exists() && dir.join("pkg").is_dir(),
                "--ui-dir {}: no index.html and pkg/ there; point it at a scripts/build-ui output",
                dir.display()
            );
            dir.clone()
        }
        None => built_ui()?,
    };
    let mgmt = Mgmt::new(&args.management_url);
    mgmt.check().await?;
    mgmt.create_vhost().await?;
    let result = measure(&args, dist).await;
    if let Err(err) = mgmt.delete_vhost().await {
        eprintln!("warning: could not delete vhost {VHOST}: {err:#}");
    }
    print_rows(&result?)
}

async fn measure(args: &UiLoadArgs, dist: PathBuf) -> anyhow::Result<Vec<Row>> {
    let amqp = format!("{}/{VHOST}", args.amqp_url.trim_end_matches('/'));
    let conn = Connection::connect_uri(
        amqp.parse().map_err(anyhow::Error::msg)?,
        ConnectionProperties::default(),
    )
    .await
    .with_context(|| {
        format!(
            "connecting to {}; is the private node up (scripts/bench-rabbitmq start)?",
            args.amqp_url
        )
    })?;
    let channel = conn.create_channel().await?;
    let queues: Vec<String> = (0..args.queues).map(|i| format!("ui.q{i:03}")).collect();
    let mut bounded = FieldTable::default();
    bounded.insert("x-max-length".into(), AMQPValue::LongInt(10_000));
    for queue in &queues {
        channel
            .queue_declare(
                queue.as_str().into(),
                QueueDeclareOptions::default(),
                bounded.clone(),
            )
            .await?;
    }
    let server = Server::start(args, dist).await?;
    let publisher = Publisher {
        channel,
        queues: Arc::new(queues),
    };
    for order in 0..args.flows {
        publisher.publish(order, "OrderPlaced", order).await?;
    }
    server.wait_for_flows(args.flows).await?;

    // Keep the system moving while the browser measures: a paced publisher on its own task.
    let stop = Arc::new(AtomicBool::new(false));
    let pacer = {
        let stop = stop.clone();
        let (flows, rate) = (args.flows, args.publish_rate.max(1));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
            let mut n: usize = 0;
            while !stop.load(Ordering::Relaxed) && n < 10_000_000 {
                tick.tick().await;
                // A cheap deterministic spread over orders, events and queues.
                let order = (n * 7919) % flows;
                let kind = NEXT_EVENTS[(n / flows) % NEXT_EVENTS.len()];
                publisher.publish(order, kind, n * 31).await?;
                n += 1;
            }
            anyhow::Ok(n)
        })
    };

    let browser = Browser::start().await?;
    let mut rows = Vec::new();
    let result = async {
        for view in VIEWS {
            let figures = measure_view(&browser, &server.base, view, args.secs).await?;
            eprintln!("{view}: {figures:?}");
            rows.extend(figures.rows(view));
        }
        anyhow::Ok(())
    }
    .await;
    if result.is_err() {
        browser.report_failure("ui-load").await;
    }
    browser.close().await;
    stop.store(true, Ordering::Relaxed);
    let published = pacer.await??;
    eprintln!("published {published} update messages while measuring");
    result?;
    Ok(rows)
}

/// What one view cost over its measured window.
#[derive(Debug, Default)]
struct ViewFigures {
    long_tasks: f64,
    max_task_ms: f64,
    blocking_ms: f64,
    dom_nodes: f64,
    updates_per_sec: f64,
    rows_shown: f64,
    stall_p99_ms: f64,
    stall_max_ms: f64,
}

impl ViewFigures {
    fn rows(&self, view: &str) -> Vec<Row> {
        let row = |metric: &str, unit: &str, value: f64, goal: &str| Row {
            benchmark: format!("UI {view}"),
            metric: metric.into(),
            unit: unit.into(),
            peer: None,
            flowscope: value,
            goal: goal.into(),
        };
        vec![
            row(
                "live updates received",
                "/s",
                self.updates_per_sec,
                "10/s offered",
            ),
            row("long tasks (> 50 ms)", "", self.long_tasks, "0"),
            row("longest task", "ms", self.max_task_ms, "≤ 50 ms"),
            row("total blocking time", "ms", self.blocking_ms, "—"),
            row(
                "main-thread stall p99 (20 ms timer lateness)",
                "ms",
                self.stall_p99_ms,
                "—",
            ),
            row("main-thread stall max", "ms", self.stall_max_ms, "< 50 ms"),
            row("DOM nodes (median)", "", self.dom_nodes, "< 1,400"),
            row("rows or nodes drawn", "", self.rows_shown, "—"),
        ]
    }
}

/// Installs the observers once the page has settled, waits `secs`, then reads them.
const OBSERVE_JS: &str = r#"
window.__bench = { tasks: [], dom: [], lag: [], updates: 0, started: performance.now(), calibration: null, seen: false };
new PerformanceObserver(list => {
  for (const e of list.getEntries()) {
    const c = window.__bench.calibration;
    if (c && e.startTime >= c[0] - 1 && e.startTime <= c[1]) { window.__bench.seen = true; continue; }
    window.__bench.tasks.push(e.duration);
  }
}).observe({ type: 'longtask' });
// One deliberate 80 ms task: proves the observer sees long tasks here, and is not counted.
setTimeout(() => {
  const t = performance.now();
  window.__bench.calibration = [t, t + 1000];
  while (performance.now() - t < 80) {}
}, 0);
const es = new EventSource('/api/stream');
es.onmessage = () => { window.__bench.updates += 1; };
es.addEventListener('update', () => { window.__bench.updates += 1; });
window.__bench.es = es;
window.__bench.timer = setInterval(() => {
  window.__bench.dom.push(document.getElementsByTagName('*').length);
}, 1000);
// Main-thread stalls below the long-task threshold: how late a 20 ms timer fires
// (the calibration task excluded).
let last = performance.now();
window.__bench.lagTimer = setInterval(() => {
  const now = performance.now();
  const c = window.__bench.calibration;
  if (!c || now > c[1] + 100) { window.__bench.lag.push(Math.max(0, now - last - 20)); }
  last = now;
}, 20);
return true;
"#;

const READ_JS: &str = r#"
const b = window.__bench;
clearInterval(b.timer);
clearInterval(b.lagTimer);
b.es.close();
const secs = (performance.now() - b.started) / 1000;
const rows = document.querySelectorAll('tr, li, [data-node], g.node').length;
return { tasks: b.tasks, dom: b.dom, lag: b.lag, updates: b.updates, secs, rows, seen: b.seen };
"#;

async fn measure_view(
    browser: &Browser,
    base: &str,
    view: &str,
    secs: u64,
) -> anyhow::Result<ViewFigures> {
    browser.goto(&format!("{base}{view}")).await?;
    browser.wait_css("main", Duration::from_secs(20)).await?;
    // Let the snapshot land and the first render finish: the steady state is what is measured.
    tokio::time::sleep(Duration::from_secs(3)).await;
    browser.js(OBSERVE_JS, vec![]).await?;
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let read = browser.js(READ_JS, vec![]).await?;
    let nums = |key: &str| -> Vec<f64> {
        read[key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_f64)
            .collect()
    };
    anyhow::ensure!(
        read["seen"].as_bool() == Some(true),
        "the browser did not report a deliberate 80 ms task: its long-task observer does not work here, so no figure would mean anything"
    );
    let tasks = nums("tasks");
    let dom = nums("dom");
    let mut lag = nums("lag");
    lag.sort_by(f64::total_cmp);
    let p99 = lag
        .get((lag.len() as f64 * 0.99) as usize)
        .or(lag.last())
        .copied()
        .unwrap_or(0.0);
    let elapsed = read["secs"].as_f64().unwrap_or(secs as f64).max(0.001);
    Ok(ViewFigures {
        long_tasks: tasks.len() as f64,
        max_task_ms: tasks.iter().copied().fold(0.0, f64::max),
        blocking_ms: tasks
            .iter()
            .map(|d| (d - 50.0).max(0.0))
            .fold(0.0, |a, b| a + b),
        dom_nodes: median(&dom),
        updates_per_sec: read["updates"].as_f64().unwrap_or(0.0) / elapsed,
        rows_shown: read["rows"].as_f64().unwrap_or(0.0),
        stall_p99_ms: p99,
        stall_max_ms: lag.last().copied().unwrap_or(0.0),
    })
}

/// `flowscope serve` on free ports, tapping the private node's bench vhost; killed on drop.
struct Server {
    child: Child,
    base: String,
    _dir: TempDir,
}

impl Server {
    async fn start(args: &UiLoadArgs, dist: PathBuf) -> anyhow::Result<Self> {
        let dir = TempDir::new("flowscope-ui-load")?;
        let config = dir.0.join("flowscope.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nassets_dir = {dist:?}\naudit_file = {audit:?}\n\
                 [store]\nurl = \"sqlite://{db}\"\n\
                 [correlation]\nterminal_events = [\"OrderCompleted\"]\n\
                 [[correlation.keys]]\nname = \"order_id\"\nfrom = \"json:/order_id\"\n",
                port = free_port()?,
                dist = dist.display().to_string(),
                audit = dir.0.join("audit.log").display().to_string(),
                db = dir.0.join("flowscope.db").display(),
            ),
        )?;
        let listen = std::fs::read_to_string(&config)?
            .lines()
            .find_map(|l| {
                l.strip_prefix("listen = \"")
                    .map(|s| s.trim_end_matches('"').to_string())
            })
            .context("listen address")?;
        let binary = args.flowscope.clone().unwrap_or_else(release_binary);
        let child = Command::new(&binary)
            .arg("--config")
            .arg(&config)
            .args([
                "--amqp-url",
                &args.amqp_url,
                "--management-url",
                &args.management_url,
            ])
            .args(["--vhost", VHOST, "--no-otlp"])
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| {
                format!(
                    "starting {}; build it with cargo build --release -p flowscope-server",
                    binary.display()
                )
            })?;
        let server = Self {
            child,
            base: format!("http://{listen}"),
            _dir: dir,
        };
        server.wait_ready().await?;
        Ok(server)
    }

    async fn wait_ready(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(resp) = reqwest::get(format!("{}/healthz", self.base)).await
                && resp.status().is_success()
            {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        anyhow::bail!("flowscope did not answer at {} within 30 s", self.base)
    }

    /// Waits until the server lists `n` flows (the tap has seen every `OrderPlaced`).
    async fn wait_for_flows(&self, n: usize) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = 0;
        while Instant::now() < deadline {
            let page: Value = reqwest::get(format!("{}/api/flows?limit=1", self.base))
                .await?
                .json()
                .await?;
            seen = page["total"].as_u64().unwrap_or(0) as usize;
            if seen >= n {
                eprintln!("{seen} live flows in flowscope");
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        anyhow::bail!("flowscope shows {seen} of {n} flows after 60 s")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A scratch directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("{prefix}-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        Ok(Self(dir))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The private node's management API: a vhost of our own with guest's permissions.
struct Mgmt {
    base: String,
    http: reqwest::Client,
}

impl Mgmt {
    fn new(base: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').into(),
            http: reqwest::Client::new(),
        }
    }

    async fn check(&self) -> anyhow::Result<()> {
        self.http
            .get(format!("{}/api/overview", self.base))
            .basic_auth("guest", Some("guest"))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| {
                format!(
                    "the management API at {} does not answer; run scripts/bench-rabbitmq start",
                    self.base
                )
            })?;
        Ok(())
    }

    async fn create_vhost(&self) -> anyhow::Result<()> {
        self.send(reqwest::Method::PUT, &format!("/api/vhosts/{VHOST}"), None)
            .await?;
        let all = serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"});
        self.send(
            reqwest::Method::PUT,
            &format!("/api/permissions/{VHOST}/guest"),
            Some(all),
        )
        .await
    }

    async fn delete_vhost(&self) -> anyhow::Result<()> {
        self.send(
            reqwest::Method::DELETE,
            &format!("/api/vhosts/{VHOST}"),
            None,
        )
        .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> anyhow::Result<()> {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .basic_auth("guest", Some("guest"));
        if let Some(body) = body {
            req = req.json(&body);
        }
        req.send()
            .await?
            .error_for_status()
            .with_context(|| format!("management API {path}"))?;
        Ok(())
    }
}

/// Publishes the shop-like events of the synthetic orders into the bench queues.
struct Publisher {
    channel: lapin::Channel,
    queues: Arc<Vec<String>>,
}

impl Publisher {
    async fn publish(&self, order: usize, kind: &str, queue: usize) -> anyhow::Result<()> {
        let queue = &self.queues[queue % self.queues.len()];
        let body = format!(r#"{{"order_id":"ui-{order:05}","kind":"{kind}"}}"#);
        let props = BasicProperties::default()
            .with_type(kind.into())
            .with_message_id(format!("ui-{order:05}-{kind}").into())
            .with_app_id("ui-load".into());
        self.channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions::default(),
                body.as_bytes(),
                props,
            )
            .await?;
        Ok(())
    }
}

/// The release build of `flowscope` in the cargo target dir.
fn release_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| flowscope_tests::browser::workspace_root().join("target"));
    target.join("release/flowscope")
}
