//! Command-line and environment configuration shared by the services.

use std::net::SocketAddr;
use std::path::PathBuf;

use crate::consumer::{DEFAULT_MAX_ATTEMPTS, DEFAULT_PREFETCH};
use crate::telemetry::DEFAULT_OTLP_ENDPOINT;

/// The broker every service and tool connects to unless told otherwise.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// Where the order service's HTTP API listens unless told otherwise
/// (8080 is flowscope's own UI).
pub const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8081";
/// Where the services keep their SQLite databases unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "data/demo";

/// Options every service takes.
#[derive(Debug, Clone, clap::Args)]
pub struct ServiceArgs {
    /// AMQP URL of the broker; the path is the vhost (`%2f` is `/`).
    #[arg(long, env = "SHOP_AMQP_URL", default_value = DEFAULT_AMQP_URL)]
    pub amqp_url: String,

    /// Directory of the services' SQLite databases (`<dir>/<service>.db`).
    #[arg(long, env = "SHOP_DATA_DIR", default_value = DEFAULT_DATA_DIR)]
    pub data_dir: PathBuf,

    /// Messages a consumer may hold unacknowledged (AMQP basic.qos prefetch).
    #[arg(long, env = "SHOP_PREFETCH", default_value_t = DEFAULT_PREFETCH,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub prefetch: u16,

    /// Processing attempts before a failing message is dead-lettered.
    #[arg(long, env = "SHOP_MAX_ATTEMPTS", default_value_t = DEFAULT_MAX_ATTEMPTS,
          value_parser = clap::value_parser!(u32).range(1..=50))]
    pub max_attempts: u32,

    /// OTLP/gRPC endpoint that receives the traces (flowscope listens on 4317).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", default_value = DEFAULT_OTLP_ENDPOINT)]
    pub otlp_endpoint: String,

    /// Do not export traces at all.
    #[arg(long, env = "SHOP_NO_TRACES")]
    pub no_traces: bool,

    /// Address of the HTTP API (order service only).
    #[arg(long, env = "SHOP_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http_addr: SocketAddr,
}
