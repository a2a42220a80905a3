//! The consume loop every service shares.
//!
//! For each delivery: continue the producer's trace, skip it if its
//! `message_id` was already processed, otherwise apply the service's
//! [`Handler`] and record the message in one transaction, publish the
//! resulting events through the relay, and only then ack. A failure is
//! retried (nack with requeue) up to `max_attempts` times, then the message
//! is rejected without requeue, so the broker dead-letters it with
//! `x-death` reason `rejected`.
//!
//! The fault switches act here: `slow_ms` delays each message, `paused`
//! cancels the consumer (messages pile up), `no_ack` holds deliveries unacked.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection};
use opentelemetry::trace::Status;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, Span};
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::amqp::extract_context;
use crate::events::Envelope;
use crate::faults::FaultState;
use crate::relay::RelayHandle;
use crate::services::Handler;
use crate::store::{self, Store};
use crate::topology::Service;

/// Messages a consumer may hold unacknowledged, unless configured.
pub const DEFAULT_PREFETCH: u16 = 10;
/// Processing attempts before a message is dead-lettered, unless configured.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Attempt counters kept at most (a poison flood cannot grow memory).
const MAX_TRACKED_ATTEMPTS: usize = 10_000;
/// Pause before a failed message goes back to the queue, times the attempt.
const RETRY_BACKOFF: Duration = Duration::from_millis(200);

/// Consumes one service's queue.
#[derive(Debug)]
pub struct ServiceConsumer<H> {
    pub service: Service,
    pub handler: Arc<H>,
    pub store: Store,
    pub relay: RelayHandle,
    pub faults: watch::Receiver<FaultState>,
    pub prefetch: u16,
    pub max_attempts: u32,
    attempts: std::sync::Mutex<HashMap<String, u32>>,
}

enum Outcome {
    Done,
    Duplicate,
}

impl<H: Handler> ServiceConsumer<H> {
    /// A consumer of `service`'s queue applying `handler`.
    pub fn new(
        service: Service,
        handler: Arc<H>,
        store: Store,
        relay: RelayHandle,
        faults: watch::Receiver<FaultState>,
    ) -> Self {
        Self {
            service,
            handler,
            store,
            relay,
            faults,
            prefetch: DEFAULT_PREFETCH,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            attempts: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Consumes until `cancel` (returns `Ok`) or the connection fails (`Err`).
    pub async fn run(
        &self,
        connection: &Connection,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut faults = self.faults.clone();
        loop {
            // Paused: no consumer on the queue until resumed.
            while faults.borrow_and_update().of(self.service).paused {
                tracing::info!(
                    queue = self.service.queue(),
                    "consumer paused (fault switch)"
                );
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    changed = faults.changed() => changed?,
                }
            }
            let channel = connection.create_channel().await?;
            channel
                .basic_qos(self.prefetch, BasicQosOptions::default())
                .await?;
            match self.consume(&channel, &mut faults, &cancel).await? {
                // The connection's close settles the channel.
                Stop::Cancelled => return Ok(()),
                Stop::Paused => {
                    // Closing the channel hands every unacked delivery back to the queue.
                    let _ = channel.close(200, "consumer paused".into()).await;
                }
            }
        }
    }

    async fn consume(
        &self,
        channel: &Channel,
        faults: &mut watch::Receiver<FaultState>,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Stop> {
        let tag = format!(
            "{}-{}",
            self.service,
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let mut deliveries = channel
            .basic_consume(
                self.service.queue().into(),
                tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        tracing::info!(
            queue = self.service.queue(),
            prefetch = self.prefetch,
            "consuming"
        );
        let mut held: Vec<Delivery> = Vec::new();
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return Ok(Stop::Cancelled),
                changed = faults.changed() => {
                    changed?;
                    let now = faults.borrow_and_update().of(self.service);
                    if now.paused {
                        return Ok(Stop::Paused);
                    }
                    if !now.no_ack && !held.is_empty() {
                        tracing::info!(num_held = held.len(), "no-ack switched off; processing held messages");
                        for delivery in std::mem::take(&mut held) {
                            self.process(delivery).await?;
                        }
                    }
                }
                delivery = deliveries.next() => {
                    let delivery = match delivery {
                        Some(delivery) => delivery?,
                        None => anyhow::bail!("the broker cancelled the consumer of {}", self.service.queue()),
                    };
                    if faults.borrow().of(self.service).no_ack {
                        tracing::warn!(num_held = held.len() + 1, "holding a message without ack (fault switch)");
                        held.push(delivery);
                    } else {
                        self.process(delivery).await?;
                    }
                }
            }
        }
    }

    /// Processes one delivery and settles it (ack, requeue or reject).
    /// Returns `Err` only when the broker connection failed.
    async fn process(&self, delivery: Delivery) -> anyhow::Result<()> {
        let props = &delivery.properties;
        let message_id = props
            .message_id()
            .as_ref()
            .map(|id| id.to_string())
            .unwrap_or_else(|| fallback_message_id(&delivery));
        let span = tracing::info_span!(
            "process",
            otel.name = format!("process {}", self.service.queue()),
            otel.kind = "consumer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.destination.name = %delivery.exchange,
            messaging.destination.subscription.name = self.service.queue(),
            messaging.rabbitmq.destination.routing_key = %delivery.routing_key,
            messaging.rabbitmq.message.delivery_tag = delivery.delivery_tag,
            messaging.message.id = %message_id,
            messaging.message.conversation_id = props.correlation_id().as_ref().map(|c| c.as_str()).unwrap_or(""),
            shop.order_id = tracing::field::Empty,
            shop.event_type = props.kind().as_ref().map(|k| k.as_str()).unwrap_or(""),
            shop.attempt = tracing::field::Empty,
            shop.duplicate = false,
        );
        let _ = span.set_parent(extract_context(props.headers().as_ref()));
        let slow_ms = self.faults.borrow().of(self.service).slow_ms;
        let result = async {
            if slow_ms > 0 {
                tokio::time::sleep(Duration::from_millis(slow_ms)).await;
            }
            self.apply(&delivery, &message_id).await
        }
        .instrument(span.clone())
        .await;
        match result {
            Ok(outcome) => {
                if matches!(outcome, Outcome::Duplicate) {
                    span.record("shop.duplicate", true);
                    tracing::info!(parent: &span, %message_id, "duplicate delivery skipped");
                }
                self.forget_attempts(&message_id);
                delivery.ack(Default::default()).await?;
            }
            Err(err) => {
                self.settle_failure(delivery, &message_id, &span, err)
                    .await?
            }
        }
        Ok(())
    }

    async fn apply(&self, delivery: &Delivery, message_id: &str) -> anyhow::Result<Outcome> {
        if self.store.is_processed(message_id).await? {
            // Its events may not have been confirmed before a crash: publish them now.
            self.relay.flush().await?;
            return Ok(Outcome::Duplicate);
        }
        let envelope = Envelope::from_body(&delivery.data)?;
        Span::current().record("shop.order_id", envelope.order_id.to_string());
        let faults = self.faults.borrow().clone();
        let trace_context = crate::relay::current_trace_context();
        let mut tx = self.store.pool().begin().await?;
        let outgoing = self.handler.handle(&mut tx, &envelope, &faults).await?;
        store::mark_processed(&mut tx, message_id).await?;
        for event in &outgoing {
            store::enqueue(&mut tx, event, Some(message_id), &trace_context).await?;
        }
        tx.commit().await?;
        for event in &outgoing {
            tracing::debug!(order_id = %event.order_id, event = event.event.name(), "decided");
        }
        if !outgoing.is_empty() {
            self.relay.flush().await?;
        }
        Ok(Outcome::Done)
    }

    async fn settle_failure(
        &self,
        delivery: Delivery,
        message_id: &str,
        span: &Span,
        err: anyhow::Error,
    ) -> anyhow::Result<()> {
        let attempt = self.count_attempt(message_id);
        span.record("shop.attempt", attempt);
        span.set_status(Status::error(format!("{err:#}")));
        if attempt < self.max_attempts {
            tracing::warn!(parent: span, %message_id, attempt, max_attempts = self.max_attempts, error = %format!("{err:#}"), "processing failed; will retry");
            tokio::time::sleep(RETRY_BACKOFF * attempt).await;
            let requeue = BasicNackOptions {
                requeue: true,
                ..Default::default()
            };
            delivery.nack(requeue).await?;
        } else {
            tracing::error!(parent: span, %message_id, attempt, error = %format!("{err:#}"), "processing failed; dead-lettering");
            self.forget_attempts(message_id);
            delivery
                .reject(BasicRejectOptions { requeue: false })
                .await?;
        }
        Ok(())
    }

    fn count_attempt(&self, message_id: &str) -> u32 {
        let mut attempts = self.attempts.lock().expect("attempts lock");
        if attempts.len() >= MAX_TRACKED_ATTEMPTS && !attempts.contains_key(message_id) {
            attempts.clear();
        }
        let count = attempts.entry(message_id.to_owned()).or_insert(0);
        *count += 1;
        *count
    }

    fn forget_attempts(&self, message_id: &str) {
        self.attempts
            .lock()
            .expect("attempts lock")
            .remove(message_id);
    }
}

enum Stop {
    Cancelled,
    Paused,
}

/// A stable id for a message published without `message_id`: a hash of what
/// identifies it, so its redeliveries still count as the same message.
fn fallback_message_id(delivery: &Delivery) -> String {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    delivery.routing_key.as_str().hash(&mut hasher);
    delivery.data.hash(&mut hasher);
    format!("body-{:016x}", hasher.finish())
}
