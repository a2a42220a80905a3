//! The REST calls the pages make, and the JSON they get back.
//!
//! Every call answers `Result<T, String>`: the error is a sentence to show
//! (the server's own `{"error": "..."}` message when it sent one).

use flowscope_model::{Alert, BrokerMessage, FlowDetail, FlowSummary, QueueState};
use leptos::prelude::*;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::format::path_segment;

/// `GET /api/topology`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Topology {
    pub services: Vec<String>,
    pub exchanges: Vec<TopologyExchange>,
    pub queues: Vec<QueueState>,
    pub edges: Vec<TopologyEdge>,
}

/// An exchange of the topology.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TopologyExchange {
    pub vhost: String,
    pub name: String,
    pub kind: String,
}

/// An edge of the topology: `from` and `to` are `service:…`, `exchange:…` or `queue:…`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct TopologyEdge {
    pub vhost: String,
    pub from: String,
    pub to: String,
    /// `publish`, `binding`, `consume` or `dead_letter`.
    pub kind: String,
    /// Publish edges: messages seen.
    #[serde(default)]
    pub messages: Option<u64>,
    /// Binding edges.
    #[serde(default)]
    pub routing_keys: Vec<String>,
    /// Consume edges: deliveries per second.
    #[serde(default)]
    pub rate: Option<f64>,
    #[serde(default)]
    pub queue_wait_ms: Option<f64>,
    #[serde(default)]
    pub processing_ms: Option<f64>,
    /// Dead-letter edges: through which exchange.
    #[serde(default)]
    pub exchange: Option<String>,
}

/// `GET /api/lookup/{key}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Lookup {
    pub key: String,
    pub flow_ids: Vec<String>,
}

/// `GET /api/queues/{vhost}/{queue}`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct QueueDetail {
    pub queue: QueueState,
    pub window_secs: i64,
    pub history: Vec<HistoryPoint>,
}

/// One point of a queue's depth history.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct HistoryPoint {
    pub unix_us: i64,
    #[serde(default)]
    pub ready: Option<u64>,
    #[serde(default)]
    pub unacked: Option<u64>,
}

/// `GET /api/queues/{vhost}/{queue}/dead-letters`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeadLetters {
    pub count: usize,
    pub groups: Vec<DeadLetterGroup>,
}

/// Dead letters with the same reason, failing service and source queue.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct DeadLetterGroup {
    pub reason: String,
    pub failing_service: String,
    pub source_queue: String,
    pub count: usize,
    pub messages: Vec<BrokerMessage>,
}

/// `POST …/redrive`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RedriveReport {
    pub moved: u64,
    pub left_in_place: u64,
}

/// `POST …/purge`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct PurgeReport {
    pub purged: u64,
}

/// `GET /api/stuck`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Stuck {
    pub groups: Vec<StuckGroup>,
}

/// Stuck flows at one place, for one reason.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct StuckGroup {
    #[serde(rename = "where")]
    pub place: String,
    pub why: String,
    pub count: usize,
    #[serde(default)]
    pub oldest_started_unix_us: Option<i64>,
    pub flows: Vec<FlowSummary>,
}

/// `GET /api/alerts`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Alerts {
    pub active: Vec<Alert>,
    pub recent: Vec<Alert>,
}

/// `GET /api/alerts/rules`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Rules {
    pub rules: Vec<RuleFields>,
}

/// An alert rule as the server writes it ([`flowscope_model::AlertRule`]):
/// `name`, `kind`, the kind's own fields, `for_secs`, `severity`. Read as
/// a plain object because the model's rule flattens its kind, which pulls
/// serde's buffered (and large) deserializer into the wasm; the page only
/// shows the fields.
pub type RuleFields = serde_json::Map<String, Value>;

/// `POST /api/demo/faults`: who heard the command.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FaultAnswers {
    pub answered: Vec<FaultReply>,
}

/// One demo service's answer, with its switches after the command.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct FaultReply {
    pub service: String,
    #[serde(default)]
    pub state: Value,
    #[serde(default)]
    pub error: Option<String>,
}

/// A command for the demo shop's fault switches (see `demo/src/faults.rs`).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum FaultCommand {
    DeclineRate { rate: f64 },
    OutOfStockRate { rate: f64 },
    PoisonRate { service: String, rate: f64 },
    Slow { service: String, ms: u64 },
    Pause { service: String },
    Resume { service: String },
    NoAck { service: String, enabled: bool },
    Reset,
    Show,
}

/// `GET /api/ui-config`: what the server tells the UI about itself and the caller.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct UiConfig {
    /// The tracing UI's trace page, `{trace_id}` where the id goes.
    pub trace_url_template: Option<String>,
    pub demo: bool,
    pub auth_required: bool,
    pub user: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
}

/// `GET /api/demo`: the demo shop as it stands.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct DemoStatus {
    /// The load generator's orders per second (0: stopped); none when not run here.
    pub rate: Option<f64>,
    pub can_place_orders: bool,
    /// The fault switches, as the first service to answer has them.
    pub faults: Option<Value>,
    pub answered: Vec<String>,
}

/// `POST /api/demo/orders`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct PlacedOrders {
    pub placed: u64,
    pub failed: u64,
    pub order_ids: Vec<String>,
}

/// `PUT /api/demo/load`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct LoadRate {
    pub rate: f64,
}

pub async fn ui_config() -> Result<UiConfig, String> {
    get("/api/ui-config").await
}

pub async fn demo_status() -> Result<DemoStatus, String> {
    get("/api/demo").await
}

pub async fn place_orders(count: u32) -> Result<PlacedOrders, String> {
    post("/api/demo/orders", &serde_json::json!({ "count": count })).await
}

pub async fn set_load_rate(rate: f64) -> Result<LoadRate, String> {
    let body = serde_json::json!({ "rate": rate }).to_string();
    fetch("PUT", "/api/demo/load", Some(body)).await
}

/// `GET` paths the pages keep in a [`get_resource`].
pub const TOPOLOGY_PATH: &str = "/api/topology";
pub const STUCK_PATH: &str = "/api/stuck";
pub const ALERTS_PATH: &str = "/api/alerts";
pub const RULES_PATH: &str = "/api/alerts/rules";
pub const PROCESS_MAP_PATH: &str = "/api/process-map";

/// `GET` it for a [`FlowDetail`].
pub fn flow_path(id: &str) -> String {
    format!("/api/flows/{}", path_segment(id))
}

pub async fn flow(id: &str) -> Result<FlowDetail, String> {
    get(&flow_path(id)).await
}

pub async fn lookup(key: &str) -> Result<Lookup, String> {
    get(&format!("/api/lookup/{}", path_segment(key.trim()))).await
}

fn queue_path(vhost: &str, queue: &str) -> String {
    format!(
        "/api/queues/{}/{}",
        path_segment(vhost),
        path_segment(queue)
    )
}

/// `GET` it for a [`QueueDetail`].
pub fn queue_detail_path(vhost: &str, queue: &str, window_secs: i64) -> String {
    format!("{}?window_secs={window_secs}", queue_path(vhost, queue))
}

/// `GET` it for [`DeadLetters`].
pub fn dead_letters_path(vhost: &str, queue: &str) -> String {
    format!("{}/dead-letters", queue_path(vhost, queue))
}

pub async fn redrive_all(vhost: &str, queue: &str) -> Result<RedriveReport, String> {
    let body = serde_json::json!({ "all": true });
    post(&format!("{}/redrive", queue_path(vhost, queue)), &body).await
}

pub async fn redrive_one(
    vhost: &str,
    queue: &str,
    message_id: &str,
) -> Result<RedriveReport, String> {
    let body = serde_json::json!({ "message_id": message_id });
    post(&format!("{}/redrive", queue_path(vhost, queue)), &body).await
}

pub async fn purge(vhost: &str, queue: &str) -> Result<PurgeReport, String> {
    post(&format!("{}/purge", queue_path(vhost, queue)), &Value::Null).await
}

pub async fn demo_fault(command: &FaultCommand) -> Result<FaultAnswers, String> {
    let body = serde_json::to_value(command).map_err(|e| e.to_string())?;
    post("/api/demo/faults", &body).await
}

/// The body of a successful `GET`, kept by a page's resource and parsed
/// where it is shown ([`read`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    path: String,
    body: String,
}

impl Answer {
    /// The body as JSON of type `T`; the error says which call answered what.
    fn parse<T: DeserializeOwned>(&self) -> Result<T, String> {
        crate::json::from_str(&self.body)
            .map_err(|e| format!("GET {}: unexpected answer: {e}", self.path))
    }
}

/// What every page fetches into: one resource type for all answers, so that
/// the wasm holds Leptos's resource machinery once rather than once per type.
pub type AnswerResource = LocalResource<Result<Answer, String>>;

/// A resource holding the answer to `GET path()`, fetched again whenever
/// what `path` reads changes.
pub fn get_resource(path: impl Fn() -> String + 'static) -> AnswerResource {
    answer_resource(Box::new(path))
}

/// Not generic (the closure is boxed): one copy of the resource code.
fn answer_resource(path: Box<dyn Fn() -> String>) -> AnswerResource {
    LocalResource::new(move || {
        let path = path();
        async move {
            let body = fetch_text("GET", &path, None).await?;
            Ok(Answer { path, body })
        }
    })
}

/// The resource's answer as the server wrote it (tracked): `None` while
/// loading or after a failed call.
pub fn body(resource: AnswerResource) -> Option<String> {
    resource.with(|answer| Some(answer.as_ref()?.as_ref().ok()?.body.clone()))
}

/// The resource's answer parsed as `T` (tracked): `None` while loading.
pub fn read<T: DeserializeOwned>(resource: AnswerResource) -> Option<Result<T, String>> {
    resource.with(|answer| {
        answer
            .as_ref()
            .map(|answer| answer.as_ref().map_err(Clone::clone)?.parse())
    })
}

/// `GET path`, JSON in.
pub async fn get<T: DeserializeOwned>(path: &str) -> Result<T, String> {
    fetch("GET", path, None).await
}

/// `POST path` with a JSON body (none for `Value::Null`), JSON in.
pub async fn post<T: DeserializeOwned>(path: &str, body: &Value) -> Result<T, String> {
    let text = (!body.is_null()).then(|| body.to_string());
    fetch("POST", path, text).await
}

/// `method path`, JSON in: [`fetch_text`], then parsed.
async fn fetch<T: DeserializeOwned>(
    method: &str,
    path: &str,
    body: Option<String>,
) -> Result<T, String> {
    let text = fetch_text(method, path, body).await?;
    crate::json::from_str(&text).map_err(|e| format!("{method} {path}: unexpected answer: {e}"))
}

/// `method path`: the body of a successful answer. Not generic, so that
/// the wasm holds this request code once rather than once per answer type.
async fn fetch_text(method: &str, path: &str, body: Option<String>) -> Result<String, String> {
    let failed = |what: &str, err: JsValue| format!("{method} {path}: {what} ({err:?})");
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    let headers = web_sys::Headers::new().map_err(|e| failed("headers", e))?;
    headers
        .set("accept", "application/json")
        .map_err(|e| failed("headers", e))?;
    if let Some(token) = crate::auth::stored_token() {
        headers
            .set("authorization", &crate::auth::bearer(&token))
            .map_err(|e| failed("headers", e))?;
    }
    if let Some(body) = &body {
        headers
            .set("content-type", "application/json")
            .map_err(|e| failed("headers", e))?;
        init.set_body(&JsValue::from_str(body));
    }
    init.set_headers(&headers);
    let request = web_sys::Request::new_with_str_and_init(path, &init)
        .map_err(|e| failed("bad request", e))?;
    let window = web_sys::window().ok_or("no window")?;
    let response: web_sys::Response = JsFuture::from(window.fetch_with_request(&request))
        .await
        .map_err(|_| format!("{method} {path}: the server does not answer"))?
        .dyn_into()
        .map_err(|e| failed("not a response", e))?;
    let text = JsFuture::from(response.text().map_err(|e| failed("no body", e))?)
        .await
        .map_err(|e| failed("body unreadable", e))?
        .as_string()
        .unwrap_or_default();
    if !response.ok() {
        if response.status() == 401 {
            crate::auth::note_unauthorized();
        }
        return Err(error_message(response.status(), &text));
    }
    Ok(text)
}

/// The sentence to show for a failed call: the server's `error`, else the
/// status; a 403 says which role the token has and which is needed.
pub fn error_message(status: u16, body: &str) -> String {
    let json = crate::json::from_str::<Value>(body).ok();
    let field = |name: &str| {
        json.as_ref()
            .and_then(|v| v.get(name)?.as_str().map(str::to_owned))
    };
    match (status, field("role"), field("needed")) {
        (403, Some(role), Some(needed)) => {
            format!("your token's role ({role}) cannot do this: it needs {needed}")
        }
        _ => field("error").unwrap_or_else(|| format!("the server answered HTTP {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topology_parses_every_edge_kind() {
        let json = r#"{"services":["order"],"exchanges":[{"vhost":"/","name":"shop.events","kind":"topic"}],
            "queues":[],"edges":[
            {"vhost":"/","from":"service:order","to":"exchange:shop.events","kind":"publish","messages":3},
            {"vhost":"/","from":"exchange:shop.events","to":"queue:payment.orders","kind":"binding","routing_keys":["order.placed"]},
            {"vhost":"/","from":"queue:payment.orders","to":"service:payment","kind":"consume","rate":null,"queue_wait_ms":1.5,"processing_ms":2.0},
            {"vhost":"/","from":"queue:payment.orders","to":"queue:payment.orders.dlq","kind":"dead_letter","exchange":"shop.dlx"}]}"#;
        let topology: Topology = serde_json::from_str(json).unwrap();
        assert_eq!(topology.edges.len(), 4);
        assert_eq!(topology.edges[0].messages, Some(3));
        assert_eq!(topology.edges[2].queue_wait_ms, Some(1.5));
        assert_eq!(topology.edges[3].exchange.as_deref(), Some("shop.dlx"));
    }

    #[test]
    fn fault_commands_serialize_as_the_shop_expects() {
        let json = serde_json::to_value(FaultCommand::DeclineRate { rate: 0.3 }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"command": "decline_rate", "rate": 0.3})
        );
        let json = serde_json::to_value(FaultCommand::Pause {
            service: "payment".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            serde_json::json!({"command": "pause", "service": "payment"})
        );
        assert_eq!(
            serde_json::to_value(FaultCommand::Reset).unwrap(),
            serde_json::json!({"command": "reset"})
        );
    }

    #[test]
    fn errors_say_what_the_server_said() {
        assert_eq!(
            error_message(404, r#"{"error":"no flow \"x\""}"#),
            "no flow \"x\""
        );
        assert_eq!(error_message(502, "<html>"), "the server answered HTTP 502");
        assert_eq!(
            error_message(
                403,
                r#"{"error":"this needs the operator role; the token has viewer","role":"viewer","needed":"operator"}"#
            ),
            "your token's role (viewer) cannot do this: it needs operator"
        );
    }

    #[test]
    fn the_ui_config_and_demo_status_parse() {
        let config: UiConfig = serde_json::from_str(
            r#"{"trace_url_template":null,"demo":true,"auth_required":false,"user":"anonymous","role":"admin"}"#,
        )
        .unwrap();
        assert_eq!((config.demo, config.role.as_str()), (true, "admin"));
        let status: DemoStatus =
            serde_json::from_str(r#"{"rate":0.0,"can_place_orders":true,"faults":{"decline_rate":0.2},"answered":["order"]}"#)
                .unwrap();
        assert_eq!(status.rate, Some(0.0));
    }
}
