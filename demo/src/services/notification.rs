//! notification: tells the customer about everything that happens to an order.
//! Consumes every event on `shop.events`; publishes nothing.

use sqlx::SqliteConnection;

use super::Handler;
use crate::events::{Envelope, ShopEvent};
use crate::faults::FaultState;

/// The notification service.
#[derive(Debug, Default)]
pub struct Notification;

impl Handler for Notification {
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS notifications (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                order_id TEXT NOT NULL,
                event_type TEXT NOT NULL,
                text TEXT NOT NULL,
                created_at TEXT NOT NULL
            )",
            "CREATE INDEX IF NOT EXISTS notifications_order ON notifications (order_id)",
        ]
    }

    async fn handle(
        &self,
        tx: &mut SqliteConnection,
        incoming: &Envelope,
        _faults: &FaultState,
    ) -> anyhow::Result<Vec<Envelope>> {
        sqlx::query(
            "INSERT INTO notifications (order_id, event_type, text, created_at) VALUES (?, ?, ?, ?)",
        )
        .bind(incoming.order_id.to_string())
        .bind(incoming.event.name())
        .bind(text_for(&incoming.event))
        .bind(chrono::Utc::now().to_rfc3339())
        .execute(&mut *tx)
        .await?;
        Ok(vec![])
    }
}

/// What the customer is told.
fn text_for(event: &ShopEvent) -> String {
    let money = |cents: i64| format!("{}.{:02}", cents / 100, cents % 100);
    match event {
        ShopEvent::OrderPlaced { total_cents, .. } => {
            format!("We received your order of {}.", money(*total_cents))
        }
        ShopEvent::PaymentProcessed { amount_cents, .. } => {
            format!("Your payment of {} went through.", money(*amount_cents))
        }
        ShopEvent::PaymentFailed { reason } => format!("Your payment failed: {reason}."),
        ShopEvent::PaymentRefunded { amount_cents, .. } => {
            format!("We refunded {}.", money(*amount_cents))
        }
        ShopEvent::InventoryReserved { .. } => "Your items are reserved.".into(),
        ShopEvent::InventoryFailed { sku, .. } => format!("Sorry, {sku} is out of stock."),
        ShopEvent::OrderShipped {
            tracking_number,
            carrier,
        } => format!("Shipped with {carrier}, tracking number {tracking_number}."),
        ShopEvent::OrderCompleted {} => "Your order is complete.".into(),
        ShopEvent::OrderCancelled { reason } => format!("Your order was cancelled: {reason}."),
    }
}
