//! Notifications: each alert that fires or resolves goes to every webhook
//! and to Alertmanager (formats in [`super::payload`]).
//!
//! The engine hands alerts over with [`NotifierHandle::notify`], which never
//! waits: when the queue is full the alert is dropped and counted. One task
//! per destination delivers in order, each attempt under a 5 s timeout, up
//! to three attempts with a growing pause between them, so a slow or broken
//! destination delays only itself. Counters on `/metrics`, by destination
//! (`source="webhook"` or `"alertmanager"`):
//!
//! | counter | counts |
//! |---|---|
//! | `flowscope_alert_notifications_sent_total` | notifications delivered (a 2xx answer) |
//! | `flowscope_alert_notification_failures_total` | failed attempts (error, timeout, non-2xx) |
//! | `flowscope_alert_notifications_dropped_total` | notifications given up after the last attempt, or dropped because a queue was full (`source="queue"` for the engine's hand-over) |

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flowscope_collectors::pipeline::Metrics;
use flowscope_model::{Alert, AlertState, now_unix_us};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::payload::{self, ALERTMANAGER_RESEND};
use super::rules::AlertConfig;

/// Alerts waiting for delivery, per queue, at most.
pub const NOTIFY_QUEUE_CAPACITY: usize = 1_024;
/// One delivery attempt may take this long.
pub const NOTIFY_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per notification.
pub const NOTIFY_ATTEMPTS: u32 = 3;
/// The pause before the second attempt; it doubles before each next one.
pub const RETRY_BACKOFF: Duration = Duration::from_millis(250);

/// Sends alert notifications.
#[derive(Debug)]
pub struct Notifier {
    client: reqwest::Client,
    metrics: Arc<Metrics>,
    webhooks: Vec<String>,
    alertmanager_url: Option<String>,
    ui_url: String,
}

/// The engine's side of the notifier: hand alerts over, never wait.
#[derive(Debug)]
pub struct NotifierHandle {
    tx: mpsc::Sender<Alert>,
    dropped: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl NotifierHandle {
    /// Queues an alert for notification if it fired or resolved after
    /// firing; drops it (and counts) when the queue is full.
    pub fn notify(&self, alert: Alert) {
        if !payload::is_notifiable(&alert) {
            return;
        }
        if let Err(mpsc::error::TrySendError::Full(alert)) = self.tx.try_send(alert) {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            tracing::error!(id = %alert.id, "alert notification dropped: the notification queue is full");
        }
    }

    /// Stops taking alerts and waits up to `timeout` for those queued to be
    /// delivered.
    pub async fn shutdown(self, timeout: Duration) {
        drop(self.tx);
        if tokio::time::timeout(timeout, self.task).await.is_err() {
            tracing::warn!("alert notifications still undelivered at shutdown");
        }
    }
}

impl Notifier {
    /// Starts delivering to the configured webhooks and Alertmanager.
    pub fn spawn(config: AlertConfig, metrics: Arc<Metrics>) -> NotifierHandle {
        let client = reqwest::Client::builder()
            .timeout(NOTIFY_TIMEOUT)
            .build()
            .expect("an HTTP client without TLS builds");
        let notifier = Notifier {
            client,
            metrics: metrics.clone(),
            webhooks: config.webhooks,
            alertmanager_url: config.alertmanager_url,
            ui_url: config.ui_url,
        };
        let (tx, rx) = mpsc::channel(NOTIFY_QUEUE_CAPACITY);
        NotifierHandle {
            tx,
            dropped: metrics.counter("alert_notifications_dropped", "queue"),
            task: tokio::spawn(notifier.run(rx)),
        }
    }

    /// Fans alerts out to one task per destination until the handle is gone,
    /// then lets them finish.
    async fn run(self, mut alerts: mpsc::Receiver<Alert>) {
        let mut workers = Vec::new();
        for url in &self.webhooks {
            let (tx, rx) = mpsc::channel(NOTIFY_QUEUE_CAPACITY);
            let delivery = self.delivery("webhook", url.clone());
            workers.push((tx, "webhook", tokio::spawn(run_webhook(delivery, rx))));
        }
        if let Some(base) = &self.alertmanager_url {
            let (tx, rx) = mpsc::channel(NOTIFY_QUEUE_CAPACITY);
            let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
            let delivery = self.delivery("alertmanager", url);
            let ui_url = self.ui_url.clone();
            workers.push((
                tx,
                "alertmanager",
                tokio::spawn(run_alertmanager(delivery, ui_url, rx)),
            ));
        }
        while let Some(alert) = alerts.recv().await {
            for (tx, kind, _) in &workers {
                if tx.try_send(alert.clone()).is_err() {
                    self.metrics
                        .counter("alert_notifications_dropped", kind)
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::error!(id = %alert.id, destination = kind, "alert notification dropped: the destination is behind");
                }
            }
        }
        for (tx, _, task) in workers {
            drop(tx);
            let _ = task.await;
        }
    }

    fn delivery(&self, kind: &'static str, url: String) -> Delivery {
        Delivery {
            client: self.client.clone(),
            url,
            kind,
            sent: self.metrics.counter("alert_notifications_sent", kind),
            failures: self.metrics.counter("alert_notification_failures", kind),
            dropped: self.metrics.counter("alert_notifications_dropped", kind),
        }
    }
}

async fn run_webhook(delivery: Delivery, mut alerts: mpsc::Receiver<Alert>) {
    while let Some(alert) = alerts.recv().await {
        delivery.post(&payload::webhook_body(&alert)).await;
    }
}

/// Sends changes at once and firing alerts again every [`ALERTMANAGER_RESEND`].
async fn run_alertmanager(delivery: Delivery, ui_url: String, mut alerts: mpsc::Receiver<Alert>) {
    let mut firing: BTreeMap<String, Alert> = BTreeMap::new();
    let mut resend = tokio::time::interval(ALERTMANAGER_RESEND);
    resend.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    resend.tick().await;
    loop {
        let batch: Vec<Alert> = tokio::select! {
            received = alerts.recv() => {
                let Some(alert) = received else { return };
                if alert.state == AlertState::Firing {
                    firing.insert(alert.id.clone(), alert.clone());
                } else {
                    firing.remove(&alert.id);
                }
                vec![alert]
            }
            _ = resend.tick() => firing.values().cloned().collect(),
        };
        if batch.is_empty() {
            continue;
        }
        let now = now_unix_us();
        let body: Vec<_> = batch
            .iter()
            .map(|a| payload::alertmanager_alert(a, &ui_url, now))
            .collect();
        delivery
            .post(&serde_json::to_value(body).expect("alerts serialize"))
            .await;
    }
}

/// One destination and its counters.
#[derive(Debug)]
struct Delivery {
    client: reqwest::Client,
    url: String,
    kind: &'static str,
    sent: Arc<AtomicU64>,
    failures: Arc<AtomicU64>,
    dropped: Arc<AtomicU64>,
}

impl Delivery {
    /// Posts `body`, retrying on errors, timeouts, 5xx, 408 and 429.
    async fn post(&self, body: &Value) -> bool {
        let mut pause = RETRY_BACKOFF;
        for attempt in 1..=NOTIFY_ATTEMPTS {
            let retry = match self.client.post(&self.url).json(body).send().await {
                Ok(response) if response.status().is_success() => {
                    self.sent.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Ok(response) => {
                    let status = response.status();
                    tracing::warn!(url = %self.url, destination = self.kind, attempt, %status, "alert notification refused");
                    !status.is_client_error() || matches!(status.as_u16(), 408 | 429)
                }
                Err(error) => {
                    tracing::warn!(url = %self.url, destination = self.kind, attempt, %error, "alert notification failed");
                    true
                }
            };
            self.failures.fetch_add(1, Ordering::Relaxed);
            if !retry || attempt == NOTIFY_ATTEMPTS {
                break;
            }
            tokio::time::sleep(pause).await;
            pause *= 2;
        }
        self.dropped.fetch_add(1, Ordering::Relaxed);
        tracing::error!(url = %self.url, destination = self.kind, "alert notification given up");
        false
    }
}
