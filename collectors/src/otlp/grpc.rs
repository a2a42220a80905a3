//! OTLP/gRPC: the generated `TraceService`, feeding the observation pipeline.
//!
//! `export` → `export_inner` → convert → send. A refused request is answered
//! with the status [`OtlpError`] maps to: `INVALID_ARGUMENT` for bad input,
//! `UNAVAILABLE` (the exporter retries) when the pipeline is behind.

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;

use super::config::OtlpConfig;
use super::error::Result;
use crate::pipeline::ObservationSender;

/// The gRPC trace service over one observation sender.
#[derive(Debug, Clone)]
pub struct OtlpTraceService {
    sender: ObservationSender,
}

/// The gRPC service, gzip both ways, refusing messages over `max_request_bytes`
/// (tonic applies the limit to the decompressed message too).
pub fn service(
    sender: ObservationSender,
    config: &OtlpConfig,
) -> TraceServiceServer<OtlpTraceService> {
    TraceServiceServer::new(OtlpTraceService { sender })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(config.max_request_bytes)
}

#[tonic::async_trait]
impl TraceService for OtlpTraceService {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> std::result::Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        match self.export_inner(request.into_inner()).await {
            Ok(()) => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
            Err(err) => {
                super::log_refusal("grpc", &err);
                Err(err.into())
            }
        }
    }
}

impl OtlpTraceService {
    async fn export_inner(&self, request: ExportTraceServiceRequest) -> Result<()> {
        let num_spans = super::num_spans(&request);
        let heavy = num_spans > super::BLOCKING_CONVERT_SPANS;
        let observations = super::run_cpu_bound(heavy, move || super::convert(request)).await?;
        self.sender.send_batch(observations)?;
        tracing::trace!(num_spans, "otlp grpc export accepted");
        Ok(())
    }
}
