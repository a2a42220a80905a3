//! OTLP/gRPC: the `TraceService/Export` method, feeding the observation pipeline.
//!
//! `export` → `export_inner` → read ([`wire`](super::wire)) → send. The
//! method is served by hand rather than through the generated
//! `TraceServiceServer` so that the request reaches [`wire`](super::wire) as
//! bytes: the generated server would first decode it into prost's owned
//! types, which costs more than reading it straight into observations.
//! A refused request is answered with the status [`OtlpError`] maps to:
//! `INVALID_ARGUMENT` for bad input, `UNAVAILABLE` (the exporter retries)
//! when the pipeline is behind; any other path is `UNIMPLEMENTED`.

use std::convert::Infallible;
use std::task::{Context, Poll};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message as _;
use prost::bytes::{Buf as _, Bytes};
use tonic::body::Body;
use tonic::codec::{
    BufferSettings, Codec, CompressionEncoding, DecodeBuf, Decoder, EncodeBuf, Encoder,
};
use tonic::codegen::{BoxFuture, Service, StdError, http};
use tonic::server::{Grpc, NamedService, UnaryService};

use super::config::OtlpConfig;
use super::error::Result;
use crate::pipeline::ObservationSender;

/// The one method served.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The gRPC trace service over one observation sender: gzip both ways,
/// refusing messages over the configured size (tonic applies the limit to
/// the decompressed message too).
#[derive(Debug, Clone)]
pub struct OtlpTraceService {
    sender: ObservationSender,
    max_request_bytes: usize,
}

/// The service for [`tonic::transport::Server::add_service`].
pub fn service(sender: ObservationSender, config: &OtlpConfig) -> OtlpTraceService {
    OtlpTraceService {
        sender,
        max_request_bytes: config.max_request_bytes,
    }
}

impl NamedService for OtlpTraceService {
    const NAME: &'static str = "opentelemetry.proto.collector.trace.v1.TraceService";
}

impl<B> Service<http::Request<B>> for OtlpTraceService
where
    B: tonic::codegen::Body + Send + 'static,
    B::Error: Into<StdError> + Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::result::Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async { Ok(tonic::Status::unimplemented("").into_http()) });
        }
        let service = self.clone();
        Box::pin(async move {
            let mut grpc = Grpc::new(RawCodec)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(service.max_request_bytes);
            Ok(grpc.unary(service, request).await)
        })
    }
}

impl UnaryService<Bytes> for OtlpTraceService {
    type Response = ExportTraceServiceResponse;
    type Future = BoxFuture<tonic::Response<Self::Response>, tonic::Status>;

    fn call(&mut self, request: tonic::Request<Bytes>) -> Self::Future {
        let service = self.clone();
        Box::pin(async move {
            match service.export_inner(request.into_inner()).await {
                Ok(()) => Ok(tonic::Response::new(ExportTraceServiceResponse::default())),
                Err(err) => {
                    super::log_refusal("grpc", &err);
                    Err(err.into())
                }
            }
        })
    }
}

impl OtlpTraceService {
    async fn export_inner(&self, request: Bytes) -> Result<()> {
        let heavy = request.len() > super::BLOCKING_DECODE_BYTES;
        let observations = super::run_cpu_bound(heavy, move || super::read(&request)).await?;
        let num_spans = observations.len();
        self.sender.send_batch(observations)?;
        tracing::trace!(num_spans, "otlp grpc export accepted");
        Ok(())
    }
}

/// Requests as bytes (read by [`wire`](super::wire)), answers as protobuf.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = ExportTraceServiceResponse;
    type Decode = Bytes;
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
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Self::Item,
        dst: &mut EncodeBuf<'_>,
    ) -> std::result::Result<(), Self::Error> {
        item.encode(dst)
            .map_err(|err| tonic::Status::internal(format!("could not encode the answer: {err}")))
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut DecodeBuf<'_>,
    ) -> std::result::Result<Option<Self::Item>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }

    /// A request's buffer starts large enough for the usual export (100
    /// spans of ~540 bytes, while its first 16 KiB frame is in the buffer):
    /// tonic's 8 KiB grew and was copied for each such request.
    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(DECODE_BUFFER_BYTES, DEFAULT_YIELD_BYTES)
    }
}

/// What a request's buffer starts with.
const DECODE_BUFFER_BYTES: usize = 128 * 1024;
/// tonic's default (it batches a stream's answers; an export has one).
const DEFAULT_YIELD_BYTES: usize = 32 * 1024;
