//! The live state the dashboard reads, and the engine that keeps it.
//!
//! [`engine::Engine`] takes the collectors' observations, feeds the
//! correlator, the queue board and the alert engine, and every 100 ms
//! publishes what changed on the live bus and hands it to the store writer.

pub mod engine;
pub mod queues;
pub mod stream;
pub mod traffic;

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use flowscope_model::{FlowSummary, LiveSnapshot, LiveStats, TopologySnapshot};

use crate::alerts::AlertEngine;
use crate::correlator::Correlator;
use queues::QueueBoard;
use traffic::Traffic;

/// Flows a snapshot carries at most (newest first).
pub const SNAPSHOT_FLOWS: usize = 500;
/// History points per queue in a snapshot (seconds).
pub const SNAPSHOT_HISTORY: usize = 60;

/// Everything live, behind one lock held only briefly (never across an await).
#[derive(Debug)]
pub struct Live {
    pub correlator: Correlator,
    pub queues: QueueBoard,
    pub topology: BTreeMap<String, TopologySnapshot>,
    pub alerts: AlertEngine,
    pub traffic: Traffic,
    pub stats: LiveStats,
}

/// The shared handle on the live state.
pub type SharedLive = Arc<RwLock<Live>>;

impl Live {
    /// A fresh live state.
    pub fn new(correlator: Correlator, alerts: AlertEngine, demo: bool) -> Self {
        Self {
            correlator,
            queues: QueueBoard::default(),
            topology: BTreeMap::new(),
            alerts,
            traffic: Traffic::default(),
            stats: LiveStats {
                demo,
                ..Default::default()
            },
        }
    }

    /// The most recent flows, newest first.
    pub fn recent_flows(&self, limit: usize) -> Vec<FlowSummary> {
        let mut flows: Vec<FlowSummary> = self.correlator.summaries(None).collect();
        flows.sort_by_key(|f| std::cmp::Reverse(f.last_seen_unix_us));
        flows.truncate(limit);
        flows
    }

    /// What a client gets on connect.
    pub fn snapshot(&self) -> LiveSnapshot {
        LiveSnapshot {
            flows: self.recent_flows(SNAPSHOT_FLOWS),
            queues: self.queues.all(SNAPSHOT_HISTORY),
            alerts: self.alerts.recent(100),
            stats: self.stats.clone(),
        }
    }
}
