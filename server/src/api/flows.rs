//! Flows: list, one, lookup, stuck, process map, propagation.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use flowscope_model::{FlowDetail, FlowStatus, FlowSummary, ProcessMap};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, ApiResult};
use crate::correlator::propagation::PropagationReport;
use crate::store::{FlowFilter, Page};

/// Flows per page unless asked.
const DEFAULT_LIMIT: usize = 50;
/// Flows per page at most.
const MAX_LIMIT: usize = 500;

/// Query of `GET /api/flows`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowQuery {
    status: Option<String>,
    service: Option<String>,
    event_type: Option<String>,
    /// A process-map variant: event types in order, comma-separated.
    variant: Option<String>,
    /// Free text: an order key, message id, trace id or flow id.
    q: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    limit: Option<usize>,
    offset: Option<usize>,
}

fn parse_status(status: &str) -> ApiResult<FlowStatus> {
    serde_json::from_value(json!(status)).map_err(|_| {
        ApiError::bad_request(format!(
            "status {status:?} is not one of in_flight, completed, failed, compensated, stuck"
        ))
    })
}

/// `OrderPlaced,PaymentProcessed` → the steps; blank → no filter.
fn parse_variant(text: &str) -> Option<Vec<String>> {
    let steps: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect();
    (!steps.is_empty()).then_some(steps)
}

pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<FlowQuery>,
) -> ApiResult<Json<Page<FlowSummary>>> {
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_LIMIT}"
        )));
    }
    let filter = FlowFilter {
        status: query.status.as_deref().map(parse_status).transpose()?,
        service: query.service,
        event_type: query.event_type,
        variant: query.variant.as_deref().and_then(parse_variant),
        text: query.q,
        since_unix_us: query.since,
        until_unix_us: query.until,
        limit,
        offset: query.offset.unwrap_or(0),
    };
    match &state.store {
        Some(store) => Ok(Json(store.flows(&filter).await?)),
        None => Ok(Json(live_page(&state, &filter))),
    }
}

/// Without a store: filter the live flows.
fn live_page(state: &AppState, f: &FlowFilter) -> Page<FlowSummary> {
    let live = state.live.read().expect("live lock");
    let mut items: Vec<FlowSummary> = live
        .correlator
        .summaries(f.status)
        .filter(|s| f.service.as_ref().is_none_or(|x| s.services.contains(x)))
        .filter(|s| {
            f.event_type
                .as_ref()
                .is_none_or(|x| s.event_types.contains(x))
        })
        .filter(|s| f.variant.as_ref().is_none_or(|v| s.event_types == *v))
        .filter(|s| f.since_unix_us.is_none_or(|t| s.started_unix_us >= t))
        .filter(|s| f.until_unix_us.is_none_or(|t| s.started_unix_us <= t))
        .filter(|s| {
            f.text.as_ref().is_none_or(|t| {
                s.id == *t
                    || s.key.as_deref() == Some(t.as_str())
                    || s.trace_ids.contains(t)
                    || live.correlator.find(t).as_deref() == Some(s.id.as_str())
            })
        })
        .collect();
    items.sort_by_key(|s| std::cmp::Reverse(s.started_unix_us));
    let total = items.len() as u64;
    let items = items.into_iter().skip(f.offset).take(f.limit).collect();
    Page {
        items,
        total,
        offset: f.offset,
        limit: f.limit,
    }
}

pub async fn one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowDetail>> {
    let live = state.live.read().expect("live lock").correlator.flow(&id);
    if let Some(flow) = live {
        return Ok(Json(flow));
    }
    if let Some(store) = &state.store
        && let Some(flow) = store.flow(&id).await?
    {
        return Ok(Json(flow));
    }
    Err(ApiError::not_found(format!(
        "no flow {id:?}; search with /api/lookup/<order key, message id or trace id>"
    )))
}

pub async fn lookup(
    State(state): State<AppState>,
    Path(key): Path<String>,
) -> ApiResult<Json<Value>> {
    let mut ids: Vec<String> = state
        .live
        .read()
        .expect("live lock")
        .correlator
        .find(&key)
        .into_iter()
        .collect();
    if let Some(store) = &state.store {
        for id in store.lookup(&key).await? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    if ids.is_empty() {
        return Err(ApiError::not_found(format!(
            "no flow has the order key, message id or trace id {key:?}"
        )));
    }
    Ok(Json(json!({ "key": key, "flow_ids": ids })))
}

pub async fn stuck(State(state): State<AppState>) -> Json<Value> {
    let live = state.live.read().expect("live lock");
    let mut groups: BTreeMap<(String, String), Vec<FlowSummary>> = BTreeMap::new();
    for flow in live.correlator.summaries(Some(FlowStatus::Stuck)) {
        let reason = flow.reason.clone().unwrap_or_default();
        let place = reason
            .queue
            .clone()
            .or(reason.service.clone())
            .unwrap_or_else(|| "flow".into());
        let why = reason
            .message
            .split(':')
            .next()
            .unwrap_or("")
            .split(" for ")
            .next()
            .unwrap_or("")
            .to_owned();
        groups.entry((place, why)).or_default().push(flow);
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|((place, why), mut flows)| {
            flows.sort_by_key(|f| f.started_unix_us);
            let oldest = flows.first().map(|f| f.started_unix_us);
            json!({ "where": place, "why": why, "count": flows.len(), "oldest_started_unix_us": oldest, "flows": flows })
        })
        .collect();
    Json(json!({ "groups": groups }))
}

pub async fn process_map(State(state): State<AppState>) -> Json<ProcessMap> {
    Json(
        state
            .live
            .read()
            .expect("live lock")
            .correlator
            .process_map(),
    )
}

pub async fn propagation(State(state): State<AppState>) -> Json<PropagationReport> {
    Json(
        state
            .live
            .read()
            .expect("live lock")
            .correlator
            .propagation(),
    )
}
