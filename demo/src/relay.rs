//! The outbox relay: the one place a service publishes from.
//!
//! Events are written to the outbox in the transaction that decided them; the
//! relay publishes unsent rows in order, each with a producer span and the
//! trace context in its headers, waits for the broker's confirm, then marks
//! the row sent. A consumer that must not ack before its events are confirmed
//! calls [`RelayHandle::flush`]; the order API only [`RelayHandle::nudge`]s.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use rand::Rng;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::amqp::{ConfirmedPublisher, PublishError, inject_context};
use crate::faults::FaultState;
use crate::store::{OutboxRow, Store};
use crate::topology::{EVENTS_EXCHANGE, Service};

/// How often the relay looks for rows nobody asked it to publish (left over
/// from a crash or a broker outage).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(1);
/// Flush requests that may wait; more make the caller wait (backpressure).
const REQUEST_CAPACITY: usize = 256;
/// The header that marks a message the poison fault corrupted on purpose.
pub const FAULT_HEADER: &str = "x-shop-fault";

type Waiter = Option<oneshot::Sender<Result<(), String>>>;

/// Asks the relay to publish now.
#[derive(Debug, Clone)]
pub struct RelayHandle(mpsc::Sender<Waiter>);

impl RelayHandle {
    /// Publishes everything in the outbox and waits for the broker's confirms.
    pub async fn flush(&self) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.0
            .send(Some(tx))
            .await
            .map_err(|_| anyhow::anyhow!("the outbox relay has stopped"))?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(anyhow::anyhow!("publishing the outbox failed: {err}")),
            Err(_) => Err(anyhow::anyhow!(
                "the broker connection was lost before the outbox was published"
            )),
        }
    }

    /// Wakes the relay without waiting; the sweep catches it if this is dropped.
    pub fn nudge(&self) {
        let _ = self.0.try_send(None);
    }
}

/// Publishes a service's outbox; survives reconnects (one [`Relay::run`] per session).
#[derive(Debug)]
pub struct Relay {
    store: Store,
    service: Service,
    faults: watch::Receiver<FaultState>,
    requests: Arc<Mutex<mpsc::Receiver<Waiter>>>,
}

impl Relay {
    /// Creates the relay and the handle that wakes it.
    pub fn new(
        store: Store,
        service: Service,
        faults: watch::Receiver<FaultState>,
    ) -> (Self, RelayHandle) {
        let (tx, rx) = mpsc::channel(REQUEST_CAPACITY);
        let relay = Self {
            store,
            service,
            faults,
            requests: Arc::new(Mutex::new(rx)),
        };
        (relay, RelayHandle(tx))
    }

    /// Publishes through `publisher` until `cancel` or a publish fails.
    pub async fn run(
        &self,
        publisher: &ConfirmedPublisher,
        cancel: CancellationToken,
    ) -> anyhow::Result<()> {
        let mut requests = self.requests.lock().await;
        let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
        loop {
            let mut waiters = Vec::new();
            tokio::select! {
                _ = cancel.cancelled() => return self.drain(publisher).await,
                request = requests.recv() => {
                    waiters.extend(request.flatten());
                    while let Ok(request) = requests.try_recv() {
                        waiters.extend(request);
                    }
                }
                _ = sweep.tick() => {}
            }
            let result = self.drain(publisher).await;
            for waiter in waiters {
                let _ = waiter.send(result.as_ref().map(drop).map_err(|e| format!("{e:#}")));
            }
            result?;
        }
    }

    async fn drain(&self, publisher: &ConfirmedPublisher) -> anyhow::Result<()> {
        loop {
            let rows = self.store.unsent().await?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                self.publish(publisher, &row).await?;
                self.store.mark_sent(&row.message_id).await?;
            }
        }
    }

    async fn publish(
        &self,
        publisher: &ConfirmedPublisher,
        row: &OutboxRow,
    ) -> Result<(), PublishError> {
        let span = tracing::info_span!(
            "publish",
            otel.name = format!("publish {EVENTS_EXCHANGE}"),
            otel.kind = "producer",
            messaging.system = "rabbitmq",
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.destination.name = EVENTS_EXCHANGE,
            messaging.rabbitmq.destination.routing_key = %row.routing_key,
            messaging.message.id = %row.message_id,
            messaging.message.conversation_id = %row.order_id,
            shop.order_id = %row.order_id,
            shop.event_type = %row.event_type,
        );
        let parent = TraceContextPropagator::new().extract(&row.trace_context);
        let _ = span.set_parent(parent);
        let mut headers = FieldTable::default();
        inject_context(&span.context(), &mut headers);
        let poison_rate = self.faults.borrow().of(self.service).poison_rate;
        let poisoned = poison_rate > 0.0 && rand::rng().random_bool(poison_rate);
        let body = if poisoned {
            headers.insert(FAULT_HEADER.into(), AMQPValue::LongString("poison".into()));
            tracing::warn!(parent: &span, message_id = %row.message_id, "publishing a poisoned body (fault switch)");
            corrupt(&row.body)
        } else {
            row.body.clone()
        };
        let props = message_properties(self.service, row, headers);
        publisher
            .publish(EVENTS_EXCHANGE, &row.routing_key, &body, props)
            .instrument(span)
            .await
    }
}

/// The AMQP properties every shop message carries.
fn message_properties(service: Service, row: &OutboxRow, headers: FieldTable) -> BasicProperties {
    BasicProperties::default()
        .with_message_id(row.message_id.as_str().into())
        .with_correlation_id(row.order_id.as_str().into())
        .with_type(row.event_type.as_str().into())
        .with_app_id(service.name().into())
        .with_content_type("application/json".into())
        .with_delivery_mode(2)
        .with_timestamp(Utc::now().timestamp().max(0) as u64)
        .with_headers(headers)
}

/// A body no consumer can parse: the JSON cut off half-way.
fn corrupt(body: &[u8]) -> Vec<u8> {
    let mut cut = body[..body.len() / 2].to_vec();
    cut.extend_from_slice(b"\x00<truncated>");
    cut
}

/// The trace context of the current span, to store beside an outbox row.
pub fn current_trace_context() -> HashMap<String, String> {
    let mut carrier = HashMap::new();
    TraceContextPropagator::new().inject_context(&tracing::Span::current().context(), &mut carrier);
    carrier
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{Envelope, ShopEvent};

    #[test]
    fn a_corrupted_body_does_not_parse() {
        let body = Envelope::new(uuid::Uuid::new_v4(), ShopEvent::OrderCompleted {}).to_body();
        assert!(Envelope::from_body(&body).is_ok());
        assert!(Envelope::from_body(&corrupt(&body)).is_err());
    }
}
