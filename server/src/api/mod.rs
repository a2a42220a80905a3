//! The HTTP API: JSON under `/api`, the live stream, `/metrics`, `/healthz`.
//!
//! | path | what |
//! |---|---|
//! | `GET /api/flows` | flows, filtered (`status`, `service`, `event_type`, `variant`, `q`, `since`, `until` in Unix µs) and paged (`limit`, `offset`); `variant` is a process-map variant: the flow's event types in order, comma-separated |
//! | `GET /api/flows/{id}` | one flow with hops, messages, spans and reason |
//! | `GET /api/lookup/{key}` | the flows of an order key, message id or trace id |
//! | `GET /api/topology` | services, exchanges, queues, DLQs and the edges between them |
//! | `GET /api/queues`, `GET /api/queues/{vhost}/{queue}` | queues with depth history |
//! | `GET /api/queues/{vhost}/{queue}/dead-letters` | a DLQ's messages grouped by reason and failing service |
//! | `POST /api/queues/{vhost}/{queue}/redrive`, `…/purge` | operator actions, audited |
//! | `GET /api/stuck` | stuck flows grouped by where and why |
//! | `GET /api/process-map`, `GET /api/propagation` | learned process, trace propagation report |
//! | `GET /api/alerts`, `GET /api/alerts/rules` | alerts and rules |
//! | `GET /api/demo` | under `flowscope demo`: the load rate and the fault switches as they stand |
//! | `POST /api/demo/faults` | flip a demo fault switch (operator, audited) |
//! | `POST /api/demo/orders` | `{"count": 1..=1000}`: place random orders now (operator, audited) |
//! | `PUT /api/demo/load` | `{"rate": 0..=500}`: the load generator's orders per second, 0 stops it (operator, audited) |
//! | `GET /api/ui-config` | what the UI needs: trace link template (`[ui]`), demo, whether tokens are required, the caller's role |
//! | `GET /api/stream` | Server-Sent Events: snapshot, then updates |
//! | `GET /api/openapi.json` | this API in OpenAPI 3 |

pub mod auth;
pub mod demo;
pub mod error;
mod flows;
mod queues;
mod system;
pub mod ui_config;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::{Router, middleware};
use flowscope_collectors::config::BrokerConfig;
use flowscope_collectors::pipeline::Metrics;
use flowscope_model::LiveUpdate;
use tokio::sync::broadcast;

use crate::audit::AuditLog;
use crate::live::SharedLive;
use crate::store::Store;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    pub live: SharedLive,
    pub bus: broadcast::Sender<LiveUpdate>,
    pub store: Option<Store>,
    pub metrics: Arc<Metrics>,
    pub auth: auth::Auth,
    pub broker: BrokerConfig,
    pub audit: Arc<AuditLog>,
    /// The demo shop, when `flowscope demo` runs it beside the server.
    pub demo: Option<demo::DemoShop>,
    /// `[ui]`: what the web UI is told.
    pub ui: ui_config::UiConfig,
    /// Cancelled when the server stops: live streams end.
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// The API router (tests call it with `oneshot`).
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/flows", get(flows::list))
        .route("/flows/{id}", get(flows::one))
        .route("/lookup/{key}", get(flows::lookup))
        .route("/stuck", get(flows::stuck))
        .route("/process-map", get(flows::process_map))
        .route("/propagation", get(flows::propagation))
        .route("/topology", get(system::topology))
        .route("/queues", get(queues::list))
        .route("/queues/{vhost}/{queue}", get(queues::one))
        .route(
            "/queues/{vhost}/{queue}/dead-letters",
            get(queues::dead_letters),
        )
        .route("/queues/{vhost}/{queue}/redrive", post(queues::redrive))
        .route("/queues/{vhost}/{queue}/purge", post(queues::purge))
        .route("/alerts", get(system::alerts))
        .route("/alerts/rules", get(system::rules))
        .route("/audit", get(system::audit))
        .route("/demo", get(demo::show))
        .route("/demo/faults", post(demo::fault))
        .route("/demo/orders", post(demo::orders))
        .route("/demo/load", put(demo::set_load))
        .route("/ui-config", get(ui_config::ui_config))
        .route("/stream", get(system::stream))
        .route_layer(middleware::from_fn_with_state(
            state.auth.clone(),
            auth::require,
        ))
        .route("/openapi.json", get(system::openapi))
        .fallback(|| async {
            error::ApiError::not_found("no such API path; see /api/openapi.json")
        });
    Router::new()
        .nest("/api", api)
        .route("/metrics", get(system::metrics))
        .route("/healthz", get(system::healthz))
        .with_state(state)
}
