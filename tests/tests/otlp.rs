//! The OTLP receiver against real OpenTelemetry clients: the Rust exporter
//! (gRPC with gzip, HTTP protobuf with gzip, HTTP JSON), the Python SDK's gRPC
//! and HTTP exporters and hand-written OTLP/JSON. Each test serves a fresh
//! `OtlpReceiver` on port 0 and reads what reaches the pipeline; hostile or
//! untimely requests are in `otlp_bad_input.rs`.

use std::time::Duration;

use flowscope_collectors::otlp;
use flowscope_model::{SpanKind, SpanObservation};
use flowscope_tests::receiver::TestReceiver;
use opentelemetry::trace::{
    Link, Span as _, SpanKind as OtelKind, Status, TraceContextExt as _, Tracer as _,
    TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Compression, Protocol, SpanExporter, WithExportConfig as _};
use opentelemetry_otlp::{WithHttpConfig as _, WithTonicConfig as _};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use serde_json::{Value, json};

fn find<'a>(spans: &'a [SpanObservation], service: &str, name: &str) -> &'a SpanObservation {
    spans
        .iter()
        .find(|s| &*s.service == service && s.name == name)
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
        (cart.trace_id.to_string(), cart.span_id.to_string()),
        (ids.cart_trace.clone(), ids.cart_span.clone())
    );
    let order = find(spans, "payment", "POST /orders");
    assert_eq!((order.kind, order.parent_span_id), (SpanKind::Server, None));
    let publish = find(spans, "payment", "shop.events publish");
    assert_eq!(&*publish.scope, "shop.payment");
    assert_eq!(publish.kind, SpanKind::Producer);
    assert_eq!(publish.trace_id, ids.order_trace);
    assert_eq!(
        publish.parent_span_id.map(|s| s.to_string()),
        Some(ids.order_span.clone())
    );
    assert!(
        publish.end_unix_us >= publish.start_unix_us
            && publish.start_unix_us > 1_600_000_000_000_000
    );
    assert_eq!(
        publish
            .attributes
            .get("messaging.destination.name")
            .unwrap(),
        json!("shop.events")
    );
    assert_eq!(
        publish.attributes.get("order.total_cents").unwrap(),
        json!(7998)
    );
    let messaging = publish.messaging.as_ref().expect("messaging attributes");
    assert_eq!(messaging.system(), Some("rabbitmq"));
    assert_eq!(messaging.destination(), Some("shop.events"));
    assert_eq!(messaging.message_id(), Some("m-42"));
    assert_eq!(messaging.routing_key(), Some("payment.declined"));
    let [link] = publish.links.as_slice() else {
        panic!("one link expected: {publish:#?}")
    };
    assert_eq!(
        (link.trace_id.to_string(), link.span_id.to_string()),
        (ids.cart_trace.clone(), ids.cart_span.clone())
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
    let response = receiver
        .post("application/json", None, OLD_SEMCONV_JSON.into())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({}));

    let [span] = receiver.spans(1).await.try_into().unwrap();
    assert_eq!(
        (&*span.service, &*span.scope),
        ("legacy-shipping", "amqp-lib")
    );
    assert_eq!(span.resource["host.name"], json!("box-7"));
    assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(
        (span.span_id.to_string(), span.parent_span_id),
        ("eee19b7ec3c1b174".to_owned(), None)
    );
    assert_eq!(span.kind, SpanKind::Consumer);
    assert_eq!(
        (span.start_unix_us, span.end_unix_us),
        (1_700_000_000_000_000, 1_700_000_000_500_000)
    );
    assert_eq!(span.attributes.get("delivery.attempt").unwrap(), json!(3));
    assert_eq!(
        (span.status.code.as_str(), span.status.message.as_str()),
        ("error", "timed out")
    );
    assert_eq!(span.links[0].trace_id, "0af7651916cd43dd8448eb211c80319c");
    assert_eq!(span.links[0].span_id, "b7ad6b7169203331");
    let messaging = span.messaging.unwrap();
    assert_eq!(messaging.system(), Some("rabbitmq"));
    assert_eq!(messaging.destination(), Some("shop.events"));
    assert_eq!(messaging.message_id(), Some("m-7"));
    assert_eq!(messaging.routing_key(), Some("order.shipped"));
    assert_eq!(messaging.operation(), Some("receive"));
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
        assert_eq!(&*producer.scope, "flowscope.tests.python");
        for span in [producer, consumer] {
            assert_eq!(
                span.attributes.get("messaging.system").unwrap(),
                json!("rabbitmq"),
                "{span:#?}"
            );
            assert_eq!(
                span.attributes.get("messaging.destination.name").unwrap(),
                json!("shop.events")
            );
            assert_eq!(
                span.messaging.as_ref().unwrap().destination(),
                Some("shop.events")
            );
            assert!(
                stdout.contains(&span.span_id.to_string()),
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
