//! Status that changes with time alone, through the correlator's tick: a
//! flow is judged again when one of its waits crosses a threshold, and not
//! before.

mod correlation_common;

use correlation_common::*;
use flowscope_model::SpanKind;
use flowscope_server::correlator::Correlator;
use flowscope_server::correlator::config::CorrelationConfig;
use serde_json::{Value, json};

/// Lets time pass to `at` (the server ticks every 500 ms), then takes what
/// changed, by order key.
fn after(correlator: &mut Correlator, at: i64) -> Vec<(String, Value)> {
    correlator.tick(T0 + at);
    let mut changed: Vec<(String, Value)> = correlator
        .take_changes(T0 + at)
        .updated
        .iter()
        .map(|f| (f.summary.key.clone().unwrap_or_default(), view(f)))
        .collect();
    changed.sort_by(|a, b| a.0.cmp(&b.0));
    changed
}

#[test]
fn time_alone_moves_flows_at_their_thresholds_and_not_before() {
    let mut correlator = Correlator::new(CorrelationConfig::demo_shop()).unwrap();
    // Published, never delivered: stuck past 30 s, the wait counted on.
    correlator.ingest(publish(
        msg("w1", "OrderPlaced", "order", "o-1", 0),
        &["payment.orders"],
    ));
    // Delivered at 1 s, and the consumer's span failed at 5 s: retrying
    // until 30 s after the error, then failed.
    let m = traced(
        msg("r1", "OrderPlaced", "order", "o-2", 0),
        TRACE,
        "00000000000000a1",
    );
    correlator.ingest(publish(m.clone(), &["payment.orders"]));
    correlator.ingest(deliver(m, "payment.orders", "payment", SEC, false));
    correlator.ingest(span(
        "payment",
        SpanKind::Consumer,
        TRACE,
        "00000000000000b1",
        Some("00000000000000a1"),
        "r1",
        Some("payment.orders"),
        5 * SEC,
        true,
    ));
    let status = |changed: &[(String, Value)]| -> Vec<(String, Value, Value)> {
        changed
            .iter()
            .map(|(k, v)| (k.clone(), v["status"].clone(), v["reason"].clone()))
            .collect()
    };
    let first = after(&mut correlator, 2 * SEC);
    assert_eq!(first.len(), 2, "{first:?}");
    assert!(
        first.iter().all(|(_, v)| v["status"] == "in_flight"),
        "{first:?}"
    );
    assert!(after(&mut correlator, 29 * SEC).is_empty());
    let stuck = after(&mut correlator, 30 * SEC + 500_000);
    assert_eq!(
        status(&stuck),
        [(
            "o-1".into(),
            json!("stuck"),
            json!("waiting in payment.orders for 30 s, not delivered")
        )]
    );
    // Still retrying 30 s after the delivery: the error came at 5 s.
    let retrying = after(&mut correlator, 31 * SEC + 500_000);
    assert_eq!(retrying.len(), 1, "{retrying:?}");
    let failed = after(&mut correlator, 35 * SEC + 500_000);
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert_eq!(
        failed[0].1["reason"],
        "waiting in payment.orders for 35 s, not delivered"
    );
    assert_eq!(failed[1].0, "o-2");
    assert_eq!(failed[1].1["status"], "failed", "{failed:?}");
    // A failed flow stays as it is; the stuck one's wait goes on.
    let later = after(&mut correlator, 45 * SEC);
    assert_eq!(
        status(&later),
        [(
            "o-1".into(),
            json!("stuck"),
            json!("waiting in payment.orders for 45 s, not delivered")
        )]
    );
}

#[test]
fn without_terminal_events_a_flow_completes_once_quiet_and_not_before() {
    let mut correlator = Correlator::new(CorrelationConfig::default()).unwrap();
    let m = msg("q1", "OrderPlaced", "order", "o-3", 0);
    correlator.ingest(publish(m.clone(), &["payment.orders"]));
    correlator.ingest(deliver(m, "payment.orders", "payment", SEC, false));
    let first = after(&mut correlator, 2 * SEC);
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].1["status"], "in_flight");
    // Quiet since 1 s; done at 11 s.
    assert!(after(&mut correlator, 10 * SEC + 900_000).is_empty());
    let done = after(&mut correlator, 11 * SEC + 100_000);
    assert_eq!(done.len(), 1, "{done:?}");
    assert_eq!(done[0].1["status"], "completed");
    assert!(after(&mut correlator, 60 * SEC).is_empty());
}
