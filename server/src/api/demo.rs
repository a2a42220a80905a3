//! The demo shop's controls, only while `flowscope demo` runs the shop: its
//! fault switches, orders on demand and the load generator's rate. Changes
//! need the operator role and are audited.

use axum::extract::State;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::{Extension, Json};
use flowscope_demo::faults::{FaultCommand, FaultReply, send_command};
use flowscope_demo::load::{LoadControl, check_count, place_orders};
use flowscope_model::now_unix_us;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use crate::audit::AuditEntry;

/// How long the shop's services get to answer a fault command.
const FAULT_REPLY_WAIT: std::time::Duration = std::time::Duration::from_millis(1500);

/// The demo shop beside this server, and what of it the server can steer.
#[derive(Debug, Clone)]
pub struct DemoShop {
    /// The shop's vhost: fault commands go to its `shop.control` exchange.
    pub amqp_url: String,
    /// The order API's base URL, when this server runs the shop.
    pub order_url: Option<String>,
    /// The load generator's rate, when this server runs the generator.
    pub load: Option<LoadControl>,
}

impl DemoShop {
    /// A shop whose fault switches are all this server can reach.
    pub fn amqp_only(amqp_url: String) -> Self {
        Self {
            amqp_url,
            order_url: None,
            load: None,
        }
    }
}

/// The shop, or 404 when none runs here.
fn shop(state: &AppState) -> ApiResult<&DemoShop> {
    state.demo.as_ref().ok_or_else(|| {
        ApiError::not_found("the demo shop is not running here (start it with `flowscope demo`)")
    })
}

fn conflict(message: &str) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        message: message.to_owned(),
    }
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> ApiResult<T> {
    body.map(|Json(b)| b)
        .map_err(|e| ApiError::bad_request(format!("unreadable request body: {}", e.body_text())))
}

fn audit(state: &AppState, caller: Caller, action: &str, count: u64, detail: String) {
    state.audit.record(AuditEntry {
        at_unix_us: now_unix_us(),
        who: caller.name,
        action: action.into(),
        vhost: String::new(),
        queue: String::new(),
        count,
        detail,
    });
}

async fn send(shop: &DemoShop, command: FaultCommand) -> ApiResult<Vec<FaultReply>> {
    send_command(&shop.amqp_url, command, FAULT_REPLY_WAIT)
        .await
        .map_err(|e| ApiError::unavailable("the demo shop's control exchange", e))
}

/// `GET /api/demo`: the load rate and the fault switches as they stand.
pub async fn show(State(state): State<AppState>) -> ApiResult<Json<Value>> {
    let shop = shop(&state)?;
    let replies = send(shop, FaultCommand::Show).await?;
    Ok(Json(json!({
        "rate": shop.load.as_ref().map(LoadControl::rate),
        "can_place_orders": shop.order_url.is_some(),
        "faults": replies.first().map(|r| &r.state),
        "answered": replies.iter().map(|r| &r.service).collect::<Vec<_>>(),
    })))
}

/// `POST /api/demo/faults`: flips a fault switch.
pub async fn fault(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    command: Result<Json<FaultCommand>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let shop = shop(&state)?;
    let command = body(command)?;
    let replies = send(shop, command).await?;
    if let Some(err) = replies.iter().find_map(|r| r.error.clone()) {
        return Err(ApiError::bad_request(err));
    }
    let detail = serde_json::to_string(&command).unwrap_or_default();
    audit(&state, caller, "demo_fault", replies.len() as u64, detail);
    Ok(Json(json!({ "answered": replies })))
}

/// Body of `POST /api/demo/orders`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersRequest {
    /// 1 to 1000.
    count: u64,
}

/// `POST /api/demo/orders`: places `count` random orders now.
pub async fn orders(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<OrdersRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let order_url = shop(&state)?.order_url.clone().ok_or_else(|| {
        conflict("this server does not run the shop's order API; `flowscope demo` does")
    })?;
    let request = body(request)?;
    let count = check_count(request.count).map_err(ApiError::bad_request)?;
    let placed = place_orders(&order_url, count)
        .await
        .map_err(|e| ApiError::unavailable("the shop's order API", e))?;
    let num_placed = placed.order_ids.len() as u64;
    audit(
        &state,
        caller,
        "demo_orders",
        num_placed,
        format!("{count} asked"),
    );
    if num_placed == 0 {
        return Err(ApiError {
            status: StatusCode::BAD_GATEWAY,
            message: format!(
                "the shop's order API took none of the {count} orders: {}",
                placed.first_error.unwrap_or_default()
            ),
        });
    }
    Ok(Json(json!({
        "placed": num_placed,
        "failed": placed.num_failed,
        "order_ids": placed.order_ids,
    })))
}

/// Body of `PUT /api/demo/load`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoadRequest {
    /// Orders per second, 0 (stop) to 500.
    rate: f64,
}

/// `PUT /api/demo/load`: sets the load generator's rate.
pub async fn set_load(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    request: Result<Json<LoadRequest>, JsonRejection>,
) -> ApiResult<Json<Value>> {
    let load = shop(&state)?.load.clone().ok_or_else(|| {
        conflict("this server does not run the shop's load generator; `flowscope demo` does")
    })?;
    let request = body(request)?;
    load.set_rate(request.rate).map_err(ApiError::bad_request)?;
    audit(
        &state,
        caller,
        "demo_load",
        0,
        format!("rate {}/s", request.rate),
    );
    Ok(Json(json!({ "rate": load.rate() })))
}
