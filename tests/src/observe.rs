//! Collectors running in the test process against a test vhost, and a log of
//! what they observed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use flowscope_collectors::config::{BrokerConfig, FirehoseConfig, ManagementConfig};
use flowscope_collectors::depth::DepthTracker;
use flowscope_collectors::firehose::FirehoseCollector;
use flowscope_collectors::management::client::ManagementClient;
use flowscope_collectors::management::poller::ManagementPoller;
use flowscope_collectors::pipeline::{self, Metrics, ObservationRx, ObservationSender};
use flowscope_collectors::services::ServiceDirectory;
use flowscope_model::Observation;
use tokio_util::sync::CancellationToken;

use crate::broker::{TestVhost, amqp_addr, mgmt_url};
use crate::eventually;

/// The broker settings of a test vhost.
pub fn broker_config(vhost: &TestVhost) -> BrokerConfig {
    BrokerConfig {
        amqp_url: format!("amqp://guest:guest@{}", amqp_addr()),
        management_url: mgmt_url(),
        vhosts: vec![vhost.name.clone()],
    }
}

/// Every observation received, kept for assertions.
#[derive(Debug, Clone, Default)]
pub struct ObservationLog {
    seen: Arc<Mutex<Vec<Observation>>>,
}

impl ObservationLog {
    /// Drains `rx` into the log in the background.
    pub fn drain(mut rx: ObservationRx) -> Self {
        let log = Self::default();
        let seen = log.seen.clone();
        tokio::spawn(async move {
            while let Some(obs) = rx.recv().await {
                seen.lock().expect("log lock").push(obs);
            }
        });
        log
    }

    /// Everything so far.
    pub fn all(&self) -> Vec<Observation> {
        self.seen.lock().expect("log lock").clone()
    }

    /// Waits for an observation `pick` accepts.
    pub async fn wait_for<T, F>(&self, timeout: Duration, what: &str, pick: F) -> T
    where
        F: Fn(&Observation) -> Option<T>,
    {
        eventually(timeout, what, || {
            let found = self.all().iter().find_map(&pick);
            async move { Ok(found) }
        })
        .await
    }
}

/// Collectors started by a test; stopped on drop.
#[derive(Debug)]
pub struct TestCollectors {
    pub metrics: Arc<Metrics>,
    pub shutdown: CancellationToken,
}

impl Drop for TestCollectors {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Which collectors to start and how.
#[derive(Debug, Clone, Default)]
pub struct CollectorSetup {
    pub firehose: Option<FirehoseConfig>,
    pub management: Option<ManagementConfig>,
    pub channel_capacity: Option<usize>,
}

/// Starts the chosen collectors on `vhost`; returns them and the receiving end.
pub fn start_collectors(
    vhost: &TestVhost,
    setup: CollectorSetup,
) -> (TestCollectors, ObservationRx) {
    let broker = broker_config(vhost);
    let metrics = Arc::new(Metrics::default());
    let (tx, rx) = pipeline::channel(setup.channel_capacity.unwrap_or(10_000));
    let shutdown = CancellationToken::new();
    let services = ServiceDirectory::default();
    let depth = DepthTracker::default();
    let sender = |source| ObservationSender::new(tx.clone(), &metrics, source);
    let redact = setup
        .firehose
        .as_ref()
        .map(|f| f.redact.clone())
        .unwrap_or_default();
    if let Some(config) = setup.firehose {
        let collector = FirehoseCollector {
            management: ManagementClient::new(&broker),
            broker: broker.clone(),
            vhost: vhost.name.clone(),
            config,
            services: services.clone(),
            depth: depth.clone(),
            sender: sender("firehose"),
        };
        tokio::spawn(collector.run(shutdown.clone()));
    }
    if let Some(config) = setup.management {
        let poller = ManagementPoller::new(
            broker,
            vhost.name.clone(),
            config,
            redact,
            services,
            depth,
            sender("management"),
            sender("passive_declare"),
            sender("dlq"),
        );
        tokio::spawn(poller.run(shutdown.clone()));
    }
    (TestCollectors { metrics, shutdown }, rx)
}
