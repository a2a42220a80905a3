//! OTLP/gRPC: the `TraceService/Export` method, feeding the observation pipeline.
//!
//! [`serve`] runs HTTP/2 (hyper) on the listener and answers the one method
//! itself: `export` → read the body → the gRPC message (5-byte prefix,
//! gzip or plain, checked against `max_request_bytes`) → read
//! ([`wire`](super::wire)) → send. Served by hand rather than through tonic's
//! server: a request is read straight from the HTTP/2 frames (an export that
//! fits one frame is never copied), and the answer is a constant — the
//! routing, codec and status layers around a unary method were a tenth of
//! the CPU of receiving small exports.
//!
//! Answers, as gRPC prescribes ([PROTOCOL-HTTP2]):
//! - accepted: `200`, `content-type: application/grpc`, an empty
//!   `ExportTraceServiceResponse`, trailer `grpc-status: 0`;
//! - refused: a trailers-only answer with the status [`OtlpError`] maps to:
//!   `INVALID_ARGUMENT` for bad input, `RESOURCE_EXHAUSTED` over the size
//!   limit, `UNAVAILABLE` (the exporter retries) when the pipeline is behind,
//!   `UNIMPLEMENTED` for any other method or an unknown `grpc-encoding`;
//! - not gRPC at all (another content type): HTTP `415`.
//!
//! [PROTOCOL-HTTP2]: https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use prost::bytes::{Buf as _, Bytes};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::body::{Compression, Received, inflate};
use super::config::OtlpConfig;
use super::error::OtlpError;
use crate::pipeline::ObservationSender;

/// The one method served.
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The message's prefix: compressed flag, then its length (big-endian u32).
const PREFIX_BYTES: usize = 5;
/// An empty `ExportTraceServiceResponse`, prefixed: uncompressed, 0 bytes.
const EMPTY_RESPONSE: [u8; PREFIX_BYTES] = [0; PREFIX_BYTES];

/// The gRPC trace service over one observation sender.
#[derive(Debug, Clone)]
struct TraceService {
    sender: ObservationSender,
    max_request_bytes: usize,
}

/// Serves OTLP/gRPC on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets the requests in flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    sender: ObservationSender,
    config: &OtlpConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let service = TraceService {
        sender,
        max_request_bytes: config.max_request_bytes,
    };
    let mut http2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    // No `date` header: gRPC clients do not read it, and a value that
    // changes every second is encoded afresh into each answer's headers.
    http2.timer(TokioTimer::new()).auto_date_header(false);
    // HTTP/2 clients hold connections open between exports, as they may.
    super::listen::accept_loop("grpc", listener, shutdown, None, move |io, _| {
        let service = service.clone();
        http2.serve_connection(
            io,
            hyper::service::service_fn(move |request| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.export(request).await) }
            }),
        )
    })
    .await
}

impl TraceService {
    async fn export(self, request: Request<Incoming>) -> Response<GrpcBody> {
        if request.method() != Method::POST || request.uri().path() != EXPORT_PATH {
            let what = format!("{} {}", request.method(), request.uri().path());
            return tonic::Status::unimplemented(format!(
                "{what} is not served here: flowscope receives OTLP traces only \
                 (opentelemetry.proto.collector.trace.v1.TraceService/Export)"
            ))
            .into_http();
        }
        if !is_grpc(request.headers()) {
            return not_grpc(request.headers());
        }
        match self.export_inner(request).await {
            Ok(()) => accepted(),
            Err(Refusal::Otlp(err)) => {
                super::log_refusal("grpc", &err);
                tonic::Status::from(err).into_http()
            }
            Err(Refusal::Grpc(status)) => {
                tracing::warn!(transport = "grpc", status = %status, "otlp export refused");
                status.into_http()
            }
        }
    }

    async fn export_inner(&self, request: Request<Incoming>) -> std::result::Result<(), Refusal> {
        let gzip = match request
            .headers()
            .get("grpc-encoding")
            .map(HeaderValue::as_bytes)
        {
            None | Some(b"identity") => false,
            Some(b"gzip") => true,
            Some(other) => {
                let status = tonic::Status::unimplemented(format!(
                    "grpc-encoding {:?} is not supported: send gzip or identity",
                    String::from_utf8_lossy(other)
                ));
                return Err(Refusal::Grpc(status));
            }
        };
        let (compressed, message) =
            read_message(request.into_body(), self.max_request_bytes).await?;
        if compressed && !gzip {
            return Err(Refusal::Grpc(tonic::Status::internal(
                "the message is flagged compressed but the request has no grpc-encoding",
            )));
        }
        let limit = self.max_request_bytes;
        // Gzip inflates several times over: such a message is heavy sooner.
        let weight = if compressed { 8 } else { 1 };
        let heavy = message.len().saturating_mul(weight) > super::BLOCKING_DECODE_BYTES;
        let observations = super::run_cpu_bound(heavy, move || {
            if compressed {
                let inflated = inflate(Compression::Gzip, &message, limit, "the gRPC message")?;
                super::read(&inflated)
            } else {
                super::read(&message)
            }
        })
        .await?;
        let num_spans = observations.len();
        self.sender
            .send_batch(observations)
            .map_err(OtlpError::from)?;
        tracing::trace!(num_spans, "otlp grpc export accepted");
        Ok(())
    }
}

/// Why an export was refused: an [`OtlpError`] (counted, logged and mapped
/// like on OTLP/HTTP) or a breach of gRPC's own framing.
enum Refusal {
    Otlp(OtlpError),
    Grpc(tonic::Status),
}

impl From<OtlpError> for Refusal {
    fn from(err: OtlpError) -> Self {
        Refusal::Otlp(err)
    }
}

/// `application/grpc`, alone or with a subtype (`application/grpc+proto`).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|value| {
        let value = value.as_bytes();
        value.len() >= 16
            && value[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(value.get(16), None | Some(b'+' | b';'))
    })
}

/// HTTP 415, as gRPC prescribes for a request that is not gRPC.
fn not_grpc(headers: &HeaderMap) -> Response<GrpcBody> {
    let content_type = headers
        .get(CONTENT_TYPE)
        .map_or("(none)".into(), |v| String::from_utf8_lossy(v.as_bytes()));
    tracing::warn!(transport = "grpc", %content_type, "otlp export refused: not gRPC");
    let mut response = Response::new(GrpcBody::default());
    *response.status_mut() = StatusCode::UNSUPPORTED_MEDIA_TYPE;
    response
}

/// The one message of a unary request: whether it is compressed, and its
/// bytes. A message that arrives in one frame is a slice of it; one spread
/// over several is copied once, into a buffer of its declared size.
async fn read_message(
    mut body: Incoming,
    limit: usize,
) -> std::result::Result<(bool, Bytes), Refusal> {
    let mut received = Received::Nothing;
    while let Some(frame) = body.frame().await {
        let frame = frame
            .map_err(|err| OtlpError::Decode(format!("could not read the request body ({err})")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: none expected, nothing in them for us
        };
        // Two frames are joined into room for the whole prefixed message
        // when the prefix is in (its declared size, never past the limit).
        let head = received.as_slice();
        let room = if head.len() >= PREFIX_BYTES {
            PREFIX_BYTES + declared_length(head).min(limit)
        } else {
            0
        };
        received = received.push(data, room);
        let bytes = received.as_slice();
        if bytes.len() >= PREFIX_BYTES {
            let declared = declared_length(bytes);
            if declared > limit {
                return Err(OtlpError::TooLarge { limit }.into());
            }
            if bytes.len() > PREFIX_BYTES + declared {
                return Err(OtlpError::Decode(
                    "the request holds more than one gRPC message (Export is unary)".into(),
                )
                .into());
            }
        }
    }
    let mut whole = received.into_bytes();
    if whole.len() < PREFIX_BYTES {
        return Err(OtlpError::Decode("the request holds no gRPC message".into()).into());
    }
    let compressed = match whole[0] {
        0 => false,
        1 => true,
        flag => {
            return Err(OtlpError::Decode(format!(
                "the gRPC message's compressed flag is {flag} (0 or 1 expected)"
            ))
            .into());
        }
    };
    let declared = declared_length(&whole);
    if whole.len() != PREFIX_BYTES + declared {
        return Err(OtlpError::Decode(format!(
            "the gRPC message is cut short: {} of {declared} bytes",
            whole.len() - PREFIX_BYTES
        ))
        .into());
    }
    whole.advance(PREFIX_BYTES);
    Ok((compressed, whole))
}

/// The message length its prefix declares (`bytes` holds the prefix at least).
fn declared_length(bytes: &[u8]) -> usize {
    u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize
}

/// The answer to an accepted export.
fn accepted() -> Response<GrpcBody> {
    let mut trailers = HeaderMap::with_capacity(1);
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let mut response = Response::new(GrpcBody {
        data: Some(Bytes::from_static(&EMPTY_RESPONSE)),
        trailers: Some(trailers),
    });
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    response
}

/// An answer's body: at most one message, then the trailers. The default
/// (neither) is a trailers-only answer's: the headers end the stream.
#[derive(Debug, Default)]
pub struct GrpcBody {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for GrpcBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<std::result::Result<Frame<Bytes>, Infallible>>> {
        let frame = match self.data.take() {
            Some(data) => Some(Frame::data(data)),
            None => self.trailers.take().map(Frame::trailers),
        };
        Poll::Ready(frame.map(Ok))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.data.as_ref().map_or(0, |data| data.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types_are_told_from_others() {
        let headers = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            headers
        };
        assert!(is_grpc(&headers("application/grpc")));
        assert!(is_grpc(&headers("application/grpc+proto")));
        assert!(is_grpc(&headers("Application/GRPC; charset=x")));
        assert!(!is_grpc(&headers("application/grpc-web")));
        assert!(!is_grpc(&headers("application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }
}
