//! `flowscope serve`: collectors, correlator, store, alerts and the API in one process.
//!
//! Start-up order: open the store, replay its recent observations into the
//! correlator (a restart rebuilds the live state), start the engine, the
//! collectors and the HTTP server. Shutdown in reverse: the HTTP server and
//! the collectors stop, the engine drains the observation channel and hands
//! its last batch to the store writer, which flushes and ends.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use flowscope_model::now_unix_us;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::alerts::AlertEngine;
use crate::alerts::notify::Notifier;
use crate::api::{self, AppState, auth::Auth, demo::DemoShop};
use crate::audit::AuditLog;
use crate::collect::Collectors;
use crate::config::Config;
use crate::correlator::Correlator;
use crate::live::Live;
use crate::live::engine::Engine;
use crate::store::{Store, StoreWriter, WriterProgress};

/// Where the UI and API listen unless configured.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// Observations replayed into the correlator after a restart, at most.
const REPLAY_MAX: usize = 200_000;
/// How far back the replay reaches.
const REPLAY_WINDOW_SECS: i64 = 3600;
/// How long stopping the HTTP server and the collectors may take.
const STOP_INPUTS_TIMEOUT: Duration = Duration::from_secs(15);
/// At shutdown, what was accepted is written however long that takes, unless
/// the store writes nothing for this long (it is down or full).
const STORE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a shutdown that waits for the store says how much is left.
const DRAIN_REPORT_INTERVAL: Duration = Duration::from_secs(5);

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the UI, the API and the stream.
    pub listen: SocketAddr,
    /// Built UI assets to serve (index.html, pkg/…); none: the API only.
    pub assets_dir: Option<PathBuf>,
    /// File the audit log is appended to (JSON lines).
    pub audit_file: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("default address parses"),
            // Where scripts/build-ui writes the UI, relative to the repository root.
            assets_dir: Some("dist".into()),
            audit_file: Some(PathBuf::from("data/audit.log")),
        }
    }
}

/// The server, running.
#[derive(Debug)]
pub struct RunningServer {
    /// Where the HTTP server listens.
    pub addr: SocketAddr,
    /// The OTLP receiver's addresses (gRPC, HTTP), when it runs.
    pub otlp_addrs: Option<(SocketAddr, SocketAddr)>,
    pub state: AppState,
    collectors: Collectors,
    engine: JoinHandle<()>,
    writer: Option<(JoinHandle<()>, WriterProgress)>,
    http: JoinHandle<std::io::Result<()>>,
    http_stop: CancellationToken,
}

/// Starts everything `config` asks for; with a demo shop's AMQP URL, its
/// fault switches can be flipped through the API.
pub async fn start(config: Config, demo_amqp_url: Option<String>) -> anyhow::Result<RunningServer> {
    start_with_demo(config, demo_amqp_url.map(DemoShop::amqp_only)).await
}

/// Starts everything `config` asks for, beside the `demo` shop.
pub async fn start_with_demo(
    config: Config,
    demo: Option<DemoShop>,
) -> anyhow::Result<RunningServer> {
    let auth = Auth::load(&config.auth).map_err(anyhow::Error::msg)?;
    let mut correlator = Correlator::new(config.correlation.clone()).map_err(anyhow::Error::msg)?;
    let store = match config.store.url.as_str() {
        "" | "none" => None,
        _ => Some(Store::open(&config.store).await?),
    };
    if let Some(store) = &store {
        let since = now_unix_us() - REPLAY_WINDOW_SECS * 1_000_000;
        let replay = store.observations_since(since, REPLAY_MAX).await?;
        let n = replay.len();
        for obs in replay {
            correlator.ingest(obs);
        }
        let restored = correlator.take_changes(now_unix_us()).updated.len();
        tracing::info!(
            observations = n,
            flows = restored,
            "live state rebuilt from the store"
        );
    }
    let (collectors, observations) = Collectors::start(&config).await?;
    let metrics = collectors.metrics.clone();
    let live = Arc::new(RwLock::new(Live::new(
        correlator,
        AlertEngine::new(config.alerts.clone()),
        demo.is_some(),
    )));
    let (bus, _) = broadcast::channel(1024);
    let (writer_handle, writer) = match &store {
        Some(store) => {
            let (handle, task) = StoreWriter::spawn(store.clone(), &config.store, metrics.clone());
            let progress = handle.progress();
            (Some(handle), Some((task, progress)))
        }
        None => (None, None),
    };
    let mut alert_config = config.alerts.clone();
    if alert_config.ui_url == crate::alerts::AlertConfig::default().ui_url {
        alert_config.ui_url = format!("http://{}", config.server.listen);
    }
    let notifier = Notifier::spawn(alert_config, metrics.clone());
    let engine = Engine {
        live: live.clone(),
        bus: bus.clone(),
        store: writer_handle,
        notifier: Some(notifier),
        metrics: metrics.clone(),
    };
    let engine = tokio::spawn(engine.run(observations));

    let state = AppState {
        live,
        bus,
        store,
        metrics,
        auth,
        broker: config.broker.clone(),
        audit: Arc::new(AuditLog::new(config.server.audit_file.clone())),
        demo,
        ui: config.ui.clone(),
        shutdown: CancellationToken::new(),
    };
    let app = crate::ui::with_assets(
        api::router(state.clone()),
        config.server.assets_dir.as_deref(),
    );
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| {
            format!(
                "cannot listen on {} (server.listen); is another flowscope running?",
                config.server.listen
            )
        })?;
    let addr = listener.local_addr()?;
    let http_stop = CancellationToken::new();
    let stop = http_stop.clone();
    let http = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    tracing::info!(%addr, "flowscope listening");
    Ok(RunningServer {
        addr,
        otlp_addrs: collectors.otlp_addrs,
        state,
        collectors,
        engine,
        writer,
        http,
        http_stop,
    })
}

impl RunningServer {
    /// Stops taking data in, then writes everything that was accepted: the
    /// OTLP receiver has answered "accepted" for it, so it must not be lost.
    /// Waits as long as the store keeps writing; gives up only when it stalls.
    pub async fn stop(self) {
        let RunningServer {
            state,
            collectors,
            engine,
            writer,
            http,
            http_stop,
            ..
        } = self;
        state.shutdown.cancel();
        http_stop.cancel();
        if tokio::time::timeout(STOP_INPUTS_TIMEOUT, collectors.stop())
            .await
            .is_err()
        {
            tracing::error!("the collectors did not stop within {STOP_INPUTS_TIMEOUT:?}");
        }
        let (writer, progress) = writer.unzip();
        let drain = async move {
            let _ = engine.await;
            drop(state);
            if let Some(writer) = writer {
                let _ = writer.await;
            }
        };
        match progress {
            Some(progress) => wait_while_writing(drain, &progress).await,
            None => {
                let _ = tokio::time::timeout(STOP_INPUTS_TIMEOUT, drain).await;
            }
        }
        if tokio::time::timeout(STOP_INPUTS_TIMEOUT, http)
            .await
            .is_err()
        {
            tracing::error!("the HTTP server did not stop within {STOP_INPUTS_TIMEOUT:?}");
        }
    }
}

/// Runs `drain` (the engine's and the writer's last work) to its end while
/// the store keeps writing, saying every few seconds how much is left.
async fn wait_while_writing(
    drain: impl std::future::Future<Output = ()>,
    progress: &WriterProgress,
) {
    tokio::pin!(drain);
    let start = tokio::time::Instant::now();
    let mut report = tokio::time::interval_at(start + DRAIN_REPORT_INTERVAL, DRAIN_REPORT_INTERVAL);
    let mut stall = tokio::time::interval_at(start + STORE_STALL_TIMEOUT, STORE_STALL_TIMEOUT);
    let mut written = progress.rows_written();
    loop {
        tokio::select! {
            () = &mut drain => return,
            _ = report.tick() => tracing::info!(
                buffered = progress.buffered(),
                "writing what was accepted to the store before exiting (a second Ctrl-C exits now and loses it)"
            ),
            _ = stall.tick() => {
                let now = progress.rows_written();
                if now == written {
                    tracing::error!(
                        buffered = progress.buffered(),
                        "the store wrote nothing for {STORE_STALL_TIMEOUT:?}; exiting without the last writes"
                    );
                    return;
                }
                written = now;
            }
        }
    }
}
