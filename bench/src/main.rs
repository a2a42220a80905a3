//! `flowscope-bench`: side-by-side benchmarks of flowscope and a peer on this machine.
//!
//! Every benchmark runs the peer and flowscope alternately (A B A B, `--repeats` times), measures
//! each run over its measured window only (CPU from `/proc/<pid>/stat`, memory from `VmRSS`),
//! and prints medians and ratios. Loops are bounded by count and time, traffic stays on
//! loopback, and a benchmark stops only the processes it started. `docs/benchmarks.md` holds
//! the method and the results.

mod alert;
mod chart;
mod freshness;
mod idle_memory;
mod measure;
mod otlp;
mod rabbit;
mod storage;
mod tap;
mod ui_load;

use clap::{Parser, Subcommand};

/// The server's allocator, so that in-process figures (`otlp-stages`,
/// `storage`) match what `flowscope serve` spends.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Benchmarks flowscope against peers on this machine; prints medians and ratios.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// How many times each side runs (A B A B …).
    #[arg(long, global = true, default_value_t = 3)]
    repeats: usize,
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// The dashboard in headless Chromium with 1,000 live flows and 200 queues: long tasks, DOM size.
    UiLoad(ui_load::UiLoadArgs),
    /// Broker tap vs the rabbitmq_tracing plugin vs a null firehose consumer (private RabbitMQ node).
    Tap(tap::TapArgs),
    /// Publish → queue depth visible in the browser: flowscope vs the RabbitMQ management UI.
    Freshness(freshness::FreshnessArgs),
    /// Dead-lettering → webhook call of the dlq-growth alert.
    Alert(alert::AlertArgs),
    /// OTLP ingest against rotel: CPU per span and RSS at a steady rate, and the
    /// highest lossless rate (ramp), gRPC and HTTP, two payloads.
    Otlp(otlp::OtlpArgs),
    /// Where one span's CPU goes inside flowscope (read, correlate, judge,
    /// tick), measured in-process, per payload.
    OtlpStages(otlp::stages::StagesArgs),
    /// What touching memory again costs after it sat idle (0 ms to 10 s) on this machine.
    IdleMemory(idle_memory::IdleMemoryArgs),
    /// flowscope's store (SQLite, PostgreSQL): write rate, bytes per event against a
    /// naive JSON schema, lookup latency by order key and trace id, cold and warm.
    Storage(storage::StorageArgs),
}

fn main() -> anyhow::Result<()> {
    // The server's allocator settings too (the flowscope processes it starts
    // inherit them, as they would set them; rotel does not use mimalloc).
    flowscope_server::allocator::configure();
    let cli = Cli::parse();
    let _ = cli.repeats;
    match cli.bench {
        Bench::UiLoad(args) => rabbit::block_on(ui_load::run(args)),
        Bench::Tap(args) => rabbit::block_on(tap::run(args, cli.repeats, &rabbit::repo_root())),
        Bench::Freshness(args) => {
            rabbit::block_on(freshness::run(args, cli.repeats, &rabbit::repo_root()))
        }
        Bench::Alert(args) => rabbit::block_on(alert::run(args, &rabbit::repo_root())),
        Bench::Otlp(args) => rabbit::block_on(otlp::run(args, cli.repeats)),
        Bench::OtlpStages(args) => otlp::stages::run(args),
        Bench::Storage(args) => rabbit::block_on(storage::run(args)),
        Bench::IdleMemory(args) => idle_memory::run(args),
    }
}
