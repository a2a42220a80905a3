//! Topology, alerts, audit, the stream, metrics, health, OpenAPI.

use std::collections::{BTreeMap, BTreeSet};

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::AppState;

pub async fn topology(State(state): State<AppState>) -> Json<Value> {
    let live = state.live.read().expect("live lock");
    let queues = live.queues.all(0);
    let mut services: BTreeSet<String> = BTreeSet::new();
    let mut edges: Vec<Value> = Vec::new();
    let mut exchanges: Vec<Value> = Vec::new();
    for ((vhost, service, exchange), count) in &live.traffic.publishes {
        services.insert(service.clone());
        edges.push(json!({ "vhost": vhost, "from": format!("service:{service}"), "to": format!("exchange:{exchange}"), "kind": "publish", "messages": count }));
    }
    for (vhost, topo) in &live.topology {
        for e in topo
            .exchanges
            .iter()
            .filter(|e| !e.name.is_empty() && !e.name.starts_with("amq."))
        {
            exchanges.push(json!({ "vhost": vhost, "name": e.name, "kind": e.kind }));
        }
        let mut bound: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
        for b in topo
            .bindings
            .iter()
            .filter(|b| b.destination_type == "queue")
        {
            bound
                .entry((b.source.clone(), b.destination.clone()))
                .or_default()
                .push(b.routing_key.clone());
        }
        for ((source, queue), keys) in bound {
            edges.push(json!({ "vhost": vhost, "from": format!("exchange:{source}"), "to": format!("queue:{queue}"), "kind": "binding", "routing_keys": keys }));
        }
        for c in &topo.consumers {
            let service = c
                .client_name
                .clone()
                .unwrap_or_else(|| c.connection.clone());
            services.insert(service.clone());
            let q = queues
                .iter()
                .find(|q| q.vhost == *vhost && q.name == c.queue);
            let (wait, processing) = live
                .traffic
                .latency
                .get(&(vhost.clone(), c.queue.clone()))
                .copied()
                .unwrap_or_default();
            edges.push(json!({
                "vhost": vhost, "from": format!("queue:{}", c.queue), "to": format!("service:{service}"), "kind": "consume",
                "rate": q.map(|q| q.deliver_rate), "queue_wait_ms": wait / 1000.0, "processing_ms": processing / 1000.0,
            }));
        }
        for edge in &topo.dead_letter_edges {
            for target in &edge.targets {
                edges.push(json!({ "vhost": vhost, "from": format!("queue:{}", edge.queue), "to": format!("queue:{target}"), "kind": "dead_letter", "exchange": edge.exchange }));
            }
        }
    }
    edges.sort_by_key(|e| e.to_string());
    edges.dedup();
    Json(json!({ "services": services, "exchanges": exchanges, "queues": queues, "edges": edges }))
}

pub async fn alerts(State(state): State<AppState>) -> Json<Value> {
    let live = state.live.read().expect("live lock");
    Json(json!({ "active": live.alerts.active(), "recent": live.alerts.recent(200) }))
}

pub async fn rules(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "rules": state.live.read().expect("live lock").alerts.rules() }))
}

pub async fn audit(State(state): State<AppState>) -> Json<Value> {
    Json(json!({ "entries": state.audit.recent() }))
}

pub async fn stream(State(state): State<AppState>) -> impl IntoResponse {
    crate::live::stream::sse(
        state.live.clone(),
        state.bus.subscribe(),
        state.shutdown.clone(),
    )
}

pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mut text = state.metrics.render();
    let live = state.live.read().expect("live lock");
    text.push_str(&format!(
        "# TYPE flowscope_live_flows gauge\nflowscope_live_flows {}\n# TYPE flowscope_stream_clients gauge\nflowscope_stream_clients {}\n",
        live.correlator.num_flows(),
        state.bus.receiver_count()
    ));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text)
}

pub async fn healthz(State(state): State<AppState>) -> Json<Value> {
    let live = state.live.read().expect("live lock");
    Json(
        json!({ "status": "ok", "live_flows": live.correlator.num_flows(), "store": state.store.is_some() }),
    )
}

pub async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}
