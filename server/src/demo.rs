//! `flowscope demo`: the server and the demo shop together, one command.
//!
//! Checks the broker answers (AMQP and management API), starts the server
//! with the demo shop's correlation rules (unless the configuration has its
//! own), runs the five shop services as child processes of this binary
//! (`flowscope shop <service>`) exporting traces to the server, and a load
//! generator whose rate the API (and so the demo page) can change, beside
//! placing orders on demand. Ctrl-C stops the shop first, then the server.

use std::time::Duration;

use anyhow::Context;
use flowscope_demo::config::ServiceArgs;
use flowscope_demo::load::{LoadControl, parse_duration};
use flowscope_demo::supervisor::{UpArgs, run_shop};

use crate::api::demo::DemoShop;
use crate::config::Config;
use crate::correlator::config::CorrelationConfig;

/// Options of `flowscope demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Orders per second from the load generator (0.01 to 500).
    #[arg(long, default_value_t = 2.0, value_parser = flowscope_demo::load::parse_rate)]
    pub rate: f64,
    /// How long the load generator runs at --rate (at most 24h); then its rate is set to 0
    /// (unless changed on the demo page meanwhile) and the shop keeps running.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub duration: Duration,
    /// Start with the load generator stopped (rate 0; the demo page can start it).
    #[arg(long)]
    pub no_load: bool,
    /// Where the shop services keep their SQLite databases.
    #[arg(long, default_value = "data/demo")]
    pub shop_data_dir: std::path::PathBuf,
    /// Address of the shop's order API.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub order_addr: std::net::SocketAddr,
}

/// Runs the demo until Ctrl-C or SIGTERM.
pub async fn run(mut config: Config, args: DemoArgs) -> anyhow::Result<()> {
    if config.correlation.keys.is_empty() && config.correlation.terminal_events.is_empty() {
        config.correlation = CorrelationConfig {
            ..CorrelationConfig::demo_shop()
        };
    }
    let vhost = config
        .broker
        .vhosts
        .first()
        .cloned()
        .unwrap_or_else(|| "/".into());
    let uri = config.broker.uri_for(&vhost).map_err(anyhow::Error::msg)?;
    lapin::Connection::connect_uri(uri.clone(), lapin::ConnectionProperties::default())
        .await
        .with_context(|| format!("RabbitMQ does not answer at {}; start it (scripts/demo does: it installs and starts RabbitMQ)", flowscope_collectors::config::redact_url(&config.broker.amqp_url)))?
        .close(200, "checked".into())
        .await?;
    let load = LoadControl::new(if args.no_load { 0.0 } else { args.rate });
    let demo = DemoShop {
        amqp_url: amqp_url_for(&config, &vhost),
        order_url: Some(format!("http://{}", args.order_addr)),
        load: Some(load.clone()),
    };
    let server = crate::serve::start_with_demo(config.clone(), Some(demo)).await?;
    let otlp = server
        .otlp_addrs
        .map(|(grpc, _)| format!("http://{grpc}"))
        .unwrap_or_default();
    let shop = UpArgs {
        service: ServiceArgs {
            amqp_url: amqp_url_for(&config, &vhost),
            data_dir: args.shop_data_dir.clone(),
            prefetch: flowscope_demo::consumer::DEFAULT_PREFETCH,
            max_attempts: flowscope_demo::consumer::DEFAULT_MAX_ATTEMPTS,
            otlp_endpoint: otlp.clone(),
            no_traces: otlp.is_empty(),
            http_addr: args.order_addr,
        },
        rate: args.rate,
        duration: args.duration,
        no_load: args.no_load,
    };
    eprintln!(
        "\n  flowscope demo: dashboard http://{}  ·  API http://{}/api/openapi.json  ·  order API http://{}\n  RabbitMQ management http://127.0.0.1:15672 (guest/guest)  ·  Ctrl-C stops everything\n",
        server.addr, server.addr, args.order_addr
    );
    let shutdown = crate::signals::shutdown_on_signal();
    let shop_result = run_shop(&shop, &["shop"], shutdown.clone(), Some(load)).await;
    server.stop().await;
    shop_result
}

fn amqp_url_for(config: &Config, vhost: &str) -> String {
    let encoded: String = vhost
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect();
    format!("{}/{encoded}", config.broker.amqp_url.trim_end_matches('/'))
}
