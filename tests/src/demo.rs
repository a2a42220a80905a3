//! `flowscope demo` as a user runs it: one real process (the server and the
//! five shop services under it) on free ports, in a test vhost.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::broker::TestVhost;
use crate::shop::{free_port, workspace_binary};

/// A running `flowscope demo`, killed (with its scratch directory removed) on drop.
#[derive(Debug)]
pub struct Demo {
    pub child: Child,
    /// The server's base URL, `http://127.0.0.1:<port>`.
    pub base: String,
    /// The scratch directory it runs in (its data, the shop's databases).
    pub dir: PathBuf,
}

impl Demo {
    /// `flowscope demo <load_args>` on free ports in `vhost`, from a scratch
    /// directory; `env` is added to its environment (e.g. the UI's assets dir).
    pub fn start(vhost: &TestVhost, load_args: &[&str], env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("flowscope-demo-{}", vhost.name));
        std::fs::create_dir_all(&dir).unwrap();
        let port = || free_port().unwrap();
        let (listen, grpc, http, order) = (port(), port(), port(), port());
        let child = Command::new(workspace_binary(
            "flowscope",
            "FLOWSCOPE_BIN",
            "flowscope-server",
        ))
        .current_dir(&dir)
        .args(["--vhost", &vhost.name])
        .args(["--otlp-grpc-addr", &format!("127.0.0.1:{grpc}")])
        .args(["--otlp-http-addr", &format!("127.0.0.1:{http}")])
        .arg("demo")
        .args(load_args)
        .args(["--order-addr", &format!("127.0.0.1:{order}")])
        // The harness's own variables are not settings: flowscope refuses
        // unknown `FLOWSCOPE_*` variables.
        .env_remove("FLOWSCOPE_BIN")
        .env_remove("FLOWSCOPE_ARTIFACTS_DIR")
        .env("FLOWSCOPE_SERVER_LISTEN", format!("127.0.0.1:{listen}"))
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
        Self {
            child,
            base: format!("http://127.0.0.1:{listen}"),
            dir,
        }
    }

    /// Waits until the server answers `GET /` (it starts after checking the broker).
    pub async fn wait_until_serving(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let http = reqwest::Client::new();
        loop {
            if let Some(status) = self.child.try_wait()? {
                anyhow::bail!(
                    "flowscope demo exited with {status} before serving (its log is above)"
                );
            }
            let answer = http
                .get(format!("{}/", self.base))
                .timeout(Duration::from_secs(2))
                .send()
                .await;
            if answer.is_ok_and(|r| r.status().is_success()) {
                return Ok(());
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "flowscope demo did not serve {} within {timeout:?}",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Ctrl-C, then waits up to `timeout` for it to exit.
    pub async fn interrupt(&mut self, timeout: Duration) -> anyhow::Result<ExitStatus> {
        kill(Pid::from_raw(self.child.id() as i32), Signal::SIGINT)?;
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            anyhow::ensure!(
                started.elapsed() < timeout,
                "flowscope demo did not stop within {timeout:?} of Ctrl-C"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
