//! Queues: list, one with history, dead letters, redrive, purge.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::{Extension, Json};
use flowscope_model::{QueueState, now_unix_us};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ApiResult};
use crate::audit::AuditEntry;
use crate::dlq_actions::{self, ActionError, RedriveRequest};

/// History window unless asked (seconds).
const DEFAULT_WINDOW_SECS: i64 = 900;
/// Longest history window (seconds).
const MAX_WINDOW_SECS: i64 = 7 * 24 * 3600;
/// Points of history returned at most.
const MAX_POINTS: usize = 600;

pub async fn list(State(state): State<AppState>) -> Json<Vec<QueueState>> {
    Json(
        state
            .live
            .read()
            .expect("live lock")
            .queues
            .all(super::super::live::SNAPSHOT_HISTORY),
    )
}

/// Query of `GET /api/queues/{vhost}/{queue}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowQuery {
    window_secs: Option<i64>,
}

pub async fn one(
    State(state): State<AppState>,
    Path((vhost, queue)): Path<(String, String)>,
    Query(query): Query<WindowQuery>,
) -> ApiResult<Json<Value>> {
    let window = query.window_secs.unwrap_or(DEFAULT_WINDOW_SECS);
    if !(1..=MAX_WINDOW_SECS).contains(&window) {
        return Err(ApiError::bad_request(format!(
            "window_secs must be 1 to {MAX_WINDOW_SECS}"
        )));
    }
    let current = state
        .live
        .read()
        .expect("live lock")
        .queues
        .get(&vhost, &queue);
    let Some(current) = current else {
        return Err(ApiError::not_found(format!(
            "no queue {queue:?} in vhost {vhost:?} (vhost \"/\" is %2F in a URL)"
        )));
    };
    let since = now_unix_us() - window * 1_000_000;
    let history: Vec<Value> = match &state.store {
        Some(store) => store
            .queue_history(&vhost, &queue, since, MAX_POINTS)
            .await?
            .into_iter()
            .map(|s| json!({ "unix_us": s.observed_unix_us, "ready": s.messages_ready, "unacked": s.messages_unacked, "source": s.source }))
            .collect(),
        None => current
            .history
            .iter()
            .filter(|(t, _)| *t >= since)
            .map(|(t, ready)| json!({ "unix_us": t, "ready": ready }))
            .collect(),
    };
    Ok(Json(
        json!({ "queue": current, "window_secs": window, "history": history }),
    ))
}

pub async fn dead_letters(
    State(state): State<AppState>,
    Path((vhost, queue)): Path<(String, String)>,
) -> Json<Value> {
    let live = state.live.read().expect("live lock");
    let consumers_of = |q: &str| -> Option<String> {
        live.topology
            .get(&vhost)?
            .consumers
            .iter()
            .find(|c| c.queue == q)
            .and_then(|c| c.client_name.clone())
    };
    let messages: Vec<_> = live
        .traffic
        .dead_letters
        .get(&(vhost.clone(), queue.clone()))
        .map(|l| l.iter().cloned().collect())
        .unwrap_or_default();
    let mut groups: BTreeMap<(String, String, String), Vec<Value>> = BTreeMap::new();
    for msg in &messages {
        let death = msg.deaths.last();
        let reason = death
            .map(|d| d.reason.clone())
            .unwrap_or_else(|| "unknown".into());
        let source = death.map(|d| d.queue.clone()).unwrap_or_default();
        // The consumer of the source queue: from the topology, else from the message's flow.
        let from_flow = || {
            let id = live
                .correlator
                .find(msg.properties.message_id.as_deref()?)?;
            let flow = live.correlator.flow(&id)?;
            flow.hops
                .into_iter()
                .find(|h| h.queue.as_deref() == Some(source.as_str()))?
                .consumer
                .map(String::from)
        };
        let failing = consumers_of(&source)
            .or_else(from_flow)
            .unwrap_or_else(|| "unknown".into());
        groups
            .entry((reason, failing, source))
            .or_default()
            .push(serde_json::to_value(msg).expect("messages serialize"));
    }
    let groups: Vec<Value> = groups
        .into_iter()
        .map(|((reason, service, source), messages)| {
            json!({ "reason": reason, "failing_service": service, "source_queue": source, "count": messages.len(), "messages": messages })
        })
        .collect();
    Json(json!({ "vhost": vhost, "queue": queue, "count": messages.len(), "groups": groups }))
}

fn action_error(err: ActionError) -> ApiError {
    match err {
        ActionError::Invalid(msg) => ApiError::bad_request(msg),
        ActionError::NotFound(..) => ApiError::not_found(err.to_string()),
        ActionError::Broker(e) => ApiError::unavailable("the broker", e),
    }
}

pub async fn redrive(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((vhost, queue)): Path<(String, String)>,
    Json(request): Json<RedriveRequest>,
) -> ApiResult<Json<Value>> {
    let report = dlq_actions::redrive(&state.broker, &vhost, &queue, &request)
        .await
        .map_err(action_error)?;
    let detail = request
        .message_id
        .map(|id| format!("message {id}"))
        .unwrap_or_else(|| "all".into());
    after_action(
        &state,
        caller,
        "redrive",
        vhost,
        queue,
        report.moved,
        detail,
    );
    Ok(Json(
        serde_json::to_value(report).expect("reports serialize"),
    ))
}

pub async fn purge(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
    Path((vhost, queue)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let count = dlq_actions::purge(&state.broker, &vhost, &queue)
        .await
        .map_err(action_error)?;
    after_action(&state, caller, "purge", vhost, queue, count, String::new());
    Ok(Json(json!({ "purged": count })))
}

/// After a redrive or purge: the dead letters shown are stale; the action is audited.
fn after_action(
    state: &AppState,
    caller: Caller,
    action: &str,
    vhost: String,
    queue: String,
    count: u64,
    detail: String,
) {
    state
        .live
        .write()
        .expect("live lock")
        .traffic
        .clear_dead_letters(&vhost, &queue);
    state.audit.record(AuditEntry {
        at_unix_us: now_unix_us(),
        who: caller.name,
        action: action.into(),
        vhost,
        queue,
        count,
        detail,
    });
}
