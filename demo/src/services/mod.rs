//! The business logic of the five services.
//!
//! Each implements [`Handler`]: given one incoming event and a transaction on
//! its own database, change its tables and say which events follow. The
//! [`crate::consumer`] does everything else (idempotency, outbox, retries).

use std::future::Future;

use sqlx::SqliteConnection;

use crate::events::Envelope;
use crate::faults::FaultState;

pub mod inventory;
pub mod notification;
pub mod order;
pub mod payment;
pub mod shipping;

/// One service's reaction to the events it consumes.
pub trait Handler: Send + Sync + 'static {
    /// Tables this service keeps besides the inbox and the outbox.
    fn schema(&self) -> &'static [&'static str];

    /// Applies `incoming` inside `tx`; returns the events to publish. An
    /// `Err` rolls the transaction back and the message is retried.
    fn handle(
        &self,
        tx: &mut SqliteConnection,
        incoming: &Envelope,
        faults: &FaultState,
    ) -> impl Future<Output = anyhow::Result<Vec<Envelope>>> + Send;
}

/// The error for an event a service does not consume: a routing mistake,
/// dead-lettered after its retries so that it is seen.
fn unexpected(service: &str, incoming: &Envelope) -> anyhow::Error {
    anyhow::anyhow!(
        "{service} does not handle {} events (check the queue bindings)",
        incoming.event.name()
    )
}

/// Whether a fault with probability `rate` strikes this time.
fn strikes(rate: f64) -> bool {
    use rand::Rng;
    rate > 0.0 && rand::rng().random_bool(rate.clamp(0.0, 1.0))
}
