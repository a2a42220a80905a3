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
#[derive(Debug, Default)]
pub(super) struct Tally {
    stuck: u64,
    /// Finished flows: when they ended, and whether they failed.
    finished: BTreeSet<(i64, FlowId, bool)>,
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
                let entry = (ended, id, status == FlowStatus::Failed);
                if sign > 0 {
                    self.finished.insert(entry);
                } else {
                    self.finished.remove(&entry);
                }
            }
            _ => {}
        }
    }

    /// The counts, finished flows being those that ended after `since`.
    pub(super) fn stats(&self, since: i64) -> FlowStats {
        let mut stats = FlowStats {
            stuck: self.stuck,
            ..Default::default()
        };
        let after = (since.saturating_add(1), FlowId::default(), false);
        for (_, _, failed) in self.finished.range(after..) {
            stats.finished += 1;
            stats.failed += u64::from(*failed);
        }
        stats
    }
}
