//! Where the CPU of one span goes, stage by stage, in this process (no
//! network, no runtime): reading the OTLP request, correlating its spans,
//! judging the changed flows, and the 500 ms tick with its eviction at the
//! live-flow bound. Complements the end-to-end `otlp` figures, which
//! include the gRPC transport.

use std::time::{Duration, Instant};

use flowscope_collectors::otlp::spans_from_protobuf;
use flowscope_server::correlator::Correlator;
use flowscope_server::correlator::config::{CorrelationConfig, KeyRule};

use super::payload::{Payload, Template};

/// `flowscope-bench otlp-stages`.
#[derive(Debug, clap::Args)]
pub struct StagesArgs {
    /// Payloads to measure.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "tiny,messaging"
    )]
    pub payload: Vec<Payload>,
    /// Requests (of 100 spans) per payload; each carries new trace and order ids.
    #[arg(long, default_value_t = 3_000)]
    pub requests: u64,
}

/// CPU time per span of each stage.
#[derive(Debug, Default)]
struct Stages {
    read: Duration,
    ingest: Duration,
    judge: Duration,
    tick: Duration,
    spans: u64,
    /// One tick with no traffic (the live flows of the end, none due).
    idle_tick: Duration,
    /// Resident memory gained while the live flows were made.
    rss_gained: u64,
}

impl Stages {
    fn per_span(&self, d: Duration) -> f64 {
        d.as_secs_f64() * 1e6 / self.spans as f64
    }
}

/// Runs each payload through the stages as the server does (a take of the
/// changes every 10 requests, that is every 100 ms at 10k spans/s; a tick
/// every 50), and prints µs per span; then what a tick costs once the
/// traffic stops, and the resident memory each live flow costs (measure
/// one payload per run for that: memory freed by the first payload's
/// flows stays with the allocator for the next).
pub fn run(args: StagesArgs) -> anyhow::Result<()> {
    println!(
        "| payload | read µs/span | correlate µs/span | judge µs/span | tick µs/span | total µs/span | live flows at end | idle tick ms | RSS per live flow |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for payload in &args.payload {
        let (stages, num_flows) = measure(*payload, args.requests)?;
        let total = stages.read + stages.ingest + stages.judge + stages.tick;
        println!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {num_flows} | {:.3} | {:.1} KB |",
            payload.letter(),
            stages.per_span(stages.read),
            stages.per_span(stages.ingest),
            stages.per_span(stages.judge),
            stages.per_span(stages.tick),
            stages.per_span(total),
            stages.idle_tick.as_secs_f64() * 1e3,
            stages.rss_gained as f64 / 1e3 / num_flows.max(1) as f64,
        );
    }
    Ok(())
}

fn measure(payload: Payload, requests: u64) -> anyhow::Result<(Stages, usize)> {
    let now = flowscope_model::now_unix_us();
    let template = Template::new(payload, now as u64 * 1_000);
    let mut correlator = Correlator::new(CorrelationConfig {
        keys: vec![KeyRule {
            name: "order_id".into(),
            from: "attribute:shop.order_id".into(),
        }],
        ..CorrelationConfig::default()
    })
    .map_err(anyhow::Error::msg)?;
    let mut stages = Stages::default();
    let rss_before = crate::measure::rss_bytes(std::process::id())?;
    for seq in 0..requests {
        // Simulated time: 100 ms per 10 requests, as at 10k spans/s.
        let at = now + seq as i64 * 10_000;
        let request = template.stamp(seq, at as u64 * 1_000);
        let started = Instant::now();
        let observations = spans_from_protobuf(&request, at)?;
        stages.read += started.elapsed();
        stages.spans += observations.len() as u64;

        let started = Instant::now();
        for observation in observations {
            correlator.ingest(observation);
        }
        stages.ingest += started.elapsed();

        if seq % 10 == 9 {
            let started = Instant::now();
            std::hint::black_box(correlator.take_summaries(at));
            stages.judge += started.elapsed();
        }
        if seq % 50 == 49 {
            let started = Instant::now();
            correlator.tick(at);
            stages.tick += started.elapsed();
        }
    }
    // Then the traffic stops: ticks every 500 ms for 5 s (before any flow
    // has been quiet for the 10 s that completes it).
    let last = now + requests as i64 * 10_000;
    let started = Instant::now();
    for i in 1..=IDLE_TICKS {
        correlator.tick(last + i * 500_000);
    }
    stages.idle_tick = started.elapsed() / IDLE_TICKS as u32;
    stages.rss_gained = crate::measure::rss_bytes(std::process::id())?.saturating_sub(rss_before);
    Ok((stages, correlator.num_flows()))
}

/// Ticks timed after the traffic stops.
const IDLE_TICKS: i64 = 10;
