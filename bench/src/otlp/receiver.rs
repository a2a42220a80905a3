//! The receivers under test, started and stopped by the bench: rotel (blackhole
//! exporter) and `flowscope serve` (OTLP only, no broker collectors).
//!
//! Each runs in a fresh directory under the system's temp dir (flowscope's
//! `flowscope.toml`, its SQLite file, rotel's pid and log files), on free
//! loopback ports, optionally pinned to one core with `taskset -c`. A
//! [`Receiver`] kills its process when dropped and removes its directory.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

/// How long a receiver may take to open its ports.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a graceful stop may take before the process is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Which receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Rotel,
    Flowscope,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Rotel => "rotel",
            Side::Flowscope => "flowscope",
        }
    }
}

/// What flowscope stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Storage {
    /// `store.url = "none"`: correlation on, nothing written.
    Off,
    /// The default SQLite file, in the receiver's directory.
    Sqlite,
}

/// How to start a receiver.
#[derive(Debug, Clone)]
pub struct Spec {
    pub side: Side,
    /// The binary: `rotel-agent` or `flowscope`.
    pub program: PathBuf,
    /// Pin to this core (`taskset -c`), or run on every online core.
    pub core: Option<usize>,
    pub storage: Storage,
}

/// flowscope's counters, from its `/metrics`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub received: u64,
    pub dropped: u64,
    pub store_written: u64,
    pub store_dropped: u64,
}

/// A running receiver.
#[derive(Debug)]
pub struct Receiver {
    pub side: Side,
    pub pid: u32,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    /// flowscope's API (for `/metrics`).
    api: Option<SocketAddr>,
    dir: PathBuf,
    child: Option<Child>,
}

/// Starts tried when a port is taken between its pick and its use.
const START_TRIES: usize = 3;

/// A free loopback port (bound, read, released).
fn free_addr() -> anyhow::Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

impl Receiver {
    /// Starts the receiver and waits until its gRPC and HTTP ports answer.
    ///
    /// Free ports are found by binding and releasing them, so another
    /// process may take one before the receiver binds it: a start that
    /// fails on a port in use is tried again on new ports (3 tries).
    pub async fn start(spec: &Spec, run: usize) -> anyhow::Result<Self> {
        let mut tries = 1;
        loop {
            match Self::start_once(spec, run).await {
                Err(err) if tries < START_TRIES && format!("{err:#}").contains("in use") => {
                    eprintln!(
                        "  {} lost a port before binding it, trying new ports: {err:#}",
                        spec.side.name()
                    );
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    async fn start_once(spec: &Spec, run: usize) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "flowscope-bench-{}-{}-{run}",
            std::process::id(),
            spec.side.name()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let (grpc, http) = (free_addr()?, free_addr()?);
        // Unpinned means every core: the bench itself may be pinned, and a
        // child inherits its parent's cores.
        let cpus = match spec.core {
            Some(core) => core.to_string(),
            None => super::online_cpus()?,
        };
        let mut command = Command::new("taskset");
        command.arg("-c").arg(cpus).arg(&spec.program);
        let mut api = None;
        match spec.side {
            Side::Rotel => {
                command.args(["start", "--exporter", "blackhole"]);
                command.arg("--otlp-grpc-endpoint").arg(grpc.to_string());
                command.arg("--otlp-http-endpoint").arg(http.to_string());
                command.arg("--pid-file").arg(dir.join("rotel.pid"));
                command.arg("--log-file").arg(dir.join("rotel.log"));
            }
            Side::Flowscope => {
                let listen = free_addr()?;
                write_flowscope_config(&dir, listen, grpc, http, spec.storage)?;
                command.arg("serve");
                api = Some(listen);
            }
        }
        // flowscope refuses FLOWSCOPE_* variables that are not settings
        // (FLOWSCOPE_BENCH_JSON); the receiver gets only what is set here.
        for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("FLOWSCOPE_")) {
            command.env_remove(name);
        }
        if spec.side == Side::Flowscope {
            command.env("FLOWSCOPE_LOG", "warn");
        }
        let log = std::fs::File::create(dir.join("stderr.log"))?;
        let child = command
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", spec.program.display()))?;
        let pid = child.id().context("the receiver exited at once")?;
        let mut receiver = Receiver {
            side: spec.side,
            pid,
            grpc,
            http,
            api,
            dir,
            child: Some(child),
        };
        receiver.wait_ready().await?;
        Ok(receiver)
    }

    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut addrs = vec![self.grpc, self.http];
        addrs.extend(self.api);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!(
                    "{} exited ({status}) during start-up: {}",
                    self.side.name(),
                    self.stderr_tail()
                );
            }
            let mut all = true;
            for addr in &addrs {
                all &= tokio::net::TcpStream::connect(addr).await.is_ok();
            }
            if all {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!(
            "{} did not open its ports within {START_TIMEOUT:?}: {}",
            self.side.name(),
            self.stderr_tail()
        )
    }

    fn stderr_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("stderr.log")).unwrap_or_default();
        let start = text.len().saturating_sub(2000);
        text[text.floor_char_boundary(start)..].to_owned()
    }

    /// The receiver's directory (flowscope's store is `data/flowscope.db` in it).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// flowscope's counters (all zero for rotel, which has no `/metrics` here).
    pub async fn counters(&self) -> anyhow::Result<Counters> {
        let Some(api) = self.api else {
            return Ok(Counters::default());
        };
        let text = reqwest::get(format!("http://{api}/metrics"))
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(parse_counters(&text))
    }

    /// Stops gracefully (SIGTERM, flowscope flushes its store), killing it
    /// after [`STOP_TIMEOUT`].
    /// The directory stays until the receiver is dropped.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.pid)?);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
            Ok(status) => {
                status?;
            }
            Err(_) => {
                child.kill().await?;
                bail!(
                    "{} did not stop within {STOP_TIMEOUT:?}; killed",
                    self.side.name()
                );
            }
        }
        Ok(())
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn write_flowscope_config(
    dir: &Path,
    listen: SocketAddr,
    grpc: SocketAddr,
    http: SocketAddr,
    storage: Storage,
) -> anyhow::Result<()> {
    let store = match storage {
        Storage::Off => "none",
        Storage::Sqlite => "sqlite://data/flowscope.db",
    };
    let config = format!(
        "[server]\nlisten = \"{listen}\"\n\n\
         [firehose]\nenabled = false\n\n[management]\nenabled = false\n\n\
         [otlp]\ngrpc_addr = \"{grpc}\"\nhttp_addr = \"{http}\"\n\n\
         [store]\nurl = \"{store}\"\n\n\
         [[correlation.keys]]\nname = \"order_id\"\nfrom = \"attribute:shop.order_id\"\n"
    );
    std::fs::write(dir.join("flowscope.toml"), config)?;
    Ok(())
}

/// Reads the OTLP and store counters out of a Prometheus text page.
pub fn parse_counters(text: &str) -> Counters {
    let mut counters = Counters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<u64>() else {
            continue;
        };
        match name {
            "flowscope_observations_received_total{source=\"otlp\"}" => counters.received = value,
            "flowscope_observations_dropped_total{source=\"otlp\"}" => counters.dropped = value,
            n if n.starts_with("flowscope_store_rows_written_total{") => {
                counters.store_written += value
            }
            n if n.starts_with("flowscope_store_rows_dropped_total{") => {
                counters.store_dropped += value
            }
            _ => {}
        }
    }
    counters
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_from_the_metrics_page() {
        let page = "# TYPE flowscope_observations_received_total counter\n\
            flowscope_observations_received_total{source=\"firehose\"} 5\n\
            flowscope_observations_received_total{source=\"otlp\"} 1200\n\
            flowscope_observations_dropped_total{source=\"otlp\"} 100\n\
            flowscope_store_rows_written_total{source=\"sqlite\"} 1300\n";
        assert_eq!(
            parse_counters(page),
            Counters {
                received: 1200,
                dropped: 100,
                store_written: 1300,
                store_dropped: 0
            }
        );
    }
}
