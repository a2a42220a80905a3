//! `flowscope-bench tap`: flowscope's broker tap vs the `rabbitmq_tracing` plugin vs a null
//! firehose consumer, on the private node (`scripts/bench-rabbitmq`).
//!
//! Per offered rate and round, each side in turn (null, plugin, flowscope — the same order
//! every round, so drifts spread over all): a fresh vhost, a durable queue with a consumer
//! draining it, the side started and settled, then a paced publisher sends 1 KB persistent
//! messages (without publisher confirms unless `--confirms`) for `--secs`. Measured over the publishing window: the
//! broker's CPU (its `beam.smp`), the side's own CPU when it is a process. At the last
//! confirm: how many publish events the side had captured (the lag), then how many it has
//! after `--grace-secs` more (completeness). A rate is *lossless* for a side when every round
//! captured every published message within the grace.

pub mod sides;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use lapin::types::FieldTable;

use crate::measure::{Window, median};
use crate::rabbit::BenchNode;
use crate::rabbit::publish::{Drain, PacedPublisher, declare_queue};
use sides::{Running, Side};

/// The vhost every run creates afresh.
const VHOST: &str = "bench-tap";
/// The queue the publisher fills and a consumer drains.
const TARGET_QUEUE: &str = "bench.target";
/// Pause between starting a side and publishing: connections get listed by the
/// management API, consumers attach.
const SETTLE: Duration = Duration::from_secs(3);

/// Options of `flowscope-bench tap`.
#[derive(Debug, Clone, clap::Args)]
pub struct TapArgs {
    /// Offered rates, messages per second.
    #[arg(long, value_delimiter = ',', default_value = "2000,5000,10000,20000")]
    pub rates: Vec<u32>,
    /// Sides to run, in this order each round.
    #[arg(long, value_delimiter = ',', default_value = "null,plugin,flowscope")]
    pub sides: Vec<Side>,
    /// Seconds of publishing per run.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Seconds a side may take after the last confirm to capture everything.
    #[arg(long, default_value_t = 5)]
    pub grace_secs: u64,
    /// Use publisher confirms (published = confirmed); without, published = sent.
    #[arg(long)]
    pub confirms: bool,
    /// Message body size in bytes.
    #[arg(long, default_value_t = 1024)]
    pub body_bytes: usize,
    /// The flowscope binary (default: `flowscope` beside this executable).
    #[arg(long)]
    pub flowscope_bin: Option<PathBuf>,
    /// Leave the private RabbitMQ node running at the end.
    #[arg(long)]
    pub keep_node: bool,
    /// Where the ramp's figures go (CSV; an SVG chart next to it as `.svg`).
    #[arg(long, default_value = "docs/benchmarks/tap-ramp.csv")]
    pub csv: PathBuf,
}

/// One run of one side at one rate.
#[derive(Debug, Clone, Copy)]
pub struct Run {
    pub side: Side,
    pub rate: u32,
    pub published: u64,
    pub published_per_sec: f64,
    pub captured_at_stop: u64,
    pub captured: u64,
    /// Seconds after the last confirm until everything was captured (the grace when not).
    pub catch_up_secs: f64,
    /// Broker CPU over the publishing window, in cores (CPU-seconds per second).
    pub broker_cores: f64,
    /// The side's own CPU in cores (flowscope only).
    pub side_cores: Option<f64>,
}

impl Run {
    pub fn completeness(&self) -> f64 {
        self.captured as f64 / self.published.max(1) as f64
    }

    pub fn lossless(&self) -> bool {
        self.captured >= self.published
    }
}

/// Runs the benchmark and prints its tables.
pub async fn run(args: TapArgs, repeats: usize, repo: &Path) -> anyhow::Result<()> {
    let bin = args
        .flowscope_bin
        .clone()
        .unwrap_or_else(|| crate::rabbit::flowscope::default_bin(repo));
    let node = BenchNode::start(repo).await?;
    let result = run_all(&args, repeats, &node, &bin).await;
    node.mgmt
        .delete(&format!("vhosts/{}", crate::rabbit::encode(VHOST)))
        .await
        .ok();
    node.finish(args.keep_node).await?;
    let runs = result?;
    print_runs(&runs, &args);
    write_csv(&args.csv, &runs)?;
    Ok(())
}

async fn run_all(
    args: &TapArgs,
    repeats: usize,
    node: &BenchNode,
    bin: &Path,
) -> anyhow::Result<Vec<Run>> {
    let mut runs = Vec::new();
    for &rate in &args.rates {
        for round in 0..repeats {
            for &side in &args.sides {
                let run = run_once(args, node, bin, side, rate).await.map_err(|e| {
                    e.context(format!(
                        "{} at {rate} msg/s, round {}",
                        side.name(),
                        round + 1
                    ))
                })?;
                eprintln!(
                    "tap: {rate} msg/s round {} {}: published {} ({:.0}/s), captured {} at stop, {} after grace ({:.1} s), broker {:.2} cores{}",
                    round + 1,
                    side.name(),
                    run.published,
                    run.published_per_sec,
                    run.captured_at_stop,
                    run.captured,
                    run.catch_up_secs,
                    run.broker_cores,
                    run.side_cores
                        .map(|c| format!(", flowscope {c:.2} cores"))
                        .unwrap_or_default()
                );
                runs.push(run);
            }
        }
    }
    Ok(runs)
}

async fn run_once(
    args: &TapArgs,
    node: &BenchNode,
    bin: &Path,
    side: Side,
    rate: u32,
) -> anyhow::Result<Run> {
    node.mgmt.fresh_vhost(VHOST).await?;
    let url = node.vhost_url(VHOST);
    let publisher = PacedPublisher::connect_with(&url, "bench-publisher", args.confirms).await?;
    declare_queue(publisher.channel(), TARGET_QUEUE, FieldTable::default()).await?;
    let drain = Drain::start(&url, "bench-consumer", TARGET_QUEUE, |_| true).await?;
    let running = Running::start(side, node, VHOST, &publisher, bin).await?;
    tokio::time::sleep(SETTLE).await;

    let body = vec![b'x'; args.body_bytes];
    let mut broker = Window::start(node.pid()?)?;
    let mut own = running.pid().map(Window::start).transpose()?;
    let publishing = publisher.run(
        TARGET_QUEUE,
        &body,
        f64::from(rate),
        Duration::from_secs(args.secs),
    );
    tokio::pin!(publishing);
    let mut sample = tokio::time::interval(Duration::from_millis(500));
    let published = loop {
        tokio::select! {
            result = &mut publishing => break result?,
            _ = sample.tick() => {
                broker.sample()?;
                if let Some(own) = own.as_mut() { own.sample()?; }
            }
        }
    };
    let broker = broker.finish()?;
    let own = own.map(Window::finish).transpose()?;
    let captured_at_stop = running.captured();
    let stopped = Instant::now();
    let grace = Duration::from_secs(args.grace_secs);
    while running.captured() < published.confirmed && stopped.elapsed() < grace {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let catch_up_secs = stopped.elapsed().as_secs_f64();
    let captured = running.captured();
    running.stop(node, VHOST).await?;
    drain.stop().await;
    node.mgmt.set_tracing(VHOST, false).await.ok();
    Ok(Run {
        side,
        rate,
        published: published.confirmed,
        published_per_sec: published.rate(),
        captured_at_stop,
        captured,
        catch_up_secs,
        broker_cores: broker.cpu_secs / broker.wall_secs,
        side_cores: own.map(|u| u.cpu_secs / u.wall_secs),
    })
}

/// Medians of one side at one rate.
#[derive(Debug, Clone, Copy)]
struct Summary {
    published_per_sec: f64,
    completeness_at_stop: f64,
    completeness: f64,
    lag_at_stop: f64,
    catch_up_secs: f64,
    broker_cores: f64,
    side_cores: f64,
    lossless: bool,
}

fn summarize(runs: &[&Run]) -> Summary {
    let m = |f: &dyn Fn(&Run) -> f64| median(&runs.iter().map(|r| f(r)).collect::<Vec<_>>());
    Summary {
        published_per_sec: m(&|r| r.published_per_sec),
        completeness_at_stop: m(&|r| r.captured_at_stop as f64 / r.published.max(1) as f64),
        completeness: m(&|r| r.completeness()),
        lag_at_stop: m(&|r| r.published.saturating_sub(r.captured_at_stop) as f64),
        catch_up_secs: m(&|r| r.catch_up_secs),
        broker_cores: m(&|r| r.broker_cores),
        side_cores: m(&|r| r.side_cores.unwrap_or(f64::NAN)),
        lossless: runs.iter().all(|r| r.lossless()),
    }
}

fn by_rate_and_side(runs: &[Run]) -> BTreeMap<(u32, Side), Summary> {
    let mut groups: BTreeMap<(u32, usize), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        groups
            .entry((run.rate, run.side as usize))
            .or_default()
            .push(run);
    }
    groups
        .into_iter()
        .map(|((rate, _), runs)| ((rate, runs[0].side), summarize(&runs)))
        .collect()
}

/// The highest offered rate at which `side` was lossless in every round, and whether every
/// lower rate was too.
pub fn lossless_rate(runs: &[Run], side: Side) -> Option<u32> {
    let mut rates: Vec<u32> = runs
        .iter()
        .filter(|r| r.side == side)
        .map(|r| r.rate)
        .collect();
    rates.sort_unstable();
    rates.dedup();
    let mut best = None;
    for rate in rates {
        let all = runs
            .iter()
            .filter(|r| r.side == side && r.rate == rate)
            .all(Run::lossless);
        if !all {
            break;
        }
        best = Some(rate);
    }
    best
}

fn print_runs(runs: &[Run], args: &TapArgs) {
    let summaries = by_rate_and_side(runs);
    println!(
        "\n### Broker tap vs rabbitmq_tracing vs null consumer ({} B persistent, {} s per run, medians)\n",
        args.body_bytes, args.secs
    );
    println!(
        "| offered msg/s | side | published msg/s | captured at last confirm | captured within {} s | lag at last confirm (msgs) | catch-up s | broker CPU (cores) | flowscope CPU (cores) | lossless every round |",
        args.grace_secs
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for ((rate, side), s) in &summaries {
        println!(
            "| {rate} | {} | {:.0} | {:.1} % | {:.1} % | {:.0} | {:.1} | {:.2} | {} | {} |",
            side.name(),
            s.published_per_sec,
            s.completeness_at_stop * 100.0,
            s.completeness * 100.0,
            s.lag_at_stop,
            s.catch_up_secs,
            s.broker_cores,
            if s.side_cores.is_nan() {
                "—".to_owned()
            } else {
                format!("{:.2}", s.side_cores)
            },
            if s.lossless { "yes" } else { "no" }
        );
    }
    println!("\n| goal | figure | met |\n|---|---|---|");
    let ours = lossless_rate(runs, Side::Flowscope);
    let plugin = lossless_rate(runs, Side::Plugin);
    let lowest = args.rates.iter().copied().min().unwrap_or(0);
    let fmt_rate = |r: Option<u32>| match r {
        Some(r) => format!("{r} msg/s"),
        None => format!("< {lowest} msg/s"),
    };
    let ratio = match (ours, plugin) {
        (Some(o), Some(p)) => format!("{:.1}×", f64::from(o) / f64::from(p)),
        (Some(o), None) => format!("> {:.1}×", f64::from(o) / f64::from(lowest.max(1))),
        _ => "n/a".to_owned(),
    };
    let met = match (ours, plugin) {
        (Some(o), Some(p)) => o >= 10 * p,
        (Some(o), None) => o >= 10 * lowest,
        _ => false,
    };
    println!(
        "| lossless capture ≥ 10× the plugin's rate | flowscope {}, plugin {}: {ratio} | {} |",
        fmt_rate(ours),
        fmt_rate(plugin),
        if met { "yes" } else { "no" }
    );
    for rate in &args.rates {
        let (Some(ours), Some(null)) = (
            summaries.get(&(*rate, Side::Flowscope)),
            summaries.get(&(*rate, Side::Null)),
        ) else {
            continue;
        };
        let ratio = ours.broker_cores / null.broker_cores;
        println!(
            "| broker CPU with flowscope ≤ 1.05× null consumer, {rate} msg/s | {:.2} vs {:.2} cores: {ratio:.3}× | {} |",
            ours.broker_cores,
            null.broker_cores,
            if ratio <= 1.05 { "yes" } else { "no" }
        );
    }
}

/// One line per (rate, side): the medians, for the ramp chart.
fn write_csv(path: &Path, runs: &[Run]) -> anyhow::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::File::create(path)?;
    writeln!(
        file,
        "offered_per_sec,side,published_per_sec,captured_at_stop_pct,captured_pct,lag_at_stop,broker_cores,flowscope_cores"
    )?;
    for ((rate, side), s) in by_rate_and_side(runs) {
        writeln!(
            file,
            "{rate},{},{:.0},{:.2},{:.2},{:.0},{:.3},{:.3}",
            side.name(),
            s.published_per_sec,
            s.completeness_at_stop * 100.0,
            s.completeness * 100.0,
            s.lag_at_stop,
            s.broker_cores,
            s.side_cores
        )?;
    }
    let svg = path.with_extension("svg");
    std::fs::write(&svg, ramp_chart(runs).to_svg())?;
    eprintln!(
        "tap: ramp figures in {} and {}",
        path.display(),
        svg.display()
    );
    Ok(())
}

/// Captured publish events per second while publishing, against the offered rate; the
/// diagonal is lossless real-time capture.
fn ramp_chart(runs: &[Run]) -> crate::chart::Chart {
    let summaries = by_rate_and_side(runs);
    let mut series: Vec<crate::chart::Series> = Vec::new();
    for ((rate, side), s) in &summaries {
        let point = (
            f64::from(*rate),
            s.published_per_sec * s.completeness_at_stop,
        );
        match series.iter_mut().find(|x| x.name == side.name()) {
            Some(x) => x.points.push(point),
            None => series.push(crate::chart::Series {
                name: side.name().to_owned(),
                points: vec![point],
            }),
        }
    }
    crate::chart::Chart {
        title: "Firehose capture while publishing (1 KB persistent messages)".into(),
        x_label: "offered msg/s".into(),
        y_label: "publish events captured per s".into(),
        series,
        diagonal: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(side: Side, rate: u32, published: u64, captured: u64) -> Run {
        Run {
            side,
            rate,
            published,
            published_per_sec: rate as f64,
            captured_at_stop: captured,
            captured,
            catch_up_secs: 0.0,
            broker_cores: 1.0,
            side_cores: None,
        }
    }

    #[test]
    fn the_lossless_rate_is_the_last_rate_before_any_loss() {
        let runs = [
            run(Side::Plugin, 2000, 100, 100),
            run(Side::Plugin, 2000, 100, 100),
            run(Side::Plugin, 5000, 100, 99),
            run(Side::Plugin, 10000, 100, 100),
            run(Side::Flowscope, 2000, 100, 100),
            run(Side::Flowscope, 5000, 100, 100),
        ];
        assert_eq!(lossless_rate(&runs, Side::Plugin), Some(2000));
        assert_eq!(lossless_rate(&runs, Side::Flowscope), Some(5000));
        assert_eq!(lossless_rate(&runs, Side::Null), None);
        let lossy = [run(Side::Plugin, 2000, 100, 50)];
        assert_eq!(lossless_rate(&lossy, Side::Plugin), None);
    }
}
