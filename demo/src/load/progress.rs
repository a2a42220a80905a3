//! The load generator's progress line on stderr.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use super::{LoadSummary, Placer};

/// The progress line: rewritten in place on a terminal, every 10 s otherwise.
pub(super) struct Progress {
    /// The target rate, orders per second.
    pub(super) rate: f64,
    /// How long the run lasts, when it is bounded.
    duration: Option<Duration>,
    tty: bool,
    last: Option<Instant>,
}

impl Progress {
    pub(super) fn new(rate: f64, duration: Option<Duration>) -> Self {
        Self {
            rate,
            duration,
            tty: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    pub(super) fn show(&mut self, elapsed: Duration, placer: &Placer) {
        let every = if self.tty {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(10)
        };
        if self.last.is_some_and(|t| t.elapsed() < every) {
            return;
        }
        self.last = Some(Instant::now());
        let s = placer.summary();
        let left = self
            .duration
            .map(|d| format!(", {}s left", d.saturating_sub(elapsed).as_secs()))
            .unwrap_or_default();
        let line = format!(
            "load: {} orders placed, {} failed, {:.1}/s (target {:.1}/s){left}",
            s.num_placed,
            s.num_failed,
            s.num_placed as f64 / elapsed.as_secs_f64().max(0.001),
            self.rate,
        );
        let mut err = std::io::stderr();
        if self.tty {
            let _ = write!(err, "\r{line}\x1b[K");
        } else {
            let _ = writeln!(err, "{line}");
        }
        let _ = err.flush();
    }

    pub(super) fn finish(&self, elapsed: Duration, s: LoadSummary) {
        if self.tty {
            eprintln!();
        }
        eprintln!(
            "load: done after {:.0}s: {} placed, {} failed, {} skipped (order API too slow)",
            elapsed.as_secs_f64(),
            s.num_placed,
            s.num_failed,
            s.num_skipped
        );
    }
}
