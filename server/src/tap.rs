//! `flowscope tap`: the collectors' observations as JSON lines on stdout.

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;

use axum::Router;
use axum::routing::get;
use flowscope_model::Observation;

use crate::collect::Collectors;
use crate::config::Config;

/// Options of `flowscope tap`.
#[derive(Debug, Clone, clap::Args)]
pub struct TapArgs {
    /// Print only these observation types (comma-separated): publish, deliver,
    /// dead_letter, span, queue_sample, topology.
    #[arg(long, value_delimiter = ',', value_parser = ["publish", "deliver", "dead_letter", "span", "queue_sample", "topology"])]
    pub only: Vec<String>,

    /// Serve flowscope's own counters (Prometheus format) at http://<addr>/metrics.
    #[arg(long)]
    pub metrics_addr: Option<SocketAddr>,
}

/// Runs the collectors and prints what they see until Ctrl-C or SIGTERM.
pub async fn run(config: Config, args: TapArgs) -> anyhow::Result<()> {
    let (collectors, mut observations) = Collectors::start(&config).await?;
    if let Some((grpc, http)) = collectors.otlp_addrs {
        tracing::info!(%grpc, %http, "OTLP receiver listening");
    }
    if let Some(addr) = args.metrics_addr {
        let metrics = collectors.metrics.clone();
        let app = Router::new().route("/metrics", get(move || async move { metrics.render() }));
        let listener = tokio::net::TcpListener::bind(addr).await?;
        tracing::info!(addr = %listener.local_addr()?, "metrics at /metrics");
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let only: HashSet<String> = args.only.into_iter().collect();
    let shutdown = crate::signals::shutdown_on_signal();
    let stop = shutdown.clone();
    let stopping = tokio::spawn(async move {
        stop.cancelled().await;
        collectors.stop().await;
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    while let Some(observation) = observations.recv().await {
        if only.is_empty() || only.contains(kind(&observation)) {
            serde_json::to_writer(&mut out, &observation)?;
            out.write_all(b"\n")?;
        }
        if observations.is_empty() {
            // A reader that went away (`| head`) ends the tap quietly.
            if out.flush().is_err() {
                break;
            }
        }
    }
    let _ = out.flush();
    shutdown.cancel();
    stopping.await?;
    Ok(())
}

fn kind(observation: &Observation) -> &'static str {
    match observation {
        Observation::Publish(_) => "publish",
        Observation::Deliver(_) => "deliver",
        Observation::DeadLetter(_) => "dead_letter",
        Observation::Span(_) => "span",
        Observation::QueueSample(_) => "queue_sample",
        Observation::Topology(_) => "topology",
    }
}
