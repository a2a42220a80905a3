//! order: takes orders over HTTP and closes them when the outcome arrives.
//!
//! - `POST /orders` stores the order and its `OrderPlaced` event in one
//!   transaction (transactional outbox); the relay publishes it with confirms.
//! - `GET /orders/{id}` returns the order, its status and its history.
//! - Consumes `OrderShipped` → `completed` + `OrderCompleted`, and
//!   `PaymentFailed` / `PaymentRefunded` → `cancelled` + `OrderCancelled`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{Row, SqliteConnection};
use tracing::Instrument;
use uuid::Uuid;

use super::{Handler, unexpected};
use crate::events::{Envelope, LineItem, ShopEvent};
use crate::faults::FaultState;
use crate::relay::{RelayHandle, current_trace_context};
use crate::store::{self, Store};

/// Most lines one order may have.
pub const MAX_ITEMS: usize = 100;

/// The order service's event handler.
#[derive(Debug, Default)]
pub struct Order;

impl Handler for Order {
    fn schema(&self) -> &'static [&'static str] {
        &[
            "CREATE TABLE IF NOT EXISTS orders (
                order_id TEXT PRIMARY KEY,
                customer TEXT NOT NULL,
                items TEXT NOT NULL,
                total_cents INTEGER NOT NULL,
                status TEXT NOT NULL CHECK (status IN ('placed', 'completed', 'cancelled')),
                reason TEXT,
                created_at TEXT NOT NULL,
                updated_at TEXT NOT NULL
            )",
            "CREATE TABLE IF NOT EXISTS order_history (
                id INTEGER PRIMARY KEY AUTOINCREMENT,
                order_id TEXT NOT NULL,
                status TEXT NOT NULL,
                event_type TEXT NOT NULL,
                detail TEXT,
                at TEXT NOT NULL
            )",
            "CREATE INDEX IF NOT EXISTS order_history_order ON order_history (order_id)",
        ]
    }

    async fn handle(
        &self,
        tx: &mut SqliteConnection,
        incoming: &Envelope,
        _faults: &FaultState,
    ) -> anyhow::Result<Vec<Envelope>> {
        let (status, detail, outcome) = match &incoming.event {
            ShopEvent::OrderShipped {
                tracking_number,
                carrier,
            } => (
                "completed",
                format!("shipped with {carrier}, tracking number {tracking_number}"),
                ShopEvent::OrderCompleted {},
            ),
            ShopEvent::PaymentFailed { reason } => {
                let reason = format!("payment failed: {reason}");
                (
                    "cancelled",
                    reason.clone(),
                    ShopEvent::OrderCancelled { reason },
                )
            }
            ShopEvent::PaymentRefunded { reason, .. } => {
                let reason = format!("payment refunded: {reason}");
                (
                    "cancelled",
                    reason.clone(),
                    ShopEvent::OrderCancelled { reason },
                )
            }
            _ => return Err(unexpected("order", incoming)),
        };
        let order_id = incoming.order_id.to_string();
        let current: Option<String> = sqlx::query("SELECT status FROM orders WHERE order_id = ?")
            .bind(&order_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.get("status"));
        match current.as_deref() {
            None => anyhow::bail!("order {order_id} is unknown to the order service"),
            Some("placed") => {}
            Some(done) => {
                tracing::info!(%order_id, status = done, "order already closed; nothing to do");
                return Ok(vec![]);
            }
        }
        let now = chrono::Utc::now().to_rfc3339();
        let reason = (status == "cancelled").then_some(&detail);
        sqlx::query("UPDATE orders SET status = ?, reason = ?, updated_at = ? WHERE order_id = ?")
            .bind(status)
            .bind(reason)
            .bind(&now)
            .bind(&order_id)
            .execute(&mut *tx)
            .await?;
        record_history(
            tx,
            &order_id,
            status,
            incoming.event.name(),
            Some(&detail),
            &now,
        )
        .await?;
        Ok(vec![Envelope::new(incoming.order_id, outcome)])
    }
}

async fn record_history(
    tx: &mut SqliteConnection,
    order_id: &str,
    status: &str,
    event_type: &str,
    detail: Option<&str>,
    at: &str,
) -> sqlx::Result<()> {
    sqlx::query(
        "INSERT INTO order_history (order_id, status, event_type, detail, at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(order_id)
    .bind(status)
    .bind(event_type)
    .bind(detail)
    .bind(at)
    .execute(tx)
    .await?;
    Ok(())
}

/// What `POST /orders` takes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub customer: String,
    pub items: Vec<LineItem>,
    pub total_cents: i64,
}

impl NewOrder {
    /// Checks what a shop must check before taking money.
    fn validate(&self) -> Result<(), String> {
        if self.customer.trim().is_empty() || self.customer.len() > 200 {
            return Err("customer must be 1 to 200 characters".into());
        }
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(format!("an order has 1 to {MAX_ITEMS} items"));
        }
        if let Some(bad) = self
            .items
            .iter()
            .find(|i| i.sku.is_empty() || i.quantity == 0 || i.price_cents < 0)
        {
            return Err(format!(
                "item {:?}: sku must be set, quantity at least 1, price_cents not negative",
                bad.sku
            ));
        }
        let sum: i64 = self
            .items
            .iter()
            .map(|i| i64::from(i.quantity).saturating_mul(i.price_cents))
            .sum();
        if sum != self.total_cents {
            return Err(format!(
                "total_cents {} does not match the items, which add up to {sum}",
                self.total_cents
            ));
        }
        Ok(())
    }
}

/// The HTTP API's shared state.
#[derive(Debug, Clone)]
pub struct OrderApi {
    pub store: Store,
    pub relay: RelayHandle,
}

/// The order service's HTTP API.
pub fn router(api: OrderApi) -> Router {
    Router::new()
        .route("/orders", post(place_order))
        .route("/orders/{id}", get(get_order))
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .with_state(api)
}

/// An API error: a status and a sentence saying what went wrong.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        tracing::error!(error = %err, "order database failed");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "the order database is unavailable; try again".into(),
        )
    }
}

async fn place_order(
    State(api): State<OrderApi>,
    body: Result<Json<NewOrder>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(order) = body.map_err(|e| ApiError(e.status(), e.body_text()))?;
    order
        .validate()
        .map_err(|msg| ApiError(StatusCode::UNPROCESSABLE_ENTITY, msg))?;
    let order_id = Uuid::new_v4();
    let span = tracing::info_span!(
        "POST /orders",
        otel.kind = "server",
        http.request.method = "POST",
        http.route = "/orders",
        shop.order_id = %order_id,
    );
    async {
        store_order(&api.store, order_id, &order).await?;
        api.relay.nudge();
        tracing::debug!(%order_id, customer = %order.customer, total_cents = order.total_cents, "order placed");
        let body = json!({ "order_id": order_id, "status": "placed" });
        let location = format!("/orders/{order_id}");
        Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(body)).into_response())
    }
    .instrument(span)
    .await
}

/// Stores the order and its `OrderPlaced` event in one transaction.
async fn store_order(store: &Store, order_id: Uuid, order: &NewOrder) -> sqlx::Result<()> {
    let now = chrono::Utc::now().to_rfc3339();
    let mut tx = store.pool().begin().await?;
    sqlx::query("INSERT INTO orders VALUES (?, ?, ?, ?, 'placed', NULL, ?, ?)")
        .bind(order_id.to_string())
        .bind(&order.customer)
        .bind(serde_json::to_string(&order.items).expect("items serialize"))
        .bind(order.total_cents)
        .bind(&now)
        .bind(&now)
        .execute(&mut *tx)
        .await?;
    record_history(
        &mut tx,
        &order_id.to_string(),
        "placed",
        "OrderPlaced",
        None,
        &now,
    )
    .await?;
    let placed = Envelope::new(
        order_id,
        ShopEvent::OrderPlaced {
            customer: order.customer.clone(),
            items: order.items.clone(),
            total_cents: order.total_cents,
        },
    );
    store::enqueue(&mut tx, &placed, None, &current_trace_context()).await?;
    tx.commit().await
}

async fn get_order(
    State(api): State<OrderApi>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let order_id: Uuid = id.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{id:?} is not an order id (a UUID)"),
        )
    })?;
    let row = sqlx::query("SELECT * FROM orders WHERE order_id = ?")
        .bind(order_id.to_string())
        .fetch_optional(api.store.pool())
        .await?
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no order {order_id}")))?;
    let history = sqlx::query(
        "SELECT status, event_type, detail, at FROM order_history WHERE order_id = ? ORDER BY id",
    )
    .bind(order_id.to_string())
    .fetch_all(api.store.pool())
    .await?;
    let items: serde_json::Value =
        serde_json::from_str(row.get::<&str, _>("items")).unwrap_or_default();
    let history: Vec<_> = history
        .iter()
        .map(|h| {
            json!({
                "status": h.get::<String, _>("status"),
                "event_type": h.get::<String, _>("event_type"),
                "detail": h.get::<Option<String>, _>("detail"),
                "at": h.get::<String, _>("at"),
            })
        })
        .collect();
    Ok(Json(json!({
        "order_id": order_id,
        "customer": row.get::<String, _>("customer"),
        "items": items,
        "total_cents": row.get::<i64, _>("total_cents"),
        "status": row.get::<String, _>("status"),
        "reason": row.get::<Option<String>, _>("reason"),
        "created_at": row.get::<String, _>("created_at"),
        "updated_at": row.get::<String, _>("updated_at"),
        "history": history,
    }))
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(total: i64) -> NewOrder {
        NewOrder {
            customer: "ada".into(),
            items: vec![LineItem {
                sku: "book-1".into(),
                quantity: 2,
                price_cents: 500,
            }],
            total_cents: total,
        }
    }

    #[test]
    fn validation_explains_what_is_wrong() {
        assert!(order(1000).validate().is_ok());
        let err = order(999).validate().unwrap_err();
        assert!(err.contains("add up to 1000"), "{err}");
        let mut empty = order(0);
        empty.items.clear();
        assert!(empty.validate().unwrap_err().contains("1 to 100 items"));
    }
}
