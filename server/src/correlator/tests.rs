//! Tests of the correlator's own bookkeeping: the due set, the eviction
//! order and the tick's counts.

use std::sync::Arc;

use flowscope_model::{
    MessagingAttributes, MessagingFields, Observation, SpanId, SpanKind, SpanObservation, TraceId,
};

use super::Correlator;
use super::config::CorrelationConfig;

const SECOND: i64 = 1_000_000;

fn span(trace: u8, n: u8, at: i64) -> Observation {
    Observation::Span(Arc::new(SpanObservation {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([n.max(1); 8]),
        start_unix_us: at,
        end_unix_us: at + 1_000,
        ..Default::default()
    }))
}

/// A producer span about message `m{trace}-{n}`.
fn message_span(trace: u8, n: u8, at: i64) -> Observation {
    let id = format!("m{trace}-{n}");
    Observation::Span(Arc::new(SpanObservation {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([n.max(1); 8]),
        kind: SpanKind::Producer,
        start_unix_us: at,
        end_unix_us: at + 1_000,
        messaging: MessagingAttributes::new(MessagingFields {
            message_id: Some(&id),
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// A span of trace `trace` linking the traces `links` (which merges their flows).
fn linking_span(trace: u8, links: &[u8], at: i64) -> Observation {
    let mut span = SpanObservation {
        trace_id: TraceId([trace; 16]),
        span_id: SpanId([9; 8]),
        start_unix_us: at,
        end_unix_us: at,
        ..Default::default()
    };
    for link in links {
        span.links.push(flowscope_model::SpanLink {
            trace_id: TraceId([*link; 16]),
            span_id: SpanId([1; 8]),
            ..Default::default()
        });
    }
    Observation::Span(Arc::new(span))
}

/// Every flow waiting for time is in `due` at its time, and every live
/// flow in the eviction order under its key (stale entries, of flows gone
/// or times and keys since changed, may be there beside them).
fn assert_due_in_step(c: &Correlator) {
    for (slot, flow) in c.flows.iter() {
        if let Some(at) = flow.next_check_unix_us {
            assert!(c.due.contains(at, slot), "{} missing from due", flow.id);
        }
        assert!(
            c.order.contains(flow.order, slot),
            "{} not in order",
            flow.id
        );
    }
    // And the index points at live flows only, each identifier at the
    // flow that keeps it.
    let kept: usize = c.flows.values().map(|f| f.keys.len()).sum();
    assert_eq!(c.index.len(), kept, "the index holds gone identifiers");
    for (slot, flow) in c.flows.iter() {
        for key in &flow.keys {
            assert_eq!(c.index.get(*key), Some(slot), "{} lost a key", flow.id);
        }
    }
}

#[test]
fn a_flow_judged_again_and_again_leaves_no_pile_of_stale_entries() {
    // Each judgement of a flow seen later moves it in the eviction order and
    // its next check: a new entry each, the old one stale.
    let mut c = Correlator::new(CorrelationConfig::default()).unwrap();
    let t = 1_795_000_000 * SECOND;
    for i in 0..20_000i64 {
        c.ingest(span(1, (i % 200) as u8, t + i * SECOND / 100));
        c.take_summaries(t + i * SECOND / 100);
    }
    c.tick(t + 200 * SECOND);
    assert_eq!(c.num_flows(), 1);
    let bound = 2 + super::queue::SLACK;
    assert!(
        c.order.len() <= bound,
        "order holds {} entries",
        c.order.len()
    );
    assert!(c.due.len() <= bound, "due holds {} entries", c.due.len());
    assert_due_in_step(&c);
}

#[test]
fn the_tick_finds_the_due_flows_through_merges_and_evictions() {
    let mut c = Correlator::new(CorrelationConfig {
        max_live_flows: 50,
        ..Default::default()
    })
    .unwrap();
    let t = 1_795_000_000 * SECOND;
    for i in 0..120u8 {
        c.ingest(span(i, 1, t + i64::from(i) * SECOND / 10));
    }
    c.take_summaries(t + 12 * SECOND);
    assert_due_in_step(&c);
    // A span linking two flows merges them.
    c.ingest(linking_span(118, &[119], t + 13 * SECOND));
    c.take_summaries(t + 13 * SECOND);
    c.tick(t + 13 * SECOND);
    assert_due_in_step(&c);
    assert_eq!(c.num_flows(), 50, "evicted down to the bound");
    // The least recently seen went (in groups, read ahead), and only
    // they: found by their traces no more, the others still.
    let found = |trace: u8| c.find(&TraceId([trace; 16]).to_string()).is_some();
    assert!((0..69).all(|i| !found(i)), "a flow over the bound stayed");
    assert!((69..120).all(found), "a flow within the bound went");
    // Quiet for the quiescence time: every flow completes by time alone.
    let later = t + 60 * SECOND;
    c.tick(later);
    let done = c.take_summaries(later);
    assert!(
        done.updated
            .iter()
            .all(|f| f.status == flowscope_model::FlowStatus::Completed),
        "{:?}",
        done.updated.iter().map(|f| f.status).collect::<Vec<_>>()
    );
    assert_eq!(done.updated.len(), 50, "every live flow was due");
    c.tick(later + SECOND);
    assert_due_in_step(&c);
    assert!(c.take_summaries(later + SECOND).updated.is_empty());
    // Counted as they stay live: finished within the window, not after it.
    let stats = c.tick_with_stats(later + 2 * SECOND, 120 * SECOND);
    assert_eq!((stats.stuck, stats.finished, stats.failed), (0, 50, 0));
    let stats = c.tick_with_stats(later + 200 * SECOND, 120 * SECOND);
    assert_eq!((stats.stuck, stats.finished, stats.failed), (0, 0, 0));
    // New flows over the bound evict finished ones first, and those
    // are not counted.
    for i in 0..10u8 {
        c.ingest(span(200 + i, 1, later + 201 * SECOND));
    }
    c.take_summaries(later + 201 * SECOND);
    let stats = c.tick_with_stats(later + 201 * SECOND, 1_000 * SECOND);
    assert_eq!(c.num_flows(), 50);
    assert_eq!((stats.stuck, stats.finished, stats.failed), (0, 40, 0));
}

#[test]
fn a_judgement_for_time_alone_keeps_the_hops_and_tells_the_same_summary() {
    let mut c = Correlator::new(CorrelationConfig::default()).unwrap();
    let t = 1_795_000_000 * SECOND;
    for i in 1..=5u8 {
        for n in 1..=3u8 {
            c.ingest(message_span(i, n, t + i64::from(n) * 1_000));
        }
    }
    c.take_summaries(t + SECOND);
    let mut learned = 0;
    c.learn_new_hops(|_, _| learned += 1);
    assert_eq!(learned, 5, "new flows hand over their hops");

    // Quiet past the quiescence time: completed by time alone.
    let later = t + 30 * SECOND;
    c.tick(later);
    let done = c.take_summaries(later);
    assert_eq!(done.updated.len(), 5);
    for summary in &done.updated {
        assert_eq!(summary.status, flowscope_model::FlowStatus::Completed);
        let rebuilt = c.flow(&summary.id).expect("live").summary;
        assert_eq!(*summary, rebuilt, "kept summary drifted from a rebuilt one");
    }
    let mut learned = 0;
    c.learn_new_hops(|_, _| learned += 1);
    assert_eq!(learned, 0, "time alone changes no hops");

    // A span about no message changes the summary, not the hops.
    c.ingest(span(1, 4, later + SECOND));
    let changed = c.take_summaries(later + SECOND);
    assert_eq!(changed.updated.len(), 1);
    assert_eq!(changed.updated[0].num_spans, 4);
    assert_eq!(changed.updated[0].num_hops, 3);
    let mut learned = 0;
    c.learn_new_hops(|_, _| learned += 1);
    assert_eq!(learned, 0, "a span about no message changes no hops");
    let rebuilt = c.flow(&changed.updated[0].id).expect("live").summary;
    assert_eq!(changed.updated[0], rebuilt);

    // A span about a message makes the flow's hops new again.
    c.ingest(message_span(1, 5, later + 2 * SECOND));
    let changed = c.take_summaries(later + 2 * SECOND);
    assert_eq!(changed.updated.len(), 1);
    assert_eq!(changed.updated[0].num_hops, 4);
    let mut learned = 0;
    c.learn_new_hops(|_, _| learned += 1);
    assert_eq!(learned, 1);
    let rebuilt = c.flow(&changed.updated[0].id).expect("live").summary;
    assert_eq!(changed.updated[0], rebuilt);
}

#[test]
fn judging_without_making_summaries_judges_the_same() {
    let config = CorrelationConfig::default();
    let mut made = Correlator::new(config.clone()).unwrap();
    let mut judged = Correlator::new(config).unwrap();
    let t = 1_795_000_000 * SECOND;
    for c in [&mut made, &mut judged] {
        for i in 1..=4u8 {
            c.ingest(span(i, 1, t));
            c.ingest(span(i, 2, t + 1_000));
        }
    }
    let sorted = |c: &Correlator| {
        let mut all: Vec<_> = c.summaries(None).collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    };
    let updated = made.take_summaries(t + SECOND).updated;
    assert!(judged.judge_changes(t + SECOND).is_empty());
    assert_eq!(updated.len(), 4);
    assert_eq!(sorted(&made), sorted(&judged));
    let later = t + 30 * SECOND;
    for c in [&mut made, &mut judged] {
        c.tick(later);
    }
    made.take_summaries(later);
    judged.judge_changes(later);
    assert_eq!(sorted(&made), sorted(&judged));
    assert!(
        sorted(&judged)
            .iter()
            .all(|f| f.status == flowscope_model::FlowStatus::Completed)
    );
    let stats = judged.tick_with_stats(later, 60 * SECOND);
    assert_eq!((stats.stuck, stats.finished, stats.failed), (0, 4, 0));
}

#[test]
fn a_flow_let_go_and_seen_again_before_the_take_is_told_once() {
    let mut c = Correlator::new(CorrelationConfig {
        max_live_flows: 1,
        ..Default::default()
    })
    .unwrap();
    let t = 1_795_000_000 * SECOND;
    c.ingest(span(1, 1, t));
    c.ingest(span(2, 1, t + 1));
    // Trace 1's flow, the least recently seen, goes; then comes back
    // within the same second, so under the same id.
    c.tick(t + 2);
    assert_eq!(c.num_flows(), 1);
    c.ingest(span(1, 2, t + 3));
    c.tick(t + 4);
    let again = c.flows.values().next().map(|f| f.id).unwrap();
    let changes = c.take_changes(t + 5);
    let ids: Vec<&str> = changes.updated.iter().map(|f| &*f.summary.id).collect();
    assert_eq!(
        ids,
        [again.to_string()],
        "told once, and only the live flow"
    );
    assert_eq!(changes.updated[0].spans.len(), 1, "the flow as seen again");
    assert!(c.take_changes(t + 6).updated.is_empty());
}

#[test]
fn a_trace_seen_again_after_flows_left_or_merged_is_found_where_it_is_now() {
    // Spans known by their trace alone skip the lookup while no flow has
    // left since the last one of that trace: a flow leaving frees a slot
    // another flow may take, a merge moves the trace.
    let mut c = Correlator::new(CorrelationConfig {
        max_live_flows: 1,
        ..Default::default()
    })
    .unwrap();
    let t = 1_795_000_000 * SECOND;
    let find = |c: &Correlator, trace: u8| c.find(&TraceId([trace; 16]).to_string());
    let one_trace_each = |c: &Correlator| {
        c.flows
            .values()
            .all(|f| f.spans.iter().all(|s| s.trace_id == f.spans[0].trace_id))
    };
    c.ingest(span(1, 1, t));
    c.ingest(span(1, 2, t));
    assert_eq!(c.num_flows(), 1, "a trace's spans in a row: one flow");
    // Trace 1's flow goes (over the bound), its slot taken by trace 3's,
    // both known by more than their trace (a message each).
    c.ingest(message_span(2, 1, t + 1));
    c.tick(t + 2);
    c.ingest(message_span(3, 1, t + 3));
    c.tick(t + 4);
    assert_eq!(find(&c, 1), None);
    c.ingest(span(1, 3, t + 5));
    assert!(
        one_trace_each(&c),
        "trace 1 joined the flow in its old slot"
    );
    assert!(find(&c, 1).is_some() && find(&c, 1) != find(&c, 3));

    // A span of trace 1 linking trace 4's flow merges them: trace 1's next
    // span is in the merged flow.
    let mut c = Correlator::new(CorrelationConfig::default()).unwrap();
    c.ingest(span(4, 1, t));
    c.ingest(span(1, 1, t + 1));
    c.ingest(linking_span(5, &[1, 4], t + 2));
    assert_eq!(c.num_flows(), 1, "merged");
    c.ingest(span(1, 2, t + 3));
    assert_eq!(c.num_flows(), 1, "trace 1's span went to a flow that left");
    let merged = c.flows.values().next().unwrap();
    assert_eq!(merged.spans.len(), 4);
    assert_due_in_step(&c);
}
