//! What the alert rules on flows count among the live flows, kept as flows
//! are judged and leave (no pass over the live flows to count them).

use std::collections::BTreeSet;

use flowscope_model::FlowStatus;

use super::flow_id::FlowId;

/// The live flows the alert rules on flows count ([`Correlator::tick_with_stats`](super::Correlator::tick_with_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// Stuck now.
    pub stuck: u64,
    /// Finished (completed, compensated, failed …) within the window.
    pub finished: u64,
    /// Of those, failed.
    pub failed: u64,
}

/// The live flows by what the counts need of them, as of their last judgement.
#[derive(Debug)]
pub(super) struct Tally {
    stuck: u64,
    /// Finished flows: when they ended, and whether they failed.
    finished: BTreeSet<(i64, FlowId, bool)>,
    /// The `since` of the last count, and how many of `finished` (of which
    /// failed) ended after it, kept as flows come and go: the next count
    /// walks only the flows that crossed from one side to the other since
    /// (at a tick, the few whose end left the window), not all of them.
    since: i64,
    after: (u64, u64),
}

impl Default for Tally {
    fn default() -> Self {
        Self {
            stuck: 0,
            finished: BTreeSet::new(),
            since: i64::MIN,
            after: (0, 0),
        }
    }
}

impl Tally {
    /// Counts a flow judged so (`sign` 1), or takes back what it was
    /// judged before (-1): a flow never judged (`None`) counts nowhere.
    pub(super) fn add(&mut self, id: FlowId, judged: Option<(FlowStatus, Option<i64>)>, sign: i8) {
        let Some((status, ended)) = judged else {
            return;
        };
        match (status, ended) {
            (FlowStatus::Stuck, _) if sign > 0 => self.stuck += 1,
            (FlowStatus::Stuck, _) => self.stuck = self.stuck.saturating_sub(1),
            (status, Some(ended)) => {
                let failed = status == FlowStatus::Failed;
                let entry = (ended, id, failed);
                let changed = if sign > 0 {
                    self.finished.insert(entry)
                } else {
                    self.finished.remove(&entry)
                };
                if changed && ended > self.since {
                    self.count_after(failed, sign > 0);
                }
            }
            _ => {}
        }
    }

    fn count_after(&mut self, failed: bool, add: bool) {
        let (finished, failed_n) = &mut self.after;
        if add {
            *finished += 1;
            *failed_n += u64::from(failed);
        } else {
            *finished = finished.saturating_sub(1);
            *failed_n = failed_n.saturating_sub(u64::from(failed));
        }
    }

    /// The counts, finished flows being those that ended after `since`.
    pub(super) fn stats(&mut self, since: i64) -> FlowStats {
        // The flows that ended between the two `since`s crossed sides.
        let (low, high, add) = if since >= self.since {
            (self.since, since, false)
        } else {
            (since, self.since, true)
        };
        if low < high {
            let (mut n, mut failed_n) = (0u64, 0u64);
            for (_, _, failed) in self
                .finished
                .range((low + 1, FlowId::default(), false)..=(high, FlowId::MAX, true))
            {
                n += 1;
                failed_n += u64::from(*failed);
            }
            let (finished, failed) = &mut self.after;
            if add {
                *finished += n;
                *failed += failed_n;
            } else {
                *finished = finished.saturating_sub(n);
                *failed = failed.saturating_sub(failed_n);
            }
        }
        self.since = since;
        FlowStats {
            stuck: self.stuck,
            finished: self.after.0,
            failed: self.after.1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Flows judged, re-judged and gone in a shuffled order, counted with
    /// windows moving forward and back: the kept counts agree with a count
    /// over every live flow.
    #[test]
    fn the_kept_counts_agree_with_counting_every_flow() {
        let mut tally = Tally::default();
        let mut live: std::collections::BTreeMap<FlowId, (FlowStatus, Option<i64>)> =
            Default::default();
        let mut seed = 0x5eed_u64;
        let mut next = |n: u64| {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            (seed >> 33) % n
        };
        let statuses = [
            FlowStatus::InFlight,
            FlowStatus::Stuck,
            FlowStatus::Completed,
            FlowStatus::Failed,
        ];
        let mut since = 0i64;
        for step in 0..5_000 {
            let id = FlowId::new(None, 1_000_000 * next(40) as i64);
            let before = live.get(&id).copied();
            tally.add(id, before, -1);
            if next(5) == 0 {
                live.remove(&id);
            } else {
                let status = statuses[next(4) as usize];
                let ended = matches!(status, FlowStatus::Completed | FlowStatus::Failed)
                    .then(|| next(1_000) as i64);
                live.insert(id, (status, ended));
                tally.add(id, Some((status, ended)), 1);
            }
            if step % 7 == 0 {
                since = (since + next(200) as i64 - 90).clamp(-10, 1_010);
                let mut want = FlowStats::default();
                for (status, ended) in live.values() {
                    match (status, ended) {
                        (FlowStatus::Stuck, _) => want.stuck += 1,
                        (status, Some(t)) if *t > since => {
                            want.finished += 1;
                            want.failed += u64::from(*status == FlowStatus::Failed);
                        }
                        _ => {}
                    }
                }
                assert_eq!(tally.stats(since), want, "step {step}, since {since}");
            }
        }
    }
}
