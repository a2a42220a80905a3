//! OTLP/HTTP: `POST /v1/traces`, protobuf or JSON, gzip, deflate or plain.
//!
//! [`serve`] runs HTTP/1.1 (hyper) on the listener and answers the one
//! route itself: `export` → read the body (bounded) → inflate it (bounded)
//! → decode → convert → send. Served by hand, like the gRPC side, rather
//! than through a router and a decompression layer: a body that arrives in
//! one piece is read where it lies, and a request costs no routing, boxed
//! bodies or layers (they were about a twentieth of the CPU of receiving
//! small exports).
//!
//! The size limit applies to the body as sent and again to the inflated
//! bytes, read a chunk at a time, so a small gzip bomb is refused after
//! `max_request_bytes`, never inflated in memory. The answer is in the
//! request's format; an answer to a request of neither format is in JSON.

use std::convert::Infallible;
use std::io;
use std::sync::Arc;

use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::bytes::Bytes;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::body::{Compression, Received, inflate};
use super::config::OtlpConfig;
use super::error::{HttpResponse, OtlpError, Result, status_response};
use crate::pipeline::ObservationSender;

/// The one route served.
pub const TRACES_PATH: &str = "/v1/traces";

/// The two encodings OTLP/HTTP allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WireFormat {
    /// `application/x-protobuf`.
    Protobuf,
    /// `application/json` (OTLP/JSON: hex ids, camelCase field names).
    Json,
}

impl WireFormat {
    /// From the request's `Content-Type` (parameters such as `charset` ignored).
    fn from_headers(headers: &HeaderMap) -> Result<Self> {
        // Compared as bytes: the text is made only for the error.
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map_or(&b""[..], HeaderValue::as_bytes);
        let essence = content_type
            .split(|b| *b == b';')
            .next()
            .unwrap_or_default()
            .trim_ascii();
        if essence.eq_ignore_ascii_case(b"application/x-protobuf") {
            Ok(WireFormat::Protobuf)
        } else if essence.eq_ignore_ascii_case(b"application/json") {
            Ok(WireFormat::Json)
        } else if content_type.is_empty() {
            Err(OtlpError::UnsupportedContentType("(none)".into()))
        } else {
            Err(OtlpError::UnsupportedContentType(
                String::from_utf8_lossy(content_type).into_owned(),
            ))
        }
    }

    /// The `Content-Type` of an answer in this format.
    pub(crate) fn content_type(self) -> &'static str {
        match self {
            WireFormat::Protobuf => "application/x-protobuf",
            WireFormat::Json => "application/json",
        }
    }
}

/// The OTLP/HTTP trace route over one observation sender.
#[derive(Debug, Clone)]
struct TraceRoute {
    sender: ObservationSender,
    max_request_bytes: usize,
}

/// Serves OTLP/HTTP on `listener` until `shutdown` is cancelled, then stops
/// accepting, lets the requests in flight finish and returns.
pub async fn serve(
    listener: TcpListener,
    sender: ObservationSender,
    config: &OtlpConfig,
    shutdown: CancellationToken,
) -> io::Result<()> {
    let route = TraceRoute {
        sender,
        max_request_bytes: config.max_request_bytes,
    };
    let mut http1 = hyper::server::conn::http1::Builder::new();
    // How long a client may take to send its headers is watched by the
    // accept loop, per connection, not by a timer hyper sets per request.
    http1.header_read_timeout(None);
    let header_timeout = config.header_timeout();
    super::listen::accept_loop(
        "http",
        listener,
        shutdown,
        header_timeout,
        move |io, progress| {
            let route = route.clone();
            http1.serve_connection(
                io,
                hyper::service::service_fn(move |request| {
                    let route = route.clone();
                    let progress = Arc::clone(&progress);
                    progress.head();
                    async move {
                        let answer = route.answer(request).await;
                        progress.answered();
                        Ok::<_, Infallible>(answer)
                    }
                }),
            )
        },
    )
    .await
}

impl TraceRoute {
    async fn answer(self, request: Request<Incoming>) -> HttpResponse {
        if request.uri().path() != TRACES_PATH {
            return not_served(&request);
        }
        if request.method() != Method::POST {
            let mut response = status_response(
                StatusCode::METHOD_NOT_ALLOWED,
                tonic::Code::Unimplemented,
                format!(
                    "{} {TRACES_PATH} is not served: send OTLP traces with POST",
                    request.method()
                ),
                WireFormat::Json,
            );
            let allow = HeaderValue::from_static("POST");
            response.headers_mut().insert(header::ALLOW, allow);
            return response;
        }
        let format = match WireFormat::from_headers(request.headers()) {
            Ok(format) => format,
            Err(err) => {
                super::log_refusal("http", &err);
                return err.http_response(WireFormat::Json);
            }
        };
        match self.export(format, request).await {
            Ok(()) => success(format),
            Err(err) => {
                super::log_refusal("http", &err);
                err.http_response(format)
            }
        }
    }

    async fn export(&self, format: WireFormat, request: Request<Incoming>) -> Result<()> {
        let limit = self.max_request_bytes;
        let compression = compression(request.headers())?;
        let declared = content_length(request.headers());
        if declared.is_some_and(|len| len > limit) {
            return Err(OtlpError::TooLarge { limit });
        }
        let room = declared.unwrap_or(0);
        let body = read_body(request.into_body(), room, limit).await?;
        // Compressed bytes inflate several times over: such a body is heavy sooner.
        let weight = if compression.is_some() { 8 } else { 1 };
        let heavy = body.len().saturating_mul(weight) > super::BLOCKING_DECODE_BYTES;
        let observations = super::run_cpu_bound(heavy, move || {
            let inflated;
            let bytes = match compression {
                None => &body[..],
                Some(compression) => {
                    inflated = inflate(compression, &body, limit, "the request body")?;
                    &inflated[..]
                }
            };
            match format {
                WireFormat::Protobuf => super::read(bytes),
                WireFormat::Json => super::convert(decode_json(bytes)?),
            }
        })
        .await?;
        let num_spans = observations.len();
        self.sender.send_batch(observations)?;
        tracing::trace!(num_spans, "otlp http export accepted");
        Ok(())
    }
}

/// 404 for any other path, saying what is served.
fn not_served(request: &Request<Incoming>) -> HttpResponse {
    let path = request.uri().path();
    let message = format!(
        "{path} is not served here: flowscope receives OTLP traces at POST {TRACES_PATH} \
         (metrics and logs are not received)"
    );
    status_response(
        StatusCode::NOT_FOUND,
        tonic::Code::Unimplemented,
        message,
        WireFormat::Json,
    )
}

/// The body's compression, from `Content-Encoding` (none, or `identity`: none).
fn compression(headers: &HeaderMap) -> Result<Option<Compression>> {
    let Some(value) = headers.get(header::CONTENT_ENCODING) else {
        return Ok(None);
    };
    let coding = value.as_bytes().trim_ascii();
    if coding.is_empty() || coding.eq_ignore_ascii_case(b"identity") {
        Ok(None)
    } else if coding.eq_ignore_ascii_case(b"gzip") || coding.eq_ignore_ascii_case(b"x-gzip") {
        Ok(Some(Compression::Gzip))
    } else if coding.eq_ignore_ascii_case(b"deflate") {
        Ok(Some(Compression::Deflate))
    } else {
        Err(OtlpError::UnsupportedEncoding(
            String::from_utf8_lossy(coding).into_owned(),
        ))
    }
}

/// The declared body size, if any.
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The whole body as sent, refused as soon as it passes `limit` bytes; a
/// body in one frame is not copied, one in several is joined into a buffer
/// of `room` bytes (its declared size) or more.
async fn read_body(mut body: Incoming, room: usize, limit: usize) -> Result<Bytes> {
    let mut received = Received::Nothing;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|err| OtlpError::Decode(format!("could not read the body ({err})")))?;
        let Ok(data) = frame.into_data() else {
            continue; // trailers: nothing in them for us
        };
        if received.as_slice().len() + data.len() > limit {
            return Err(OtlpError::TooLarge { limit });
        }
        received = received.push(data, room);
    }
    Ok(received.into_bytes())
}

fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest> {
    serde_json::from_slice(body)
        .map_err(|err| OtlpError::Decode(format!("invalid OTLP/JSON ({err})")))
}

/// 200 with an empty `ExportTraceServiceResponse` in the request's format
/// (empty in protobuf, `{}` in JSON).
fn success(format: WireFormat) -> HttpResponse {
    let body = match format {
        WireFormat::Protobuf => Bytes::new(),
        WireFormat::Json => Bytes::from_static(b"{}"),
    };
    let mut response = http::Response::new(Full::new(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_are_read_leniently_and_others_refused() {
        let headers = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            headers
        };
        assert_eq!(
            WireFormat::from_headers(&headers("application/x-protobuf")),
            Ok(WireFormat::Protobuf)
        );
        assert_eq!(
            WireFormat::from_headers(&headers("Application/JSON; charset=utf-8")),
            Ok(WireFormat::Json)
        );
        assert_eq!(
            WireFormat::from_headers(&headers("text/plain")),
            Err(OtlpError::UnsupportedContentType("text/plain".into()))
        );
        assert!(WireFormat::from_headers(&HeaderMap::new()).is_err());
    }
}
