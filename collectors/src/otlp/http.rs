//! OTLP/HTTP: `POST /v1/traces`, protobuf or JSON, gzip or plain.
//!
//! `export` → `export_inner` → read the body (bounded) → decode → convert →
//! send. The body limit applies to the decompressed bytes, read a chunk at a
//! time, so a small gzip bomb is refused after `max_request_bytes`, never
//! inflated in memory. The answer is in the request's format.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use futures_util::StreamExt as _;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message as _;
use tower_http::decompression::RequestDecompressionLayer;

use super::config::OtlpConfig;
use super::error::{OtlpError, Result};
use crate::pipeline::ObservationSender;

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
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or_default().trim();
        if essence.eq_ignore_ascii_case("application/x-protobuf") {
            Ok(WireFormat::Protobuf)
        } else if essence.eq_ignore_ascii_case("application/json") {
            Ok(WireFormat::Json)
        } else if content_type.is_empty() {
            Err(OtlpError::UnsupportedContentType("(none)".into()))
        } else {
            Err(OtlpError::UnsupportedContentType(content_type))
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

#[derive(Debug)]
struct HttpState {
    sender: ObservationSender,
    max_request_bytes: usize,
}

/// The OTLP/HTTP routes (`POST /v1/traces`), gzip request bodies accepted.
pub fn router(sender: ObservationSender, config: &OtlpConfig) -> Router {
    let state = Arc::new(HttpState {
        sender,
        max_request_bytes: config.max_request_bytes,
    });
    Router::new()
        .route("/v1/traces", post(export))
        .layer(RequestDecompressionLayer::new())
        .with_state(state)
}

async fn export(State(state): State<Arc<HttpState>>, request: Request) -> Response {
    let format = match WireFormat::from_headers(request.headers()) {
        Ok(format) => format,
        Err(err) => {
            super::log_refusal("http", &err);
            return err.into_response();
        }
    };
    match export_inner(&state, format, request).await {
        Ok(()) => success(format),
        Err(err) => {
            super::log_refusal("http", &err);
            err.http_response(format)
        }
    }
}

async fn export_inner(state: &HttpState, format: WireFormat, request: Request) -> Result<()> {
    let limit = state.max_request_bytes;
    if content_length(request.headers()).is_some_and(|len| len > limit) {
        return Err(OtlpError::TooLarge { limit });
    }
    let body = read_body(request.into_body(), limit).await?;
    let heavy = body.len() > super::BLOCKING_DECODE_BYTES;
    let observations = super::run_cpu_bound(heavy, move || match format {
        WireFormat::Protobuf => super::read(&body),
        WireFormat::Json => super::convert(decode_json(&body)?),
    })
    .await?;
    let num_spans = observations.len();
    state.sender.send_batch(observations)?;
    tracing::trace!(num_spans, "otlp http export accepted");
    Ok(())
}

/// The declared body size; with gzip it is gone (the decompression layer removes it).
fn content_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// The whole (decompressed) body, refused as soon as it passes `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<Vec<u8>> {
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|err| OtlpError::Decode(format!("could not read the body ({err})")))?;
        if bytes.len() + chunk.len() > limit {
            return Err(OtlpError::TooLarge { limit });
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes)
}

fn decode_json(body: &[u8]) -> Result<ExportTraceServiceRequest> {
    serde_json::from_slice(body)
        .map_err(|err| OtlpError::Decode(format!("invalid OTLP/JSON ({err})")))
}

/// 200 with an empty `ExportTraceServiceResponse` in the request's format.
fn success(format: WireFormat) -> Response {
    let body = match format {
        WireFormat::Protobuf => ExportTraceServiceResponse::default().encode_to_vec(),
        WireFormat::Json => b"{}".to_vec(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, format.content_type())],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

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
