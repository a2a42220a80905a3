//! The engine's behaviour with explicit times: no clock, no I/O.

use flowscope_model::{
    AlertState, BrokerMessage, ConsumerInfo, DeadLetterEdge, Death, MessageProperties, QueueInfo,
    QueueSample, RuleKind, SampleSource, Severity, TopologySnapshot,
};

use super::*;

const SEC: i64 = 1_000_000;
const MS: i64 = 1_000;
const T0: i64 = 1_700_000_000 * SEC;

/// The demo shop's shape: payment and inventory queues, each with its DLQ.
fn topology(at: i64) -> TopologySnapshot {
    let queues = [
        "payment.orders",
        "payment.orders.dlq",
        "inventory.orders",
        "inventory.orders.dlq",
    ];
    TopologySnapshot {
        observed_unix_us: at,
        vhost: "/".into(),
        queues: queues
            .iter()
            .map(|q| QueueInfo {
                name: (*q).into(),
                ..Default::default()
            })
            .collect(),
        consumers: vec![ConsumerInfo {
            queue: "payment.orders".into(),
            tag: "ctag-1".into(),
            connection: "127.0.0.1:5000 -> 127.0.0.1:5672".into(),
            client_name: Some("payment".into()),
            prefetch: 10,
            ack_required: true,
        }],
        dead_letter_edges: ["payment.orders", "inventory.orders"]
            .iter()
            .map(|q| DeadLetterEdge {
                queue: (*q).into(),
                exchange: "shop.dlx".into(),
                routing_key: None,
                targets: vec![format!("{q}.dlq")],
            })
            .collect(),
        ..Default::default()
    }
}

fn sample(source: SampleSource, queue: &str, at: i64, ready: u64) -> QueueSample {
    QueueSample {
        observed_unix_us: at,
        source,
        vhost: "/".into(),
        queue: queue.into(),
        messages_ready: Some(ready),
        messages_unacked: None,
        consumers: None,
        publish_rate: None,
        deliver_rate: None,
        ack_rate: None,
        head_message_timestamp: None,
    }
}

fn exact(queue: &str, at: i64, ready: u64) -> QueueSample {
    QueueSample {
        consumers: Some(1),
        ..sample(SampleSource::PassiveDeclare, queue, at, ready)
    }
}

fn dead_letter(dlq: &str, from: &str, reason: &str, at: i64) -> BrokerMessage {
    BrokerMessage {
        observed_unix_us: at,
        vhost: "/".into(),
        exchange: "shop.dlx".into(),
        queue: Some(dlq.into()),
        properties: MessageProperties {
            app_id: Some("order".into()),
            ..Default::default()
        },
        deaths: vec![Death {
            queue: from.into(),
            reason: reason.into(),
            exchange: "shop.events".into(),
            count: 1,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn rule(name: &str, kind: RuleKind, for_secs: u64) -> AlertRule {
    AlertRule {
        name: name.into(),
        kind,
        for_secs,
        severity: Severity::Critical,
    }
}

/// An engine with only the given rules (no default one).
fn engine_with(rules: Vec<AlertRule>) -> AlertEngine {
    AlertEngine::new(AlertConfig {
        rules,
        default_dlq_growth: false,
        ..Default::default()
    })
}

fn states(alerts: &[Alert]) -> Vec<(&str, AlertState)> {
    alerts.iter().map(|a| (a.id.as_str(), a.state)).collect()
}

#[test]
fn the_default_growth_rule_watches_every_dead_letter_queue_of_the_topology() {
    let mut engine = AlertEngine::new(AlertConfig::default());
    assert_eq!(engine.rules().len(), 1);
    engine.observe_topology(&topology(T0));
    for queue in [
        "payment.orders",
        "payment.orders.dlq",
        "inventory.orders",
        "inventory.orders.dlq",
    ] {
        engine.observe_sample(&exact(queue, T0, 0));
        engine.observe_sample(&exact(queue, T0 + 10 * SEC, 2));
    }
    let mut fired = engine.evaluate(T0 + 12 * SEC);
    fired.sort_by(|a, b| a.id.cmp(&b.id));
    // Both DLQs, not the work queues that grew just as much. No dead letter
    // was seen, so they wait for evidence a moment.
    assert_eq!(
        states(&fired),
        [
            ("dlq-growth:/:inventory.orders.dlq", AlertState::Pending),
            ("dlq-growth:/:payment.orders.dlq", AlertState::Pending),
        ]
    );
    let fired = engine.evaluate(T0 + 12 * SEC + EVIDENCE_GRACE_US);
    assert!(
        fired.iter().all(|a| a.state == AlertState::Firing),
        "{fired:?}"
    );
    assert_eq!(fired.len(), 2);
    assert_eq!(fired[0].severity, Severity::Warning);
    assert_eq!(
        fired
            .iter()
            .find(|a| a.subject == "payment.orders.dlq")
            .unwrap()
            .summary,
        "payment.orders.dlq grew by 2 messages in 60 s"
    );
}

#[test]
fn one_dead_letter_fires_at_the_first_evaluation_after_the_sample_that_shows_it() {
    let mut engine = AlertEngine::new(AlertConfig::default());
    engine.observe_topology(&topology(T0));
    engine.observe_sample(&exact("payment.orders.dlq", T0, 0));
    assert!(engine.evaluate(T0 + SEC).is_empty());
    let seen = T0 + 30 * SEC;
    engine.observe_sample(&exact("payment.orders.dlq", seen, 1));
    engine.observe_dead_letter(&dead_letter(
        "payment.orders.dlq",
        "payment.orders",
        "rejected",
        seen + 20 * MS,
    ));
    let fired = engine.evaluate(seen + 100 * MS);
    assert_eq!(
        states(&fired),
        [("dlq-growth:/:payment.orders.dlq", AlertState::Firing)]
    );
    let alert = &fired[0];
    assert_eq!(
        alert.summary,
        "payment.orders.dlq grew by 1 message in 60 s"
    );
    assert_eq!(alert.fired_unix_us, Some(seen + 100 * MS));
    assert_eq!(alert.vhost.as_deref(), Some("/"));
    assert_eq!((alert.evidence.value, alert.evidence.threshold), (1.0, 1.0));
    assert_eq!(engine.active().len(), 1);
    // Nothing changed: nothing to report.
    assert!(engine.evaluate(seen + 600 * MS).is_empty());

    // Without the dead letter (inspection off), it still fires within 2 s.
    let mut engine = AlertEngine::new(AlertConfig::default());
    engine.observe_topology(&topology(T0));
    engine.observe_sample(&exact("payment.orders.dlq", T0, 0));
    engine.observe_sample(&exact("payment.orders.dlq", seen, 1));
    assert_eq!(
        engine.evaluate(seen + 500 * MS)[0].state,
        AlertState::Pending
    );
    let fired = engine.evaluate(seen + 1_500 * MS);
    assert_eq!(
        states(&fired),
        [("dlq-growth:/:payment.orders.dlq", AlertState::Firing)]
    );
    assert!(fired[0].evidence.top_reasons.is_empty());
}

#[test]
fn a_purge_resolves_and_new_growth_starts_a_new_instance() {
    let mut engine = AlertEngine::new(AlertConfig::default());
    engine.observe_topology(&topology(T0));
    engine.observe_sample(&exact("payment.orders.dlq", T0, 0));
    engine.observe_sample(&exact("payment.orders.dlq", T0 + SEC, 3));
    engine.observe_dead_letter(&dead_letter(
        "payment.orders.dlq",
        "payment.orders",
        "rejected",
        T0 + SEC,
    ));
    let first = engine.evaluate(T0 + 2 * SEC).remove(0);
    assert_eq!(first.state, AlertState::Firing);

    // Purged: the exact count says 0 at once; the management API's lagging 3 must not undo it.
    engine.observe_sample(&exact("payment.orders.dlq", T0 + 5 * SEC, 0));
    engine.observe_sample(&sample(
        SampleSource::Management,
        "payment.orders.dlq",
        T0 + 6 * SEC,
        3,
    ));
    let resolved = engine.evaluate(T0 + 6 * SEC);
    assert_eq!(
        states(&resolved),
        [("dlq-growth:/:payment.orders.dlq", AlertState::Resolved)]
    );
    assert_eq!(resolved[0].resolved_unix_us, Some(T0 + 6 * SEC));
    assert_eq!(resolved[0].fired_unix_us, first.fired_unix_us);
    assert!(engine.active().is_empty());
    assert_eq!(engine.recent(10).len(), 1);
    assert!(engine.evaluate(T0 + 7 * SEC).is_empty());

    // Dead-lettering again: a new instance of the same alert.
    engine.observe_sample(&exact("payment.orders.dlq", T0 + 20 * SEC, 1));
    engine.observe_dead_letter(&dead_letter(
        "payment.orders.dlq",
        "payment.orders",
        "expired",
        T0 + 20 * SEC,
    ));
    let again = engine.evaluate(T0 + 20 * SEC + 100 * MS).remove(0);
    assert_eq!(
        (again.id.as_str(), again.state),
        (first.id.as_str(), AlertState::Firing)
    );
    assert_eq!(again.started_unix_us, T0 + 20 * SEC + 100 * MS);
    // The reasons seen before the purge went with it.
    assert_eq!(again.evidence.top_reasons, [("expired".to_owned(), 1)]);
}

#[test]
fn growth_resolves_once_the_window_passes_without_more() {
    let mut engine = AlertEngine::new(AlertConfig::default());
    engine.observe_topology(&topology(T0));
    engine.observe_sample(&exact("payment.orders.dlq", T0, 0));
    engine.observe_sample(&exact("payment.orders.dlq", T0 + SEC, 1));
    engine.observe_dead_letter(&dead_letter(
        "payment.orders.dlq",
        "payment.orders",
        "rejected",
        T0 + SEC,
    ));
    assert_eq!(engine.evaluate(T0 + 3 * SEC)[0].state, AlertState::Firing);
    engine.observe_sample(&exact("payment.orders.dlq", T0 + 11 * SEC, 1));
    assert!(engine.evaluate(T0 + 60 * SEC).is_empty());
    assert_eq!(
        engine.evaluate(T0 + 62 * SEC)[0].state,
        AlertState::Resolved
    );
}

#[test]
fn evidence_names_the_top_reasons_the_failing_service_and_the_source_queues() {
    let mut engine = AlertEngine::new(AlertConfig::default());
    engine.observe_topology(&topology(T0));
    engine.observe_sample(&exact("payment.orders.dlq", T0, 0));
    engine.observe_sample(&exact("payment.orders.dlq", T0 + SEC, 4));
    for reason in ["rejected", "rejected", "expired", "rejected"] {
        engine.observe_dead_letter(&dead_letter(
            "payment.orders.dlq",
            "payment.orders",
            reason,
            T0 + SEC,
        ));
    }
    let alert = engine.evaluate(T0 + 2 * SEC).remove(0);
    let evidence = &alert.evidence;
    assert_eq!(evidence.queue.as_deref(), Some("payment.orders.dlq"));
    assert_eq!(evidence.value, 4.0);
    assert_eq!(
        evidence.top_reasons,
        [("rejected".to_owned(), 3), ("expired".to_owned(), 1)]
    );
    // The consumer of the source queue, by topology, not the producer (app_id "order").
    assert_eq!(evidence.failing_services, [("payment".to_owned(), 4)]);
    assert_eq!(evidence.source_queues, ["payment.orders"]);

    // With no consumer known for the source queue, the producer is named.
    engine.observe_sample(&exact("inventory.orders.dlq", T0, 0));
    engine.observe_sample(&exact("inventory.orders.dlq", T0 + 3 * SEC, 1));
    engine.observe_dead_letter(&dead_letter(
        "inventory.orders.dlq",
        "inventory.orders",
        "delivery_limit",
        T0 + 3 * SEC,
    ));
    let alert = engine.evaluate(T0 + 3 * SEC).remove(0);
    assert_eq!(alert.evidence.failing_services, [("order".to_owned(), 1)]);
    assert_eq!(
        alert.evidence.top_reasons,
        [("delivery_limit".to_owned(), 1)]
    );
}

#[test]
fn depth_above_with_for_secs_goes_pending_then_firing() {
    let kind = RuleKind::QueueDepthAbove {
        queue: "payment.*".into(),
        threshold: 100,
    };
    let mut engine = engine_with(vec![rule("backlog", kind, 10)]);
    engine.observe_sample(&exact("payment.orders", T0, 150));
    engine.observe_sample(&exact("inventory.orders", T0, 500));
    let pending = engine.evaluate(T0);
    assert_eq!(
        states(&pending),
        [("backlog:/:payment.orders", AlertState::Pending)]
    );
    assert_eq!(
        pending[0].summary,
        "payment.orders has 150 ready messages (threshold 100)"
    );
    assert!(engine.evaluate(T0 + 9 * SEC).is_empty());
    assert_eq!(engine.active()[0].state, AlertState::Pending);
    let firing = engine.evaluate(T0 + 10 * SEC);
    assert_eq!(
        states(&firing),
        [("backlog:/:payment.orders", AlertState::Firing)]
    );
    assert_eq!(firing[0].started_unix_us, T0);
    assert_eq!(firing[0].severity, Severity::Critical);

    // Cleared while pending: resolved, never fired.
    engine.observe_sample(&exact("payment.orders.retry", T0 + 11 * SEC, 101));
    assert_eq!(engine.evaluate(T0 + 11 * SEC)[0].state, AlertState::Pending);
    engine.observe_sample(&exact("payment.orders.retry", T0 + 12 * SEC, 3));
    let cleared = engine.evaluate(T0 + 12 * SEC);
    assert_eq!(
        states(&cleared),
        [("backlog:/:payment.orders.retry", AlertState::Resolved)]
    );
    assert_eq!(cleared[0].fired_unix_us, None);
}

#[test]
fn a_queue_without_consumers_alerts_and_globs_leave_dead_letter_queues_out() {
    let mut engine = engine_with(vec![rule(
        "idle",
        RuleKind::NoConsumers { queue: "*".into() },
        0,
    )]);
    engine.observe_topology(&topology(T0));
    let idle = |queue: &str, at: i64| QueueSample {
        consumers: Some(0),
        ..exact(queue, at, 0)
    };
    engine.observe_sample(&idle("payment.orders", T0));
    engine.observe_sample(&idle("payment.orders.dlq", T0));
    engine.observe_sample(&exact("inventory.orders", T0, 0));
    let fired = engine.evaluate(T0 + SEC);
    assert_eq!(
        states(&fired),
        [("idle:/:payment.orders", AlertState::Firing)]
    );
    assert_eq!(fired[0].summary, "payment.orders has no consumers");
    // The management API's stale 0 does not override the fresh consumer count.
    engine.observe_sample(&exact("payment.orders", T0 + 2 * SEC, 0));
    engine.observe_sample(&QueueSample {
        consumers: Some(0),
        ..sample(SampleSource::Management, "payment.orders", T0 + 3 * SEC, 0)
    });
    assert_eq!(engine.evaluate(T0 + 3 * SEC)[0].state, AlertState::Resolved);
}

#[test]
fn the_oldest_message_age_comes_from_the_head_timestamp() {
    let kind = RuleKind::OldestMessageAgeAbove {
        queue: "payment.orders".into(),
        seconds: 60,
    };
    let mut engine = engine_with(vec![rule("old", kind, 0)]);
    engine.observe_sample(&QueueSample {
        head_message_timestamp: Some(T0 / SEC),
        ..sample(SampleSource::Management, "payment.orders", T0, 5)
    });
    assert!(engine.evaluate(T0 + 60 * SEC).is_empty());
    let fired = engine.evaluate(T0 + 90 * SEC);
    assert_eq!(
        states(&fired),
        [("old:/:payment.orders", AlertState::Firing)]
    );
    assert_eq!(fired[0].evidence.value, 90.0);
    assert_eq!(
        fired[0].summary,
        "the oldest message in payment.orders is 90 s old (threshold 60 s)"
    );
    // Drained (a fresh count of 0): no oldest message, whatever the API said last.
    engine.observe_sample(&exact("payment.orders", T0 + 91 * SEC, 0));
    assert_eq!(
        engine.evaluate(T0 + 92 * SEC)[0].state,
        AlertState::Resolved
    );
}

#[test]
fn stuck_flows_and_the_failure_rate_alert_on_flows() {
    let mut engine = engine_with(vec![
        rule("stuck", RuleKind::StuckAbove { threshold: 2 }, 0),
        rule(
            "failing",
            RuleKind::FailureRateAbove {
                share: 0.2,
                window_secs: 120,
                min_flows: 10,
            },
            0,
        ),
    ]);
    assert_eq!(engine.failure_window_secs(), 120);
    engine.set_flow_stats(2, 5, 5);
    // 2 stuck is not above 2; 5 finished is fewer than min_flows.
    assert!(engine.evaluate(T0).is_empty());
    engine.set_flow_stats(3, 20, 4);
    // 20 % failed is not above 20 %.
    let fired = engine.evaluate(T0 + SEC);
    assert_eq!(states(&fired), [("stuck:flows", AlertState::Firing)]);
    assert_eq!(fired[0].summary, "3 flows are stuck (threshold 2)");
    assert_eq!(fired[0].vhost, None);
    engine.set_flow_stats(0, 20, 5);
    let mut changed = engine.evaluate(T0 + 2 * SEC);
    changed.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(
        states(&changed),
        [
            ("failing:flows", AlertState::Firing),
            ("stuck:flows", AlertState::Resolved)
        ]
    );
    assert_eq!(changed[0].evidence.value, 0.25);
    assert_eq!(
        changed[0].summary,
        "25% of the flows finished in the last 120 s failed (5 of 20; threshold 20%)"
    );
    assert_eq!(engine.recent(1)[0].id, "failing:flows");
    assert_eq!(engine.recent(10).len(), 2);
}

#[test]
fn deleted_queues_resolve_their_alerts() {
    let mut engine = engine_with(vec![rule(
        "depth",
        RuleKind::DlqDepthAbove {
            queue: None,
            threshold: 0,
        },
        0,
    )]);
    engine.observe_topology(&topology(T0));
    engine.observe_sample(&exact("payment.orders.dlq", T0, 2));
    engine.observe_dead_letter(&dead_letter(
        "payment.orders.dlq",
        "payment.orders",
        "rejected",
        T0,
    ));
    let fired = engine.evaluate(T0 + SEC);
    assert_eq!(
        fired[0].summary,
        "payment.orders.dlq holds 2 dead letters (threshold 0)"
    );
    let mut gone = topology(T0 + 2 * SEC);
    gone.queues.retain(|q| q.name != "payment.orders.dlq");
    gone.dead_letter_edges.clear();
    engine.observe_topology(&gone);
    assert_eq!(engine.evaluate(T0 + 3 * SEC)[0].state, AlertState::Resolved);
}
