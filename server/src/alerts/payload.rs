//! What notifications carry: the webhook JSON and the Alertmanager v2 alerts.
//!
//! # Webhook
//!
//! One `POST` per alert that fires or resolves, `Content-Type:
//! application/json`: the [`Alert`] as in the API, with a top-level version
//! field `"flowscope_alert": 1` (raised only when a field changes meaning or
//! goes away; new fields may appear at any time):
//!
//! ```json
//! {"flowscope_alert": 1,
//!  "id": "dlq-growth:/:payment.orders.dlq", "rule": "dlq-growth",
//!  "severity": "warning", "state": "firing",
//!  "subject": "payment.orders.dlq", "vhost": "/",
//!  "summary": "payment.orders.dlq grew by 5 messages in 60 s",
//!  "evidence": {"queue": "payment.orders.dlq", "value": 5.0, "threshold": 1.0,
//!               "top_reasons": [["rejected", 5]], "failing_services": [["payment", 5]],
//!               "source_queues": ["payment.orders"]},
//!  "started_unix_us": 1700000000000000, "fired_unix_us": 1700000000000000,
//!  "updated_unix_us": 1700000000000000}
//! ```
//!
//! The resolved one is the same alert with `"state": "resolved"` and
//! `resolved_unix_us`.
//!
//! # Alertmanager
//!
//! `POST <alertmanager_url>/api/v2/alerts` with a list of `postableAlert`s:
//!
//! ```json
//! [{"labels": {"alertname": "dlq-growth", "severity": "warning",
//!              "queue": "payment.orders.dlq", "vhost": "/"},
//!   "annotations": {"summary": "payment.orders.dlq grew by 5 messages in 60 s",
//!                   "description": "value 5, threshold 1; reasons: rejected ×5; …"},
//!   "startsAt": "2023-11-14T22:13:20.000Z", "endsAt": "2023-11-14T22:17:20.000Z",
//!   "generatorURL": "http://127.0.0.1:8080/alerts"}]
//! ```
//!
//! `queue` and `vhost` are left out for flow alerts. A firing alert's
//! `endsAt` lies [`ALERTMANAGER_VALIDITY`] ahead and the alert is sent again
//! every [`ALERTMANAGER_RESEND`] while it fires, as Prometheus does, so
//! Alertmanager neither resolves it early nor keeps it if flowscope goes
//! away; a resolved alert's `endsAt` is when it resolved.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use flowscope_model::{Alert, AlertState};
use serde::Serialize;
use serde_json::Value;

/// The version of the webhook format.
pub const ALERT_WEBHOOK_VERSION: u32 = 1;
/// Firing alerts are sent to Alertmanager again this often.
pub const ALERTMANAGER_RESEND: Duration = Duration::from_secs(60);
/// How far ahead a firing alert's `endsAt` lies: four resends, as Prometheus.
pub const ALERTMANAGER_VALIDITY: Duration = Duration::from_secs(4 * 60);

/// Whether an alert is worth a notification: it fires, or it resolved after
/// firing (pending ones, and those that cleared before firing, are not).
pub fn is_notifiable(alert: &Alert) -> bool {
    match alert.state {
        AlertState::Firing => true,
        AlertState::Resolved => alert.fired_unix_us.is_some(),
        AlertState::Pending => false,
    }
}

#[derive(Serialize)]
struct WebhookBody<'a> {
    flowscope_alert: u32,
    #[serde(flatten)]
    alert: &'a Alert,
}

/// The webhook JSON of an alert.
pub fn webhook_body(alert: &Alert) -> Value {
    serde_json::to_value(WebhookBody {
        flowscope_alert: ALERT_WEBHOOK_VERSION,
        alert,
    })
    .expect("alerts serialize")
}

/// An Alertmanager v2 `postableAlert`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PostableAlert {
    pub labels: BTreeMap<&'static str, String>,
    pub annotations: BTreeMap<&'static str, String>,
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
}

/// An alert as Alertmanager takes it, sent at `now_us`.
pub fn alertmanager_alert(alert: &Alert, ui_url: &str, now_us: i64) -> PostableAlert {
    let mut labels = BTreeMap::from([
        ("alertname", alert.rule.clone()),
        ("severity", alert.severity.as_str().to_owned()),
    ]);
    if let Some(queue) = &alert.evidence.queue {
        labels.insert("queue", queue.clone());
    }
    if let Some(vhost) = &alert.vhost {
        labels.insert("vhost", vhost.clone());
    }
    let annotations = BTreeMap::from([
        ("summary", alert.summary.clone()),
        ("description", describe(alert)),
    ]);
    let ends_at = match alert.resolved_unix_us {
        Some(resolved) => resolved,
        None => now_us + ALERTMANAGER_VALIDITY.as_micros() as i64,
    };
    PostableAlert {
        labels,
        annotations,
        starts_at: rfc3339(alert.fired_unix_us.unwrap_or(alert.started_unix_us)),
        ends_at: rfc3339(ends_at),
        generator_url: format!("{}/alerts", ui_url.trim_end_matches('/')),
    }
}

/// The evidence in a sentence or three.
pub fn describe(alert: &Alert) -> String {
    let e = &alert.evidence;
    let mut out = format!(
        "value {}, threshold {}",
        number(e.value),
        number(e.threshold)
    );
    let pairs = |list: &[(String, u64)]| {
        list.iter()
            .map(|(name, n)| format!("{name} ×{n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !e.top_reasons.is_empty() {
        let _ = write!(out, "; reasons: {}", pairs(&e.top_reasons));
    }
    if !e.failing_services.is_empty() {
        let _ = write!(out, "; failing services: {}", pairs(&e.failing_services));
    }
    if !e.source_queues.is_empty() {
        let _ = write!(out, "; dead-lettered from: {}", e.source_queues.join(", "));
    }
    out
}

fn number(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x:.3}")
    }
}

/// Unix microseconds as RFC 3339 UTC with milliseconds (`2023-11-14T22:13:20.000Z`).
pub fn rfc3339(unix_us: i64) -> String {
    let secs = unix_us.div_euclid(1_000_000);
    let millis = unix_us.rem_euclid(1_000_000) / 1_000;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use flowscope_model::{AlertEvidence, Severity};
    use serde_json::json;

    fn alert(state: AlertState) -> Alert {
        Alert {
            id: "dlq-growth:/:payment.orders.dlq".into(),
            rule: "dlq-growth".into(),
            severity: Severity::Warning,
            state,
            subject: "payment.orders.dlq".into(),
            vhost: Some("/".into()),
            summary: "payment.orders.dlq grew by 2 messages in 60 s".into(),
            evidence: AlertEvidence {
                queue: Some("payment.orders.dlq".into()),
                value: 2.0,
                threshold: 1.0,
                top_reasons: vec![("rejected".into(), 2)],
                failing_services: vec![("payment".into(), 2)],
                source_queues: vec!["payment.orders".into()],
            },
            started_unix_us: 1_700_000_000_000_000,
            fired_unix_us: Some(1_700_000_000_000_000),
            resolved_unix_us: (state == AlertState::Resolved).then_some(1_700_000_030_500_000),
            updated_unix_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn times_are_rfc3339_utc() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_700_000_000_123_456), "2023-11-14T22:13:20.123Z");
        assert_eq!(rfc3339(951_782_400 * 1_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339(-1_000), "1969-12-31T23:59:59.999Z");
    }

    #[test]
    fn the_webhook_body_is_the_alert_with_a_version() {
        let body = webhook_body(&alert(AlertState::Firing));
        assert_eq!(body["flowscope_alert"], 1);
        assert_eq!(body["state"], "firing");
        assert_eq!(body["evidence"]["top_reasons"], json!([["rejected", 2]]));
        let back: Alert = serde_json::from_value(body).unwrap();
        assert_eq!(back, alert(AlertState::Firing));
    }

    #[test]
    fn alertmanager_alerts_have_the_v2_shape() {
        let firing = alertmanager_alert(
            &alert(AlertState::Firing),
            "http://ui:8080/",
            1_700_000_001_000_000,
        );
        let json = serde_json::to_value(&firing).unwrap();
        assert_eq!(
            json["labels"],
            json!({"alertname": "dlq-growth", "severity": "warning",
                   "queue": "payment.orders.dlq", "vhost": "/"})
        );
        assert_eq!(json["startsAt"], "2023-11-14T22:13:20.000Z");
        assert_eq!(json["endsAt"], "2023-11-14T22:17:21.000Z");
        assert_eq!(json["generatorURL"], "http://ui:8080/alerts");
        assert_eq!(
            json["annotations"]["description"],
            "value 2, threshold 1; reasons: rejected ×2; failing services: payment ×2; dead-lettered from: payment.orders"
        );
        let resolved = alertmanager_alert(&alert(AlertState::Resolved), "http://ui", 0);
        assert_eq!(resolved.ends_at, "2023-11-14T22:13:50.500Z");
        assert!(is_notifiable(&alert(AlertState::Resolved)));
        assert!(!is_notifiable(&alert(AlertState::Pending)));
    }
}
