//! Starts the collectors a configuration asks for, feeding one channel.

use std::sync::Arc;

use anyhow::Context;
use flowscope_collectors::depth::DepthTracker;
use flowscope_collectors::firehose::FirehoseCollector;
use flowscope_collectors::management::client::ManagementClient;
use flowscope_collectors::management::poller::ManagementPoller;
use flowscope_collectors::otlp::OtlpReceiver;
use flowscope_collectors::pipeline::{self, Metrics, ObservationRx, ObservationSender};
use flowscope_collectors::services::ServiceDirectory;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;

/// The collectors, running.
#[derive(Debug)]
pub struct Collectors {
    /// Their counters, for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// Where the OTLP receiver listens (gRPC, HTTP), when it runs.
    pub otlp_addrs: Option<(std::net::SocketAddr, std::net::SocketAddr)>,
    shutdown: CancellationToken,
    tasks: JoinSet<()>,
}

impl Collectors {
    /// Starts every enabled collector; returns them and the observations they produce.
    /// Fails only on what cannot work at all (a port in use); a broker that is
    /// down is retried in the background.
    pub async fn start(config: &Config) -> anyhow::Result<(Self, ObservationRx)> {
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = pipeline::channel(config.pipeline.channel_capacity);
        let shutdown = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let services = ServiceDirectory::default();
        let management = ManagementClient::new(&config.broker);
        let sender = |source| ObservationSender::new(tx.clone(), &metrics, source);

        let mut otlp_addrs = None;
        if config.otlp.enabled {
            let (grpc, http) = flowscope_collectors::otlp::bind(&config.otlp).await?;
            otlp_addrs = Some((grpc.local_addr()?, http.local_addr()?));
            let receiver = OtlpReceiver::new(config.otlp.clone(), sender("otlp"));
            let serving = receiver.serve_on_own_thread(grpc, http, shutdown.clone())?;
            tasks.spawn(async move {
                if let Err(err) = serving.await {
                    tracing::error!(error = %err, "OTLP receiver stopped");
                }
            });
        }
        for vhost in &config.broker.vhosts {
            config
                .broker
                .uri_for(vhost)
                .map_err(anyhow::Error::msg)
                .context("broker.amqp_url")?;
            let depth = DepthTracker::default();
            if config.firehose.enabled {
                let collector = FirehoseCollector {
                    broker: config.broker.clone(),
                    vhost: vhost.clone(),
                    config: config.firehose.clone(),
                    management: management.clone(),
                    services: services.clone(),
                    depth: depth.clone(),
                    sender: sender("firehose"),
                };
                tasks.spawn(collector.run(shutdown.clone()));
            }
            if config.management.enabled {
                let poller = ManagementPoller::new(
                    config.broker.clone(),
                    vhost.clone(),
                    config.management.clone(),
                    config.firehose.redact.clone(),
                    services.clone(),
                    depth,
                    sender("management"),
                    sender("passive_declare"),
                    sender("dlq"),
                );
                tasks.spawn(poller.run(shutdown.clone()));
            }
        }
        Ok((
            Self {
                metrics,
                otlp_addrs,
                shutdown,
                tasks,
            },
            rx,
        ))
    }

    /// Stops every collector (their senders drop, so the channel closes once drained).
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        while self.tasks.join_next().await.is_some() {}
    }
}
