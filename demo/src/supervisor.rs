//! `shop up`: the five services as child processes, plus the load generator.
//!
//! Each service is its own OS process in its own process group, so Ctrl-C
//! reaches only the supervisor, which then stops the services in order with
//! SIGTERM (killing any that has not exited within [`STOP_TIMEOUT`]). A service
//! that dies on its own is restarted after [`RESTART_DELAY`]. Output of every
//! child is prefixed with its name.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio_util::sync::CancellationToken;

use crate::config::ServiceArgs;
use crate::load::{self, LoadArgs, LoadControl, parse_duration, parse_rate};
use crate::runtime::shutdown_on_signal;
use crate::topology::Service;

/// How long a service may take to stop after SIGTERM.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Wait before restarting a service that exited on its own.
pub const RESTART_DELAY: Duration = Duration::from_secs(2);
/// How long to wait for the order API before giving up.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// Options of `shop up`.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    #[command(flatten)]
    pub service: ServiceArgs,

    /// Orders per second placed by the load generator (0.01 to 500).
    #[arg(long, default_value_t = 2.0, value_parser = parse_rate)]
    pub rate: f64,

    /// How long the load generator runs (at most 24h); the services keep running after it.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub duration: Duration,

    /// Start the services without the load generator.
    #[arg(long)]
    pub no_load: bool,
}

/// Runs the shop until Ctrl-C or SIGTERM.
pub async fn up(args: &UpArgs, exe_prefix: &[&str]) -> anyhow::Result<()> {
    run_shop(args, exe_prefix, shutdown_on_signal(), None).await
}

/// Runs the shop until `shutdown`, then stops every service. `exe_prefix`
/// is what this binary needs before a service name (`["shop"]` in `flowscope`).
///
/// With a `control`, the load generator always runs, at the control's rate
/// (which may be 0), until `shutdown`; `args.rate` and `args.no_load` are
/// then the caller's to turn into the control's first rate, and
/// `args.duration` sets the rate to 0 when it is over, unless it was changed.
pub async fn run_shop(
    args: &UpArgs,
    exe_prefix: &[&str],
    shutdown: CancellationToken,
    control: Option<LoadControl>,
) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let supervised: Vec<_> = Service::ALL
        .into_iter()
        .map(|service| {
            let child = ChildSpec {
                service,
                exe: exe.clone(),
                prefix: exe_prefix.iter().map(|s| s.to_string()).collect(),
                args: args.service.clone(),
            };
            tokio::spawn(child.supervise(shutdown.clone()))
        })
        .collect();

    let order_url = format!("http://{}", args.service.http_addr);
    let load = if args.no_load && control.is_none() {
        None
    } else {
        let load_args = LoadArgs {
            order_url: order_url.clone(),
            rate: args.rate,
            duration: args.duration,
        };
        let stop = shutdown.clone();
        Some(tokio::spawn(async move {
            if wait_ready(&load_args.order_url, &stop).await {
                eprintln!(
                    "shop is up: order API {}, RabbitMQ UI http://127.0.0.1:15672 (guest/guest); Ctrl-C stops everything",
                    load_args.order_url
                );
                let run = match control {
                    Some(control) => {
                        load::run_controlled(
                            &load_args.order_url,
                            control,
                            load_args.duration,
                            stop,
                        )
                        .await
                    }
                    None => load::run(&load_args, stop).await,
                };
                if let Err(err) = run {
                    tracing::error!(error = %err, "load generator failed");
                }
            }
        }))
    };
    for task in supervised {
        task.await?;
    }
    if let Some(load) = load {
        load.abort();
    }
    Ok(())
}

/// Polls the order API's health endpoint until it answers.
async fn wait_ready(order_url: &str, stop: &CancellationToken) -> bool {
    let client = reqwest::Client::new();
    let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
    while tokio::time::Instant::now() < deadline && !stop.is_cancelled() {
        if let Ok(resp) = client.get(format!("{order_url}/healthz")).send().await
            && resp.status().is_success()
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    tracing::error!(%order_url, "the order API did not come up; no load is generated");
    false
}

struct ChildSpec {
    service: Service,
    exe: PathBuf,
    prefix: Vec<String>,
    args: ServiceArgs,
}

impl ChildSpec {
    async fn supervise(self, shutdown: CancellationToken) {
        while !shutdown.is_cancelled() {
            let mut child = match self.spawn() {
                Ok(child) => child,
                Err(err) => {
                    tracing::error!(service = %self.service, error = %err, "cannot start service");
                    return;
                }
            };
            tokio::select! {
                status = child.wait() => {
                    tracing::error!(service = %self.service, ?status, restart_in_s = RESTART_DELAY.as_secs(), "service exited; restarting");
                    tokio::select! {
                        _ = tokio::time::sleep(RESTART_DELAY) => {}
                        _ = shutdown.cancelled() => {}
                    }
                }
                _ = shutdown.cancelled() => stop(self.service, &mut child).await,
            }
        }
    }

    fn spawn(&self) -> std::io::Result<Child> {
        let a = &self.args;
        let mut cmd = Command::new(&self.exe);
        cmd.args(&self.prefix)
            .arg(self.service.name())
            .env("SHOP_AMQP_URL", &a.amqp_url)
            .env("SHOP_DATA_DIR", &a.data_dir)
            .env("SHOP_PREFETCH", a.prefetch.to_string())
            .env("SHOP_MAX_ATTEMPTS", a.max_attempts.to_string())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", &a.otlp_endpoint)
            .env("SHOP_HTTP_ADDR", a.http_addr.to_string())
            .env(crate::runtime::EXIT_WITH_PARENT_ENV, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if a.no_traces {
            cmd.env("SHOP_NO_TRACES", "true");
        }
        let mut child = cmd.spawn()?;
        let name = self.service.name();
        if let Some(out) = child.stdout.take() {
            tokio::spawn(prefix_lines(name, BufReader::new(out)));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(prefix_lines(name, BufReader::new(err)));
        }
        Ok(child)
    }
}

async fn prefix_lines<R: tokio::io::AsyncRead + Unpin>(name: &'static str, reader: BufReader<R>) {
    let mut lines = reader.lines();
    while let Ok(Some(line)) = lines.next_line().await {
        eprintln!("{name:>12} | {line}");
    }
}

async fn stop(service: Service, child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
    match tokio::time::timeout(STOP_TIMEOUT, child.wait()).await {
        Ok(status) => tracing::info!(%service, ?status, "service stopped"),
        Err(_) => {
            tracing::warn!(%service, "service did not stop in time; killing it");
            let _ = child.kill().await;
        }
    }
}
