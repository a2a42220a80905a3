//! The reducer and the view models, natively.

use flowscope_model::{AlertEvidence, Severity};

use super::*;

fn flow(id: &str, started: i64, status: FlowStatus) -> FlowSummary {
    FlowSummary {
        id: id.into(),
        key: Some(format!("order-{id}")),
        status,
        started_unix_us: started,
        last_seen_unix_us: started,
        services: vec!["order".into(), "payment".into()],
        event_types: vec!["OrderPlaced".into()],
        trace_ids: vec![format!("trace{id}")],
        ..Default::default()
    }
}

fn queue(name: &str, ready: u64, at: i64) -> QueueState {
    QueueState {
        vhost: "/".into(),
        name: name.into(),
        ready,
        consumers: 1,
        is_dead_letter_queue: name.ends_with(".dlq"),
        updated_unix_us: at,
        ..Default::default()
    }
}

fn alert(id: &str, state: AlertState, updated: i64) -> Alert {
    Alert {
        id: id.into(),
        rule: "dlq".into(),
        severity: Severity::Warning,
        state,
        subject: "q".into(),
        vhost: Some("/".into()),
        summary: "q grew".into(),
        evidence: AlertEvidence::default(),
        started_unix_us: updated,
        fired_unix_us: None,
        resolved_unix_us: None,
        updated_unix_us: updated,
    }
}

fn snapshot(flows: Vec<FlowSummary>, queues: Vec<QueueState>) -> StreamMessage {
    StreamMessage::Snapshot(Box::new(LiveSnapshot {
        flows,
        queues,
        alerts: vec![alert("a1", AlertState::Firing, 1)],
        stats: LiveStats {
            num_live_flows: 2,
            demo: true,
            ..Default::default()
        },
    }))
}

fn update(update: LiveUpdate) -> StreamMessage {
    StreamMessage::Update(Box::new(update))
}

#[test]
fn a_snapshot_replaces_everything() {
    let mut state = DashboardState::default();
    state.apply(snapshot(
        vec![flow("old", 1, FlowStatus::InFlight)],
        vec![queue("a", 1, 1)],
    ));
    state.apply(snapshot(
        vec![
            flow("f1", 10, FlowStatus::Completed),
            flow("f2", 20, FlowStatus::Failed),
        ],
        vec![queue("payment.orders", 3, 5)],
    ));
    let ids: Vec<&str> = state.flows.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["f2", "f1"], "newest first, old flow gone");
    assert_eq!(state.queues.len(), 1);
    assert!(state.queue("/", "payment.orders").is_some());
    assert!(state.stats.demo);
    assert_eq!(state.num_snapshots, 2);
}

#[test]
fn an_update_upserts_flows_and_drops_removed_ones() {
    let mut state = DashboardState::default();
    state.apply(snapshot(
        vec![
            flow("f1", 10, FlowStatus::InFlight),
            flow("f2", 20, FlowStatus::InFlight),
        ],
        vec![],
    ));
    state.apply(update(LiveUpdate {
        flows: vec![
            flow("f1", 10, FlowStatus::Failed),
            flow("f3", 30, FlowStatus::InFlight),
        ],
        removed_flows: vec!["f2".into()],
        ..Default::default()
    }));
    let ids: Vec<&str> = state.flows.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids, ["f3", "f1"]);
    assert_eq!(state.flow("f1").unwrap().status, FlowStatus::Failed);
    assert_eq!(state.num_updates, 1);
}

#[test]
fn flows_stay_bounded_keeping_the_newest() {
    let mut state = DashboardState::default();
    let flows = (0..MAX_FLOWS as i64 + 50)
        .map(|i| flow(&format!("f{i}"), i, FlowStatus::InFlight))
        .collect();
    state.apply(update(LiveUpdate {
        flows,
        ..Default::default()
    }));
    assert_eq!(state.flows.len(), MAX_FLOWS);
    assert_eq!(state.flows[0].id, format!("f{}", MAX_FLOWS + 49));
    assert_eq!(state.num_flows_evicted, 50);
    assert!(state.flow("f0").is_none(), "the oldest went");
}

#[test]
fn small_updates_keep_the_list_newest_first_without_a_full_sort() {
    let mut state = DashboardState::default();
    state.apply(snapshot(
        (0..100)
            .map(|i| flow(&format!("f{i}"), i * 10, FlowStatus::InFlight))
            .collect(),
        vec![],
    ));
    // Many small updates: changed flows, new ones in between, a moved start time.
    for round in 0..50i64 {
        let mut changed = flow(
            &format!("f{}", (round * 7) % 100),
            ((round * 7) % 100) * 10,
            FlowStatus::Failed,
        );
        changed.num_hops = round as usize;
        let newcomer = flow(&format!("n{round}"), round * 13 + 5, FlowStatus::InFlight);
        let mut moved = flow(&format!("f{}", (round * 3) % 100), 0, FlowStatus::InFlight);
        moved.started_unix_us = 2_000 + round;
        state.apply(update(LiveUpdate {
            flows: vec![changed, newcomer, moved],
            ..Default::default()
        }));
    }
    let mut sorted = state.flows.clone();
    sorted.sort_by_key(|f| std::cmp::Reverse(f.started_unix_us));
    let starts =
        |flows: &[FlowSummary]| flows.iter().map(|f| f.started_unix_us).collect::<Vec<_>>();
    assert_eq!(starts(&state.flows), starts(&sorted), "newest first");
    let ids: BTreeSet<&str> = state.flows.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(ids.len(), state.flows.len(), "each flow once");
    assert_eq!(state.flows.len(), 150);
    assert_eq!(state.flow("f7").unwrap().status, FlowStatus::Failed);
    assert_eq!(
        state.flows[0].started_unix_us, 2_049,
        "the last moved flow is the newest"
    );
}

#[test]
fn a_small_update_past_the_bound_evicts_the_oldest() {
    let mut state = DashboardState::default();
    state.apply(snapshot(
        (0..MAX_FLOWS as i64)
            .map(|i| flow(&format!("f{i}"), 100 + i, FlowStatus::InFlight))
            .collect(),
        vec![],
    ));
    state.apply(update(LiveUpdate {
        flows: vec![
            flow("new", 5_000, FlowStatus::InFlight),
            flow("older", 1, FlowStatus::InFlight),
        ],
        ..Default::default()
    }));
    assert_eq!(state.flows.len(), MAX_FLOWS);
    assert_eq!(state.flows[0].id, "new");
    assert!(
        state.flow("older").is_none(),
        "older than everything kept: dropped"
    );
    assert!(state.flow("f0").is_none(), "the oldest went");
    assert_eq!(state.num_flows_evicted, 2);
}

#[test]
fn queues_merge_by_vhost_and_name_and_keep_a_history() {
    let mut state = DashboardState::default();
    state.apply(snapshot(vec![], vec![queue("q", 0, 1)]));
    for (at, ready) in [(2, 1), (3, 4), (3, 9), (4, 2)] {
        state.apply(update(LiveUpdate {
            queues: vec![queue("q", ready, at)],
            ..Default::default()
        }));
    }
    let q = state.queue("/", "q").unwrap();
    assert_eq!(q.state.ready, 2);
    assert_eq!(
        q.history,
        [(1, 0), (2, 1), (3, 9), (4, 2)],
        "one point per timestamp, the latest value"
    );
    assert_eq!(q.grew_unix_us, Some(3));
    let mut other_vhost = queue("q", 7, 5);
    other_vhost.vhost = "shop".into();
    state.apply(update(LiveUpdate {
        queues: vec![other_vhost],
        ..Default::default()
    }));
    assert_eq!(state.queues.len(), 2);
}

#[test]
fn queue_history_is_bounded() {
    let mut state = DashboardState::default();
    for at in 0..(MAX_HISTORY_POINTS as i64 * 2) {
        state.apply(update(LiveUpdate {
            queues: vec![queue("q", at as u64, at)],
            ..Default::default()
        }));
    }
    let q = state.queue("/", "q").unwrap();
    assert_eq!(q.history.len(), MAX_HISTORY_POINTS);
    assert_eq!(
        q.history.last().unwrap().0,
        MAX_HISTORY_POINTS as i64 * 2 - 1
    );
}

#[test]
fn growing_dead_letter_queues_come_first_and_are_highlighted() {
    let mut state = DashboardState::default();
    let now = 1_000_000_000;
    state.apply(snapshot(
        vec![],
        vec![
            queue("a.orders", 0, now),
            queue("b.orders", 5, now),
            queue("b.orders.dlq", 1, now - 10),
            queue("c.orders.dlq", 0, now),
        ],
    ));
    state.apply(update(LiveUpdate {
        queues: vec![queue("b.orders.dlq", 3, now)],
        ..Default::default()
    }));
    let rows = state.queue_rows(now);
    let names: Vec<(&str, QueueHealth)> = rows
        .iter()
        .map(|(h, q)| (q.state.name.as_str(), *h))
        .collect();
    assert_eq!(
        names,
        [
            ("b.orders.dlq", QueueHealth::DlqGrowing),
            ("a.orders", QueueHealth::Ok),
            ("b.orders", QueueHealth::Backlog),
            ("c.orders.dlq", QueueHealth::Ok),
        ]
    );
    let later = now + DLQ_GROWTH_WINDOW_US + 1;
    assert_eq!(
        state.queue("/", "b.orders.dlq").unwrap().health(later),
        QueueHealth::DlqNotEmpty,
        "no longer growing, still not empty"
    );
}

#[test]
fn alerts_upsert_by_id_and_stay_bounded() {
    let mut state = DashboardState::default();
    state.apply(snapshot(vec![], vec![]));
    state.apply(update(LiveUpdate {
        alerts: vec![
            alert("a1", AlertState::Resolved, 2),
            alert("a2", AlertState::Pending, 2),
        ],
        ..Default::default()
    }));
    assert_eq!(state.alerts.len(), 2);
    assert_eq!(state.active_alerts().len(), 1);
    let many = (0..MAX_ALERTS as i64 + 10)
        .map(|i| alert(&format!("r{i}"), AlertState::Resolved, i))
        .collect();
    state.apply(update(LiveUpdate {
        alerts: many,
        ..Default::default()
    }));
    assert_eq!(state.alerts.len(), MAX_ALERTS);
    assert!(
        state.alerts.iter().any(|a| a.id == "a2"),
        "open alerts are kept"
    );
}

#[test]
fn stats_are_replaced_only_when_sent() {
    let mut state = DashboardState::default();
    state.apply(snapshot(vec![], vec![]));
    state.apply(update(LiveUpdate::default()));
    assert!(state.stats.demo, "an update without stats keeps them");
    state.apply(update(LiveUpdate {
        stats: Some(LiveStats {
            stream_lagged: 3,
            observations_dropped: 7,
            ..Default::default()
        }),
        ..Default::default()
    }));
    assert_eq!(state.stats.stream_lagged, 3);
    assert_eq!(state.stats.observations_dropped, 7);
}

#[test]
fn the_filter_narrows_by_status_service_event_type_and_text() {
    let mut state = DashboardState::default();
    let mut shipped = flow("f3", 30, FlowStatus::Completed);
    shipped.services.push("shipping".into());
    shipped.event_types.push("OrderShipped".into());
    state.apply(snapshot(
        vec![
            flow("f1", 10, FlowStatus::Failed),
            flow("f2", 20, FlowStatus::Completed),
            shipped,
        ],
        vec![],
    ));
    let ids = |filter: &FlowFilter| -> Vec<String> {
        state
            .filtered_flows(filter, 10)
            .0
            .into_iter()
            .map(|f| f.id)
            .collect()
    };
    assert_eq!(ids(&FlowFilter::default()), ["f3", "f2", "f1"]);
    let completed = FlowFilter {
        status: Some(FlowStatus::Completed),
        ..Default::default()
    };
    assert_eq!(ids(&completed), ["f3", "f2"]);
    let shipping = FlowFilter {
        service: Some("shipping".into()),
        ..Default::default()
    };
    assert_eq!(ids(&shipping), ["f3"]);
    let event = FlowFilter {
        event_type: Some("OrderShipped".into()),
        ..Default::default()
    };
    assert_eq!(ids(&event), ["f3"]);
    let path = state
        .flows
        .iter()
        .find(|f| f.id == "f3")
        .unwrap()
        .event_types
        .clone();
    let variant = FlowFilter {
        variant: Some(path.clone()),
        ..Default::default()
    };
    assert_eq!(ids(&variant), ["f3"], "exactly that path: {path:?}");
    let prefix = FlowFilter {
        variant: Some(path[..1].to_vec()),
        ..Default::default()
    };
    assert_eq!(ids(&prefix), ["f2", "f1"], "a variant is the whole path");
    let text = FlowFilter {
        text: " ORDER-F1 ".into(),
        ..Default::default()
    };
    assert_eq!(ids(&text), ["f1"], "order key, any case, trimmed");
    let trace = FlowFilter {
        text: "tracef2".into(),
        ..Default::default()
    };
    assert_eq!(ids(&trace), ["f2"]);
    let (shown, total) = state.filtered_flows(&FlowFilter::default(), 2);
    assert_eq!((shown.len(), total), (2, 3), "capped, with the total");
}

#[test]
fn counts_services_and_event_types() {
    let mut state = DashboardState::default();
    let mut shipped = flow("f3", 30, FlowStatus::Completed);
    shipped.services = vec!["order".into(), "payment".into(), "shipping".into()];
    state.apply(snapshot(
        vec![
            flow("f1", 10, FlowStatus::Failed),
            flow("f2", 20, FlowStatus::Completed),
            shipped,
        ],
        vec![],
    ));
    let counts = state.status_counts();
    assert_eq!(counts.of(FlowStatus::Completed), 2);
    assert_eq!(counts.of(FlowStatus::Failed), 1);
    assert_eq!(counts.of(FlowStatus::Stuck), 0);
    assert_eq!(state.services(), ["order", "payment", "shipping"]);
    assert_eq!(state.event_types(), ["OrderPlaced"]);
}

#[test]
fn stream_messages_parse_as_the_server_sends_them() {
    let json = r#"{"type":"update","data":{"flows":[],"removed_flows":["x"],"queues":[],"alerts":[],"stats":{"num_live_flows":1,"observations_received":2,"observations_dropped":0,"stream_lagged":0,"demo":false}}}"#;
    let message: StreamMessage = serde_json::from_str(json).unwrap();
    let mut state = DashboardState::default();
    state.apply(message);
    assert_eq!(state.stats.observations_received, 2);
}
