//! The OTLP load generator: pre-encoded requests, paced at a target rate,
//! bounded by a request count and a deadline, over gRPC or HTTP/protobuf.
//!
//! Request `i` is due at `start + i / requests_per_sec` (an absolute schedule,
//! so a late request does not push the rest back); at most `max_in_flight`
//! are outstanding. A receiver that answers slower than the schedule makes
//! the generator fall behind, which shows as an offered rate below the target.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use prost::bytes::{Buf, Bytes};
use tokio::sync::Semaphore;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;

use super::payload::Template;

/// The OTLP trace export method.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// Requests outstanding at most.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 64;
/// How long one request may take before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Which OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    Grpc,
    Http,
}

impl Transport {
    pub fn name(self) -> &'static str {
        match self {
            Transport::Grpc => "gRPC",
            Transport::Http => "HTTP",
        }
    }
}

/// What to send.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Spans per second offered.
    pub spans_per_sec: f64,
    /// How long to send for (the request count follows from the rate).
    pub duration: Duration,
    pub max_in_flight: usize,
    /// The sequence number of the first request: a load that follows another
    /// on the same receiver starts where it ended, so that no trace, message
    /// or order id comes twice (a repeated id joins the earlier flow).
    pub first_seq: u64,
}

/// What was sent and what was accepted.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct LoadReport {
    pub num_requests: u64,
    pub num_ok: u64,
    pub num_refused: u64,
    pub spans_sent: u64,
    pub spans_ok: u64,
    /// From the first request to the last answer.
    pub elapsed_secs: f64,
    /// Spans sent per second, as achieved (below the target when behind).
    pub offered_spans_per_sec: f64,
    pub accepted_spans_per_sec: f64,
}

/// Requests needed to send `spans_per_sec` for `duration`, `spans_per_request` at a time.
pub fn num_requests(spans_per_sec: f64, duration: Duration, spans_per_request: usize) -> u64 {
    let spans = spans_per_sec * duration.as_secs_f64();
    (spans / spans_per_request.max(1) as f64).ceil().max(1.0) as u64
}

/// When request `index` is due, after the start.
pub fn due(index: u64, requests_per_sec: f64) -> Duration {
    Duration::from_secs_f64(index as f64 / requests_per_sec)
}

/// A client for one transport.
#[derive(Debug, Clone)]
pub enum Client {
    Grpc(Channel),
    Http(reqwest::Client, String),
}

impl Client {
    /// Connects (gRPC) or prepares (HTTP) a client for the receiver.
    pub async fn connect(transport: Transport, addr: SocketAddr) -> anyhow::Result<Self> {
        Ok(match transport {
            Transport::Grpc => {
                let channel = Channel::from_shared(format!("http://{addr}"))?
                    .connect_timeout(Duration::from_secs(5))
                    .connect()
                    .await
                    .with_context(|| format!("connecting to OTLP/gRPC at {addr}"))?;
                Client::Grpc(channel)
            }
            Transport::Http => Client::Http(
                reqwest::Client::builder()
                    .timeout(REQUEST_TIMEOUT)
                    .pool_max_idle_per_host(DEFAULT_MAX_IN_FLIGHT)
                    .build()?,
                format!("http://{addr}/v1/traces"),
            ),
        })
    }

    /// Sends one encoded export request; `Ok(true)` when it was accepted.
    pub async fn export(&self, body: Bytes) -> anyhow::Result<bool> {
        match self {
            Client::Grpc(channel) => {
                let mut grpc = tonic::client::Grpc::new(channel.clone());
                grpc.ready().await?;
                let path = tonic::codegen::http::uri::PathAndQuery::from_static(EXPORT_PATH);
                let mut request = tonic::Request::new(body);
                request.set_timeout(REQUEST_TIMEOUT);
                Ok(grpc.unary(request, path, RawCodec).await.is_ok())
            }
            Client::Http(client, url) => {
                let response = client
                    .post(url)
                    .header("content-type", "application/x-protobuf")
                    .body(body)
                    .send()
                    .await;
                Ok(response.is_ok_and(|r| r.status().is_success()))
            }
        }
    }
}

/// Sends `load` from `template` to the receiver; never runs past `load.duration` plus
/// [`REQUEST_TIMEOUT`] for the last answers.
pub async fn run(client: &Client, template: &Template, load: Load) -> anyhow::Result<LoadReport> {
    let spans_per_request = template.num_spans();
    let total = num_requests(load.spans_per_sec, load.duration, spans_per_request);
    let requests_per_sec = load.spans_per_sec / spans_per_request as f64;
    let slots = Arc::new(Semaphore::new(load.max_in_flight.max(1)));
    let ok = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + load.duration + REQUEST_TIMEOUT;
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..total {
        tokio::time::sleep_until(start + due(index, requests_per_sec)).await;
        if Instant::now() >= deadline {
            break;
        }
        let permit = slots.clone().acquire_owned().await?;
        let (client, ok) = (client.clone(), ok.clone());
        let body = template.stamp(load.first_seq + index, super::now_unix_nanos());
        tasks.spawn(async move {
            if matches!(client.export(body).await, Ok(true)) {
                ok.fetch_add(1, Ordering::Relaxed);
            }
            drop(permit);
        });
        sent += 1;
        // Reap finished tasks now and then, so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let send_secs = start.elapsed().as_secs_f64();
    let remaining = deadline.saturating_duration_since(Instant::now());
    let _ = tokio::time::timeout(remaining, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let elapsed = start.elapsed().as_secs_f64();
    let num_ok = ok.load(Ordering::Relaxed);
    let spans = spans_per_request as u64;
    Ok(LoadReport {
        num_requests: sent,
        num_ok,
        num_refused: sent - num_ok,
        spans_sent: sent * spans,
        spans_ok: num_ok * spans,
        elapsed_secs: elapsed,
        offered_spans_per_sec: (sent * spans) as f64 / send_secs.max(1e-9),
        accepted_spans_per_sec: (num_ok * spans) as f64 / elapsed.max(1e-9),
    })
}

/// A gRPC codec that sends already-encoded bytes and ignores the (empty) answer.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        prost::bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        src.advance(src.remaining());
        Ok(Some(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_count_covers_the_rate_for_the_duration() {
        assert_eq!(num_requests(10_000.0, Duration::from_secs(20), 100), 2_000);
        assert_eq!(num_requests(150.0, Duration::from_secs(1), 100), 2);
        assert_eq!(num_requests(0.0, Duration::from_secs(1), 100), 1);
    }

    #[test]
    fn requests_are_due_on_an_absolute_schedule() {
        // 10k spans/s in requests of 100: one request every 10 ms.
        assert_eq!(due(0, 100.0), Duration::ZERO);
        assert_eq!(due(1, 100.0), Duration::from_millis(10));
        assert_eq!(due(250, 100.0), Duration::from_millis(2_500));
    }
}
