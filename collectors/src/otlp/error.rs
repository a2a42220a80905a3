//! Why an export was refused, and how each transport tells the client.
//!
//! The one mapping to gRPC is `From<OtlpError> for tonic::Status`; the one
//! mapping to HTTP is [`OtlpError::http_response`]. As OTLP prescribes, an overloaded or stopping receiver answers with
//! a retryable code (`UNAVAILABLE`, HTTP 503 with `Retry-After`), bad input
//! with a non-retryable one.

use http::{HeaderValue, StatusCode, header};
use http_body_util::Full;
use prost::Message as _;
use prost::bytes::Bytes;

use super::convert::ConvertError;
use super::http::WireFormat;
use super::wire::WireError;
use crate::pipeline::SendError;

/// Seconds an HTTP client is told to wait before retrying a refused export.
const RETRY_AFTER_SECS: &str = "1";

/// `Result` with an [`OtlpError`].
pub type Result<T> = std::result::Result<T, OtlpError>;

/// Why an export request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtlpError {
    /// The body is not a valid OTLP export request.
    #[error("could not decode the export request: {0}; send an OTLP ExportTraceServiceRequest")]
    Decode(String),
    /// The HTTP body is compressed in a way not understood.
    #[error("unsupported content encoding {0:?}: send OTLP with gzip, deflate or no compression")]
    UnsupportedEncoding(String),
    /// The HTTP body is neither protobuf nor JSON.
    #[error(
        "unsupported content type {0:?}: send OTLP as application/x-protobuf or application/json"
    )]
    UnsupportedContentType(String),
    /// The body, decompressed, is larger than the configured limit.
    #[error(
        "the export request is larger than {limit} bytes (after decompression): \
         send smaller batches or raise otlp.max_request_bytes"
    )]
    TooLarge {
        /// The configured limit, in bytes.
        limit: usize,
    },
    /// More spans in one request than the observation pipeline ever holds.
    #[error(
        "the export request holds {spans} spans, more than flowscope's pipeline holds at once \
         ({capacity}): send smaller batches or raise pipeline.channel_capacity"
    )]
    TooManySpans {
        /// Spans in the request.
        spans: usize,
        /// `pipeline.channel_capacity`.
        capacity: usize,
    },
    /// A span is malformed (an id of the wrong length, say); the whole request is refused.
    #[error("{0}; fix the exporter, the request was refused")]
    InvalidSpan(String),
    /// The pipeline is behind: the client should retry the same request later.
    #[error("flowscope's observation pipeline is behind; retry this export later with backoff")]
    Overloaded,
    /// flowscope is stopping.
    #[error("flowscope is shutting down; retry this export later")]
    ShuttingDown,
}

impl From<ConvertError> for OtlpError {
    fn from(err: ConvertError) -> Self {
        OtlpError::InvalidSpan(err.to_string())
    }
}

impl From<WireError> for OtlpError {
    fn from(err: WireError) -> Self {
        match err {
            WireError::Malformed(_) => OtlpError::Decode(err.to_string()),
            WireError::Invalid(err) => err.into(),
        }
    }
}

impl From<SendError> for OtlpError {
    fn from(err: SendError) -> Self {
        match err {
            SendError::Full => OtlpError::Overloaded,
            SendError::Closed => OtlpError::ShuttingDown,
            SendError::TooMany { count, capacity } => OtlpError::TooManySpans {
                spans: count,
                capacity,
            },
        }
    }
}

impl From<OtlpError> for tonic::Status {
    fn from(err: OtlpError) -> Self {
        let message = err.to_string();
        match err {
            OtlpError::Decode(_)
            | OtlpError::UnsupportedContentType(_)
            | OtlpError::InvalidSpan(_) => tonic::Status::invalid_argument(message),
            OtlpError::UnsupportedEncoding(_) => tonic::Status::unimplemented(message),
            OtlpError::TooLarge { .. } | OtlpError::TooManySpans { .. } => {
                tonic::Status::resource_exhausted(message)
            }
            OtlpError::Overloaded | OtlpError::ShuttingDown => tonic::Status::unavailable(message),
        }
    }
}

/// `google.rpc.Status`, the body OTLP/HTTP prescribes for a refused request.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    /// The gRPC code that means the same as the HTTP status.
    #[prost(int32, tag = "1")]
    code: i32,
    /// What failed and what to do.
    #[prost(string, tag = "2")]
    message: String,
}

impl OtlpError {
    /// The HTTP status: 400 bad input, 413 too large, 415 wrong type, 503 retry later.
    pub fn http_status(&self) -> StatusCode {
        match self {
            OtlpError::Decode(_) | OtlpError::InvalidSpan(_) => StatusCode::BAD_REQUEST,
            OtlpError::UnsupportedContentType(_) | OtlpError::UnsupportedEncoding(_) => {
                StatusCode::UNSUPPORTED_MEDIA_TYPE
            }
            OtlpError::TooLarge { .. } | OtlpError::TooManySpans { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            OtlpError::Overloaded | OtlpError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// The HTTP answer, its `google.rpc.Status` body in the request's format.
    pub(crate) fn http_response(self, format: WireFormat) -> HttpResponse {
        let status = self.http_status();
        let code = tonic::Status::from(self.clone()).code();
        let mut response = status_response(status, code, self.to_string(), format);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// An OTLP/HTTP answer.
pub(crate) type HttpResponse = http::Response<Full<Bytes>>;

/// An HTTP answer whose body is a `google.rpc.Status` in `format`.
pub(crate) fn status_response(
    status: StatusCode,
    code: tonic::Code,
    message: String,
    format: WireFormat,
) -> HttpResponse {
    let rpc = RpcStatus {
        code: code as i32,
        message,
    };
    let body = match format {
        WireFormat::Protobuf => rpc.encode_to_vec(),
        WireFormat::Json => serde_json::json!({ "code": rpc.code, "message": rpc.message })
            .to_string()
            .into_bytes(),
    };
    let mut response = http::Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
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
    fn overload_is_retryable_on_both_transports_and_bad_input_is_not() {
        assert_eq!(
            tonic::Status::from(OtlpError::Overloaded).code(),
            tonic::Code::Unavailable
        );
        assert_eq!(
            tonic::Status::from(OtlpError::ShuttingDown).code(),
            tonic::Code::Unavailable
        );
        let status = tonic::Status::from(OtlpError::Decode("bad wire type".into()));
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains("bad wire type"));

        let response = OtlpError::Overloaded.http_response(WireFormat::Json);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        let response = OtlpError::TooLarge { limit: 10 }.http_response(WireFormat::Protobuf);
        assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            "application/x-protobuf"
        );
        assert!(!response.headers().contains_key(header::RETRY_AFTER));
    }
}
