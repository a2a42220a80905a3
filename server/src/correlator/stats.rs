//! What the alert rules on flows count among the live flows.

use flowscope_model::FlowStatus;

use super::flow::FlowState;

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

impl FlowStats {
    /// Counts a flow (`sign` 1) or takes it back (-1), as of its last judgement.
    pub(super) fn add(&mut self, flow: &FlowState, since: i64, sign: i64) {
        let Some(summary) = &flow.summary else {
            return;
        };
        let count = |n: &mut u64| *n = n.saturating_add_signed(sign);
        match summary.status {
            FlowStatus::Stuck => count(&mut self.stuck),
            status if summary.ended_unix_us.is_some_and(|t| t > since) => {
                count(&mut self.finished);
                if status == FlowStatus::Failed {
                    count(&mut self.failed);
                }
            }
            _ => {}
        }
    }
}
