//! The OTLP receiver's configuration (`[otlp]` in the TOML file).

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};

use serde::{Deserialize, Serialize};

/// The OTLP/gRPC port every OpenTelemetry SDK exports to by default (4317),
/// on loopback so that nothing outside the machine reaches it unless asked.
pub const DEFAULT_GRPC_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4317));

/// The OTLP/HTTP port every OpenTelemetry SDK exports to by default (4318), on loopback.
pub const DEFAULT_HTTP_ADDR: SocketAddr =
    SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 4318));

/// Largest export request accepted, after decompression: 8 MiB, twice the
/// 4 MiB gRPC default, room for the SDKs' default batch of 512 large spans.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 8 * 1024 * 1024;

/// Where the OTLP receiver listens and how much it accepts per request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OtlpConfig {
    /// Receive OTLP at all.
    pub enabled: bool,
    /// Address of the OTLP/gRPC server.
    pub grpc_addr: SocketAddr,
    /// Address of the OTLP/HTTP server (`POST /v1/traces`, protobuf or JSON).
    pub http_addr: SocketAddr,
    /// Largest request body in bytes, after decompression; larger ones are refused.
    pub max_request_bytes: usize,
    /// Seconds an OTLP/HTTP client may take to send a request's headers
    /// (from connecting, or from the first byte of a later request) before
    /// its connection is cut; 0: no limit. Idle kept-alive connections are
    /// left open.
    pub header_timeout_secs: u64,
}

/// How long an OTLP/HTTP client may take to send a request's headers.
pub const DEFAULT_HEADER_TIMEOUT_SECS: u64 = 30;

impl OtlpConfig {
    /// [`OtlpConfig::header_timeout_secs`], `None` when 0.
    pub fn header_timeout(&self) -> Option<std::time::Duration> {
        (self.header_timeout_secs > 0)
            .then(|| std::time::Duration::from_secs(self.header_timeout_secs))
    }
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            grpc_addr: DEFAULT_GRPC_ADDR,
            http_addr: DEFAULT_HTTP_ADDR,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            header_timeout_secs: DEFAULT_HEADER_TIMEOUT_SECS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_keys_and_unknown_keys_are_refused() {
        let config: OtlpConfig = serde_json::from_str(r#"{"http_addr": "0.0.0.0:14318"}"#).unwrap();
        assert_eq!(config.grpc_addr.to_string(), "127.0.0.1:4317");
        assert_eq!(config.http_addr.to_string(), "0.0.0.0:14318");
        assert_eq!(config.max_request_bytes, 8 * 1024 * 1024);
        assert!(serde_json::from_str::<OtlpConfig>(r#"{"grpc_port": 1}"#).is_err());
    }
}
