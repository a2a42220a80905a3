//! The management poller: queue samples, exact depths, topology, dead letters.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flowscope_model::{Observation, QueueSample, SampleSource, TopologySnapshot, now_unix_us};
use lapin::options::QueueDeclareOptions;
use lapin::types::{FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use super::client::{ManagementClient, ManagementError};
use super::convert;
use crate::backoff::Backoff;
use crate::config::{BrokerConfig, ManagementConfig};
use crate::depth::DepthTracker;
use crate::dlq::DeadLetterInspector;
use crate::pipeline::ObservationSender;
use crate::services::ServiceDirectory;

/// An unchanged exact depth is re-sent this often anyway (a heartbeat).
const EXACT_HEARTBEAT: Duration = Duration::from_secs(5);
/// flowscope's own queues, left out of what it reports.
const OWN_QUEUE_PREFIX: &str = "flowscope.";

/// Queues known from the management API (or routed into on the firehose
/// since its last list), and which are DLQs.
#[derive(Debug, Default)]
struct Known {
    /// Read by passive declare.
    queues: Vec<String>,
    /// Not to be read: exclusive to another connection (listed so), or a
    /// passive declare failed since the last list.
    unreadable: HashSet<String>,
    dead_letter_queues: HashSet<String>,
}

impl Known {
    /// Adds queues the firehose discovered, unless known, unreadable, flowscope's
    /// own, or past `max`.
    fn discover(&mut self, discovered: Vec<String>, max: usize) {
        for queue in discovered {
            if self.queues.len() >= max {
                return;
            }
            if !queue.starts_with(OWN_QUEUE_PREFIX)
                && !self.unreadable.contains(&queue)
                && !self.queues.contains(&queue)
            {
                self.queues.push(queue);
            }
        }
    }

    /// A passive declare of `queue` failed: not read again until a list says
    /// it may be.
    fn unreadable(&mut self, queue: &str) {
        self.queues.retain(|q| q != queue);
        self.unreadable.insert(queue.to_owned());
    }
}

/// Polls one vhost.
#[derive(Debug, Clone)]
pub struct ManagementPoller {
    pub broker: BrokerConfig,
    pub vhost: String,
    pub config: ManagementConfig,
    pub management: ManagementClient,
    pub services: ServiceDirectory,
    pub depth: DepthTracker,
    /// Source `management`: samples and topology from the HTTP API.
    pub sender: ObservationSender,
    /// Source `passive_declare`: exact depths.
    pub exact_sender: ObservationSender,
    /// Source `dlq`: dead letters found by inspection.
    pub dlq_sender: ObservationSender,
    /// Body capture and masking for dead letters.
    pub redact: crate::redact::RedactConfig,
    known: Arc<Mutex<Known>>,
}

impl ManagementPoller {
    /// A poller of `vhost`; see the fields for what each sender carries.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        broker: BrokerConfig,
        vhost: String,
        config: ManagementConfig,
        redact: crate::redact::RedactConfig,
        services: ServiceDirectory,
        depth: DepthTracker,
        sender: ObservationSender,
        exact_sender: ObservationSender,
        dlq_sender: ObservationSender,
    ) -> Self {
        let management = ManagementClient::new(&broker);
        Self {
            broker,
            vhost,
            config,
            management,
            services,
            depth,
            sender,
            exact_sender,
            dlq_sender,
            redact,
            known: Default::default(),
        }
    }

    /// Polls until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        tokio::join!(self.poll_api(&shutdown), self.poll_depths(&shutdown));
    }

    async fn poll_api(&self, shutdown: &CancellationToken) {
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.poll_interval_ms.max(100)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let topology_every = Duration::from_millis(self.config.topology_interval_ms.max(100));
        let mut last_topology: Option<(Instant, TopologySnapshot)> = None;
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self.poll_once(topology_every, &mut last_topology).await {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!(vhost = %self.vhost, "management API answers again");
                }
                Err(err) if !failing => {
                    failing = true;
                    tracing::warn!(vhost = %self.vhost, error = %err, "management API poll failed; retrying every poll interval");
                }
                _ => {}
            }
        }
    }

    /// One round: the queue list, and the topology when it is due (within half
    /// a poll interval, so that equal intervals read it every round).
    async fn poll_once(
        &self,
        topology_every: Duration,
        last_topology: &mut Option<(Instant, TopologySnapshot)>,
    ) -> Result<(), ManagementError> {
        let queues = self.management.queues(&self.vhost).await?;
        self.poll_queues(&queues);
        let slack = Duration::from_millis(self.config.poll_interval_ms / 2);
        if last_topology
            .as_ref()
            .is_none_or(|(at, _)| at.elapsed() + slack >= topology_every)
        {
            self.poll_topology(queues, last_topology).await?;
        }
        Ok(())
    }

    /// Sends a sample of each queue listed and makes the list the queues read
    /// by passive declare.
    fn poll_queues(&self, queues: &[serde_json::Value]) {
        let now = now_unix_us();
        let mut names = Vec::with_capacity(queues.len());
        let mut unreadable = HashSet::new();
        for q in queues {
            let Some(sample) = convert::queue_sample(&self.vhost, q, now) else {
                continue;
            };
            if sample.queue.starts_with(OWN_QUEUE_PREFIX) {
                continue;
            }
            // Another connection's exclusive queue cannot be declared, even passively.
            if q["exclusive"].as_bool() != Some(true) {
                names.push(sample.queue.clone());
            } else {
                unreadable.insert(sample.queue.clone());
            }
            let _ = self
                .sender
                .send_or_drop(Observation::QueueSample(Box::new(sample)));
        }
        let present: HashSet<&str> = names.iter().map(String::as_str).collect();
        self.depth.retain(|q| present.contains(q));
        names.truncate(self.config.max_watched_queues);
        let mut known = self.known.lock().expect("known lock");
        known.queues = names;
        known.unreadable = unreadable;
    }

    /// The topology, from `queues` (this round's list) and the vhost's other
    /// objects.
    async fn poll_topology(
        &self,
        queues: Vec<serde_json::Value>,
        last: &mut Option<(Instant, TopologySnapshot)>,
    ) -> Result<(), ManagementError> {
        let v = &self.vhost;
        let (exchanges, bindings, connections, consumers) = tokio::try_join!(
            self.management.exchanges(v),
            self.management.bindings(v),
            self.management.connections(v),
            self.management.consumers(v),
        )?;
        let queues: Vec<_> = queues
            .iter()
            .filter_map(convert::queue_info)
            .filter(|q| !q.name.starts_with(OWN_QUEUE_PREFIX))
            .collect();
        let exchanges: Vec<_> = exchanges
            .iter()
            .filter_map(convert::exchange_info)
            .collect();
        let bindings: Vec<_> = bindings
            .iter()
            .filter_map(convert::binding_info)
            .filter(|b| !b.destination.starts_with(OWN_QUEUE_PREFIX))
            .collect();
        let connections: Vec<_> = connections
            .iter()
            .filter_map(convert::connection_info)
            .collect();
        for c in &connections {
            self.services.learn(&c.name, c.client_name.clone());
        }
        let names: HashMap<&str, Option<&String>> = connections
            .iter()
            .map(|c| (c.name.as_str(), c.client_name.as_ref()))
            .collect();
        let consumers: Vec<_> = consumers
            .iter()
            .filter_map(convert::consumer_info)
            .filter(|c| !c.queue.starts_with(OWN_QUEUE_PREFIX))
            .map(|mut c| {
                c.client_name = names.get(c.connection.as_str()).copied().flatten().cloned();
                c
            })
            .collect();
        let dead_letter_edges = convert::dead_letter_edges(&queues, &exchanges, &bindings);
        self.known.lock().expect("known lock").dead_letter_queues = dead_letter_edges
            .iter()
            .flat_map(|e| e.targets.iter().cloned())
            .collect();
        let snapshot = TopologySnapshot {
            observed_unix_us: now_unix_us(),
            vhost: self.vhost.clone(),
            exchanges,
            queues,
            bindings,
            connections,
            consumers,
            dead_letter_edges,
        };
        let changed = last
            .as_ref()
            .is_none_or(|(_, prev)| !same_topology(prev, &snapshot));
        if changed {
            let _ = self
                .sender
                .send_or_drop(Observation::Topology(Box::new(snapshot.clone())));
        }
        *last = Some((Instant::now(), snapshot));
        Ok(())
    }

    async fn poll_depths(&self, shutdown: &CancellationToken) {
        let mut backoff = Backoff::default();
        let mut inspector = DeadLetterInspector::new(
            self.vhost.clone(),
            self.config.dlq_inspect_max,
            Duration::from_millis(self.config.dlq_inspect_interval_ms),
            self.redact.clone(),
            self.dlq_sender.clone(),
        );
        loop {
            backoff.attempt();
            let result = tokio::select! {
                r = self.depth_session(&mut inspector, shutdown) => r,
                _ = shutdown.cancelled() => return,
            };
            let wait = backoff.failed();
            if let Err(err) = result {
                tracing::warn!(vhost = %self.vhost, error = %err, retry_in_ms = wait.as_millis() as u64, "exact depth reads interrupted; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn depth_session(
        &self,
        inspector: &mut DeadLetterInspector,
        shutdown: &CancellationToken,
    ) -> anyhow_like::Result<()> {
        let uri = self
            .broker
            .uri_for(&self.vhost)
            .map_err(anyhow_like::Error::Config)?;
        let props = ConnectionProperties::default()
            .with_connection_name(LongString::from(format!("flowscope-poller {}", self.vhost)));
        let connection = Connection::connect_uri(uri, props).await?;
        let mut channel = connection.create_channel().await?;
        let inspect_channel = connection.create_channel().await?;
        // Each queue's consumers when its count was last sent, and when.
        let mut last: HashMap<String, (u64, Instant)> = HashMap::new();
        // Each dead-letter queue's depth when it was last inspected.
        let mut inspected: HashMap<String, u64> = HashMap::new();
        let mut tick =
            tokio::time::interval(Duration::from_millis(self.config.depth_interval_ms.max(50)));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = tick.tick() => {}
            }
            let discovered = self.depth.take_discovered();
            let (queues, dlqs) = {
                let mut known = self.known.lock().expect("known lock");
                known.discover(discovered, self.config.max_watched_queues);
                (known.queues.clone(), known.dead_letter_queues.clone())
            };
            for queue in queues {
                let (ready, consumers) = match passive_declare(&channel, &queue).await {
                    Ok(counts) => counts,
                    Err(_) if !connection.status().connected() => {
                        return Err(anyhow_like::Error::Closed);
                    }
                    Err(_) => {
                        // Gone since the last list, or exclusive to another
                        // connection: the broker closed the channel.
                        self.known.lock().expect("known lock").unreadable(&queue);
                        channel = connection.create_channel().await?;
                        continue;
                    }
                };
                // Sent when it differs from what was last reported (a firehose
                // estimate may have been off since the last read), when the
                // consumers changed, and as a heartbeat.
                let news = self.depth.set_exact(&queue, ready);
                let previous = last.get(&queue).copied();
                let changed = news
                    || previous
                        .is_none_or(|(c, at)| c != consumers || at.elapsed() >= EXACT_HEARTBEAT);
                if changed {
                    last.insert(queue.clone(), (consumers, Instant::now()));
                    let _ = self
                        .exact_sender
                        .send_or_drop(Observation::QueueSample(Box::new(
                            self.exact_sample(&queue, ready, consumers),
                        )));
                }
                // Inspect a dead-letter queue whenever its depth moved since the
                // last look (whenever the topology made it known as one).
                let moved = inspected.get(&queue) != Some(&ready);
                if dlqs.contains(&queue) && ready > 0 && moved && inspector.due(&queue) {
                    let new = inspector.inspect(&inspect_channel, &queue).await?;
                    inspected.insert(queue.clone(), ready);
                    tracing::debug!(%queue, new, "dead-letter queue inspected");
                } else if ready == 0 {
                    inspected.remove(&queue);
                }
            }
        }
    }

    fn exact_sample(&self, queue: &str, ready: u64, consumers: u64) -> QueueSample {
        QueueSample {
            observed_unix_us: now_unix_us(),
            source: SampleSource::PassiveDeclare,
            vhost: self.vhost.clone(),
            queue: queue.to_owned(),
            messages_ready: Some(ready),
            messages_unacked: None,
            consumers: Some(consumers),
            publish_rate: None,
            deliver_rate: None,
            ack_rate: None,
            head_message_timestamp: None,
        }
    }
}

/// Ready messages and consumers of a queue, exactly, without touching it.
async fn passive_declare(channel: &Channel, queue: &str) -> lapin::Result<(u64, u64)> {
    let options = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await?;
    Ok((u64::from(q.message_count()), u64::from(q.consumer_count())))
}

fn same_topology(a: &TopologySnapshot, b: &TopologySnapshot) -> bool {
    a.exchanges == b.exchanges
        && a.queues == b.queues
        && a.bindings == b.bindings
        && a.connections == b.connections
        && a.consumers == b.consumers
}

/// The depth session's errors.
mod anyhow_like {
    /// What ended a depth session.
    #[derive(Debug, thiserror::Error)]
    pub enum Error {
        #[error("{0}")]
        Config(String),
        #[error("broker connection: {0}")]
        Amqp(#[from] lapin::Error),
        #[error("the broker closed the connection")]
        Closed,
    }
    pub type Result<T> = std::result::Result<T, Error>;
}
