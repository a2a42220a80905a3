//! The process map, learned from finished flows: which event types follow
//! which, how often, how fast, and the variants with their shares.

use std::collections::{BTreeMap, VecDeque};

use flowscope_model::{ProcessMap, ProcessStep, ProcessTransition, ProcessVariant};

/// Latencies kept per transition for percentiles (the most recent).
const LATENCY_SAMPLES: usize = 1024;
/// Example flows kept per variant.
const EXAMPLES: usize = 5;
/// Variants tracked at most (rare ones beyond are folded away).
const MAX_VARIANTS: usize = 200;

#[derive(Debug, Default)]
struct Transition {
    count: u64,
    latencies_us: VecDeque<i64>,
}

#[derive(Debug, Default)]
struct Variant {
    count: u64,
    examples: VecDeque<String>,
}

/// Learns from each flow once, when it finishes.
#[derive(Debug, Default)]
pub struct ProcessMapLearner {
    steps: BTreeMap<String, u64>,
    transitions: BTreeMap<(String, String), Transition>,
    variants: BTreeMap<Vec<String>, Variant>,
    num_flows: u64,
}

impl ProcessMapLearner {
    /// Adds a finished flow: its event types with their publish times, in order.
    pub fn learn(&mut self, flow_id: &str, events: &[(String, i64)]) {
        if events.is_empty() {
            return;
        }
        self.num_flows += 1;
        self.count_steps(events, 0);
        self.add_to_variant(flow_id, variant_path(events));
    }

    /// A flow learned from its first `learned` events has grown to `events`
    /// (a failure followed by its cancellation, say): counts the new steps
    /// and transitions and moves the flow to the variant it now takes.
    pub fn grow(&mut self, flow_id: &str, learned: usize, events: &[(String, i64)]) {
        if learned == 0 || learned >= events.len() {
            return;
        }
        self.count_steps(events, learned);
        let (old, new) = (variant_path(&events[..learned]), variant_path(events));
        if old == new {
            return;
        }
        if let Some(v) = self.variants.get_mut(&old) {
            v.count = v.count.saturating_sub(1);
            v.examples.retain(|id| id != flow_id);
            if v.count == 0 {
                self.variants.remove(&old);
            }
        }
        self.add_to_variant(flow_id, new);
    }

    /// Counts the steps of `events` from `from` on, and the transitions into them.
    fn count_steps(&mut self, events: &[(String, i64)], from: usize) {
        for (kind, _) in &events[from..] {
            *self.steps.entry(kind.clone()).or_default() += 1;
        }
        for pair in events[from.saturating_sub(1)..].windows(2) {
            let t = self
                .transitions
                .entry((pair[0].0.clone(), pair[1].0.clone()))
                .or_default();
            t.count += 1;
            if t.latencies_us.len() == LATENCY_SAMPLES {
                t.latencies_us.pop_front();
            }
            t.latencies_us.push_back((pair[1].1 - pair[0].1).max(0));
        }
    }

    fn add_to_variant(&mut self, flow_id: &str, path: Vec<String>) {
        if self.variants.len() >= MAX_VARIANTS && !self.variants.contains_key(&path) {
            return;
        }
        let v = self.variants.entry(path).or_default();
        v.count += 1;
        if v.examples.len() == EXAMPLES {
            v.examples.pop_front();
        }
        v.examples.push_back(flow_id.to_owned());
    }

    /// The map as learned so far.
    pub fn snapshot(&self) -> ProcessMap {
        let mut variants: Vec<ProcessVariant> = self
            .variants
            .iter()
            .map(|(steps, v)| ProcessVariant {
                steps: steps.clone(),
                count: v.count,
                share: v.count as f64 / self.num_flows.max(1) as f64,
                example_flow_ids: v.examples.iter().cloned().collect(),
            })
            .collect();
        variants.sort_by_key(|v| std::cmp::Reverse(v.count));
        ProcessMap {
            steps: self
                .steps
                .iter()
                .map(|(k, c)| ProcessStep {
                    event_type: k.clone(),
                    count: *c,
                })
                .collect(),
            transitions: self
                .transitions
                .iter()
                .map(|((from, to), t)| {
                    let mut sorted: Vec<i64> = t.latencies_us.iter().copied().collect();
                    sorted.sort_unstable();
                    ProcessTransition {
                        from: from.clone(),
                        to: to.clone(),
                        count: t.count,
                        p50_us: percentile(&sorted, 0.50),
                        p95_us: percentile(&sorted, 0.95),
                        p99_us: percentile(&sorted, 0.99),
                    }
                })
                .collect(),
            variants,
        }
    }
}

/// A variant's path: each event type once, where first published, as in
/// the flow's `event_types`, so that `GET /api/flows?variant=` finds the
/// variant's flows.
fn variant_path(events: &[(String, i64)]) -> Vec<String> {
    let mut path: Vec<String> = Vec::new();
    for (kind, _) in events {
        if !path.contains(kind) {
            path.push(kind.clone());
        }
    }
    path
}

fn percentile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(list: &[(&str, i64)]) -> Vec<(String, i64)> {
        list.iter().map(|(k, t)| (k.to_string(), *t)).collect()
    }

    #[test]
    fn variants_and_step_latencies() {
        let mut map = ProcessMapLearner::default();
        for i in 0..3 {
            map.learn(
                &format!("f{i}"),
                &ev(&[
                    ("OrderPlaced", 0),
                    ("PaymentProcessed", 10 + i),
                    ("OrderCompleted", 50),
                ]),
            );
        }
        map.learn(
            "f9",
            &ev(&[
                ("OrderPlaced", 0),
                ("PaymentFailed", 5),
                ("OrderCancelled", 9),
            ]),
        );
        let snap = map.snapshot();
        assert_eq!(snap.variants[0].count, 3);
        assert_eq!(snap.variants[0].share, 0.75);
        assert_eq!(snap.variants[1].example_flow_ids, ["f9"]);
        let t = snap
            .transitions
            .iter()
            .find(|t| t.from == "OrderPlaced" && t.to == "PaymentProcessed")
            .unwrap();
        assert_eq!((t.count, t.p50_us, t.p99_us), (3, 11, 12));
    }

    #[test]
    fn a_repeated_event_type_is_one_step_of_its_variant() {
        let mut map = ProcessMapLearner::default();
        map.learn(
            "f1",
            &ev(&[
                ("OrderPlaced", 0),
                ("PaymentFailed", 5),
                ("PaymentFailed", 9),
            ]),
        );
        let snap = map.snapshot();
        assert_eq!(snap.variants[0].steps, ["OrderPlaced", "PaymentFailed"]);
        assert_eq!(
            snap.steps
                .iter()
                .find(|s| s.event_type == "PaymentFailed")
                .unwrap()
                .count,
            2
        );
    }

    #[test]
    fn a_flow_that_grows_after_it_was_learned_moves_to_its_new_variant() {
        let mut map = ProcessMapLearner::default();
        let failed = ev(&[("OrderPlaced", 0), ("PaymentFailed", 5)]);
        map.learn("f1", &failed);
        map.learn("f2", &failed);
        let cancelled = ev(&[
            ("OrderPlaced", 0),
            ("PaymentFailed", 5),
            ("OrderCancelled", 9),
        ]);
        map.grow("f1", 2, &cancelled);
        let snap = map.snapshot();
        let counts: Vec<(usize, u64)> = snap
            .variants
            .iter()
            .map(|v| (v.steps.len(), v.count))
            .collect();
        assert_eq!(
            counts,
            [(2, 1), (3, 1)],
            "one flow each, still 2 flows in all"
        );
        let grown = snap.variants.iter().find(|v| v.steps.len() == 3).unwrap();
        assert_eq!(grown.example_flow_ids, ["f1"]);
        assert_eq!(grown.share, 0.5);
        let t = snap
            .transitions
            .iter()
            .find(|t| t.to == "OrderCancelled")
            .unwrap();
        assert_eq!((t.count, t.p50_us), (1, 4));
        map.grow("f2", 2, &cancelled);
        let snap = map.snapshot();
        assert_eq!(snap.variants.len(), 1, "an emptied variant goes away");
        assert_eq!((snap.variants[0].count, snap.variants[0].share), (2, 1.0));
        assert_eq!(
            snap.steps
                .iter()
                .find(|s| s.event_type == "OrderPlaced")
                .unwrap()
                .count,
            2
        );
    }
}
