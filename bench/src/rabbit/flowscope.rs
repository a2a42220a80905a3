//! `flowscope` as a child process of the benchmark: killed when dropped, stopped with SIGTERM
//! (bounded) when asked; its stderr kept (the last lines) to wait for a log line and to explain
//! a failure; its stdout optionally counted line by line (`flowscope tap` prints one line per
//! observation).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

/// stderr lines kept for diagnostics.
const KEPT_LINES: usize = 200;

/// The release binary: next to this benchmark's own executable (the same target directory),
/// else `$CARGO_TARGET_DIR/release/flowscope`, else `target/release/flowscope`.
pub fn default_bin(repo: &Path) -> PathBuf {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("flowscope")))
        .filter(|bin| bin.exists());
    if let Some(bin) = beside {
        return bin;
    }
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo.join("target"))
        .join("release/flowscope")
}

/// A running `flowscope`.
#[derive(Debug)]
pub struct FlowscopeProcess {
    child: Child,
    pub pid: u32,
    log: Arc<Mutex<Vec<String>>>,
    /// Lines written to stdout so far (when counted).
    pub stdout_lines: Arc<AtomicU64>,
}

impl FlowscopeProcess {
    /// Spawns `bin args…` with `envs`; counts stdout lines when `count_stdout`, else discards stdout.
    pub fn spawn(
        bin: &Path,
        args: &[&str],
        envs: &[(&str, String)],
        count_stdout: bool,
    ) -> anyhow::Result<Self> {
        if !bin.exists() {
            bail!(
                "{} not found; build it with `cargo build --release -p flowscope-server` or pass --flowscope-bin",
                bin.display()
            );
        }
        let mut command = Command::new(bin);
        command
            .args(args)
            .env("FLOWSCOPE_LOG", "info,lapin=off")
            .stdin(Stdio::null())
            .stdout(if count_stdout {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (key, value) in envs {
            command.env(key, value);
        }
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("flowscope exited at once")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let kept = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let mut kept = kept.lock().expect("log lock");
                if kept.len() == KEPT_LINES {
                    kept.remove(0);
                }
                kept.push(line);
            }
        });
        let stdout_lines = Arc::new(AtomicU64::new(0));
        if let Some(mut stdout) = child.stdout.take() {
            let counter = stdout_lines.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 1 << 16];
                while let Ok(n) = stdout.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    let lines = buf[..n].iter().filter(|b| **b == b'\n').count();
                    counter.fetch_add(lines as u64, Ordering::Relaxed);
                }
            });
        }
        Ok(Self {
            child,
            pid,
            log,
            stdout_lines,
        })
    }

    /// Waits until a stderr line contains `needle`, at most `limit`.
    pub async fn wait_for_log(&mut self, needle: &str, limit: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.log_contains(needle) {
                return Ok(());
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("flowscope exited ({status}):\n{}", self.last_log(20));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!(
            "flowscope did not log {needle:?} within {limit:?}:\n{}",
            self.last_log(20)
        )
    }

    pub fn log_contains(&self, needle: &str) -> bool {
        self.log
            .lock()
            .expect("log lock")
            .iter()
            .any(|l| l.contains(needle))
    }

    /// The last `n` stderr lines.
    pub fn last_log(&self, n: usize) -> String {
        let log = self.log.lock().expect("log lock");
        log[log.len().saturating_sub(n)..].join("\n")
    }

    pub fn lines(&self) -> u64 {
        self.stdout_lines.load(Ordering::Relaxed)
    }

    /// SIGTERM, then up to 15 s for a clean exit, then SIGKILL.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        use nix::sys::signal::{Signal, kill};
        use nix::unistd::Pid;
        if self.child.try_wait()?.is_none() {
            let _ = kill(Pid::from_raw(self.pid as i32), Signal::SIGTERM);
            if tokio::time::timeout(Duration::from_secs(15), self.child.wait())
                .await
                .is_err()
            {
                self.child.kill().await?;
            }
        }
        Ok(())
    }
}

/// `flowscope serve` against the private node, watching `vhost`, listening on `listen`,
/// with its store and audit log under `dir` (created), the UI from `<repo>/dist`, OTLP off;
/// `extra` adds settings (`FLOWSCOPE_…` variables). Waits until `/healthz` answers.
pub async fn serve(
    bin: &Path,
    node: &super::BenchNode,
    vhost: &str,
    listen: std::net::SocketAddr,
    dir: &Path,
    extra: &[(&str, String)],
) -> anyhow::Result<FlowscopeProcess> {
    std::fs::create_dir_all(dir)?;
    let mut envs = vec![
        ("FLOWSCOPE_CONFIG", "/dev/null".to_owned()),
        ("FLOWSCOPE_SERVER_LISTEN", listen.to_string()),
        (
            "FLOWSCOPE_SERVER_ASSETS_DIR",
            super::repo_root().join("dist").display().to_string(),
        ),
        (
            "FLOWSCOPE_SERVER_AUDIT_FILE",
            dir.join("audit.log").display().to_string(),
        ),
        (
            "FLOWSCOPE_STORE_URL",
            format!("sqlite://{}", dir.join("flowscope.db").display()),
        ),
    ];
    envs.extend(extra.iter().cloned());
    let args = [
        "serve",
        "--no-otlp",
        "--amqp-url",
        &node.amqp_url,
        "--management-url",
        &node.mgmt.base,
        "--vhost",
        vhost,
    ];
    let mut process = FlowscopeProcess::spawn(bin, &args, &envs, false)?;
    process
        .wait_for_log("flowscope listening", Duration::from_secs(60))
        .await?;
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ok = client
            .get(format!("http://{listen}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success());
        if ok {
            return Ok(process);
        }
        if Instant::now() > deadline {
            bail!(
                "flowscope serve did not answer /healthz:\n{}",
                process.last_log(20)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
