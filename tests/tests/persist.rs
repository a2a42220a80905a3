//! Every span `flowscope serve` answers "accepted" for is in its store after a
//! clean stop, even when it accepted faster than the store could write.
//!
//! A burst of OTLP/HTTP protobuf requests fills the pipeline (the receiver
//! answers 503 "retry later" when it is full, and those spans do not count);
//! then SIGTERM arrives mid-burst. The process must exit on its own, and the
//! SQLite file must hold one stored observation per accepted span.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use flowscope_server::store::{Store, StoreConfig};
use flowscope_tests::eventually;
use flowscope_tests::server::{ServeConfig, ServeProcess};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;

/// Spans per request: 25 traces of 4 spans, like a small shop's batch.
const SPANS_PER_REQUEST: usize = 100;
/// Accepted spans to reach before the stop: more than the store writes in
/// the seconds a fixed shutdown timeout would allow.
const TARGET_ACCEPTED: u64 = 60_000;
/// Concurrent senders.
const SENDERS: usize = 4;

fn request(batch: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let text = |s: &str| AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    };
    let spans = (0..SPANS_PER_REQUEST as u64)
        .map(|i| {
            let trace = batch * 25 + i / 4;
            let mut trace_id = [0u8; 16];
            trace_id[8..].copy_from_slice(&(trace + 1).to_be_bytes());
            let mut span_id = [0u8; 8];
            span_id.copy_from_slice(&((trace << 3) + (i % 4) + 1).to_be_bytes());
            Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                name: format!("orders process step-{}", i % 4),
                kind: 5,
                start_time_unix_nano: now + i * 1_000,
                end_time_unix_nano: now + i * 1_000 + 500_000,
                attributes: vec![
                    KeyValue {
                        key: "messaging.system".into(),
                        value: Some(text("rabbitmq")),
                        ..Default::default()
                    },
                    KeyValue {
                        key: "shop.order_id".into(),
                        value: Some(text(&format!("order-{trace}"))),
                        ..Default::default()
                    },
                ],
                ..Default::default()
            }
        })
        .collect();
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(text("burst")),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Posts requests until told to stop; counts the spans answered with 200.
async fn send_until(
    url: String,
    first_batch: u64,
    accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> u64 {
    let client = reqwest::Client::new();
    let mut batch = first_batch;
    let mut refused = 0;
    while !stop.load(Ordering::Relaxed) {
        let sent = client
            .post(&url)
            .header("content-type", "application/x-protobuf")
            .body(request(batch))
            .send()
            .await;
        match sent.map(|r| r.status().as_u16()) {
            Ok(200) => {
                accepted.fetch_add(SPANS_PER_REQUEST as u64, Ordering::Relaxed);
                batch += SENDERS as u64;
            }
            Ok(503 | 429) => {
                refused += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            // The server is stopping: nothing more is accepted.
            Ok(_) | Err(_) => break,
        }
    }
    refused
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_span_accepted_before_a_clean_stop_is_stored() {
    let dir = std::env::temp_dir().join(format!("flowscope-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite://{}/flowscope.db", dir.display());
    let config = ServeConfig::write(
        &dir,
        &format!(
            r#"
[firehose]
enabled = false
[management]
enabled = false
[store]
url = "{db}"
"#
        ),
    );
    let (listen, http) = (config.listen, config.http);
    let mut flowscope = ServeProcess::spawn(&config.path);
    let base = format!("http://127.0.0.1:{listen}");
    eventually(Duration::from_secs(30), "flowscope to answer", || async {
        Ok(reqwest::get(format!("{base}/healthz"))
            .await
            .ok()
            .filter(|r| r.status().is_success())
            .map(|_| ()))
    })
    .await;

    let accepted = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let url = format!("http://127.0.0.1:{http}/v1/traces");
    let senders: Vec<_> = (0..SENDERS as u64)
        .map(|i| tokio::spawn(send_until(url.clone(), i, accepted.clone(), stop.clone())))
        .collect();
    let started = Instant::now();
    while accepted.load(Ordering::Relaxed) < TARGET_ACCEPTED
        && started.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGTERM while the senders are still sending.
    kill(Pid::from_raw(flowscope.0.id() as i32), Signal::SIGTERM).unwrap();
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = flowscope.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(180),
            "flowscope did not exit within 3 minutes of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    stop.store(true, Ordering::Relaxed);
    let mut refused = 0;
    for sender in senders {
        refused += sender.await.unwrap();
    }
    assert!(status.success(), "flowscope exited with {status}");
    let accepted = accepted.load(Ordering::Relaxed);
    eprintln!(
        "accepted {accepted} spans ({refused} requests refused while full); \
         stopped in {:?}",
        stopping.elapsed()
    );
    assert!(
        accepted >= TARGET_ACCEPTED,
        "only {accepted} spans accepted in a minute"
    );

    let store = Store::open(&StoreConfig {
        url: db,
        ..StoreConfig::default()
    })
    .await
    .unwrap();
    let stats = store.stats().await.unwrap();
    store.close().await;
    assert_eq!(
        stats.num_observations, accepted,
        "every accepted span is stored"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
