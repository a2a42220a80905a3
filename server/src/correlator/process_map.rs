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
        for (kind, _) in events {
            *self.steps.entry(kind.clone()).or_default() += 1;
        }
        for pair in events.windows(2) {
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
        let path: Vec<String> = events.iter().map(|(k, _)| k.clone()).collect();
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
}
