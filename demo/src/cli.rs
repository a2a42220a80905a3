//! The `shop` command line: run a service, all of them, the load generator,
//! or flip a fault switch. `flowscope shop …` embeds the same commands.

use std::process::ExitCode;
use std::time::Duration;

use crate::config::{DEFAULT_AMQP_URL, ServiceArgs};
use crate::faults::{self, FaultCommand, FaultReply};
use crate::load::{self, LoadArgs};
use crate::supervisor::{self, UpArgs};
use crate::telemetry;
use crate::topology::Service;
use clap::{Parser, Subcommand, ValueEnum};

/// The flowscope demo shop: five services that talk only through RabbitMQ.
///
/// Run `shop up` for the whole shop with a load generator, or one service per
/// process (`shop payment`). Every service declares the topology it needs,
/// reconnects when the broker goes away, and stops cleanly on SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "shop", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The shop's commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the order service: HTTP API (POST /orders, GET /orders/{id}) and outcome consumer.
    Order(ServiceArgs),
    /// Run the payment service: charges (or declines) orders, refunds on inventory failure.
    Payment(ServiceArgs),
    /// Run the inventory service: reserves stock for paid orders.
    Inventory(ServiceArgs),
    /// Run the shipping service: ships reserved orders.
    Shipping(ServiceArgs),
    /// Run the notification service: records a notification for every event.
    Notification(ServiceArgs),
    /// Run all five services as child processes plus the load generator; Ctrl-C stops all.
    Up(UpArgs),
    /// Place random orders at a steady rate for a bounded time.
    Load(LoadArgs),
    /// Show or flip the running shop's fault switches (over the broker's `shop.control` exchange).
    Fault(FaultArgs),
}

/// Options of `shop fault`.
#[derive(Debug, clap::Args)]
pub struct FaultArgs {
    /// AMQP URL of the broker the shop runs on.
    #[arg(long, env = "SHOP_AMQP_URL", default_value = DEFAULT_AMQP_URL, global = true)]
    amqp_url: String,

    /// How long to wait for the services' answers, in milliseconds.
    #[arg(long, default_value_t = 1500, global = true)]
    wait_ms: u64,

    #[command(subcommand)]
    switch: FaultSwitch,
}

/// The switches `shop fault` flips.
#[derive(Debug, Subcommand)]
pub enum FaultSwitch {
    /// Show every running service's switches.
    Show,
    /// Share of payments the payment service declines (0.0 to 1.0).
    DeclineRate { rate: f64 },
    /// Share of reservations the inventory service fails as out of stock (0.0 to 1.0).
    OutOfStockRate { rate: f64 },
    /// Share of a service's published messages sent with a malformed body (0.0 to 1.0).
    PoisonRate {
        rate: f64,
        /// The publishing service whose messages are poisoned.
        #[arg(long, default_value = "order")]
        service: Service,
    },
    /// Delay each message a service processes by this many milliseconds (0 turns it off).
    Slow { service: Service, ms: u64 },
    /// Cancel a service's consumer: its messages pile up in its queue.
    Pause { service: Service },
    /// Resume a paused consumer.
    Resume { service: Service },
    /// Make a service take messages and never acknowledge them.
    NoAck { service: Service, state: OnOff },
    /// Turn every switch off.
    Reset,
}

/// On or off.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

impl FaultSwitch {
    fn command(&self) -> FaultCommand {
        match *self {
            FaultSwitch::Show => FaultCommand::Show,
            FaultSwitch::DeclineRate { rate } => FaultCommand::DeclineRate { rate },
            FaultSwitch::OutOfStockRate { rate } => FaultCommand::OutOfStockRate { rate },
            FaultSwitch::PoisonRate { rate, service } => FaultCommand::PoisonRate { service, rate },
            FaultSwitch::Slow { service, ms } => FaultCommand::Slow { service, ms },
            FaultSwitch::Pause { service } => FaultCommand::Pause { service },
            FaultSwitch::Resume { service } => FaultCommand::Resume { service },
            FaultSwitch::NoAck { service, state } => FaultCommand::NoAck {
                service,
                enabled: matches!(state, OnOff::On),
            },
            FaultSwitch::Reset => FaultCommand::Reset,
        }
    }
}

/// Runs one shop command. `exe_prefix` is what the running binary needs
/// before a service name to run it (`[]` for `shop`, `["shop"]` for `flowscope`).
pub async fn run(command: Command, exe_prefix: &[&str]) -> anyhow::Result<ExitCode> {
    let service = match command {
        Command::Order(args) => (Service::Order, args),
        Command::Payment(args) => (Service::Payment, args),
        Command::Inventory(args) => (Service::Inventory, args),
        Command::Shipping(args) => (Service::Shipping, args),
        Command::Notification(args) => (Service::Notification, args),
        Command::Up(args) => {
            telemetry::init("shop", None)?;
            supervisor::up(&args, exe_prefix).await?;
            return Ok(ExitCode::SUCCESS);
        }
        Command::Load(args) => {
            telemetry::init("shop-load", None)?;
            let summary = load::run(&args, crate::runtime::shutdown_on_signal()).await?;
            let ok = summary.num_failed == 0;
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        Command::Fault(args) => return fault(args).await,
    };
    let (service, args) = service;
    let endpoint = (!args.no_traces).then_some(args.otlp_endpoint.as_str());
    let telemetry = telemetry::init(service.name(), endpoint)?;
    let result = crate::runtime::run_service(service, &args).await;
    telemetry.shutdown().await;
    result.map(|()| ExitCode::SUCCESS)
}

async fn fault(args: FaultArgs) -> anyhow::Result<ExitCode> {
    let command = args.switch.command();
    let replies =
        faults::send_command(&args.amqp_url, command, Duration::from_millis(args.wait_ms)).await?;
    if replies.is_empty() {
        anyhow::bail!(
            "no shop service answered within {} ms; is the shop running on this broker and vhost ({})?",
            args.wait_ms,
            args.amqp_url
        );
    }
    print_replies(&replies);
    let refused: Vec<_> = replies.iter().filter_map(|r| r.error.as_deref()).collect();
    if let Some(reason) = refused.first() {
        eprintln!("error: refused: {reason}");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_replies(replies: &[FaultReply]) {
    let state = &replies[0].state;
    println!(
        "decline rate {:.2}, out-of-stock rate {:.2}",
        state.decline_rate, state.out_of_stock_rate
    );
    println!(
        "{:<13} {:>7} {:>7} {:>7} {:>7}",
        "service", "slow_ms", "paused", "no_ack", "poison"
    );
    for reply in replies {
        let Ok(service) = reply.service.parse::<Service>() else {
            continue;
        };
        let f = reply.state.of(service);
        println!(
            "{:<13} {:>7} {:>7} {:>7} {:>7.2}",
            reply.service, f.slow_ms, f.paused, f.no_ack, f.poison_rate
        );
    }
    let missing: Vec<_> = Service::ALL
        .iter()
        .filter(|s| !replies.iter().any(|r| r.service == s.name()))
        .map(|s| s.name())
        .collect();
    if !missing.is_empty() {
        println!("not answering (not running?): {}", missing.join(", "));
    }
}
