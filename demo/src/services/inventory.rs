//! inventory: reserves stock for paid orders.
//!
//! `PaymentProcessed` → `InventoryReserved`, or `InventoryFailed` when a line
//! cannot be reserved: real shortage, or the `out_of_stock_rate` fault switch.

use sqlx::{Row, SqliteConnection};
use uuid::Uuid;

use super::{Handler, strikes, unexpected};
use crate::events::{Envelope, ShopEvent};
use crate::faults::FaultState;

/// Units a SKU starts with the first time it is seen.
pub const INITIAL_STOCK: i64 = 1_000_000;

/// The inventory service.
#[derive(Debug, Default)]
pub struct Inventory;

impl Handler for Inventory {
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS stock (
                sku TEXT PRIMARY KEY,
                available INTEGER NOT NULL CHECK (available >= 0)
            )",
            "CREATE TABLE IF NOT EXISTS reservations (
                order_id TEXT PRIMARY KEY,
                reservation_id TEXT NOT NULL,
                items TEXT NOT NULL,
                reserved_at TEXT NOT NULL
            )",
        ]
    }

    async fn handle(
        &self,
        tx: &mut SqliteConnection,
        incoming: &Envelope,
        faults: &FaultState,
    ) -> anyhow::Result<Vec<Envelope>> {
        let ShopEvent::PaymentProcessed {
            customer, items, ..
        } = &incoming.event
        else {
            return Err(unexpected("inventory", incoming));
        };
        let order_id = incoming.order_id;
        let fail = |sku: &str, reason: String| {
            Ok(vec![Envelope::new(
                order_id,
                ShopEvent::InventoryFailed {
                    sku: sku.to_owned(),
                    reason,
                },
            )])
        };
        if let Some(first) = items.first()
            && strikes(faults.out_of_stock_rate)
        {
            return fail(&first.sku, "out of stock".into());
        }
        for item in items {
            sqlx::query("INSERT OR IGNORE INTO stock (sku, available) VALUES (?, ?)")
                .bind(&item.sku)
                .bind(INITIAL_STOCK)
                .execute(&mut *tx)
                .await?;
            let available: i64 = sqlx::query("SELECT available FROM stock WHERE sku = ?")
                .bind(&item.sku)
                .fetch_one(&mut *tx)
                .await?
                .get("available");
            if available < i64::from(item.quantity) {
                return fail(
                    &item.sku,
                    format!("out of stock: {} wanted, {available} left", item.quantity),
                );
            }
        }
        for item in items {
            sqlx::query("UPDATE stock SET available = available - ? WHERE sku = ?")
                .bind(i64::from(item.quantity))
                .bind(&item.sku)
                .execute(&mut *tx)
                .await?;
        }
        let reservation_id = Uuid::new_v4();
        sqlx::query("INSERT INTO reservations VALUES (?, ?, ?, ?)")
            .bind(order_id.to_string())
            .bind(reservation_id.to_string())
            .bind(serde_json::to_string(items)?)
            .bind(chrono::Utc::now().to_rfc3339())
            .execute(&mut *tx)
            .await?;
        Ok(vec![Envelope::new(
            order_id,
            ShopEvent::InventoryReserved {
                reservation_id,
                customer: customer.clone(),
                items: items.clone(),
            },
        )])
    }
}
