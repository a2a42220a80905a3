//! What the web UI asks of the API beyond the lists, called with `oneshot`:
//! its configuration, a variant's flows, the demo controls' answers outside
//! a running shop, and tokens as the browser sends them.

mod api_common;

use std::sync::{Arc, RwLock};

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use flowscope_demo::load::LoadControl;
use flowscope_server::alerts::{AlertConfig, AlertEngine};
use flowscope_server::api::auth::{Auth, AuthConfig};
use flowscope_server::api::demo::DemoShop;
use flowscope_server::api::ui_config::UiConfig;
use flowscope_server::api::{AppState, router};
use flowscope_server::audit::AuditLog;
use flowscope_server::correlator::Correlator;
use flowscope_server::correlator::config::CorrelationConfig;
use flowscope_server::live::Live;
use serde_json::{Value, json};
use tower::ServiceExt;

use api_common::message;

/// Three orders: two completed the same way, one declined.
fn live() -> flowscope_server::live::SharedLive {
    let mut correlator = Correlator::new(CorrelationConfig::demo_shop()).unwrap();
    for (n, order) in ["a", "b", "c"].into_iter().enumerate() {
        let at = n as i64 * 10_000;
        correlator.ingest(message(&format!("{order}1"), "OrderPlaced", order, at));
        let second = if order == "b" {
            "PaymentFailed"
        } else {
            "PaymentProcessed"
        };
        correlator.ingest(message(&format!("{order}2"), second, order, at + 1_000));
        correlator.ingest(message(
            &format!("{order}3"),
            "OrderCompleted",
            order,
            at + 2_000,
        ));
    }
    correlator.take_changes(100_000);
    Arc::new(RwLock::new(Live::new(
        correlator,
        AlertEngine::new(AlertConfig::default()),
        false,
    )))
}

#[derive(Default)]
struct App {
    demo: Option<DemoShop>,
    auth: Auth,
    ui: UiConfig,
}

impl App {
    fn router(self) -> axum::Router {
        let (bus, _) = tokio::sync::broadcast::channel(16);
        router(AppState {
            live: live(),
            bus,
            store: None,
            metrics: Default::default(),
            auth: self.auth,
            broker: Default::default(),
            audit: Arc::new(AuditLog::new(None)),
            demo: self.demo,
            ui: self.ui,
            shutdown: Default::default(),
        })
    }
}

async fn call(
    app: &axum::Router,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let request = match body {
        Some(body) => request
            .header("content-type", "application/json")
            .body(Body::from(body.to_string())),
        None => request.body(Body::empty()),
    }
    .unwrap();
    let resp = app.clone().oneshot(request).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, value)
}

async fn get(app: &axum::Router, path: &str) -> (StatusCode, Value) {
    call(app, Method::GET, path, None, None).await
}

#[tokio::test]
async fn a_variant_of_the_process_map_lists_exactly_its_flows() {
    let app = App::default().router();
    let (_, map) = get(&app, "/api/process-map").await;
    let variants = map["variants"].as_array().unwrap();
    assert_eq!(variants.len(), 2, "{map}");
    for variant in variants {
        let steps: Vec<&str> = variant["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect();
        let (status, page) = get(&app, &format!("/api/flows?variant={}", steps.join(","))).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert_eq!(page["total"], variant["count"], "{steps:?}: {page}");
        for flow in page["items"].as_array().unwrap() {
            assert_eq!(flow["event_types"], json!(steps));
        }
    }
    let (_, declined) = get(
        &app,
        "/api/flows?variant=OrderPlaced,PaymentFailed,OrderCompleted",
    )
    .await;
    assert_eq!(declined["items"][0]["key"], "b", "{declined}");
    let (_, prefix) = get(&app, "/api/flows?variant=OrderPlaced").await;
    assert_eq!(prefix["total"], 0, "a variant is the whole path: {prefix}");
    let (_, blank) = get(&app, "/api/flows?variant=").await;
    assert_eq!(blank["total"], 3, "a blank variant does not filter");
}

#[tokio::test]
async fn the_ui_config_carries_the_trace_link_and_who_calls() {
    let template = "http://localhost:16686/trace/{trace_id}";
    let app = App {
        ui: UiConfig {
            trace_url_template: Some(template.into()),
        },
        ..Default::default()
    }
    .router();
    let (status, config) = get(&app, "/api/ui-config").await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(config["trace_url_template"], template);
    assert_eq!(
        (&config["demo"], &config["auth_required"], &config["role"]),
        (&json!(false), &json!(false), &json!("admin"))
    );
    let (_, bare) = get(&App::default().router(), "/api/ui-config").await;
    assert_eq!(bare["trace_url_template"], Value::Null);
}

#[tokio::test]
async fn demo_controls_say_why_they_cannot_act() {
    // No shop here: 404, whatever the body.
    let app = App::default().router();
    for (method, path, body) in [
        (Method::GET, "/api/demo", None),
        (Method::POST, "/api/demo/orders", Some(json!({"count": 5}))),
        (Method::PUT, "/api/demo/load", Some(json!({"rate": "fast"}))),
    ] {
        let (status, err) = call(&app, method, path, None, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {err}");
        assert!(err["error"].as_str().unwrap().contains("flowscope demo"));
    }
    // A shop whose order API and load generator this server does not run: 409.
    let app = App {
        demo: Some(DemoShop::amqp_only("amqp://127.0.0.1:1/%2f".into())),
        ..Default::default()
    }
    .router();
    let (status, err) = call(
        &app,
        Method::PUT,
        "/api/demo/load",
        None,
        Some(json!({"rate": 1})),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{err}");
    assert!(err["error"].as_str().unwrap().contains("load generator"));
}

#[tokio::test]
async fn the_load_rate_is_set_within_bounds_and_orders_are_counted_within_bounds() {
    let load = LoadControl::new(2.0);
    let app = App {
        demo: Some(DemoShop {
            amqp_url: "amqp://127.0.0.1:1/%2f".into(),
            // Nothing listens there: only refused requests may reach it.
            order_url: Some("http://127.0.0.1:1".into()),
            load: Some(load.clone()),
        }),
        ..Default::default()
    }
    .router();
    let put = |body: Value| {
        let app = app.clone();
        async move { call(&app, Method::PUT, "/api/demo/load", None, Some(body)).await }
    };
    let (status, answer) = put(json!({"rate": 0})).await;
    assert_eq!((status, &answer["rate"]), (StatusCode::OK, &json!(0.0)));
    assert_eq!(load.rate(), 0.0, "the generator sees the new rate");
    for bad in [
        json!({"rate": 501}),
        json!({"rate": -1}),
        json!({"speed": 3}),
    ] {
        let (status, err) = put(bad.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {err}");
        assert!(err["error"].is_string());
    }
    assert_eq!(load.rate(), 0.0, "a refused rate changes nothing");
    let (status, err) = put(json!({"rate": 501})).await;
    assert!(
        err["error"].as_str().unwrap().contains("0 ..= 500"),
        "{status} {err}"
    );
    for count in [0, 1001] {
        let (status, err) = call(
            &app,
            Method::POST,
            "/api/demo/orders",
            None,
            Some(json!({ "count": count })),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{count}: {err}");
        assert!(err["error"].as_str().unwrap().contains("1 ..= 1000"));
    }
    let (status, err) = call(
        &app,
        Method::POST,
        "/api/demo/orders",
        None,
        Some(json!({ "count": 1 })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("took none"),
        "{err}"
    );
}

#[tokio::test]
async fn tokens_work_percent_encoded_in_the_query_and_a_viewer_is_told_its_role() {
    let auth = Auth::load(&AuthConfig {
        tokens: serde_json::from_value(json!([
            {"token": "v+1/=x", "role": "viewer", "name": "ada"},
        ]))
        .unwrap(),
        token_file: None,
    })
    .unwrap();
    let app = App {
        auth,
        demo: Some(DemoShop {
            amqp_url: "amqp://127.0.0.1:1/%2f".into(),
            order_url: None,
            load: Some(LoadControl::new(1.0)),
        }),
        ..Default::default()
    }
    .router();
    let (status, _) = get(&app, "/api/ui-config").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, config) = get(&app, "/api/ui-config?access_token=v%2B1%2F%3Dx").await;
    assert_eq!(status, StatusCode::OK, "{config}");
    assert_eq!(
        (&config["auth_required"], &config["role"], &config["user"]),
        (&json!(true), &json!("viewer"), &json!("ada"))
    );
    let (status, err) = call(
        &app,
        Method::PUT,
        "/api/demo/load",
        Some("v+1/=x"),
        Some(json!({"rate": 3})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
    assert_eq!(
        (&err["role"], &err["needed"]),
        (&json!("viewer"), &json!("operator"))
    );
}
