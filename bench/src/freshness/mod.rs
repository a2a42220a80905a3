//! `flowscope-bench freshness`: from a publish to the new queue depth visible in the browser,
//! flowscope's queue page vs the RabbitMQ management UI's queue page.
//!
//! One headless Chromium (see [`browser`]) watches the `ready` count of a queue without
//! consumers. Each sample: read the value shown, note the wall time, publish one persistent
//! message (publisher confirms), then wait until the page shows a larger value; the latency is
//! the page's timestamp of that DOM change minus the publish time. A random pause (0.2–1.2 s)
//! between samples keeps them out of step with every periodic timer on the way. Blocks of
//! samples alternate between flowscope and the management UI (A B A B, `--repeats` rounds).
//! The management UI runs with its defaults as a user sees them: statistics every 5 s and a
//! page refresh every 5 s.

pub mod browser;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::bail;
use lapin::BasicProperties;
use lapin::types::FieldTable;
use rand::Rng;

use crate::measure::{Row, print_rows, quantile};
use crate::rabbit::flowscope::serve;
use crate::rabbit::publish::{PacedPublisher, declare_queue};
use crate::rabbit::{BenchNode, encode};
use browser::{Browser, FLOWSCOPE_READER, MANAGEMENT_READER};

/// The vhost the benchmark creates afresh.
const VHOST: &str = "bench-fresh";
/// The queue watched: no consumer, one message more per sample.
const QUEUE: &str = "bench.fresh";

/// Options of `flowscope-bench freshness`.
#[derive(Debug, Clone, clap::Args)]
pub struct FreshnessArgs {
    /// Samples per side in all (split over the rounds).
    #[arg(long, default_value_t = 30)]
    pub samples: usize,
    /// Where flowscope serve listens.
    #[arg(long, default_value = "127.0.0.1:18080")]
    pub listen: SocketAddr,
    /// The flowscope binary (default: `flowscope` beside this executable).
    #[arg(long)]
    pub flowscope_bin: Option<PathBuf>,
    /// Leave the private RabbitMQ node running at the end.
    #[arg(long)]
    pub keep_node: bool,
}

/// Which page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Page {
    Flowscope,
    Management,
}

impl Page {
    /// How long one sample may take at most.
    fn limit(self) -> Duration {
        match self {
            Page::Flowscope => Duration::from_secs(15),
            Page::Management => Duration::from_secs(30),
        }
    }
}

/// Runs the benchmark and prints p50/p99 of both sides.
pub async fn run(args: FreshnessArgs, repeats: usize, repo: &Path) -> anyhow::Result<()> {
    let bin = args
        .flowscope_bin
        .clone()
        .unwrap_or_else(|| crate::rabbit::flowscope::default_bin(repo));
    if !repo.join("dist/index.html").exists() {
        bail!("the UI is not built: run scripts/build-ui first (dist/index.html is missing)");
    }
    let node = BenchNode::start(repo).await?;
    let result = run_with_node(&args, repeats, &node, &bin).await;
    node.mgmt
        .delete(&format!("vhosts/{}", encode(VHOST)))
        .await
        .ok();
    node.finish(args.keep_node).await?;
    let (ours, theirs) = result?;
    report(&ours, &theirs)
}

async fn run_with_node(
    args: &FreshnessArgs,
    repeats: usize,
    node: &BenchNode,
    bin: &Path,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    node.mgmt.fresh_vhost(VHOST).await?;
    let publisher =
        PacedPublisher::connect(&node.vhost_url(VHOST), "bench-fresh-publisher").await?;
    declare_queue(publisher.channel(), QUEUE, FieldTable::default()).await?;
    let dir = std::env::temp_dir().join(format!("flowscope-bench-fresh-{}", std::process::id()));
    let flowscope = serve(bin, node, VHOST, args.listen, &dir, &[]).await?;
    let browser = Browser::start().await;
    let result = match browser {
        Ok(browser) => {
            let result = sample_all(args, repeats, node, &publisher, &browser).await;
            browser.close().await;
            result
        }
        Err(err) => Err(err),
    };
    flowscope.stop().await?;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn sample_all(
    args: &FreshnessArgs,
    repeats: usize,
    node: &BenchNode,
    publisher: &PacedPublisher,
    browser: &Browser,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    browser.login_management(&node.mgmt.base).await?;
    let flowscope_url = format!("http://{}/queues/{}/{QUEUE}", args.listen, encode(VHOST));
    let management_url = format!("{}/#/queues/{}/{QUEUE}", node.mgmt.base, encode(VHOST));
    // Warm-up: flowscope learns the publisher's connection (the management API lists it
    // within ~5 s) and the queue; neither is part of the measure.
    browser
        .watch(&flowscope_url, FLOWSCOPE_READER, Duration::from_secs(30))
        .await?;
    sample(browser, publisher, Page::Flowscope, 1).await?;
    let per_round = args.samples.div_ceil(repeats.max(1));
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..repeats.max(1) {
        browser
            .watch(&flowscope_url, FLOWSCOPE_READER, Duration::from_secs(30))
            .await?;
        ours.extend(sample(browser, publisher, Page::Flowscope, per_round).await?);
        browser
            .watch(&management_url, MANAGEMENT_READER, Duration::from_secs(30))
            .await?;
        theirs.extend(sample(browser, publisher, Page::Management, per_round).await?);
        eprintln!(
            "freshness: round {} done (flowscope {} samples, management UI {})",
            round + 1,
            ours.len(),
            theirs.len()
        );
    }
    Ok((ours, theirs))
}

/// `n` samples on the page being watched; latencies in milliseconds.
async fn sample(
    browser: &Browser,
    publisher: &PacedPublisher,
    page: Page,
    n: usize,
) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let shown = match browser.last().await? {
            Some(v) => v,
            None => bail!("{page:?}: the page shows no value"),
        };
        let published_ms = wall_ms();
        publisher
            .publish_confirmed(QUEUE, b"freshness probe", BasicProperties::default())
            .await?;
        let deadline = Instant::now() + page.limit();
        let seen = loop {
            if let Some(at) = browser.seen_at(shown + 1).await? {
                break at;
            }
            if Instant::now() > deadline {
                bail!(
                    "{page:?}: sample {}: {} not shown within {:?}",
                    i + 1,
                    shown + 1,
                    page.limit()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let latency = seen - published_ms;
        eprintln!("freshness: {page:?} sample {}: {latency:.0} ms", i + 1);
        latencies.push(latency);
        let pause = rand::rng().random_range(200..1200);
        tokio::time::sleep(Duration::from_millis(pause)).await;
    }
    Ok(latencies)
}

fn wall_ms() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs_f64()
        * 1000.0
}

fn report(ours: &[f64], theirs: &[f64]) -> anyhow::Result<()> {
    let p = |v: &[f64], q: f64| quantile(v, q);
    println!(
        "\n### Freshness: publish → value in the browser ({} samples flowscope, {} management UI)\n",
        ours.len(),
        theirs.len()
    );
    let rows = [
        Row {
            benchmark: "freshness (queue page)".into(),
            metric: "p50".into(),
            unit: "ms".into(),
            peer: Some(p(theirs, 0.5)),
            flowscope: p(ours, 0.5),
            goal: "≤ 250 ms; ≥ 20× fresher (ratio ≤ 0.05×)".into(),
        },
        Row {
            benchmark: "freshness (queue page)".into(),
            metric: "p99".into(),
            unit: "ms".into(),
            peer: Some(p(theirs, 0.99)),
            flowscope: p(ours, 0.99),
            goal: "≤ 1000 ms".into(),
        },
        Row {
            benchmark: "freshness (queue page)".into(),
            metric: "min / max".into(),
            unit: "ms".into(),
            peer: Some(theirs.iter().copied().fold(f64::NAN, f64::max)),
            flowscope: ours.iter().copied().fold(f64::NAN, f64::max),
            goal: format!(
                "min: flowscope {:.0} ms, management UI {:.0} ms (max shown)",
                ours.iter().copied().fold(f64::NAN, f64::min),
                theirs.iter().copied().fold(f64::NAN, f64::min)
            ),
        },
    ];
    print_rows(&rows)?;
    let (p50, p99) = (p(ours, 0.5), p(ours, 0.99));
    let fresher = p(theirs, 0.5) / p50;
    println!(
        "\ngoals: p50 {p50:.0} ms ≤ 250 ms: {}; p99 {p99:.0} ms ≤ 1000 ms: {}; {fresher:.1}× fresher than the management UI (p50) ≥ 20×: {}",
        yes(p50 <= 250.0),
        yes(p99 <= 1000.0),
        yes(fresher >= 20.0)
    );
    Ok(())
}

fn yes(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}
