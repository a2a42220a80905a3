//! OTLP/HTTP clients that hold a connection without finishing a request's
//! headers ("slowloris") are cut after `otlp.header_timeout_secs`; clients
//! that keep a connection open between exports, or send their headers in
//! pieces within the time, are served as usual.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use flowscope_collectors::otlp::OtlpConfig;
use flowscope_tests::receiver::TestReceiver;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use prost::Message as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// The timeout the receiver under test runs with.
const TIMEOUT: Duration = Duration::from_secs(1);
/// Ample time for the cut: the receiver looks three times per timeout.
const CUT_WITHIN: Duration = Duration::from_secs(10);

async fn receiver() -> TestReceiver {
    let config = OtlpConfig {
        header_timeout_secs: TIMEOUT.as_secs(),
        ..OtlpConfig::default()
    };
    TestReceiver::start_with(1_000, config).await
}

/// One export of one span, as an HTTP/1.1 request's head and body.
fn export(addr: SocketAddr, name: &str) -> (Vec<u8>, Vec<u8>) {
    let request = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    trace_id: vec![0xab; 16],
                    span_id: vec![7; 8],
                    name: name.into(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let body = request.encode_to_vec();
    let head = format!(
        "POST /v1/traces HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-protobuf\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    (head.into_bytes(), body)
}

/// Reads one whole answer (its head, then as many bytes as its
/// `content-length` says); its status line.
async fn status_line(stream: &mut TcpStream) -> String {
    let mut read = Vec::new();
    let mut buf = [0u8; 1024];
    let (head, body_len) = loop {
        if let Some(end) = read.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&read[..end]).into_owned();
            let body_len: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(str::to_owned)
                })
                .map_or(0, |v| v.trim().parse().unwrap());
            read.drain(..end + 4);
            break (head, body_len);
        }
        let n = tokio::time::timeout(CUT_WITHIN, stream.read(&mut buf))
            .await
            .expect("an answer in time")
            .unwrap();
        assert!(n > 0, "the connection closed before answering");
        read.extend_from_slice(&buf[..n]);
    };
    while read.len() < body_len {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed within the answer's body");
        read.extend_from_slice(&buf[..n]);
    }
    assert_eq!(read.len(), body_len, "one answer, nothing after it");
    head.lines().next().unwrap_or_default().to_owned()
}

/// Waits until the server closes the connection; how long that took from `since`.
async fn closed(stream: &mut TcpStream, since: Instant) -> Duration {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(CUT_WITHIN, stream.read(&mut buf)).await {
        Err(_) => panic!("not cut within {CUT_WITHIN:?}"),
        Ok(Ok(0)) | Ok(Err(_)) => since.elapsed(),
        Ok(Ok(n)) => panic!(
            "answered instead of cut: {}",
            String::from_utf8_lossy(&buf[..n])
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_finish_its_headers_in_time_is_cut() {
    let mut receiver = receiver().await;
    let addr = receiver.http;

    // Half a head, then nothing.
    let since = Instant::now();
    let mut slow = TcpStream::connect(addr).await.unwrap();
    let (head, _) = export(addr, "never");
    slow.write_all(&head[..20]).await.unwrap();
    let took = closed(&mut slow, since).await;
    assert!(took >= TIMEOUT, "cut after {took:?}, before the timeout");

    // Connected, and not a byte.
    let since = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let took = closed(&mut silent, since).await;
    assert!(took >= TIMEOUT, "cut after {took:?}, before the timeout");

    // A kept-alive connection whose next request stops halfway: cut too.
    let mut kept = TcpStream::connect(addr).await.unwrap();
    let (head, body) = export(addr, "first");
    kept.write_all(&[head.clone(), body].concat())
        .await
        .unwrap();
    assert_eq!(status_line(&mut kept).await, "HTTP/1.1 200 OK");
    assert_eq!(receiver.spans(1).await[0].name, "first");
    let since = Instant::now();
    kept.write_all(&head[..30]).await.unwrap();
    let took = closed(&mut kept, since).await;
    assert!(took >= TIMEOUT, "cut after {took:?}, before the timeout");

    // Nothing of theirs reached the pipeline, and others are served.
    assert!(receiver.observations.is_empty());
    let (_, body) = export(addr, "after");
    let response = receiver.post("application/x-protobuf", None, body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(receiver.spans(1).await[0].name, "after");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kept_alive_connections_and_headers_in_pieces_within_the_time_are_served() {
    let mut receiver = receiver().await;
    let addr = receiver.http;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    for (i, pause) in [Duration::ZERO, TIMEOUT * 3, TIMEOUT * 2]
        .into_iter()
        .enumerate()
    {
        // Idle between exports for up to three timeouts: kept open.
        tokio::time::sleep(pause).await;
        let name = format!("export {i}");
        let (head, body) = export(addr, &name);
        // The head in three pieces, each well within the time.
        for piece in head.chunks(head.len() / 3 + 1) {
            stream.write_all(piece).await.unwrap();
            tokio::time::sleep(TIMEOUT / 4).await;
        }
        stream.write_all(&body).await.unwrap();
        assert_eq!(status_line(&mut stream).await, "HTTP/1.1 200 OK", "{name}");
        assert_eq!(receiver.spans(1).await[0].name, name);
    }
}
