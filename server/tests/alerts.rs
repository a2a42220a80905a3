//! Alert notifications over real HTTP: a webhook and an Alertmanager, each a
//! real server on a port of 127.0.0.1, fed by the alert engine.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use flowscope_collectors::pipeline::Metrics;
use flowscope_model::{
    Alert, AlertState, BrokerMessage, ConsumerInfo, DeadLetterEdge, Death, QueueInfo, QueueSample,
    SampleSource, TopologySnapshot, now_unix_us,
};
use flowscope_server::alerts::{AlertConfig, AlertEngine, Notifier, NotifierHandle};
use serde_json::Value;

const SEC: i64 = 1_000_000;

/// What a receiver got, and how it answers.
#[derive(Default)]
struct Receiver {
    bodies: Mutex<Vec<Value>>,
    /// Requests answered so far; the first `fail_first` get a 500.
    requests: AtomicU32,
    fail_first: u32,
}

async fn receive(State(receiver): State<Arc<Receiver>>, Json(body): Json<Value>) -> StatusCode {
    if receiver.requests.fetch_add(1, Ordering::SeqCst) < receiver.fail_first {
        return StatusCode::INTERNAL_SERVER_ERROR;
    }
    receiver.bodies.lock().unwrap().push(body);
    StatusCode::OK
}

/// Serves `path` on 127.0.0.1:0; returns the base URL.
async fn serve(path: &str, receiver: Arc<Receiver>) -> String {
    let app = Router::new()
        .route(path, post(receive))
        .with_state(receiver);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// The bodies received, once there are `n` (fails after 10 s).
async fn wait_for(receiver: &Receiver, n: usize) -> Vec<Value> {
    for _ in 0..500 {
        let bodies = receiver.bodies.lock().unwrap().clone();
        if bodies.len() >= n {
            return bodies;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "expected {n} notifications, got {:?}",
        receiver.bodies.lock().unwrap()
    );
}

/// The demo's payment queue dead-lettering into `payment.orders.dlq`.
fn topology(at: i64) -> TopologySnapshot {
    TopologySnapshot {
        observed_unix_us: at,
        vhost: "/".into(),
        queues: ["payment.orders", "payment.orders.dlq"]
            .iter()
            .map(|q| QueueInfo {
                name: (*q).into(),
                ..Default::default()
            })
            .collect(),
        consumers: vec![ConsumerInfo {
            queue: "payment.orders".into(),
            tag: "ctag".into(),
            connection: "c1".into(),
            client_name: Some("payment".into()),
            prefetch: 10,
            ack_required: true,
        }],
        dead_letter_edges: vec![DeadLetterEdge {
            queue: "payment.orders".into(),
            exchange: "shop.dlx".into(),
            routing_key: None,
            targets: vec!["payment.orders.dlq".into()],
        }],
        ..Default::default()
    }
}

fn depth(at: i64, ready: u64) -> QueueSample {
    QueueSample {
        observed_unix_us: at,
        source: SampleSource::PassiveDeclare,
        vhost: "/".into(),
        queue: "payment.orders.dlq".into(),
        messages_ready: Some(ready),
        messages_unacked: None,
        consumers: Some(0),
        publish_rate: None,
        deliver_rate: None,
        ack_rate: None,
        head_message_timestamp: None,
    }
}

fn dead_letter(at: i64) -> BrokerMessage {
    BrokerMessage {
        observed_unix_us: at,
        vhost: "/".into(),
        exchange: "shop.dlx".into(),
        queue: Some("payment.orders.dlq".into()),
        deaths: vec![Death {
            queue: "payment.orders".into(),
            reason: "rejected".into(),
            exchange: "shop.events".into(),
            count: 1,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Drives the engine through one dead letter and a purge, notifying every
/// change as the server does; returns the firing and the resolved alert.
fn dead_letter_then_purge(engine: &mut AlertEngine, notifier: &NotifierHandle) -> (Alert, Alert) {
    let t0 = now_unix_us() - 10 * SEC;
    engine.observe_topology(&topology(t0));
    engine.observe_sample(&depth(t0, 0));
    engine.observe_sample(&depth(t0 + SEC, 1));
    engine.observe_dead_letter(&dead_letter(t0 + SEC));
    let mut changed = engine.evaluate(t0 + SEC + 100_000);
    changed.iter().cloned().for_each(|a| notifier.notify(a));
    let firing = changed.remove(0);
    engine.observe_sample(&depth(t0 + 5 * SEC, 0));
    let mut changed = engine.evaluate(t0 + 5 * SEC + 100_000);
    changed.iter().cloned().for_each(|a| notifier.notify(a));
    let resolved = changed.remove(0);
    assert_eq!(
        (firing.state, resolved.state),
        (AlertState::Firing, AlertState::Resolved)
    );
    (firing, resolved)
}

#[tokio::test]
async fn a_webhook_receives_the_firing_then_the_resolved_alert_as_json() {
    let receiver = Arc::new(Receiver::default());
    let base = serve("/hook", receiver.clone()).await;
    let config = AlertConfig {
        webhooks: vec![format!("{base}/hook")],
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::default());
    let mut engine = AlertEngine::new(config.clone());
    let notifier = Notifier::spawn(config, metrics.clone());

    let (firing, resolved) = dead_letter_then_purge(&mut engine, &notifier);
    let bodies = wait_for(&receiver, 2).await;
    assert_eq!(bodies[0]["flowscope_alert"], 1);
    assert_eq!(bodies[0]["state"], "firing");
    assert_eq!(bodies[0]["id"], "dlq-growth:/:payment.orders.dlq");
    assert_eq!(
        bodies[0]["summary"],
        "payment.orders.dlq grew by 1 message in 60 s"
    );
    assert_eq!(
        bodies[0]["evidence"]["top_reasons"],
        serde_json::json!([["rejected", 1]])
    );
    assert_eq!(
        bodies[0]["evidence"]["failing_services"],
        serde_json::json!([["payment", 1]])
    );
    assert_eq!(
        bodies[0]["evidence"]["source_queues"],
        serde_json::json!(["payment.orders"])
    );
    assert_eq!(
        serde_json::from_value::<Alert>(bodies[0].clone()).unwrap(),
        firing
    );
    assert_eq!(bodies[1]["state"], "resolved");
    assert_eq!(
        serde_json::from_value::<Alert>(bodies[1].clone()).unwrap(),
        resolved
    );

    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(metrics.value("alert_notifications_sent", "webhook"), 2);
    assert_eq!(metrics.value("alert_notification_failures", "webhook"), 0);
    assert_eq!(
        receiver.bodies.lock().unwrap().len(),
        2,
        "a pending alert is not notified"
    );
}

#[tokio::test]
async fn alertmanager_receives_v2_alerts_with_labels_annotations_and_times() {
    let receiver = Arc::new(Receiver::default());
    let base = serve("/api/v2/alerts", receiver.clone()).await;
    let config = AlertConfig {
        alertmanager_url: Some(format!("{base}/")),
        ui_url: "http://flowscope.example:8080".into(),
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::default());
    let mut engine = AlertEngine::new(config.clone());
    let notifier = Notifier::spawn(config, metrics.clone());

    let (firing, resolved) = dead_letter_then_purge(&mut engine, &notifier);
    let bodies = wait_for(&receiver, 2).await;
    let sent = bodies[0].as_array().expect("a list of postable alerts");
    assert_eq!(sent.len(), 1);
    let alert = sent[0].as_object().unwrap();
    let mut keys: Vec<&str> = alert.keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "annotations",
            "endsAt",
            "generatorURL",
            "labels",
            "startsAt"
        ]
    );
    assert_eq!(
        alert["labels"],
        serde_json::json!({"alertname": "dlq-growth", "severity": "warning",
                           "queue": "payment.orders.dlq", "vhost": "/"})
    );
    assert_eq!(alert["annotations"]["summary"], firing.summary.as_str());
    let description = alert["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("rejected ×1") && description.contains("payment ×1"),
        "{description}"
    );
    assert_eq!(
        alert["generatorURL"],
        "http://flowscope.example:8080/alerts"
    );
    let starts = alert["startsAt"].as_str().unwrap();
    let ends = alert["endsAt"].as_str().unwrap();
    for time in [starts, ends] {
        assert!(is_rfc3339_utc(time), "{time}");
    }
    assert!(
        ends > starts,
        "a firing alert ends in the future: {starts} .. {ends}"
    );

    let resolved_sent = &bodies[1][0];
    assert_eq!(resolved_sent["labels"], alert["labels"]);
    assert_eq!(resolved_sent["startsAt"], starts);
    let resolved_at = resolved.resolved_unix_us.unwrap();
    assert_eq!(
        resolved_sent["endsAt"],
        flowscope_server::alerts::payload::rfc3339(resolved_at)
    );
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(metrics.value("alert_notifications_sent", "alertmanager"), 2);
}

#[tokio::test]
async fn a_webhook_answering_500_twice_gets_the_alert_on_the_third_try() {
    let receiver = Arc::new(Receiver {
        fail_first: 2,
        ..Default::default()
    });
    let base = serve("/hook", receiver.clone()).await;
    let config = AlertConfig {
        webhooks: vec![format!("{base}/hook")],
        ..Default::default()
    };
    let metrics = Arc::new(Metrics::default());
    let mut engine = AlertEngine::new(config.clone());
    let notifier = Notifier::spawn(config, metrics.clone());

    let t0 = now_unix_us();
    engine.observe_topology(&topology(t0));
    engine.observe_sample(&depth(t0, 0));
    engine.observe_sample(&depth(t0 + SEC, 3));
    engine.observe_dead_letter(&dead_letter(t0 + SEC));
    for alert in engine.evaluate(t0 + SEC) {
        notifier.notify(alert);
    }
    let bodies = wait_for(&receiver, 1).await;
    assert_eq!(bodies[0]["state"], "firing");
    assert_eq!(receiver.requests.load(Ordering::SeqCst), 3);
    notifier.shutdown(Duration::from_secs(5)).await;
    assert_eq!(metrics.value("alert_notification_failures", "webhook"), 2);
    assert_eq!(metrics.value("alert_notifications_sent", "webhook"), 1);
    assert_eq!(metrics.value("alert_notifications_dropped", "webhook"), 0);
    assert!(
        metrics
            .render()
            .contains("flowscope_alert_notification_failures_total{source=\"webhook\"} 2")
    );
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`.
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 24
        && s.ends_with('Z')
        && [4, 7].iter().all(|&i| b[i] == b'-')
        && b[10] == b'T'
        && [13, 16].iter().all(|&i| b[i] == b':')
        && b[19] == b'.'
        && [0..4, 5..7, 8..10, 11..13, 14..16, 17..19, 20..23]
            .into_iter()
            .all(|r| b[r].iter().all(u8::is_ascii_digit))
}
