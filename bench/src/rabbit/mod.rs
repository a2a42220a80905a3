//! Fixtures of the broker benchmarks (`tap`, `freshness`, `alert`).
//!
//! - [`BenchNode`]: the private RabbitMQ node of `scripts/bench-rabbitmq` (AMQP 5673,
//!   management 15673, plugins `rabbitmq_management` and `rabbitmq_tracing`), so the shared
//!   node on 5672/15672 is never touched; its `beam.smp` pid gives the broker's CPU.
//! - [`Mgmt`]: the few management API calls the benchmarks make.
//! - [`publish`]: a paced publisher (publisher confirms, a bounded window of them) and a
//!   consumer that drains a queue.
//! - [`flowscope`]: `flowscope tap` / `flowscope serve` as child processes, killed on drop.

pub mod flowscope;
pub mod publish;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::Value;

/// AMQP port of the private node (`scripts/bench-rabbitmq`).
pub const BENCH_AMQP_PORT: u16 = 5673;
/// Management port of the private node.
pub const BENCH_MGMT_PORT: u16 = 15673;
/// Where `scripts/bench-rabbitmq` keeps the node's files unless `BENCH_RABBITMQ_DIR` says otherwise.
pub const DEFAULT_NODE_DIR: &str = "/var/tmp/flowscope-bench-rabbitmq";

/// The private RabbitMQ node, started by `scripts/bench-rabbitmq start` if it was not running;
/// [`BenchNode::finish`] stops it again when this process started it (unless kept).
#[derive(Debug)]
pub struct BenchNode {
    /// `amqp://guest:guest@127.0.0.1:5673` (no vhost).
    pub amqp_url: String,
    pub mgmt: Mgmt,
    /// Where the node keeps its files (traces of the tracing plugin in `traces/`).
    pub dir: PathBuf,
    script: PathBuf,
    started_here: bool,
}

impl BenchNode {
    /// Starts the node unless it already answers.
    pub async fn start(repo: &Path) -> anyhow::Result<Self> {
        let script = repo.join("scripts/bench-rabbitmq");
        let was_running = run_script(&script, "status").await.is_ok();
        if !was_running {
            run_script(&script, "start").await?;
        }
        let dir = std::env::var_os("BENCH_RABBITMQ_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(DEFAULT_NODE_DIR));
        Ok(Self {
            amqp_url: format!("amqp://guest:guest@127.0.0.1:{BENCH_AMQP_PORT}"),
            mgmt: Mgmt::new(&format!("http://127.0.0.1:{BENCH_MGMT_PORT}")),
            dir,
            script,
            started_here: !was_running,
        })
    }

    /// The AMQP URL of a vhost on the node.
    pub fn vhost_url(&self, vhost: &str) -> String {
        format!("{}/{}", self.amqp_url, encode(vhost))
    }

    /// The node's `beam.smp` pid, from the pid file the node writes.
    pub fn pid(&self) -> anyhow::Result<u32> {
        let path = self.dir.join("node.pid");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}; is the bench node up?", path.display()))?;
        Ok(text.trim().parse()?)
    }

    /// Stops the node if this process started it and `keep` is false.
    pub async fn finish(self, keep: bool) -> anyhow::Result<()> {
        if self.started_here && !keep {
            run_script(&self.script, "stop").await?;
        }
        Ok(())
    }
}

async fn run_script(script: &Path, command: &str) -> anyhow::Result<()> {
    let status = tokio::time::timeout(
        Duration::from_secs(120),
        tokio::process::Command::new(script)
            .arg(command)
            .kill_on_drop(true)
            .status(),
    )
    .await
    .with_context(|| format!("{} {command} took over 120 s", script.display()))?
    .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} {command} failed ({status})", script.display());
    }
    Ok(())
}

/// A vhost or queue name as one URL path segment.
pub fn encode(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The management API of the private node (guest/guest).
#[derive(Debug, Clone)]
pub struct Mgmt {
    client: reqwest::Client,
    /// `http://127.0.0.1:15673`.
    pub base: String,
}

impl Mgmt {
    pub fn new(base: &str) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("an HTTP client without TLS builds");
        Self {
            client,
            base: base.trim_end_matches('/').to_owned(),
        }
    }

    /// `PUT /api/<path>` with a JSON body.
    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<()> {
        let response = self
            .client
            .put(format!("{}/api/{path}", self.base))
            .basic_auth("guest", Some("guest"))
            .json(body)
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            bail!("PUT /api/{path}: HTTP {status} {text}");
        }
        Ok(())
    }

    /// `DELETE /api/<path>`; a 404 is fine (already gone).
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
        let response = self
            .client
            .delete(format!("{}/api/{path}", self.base))
            .basic_auth("guest", Some("guest"))
            .send()
            .await?;
        let status = response.status();
        if !status.is_success() && status != reqwest::StatusCode::NOT_FOUND {
            bail!("DELETE /api/{path}: HTTP {status}");
        }
        Ok(())
    }

    /// Turns the firehose of `vhost` on or off.
    pub async fn set_tracing(&self, vhost: &str, on: bool) -> anyhow::Result<()> {
        self.put(
            &format!("vhosts/{}", encode(vhost)),
            &serde_json::json!({ "tracing": on }),
        )
        .await
    }

    /// Creates `vhost` afresh (deleting it first: its queues go with it).
    pub async fn fresh_vhost(&self, vhost: &str) -> anyhow::Result<()> {
        self.delete(&format!("vhosts/{}", encode(vhost))).await?;
        self.put(&format!("vhosts/{}", encode(vhost)), &serde_json::json!({}))
            .await?;
        self.put(
            &format!("permissions/{}/guest", encode(vhost)),
            &serde_json::json!({ "configure": ".*", "write": ".*", "read": ".*" }),
        )
        .await
    }
}

/// The repository root (benchmarks run scripts and write docs there).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench/ is inside the repository")
        .to_path_buf()
}

/// Runs a broker benchmark on a multi-threaded tokio runtime.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(
    future: F,
) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(future)
}
