//! payment: charges orders, declines some, refunds when inventory fails.
//!
//! - `OrderPlaced` → `PaymentProcessed`, or `PaymentFailed` when declined
//!   (fault switch `decline_rate`).
//! - `InventoryFailed` → `PaymentRefunded` (compensation) when the order was charged.
//!
//! One row per order in `payments`: an order is never charged twice, even
//! if its `OrderPlaced` arrives under two message ids.

use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::{Handler, strikes, unexpected};
use crate::events::{Envelope, ShopEvent};
use crate::faults::FaultState;

/// The payment service.
#[derive(Debug, Default)]
pub struct Payment;

impl Handler for Payment {
    fn schema(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS payments (
            order_id TEXT PRIMARY KEY,
            payment_id TEXT NOT NULL,
            customer TEXT NOT NULL,
            amount_cents INTEGER NOT NULL,
            status TEXT NOT NULL CHECK (status IN ('charged', 'declined', 'refunded')),
            updated_at TEXT NOT NULL
        )"]
    }

    async fn handle(
        &self,
        tx: &mut SqliteConnection,
        incoming: &Envelope,
        faults: &FaultState,
    ) -> anyhow::Result<Vec<Envelope>> {
        let order_id = incoming.order_id;
        let now = chrono::Utc::now().to_rfc3339();
        match &incoming.event {
            ShopEvent::OrderPlaced {
                customer,
                items,
                total_cents,
            } => {
                let existing = sqlx::query("SELECT status FROM payments WHERE order_id = ?")
                    .bind(order_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await?;
                if existing.is_some() {
                    tracing::info!(%order_id, "order already has a payment; nothing to do");
                    return Ok(vec![]);
                }
                let declined = strikes(faults.decline_rate);
                let payment_id = Uuid::new_v4();
                sqlx::query("INSERT INTO payments VALUES (?, ?, ?, ?, ?, ?)")
                    .bind(order_id.to_string())
                    .bind(payment_id.to_string())
                    .bind(customer)
                    .bind(total_cents)
                    .bind(if declined { "declined" } else { "charged" })
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                let event = if declined {
                    ShopEvent::PaymentFailed {
                        reason: "card declined by issuer".into(),
                    }
                } else {
                    ShopEvent::PaymentProcessed {
                        payment_id,
                        customer: customer.clone(),
                        items: items.clone(),
                        amount_cents: *total_cents,
                    }
                };
                Ok(vec![Envelope::new(order_id, event)])
            }
            ShopEvent::InventoryFailed { sku, reason } => {
                let charged = sqlx::query(
                    "SELECT payment_id, amount_cents FROM payments WHERE order_id = ? AND status = 'charged'",
                )
                .bind(order_id.to_string())
                .fetch_optional(&mut *tx)
                .await?;
                let Some(charged) = charged else {
                    return Ok(vec![]);
                };
                sqlx::query(
                    "UPDATE payments SET status = 'refunded', updated_at = ? WHERE order_id = ?",
                )
                .bind(&now)
                .bind(order_id.to_string())
                .execute(&mut *tx)
                .await?;
                let payment_id: String = charged.get("payment_id");
                Ok(vec![Envelope::new(
                    order_id,
                    ShopEvent::PaymentRefunded {
                        payment_id: payment_id.parse()?,
                        amount_cents: charged.get("amount_cents"),
                        reason: format!("inventory failed for {sku}: {reason}"),
                    },
                )])
            }
            _ => Err(unexpected("payment", incoming)),
        }
    }
}
