//! The OTLP receiver against real OpenTelemetry clients: the Rust exporter
//! (gRPC with gzip, HTTP protobuf with gzip, HTTP JSON), the Python SDK's gRPC
//! and HTTP exporters, hand-written OTLP/JSON, and hostile or untimely
//! requests. Each test serves a fresh `OtlpReceiver` on port 0 and reads what
//! reaches the pipeline.

use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use flowscope_collectors::otlp::{self, OtlpConfig, OtlpReceiver};
use flowscope_collectors::pipeline::{self, Metrics, ObservationSender};
use flowscope_model::{Observation, SpanKind, SpanObservation};
use opentelemetry::trace::{
    Link, Span as _, SpanKind as OtelKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Compression, Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_otlp::{WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as OtlpKeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use prost::Message as _;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::codec::CompressionEncoding;

/// How long a span gets to reach the pipeline.
const ARRIVAL: Duration = Duration::from_secs(15);

/// A receiver on port 0 with its own pipeline channel.
struct TestReceiver {
    grpc: SocketAddr,
    http: SocketAddr,
    observations: mpsc::Receiver<Observation>,
    metrics: Metrics,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestReceiver {
    async fn start(capacity: usize, max_request_bytes: usize) -> Self {
        let metrics = Metrics::default();
        let (tx, observations) = pipeline::channel(capacity);
        let sender = ObservationSender::new(tx, &metrics, "otlp");
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = OtlpConfig {
            grpc_addr: any_port,
            http_addr: any_port,
            max_request_bytes,
            ..OtlpConfig::default()
        };
        let (grpc_listener, http_listener) = otlp::bind(&config).await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let http = http_listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let receiver = OtlpReceiver::new(config, sender);
        let server = tokio::spawn(receiver.serve(grpc_listener, http_listener, shutdown.clone()));
        Self {
            grpc,
            http,
            observations,
            metrics,
            shutdown,
            server,
        }
    }

    fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.http)
    }

    /// The next `n` spans that reach the pipeline.
    async fn spans(&mut self, n: usize) -> Vec<SpanObservation> {
        let mut spans = Vec::new();
        while spans.len() < n {
            match tokio::time::timeout(ARRIVAL, self.observations.recv()).await {
                Ok(Some(Observation::Span(span))) => spans.push(*span),
                Ok(other) => panic!("expected a span, got {other:?}"),
                Err(_) => panic!(
                    "only {} of {n} spans arrived within {ARRIVAL:?}: {spans:#?}",
                    spans.len()
                ),
            }
        }
        spans
    }

    fn dropped(&self) -> u64 {
        self.metrics.value("observations_dropped", "otlp")
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn find<'a>(spans: &'a [SpanObservation], service: &str, name: &str) -> &'a SpanObservation {
    spans
        .iter()
        .find(|s| s.service == service && s.name == name)
        .unwrap_or_else(|| panic!("no span {name:?} of {service:?} in {spans:#?}"))
}

/// Ids (lowercase hex) of the spans `record_shop_spans` made.
#[derive(Debug)]
struct ShopIds {
    order_trace: String,
    order_span: String,
    cart_trace: String,
    cart_span: String,
}

/// With the Rust SDK and `exporter`: a checkout span (its own trace), then an
/// order request span with a producer child that links to the checkout, fails
/// and records an exception. Runs on the blocking pool: the simple processor
/// blocks on each export.
async fn record_shop_spans(exporter: SpanExporter) -> ShopIds {
    tokio::task::spawn_blocking(move || {
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter)
            .with_resource(
                Resource::builder_empty()
                    .with_service_name("payment")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("shop.payment");
        let mut cart = tracer
            .span_builder("cart.checkout")
            .with_kind(OtelKind::Internal)
            .start(&tracer);
        let cart_cx = cart.span_context().clone();
        cart.end();

        let order = tracer
            .span_builder("POST /orders")
            .with_kind(OtelKind::Server)
            .start(&tracer);
        let order_cx = Context::new().with_span(order);
        let mut publish = tracer
            .span_builder("shop.events publish")
            .with_kind(OtelKind::Producer)
            .with_attributes([
                KeyValue::new("messaging.system", "rabbitmq"),
                KeyValue::new("messaging.destination.name", "shop.events"),
                KeyValue::new("messaging.message.id", "m-42"),
                KeyValue::new(
                    "messaging.rabbitmq.destination.routing_key",
                    "payment.declined",
                ),
                KeyValue::new("messaging.operation.type", "send"),
                KeyValue::new("order.total_cents", 7998_i64),
            ])
            .with_links(vec![Link::new(
                cart_cx.clone(),
                vec![KeyValue::new("link.kind", "checkout")],
                0,
            )])
            .start_with_context(&tracer, &order_cx);
        publish.add_event(
            "exception",
            vec![
                KeyValue::new("exception.type", "PaymentDeclined"),
                KeyValue::new("exception.message", "card declined"),
            ],
        );
        publish.set_status(Status::error("card declined"));
        publish.end();
        let ids = ShopIds {
            order_trace: order_cx.span().span_context().trace_id().to_string(),
            order_span: order_cx.span().span_context().span_id().to_string(),
            cart_trace: cart_cx.trace_id().to_string(),
            cart_span: cart_cx.span_id().to_string(),
        };
        order_cx.span().end();
        provider.force_flush().unwrap();
        provider.shutdown().unwrap();
        ids
    })
    .await
    .unwrap()
}

fn assert_shop_spans(spans: &[SpanObservation], ids: &ShopIds) {
    let cart = find(spans, "payment", "cart.checkout");
    assert_eq!(
        (cart.trace_id.as_str(), cart.span_id.as_str()),
        (ids.cart_trace.as_str(), ids.cart_span.as_str())
    );
    let order = find(spans, "payment", "POST /orders");
    assert_eq!(
        (order.kind, order.parent_span_id.as_deref()),
        (SpanKind::Server, None)
    );
    let publish = find(spans, "payment", "shop.events publish");
    assert_eq!(publish.scope, "shop.payment");
    assert_eq!(publish.kind, SpanKind::Producer);
    assert_eq!(publish.trace_id, ids.order_trace);
    assert_eq!(
        publish.parent_span_id.as_deref(),
        Some(ids.order_span.as_str())
    );
    assert!(
        publish.end_unix_us >= publish.start_unix_us
            && publish.start_unix_us > 1_600_000_000_000_000
    );
    assert_eq!(
        publish.attributes["messaging.destination.name"],
        json!("shop.events")
    );
    assert_eq!(publish.attributes["order.total_cents"], json!(7998));
    let messaging = publish.messaging.as_ref().expect("messaging attributes");
    assert_eq!(messaging.system.as_deref(), Some("rabbitmq"));
    assert_eq!(messaging.destination.as_deref(), Some("shop.events"));
    assert_eq!(messaging.message_id.as_deref(), Some("m-42"));
    assert_eq!(messaging.routing_key.as_deref(), Some("payment.declined"));
    let [link] = publish.links.as_slice() else {
        panic!("one link expected: {publish:#?}")
    };
    assert_eq!(
        (link.trace_id.as_str(), link.span_id.as_str()),
        (ids.cart_trace.as_str(), ids.cart_span.as_str())
    );
    assert_eq!(link.attributes["link.kind"], json!("checkout"));
    let [exception] = publish.events.as_slice() else {
        panic!("one event expected: {publish:#?}")
    };
    assert_eq!(exception.name, "exception");
    assert_eq!(
        exception.attributes["exception.type"],
        json!("PaymentDeclined")
    );
    assert_eq!(
        exception.attributes["exception.message"],
        json!("card declined")
    );
    assert!(publish.status.is_error(), "{:?}", publish.status);
    assert_eq!(publish.status.message, "card declined");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_the_rust_exporter_over_grpc_with_gzip_arrive_whole() {
    let mut receiver = TestReceiver::start(64, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    let url = receiver.grpc_url();
    let exporter = tokio::task::spawn_blocking(move || {
        SpanExporter::builder()
            .with_tonic()
            .with_endpoint(url)
            .with_compression(Compression::Gzip)
            .build()
    });
    let ids = record_shop_spans(exporter.await.unwrap().unwrap()).await;
    assert_shop_spans(&receiver.spans(3).await, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_the_rust_exporter_over_http_protobuf_with_gzip_arrive_whole() {
    let mut receiver = TestReceiver::start(64, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(receiver.traces_url())
        .with_compression(Compression::Gzip)
        .build()
        .unwrap();
    let ids = record_shop_spans(exporter).await;
    assert_shop_spans(&receiver.spans(3).await, &ids);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_the_rust_exporter_over_http_json_arrive_whole() {
    let mut receiver = TestReceiver::start(64, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    let exporter = SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(receiver.traces_url())
        .build()
        .unwrap();
    let ids = record_shop_spans(exporter).await;
    assert_shop_spans(&receiver.spans(3).await, &ids);
}

/// OTLP/JSON as the spec writes it: hex ids (here upper case), camelCase,
/// 64-bit integers as strings, enums as numbers; old semconv names.
const OLD_SEMCONV_JSON: &str = r#"{"resourceSpans": [{
  "resource": {"attributes": [
    {"key": "service.name", "value": {"stringValue": "legacy-shipping"}},
    {"key": "host.name", "value": {"stringValue": "box-7"}}]},
  "scopeSpans": [{"scope": {"name": "amqp-lib", "version": "0.9"}, "spans": [{
    "traceId": "5B8EFFF798038103D269B633813FC60C", "spanId": "EEE19B7EC3C1B174",
    "parentSpanId": "", "name": "shop.events receive", "kind": 5,
    "startTimeUnixNano": "1700000000000000000", "endTimeUnixNano": "1700000000500000000",
    "attributes": [
      {"key": "messaging.system", "value": {"stringValue": "rabbitmq"}},
      {"key": "messaging.destination", "value": {"stringValue": "shop.events"}},
      {"key": "messaging.message_id", "value": {"stringValue": "m-7"}},
      {"key": "messaging.rabbitmq.routing_key", "value": {"stringValue": "order.shipped"}},
      {"key": "messaging.operation", "value": {"stringValue": "receive"}},
      {"key": "delivery.attempt", "value": {"intValue": "3"}}],
    "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}],
    "status": {"code": 2, "message": "timed out"}}]}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_with_old_semconv_names_arrives_normalized() {
    let mut receiver = TestReceiver::start(64, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    let response = post(&receiver, "application/json", None, OLD_SEMCONV_JSON.into()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));

    let [span] = receiver.spans(1).await.try_into().unwrap();
    assert_eq!(
        (span.service.as_str(), span.scope.as_str()),
        ("legacy-shipping", "amqp-lib")
    );
    assert_eq!(span.resource["host.name"], json!("box-7"));
    assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(
        (span.span_id.as_str(), span.parent_span_id.as_deref()),
        ("eee19b7ec3c1b174", None)
    );
    assert_eq!(span.kind, SpanKind::Consumer);
    assert_eq!(
        (span.start_unix_us, span.end_unix_us),
        (1_700_000_000_000_000, 1_700_000_000_500_000)
    );
    assert_eq!(span.attributes["delivery.attempt"], json!(3));
    assert_eq!(
        (span.status.code.as_str(), span.status.message.as_str()),
        ("error", "timed out")
    );
    assert_eq!(span.links[0].trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(span.links[0].span_id, "b7ad6b7169203331");
    let messaging = span.messaging.unwrap();
    assert_eq!(messaging.system.as_deref(), Some("rabbitmq"));
    assert_eq!(messaging.destination.as_deref(), Some("shop.events"));
    assert_eq!(messaging.message_id.as_deref(), Some("m-7"));
    assert_eq!(messaging.routing_key.as_deref(), Some("order.shipped"));
    assert_eq!(messaging.operation.as_deref(), Some("receive"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_from_the_python_sdk_over_grpc_and_http_arrive_with_attributes_and_link() {
    let venv =
        std::env::var("FLOWSCOPE_PY_VENV").unwrap_or_else(|_| "/var/tmp/flowscope-venv".into());
    let python = std::path::Path::new(&venv).join("bin/python");
    assert!(
        python.exists(),
        "no Python virtualenv at {venv} (FLOWSCOPE_PY_VENV): run scripts/test, which creates it \
         with the OpenTelemetry SDK (or `source scripts/lib.sh && ensure_python_venv`)"
    );
    let mut receiver = TestReceiver::start(64, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/python/otlp_export.py");
    let run = tokio::process::Command::new(&python)
        .args([script, &receiver.grpc_url(), &receiver.traces_url()])
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("python timed out")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    let spans = receiver.spans(4).await;
    for service in ["py-grpc", "py-http"] {
        let producer = find(&spans, service, "shop.events publish");
        let consumer = find(&spans, service, "shop.events process");
        assert_eq!(
            (producer.kind, consumer.kind),
            (SpanKind::Producer, SpanKind::Consumer)
        );
        assert_eq!(producer.scope, "flowscope.tests.python");
        for span in [producer, consumer] {
            assert_eq!(
                span.attributes["messaging.system"],
                json!("rabbitmq"),
                "{span:#?}"
            );
            assert_eq!(
                span.attributes["messaging.destination.name"],
                json!("shop.events")
            );
            assert_eq!(
                span.messaging.as_ref().unwrap().destination.as_deref(),
                Some("shop.events")
            );
            assert!(
                stdout.contains(&span.span_id),
                "{service}: {} not in {stdout}",
                span.span_id
            );
        }
        let [link] = consumer.links.as_slice() else {
            panic!("one link expected: {consumer:#?}")
        };
        assert_eq!(
            (&link.trace_id, &link.span_id),
            (&producer.trace_id, &producer.span_id)
        );
        assert_eq!(link.attributes["link.kind"], json!("message"));
    }
}

fn text(key: &str, value: &str) -> OtlpKeyValue {
    let value = any_value::Value::StringValue(value.into());
    OtlpKeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// A request with one span named `name`, with the given trace id and attributes.
fn one_span(
    name: &str,
    trace_id: Vec<u8>,
    attributes: Vec<OtlpKeyValue>,
) -> ExportTraceServiceRequest {
    let span = OtlpSpan {
        trace_id,
        span_id: vec![7; 8],
        name: name.into(),
        kind: 2,
        start_time_unix_nano: 1_700_000_000_000_000_000,
        end_time_unix_nano: 1_700_000_000_100_000_000,
        attributes,
        ..Default::default()
    };
    let resource = OtlpResource {
        attributes: vec![text("service.name", "orders")],
        ..Default::default()
    };
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                spans: vec![span],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

fn valid(name: &str) -> Vec<u8> {
    one_span(name, vec![0xab; 16], vec![]).encode_to_vec()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

async fn post(
    receiver: &TestReceiver,
    content_type: &str,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(receiver.traces_url())
        .header("content-type", content_type);
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.body(body).send().await.unwrap()
}

/// A request the receiver must refuse, and the answer expected: its status
/// and words its message must contain.
struct BadRequest {
    what: &'static str,
    content_type: &'static str,
    encoding: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    says: &'static str,
}

/// Posts the bad request, checks the answer (a `google.rpc.Status` in the
/// request's format, JSON when that is unknown), returns its message.
async fn refused(receiver: &TestReceiver, case: BadRequest) -> String {
    let what = case.what;
    let response = post(receiver, case.content_type, case.encoding, case.body).await;
    assert_eq!(
        response.status(),
        case.status,
        "{what}: {:?}",
        response.text().await
    );
    let format = response.headers()["content-type"].clone();
    let body = response.bytes().await.unwrap();
    let rpc = if format == "application/x-protobuf" {
        RpcStatus::decode(body).unwrap()
    } else {
        assert_eq!(format, "application/json", "{what}");
        serde_json::from_slice(&body).unwrap()
    };
    assert_ne!(rpc.code, 0, "{what}: {rpc:?}");
    assert!(
        rpc.message.contains(case.says),
        "{what}: {rpc:?} lacks {:?}",
        case.says
    );
    rpc.message
}

/// OTLP/JSON whose span `bad-id` has a 3-byte trace id.
fn bad_trace_id_json() -> Vec<u8> {
    serde_json::to_vec(&one_span("bad-id", vec![1, 2, 3], vec![])).unwrap()
}

/// 10 MiB of zeros, gzipped to a few kilobytes.
fn gzip_bomb() -> Vec<u8> {
    gzip(&vec![0; 10 * 1024 * 1024])
}

/// `google.rpc.Status`, the error body of OTLP/HTTP (protobuf or JSON).
#[derive(Clone, PartialEq, prost::Message, serde::Deserialize)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_are_refused_and_a_valid_one_still_passes() {
    let mut receiver = TestReceiver::start(64, 64 * 1024).await;
    let json = "application/json";
    let protobuf = "application/x-protobuf";
    let bad = |what, content_type, encoding, body, status, says| BadRequest {
        what,
        content_type,
        encoding,
        body,
        status,
        says,
    };
    #[rustfmt::skip]
    let cases = [
        bad("malformed JSON", json, None, b"{\"resourceSpans\": [".to_vec(), 400, "OTLP/JSON"),
        bad("JSON of the wrong shape", json, None, b"{\"resourceSpans\": 7}".to_vec(), 400, "OTLP/JSON"),
        bad("malformed protobuf", protobuf, None, vec![0x0a, 0xff, 0xff], 400, "invalid protobuf"),
        bad("bad trace id", json, None, bad_trace_id_json(), 400, "bad-id"),
        bad("wrong content type", "text/plain", None, valid("plain"), 415, "application/x-protobuf"),
        bad("oversize body", protobuf, None, vec![0; 100 * 1024], 413, "max_request_bytes"),
        bad("gzip bomb", protobuf, Some("gzip"), gzip_bomb(), 413, "after decompression"),
        bad("corrupt gzip", protobuf, Some("gzip"), b"not gzip".to_vec(), 400, "could not read"),
    ];
    for case in cases {
        let what = case.what;
        let message = refused(&receiver, case).await;
        let response = post(&receiver, protobuf, None, valid(what)).await;
        assert_eq!(
            response.status(),
            200,
            "a valid request after the {what}: {message}"
        );
        assert_eq!(receiver.spans(1).await[0].name, what);
    }
    // Gzip is also fine for valid requests.
    let response = post(&receiver, protobuf, Some("gzip"), gzip(&valid("gzipped"))).await;
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.spans(1).await[0].name, "gzipped");
    assert_eq!(receiver.dropped(), 0, "refused requests are not drops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_grpc_requests_are_refused_and_a_valid_one_still_passes() {
    let mut receiver = TestReceiver::start(64, 64 * 1024).await;
    let mut client = TraceServiceClient::connect(receiver.grpc_url())
        .await
        .unwrap();
    let status = client
        .export(one_span("bad-id", vec![1, 2, 3], vec![]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("bad-id") && status.message().contains("trace id"),
        "{status:?}"
    );

    // Over the limit: tonic refuses before the service sees it (OUT_OF_RANGE
    // plain, RESOURCE_EXHAUSTED once decompressed).
    let big = one_span(
        "big",
        vec![0xab; 16],
        vec![text("blob", &"x".repeat(100 * 1024))],
    );
    let status = client.export(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::OutOfRange, "{status:?}");
    let mut gzip_client = client.clone().send_compressed(CompressionEncoding::Gzip);
    let status = gzip_client.export(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    client
        .export(one_span("good", vec![0xab; 16], vec![]))
        .await
        .unwrap();
    gzip_client
        .export(one_span("good gzipped", vec![0xab; 16], vec![]))
        .await
        .unwrap();
    let spans = receiver.spans(2).await;
    assert_eq!(
        (spans[0].name.as_str(), spans[1].name.as_str()),
        ("good", "good gzipped")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_pipeline_asks_clients_to_retry_and_counts_the_refused_spans() {
    // Capacity 1 and nobody reading: the first span fills the pipeline.
    let receiver = TestReceiver::start(1, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    let protobuf = "application/x-protobuf";
    assert_eq!(
        post(&receiver, protobuf, None, valid("first"))
            .await
            .status(),
        200
    );

    let two_spans = {
        let mut request = one_span("second", vec![0xab; 16], vec![]);
        let span = request.resource_spans[0].scope_spans[0].spans[0].clone();
        request.resource_spans[0].scope_spans[0].spans.push(span);
        request.encode_to_vec()
    };
    let response = post(&receiver, protobuf, None, two_spans).await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(receiver.dropped(), 2);

    let mut client = TraceServiceClient::connect(receiver.grpc_url())
        .await
        .unwrap();
    let status = client
        .export(one_span("third", vec![0xab; 16], vec![]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("retry"), "{status:?}");
    assert_eq!(receiver.dropped(), 3);
    assert_eq!(receiver.metrics.value("observations_received", "otlp"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_both_servers_and_closes_the_pipeline() {
    let mut receiver = TestReceiver::start(64, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    assert_eq!(
        post(&receiver, "application/x-protobuf", None, valid("last"))
            .await
            .status(),
        200
    );
    receiver.shutdown.cancel();
    let server = &mut receiver.server;
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    assert_eq!(receiver.spans(1).await[0].name, "last");
    assert!(
        receiver.observations.recv().await.is_none(),
        "the sender must be dropped"
    );
}

#[tokio::test]
async fn a_port_in_use_is_named_in_the_error() {
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let config = OtlpConfig {
        grpc_addr: addr,
        http_addr: "127.0.0.1:0".parse().unwrap(),
        ..OtlpConfig::default()
    };
    let err = otlp::bind(&config).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("OTLP gRPC port {addr} is in use: ")),
        "{err}"
    );
}
