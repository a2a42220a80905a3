//! Logs to stderr and traces over OTLP/gRPC, as a well-run service does.
//!
//! Traces go to `OTEL_EXPORTER_OTLP_ENDPOINT` (default `http://127.0.0.1:4317`)
//! with resource `service.name` = the service. Export happens on the SDK's
//! own thread with a bounded queue: with no receiver listening, spans are
//! dropped after a short timeout and the service runs on undisturbed.

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The OTLP endpoint when none is configured.
pub const DEFAULT_OTLP_ENDPOINT: &str = "http://127.0.0.1:4317";
/// How often finished spans are exported, unless `OTEL_BSP_SCHEDULE_DELAY`
/// says otherwise: short, because flowscope shows flows live.
pub const DEFAULT_EXPORT_DELAY: Duration = Duration::from_millis(500);
/// How long one export may take before its spans are given up.
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// Log filter when `RUST_LOG` is unset. lapin is off: it logs a spurious
/// ERROR on every clean close, and every real connection failure is logged
/// by the service itself ("broker session ended").
const DEFAULT_LOG_FILTER: &str = "info,h2=warn,hyper=warn,tower=warn,tonic=warn,sqlx=warn,lapin=off,opentelemetry_sdk=off,opentelemetry_otlp=off,opentelemetry=off";
/// What the OpenTelemetry layer ignores: the exporter's own transport would
/// otherwise trace itself in a loop.
const OTEL_LAYER_FILTER: &str = "info,h2=off,hyper=off,hyper_util=off,tonic=off,tower=off,reqwest=off,opentelemetry=off,opentelemetry_sdk=off,opentelemetry_otlp=off,sqlx=off,lapin=off,amq_protocol=off";

/// Keeps the tracer provider alive; [`Telemetry::shutdown`] flushes it.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

/// Installs logging and tracing; spans are exported unless `otlp_endpoint` is `None`.
/// Must be called inside a Tokio runtime (the gRPC client lives on it).
pub fn init(service_name: &str, otlp_endpoint: Option<&str>) -> anyhow::Result<Telemetry> {
    let log_filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(log_filter);
    // Without an endpoint spans are still made (nothing exports them), so
    // trace context still travels in every message's headers.
    let mut provider = SdkTracerProvider::builder().with_resource(
        Resource::builder()
            .with_service_name(service_name.to_owned())
            .build(),
    );
    if let Some(endpoint) = otlp_endpoint {
        let exporter = SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint)
            .with_timeout(EXPORT_TIMEOUT)
            .build()?;
        let mut batch = BatchConfigBuilder::default().with_max_queue_size(8192);
        if std::env::var_os("OTEL_BSP_SCHEDULE_DELAY").is_none() {
            batch = batch.with_scheduled_delay(DEFAULT_EXPORT_DELAY);
        }
        let processor = BatchSpanProcessor::builder(exporter)
            .with_batch_config(batch.build())
            .build();
        provider = provider.with_span_processor(processor);
    }
    let provider = provider.build();
    let otel = tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("flowscope-demo"))
        .with_filter(EnvFilter::new(OTEL_LAYER_FILTER));
    tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init()?;
    Ok(Telemetry {
        provider: Some(provider),
    })
}

impl Telemetry {
    /// Exports what is still queued, waiting at most a few seconds.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let flush = tokio::task::spawn_blocking(move || provider.shutdown());
            let _ = tokio::time::timeout(EXPORT_TIMEOUT + Duration::from_secs(1), flush).await;
        }
    }
}
