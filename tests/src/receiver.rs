//! The OTLP receiver under test: served on port 0 with its own pipeline
//! channel, so a test reads exactly what reaches the pipeline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use flowscope_collectors::otlp::{self, OtlpConfig, OtlpReceiver};
use flowscope_collectors::pipeline::{self, Metrics, ObservationRx, ObservationSender};
use flowscope_model::{Observation, SpanObservation};
use tokio_util::sync::CancellationToken;

/// How long a span gets to reach the pipeline.
pub const ARRIVAL: Duration = Duration::from_secs(15);

/// A receiver on port 0 with its own pipeline channel.
#[derive(Debug)]
pub struct TestReceiver {
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub observations: ObservationRx,
    pub metrics: Metrics,
    pub shutdown: CancellationToken,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl TestReceiver {
    pub async fn start(capacity: usize, max_request_bytes: usize) -> Self {
        let config = OtlpConfig {
            max_request_bytes,
            ..OtlpConfig::default()
        };
        Self::start_with(capacity, config).await
    }

    /// With this configuration, on port 0 whatever its addresses say.
    pub async fn start_with(capacity: usize, config: OtlpConfig) -> Self {
        let metrics = Metrics::default();
        let (tx, observations) = pipeline::channel(capacity);
        let sender = ObservationSender::new(tx, &metrics, "otlp");
        let any_port: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let config = OtlpConfig {
            grpc_addr: any_port,
            http_addr: any_port,
            ..config
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

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.grpc)
    }

    pub fn traces_url(&self) -> String {
        format!("http://{}/v1/traces", self.http)
    }

    /// The next `n` spans that reach the pipeline.
    pub async fn spans(&mut self, n: usize) -> Vec<SpanObservation> {
        let mut spans = Vec::new();
        while spans.len() < n {
            match tokio::time::timeout(ARRIVAL, self.observations.recv()).await {
                Ok(Some(Observation::Span(span))) => spans.push(Arc::unwrap_or_clone(span)),
                Ok(other) => panic!("expected a span, got {other:?}"),
                Err(_) => panic!(
                    "only {} of {n} spans arrived within {ARRIVAL:?}: {spans:#?}",
                    spans.len()
                ),
            }
        }
        spans
    }

    /// POSTs `body` to `/v1/traces` with the content type and encoding given.
    pub async fn post(
        &self,
        content_type: &str,
        encoding: Option<&str>,
        body: Vec<u8>,
    ) -> reqwest::Response {
        let mut request = reqwest::Client::new()
            .post(self.traces_url())
            .header("content-type", content_type);
        if let Some(encoding) = encoding {
            request = request.header("content-encoding", encoding);
        }
        request.body(body).send().await.unwrap()
    }

    pub fn dropped(&self) -> u64 {
        self.metrics.value("observations_dropped", "otlp")
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
