//! The OTLP receiver against hostile or untimely requests: malformed bodies,
//! wrong content types, gzip bombs, an overloaded pipeline, shutdown and a
//! port in use. Each one gets a clear error and costs nothing else: a valid
//! request right after still passes.

use std::convert::Infallible;
use std::io::Write as _;
use std::net::SocketAddr;
use std::time::Duration;

use flowscope_collectors::otlp::{self, OtlpConfig};
use flowscope_tests::receiver::TestReceiver;
use http_body_util::{BodyExt as _, StreamBody};
use hyper::body::{Bytes, Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue as OtlpKeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource as OtlpResource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span as OtlpSpan};
use prost::Message as _;
use tonic::codec::CompressionEncoding;

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
    let response = receiver
        .post(case.content_type, case.encoding, case.body)
        .await;
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
        bad("unknown encoding", protobuf, Some("br"), valid("br"), 415, "gzip, deflate"),
    ];
    for case in cases {
        let what = case.what;
        let message = refused(&receiver, case).await;
        let response = receiver.post(protobuf, None, valid(what)).await;
        assert_eq!(
            response.status(),
            200,
            "a valid request after the {what}: {message}"
        );
        assert_eq!(receiver.spans(1).await[0].name, what);
    }
    // Gzip is also fine for valid requests.
    let response = receiver
        .post(protobuf, Some("gzip"), gzip(&valid("gzipped")))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.spans(1).await[0].name, "gzipped");
    assert_eq!(receiver.dropped(), 0, "refused requests are not drops");
}

/// The request with the headers given, its body the chunks given (one
/// frame each).
fn request_in_chunks(
    mut request: http::request::Builder,
    headers: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
) -> http::Request<impl hyper::body::Body<Data = Bytes, Error = Infallible> + use<>> {
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let frames = chunks
        .into_iter()
        .map(|chunk| Ok::<_, Infallible>(Frame::data(Bytes::from(chunk))));
    request
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap()
}

/// An HTTP/1.1 request written by hand, its body sent as the chunks given
/// (chunked transfer encoding). Returns the status, headers and body.
async fn raw_http(
    addr: SocketAddr,
    method: http::Method,
    path: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
) -> (u16, http::HeaderMap, Bytes) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", addr.to_string());
    let response = sender
        .send_request(request_in_chunks(request, headers, chunks))
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (parts.status.as_u16(), parts.headers, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_bodies_in_pieces_or_deflated_pass_and_other_routes_say_what_is_served() {
    let mut receiver = TestReceiver::start(64, 64 * 1024).await;
    let protobuf = [("content-type", "application/x-protobuf")];
    let post = http::Method::POST;

    // A body in several chunks, no Content-Length: read whole.
    let body = valid("in pieces");
    let chunks = body
        .chunks(body.len() / 3 + 1)
        .map(<[u8]>::to_vec)
        .collect();
    let (status, _, _) =
        raw_http(receiver.http, post.clone(), "/v1/traces", &protobuf, chunks).await;
    assert_eq!(status, 200);
    assert_eq!(receiver.spans(1).await[0].name, "in pieces");

    // The same, passing the limit only in its last chunk: refused.
    let chunks = vec![vec![0; 40 * 1024], vec![0; 40 * 1024]];
    let (status, _, body) =
        raw_http(receiver.http, post.clone(), "/v1/traces", &protobuf, chunks).await;
    assert_eq!(status, 413, "{body:?}");
    assert!(
        String::from_utf8_lossy(&body).contains("max_request_bytes"),
        "{body:?}"
    );

    // HTTP's deflate (zlib) is read like gzip.
    let mut zlib = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    zlib.write_all(&valid("deflated")).unwrap();
    let response = receiver
        .post(
            "application/x-protobuf",
            Some("deflate"),
            zlib.finish().unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.spans(1).await[0].name, "deflated");

    // Another method, another path: refused, saying what is served.
    let (status, headers, body) =
        raw_http(receiver.http, http::Method::GET, "/v1/traces", &[], vec![]).await;
    assert_eq!(status, 405);
    assert_eq!(headers["allow"], "POST");
    assert!(String::from_utf8_lossy(&body).contains("POST"), "{body:?}");
    let (status, _, body) = raw_http(
        receiver.http,
        post,
        "/v1/metrics",
        &protobuf,
        vec![valid("metric")],
    )
    .await;
    assert_eq!(status, 404);
    let message = String::from_utf8_lossy(&body);
    assert!(
        message.contains("/v1/metrics") && message.contains("POST /v1/traces"),
        "{message}"
    );
    assert_eq!(receiver.dropped(), 0);
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

    // Over the limit, plain or once decompressed (a small gzip body).
    let big = one_span(
        "big",
        vec![0xab; 16],
        vec![text("blob", &"x".repeat(100 * 1024))],
    );
    let status = client.export(big.clone()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("max_request_bytes"), "{status:?}");
    let mut gzip_client = client.clone().send_compressed(CompressionEncoding::Gzip);
    let status = gzip_client.export(big).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("after decompression"),
        "{status:?}"
    );

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

/// A gRPC call written by hand: the headers given, the body sent as the
/// chunks given (one DATA frame each). Returns the HTTP status, then
/// `grpc-status` and `grpc-message` from the headers (a trailers-only
/// answer) or the trailers.
async fn raw_grpc(
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
    chunks: Vec<Vec<u8>>,
) -> (u16, Option<String>, String) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post(format!("http://{addr}{path}"));
    let response = sender
        .send_request(request_in_chunks(request, headers, chunks))
        .await
        .unwrap();
    let status = response.status().as_u16();
    let mut fields = response.headers().clone();
    let collected = response.into_body().collect().await.unwrap();
    if let Some(trailers) = collected.trailers() {
        fields.extend(trailers.clone());
    }
    let text = |name| {
        fields
            .get(name)
            .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
    };
    let message = text("grpc-message").unwrap_or_default();
    (status, text("grpc-status"), message.replace("%20", " "))
}

/// A gRPC request framed by hand and the answer expected: HTTP status,
/// `grpc-status` and words its `grpc-message` must contain.
struct GrpcCase {
    what: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, &'static str)>,
    chunks: Vec<Vec<u8>>,
    http_status: u16,
    grpc_status: Option<&'static str>,
    says: &'static str,
}

/// A valid export request's bytes with gRPC's 5-byte prefix (uncompressed).
fn prefixed(message: &[u8]) -> Vec<u8> {
    let mut framed = vec![0];
    framed.extend_from_slice(&(message.len() as u32).to_be_bytes());
    framed.extend_from_slice(message);
    framed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_requests_framed_wrong_are_refused_and_one_split_in_frames_passes() {
    let mut receiver = TestReceiver::start(64, 64 * 1024).await;
    let export = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    let grpc = ("content-type", "application/grpc");
    let good = prefixed(&valid("split"));
    let mut compressed_flag = prefixed(&valid("flagged"));
    compressed_flag[0] = 1;
    let mut two = good.clone();
    two.extend_from_slice(&good);
    let case = |what,
                path,
                headers: &[(&'static str, &'static str)],
                body: &[u8],
                http_status,
                grpc_status,
                says| {
        GrpcCase {
            what,
            path,
            headers: headers.to_vec(),
            chunks: vec![body.to_vec()],
            http_status,
            grpc_status,
            says,
        }
    };
    let json = ("content-type", "application/json");
    let metrics = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    #[rustfmt::skip]
    let cases = [
        case("another method", metrics, &[grpc], &good, 200, Some("12"), "OTLP traces only"),
        case("not gRPC", export, &[json], &good, 415, None, ""),
        case("unknown encoding", export, &[grpc, ("grpc-encoding", "br")], &good, 200, Some("12"), "gzip"),
        case("compressed without an encoding", export, &[grpc], &compressed_flag, 200, Some("13"), "grpc-encoding"),
        GrpcCase { chunks: vec![], ..case("no message", export, &[grpc], &[], 200, Some("3"), "no gRPC message") },
        case("cut short", export, &[grpc], &good[..good.len() - 3], 200, Some("3"), "cut short"),
        case("two messages", export, &[grpc], &two, 200, Some("3"), "more than one"),
        case("over the limit", export, &[grpc], &[0, 0, 2, 0, 0], 200, Some("8"), "max_request_bytes"),
        case("corrupt gzip", export, &[grpc, ("grpc-encoding", "gzip")], &[1, 0, 0, 0, 3, 1, 2, 3], 200, Some("3"), "as gzip"),
    ];
    for case in cases {
        let what = case.what;
        let (status, code, message) =
            raw_grpc(receiver.grpc, case.path, &case.headers, case.chunks).await;
        assert_eq!(
            (status, code.as_deref()),
            (case.http_status, case.grpc_status),
            "{what}: {message}"
        );
        assert!(
            message.contains(case.says),
            "{what}: {message:?} lacks {:?}",
            case.says
        );
    }
    assert!(
        tokio::time::timeout(Duration::from_millis(200), receiver.observations.recv())
            .await
            .is_err(),
        "a refused request let spans through"
    );

    // A valid message over several DATA frames, the first shorter than the prefix.
    let chunks = vec![good[..2].to_vec(), good[2..9].to_vec(), good[9..].to_vec()];
    let (status, code, message) = raw_grpc(receiver.grpc, export, &[grpc], chunks).await;
    assert_eq!((status, code.as_deref()), (200, Some("0")), "{message}");
    assert_eq!(receiver.spans(1).await[0].name, "split");
    assert_eq!(receiver.dropped(), 0, "refused requests are not drops");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overloaded_pipeline_asks_clients_to_retry_and_counts_the_refused_spans() {
    // Capacity 2 and nobody reading: the first request's two spans fill the pipeline.
    let receiver = TestReceiver::start(2, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    let protobuf = "application/x-protobuf";
    let spans = |name: &str, n: usize| {
        let mut request = one_span(name, vec![0xab; 16], vec![]);
        let span = request.resource_spans[0].scope_spans[0].spans[0].clone();
        request.resource_spans[0].scope_spans[0].spans = vec![span; n];
        request
    };
    assert_eq!(
        receiver
            .post(protobuf, None, spans("first", 2).encode_to_vec())
            .await
            .status(),
        200
    );

    let response = receiver
        .post(protobuf, None, spans("second", 1).encode_to_vec())
        .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(receiver.dropped(), 1);

    let mut client = TraceServiceClient::connect(receiver.grpc_url())
        .await
        .unwrap();
    let status = client
        .export(one_span("third", vec![0xab; 16], vec![]))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert!(status.message().contains("retry"), "{status:?}");
    assert_eq!(receiver.dropped(), 2);
    assert_eq!(receiver.metrics.value("observations_received", "otlp"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_larger_than_the_pipeline_is_refused_for_good_not_retried() {
    // More spans in one request than the pipeline ever holds: retrying cannot
    // help, so the answer is not the retryable one, and it says what to change.
    let receiver = TestReceiver::start(2, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    let mut request = one_span("big", vec![0xab; 16], vec![]);
    let span = request.resource_spans[0].scope_spans[0].spans[0].clone();
    request.resource_spans[0].scope_spans[0].spans = vec![span; 3];

    let response = receiver
        .post("application/x-protobuf", None, request.encode_to_vec())
        .await;
    assert_eq!(response.status(), 413);
    let status = RpcStatus::decode(response.bytes().await.unwrap()).unwrap();
    assert!(
        status.message.contains("3 spans") && status.message.contains("pipeline.channel_capacity"),
        "{status:?}"
    );

    let mut client = TraceServiceClient::connect(receiver.grpc_url())
        .await
        .unwrap();
    let status = client.export(request).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(
        status.message().contains("pipeline.channel_capacity"),
        "{status:?}"
    );
    assert_eq!(receiver.dropped(), 6);
    assert_eq!(receiver.metrics.value("observations_received", "otlp"), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_both_servers_and_closes_the_pipeline() {
    let mut receiver = TestReceiver::start(64, otlp::config::DEFAULT_MAX_REQUEST_BYTES).await;
    assert_eq!(
        receiver
            .post("application/x-protobuf", None, valid("last"))
            .await
            .status(),
        200
    );
    // A gRPC client that stays connected, idle, does not hold shutdown up.
    let mut client = TraceServiceClient::connect(receiver.grpc_url())
        .await
        .unwrap();
    client
        .export(one_span("grpc", vec![0xab; 16], vec![]))
        .await
        .unwrap();
    receiver.shutdown.cancel();
    let server = &mut receiver.server;
    tokio::time::timeout(Duration::from_secs(5), server)
        .await
        .expect("serve did not return")
        .unwrap()
        .unwrap();
    let spans = receiver.spans(2).await;
    assert_eq!(
        (spans[0].name.as_str(), spans[1].name.as_str()),
        ("last", "grpc")
    );
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
