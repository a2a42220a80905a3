//! The OTLP receiver: spans from any OpenTelemetry SDK or Collector.
//!
//! [`OtlpReceiver`] serves both OTLP transports on already-bound listeners
//! ([`bind`] binds the configured ones; tests bind port 0) until its
//! cancellation token fires, then finishes the requests in flight and drops
//! its sender, so that the pipeline downstream drains and stops. flowscope
//! runs it on a thread of its own ([`OtlpReceiver::serve_on_own_thread`]).
//!
//! | piece | job |
//! |---|---|
//! | [`config`] | [`OtlpConfig`]: addresses and the request size limit |
//! | [`grpc`] | OTLP/gRPC on :4317, `TraceService/Export` served on HTTP/2 by hand, gzip accepted |
//! | [`http`] | OTLP/HTTP on :4318, `POST /v1/traces` served on HTTP/1.1 by hand, protobuf or JSON, gzip or deflate accepted |
//! | `listen`, `body` | what both transports share: the accept loop and graceful shutdown; reading and inflating a body |
//! | [`wire`] | [`spans_from_protobuf`]: an encoded export request → `Observation::Span`s, read straight from the bytes |
//! | [`convert`] | [`spans_from_otlp`]: a decoded export request (OTLP/JSON) → `Observation::Span`s |
//! | [`error`] | [`OtlpError`] and its one mapping to each transport |
//!
//! Each export is all or nothing: it is converted whole, then handed to the
//! pipeline with `send_batch`. When the pipeline is behind, the request is
//! refused with a retryable answer (gRPC `UNAVAILABLE`, HTTP 503 with
//! `Retry-After`), so the exporter keeps the spans and sends them again; the
//! refused spans are counted as `flowscope_observations_dropped_total{source="otlp"}`.

mod body;
pub mod config;
pub mod convert;
pub mod error;
pub mod grpc;
pub mod http;
mod listen;
pub mod wire;
#[cfg(test)]
mod wire_tests;

use std::io;
use std::net::SocketAddr;

use flowscope_model::Observation;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::OtlpConfig;
pub use convert::{ConvertError, spans_from_otlp};
pub use error::{OtlpError, Result};
pub use wire::{WireError, spans_from_protobuf};

use crate::pipeline::ObservationSender;

/// Requests larger than this are read on the blocking pool (~0.5 ms of work).
const BLOCKING_DECODE_BYTES: usize = 256 * 1024;

/// Serves OTLP over gRPC and HTTP into one observation sender (source `otlp`).
#[derive(Debug)]
pub struct OtlpReceiver {
    config: OtlpConfig,
    sender: ObservationSender,
}

impl OtlpReceiver {
    /// A receiver with its configuration and its handle on the pipeline.
    pub fn new(config: OtlpConfig, sender: ObservationSender) -> Self {
        Self { config, sender }
    }

    /// Serves gRPC on `grpc` and HTTP on `http` until `shutdown` is cancelled,
    /// then lets requests in flight finish and returns.
    pub async fn serve(
        self,
        grpc: TcpListener,
        http: TcpListener,
        shutdown: CancellationToken,
    ) -> io::Result<()> {
        let (grpc_addr, http_addr) = (grpc.local_addr()?, http.local_addr()?);
        tracing::info!(%grpc_addr, %http_addr, "otlp receiver listening");
        let grpc_server = grpc::serve(grpc, self.sender.clone(), &self.config, shutdown.clone());
        let http_server = http::serve(http, self.sender, &self.config, shutdown);
        let grpc_server = async move {
            grpc_server.await.map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("OTLP gRPC server on {grpc_addr} failed: {err}"),
                )
            })
        };
        let http_server = async move {
            http_server.await.map_err(|err| {
                io::Error::new(
                    err.kind(),
                    format!("OTLP HTTP server on {http_addr} failed: {err}"),
                )
            })
        };
        tokio::try_join!(grpc_server, http_server)?;
        tracing::info!("otlp receiver stopped");
        Ok(())
    }

    /// Serves like [`OtlpReceiver::serve`], on a thread of its own with a
    /// single-threaded runtime; the future returned ends when it does.
    ///
    /// Every request then wakes this one thread. On the shared
    /// multi-threaded runtime, a request the I/O driver woke could also wake
    /// an idle worker to look for work that was not there; served apart,
    /// small exports cost 2–5 % less CPU per span (docs/benchmarks.md,
    /// nineteenth sitting). Large bodies are still read on the blocking pool.
    pub fn serve_on_own_thread(
        self,
        grpc: TcpListener,
        http: TcpListener,
        shutdown: CancellationToken,
    ) -> io::Result<impl std::future::Future<Output = io::Result<()>> + Send + 'static> {
        // Listeners move to the new runtime's I/O driver.
        let (grpc, http) = (grpc.into_std()?, http.into_std()?);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("flowscope-otlp-blocking")
            .build()?;
        let (done, finished) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("flowscope-otlp".into())
            .spawn(move || {
                let result = runtime.block_on(async move {
                    let grpc = TcpListener::from_std(grpc)?;
                    let http = TcpListener::from_std(http)?;
                    self.serve(grpc, http, shutdown).await
                });
                let _ = done.send(result);
            })?;
        Ok(async move {
            finished
                .await
                .unwrap_or_else(|_| Err(io::Error::other("the OTLP receiver's thread panicked")))
        })
    }
}

/// Binds the configured gRPC and HTTP addresses; an error names the address.
pub async fn bind(config: &OtlpConfig) -> io::Result<(TcpListener, TcpListener)> {
    let grpc = bind_one("gRPC", "grpc_addr", config.grpc_addr).await?;
    let http = bind_one("HTTP", "http_addr", config.http_addr).await?;
    Ok((grpc, http))
}

async fn bind_one(transport: &str, key: &str, addr: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|err| {
        let what = match err.kind() {
            io::ErrorKind::AddrInUse => "is in use",
            _ => "cannot be opened",
        };
        io::Error::new(
            err.kind(),
            format!("OTLP {transport} port {addr} {what}: {err}; set otlp.{key} to a free address"),
        )
    })
}

/// Converts a decoded (OTLP/JSON) request, stamping it with the time it was received.
fn convert(request: ExportTraceServiceRequest) -> Result<Vec<Observation>> {
    Ok(spans_from_otlp(request, flowscope_model::now_unix_us())?)
}

/// Reads an encoded (protobuf) request, stamping it with the time it was received.
fn read(request: &[u8]) -> Result<Vec<Observation>> {
    Ok(spans_from_protobuf(
        request,
        flowscope_model::now_unix_us(),
    )?)
}

/// Runs `work` inline, or on the blocking pool when it is `heavy`, so that a
/// large request never stalls the async workers.
async fn run_cpu_bound<T, F>(heavy: bool, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    if !heavy {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(result) => result,
        Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
        Err(_) => Err(OtlpError::ShuttingDown),
    }
}

/// Logs a refused export: bad input at WARN (a client to fix), back-pressure
/// at DEBUG (the client retries; the dropped counter shows it).
fn log_refusal(transport: &'static str, err: &OtlpError) {
    match err {
        OtlpError::Overloaded | OtlpError::ShuttingDown => {
            tracing::debug!(transport, error = %err, "otlp export refused, client told to retry");
        }
        _ => tracing::warn!(transport, error = %err, "otlp export refused"),
    }
}
