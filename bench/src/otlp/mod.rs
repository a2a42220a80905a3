//! `flowscope-bench otlp`: OTLP ingest, flowscope against rotel.
//!
//! Three parts, each with a fresh receiver per run:
//!
//! 1. **steady**: each payload and transport at `--rate` (10k spans/s) for
//!    `--secs`, rotel and flowscope (correlation on, storage off) alternately,
//!    `--repeats` times each, the receiver pinned to core 1 and the generator
//!    to core 0: CPU-seconds per million spans accepted and RSS, medians and ratios.
//!    With `--together`, both at once in each round, side by side on core 1.
//! 2. **ramp**: the same pinning, offered rate stepped up (`--ramp`), each step
//!    `--ramp-secs`: the highest rate at which everything sent was accepted and,
//!    for flowscope, counted as received with no drops. Drawn to `--chart`.
//! 3. **persist**: flowscope alone with its SQLite store on, unpinned (both
//!    cores, the generator beside it), ramped the same way; after a graceful
//!    stop every accepted span must be a row in the store.
//!
//! [`payload`] builds the requests, [`generator`] paces them, [`receiver`]
//! starts and stops the processes under test.

pub mod generator;
pub mod payload;
mod ramp;
pub mod receiver;
pub mod stages;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::chart::Chart;
use crate::measure::{self, Row, Usage, Window};
use generator::{Client, Load, LoadReport, Transport};
use payload::{Payload, Template};
use receiver::{Receiver, Side, Spec, Storage};

/// Where `scripts/bench-peers` installs rotel.
const DEFAULT_ROTEL: &str =
    "/var/tmp/flowscope-bench-venv/lib/python3.11/site-packages/rotel/rotel-agent";
/// Bytes in a MiB.
const MIB: f64 = 1024.0 * 1024.0;

/// `flowscope-bench otlp`.
#[derive(Debug, Clone, clap::Args)]
pub struct OtlpArgs {
    /// The rotel-agent binary (scripts/bench-peers installs it).
    #[arg(long, env = "FLOWSCOPE_BENCH_ROTEL", default_value = DEFAULT_ROTEL)]
    pub rotel: PathBuf,
    /// The flowscope binary, a release build [default: `flowscope` beside this binary,
    /// else $CARGO_TARGET_DIR/release/flowscope].
    #[arg(long)]
    pub flowscope: Option<PathBuf>,
    /// Payloads to send (A = tiny, B = messaging).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tiny,messaging"
    )]
    pub payload: Vec<Payload>,
    /// Transports of the steady runs (the ramps use the first).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "grpc,http")]
    pub transport: Vec<Transport>,
    /// Spans per second of the steady runs.
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Seconds measured per steady run.
    #[arg(long, default_value_t = 15)]
    pub secs: u64,
    /// Seconds of load before a steady run's window. flowscope's live set
    /// fills for `max_live_flows` / new flows per second (10 s at 10k spans/s
    /// of B); a longer warm-up measures it full, as after start-up.
    #[arg(long, default_value_t = 2)]
    pub warm_secs: u64,
    /// Offered rates of the ramp, spans per second.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "10000,20000,40000,60000,80000,100000,130000,160000,200000"
    )]
    pub ramp: Vec<f64>,
    /// Seconds per ramp step.
    #[arg(long, default_value_t = 5)]
    pub ramp_secs: u64,
    /// Which parts to run.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "steady,ramp,persist"
    )]
    pub parts: Vec<Part>,
    /// Do not pin the generator and the receiver to a core each.
    #[arg(long)]
    pub no_pin: bool,
    /// Steady runs side by side, not alternately: in each round rotel and
    /// flowscope run at the same time, each fed by its own generator, both
    /// pinned to core 1 (the generators to core 0), their requests half a
    /// request apart; which starts first changes every round (give an even
    /// --repeats). A stretch of the machine running slow then falls on both
    /// sides of every round's ratio.
    #[arg(long)]
    pub together: bool,
    /// Draw the ramp chart to this SVG file (docs/benchmarks.md's is
    /// `docs/benchmarks/otlp-ramp.svg`); none: no chart.
    #[arg(long)]
    pub chart: Option<PathBuf>,
}

/// A part of the OTLP benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Steady,
    Ramp,
    Persist,
}

impl OtlpArgs {
    fn flowscope_binary(&self) -> PathBuf {
        let beside_bench = std::env::current_exe()
            .ok()
            .and_then(|exe| Some(exe.parent()?.join("flowscope")))
            .filter(|path| path.exists());
        self.flowscope.clone().or(beside_bench).unwrap_or_else(|| {
            let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
            PathBuf::from(target).join("release/flowscope")
        })
    }

    fn spec(&self, side: Side, storage: Storage, pinned: bool) -> Spec {
        Spec {
            side,
            program: match side {
                Side::Rotel => self.rotel.clone(),
                Side::Flowscope => self.flowscope_binary(),
            },
            core: (pinned && !self.no_pin).then_some(1),
            storage,
        }
    }
}

/// One measured steady run.
#[derive(Debug, Clone, Copy)]
struct SteadyRun {
    usage: Usage,
    load: LoadReport,
    counters: receiver::Counters,
}

impl SteadyRun {
    fn cpu_per_million(&self) -> f64 {
        self.usage.cpu_secs / self.load.spans_ok.max(1) as f64 * 1e6
    }
}

/// Runs the parts asked for and prints their tables.
pub async fn run(args: OtlpArgs, repeats: usize) -> anyhow::Result<()> {
    for path in [&args.rotel, &args.flowscope_binary()] {
        anyhow::ensure!(
            path.exists(),
            "{} not found: run scripts/bench-peers (rotel, release builds) or pass --rotel/--flowscope",
            path.display()
        );
    }
    if !args.no_pin {
        pin_self("0")?;
    }
    let mut rows = Vec::new();
    if args.parts.contains(&Part::Steady) {
        for &payload in &args.payload {
            for &transport in &args.transport {
                rows.extend(steady(&args, payload, transport, repeats).await?);
            }
        }
        measure::print_rows(&rows)?;
    }
    let transport = args.transport.first().copied().unwrap_or(Transport::Grpc);
    let (mut ramp_rows, mut lines) = (Vec::new(), Vec::new());
    if args.parts.contains(&Part::Ramp) {
        let (rows, series) = ramp::pinned(&args, transport).await?;
        ramp_rows.extend(rows);
        lines.extend(series);
    }
    if args.parts.contains(&Part::Persist) {
        // Both cores, shared by flowscope and the generator.
        if !args.no_pin {
            pin_self(&online_cpus()?)?;
        }
        let (rows, series) = ramp::persisted(&args, transport).await?;
        ramp_rows.extend(rows);
        lines.extend(series);
    }
    if !ramp_rows.is_empty() {
        measure::print_rows(&ramp_rows)?;
    }
    if let Some(path) = &args.chart
        && !lines.is_empty()
    {
        let chart = Chart {
            title: format!(
                "OTLP/{} ingest ramp: accepted vs offered spans/s",
                transport.name()
            ),
            x_label: "offered spans/s".into(),
            y_label: "accepted spans/s (flowscope: counted on /metrics)".into(),
            series: lines,
            diagonal: true,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, chart.to_svg())
            .with_context(|| format!("writing {}", path.display()))?;
        eprintln!("chart written to {}", path.display());
    }
    Ok(())
}

/// Pins this process (all its threads) to `cpus` (a `taskset -c` list) with `taskset -a -p`.
fn pin_self(cpus: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpus, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .context("running taskset (util-linux)")?;
    anyhow::ensure!(
        status.success(),
        "taskset could not pin the generator to cores {cpus}"
    );
    Ok(())
}

/// The machine's online cores as a `taskset -c` list (`0-1`).
fn online_cpus() -> anyhow::Result<String> {
    const ONLINE: &str = "/sys/devices/system/cpu/online";
    let list = std::fs::read_to_string(ONLINE)
        .with_context(|| format!("reading {ONLINE} (the cores to run on)"))?;
    anyhow::ensure!(!list.trim().is_empty(), "{ONLINE} lists no core");
    Ok(list.trim().to_owned())
}

/// rotel and flowscope alternately at the steady rate.
async fn steady(
    args: &OtlpArgs,
    payload: Payload,
    transport: Transport,
    repeats: usize,
) -> anyhow::Result<Vec<Row>> {
    let template = Arc::new(Template::new(payload, now_unix_nanos()));
    eprintln!(
        "payload {} over {}: {} spans, {} bytes per request",
        payload.letter(),
        transport.name(),
        template.num_spans(),
        template.len()
    );
    if args.together && !repeats.is_multiple_of(2) {
        eprintln!(
            "note: --together with an odd --repeats ({repeats}): rotel starts first in one \
             round more than flowscope (the side started second runs ~10 % dearer)"
        );
    }
    let (rotel, flowscope) = if args.together {
        let mut pairs = (Vec::new(), Vec::new());
        for round in 0..repeats {
            let (rotel, flowscope) = steady_pair(args, &template, transport, round)
                .await
                .with_context(|| format!("round {}", round + 1))?;
            pairs.0.push(rotel);
            pairs.1.push(flowscope);
        }
        pairs
    } else {
        measure::alternate(
            repeats,
            |round| steady_run(args, Side::Rotel, template.clone(), transport, round),
            |round| steady_run(args, Side::Flowscope, template.clone(), transport, round),
        )
        .await?
    };
    for run in &flowscope {
        anyhow::ensure!(
            run.counters.dropped == 0 && run.load.num_refused == 0,
            "flowscope refused spans at {} spans/s: {run:?}",
            args.rate
        );
    }
    let name = format!(
        "OTLP {} {} @ {}k spans/s",
        payload.letter(),
        transport.name(),
        args.rate / 1000.0
    );
    let cpu =
        |runs: &[SteadyRun]| -> Vec<f64> { runs.iter().map(SteadyRun::cpu_per_million).collect() };
    if let Some(spread) = measure::RoundRatios::of(&cpu(&rotel), &cpu(&flowscope)) {
        eprintln!("{name}, CPU per span: {spread}");
    }
    let median = |runs: &[SteadyRun], f: fn(&SteadyRun) -> f64| {
        measure::median(&runs.iter().map(f).collect::<Vec<_>>())
    };
    Ok(vec![
        Row {
            benchmark: name.clone(),
            metric: "CPU per million spans".into(),
            unit: "s".into(),
            peer: Some(median(&rotel, SteadyRun::cpu_per_million)),
            flowscope: median(&flowscope, SteadyRun::cpu_per_million),
            goal: "≤ 0.8× rotel".into(),
        },
        Row {
            benchmark: name.clone(),
            metric: "peak RSS".into(),
            unit: "MiB".into(),
            peer: Some(median(&rotel, |r| r.usage.peak_rss_bytes as f64 / MIB)),
            flowscope: median(&flowscope, |r| r.usage.peak_rss_bytes as f64 / MIB),
            goal: "—".into(),
        },
    ])
}

async fn steady_run(
    args: &OtlpArgs,
    side: Side,
    template: Arc<Template>,
    transport: Transport,
    round: usize,
) -> anyhow::Result<SteadyRun> {
    let mut receiver = Receiver::start(&args.spec(side, Storage::Off, true), round).await?;
    let warmed = warm_up(args, &receiver, &template, transport).await?;
    let run = measure_steady(args, &receiver, &template, warmed).await?;
    receiver.stop().await?;
    report_steady(&receiver, transport, round, &run);
    Ok(run)
}

/// rotel and flowscope at the same time, each with its own generator
/// (`--together`): one round's pair of runs, over the same seconds.
///
/// Their requests are due half a request apart, so that neither receiver
/// is woken while the other is still answering (the one woken second would
/// take the core from the first, mid-request, and leave its caches cold);
/// which side starts and sends first changes every round.
async fn steady_pair(
    args: &OtlpArgs,
    template: &Arc<Template>,
    transport: Transport,
    round: usize,
) -> anyhow::Result<(SteadyRun, SteadyRun)> {
    let sides = pair_order(round);
    let mut first = Receiver::start(&args.spec(sides[0], Storage::Off, true), round).await?;
    let mut second = Receiver::start(&args.spec(sides[1], Storage::Off, true), round).await?;
    let (warm_first, warm_second) = tokio::try_join!(
        warm_up(args, &first, template, transport),
        warm_up(args, &second, template, transport),
    )?;
    let half_a_request = Duration::from_secs_f64(template.num_spans() as f64 / args.rate / 2.0);
    let (run_first, run_second) =
        tokio::try_join!(measure_steady(args, &first, template, warm_first), async {
            tokio::time::sleep(half_a_request).await;
            measure_steady(args, &second, template, warm_second).await
        })?;
    first.stop().await?;
    second.stop().await?;
    report_steady(&first, transport, round, &run_first);
    report_steady(&second, transport, round, &run_second);
    Ok(match sides[0] {
        Side::Rotel => (run_first, run_second),
        Side::Flowscope => (run_second, run_first),
    })
}

/// Which side of a `--together` round starts and sends first: rotel in
/// the first round, flowscope in the second, and so on. The side started
/// second runs ~10 % dearer with the same build in both seats (measured:
/// docs/benchmarks.md, fourteenth sitting), so an even number of rounds
/// gives both sides the same share of it.
fn pair_order(round: usize) -> [Side; 2] {
    if round.is_multiple_of(2) {
        [Side::Rotel, Side::Flowscope]
    } else {
        [Side::Flowscope, Side::Rotel]
    }
}

/// A receiver after its warm-up: the client that warmed it and where the
/// measured load goes on from.
struct Warmed {
    client: Client,
    first_seq: u64,
    before: receiver::Counters,
}

/// Warms a running receiver up under the steady load.
async fn warm_up(
    args: &OtlpArgs,
    receiver: &Receiver,
    template: &Arc<Template>,
    transport: Transport,
) -> anyhow::Result<Warmed> {
    let addr = match transport {
        Transport::Grpc => receiver.grpc,
        Transport::Http => receiver.http,
    };
    let client = Client::connect(transport, addr).await?;
    let warmed = generator::run(&client, template, steady_load(args, args.warm_secs, 0)).await?;
    Ok(Warmed {
        client,
        first_seq: warmed.num_requests,
        before: receiver.counters().await?,
    })
}

fn steady_load(args: &OtlpArgs, secs: u64, first_seq: u64) -> Load {
    Load {
        spans_per_sec: args.rate,
        duration: Duration::from_secs(secs),
        max_in_flight: generator::DEFAULT_MAX_IN_FLIGHT,
        first_seq,
    }
}

/// Measures a warmed receiver under the steady load.
async fn measure_steady(
    args: &OtlpArgs,
    receiver: &Receiver,
    template: &Arc<Template>,
    warmed: Warmed,
) -> anyhow::Result<SteadyRun> {
    let load = steady_load(args, args.secs, warmed.first_seq);
    let (report, usage) = measured_load(receiver, &warmed.client, template, load).await?;
    let after = settled_counters(receiver).await?;
    let counters = receiver::Counters {
        received: after.received - warmed.before.received,
        dropped: after.dropped - warmed.before.dropped,
        ..after
    };
    Ok(SteadyRun {
        usage,
        load: report,
        counters,
    })
}

fn report_steady(receiver: &Receiver, transport: Transport, round: usize, run: &SteadyRun) {
    eprintln!(
        "  {} {:?} round {}: {:.2} CPU s, {} spans ok of {}, peak RSS {:.1} MiB",
        receiver.side.name(),
        transport,
        round + 1,
        run.usage.cpu_secs,
        run.load.spans_ok,
        run.load.spans_sent,
        run.usage.peak_rss_bytes as f64 / MIB
    );
}

/// Runs a load while measuring the receiver's CPU and RSS over exactly that window.
async fn measured_load(
    receiver: &Receiver,
    client: &Client,
    template: &Arc<Template>,
    load: Load,
) -> anyhow::Result<(LoadReport, Usage)> {
    let mut window = Window::start(receiver.pid)?;
    let (client, template) = (client.clone(), template.clone());
    let task = tokio::spawn(async move { generator::run(&client, &template, load).await });
    let limit = load.duration + Duration::from_secs(15);
    measure::sample_until(&mut window, Duration::from_millis(200), limit, || {
        task.is_finished()
    })
    .await?;
    let report = task.await??;
    Ok((report, window.finish()?))
}

/// flowscope's counters once they stop moving (the engine has drained), within 5 s.
async fn settled_counters(receiver: &Receiver) -> anyhow::Result<receiver::Counters> {
    let mut last = receiver.counters().await?;
    for _ in 0..25 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = receiver.counters().await?;
        if now == last {
            return Ok(now);
        }
        last = now;
    }
    Ok(last)
}

fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn together_rounds_take_turns_at_starting_first() {
        let firsts: Vec<Side> = (0..4).map(|round| pair_order(round)[0]).collect();
        assert_eq!(
            firsts,
            [Side::Rotel, Side::Flowscope, Side::Rotel, Side::Flowscope]
        );
        for round in 0..4 {
            let [a, b] = pair_order(round);
            assert_ne!(a, b, "round {round} runs both sides");
        }
    }
}
