//! Measuring a process over a window, and the A/B alternation with medians and ratios.
//!
//! CPU is `utime + stime` from `/proc/<pid>/stat` (plus the children it waited for), in
//! clock ticks of 1/100 s (`getconf CLK_TCK` is 100 on Linux); memory is `VmRSS` from
//! `/proc/<pid>/status`. A [`Window`] reads both at its start and end, and samples RSS in
//! between for the peak.

use std::time::{Duration, Instant};

use anyhow::Context;

/// Clock ticks per second of `/proc/<pid>/stat` times (`USER_HZ`; 100 on every Linux this runs on).
pub const TICKS_PER_SEC: f64 = 100.0;

/// CPU seconds (user + system) a process has used so far.
pub fn cpu_secs(pid: u32) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat; did the process exit?"))?;
    // The command name (field 2) is in parentheses and may hold spaces: split after it.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("malformed /proc/<pid>/stat")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let ticks = |i: usize| -> anyhow::Result<f64> {
        Ok(fields
            .get(i)
            .context("short /proc/<pid>/stat")?
            .parse::<u64>()? as f64)
    };
    Ok((ticks(11)? + ticks(12)?) / TICKS_PER_SEC)
}

/// Resident memory of a process in bytes (`VmRSS`).
pub fn rss_bytes(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status; did the process exit?"))?;
    let line = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .context("no VmRSS in /proc/<pid>/status")?;
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .context("malformed VmRSS line")?
        .parse()?;
    Ok(kib * 1024)
}

/// What one process used over a measured window.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Usage {
    pub cpu_secs: f64,
    pub wall_secs: f64,
    /// Largest RSS sampled in the window.
    pub peak_rss_bytes: u64,
    /// RSS at the end of the window.
    pub end_rss_bytes: u64,
}

/// A measured window over one process: [`Window::start`], then [`Window::sample`] now and
/// then (for the peak RSS), then [`Window::finish`].
#[derive(Debug)]
pub struct Window {
    pid: u32,
    started: Instant,
    cpu_at_start: f64,
    peak_rss: u64,
}

impl Window {
    pub fn start(pid: u32) -> anyhow::Result<Self> {
        Ok(Self {
            pid,
            started: Instant::now(),
            cpu_at_start: cpu_secs(pid)?,
            peak_rss: rss_bytes(pid)?,
        })
    }

    pub fn sample(&mut self) -> anyhow::Result<()> {
        self.peak_rss = self.peak_rss.max(rss_bytes(self.pid)?);
        Ok(())
    }

    pub fn finish(mut self) -> anyhow::Result<Usage> {
        self.sample()?;
        Ok(Usage {
            cpu_secs: cpu_secs(self.pid)? - self.cpu_at_start,
            wall_secs: self.started.elapsed().as_secs_f64(),
            peak_rss_bytes: self.peak_rss,
            end_rss_bytes: rss_bytes(self.pid)?,
        })
    }
}

/// Samples a window every `every` until `until` returns true or `limit` passes.
pub async fn sample_until(
    window: &mut Window,
    every: Duration,
    limit: Duration,
    mut until: impl FnMut() -> bool,
) -> anyhow::Result<bool> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if until() {
            return Ok(true);
        }
        window.sample()?;
        tokio::time::sleep(every).await;
    }
    Ok(until())
}

/// The median of some figures (the mean of the middle two for an even count); NaN when empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    } else {
        sorted[mid]
    }
}

/// The `q`-quantile (0..=1) by nearest rank; NaN when empty.
pub fn quantile(values: &[f64], q: f64) -> f64 {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// How the ratio (ours ÷ the peer's) spread over the rounds of an alternation,
/// each round's run of ours set against the peer's run of the same round (just
/// before it when alternating, beside it with `--together`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RoundRatios {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Σ ours ÷ Σ the peer's: every round weighed by its size.
    pub summed: f64,
}

impl RoundRatios {
    /// Pairs `peer[i]` with `ours[i]`; rounds where the peer's figure is 0 or
    /// either is missing are left out. `None` when no round is left.
    pub fn of(peer: &[f64], ours: &[f64]) -> Option<Self> {
        let pairs: Vec<(f64, f64)> = peer
            .iter()
            .zip(ours)
            .map(|(p, o)| (*p, *o))
            .filter(|(p, o)| *p > 0.0 && p.is_finite() && o.is_finite())
            .collect();
        if pairs.is_empty() {
            return None;
        }
        let ratios: Vec<f64> = pairs.iter().map(|(p, o)| o / p).collect();
        let (sum_peer, sum_ours) = pairs
            .iter()
            .fold((0.0, 0.0), |(sp, so), (p, o)| (sp + p, so + o));
        Some(RoundRatios {
            median: median(&ratios),
            min: ratios.iter().copied().fold(f64::INFINITY, f64::min),
            max: ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            summed: sum_ours / sum_peer,
        })
    }
}

impl std::fmt::Display for RoundRatios {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "round by round {:.2}× (median), {:.2}–{:.2}×; summed {:.2}×",
            self.median, self.min, self.max, self.summed
        )
    }
}

/// Runs `a` and `b` alternately (A B A B …), `repeats` times each, and returns their results
/// in run order. Alternation spreads slow drifts of the machine (other load, caches, thermal)
/// over both sides instead of favouring one.
pub async fn alternate<T, FA, FB, FutA, FutB>(
    repeats: usize,
    mut a: FA,
    mut b: FB,
) -> anyhow::Result<(Vec<T>, Vec<T>)>
where
    FA: FnMut(usize) -> FutA,
    FB: FnMut(usize) -> FutB,
    FutA: std::future::Future<Output = anyhow::Result<T>>,
    FutB: std::future::Future<Output = anyhow::Result<T>>,
{
    let (mut ra, mut rb) = (Vec::new(), Vec::new());
    for round in 0..repeats {
        ra.push(
            a(round)
                .await
                .with_context(|| format!("side A, round {}", round + 1))?,
        );
        rb.push(
            b(round)
                .await
                .with_context(|| format!("side B, round {}", round + 1))?,
        );
    }
    Ok((ra, rb))
}

/// One row of a result table: a figure for the peer and for flowscope, and their ratio.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub benchmark: String,
    pub metric: String,
    pub unit: String,
    pub peer: Option<f64>,
    pub flowscope: f64,
    /// The goal in words, e.g. "≤ 0.8× rotel".
    pub goal: String,
}

impl Row {
    /// flowscope ÷ peer, when there is a peer figure.
    pub fn ratio(&self) -> Option<f64> {
        self.peer.filter(|p| *p != 0.0).map(|p| self.flowscope / p)
    }
}

/// Prints rows as a Markdown table (pasteable into docs/benchmarks.md), and as JSON lines
/// to `FLOWSCOPE_BENCH_JSON` when that names a file (appended).
pub fn print_rows(rows: &[Row]) -> anyhow::Result<()> {
    println!("| benchmark | metric | peer | flowscope | ratio | goal |");
    println!("|---|---|---|---|---|---|");
    for row in rows {
        let peer = row
            .peer
            .map(|p| format!("{} {}", fmt(p), row.unit))
            .unwrap_or_else(|| "—".into());
        let ratio = row
            .ratio()
            .map(|r| format!("{r:.2}×"))
            .unwrap_or_else(|| "—".into());
        println!(
            "| {} | {} | {} | {} {} | {} | {} |",
            row.benchmark,
            row.metric,
            peer,
            fmt(row.flowscope),
            row.unit,
            ratio,
            row.goal
        );
    }
    if let Ok(path) = std::env::var("FLOWSCOPE_BENCH_JSON") {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("opening {path}"))?;
        for row in rows {
            writeln!(file, "{}", serde_json::to_string(row)?)?;
        }
    }
    Ok(())
}

/// A figure with about three significant digits.
pub fn fmt(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_ratios_pair_each_round_and_skip_empty_ones() {
        // Three rounds: 0.5, 1.0 and 2.0; a fourth with no peer figure is left out.
        let r = RoundRatios::of(&[2.0, 1.0, 1.0, 0.0], &[1.0, 1.0, 2.0, 5.0]).unwrap();
        assert_eq!(r.median, 1.0);
        assert_eq!((r.min, r.max), (0.5, 2.0));
        assert_eq!(r.summed, 1.0); // 4 ÷ 4
        assert_eq!(
            r.to_string(),
            "round by round 1.00× (median), 0.50–2.00×; summed 1.00×"
        );
        assert_eq!(RoundRatios::of(&[0.0], &[1.0]), None);
        assert_eq!(RoundRatios::of(&[], &[]), None);
    }

    #[test]
    fn median_and_quantiles_of_small_sets() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(&[]).is_nan());
        let values: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&values, 0.5), 50.0);
        assert_eq!(quantile(&values, 0.99), 99.0);
        assert_eq!(quantile(&values, 1.0), 100.0);
    }

    #[test]
    fn this_process_uses_cpu_and_memory() {
        let pid = std::process::id();
        let before = cpu_secs(pid).unwrap();
        let mut x = 0u64;
        let start = Instant::now();
        while start.elapsed() < Duration::from_millis(300) {
            x = x.wrapping_mul(31).wrapping_add(7);
        }
        assert!(x != 1);
        assert!(cpu_secs(pid).unwrap() > before);
        assert!(rss_bytes(pid).unwrap() > 1 << 20);
    }
}
