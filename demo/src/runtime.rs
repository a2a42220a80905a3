//! A service's life: open its database, then connect → declare → consume,
//! again and again with backoff whenever the broker goes away, until SIGTERM.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::amqp::{self, ConfirmedPublisher};
use crate::config::ServiceArgs;
use crate::consumer::ServiceConsumer;
use crate::faults::{self, FaultState, Faults};
use crate::relay::Relay;
use crate::services::Handler;
use crate::services::inventory::Inventory;
use crate::services::notification::Notification;
use crate::services::order::{self, Order, OrderApi};
use crate::services::payment::Payment;
use crate::services::shipping::Shipping;
use crate::store::Store;
use crate::topology::{self, Service};

/// First wait before reconnecting; doubles up to [`MAX_BACKOFF`].
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between reconnection attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A session that lasted this long resets the backoff.
const STABLE_SESSION: Duration = Duration::from_secs(10);

/// Runs `service` until SIGTERM or Ctrl-C.
pub async fn run_service(service: Service, args: &ServiceArgs) -> anyhow::Result<()> {
    let shutdown = shutdown_on_signal();
    match service {
        Service::Order => run(service, Order, args, shutdown).await,
        Service::Payment => run(service, Payment, args, shutdown).await,
        Service::Inventory => run(service, Inventory, args, shutdown).await,
        Service::Shipping => run(service, Shipping, args, shutdown).await,
        Service::Notification => run(service, Notification, args, shutdown).await,
    }
}

/// Set by `shop up` / `flowscope demo` in their children: a service whose
/// supervisor died (even by SIGKILL) stops instead of running on orphaned.
pub const EXIT_WITH_PARENT_ENV: &str = "SHOP_EXIT_WITH_PARENT";

/// A token cancelled on SIGTERM or SIGINT, or when the parent process is gone
/// (if [`EXIT_WITH_PARENT_ENV`] is set).
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    if std::env::var_os(EXIT_WITH_PARENT_ENV).is_some() {
        let orphaned = token.clone();
        let parent = std::os::unix::process::parent_id();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(500));
            loop {
                tick.tick().await;
                if std::os::unix::process::parent_id() != parent {
                    tracing::warn!("the supervising process is gone; shutting down");
                    orphaned.cancel();
                    return;
                }
            }
        });
    }
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        cancel.cancel();
    });
    token
}

async fn run<H: Handler>(
    service: Service,
    handler: H,
    args: &ServiceArgs,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let db = args.data_dir.join(format!("{service}.db"));
    let store = Store::open(&db, handler.schema())
        .await
        .with_context(|| format!("opening the {service} database at {}", db.display()))?;
    let (faults, faults_rx) = watch::channel(FaultState::default());
    let (relay, relay_handle) = Relay::new(store.clone(), service, faults_rx.clone());
    let mut consumer = ServiceConsumer::new(
        service,
        Arc::new(handler),
        store.clone(),
        relay_handle.clone(),
        faults_rx,
    );
    consumer.prefetch = args.prefetch;
    consumer.max_attempts = args.max_attempts;

    let http = if service == Service::Order {
        let listener = tokio::net::TcpListener::bind(args.http_addr)
            .await
            .with_context(|| format!("binding the order API to {}", args.http_addr))?;
        tracing::info!(addr = %listener.local_addr()?, "order API listening");
        let app = order::router(OrderApi {
            store: store.clone(),
            relay: relay_handle,
        });
        let stop = shutdown.clone();
        Some(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        }))
    } else {
        drop(relay_handle);
        None
    };

    let mut backoff = MIN_BACKOFF;
    while !shutdown.is_cancelled() {
        let started = Instant::now();
        match session(service, args, &relay, &consumer, &faults, &shutdown).await {
            Ok(()) => break,
            Err(err) => {
                if started.elapsed() > STABLE_SESSION {
                    backoff = MIN_BACKOFF;
                }
                tracing::warn!(error = %format!("{err:#}"), retry_in_ms = backoff.as_millis() as u64, "broker session ended; reconnecting");
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
    if let Some(http) = http {
        http.await??;
    }
    tracing::info!("stopped");
    Ok(())
}

/// One broker connection's lifetime. `Ok` means shutdown was asked for and
/// everything in flight was settled; `Err` means the broker went away.
async fn session<H: Handler>(
    service: Service,
    args: &ServiceArgs,
    relay: &Relay,
    consumer: &ServiceConsumer<H>,
    faults: &Faults,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let connection = tokio::select! {
        conn = amqp::connect(&args.amqp_url, service.name()) => conn.context("connecting to the broker")?,
        _ = shutdown.cancelled() => return Ok(()),
    };
    tracing::info!(connection_name = service.name(), "connected to the broker");
    let result = async {
        let publisher = ConfirmedPublisher::open(&connection).await?;
        topology::declare(publisher.channel()).await.context("declaring the topology")?;

        let relay_stop = CancellationToken::new();
        let relay_run = relay.run(&publisher, relay_stop.clone());
        let consume = consumer.run(&connection, shutdown.clone());
        let control = faults::listen(&connection, service, faults);
        tokio::pin!(relay_run, consume, control);
        tokio::select! {
            consumed = &mut consume => {
                consumed.context("consumer")?;
                // Shutdown: the consumer settled its last message; publish what is left.
                relay_stop.cancel();
                relay_run.await.context("outbox relay")
            }
            relayed = &mut relay_run => relayed.context("outbox relay").and(Err(anyhow::anyhow!("outbox relay stopped"))),
            listened = &mut control => listened.context("control listener"),
        }
    }
    .await;
    let _ = tokio::time::timeout(Duration::from_secs(2), connection.close(200, "bye".into())).await;
    result
}
