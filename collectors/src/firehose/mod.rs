//! The firehose tap: every publish and delivery on a vhost, as the broker saw it.
//!
//! Per vhost, the [`FirehoseCollector`] turns tracing on through the
//! management API (and re-asserts it: the broker forgets it on restart),
//! declares its own exclusive, auto-delete, length-bounded queue bound to
//! `amq.rabbitmq.trace` with `#`, and consumes it with a prefetch. Each
//! message is converted ([`convert`]) and handed to the pipeline without
//! waiting: when the pipeline is full the observation is dropped and
//! counted (`flowscope_observations_dropped_total{source="firehose"}`), so
//! the tap queue never backs up into the broker; if flowscope stops
//! consuming altogether, the queue's bound makes the broker drop the oldest.
//! Acks go in batches after the hand-off. The connection is rebuilt with
//! backoff whenever the broker goes away.

pub mod convert;

use std::time::{Duration, Instant};

use flowscope_model::{Observation, QueueSample, SampleSource, now_unix_us};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::config::{BrokerConfig, FirehoseConfig};
use crate::depth::DepthTracker;
use crate::management::client::ManagementClient;
use crate::pipeline::ObservationSender;
use crate::services::{ServiceDirectory, is_own, spawn_resolver};

/// The exchange RabbitMQ publishes traced messages to.
pub const TRACE_EXCHANGE: &str = "amq.rabbitmq.trace";
/// Acknowledge after this many hand-offs (or when the tap goes quiet).
const ACK_BATCH: u64 = 64;
/// How often firehose-derived depth estimates are emitted, at most.
const DEPTH_EMIT_INTERVAL: Duration = Duration::from_millis(100);
/// Observations held while their connection's service is looked up, at most.
const MAX_HELD: usize = 10_000;

/// Observations waiting for their connection's service name.
#[derive(Debug, Default)]
struct Held {
    /// With when the firehose showed each.
    by_connection: std::collections::HashMap<String, Vec<(Observation, Instant)>>,
    count: usize,
}

/// What ended a tap session.
#[derive(Debug, thiserror::Error)]
pub enum FirehoseError {
    #[error("{0}")]
    Config(String),
    #[error("cannot turn tracing on: {0}")]
    Tracing(#[from] crate::management::client::ManagementError),
    #[error("broker connection: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("the broker cancelled the tap consumer")]
    Cancelled,
}

/// Taps one vhost's firehose.
#[derive(Debug, Clone)]
pub struct FirehoseCollector {
    pub broker: BrokerConfig,
    pub vhost: String,
    pub config: FirehoseConfig,
    pub management: ManagementClient,
    pub services: ServiceDirectory,
    pub depth: DepthTracker,
    pub sender: ObservationSender,
}

impl FirehoseCollector {
    /// Taps until `shutdown`, reconnecting with backoff.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut backoff = Backoff::default();
        loop {
            backoff.attempt();
            let result = tokio::select! {
                result = self.session(&shutdown) => result,
                _ = shutdown.cancelled() => return,
            };
            let wait = backoff.failed();
            match result {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!(vhost = %self.vhost, error = %err, retry_in_ms = wait.as_millis() as u64, "firehose tap interrupted; reconnecting")
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    }

    async fn session(&self, shutdown: &CancellationToken) -> Result<(), FirehoseError> {
        self.assert_tracing().await?;
        let uri = self
            .broker
            .uri_for(&self.vhost)
            .map_err(FirehoseError::Config)?;
        let props = ConnectionProperties::default().with_connection_name(LongString::from(
            format!("flowscope-firehose {}", self.vhost),
        ));
        let connection = Connection::connect_uri(uri, props).await?;
        let result = self.consume(&connection, shutdown).await;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            connection.close(200, "flowscope tap stops".into()),
        )
        .await;
        result
    }

    async fn assert_tracing(&self) -> Result<(), FirehoseError> {
        if self.management.ensure_tracing(&self.vhost).await? {
            tracing::info!(vhost = %self.vhost, "tracing was off; turned it on (the broker forgets it on restart)");
        }
        Ok(())
    }

    async fn consume(
        &self,
        connection: &Connection,
        shutdown: &CancellationToken,
    ) -> Result<(), FirehoseError> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.config.prefetch, BasicQosOptions::default())
            .await?;
        let queue = self.declare_tap_queue(&channel).await?;
        let mut deliveries = channel
            .basic_consume(
                queue.as_str().into(),
                "flowscope-tap".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(vhost = %self.vhost, %queue, max_length = self.config.tap_max_length, "tapping the firehose");
        let mut reassert = tokio::time::interval(Duration::from_secs(
            self.config.reassert_tracing_secs.max(1),
        ));
        reassert.tick().await;
        let mut emit_depths = tokio::time::interval(DEPTH_EMIT_INTERVAL);
        let mut unacked: Option<u64> = None;
        let mut since_ack = 0;
        let (want, mut resolved) = spawn_resolver(self.services.clone(), self.management.clone());
        let mut held = Held::default();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    ack_up_to(&channel, unacked.take()).await?;
                    for (_, observations) in held.by_connection.drain() {
                        for (observation, seen) in observations {
                            self.pass_on(observation, seen);
                        }
                    }
                    return Ok(());
                }
                Some((connection, service)) = resolved.recv() => {
                    let observations = held.by_connection.remove(&connection).unwrap_or_default();
                    held.count -= observations.len();
                    for (mut observation, seen) in observations {
                        if let Observation::Publish(msg) | Observation::Deliver(msg) = &mut observation {
                            msg.service = service.clone();
                        }
                        if !is_own(service.as_deref()) {
                            self.pass_on(observation, seen);
                        }
                    }
                }
                _ = reassert.tick() => {
                    if let Err(err) = self.assert_tracing().await {
                        tracing::warn!(vhost = %self.vhost, error = %err, "cannot re-assert tracing");
                    }
                }
                _ = emit_depths.tick() => {
                    ack_up_to(&channel, unacked.take()).await?;
                    since_ack = 0;
                    self.emit_depth_estimates();
                }
                delivery = deliveries.next() => {
                    let delivery = delivery.ok_or(FirehoseError::Cancelled)??;
                    self.hand_off(&delivery, &mut held, &want);
                    unacked = Some(delivery.delivery_tag);
                    since_ack += 1;
                    if since_ack >= ACK_BATCH {
                        ack_up_to(&channel, unacked.take()).await?;
                        since_ack = 0;
                    }
                }
            }
        }
    }

    async fn declare_tap_queue(&self, channel: &Channel) -> Result<String, FirehoseError> {
        let mut args = FieldTable::default();
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(self.config.tap_max_length),
        );
        args.insert(
            "x-max-length-bytes".into(),
            AMQPValue::LongLongInt(self.config.tap_max_bytes),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        let name = format!("flowscope.tap.{}", short_id());
        let options = QueueDeclareOptions {
            exclusive: true,
            auto_delete: true,
            ..Default::default()
        };
        channel
            .queue_declare(name.as_str().into(), options, args)
            .await?;
        channel
            .queue_bind(
                name.as_str().into(),
                TRACE_EXCHANGE.into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await?;
        Ok(name)
    }

    /// Converts and passes on one firehose message; never waits on the
    /// pipeline. A message from a connection not yet named is held.
    fn hand_off(
        &self,
        delivery: &lapin::message::Delivery,
        held: &mut Held,
        want: &tokio::sync::mpsc::Sender<String>,
    ) {
        let observation = convert::from_trace_message(
            delivery.routing_key.as_str(),
            delivery.properties.headers().as_ref(),
            &delivery.data,
            now_unix_us(),
            &self.config.redact,
        );
        let mut observation = match observation {
            Ok(obs) => obs,
            Err(err) => {
                tracing::warn!(vhost = %self.vhost, error = %err, "unreadable firehose message skipped");
                return;
            }
        };
        let (Observation::Publish(msg) | Observation::Deliver(msg)) = &observation else {
            return;
        };
        let connection = msg.connection.clone();
        let known = connection.as_deref().and_then(|c| self.services.known(c));
        // flowscope's own peeks at dead-letter queues are not traffic, and
        // leave the depth as it was (they are put back).
        if known
            .as_ref()
            .is_some_and(|service| is_own(service.as_deref()))
        {
            return;
        }
        let seen = Instant::now();
        match (connection, known) {
            (Some(_), Some(service)) => {
                if let Observation::Publish(msg) | Observation::Deliver(msg) = &mut observation {
                    msg.service = service;
                }
                self.pass_on(observation, seen);
            }
            (Some(connection), None) if held.count < MAX_HELD => {
                let list = held.by_connection.entry(connection.clone()).or_default();
                if list.is_empty() {
                    let _ = want.try_send(connection);
                }
                list.push((observation, seen));
                held.count += 1;
            }
            _ => self.pass_on(observation, seen),
        }
    }

    /// Counts a message the firehose showed at `seen` into the depth
    /// estimates (unless an exact count read since holds it) and passes it on.
    fn pass_on(&self, observation: Observation, seen: Instant) {
        match &observation {
            Observation::Publish(msg) => msg
                .routed_queues
                .iter()
                .flatten()
                .for_each(|q| self.depth.routed(q, seen)),
            Observation::Deliver(msg) => {
                msg.queue.iter().for_each(|q| self.depth.delivered(q, seen))
            }
            _ => {}
        }
        let _ = self.sender.send_or_drop(observation);
    }

    fn emit_depth_estimates(&self) {
        for (queue, ready) in self.depth.take_changed() {
            let sample = QueueSample {
                observed_unix_us: now_unix_us(),
                source: SampleSource::Firehose,
                vhost: self.vhost.clone(),
                queue,
                messages_ready: Some(ready),
                messages_unacked: None,
                consumers: None,
                publish_rate: None,
                deliver_rate: None,
                ack_rate: None,
                head_message_timestamp: None,
            };
            let _ = self
                .sender
                .send_or_drop(Observation::QueueSample(Box::new(sample)));
        }
    }
}

async fn ack_up_to(channel: &Channel, tag: Option<u64>) -> Result<(), lapin::Error> {
    if let Some(tag) = tag {
        channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await?;
    }
    Ok(())
}

/// Eight hex digits, to tell flowscope's queues apart.
pub fn short_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    format!(
        "{:08x}",
        RandomState::new().hash_one(std::time::SystemTime::now()) as u32
    )
}
