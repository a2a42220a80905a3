//! The API over an in-memory live state, called with `oneshot`.

mod api_common;

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use flowscope_server::alerts::{AlertConfig, AlertEngine};
use flowscope_server::api::{AppState, auth::Auth, router};
use flowscope_server::audit::AuditLog;
use flowscope_server::correlator::Correlator;
use flowscope_server::correlator::config::CorrelationConfig;
use flowscope_server::live::Live;
use serde_json::Value;
use tower::ServiceExt;

use api_common::message;

fn app() -> axum::Router {
    let mut correlator = Correlator::new(CorrelationConfig::demo_shop()).unwrap();
    correlator.ingest(message("m1", "OrderPlaced", "4711", 1_000));
    correlator.ingest(message("m2", "OrderCompleted", "4711", 2_000));
    correlator.ingest(message("m3", "OrderPlaced", "4712", 3_000));
    correlator.take_changes(4_000);
    let live = Arc::new(RwLock::new(Live::new(
        correlator,
        AlertEngine::new(AlertConfig::default()),
        false,
    )));
    let (bus, _) = tokio::sync::broadcast::channel(16);
    router(AppState {
        live,
        bus,
        store: None,
        metrics: Default::default(),
        auth: Auth::default(),
        broker: Default::default(),
        audit: Arc::new(AuditLog::new(None)),
        demo: None,
        ui: Default::default(),
        shutdown: Default::default(),
    })
}

async fn get(path: &str) -> (StatusCode, Value) {
    let resp = app()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        serde_json::from_slice(&bytes)
            .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned())),
    )
}

#[tokio::test]
async fn lookup_by_order_key_finds_the_flow_and_its_detail() {
    let (status, found) = get("/api/lookup/4711").await;
    assert_eq!(status, StatusCode::OK, "{found}");
    let id = found["flow_ids"][0].as_str().unwrap();
    let (status, flow) = get(&format!("/api/flows/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flow["summary"]["key"], "4711");
    assert_eq!(flow["summary"]["status"], "completed");
    // Message id and correlation id find the same flow.
    assert_eq!(get("/api/lookup/m2").await.1["flow_ids"][0], id);
    assert_eq!(get("/api/lookup/c-4711").await.1["flow_ids"][0], id);
}

#[tokio::test]
async fn lists_filter_and_errors_say_what_is_wrong() {
    let (_, page) = get("/api/flows?status=completed").await;
    assert_eq!(page["total"], 1);
    let (_, page) = get("/api/flows?limit=1").await;
    assert_eq!(
        (
            page["total"].as_u64(),
            page["items"].as_array().unwrap().len()
        ),
        (Some(2), 1)
    );
    let (status, err) = get("/api/flows?status=done").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("in_flight, completed"),
        "{err}"
    );
    let (status, err) = get("/api/flows?limit=0").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{err}");
    let (status, err) = get("/api/lookup/nope").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(err["error"].as_str().unwrap().contains("nope"));
    let (status, err) = get("/api/flows/f0").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(err["error"].as_str().unwrap().contains("/api/lookup"));
    let (status, err) = get("/api/nothing-here").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(err["error"].as_str().unwrap().contains("openapi"));
}

#[tokio::test]
async fn openapi_metrics_and_health_answer() {
    let (status, doc) = get("/api/openapi.json").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(doc["openapi"], "3.0.3");
    assert!(doc["paths"]["/api/flows/{id}"]["get"].is_object());
    let (_, metrics) = get("/metrics").await;
    assert!(
        metrics.as_str().unwrap().contains("flowscope_live_flows 2"),
        "{metrics}"
    );
    assert_eq!(get("/healthz").await.1["status"], "ok");
}
