//! The audit log: who did what to which queue, when, how many.
//! Kept in memory for the API and appended as JSON lines to a file.

use std::collections::VecDeque;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// Entries kept in memory.
const KEEP: usize = 1_000;

/// One operator action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at_unix_us: i64,
    pub who: String,
    /// `redrive`, `purge`, `demo_fault`, …
    pub action: String,
    pub vhost: String,
    pub queue: String,
    pub count: u64,
    pub detail: String,
}

/// The log.
#[derive(Debug, Default)]
pub struct AuditLog {
    entries: Mutex<VecDeque<AuditEntry>>,
    file: Option<PathBuf>,
}

impl AuditLog {
    /// A log that also appends to `file`.
    pub fn new(file: Option<PathBuf>) -> Self {
        Self {
            entries: Mutex::default(),
            file,
        }
    }

    /// Records an action.
    pub fn record(&self, entry: AuditEntry) {
        tracing::info!(who = %entry.who, action = %entry.action, vhost = %entry.vhost, queue = %entry.queue, count = entry.count, "audit");
        if let Some(path) = &self.file {
            let line = serde_json::to_string(&entry).expect("audit entries serialize");
            let written = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .and_then(|mut f| writeln!(f, "{line}"));
            if let Err(err) = written {
                tracing::error!(path = %path.display(), error = %err, "cannot append to the audit log file");
            }
        }
        let mut entries = self.entries.lock().expect("audit lock");
        if entries.len() == KEEP {
            entries.pop_front();
        }
        entries.push_back(entry);
    }

    /// The most recent entries, newest first.
    pub fn recent(&self) -> Vec<AuditEntry> {
        self.entries
            .lock()
            .expect("audit lock")
            .iter()
            .rev()
            .cloned()
            .collect()
    }
}
