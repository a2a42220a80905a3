//! Exponential backoff for reconnecting to a broker that went away.

use std::time::{Duration, Instant};

/// First wait after a failure.
pub const MIN_BACKOFF: Duration = Duration::from_millis(500);
/// Longest wait between attempts: a struggling broker is not hammered.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A session that lasted this long resets the backoff.
const STABLE: Duration = Duration::from_secs(30);

/// Doubling waits between attempts, reset after a long enough success.
#[derive(Debug)]
pub struct Backoff {
    next: Duration,
    started: Instant,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            next: MIN_BACKOFF,
            started: Instant::now(),
        }
    }
}

impl Backoff {
    /// Marks the start of an attempt.
    pub fn attempt(&mut self) {
        self.started = Instant::now();
    }

    /// The wait before the next attempt, after one that just failed.
    pub fn failed(&mut self) -> Duration {
        if self.started.elapsed() > STABLE {
            self.next = MIN_BACKOFF;
        }
        let wait = self.next;
        self.next = (self.next * 2).min(MAX_BACKOFF);
        wait
    }
}
