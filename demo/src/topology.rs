//! Exchanges, queues and bindings of the shop, declared idempotently.
//!
//! ```text
//! shop.events (topic) ──order.placed──────────────► payment.orders      ─┐
//!                     ──inventory.failed──────────► payment.orders       │ x-dead-letter-exchange = shop.dlx
//!                     ──payment.processed─────────► inventory.payments   │ x-dead-letter-routing-key = <queue>
//!                     ──inventory.reserved────────► shipping.inventory   │
//!                     ──order.shipped, payment.failed,                   │
//!                       payment.refunded──────────► order.outcomes       │
//!                     ──#─────────────────────────► notification.events ─┘
//! shop.dlx (direct)   ──<queue>───────────────────► <queue>.dlq
//! shop.control (fanout) ──────────────────────────► one exclusive, bounded queue per running service
//! ```
//!
//! Dead letters keep their original routing key in `x-death[].routing-keys`;
//! the per-queue dead-letter routing key only steers them to the right DLQ.

use std::fmt;
use std::str::FromStr;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{Channel, ExchangeKind};
use serde::{Deserialize, Serialize};

/// The topic exchange every business event is published to.
pub const EVENTS_EXCHANGE: &str = "shop.events";
/// The direct exchange that routes dead letters to `<queue>.dlq`.
pub const DLX_EXCHANGE: &str = "shop.dlx";
/// The fanout exchange that carries fault-switch commands to every service.
pub const CONTROL_EXCHANGE: &str = "shop.control";
/// A work queue holds at most this many messages; beyond it the oldest is
/// dead-lettered (reason `maxlen`), so a paused consumer cannot fill the broker.
pub const MAX_QUEUE_LENGTH: i64 = 100_000;
/// A dead-letter queue holds at most this many messages (oldest dropped).
pub const MAX_DLQ_LENGTH: i64 = 100_000;
/// A control queue holds at most this many commands.
pub const MAX_CONTROL_QUEUE_LENGTH: i64 = 100;

/// The five services of the shop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Order,
    Payment,
    Inventory,
    Shipping,
    Notification,
}

impl Service {
    /// Every service, in the order an order flows through them.
    pub const ALL: [Service; 5] = [
        Service::Order,
        Service::Payment,
        Service::Inventory,
        Service::Shipping,
        Service::Notification,
    ];

    /// The service name: connection name, `app_id`, `service.name`.
    pub fn name(self) -> &'static str {
        match self {
            Service::Order => "order",
            Service::Payment => "payment",
            Service::Inventory => "inventory",
            Service::Shipping => "shipping",
            Service::Notification => "notification",
        }
    }

    /// The queue this service consumes.
    pub fn queue(self) -> &'static str {
        match self {
            Service::Order => "order.outcomes",
            Service::Payment => "payment.orders",
            Service::Inventory => "inventory.payments",
            Service::Shipping => "shipping.inventory",
            Service::Notification => "notification.events",
        }
    }

    /// The routing keys its queue is bound with on `shop.events`.
    pub fn bindings(self) -> &'static [&'static str] {
        match self {
            Service::Order => &["order.shipped", "payment.failed", "payment.refunded"],
            Service::Payment => &["order.placed", "inventory.failed"],
            Service::Inventory => &["payment.processed"],
            Service::Shipping => &["inventory.reserved"],
            Service::Notification => &["#"],
        }
    }

    /// The dead-letter queue of its queue.
    pub fn dead_letter_queue(self) -> String {
        dead_letter_queue_of(self.queue())
    }
}

/// `<queue>.dlq`.
pub fn dead_letter_queue_of(queue: &str) -> String {
    format!("{queue}.dlq")
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Service {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|svc| svc.name() == s)
            .ok_or_else(|| {
                format!("unknown service {s:?}; expected one of order, payment, inventory, shipping, notification")
            })
    }
}

/// Declares the whole shop topology. Idempotent: every service calls it at
/// start, so whichever starts first, no message is published into the void.
pub async fn declare(channel: &Channel) -> lapin::Result<()> {
    declare_exchange(channel, EVENTS_EXCHANGE, ExchangeKind::Topic).await?;
    declare_exchange(channel, DLX_EXCHANGE, ExchangeKind::Direct).await?;
    declare_exchange(channel, CONTROL_EXCHANGE, ExchangeKind::Fanout).await?;
    for service in Service::ALL {
        let queue = service.queue();
        let dlq = service.dead_letter_queue();
        let mut dlq_args = FieldTable::default();
        dlq_args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(MAX_DLQ_LENGTH),
        );
        declare_durable_queue(channel, &dlq, dlq_args).await?;
        bind(channel, &dlq, DLX_EXCHANGE, queue).await?;

        let mut args = FieldTable::default();
        args.insert(
            "x-dead-letter-exchange".into(),
            AMQPValue::LongString(DLX_EXCHANGE.into()),
        );
        args.insert(
            "x-dead-letter-routing-key".into(),
            AMQPValue::LongString(queue.into()),
        );
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(MAX_QUEUE_LENGTH),
        );
        declare_durable_queue(channel, queue, args).await?;
        for key in service.bindings() {
            bind(channel, queue, EVENTS_EXCHANGE, key).await?;
        }
    }
    Ok(())
}

async fn declare_exchange(channel: &Channel, name: &str, kind: ExchangeKind) -> lapin::Result<()> {
    let options = ExchangeDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .exchange_declare(name.into(), kind, options, FieldTable::default())
        .await
}

async fn declare_durable_queue(
    channel: &Channel,
    name: &str,
    args: FieldTable,
) -> lapin::Result<()> {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await
        .map(drop)
}

async fn bind(channel: &Channel, queue: &str, exchange: &str, key: &str) -> lapin::Result<()> {
    channel
        .queue_bind(
            ShortString::from(queue),
            exchange.into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_event_reaches_notification_and_exactly_one_business_queue() {
        // Each routing key of a business event is consumed by exactly one
        // service besides notification, so one order is one chain.
        for key in [
            "order.placed",
            "payment.processed",
            "payment.failed",
            "payment.refunded",
            "inventory.reserved",
            "inventory.failed",
            "order.shipped",
        ] {
            let consumers: Vec<_> = Service::ALL
                .into_iter()
                .filter(|s| *s != Service::Notification && s.bindings().contains(&key))
                .collect();
            assert_eq!(consumers.len(), 1, "{key} consumed by {consumers:?}");
        }
    }

    #[test]
    fn service_names_parse_back() {
        for svc in Service::ALL {
            assert_eq!(svc.name().parse::<Service>().unwrap(), svc);
        }
        let err = "billing".parse::<Service>().unwrap_err();
        assert!(err.contains("expected one of"), "{err}");
    }
}
