//! shipping: ships reserved orders. `InventoryReserved` → `OrderShipped`.

use rand::Rng;
use sqlx::SqliteConnection;

use super::{Handler, unexpected};
use crate::events::{Envelope, ShopEvent};
use crate::faults::FaultState;

const CARRIERS: [&str; 3] = ["DHL", "UPS", "PostNL"];

/// The shipping service.
#[derive(Debug, Default)]
pub struct Shipping;

impl Handler for Shipping {
    fn schema(&self) -> &'static [&'static str] {
        &["CREATE TABLE IF NOT EXISTS shipments (
            order_id TEXT PRIMARY KEY,
            tracking_number TEXT NOT NULL,
            carrier TEXT NOT NULL,
            shipped_at TEXT NOT NULL
        )"]
    }

    async fn handle(
        &self,
        tx: &mut SqliteConnection,
        incoming: &Envelope,
        _faults: &FaultState,
    ) -> anyhow::Result<Vec<Envelope>> {
        let ShopEvent::InventoryReserved { .. } = &incoming.event else {
            return Err(unexpected("shipping", incoming));
        };
        let (tracking_number, carrier) = {
            let mut rng = rand::rng();
            (
                format!("FS{:010}", rng.random_range(0..10_000_000_000u64)),
                CARRIERS[rng.random_range(0..CARRIERS.len())],
            )
        };
        sqlx::query("INSERT INTO shipments VALUES (?, ?, ?, ?)")
            .bind(incoming.order_id.to_string())
            .bind(&tracking_number)
            .bind(carrier)
            .bind(chrono::Utc::now().to_rfc3339())
            .execute(&mut *tx)
            .await?;
        Ok(vec![Envelope::new(
            incoming.order_id,
            ShopEvent::OrderShipped {
                tracking_number,
                carrier: carrier.to_owned(),
            },
        )])
    }
}
