//! The lookup keys this store wrote for recent flows, so that rewriting a
//! flow (it is rewritten as it grows and when it ends) does not first read
//! its keys back: at 50k spans/s that read was half of a write's time.
//!
//! Keys are remembered as 64-bit hashes, per flow id, for the flows of the
//! last writes (two generations of up to [`GENERATION_FLOWS`] flows each).
//! Memory answers only when every key remembered for a flow is still among
//! its keys; a flow not remembered, or one that lost a key (whose value the
//! delete needs), is read from the store as before.

use std::collections::{HashMap, HashSet};
use std::hash::BuildHasher;

/// Flows per generation: the live flows (20,000 by default) fit in one.
const GENERATION_FLOWS: usize = 50_000;

/// Keys written per flow id, as hashes.
#[derive(Debug, Default)]
pub(super) struct WrittenKeys {
    current: HashMap<String, Box<[u64]>>,
    previous: HashMap<String, Box<[u64]>>,
}

fn hash(value: &str) -> u64 {
    foldhash::quality::FixedState::with_seed(0x666c_6f77).hash_one(value)
}

impl WrittenKeys {
    /// The keys of `flow` already stored, among `keys`, when known: every key
    /// written for it must still be in `keys`. `None`: read them from the store.
    pub(super) fn stored(&self, flow: &str, keys: &[String]) -> Option<HashSet<String>> {
        let written = self.current.get(flow).or_else(|| self.previous.get(flow))?;
        let stored: HashSet<String> = keys
            .iter()
            .filter(|key| written.contains(&hash(key)))
            .cloned()
            .collect();
        (stored.len() == written.len()).then_some(stored)
    }

    /// After a write committed: `flow`'s stored keys are now exactly `keys`.
    pub(super) fn wrote(&mut self, flow: &str, keys: &[String]) {
        let mut hashes: Vec<u64> = keys.iter().map(|k| hash(k)).collect();
        hashes.sort_unstable();
        hashes.dedup();
        self.previous.remove(flow);
        if self.current.len() >= GENERATION_FLOWS && !self.current.contains_key(flow) {
            self.previous = std::mem::take(&mut self.current);
        }
        self.current.insert(flow.to_owned(), hashes.into());
    }

    /// After a write committed that deleted `flow`.
    pub(super) fn forget(&mut self, flow: &str) {
        self.current.remove(flow);
        self.previous.remove(flow);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| (*v).to_owned()).collect()
    }

    #[test]
    fn a_flow_rewritten_with_more_keys_knows_which_are_stored() {
        let mut written = WrittenKeys::default();
        assert_eq!(written.stored("f1", &keys(&["a", "b"])), None);
        written.wrote("f1", &keys(&["a", "b"]));
        let stored = written.stored("f1", &keys(&["a", "b", "c"])).unwrap();
        assert_eq!(stored, ["a", "b"].map(String::from).into());
        assert_eq!(written.stored("f2", &keys(&["a"])), None);
    }

    #[test]
    fn a_flow_that_lost_a_key_or_was_deleted_is_read_from_the_store() {
        let mut written = WrittenKeys::default();
        written.wrote("f1", &keys(&["a", "b"]));
        // `b` must be deleted, and only the store has its value.
        assert_eq!(written.stored("f1", &keys(&["a", "c"])), None);
        written.forget("f1");
        assert_eq!(written.stored("f1", &keys(&["a", "b"])), None);
    }

    #[test]
    fn memory_holds_two_generations_of_flows() {
        let mut written = WrittenKeys::default();
        for n in 0..2 * GENERATION_FLOWS + 1 {
            written.wrote(&format!("f{n}"), &keys(&["k"]));
        }
        let known = |n: usize| written.stored(&format!("f{n}"), &keys(&["k"])).is_some();
        assert!(!known(0), "the oldest generation is forgotten");
        assert!(known(GENERATION_FLOWS) && known(2 * GENERATION_FLOWS));
        assert!(written.current.len() + written.previous.len() <= 2 * GENERATION_FLOWS);
    }
}
