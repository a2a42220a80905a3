//! The shop's wire format.
//!
//! Every message on `shop.events` has a JSON body, an [`Envelope`]:
//!
//! ```json
//! {"schema_version":1,"order_id":"…","occurred_at":"2026-11-23T19:40:00Z",
//!  "event_type":"OrderPlaced","data":{"customer":"ada","items":[…],"total_cents":1299}}
//! ```
//!
//! and these AMQP properties: `message_id` (a UUID), `correlation_id` (the
//! order id), `type` (the event name, as in `event_type`), `timestamp`,
//! `app_id` (the publishing service), `content_type` (`application/json`),
//! persistent delivery, and the W3C `traceparent`/`tracestate` headers. The
//! routing key is [`ShopEvent::routing_key`].

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;

/// One message body: the event and the order it belongs to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    /// Bumped when a field changes meaning; readers reject versions they do not know.
    pub schema_version: u32,
    /// The business key: every event of one order carries it.
    pub order_id: Uuid,
    /// When the publishing service decided the event.
    pub occurred_at: DateTime<Utc>,
    /// The event itself, tagged by `event_type`.
    #[serde(flatten)]
    pub event: ShopEvent,
}

impl Envelope {
    /// Wraps an event of `order_id`, stamped now.
    pub fn new(order_id: Uuid, event: ShopEvent) -> Self {
        Self {
            schema_version: SCHEMA_VERSION,
            order_id,
            occurred_at: Utc::now(),
            event,
        }
    }

    /// Parses a message body, rejecting unknown schema versions.
    pub fn from_body(body: &[u8]) -> Result<Self, DecodeError> {
        #[derive(Deserialize)]
        struct Version {
            schema_version: u32,
        }
        let version: Version = serde_json::from_slice(body).map_err(DecodeError::Malformed)?;
        if version.schema_version != SCHEMA_VERSION {
            return Err(DecodeError::UnknownVersion(version.schema_version));
        }
        serde_json::from_slice(body).map_err(DecodeError::Malformed)
    }

    /// Serializes the envelope as the message body.
    pub fn to_body(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an envelope always serializes")
    }
}

/// Why a message body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed message body: {0}")]
    Malformed(serde_json::Error),
    /// A schema version this build does not know.
    #[error("unknown schema_version {0} (this build reads {SCHEMA_VERSION})")]
    UnknownVersion(u32),
}

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LineItem {
    /// Stock keeping unit, e.g. `book-1`.
    pub sku: String,
    /// How many units; at least one.
    pub quantity: u32,
    /// Price of one unit in cents.
    pub price_cents: i64,
}

/// Every event of the shop, tagged by its name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event_type", content = "data")]
pub enum ShopEvent {
    /// The order service accepted an order.
    OrderPlaced {
        customer: String,
        items: Vec<LineItem>,
        total_cents: i64,
    },
    /// The payment service charged the customer.
    PaymentProcessed {
        payment_id: Uuid,
        customer: String,
        items: Vec<LineItem>,
        amount_cents: i64,
    },
    /// The payment service declined the charge.
    PaymentFailed { reason: String },
    /// The payment service gave the money back (compensation).
    PaymentRefunded {
        payment_id: Uuid,
        amount_cents: i64,
        reason: String,
    },
    /// The inventory service reserved every line.
    InventoryReserved {
        reservation_id: Uuid,
        customer: String,
        items: Vec<LineItem>,
    },
    /// The inventory service could not reserve a line.
    InventoryFailed { sku: String, reason: String },
    /// The shipping service handed the parcel to a carrier.
    OrderShipped {
        tracking_number: String,
        carrier: String,
    },
    /// The order service closed the order successfully.
    OrderCompleted {},
    /// The order service closed the order unsuccessfully.
    OrderCancelled { reason: String },
}

impl ShopEvent {
    /// The event's name, also the AMQP `type` property.
    pub fn name(&self) -> &'static str {
        match self {
            ShopEvent::OrderPlaced { .. } => "OrderPlaced",
            ShopEvent::PaymentProcessed { .. } => "PaymentProcessed",
            ShopEvent::PaymentFailed { .. } => "PaymentFailed",
            ShopEvent::PaymentRefunded { .. } => "PaymentRefunded",
            ShopEvent::InventoryReserved { .. } => "InventoryReserved",
            ShopEvent::InventoryFailed { .. } => "InventoryFailed",
            ShopEvent::OrderShipped { .. } => "OrderShipped",
            ShopEvent::OrderCompleted { .. } => "OrderCompleted",
            ShopEvent::OrderCancelled { .. } => "OrderCancelled",
        }
    }

    /// The routing key on `shop.events`: `<aggregate>.<past tense>`.
    pub fn routing_key(&self) -> &'static str {
        routing_key_of(self.name()).expect("every event has a routing key")
    }
}

/// Routing key of an event name, `None` for a name the shop does not know.
pub fn routing_key_of(event_name: &str) -> Option<&'static str> {
    Some(match event_name {
        "OrderPlaced" => "order.placed",
        "PaymentProcessed" => "payment.processed",
        "PaymentFailed" => "payment.failed",
        "PaymentRefunded" => "payment.refunded",
        "InventoryReserved" => "inventory.reserved",
        "InventoryFailed" => "inventory.failed",
        "OrderShipped" => "order.shipped",
        "OrderCompleted" => "order.completed",
        "OrderCancelled" => "order.cancelled",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_round_trips_with_flat_tag() {
        let env = Envelope::new(
            Uuid::new_v4(),
            ShopEvent::PaymentFailed {
                reason: "card declined".into(),
            },
        );
        let body = env.to_body();
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(json["event_type"], "PaymentFailed");
        assert_eq!(json["data"]["reason"], "card declined");
        assert_eq!(json["schema_version"], 1);
        assert_eq!(Envelope::from_body(&body).unwrap(), env);
    }

    #[test]
    fn rejects_garbage_and_unknown_versions() {
        assert!(matches!(
            Envelope::from_body(b"{not json"),
            Err(DecodeError::Malformed(_))
        ));
        let future = br#"{"schema_version":7,"order_id":"x"}"#;
        let err = Envelope::from_body(future).unwrap_err();
        assert!(
            err.to_string().contains("unknown schema_version 7"),
            "{err}"
        );
    }

    #[test]
    fn routing_keys_follow_event_names() {
        let ev = ShopEvent::OrderCompleted {};
        assert_eq!(ev.routing_key(), "order.completed");
        assert_eq!(routing_key_of("InventoryFailed"), Some("inventory.failed"));
        assert_eq!(routing_key_of("Nope"), None);
    }
}
