//! `flowscope`: see inside an event-driven system.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use flowscope_server::config::Config;
use flowscope_server::tap::{self, TapArgs};
use tracing_subscriber::EnvFilter;

/// mimalloc instead of glibc's malloc: ingest allocates and frees a few dozen
/// small blocks per span, and glibc's allocator was the largest item in the
/// OTLP profile (see docs/benchmarks.md, OTLP). Its settings:
/// [`flowscope_server::allocator`].
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// flowscope: live event flows of a RabbitMQ system, from the broker's
/// firehose, its management API and the services' OpenTelemetry traces.
///
/// Configuration: a TOML file (`--config`, or ./flowscope.toml if present),
/// every key overridable by FLOWSCOPE_<SECTION>_<KEY> environment variables
/// (e.g. FLOWSCOPE_BROKER_AMQP_URL), then by the flags below.
#[derive(Debug, Parser)]
#[command(name = "flowscope", version, propagate_version = true)]
struct Cli {
    /// The configuration file.
    #[arg(long, short, env = "FLOWSCOPE_CONFIG", global = true)]
    config: Option<PathBuf>,

    #[command(flatten)]
    overrides: Overrides,

    #[command(subcommand)]
    command: Command,
}

/// Flags that override the configuration.
#[derive(Debug, clap::Args)]
struct Overrides {
    /// AMQP URL of the broker, without vhost [broker.amqp_url].
    #[arg(long, global = true)]
    amqp_url: Option<String>,
    /// Management API base URL [broker.management_url].
    #[arg(long, global = true)]
    management_url: Option<String>,
    /// A vhost to watch; repeat for several [broker.vhosts].
    #[arg(long = "vhost", global = true)]
    vhosts: Vec<String>,
    /// OTLP/gRPC listen address [otlp.grpc_addr].
    #[arg(long, global = true)]
    otlp_grpc_addr: Option<std::net::SocketAddr>,
    /// OTLP/HTTP listen address [otlp.http_addr].
    #[arg(long, global = true)]
    otlp_http_addr: Option<std::net::SocketAddr>,
    /// Do not tap the firehose [firehose.enabled = false].
    #[arg(long, global = true)]
    no_firehose: bool,
    /// Do not poll the management API [management.enabled = false].
    #[arg(long, global = true)]
    no_management: bool,
    /// Do not receive OTLP [otlp.enabled = false].
    #[arg(long, global = true)]
    no_otlp: bool,
    /// Do not capture message bodies [firehose.redact.capture_body = false].
    #[arg(long, global = true)]
    no_bodies: bool,
}

impl Overrides {
    fn apply(self, config: &mut Config) {
        if let Some(url) = self.amqp_url {
            config.broker.amqp_url = url;
        }
        if let Some(url) = self.management_url {
            config.broker.management_url = url;
        }
        if !self.vhosts.is_empty() {
            config.broker.vhosts = self.vhosts;
        }
        if let Some(addr) = self.otlp_grpc_addr {
            config.otlp.grpc_addr = addr;
        }
        if let Some(addr) = self.otlp_http_addr {
            config.otlp.http_addr = addr;
        }
        config.firehose.enabled &= !self.no_firehose;
        config.management.enabled &= !self.no_management;
        config.otlp.enabled &= !self.no_otlp;
        config.firehose.redact.capture_body &= !self.no_bodies;
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run flowscope: collectors, correlator, store, alerts, API and UI.
    Serve,
    /// Run flowscope beside the demo shop (five services and a load generator): one command
    /// that shows the whole architecture. Ctrl-C stops everything.
    Demo(flowscope_server::demo::DemoArgs),
    /// The demo shop's own commands (`flowscope shop --help`), used by `flowscope demo`.
    #[command(hide = true)]
    Shop {
        #[command(subcommand)]
        command: flowscope_demo::cli::Command,
    },
    /// Run the collectors and print every observation as a JSON line on stdout
    /// (logs go to stderr): check what flowscope sees, or debug your own
    /// trace propagation.
    Tap(TapArgs),
    /// Print the effective configuration (file, environment and flags merged) as TOML.
    Config,
}

fn main() -> ExitCode {
    flowscope_server::allocator::configure();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("flowscope: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(start())
}

async fn start() -> ExitCode {
    let cli = Cli::parse();
    // The shop's commands set up their own logging and tracing.
    if !matches!(cli.command, Command::Shop { .. }) {
        let filter = EnvFilter::try_from_env("FLOWSCOPE_LOG")
            .unwrap_or_else(|_| EnvFilter::new("info,lapin=off"));
        tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Shop { command } = cli.command {
        let code = flowscope_demo::cli::run(command, &["shop"]).await?;
        return if code == ExitCode::SUCCESS {
            Ok(())
        } else {
            Err(anyhow::anyhow!("shop command failed"))
        };
    }
    let mut config = Config::load(cli.config.as_deref())?;
    cli.overrides.apply(&mut config);
    config.validate()?;
    match cli.command {
        Command::Tap(args) => tap::run(config, args).await,
        Command::Serve => {
            let server = flowscope_server::serve::start(config, None).await?;
            flowscope_server::signals::shutdown_on_signal()
                .cancelled()
                .await;
            server.stop().await;
            Ok(())
        }
        Command::Demo(args) => flowscope_server::demo::run(config, args).await,
        Command::Shop { .. } => unreachable!("handled above"),
        Command::Config => {
            config.broker.amqp_url =
                flowscope_collectors::config::redact_url(&config.broker.amqp_url);
            for token in &mut config.auth.tokens {
                token.token = "***".into();
            }
            print!("{}", toml::to_string_pretty(&config)?);
            Ok(())
        }
    }
}
