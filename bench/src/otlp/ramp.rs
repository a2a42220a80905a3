//! The ramps: the offered rate stepped up until a receiver loses spans.
//!
//! A step is **lossless** when the generator kept its schedule (offered ≥ 95 %
//! of the target), every request was accepted, and — for flowscope — its
//! `/metrics` counted every span as received and none as dropped. A ramp stops
//! after two lossy steps in a row.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use crate::chart::Series;
use crate::measure::Row;

use super::generator::{self, Client, Load, LoadReport, Transport};
use super::payload::{Payload, Template};
use super::receiver::{Receiver, Side, Storage};
use super::{OtlpArgs, now_unix_nanos, settled_counters};

/// The share of the target rate the generator must reach for a step to count.
pub const MIN_OFFERED_SHARE: f64 = 0.95;
/// Lossy steps in a row that end a ramp.
const LOSSY_STEPS_TO_STOP: usize = 2;

/// One step of a ramp.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    pub target: f64,
    pub report: LoadReport,
    /// flowscope: spans counted as received during the step.
    pub received: u64,
    pub lossless: bool,
}

impl Step {
    /// Spans accepted per second (for flowscope, counted by flowscope itself).
    pub fn accepted_per_sec(&self, side: Side) -> f64 {
        let accepted = match side {
            Side::Rotel => self.report.spans_ok,
            Side::Flowscope => self.received,
        };
        accepted as f64 / self.report.elapsed_secs.max(1e-9)
    }
}

/// Whether a step lost nothing.
pub fn is_lossless(
    side: Side,
    target: f64,
    report: &LoadReport,
    received: u64,
    dropped: u64,
) -> bool {
    let kept_schedule = report.offered_spans_per_sec >= MIN_OFFERED_SHARE * target;
    let all_accepted = report.num_refused == 0 && report.num_requests > 0;
    let counted = match side {
        Side::Rotel => true,
        Side::Flowscope => received == report.spans_sent && dropped == 0,
    };
    kept_schedule && all_accepted && counted
}

/// The highest target of a lossless step (0 when none was).
pub fn highest_lossless(steps: &[Step]) -> f64 {
    steps
        .iter()
        .filter(|s| s.lossless)
        .map(|s| s.target)
        .fold(0.0, f64::max)
}

/// Ramps one receiver (started fresh) through `args.ramp`.
async fn ramp(
    args: &OtlpArgs,
    receiver: &Receiver,
    template: &Arc<Template>,
    transport: Transport,
) -> anyhow::Result<Vec<Step>> {
    let addr = match transport {
        Transport::Grpc => receiver.grpc,
        Transport::Http => receiver.http,
    };
    let client = Client::connect(transport, addr).await?;
    let mut steps = Vec::new();
    let mut lossy_in_a_row = 0;
    let mut next_seq = 0;
    for &target in &args.ramp {
        let before = receiver.counters().await?;
        let load = Load {
            spans_per_sec: target,
            duration: Duration::from_secs(args.ramp_secs),
            max_in_flight: generator::DEFAULT_MAX_IN_FLIGHT,
            first_seq: next_seq,
        };
        let report = generator::run(&client, template, load).await?;
        next_seq += report.num_requests;
        let after = settled_counters(receiver).await?;
        let (received, dropped) = (
            after.received - before.received,
            after.dropped - before.dropped,
        );
        let lossless = is_lossless(receiver.side, target, &report, received, dropped);
        eprintln!(
            "  {} ramp {target:.0}/s: offered {:.0}/s, {} of {} spans accepted, flowscope received {received} dropped {dropped}: {}",
            receiver.side.name(),
            report.offered_spans_per_sec,
            report.spans_ok,
            report.spans_sent,
            if lossless { "lossless" } else { "LOSSY" }
        );
        steps.push(Step {
            target,
            report,
            received,
            lossless,
        });
        lossy_in_a_row = if lossless { 0 } else { lossy_in_a_row + 1 };
        if lossy_in_a_row >= LOSSY_STEPS_TO_STOP {
            break;
        }
        // Let a backlog drain before the next step.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(steps)
}

fn series(name: String, side: Side, steps: &[Step]) -> Series {
    Series {
        name,
        points: steps
            .iter()
            .map(|s| (s.report.offered_spans_per_sec, s.accepted_per_sec(side)))
            .collect(),
    }
}

/// rotel and flowscope (storage off), one core each, every payload.
pub async fn pinned(
    args: &OtlpArgs,
    transport: Transport,
) -> anyhow::Result<(Vec<Row>, Vec<Series>)> {
    let (mut rows, mut lines) = (Vec::new(), Vec::new());
    for &payload in &args.payload {
        let template = Arc::new(Template::new(payload, now_unix_nanos()));
        let mut best = [0.0; 2];
        for (i, side) in [Side::Rotel, Side::Flowscope].into_iter().enumerate() {
            let mut receiver =
                Receiver::start(&args.spec(side, Storage::Off, true), 100 + i).await?;
            let steps = ramp(args, &receiver, &template, transport).await?;
            receiver.stop().await?;
            best[i] = highest_lossless(&steps);
            lines.push(series(
                format!("{} {} (1 core)", side.name(), payload.letter()),
                side,
                &steps,
            ));
        }
        rows.push(Row {
            benchmark: format!(
                "OTLP {} {} ramp, 1 core each",
                payload.letter(),
                transport.name()
            ),
            metric: "highest lossless rate".into(),
            unit: "spans/s".into(),
            peer: Some(best[0]),
            flowscope: best[1],
            goal: "—".into(),
        });
    }
    Ok((rows, lines))
}

/// flowscope with its SQLite store, both cores, payload B (or the first
/// payload asked for): every accepted span must be stored.
pub async fn persisted(
    args: &OtlpArgs,
    transport: Transport,
) -> anyhow::Result<(Vec<Row>, Vec<Series>)> {
    let payload = if args.payload.contains(&Payload::Messaging) {
        Payload::Messaging
    } else {
        args.payload.first().copied().unwrap_or(Payload::Messaging)
    };
    let template = Arc::new(Template::new(payload, now_unix_nanos()));
    let mut receiver =
        Receiver::start(&args.spec(Side::Flowscope, Storage::Sqlite, false), 200).await?;
    let steps = ramp(args, &receiver, &template, transport).await?;
    receiver.stop().await?;
    let accepted: u64 = steps.iter().map(|s| s.received).sum();
    let (stored, flows) = stored_rows(&receiver.dir().join("data/flowscope.db")).await?;
    let best = if stored == accepted as i64 {
        highest_lossless(&steps)
    } else {
        0.0
    };
    eprintln!(
        "  flowscope + SQLite: {accepted} spans accepted, {stored} stored, {flows} flows; highest lossless {best:.0}/s"
    );
    let row = Row {
        benchmark: format!(
            "OTLP {} {} ramp, flowscope + SQLite, 2 cores",
            payload.letter(),
            transport.name()
        ),
        metric: "highest lossless rate, all stored".into(),
        unit: "spans/s".into(),
        peer: None,
        flowscope: best,
        goal: "≥ 60000".into(),
    };
    let line = series(
        format!("flowscope {} + SQLite (2 cores)", payload.letter()),
        Side::Flowscope,
        &steps,
    );
    Ok((vec![row], vec![line]))
}

/// Observations and flows in a stopped flowscope's SQLite file, counted by
/// the store itself (its layout packs observations into blocks).
async fn stored_rows(path: &Path) -> anyhow::Result<(i64, i64)> {
    let store = flowscope_server::store::Store::open(&flowscope_server::store::StoreConfig {
        url: format!("sqlite://{}", path.display()),
        ..Default::default()
    })
    .await?;
    let stats = store.stats().await;
    store.close().await;
    let stats = stats?;
    Ok((stats.num_observations as i64, stats.num_flows as i64))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(sent: u64, ok: u64, offered: f64) -> LoadReport {
        LoadReport {
            num_requests: sent / 100,
            num_ok: ok / 100,
            num_refused: (sent - ok) / 100,
            spans_sent: sent,
            spans_ok: ok,
            elapsed_secs: 5.0,
            offered_spans_per_sec: offered,
            accepted_spans_per_sec: ok as f64 / 5.0,
        }
    }

    #[test]
    fn a_step_is_lossless_only_when_all_is_sent_accepted_and_counted() {
        let full = report(50_000, 50_000, 10_000.0);
        assert!(is_lossless(Side::Rotel, 10_000.0, &full, 0, 0));
        assert!(is_lossless(Side::Flowscope, 10_000.0, &full, 50_000, 0));
        // flowscope counted fewer than were sent, or dropped some.
        assert!(!is_lossless(Side::Flowscope, 10_000.0, &full, 49_900, 0));
        assert!(!is_lossless(Side::Flowscope, 10_000.0, &full, 50_000, 100));
        // A refused request, or a generator behind its schedule.
        assert!(!is_lossless(
            Side::Rotel,
            10_000.0,
            &report(50_000, 49_900, 10_000.0),
            0,
            0
        ));
        assert!(!is_lossless(
            Side::Rotel,
            10_000.0,
            &report(50_000, 50_000, 9_000.0),
            0,
            0
        ));
    }

    #[test]
    fn the_highest_lossless_step_counts_even_after_a_lossy_one() {
        let step = |target: f64, lossless| Step {
            target,
            report: report(1, 1, target),
            received: 0,
            lossless,
        };
        let steps = [
            step(10e3, true),
            step(20e3, false),
            step(40e3, true),
            step(60e3, false),
        ];
        assert_eq!(highest_lossless(&steps), 40e3);
        assert_eq!(highest_lossless(&[]), 0.0);
    }
}
