//! Golden correlation cases: observations in, flows out, compared on what a
//! user sees (status, reason, hops) and not on timestamps or generated ids.

mod correlation_common;

use std::sync::Arc;

use correlation_common::*;
use flowscope_model::{
    Death, MessagingAttributes, Observation, SpanKind, SpanLink, SpanObservation,
};
use flowscope_server::correlator::Correlator;
use flowscope_server::correlator::config::CorrelationConfig;
use serde_json::json;

#[test]
fn the_happy_path_is_one_completed_flow_with_a_hop_per_leg() {
    let (flows, _) = correlate(happy_path("o-1"), SEC);
    assert_eq!(flows.len(), 1);
    let mut unroutable_completion = hop("OrderCompleted", "order", None, None);
    unroutable_completion["unroutable"] = json!(true);
    assert_eq!(
        view(&flows[0]),
        json!({
            "key": "o-1", "status": "completed", "reason": null, "reason_hop": null,
            "events": ["OrderPlaced", "PaymentProcessed", "InventoryReserved", "OrderShipped", "OrderCompleted"],
            "hops": [
                hop("OrderPlaced", "order", Some("payment.orders"), Some("payment")),
                hop("PaymentProcessed", "payment", Some("inventory.payments"), Some("inventory")),
                hop("InventoryReserved", "inventory", Some("shipping.inventory"), Some("shipping")),
                hop("OrderShipped", "shipping", Some("order.outcomes"), Some("order")),
                unroutable_completion,
            ],
        })
    );
    let first = &flows[0].hops[0];
    assert_eq!(first.queue_wait_us, Some(5_000));
    assert_eq!(first.processing_us, Some(2_000));
    assert_eq!(flows[0].summary.trace_ids, [TRACE]);
}

#[test]
fn a_service_without_trace_context_still_forms_one_flow_from_broker_data() {
    // No traceparent anywhere, no spans: the correlation id and the key join them.
    let obs = vec![
        publish(
            msg("a", "OrderPlaced", "order", "o-2", 0),
            &["payment.orders"],
        ),
        deliver(
            msg("a", "OrderPlaced", "order", "o-2", 0),
            "payment.orders",
            "payment",
            1_000,
            false,
        ),
        publish(
            msg("b", "PaymentProcessed", "payment", "o-2", 2_000),
            &["inventory.payments"],
        ),
    ];
    let (flows, _) = correlate(obs, SEC);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].summary.key.as_deref(), Some("o-2"));
    assert_eq!(flows[0].summary.status.as_str(), "in_flight");
    assert_eq!(flows[0].hops.len(), 2);
}

#[test]
fn span_links_join_flows_as_parent_child_does() {
    // A consumer that starts a new trace but links the producer's: one flow.
    let other_trace = "11111111111111111111111111111111";
    let m = traced(
        msg("x", "OrderPlaced", "order", "o-3", 0),
        TRACE,
        "0000000000000001",
    );
    let mut consumer = span(
        "payment",
        SpanKind::Consumer,
        other_trace,
        "0000000000000002",
        None,
        "unrelated-id",
        None,
        1_000,
        false,
    );
    if let Observation::Span(s) = &mut consumer {
        let s = Arc::make_mut(s);
        s.messaging = None;
        s.links = vec![SpanLink {
            trace_id: TRACE.parse().unwrap(),
            span_id: "0000000000000001".parse().unwrap(),
            attributes: Default::default(),
        }];
    }
    let obs = vec![
        publish(m, &["payment.orders"]),
        consumer,
        // Something else in the consumer's new trace joins through the link too.
        span(
            "payment",
            SpanKind::Internal,
            other_trace,
            "0000000000000003",
            Some("0000000000000002"),
            "n/a",
            None,
            2_000,
            false,
        ),
    ];
    let (flows, _) = correlate(obs, SEC);
    assert_eq!(
        flows.len(),
        1,
        "{:#?}",
        flows.iter().map(view).collect::<Vec<_>>()
    );
    assert_eq!(flows[0].summary.trace_ids.len(), 2);
}

#[test]
fn old_and_new_semantic_conventions_reach_the_same_message() {
    // Spans name the message with `messaging.message_id` (old) and the broker saw it.
    let attrs = |key: &str| {
        let mut a = std::collections::BTreeMap::new();
        a.insert("messaging.system".to_string(), json!("rabbitmq"));
        a.insert(key.to_string(), json!("legacy-1"));
        a.insert("messaging.destination".to_string(), json!("shop.events"));
        flowscope_model::Attributes::from(a)
    };
    let old = SpanObservation {
        service: "payment".into(),
        trace_id: "22222222222222222222222222222222".parse().unwrap(),
        span_id: "0000000000000009".parse().unwrap(),
        kind: SpanKind::Consumer,
        start_unix_us: T0 + 1_000,
        end_unix_us: T0 + 3_000,
        messaging: MessagingAttributes::from_attributes(&attrs("messaging.message_id")),
        attributes: attrs("messaging.message_id"),
        ..Default::default()
    };
    let new = SpanObservation {
        span_id: "000000000000000a".parse().unwrap(),
        messaging: MessagingAttributes::from_attributes(&attrs("messaging.message.id")),
        attributes: attrs("messaging.message.id"),
        service: "notification".into(),
        trace_id: "33333333333333333333333333333333".parse().unwrap(),
        ..old.clone()
    };
    let obs = vec![
        publish(
            msg("legacy-1", "OrderPlaced", "order", "o-4", 0),
            &["payment.orders"],
        ),
        Observation::Span(Arc::new(old)),
        Observation::Span(Arc::new(new)),
    ];
    let (flows, _) = correlate(obs, SEC);
    assert_eq!(flows.len(), 1);
    assert_eq!(flows[0].summary.num_spans, 2);
    assert_eq!(
        flows[0].hops[0].consumer.as_deref(),
        Some("payment"),
        "consumer known from its span"
    );
}

#[test]
fn a_redelivery_is_counted_on_its_hop() {
    let m = msg("r", "OrderPlaced", "order", "o-5", 0);
    let obs = vec![
        publish(m.clone(), &["payment.orders"]),
        deliver(m.clone(), "payment.orders", "payment", 1_000, false),
        deliver(m, "payment.orders", "payment", 2_000, true),
    ];
    let (flows, _) = correlate(obs, SEC);
    assert_eq!(flows[0].hops[0].redeliveries, 1);
}

#[test]
fn a_dead_lettered_message_fails_its_flow_naming_the_queue_the_attempts_and_the_reason() {
    let m = traced(
        msg("p", "OrderPlaced", "order", "o-6", 0),
        TRACE,
        "0000000000000001",
    );
    let mut dead = m.clone();
    dead.queue = Some("payment.orders.dlq".into());
    dead.exchange = "shop.dlx".into();
    dead.deaths = vec![Death {
        queue: "payment.orders".into(),
        reason: "rejected".into(),
        exchange: "shop.events".into(),
        routing_keys: vec!["order.placed".into()],
        count: 1,
        time: None,
    }];
    let mut obs = vec![publish(
        m.clone(),
        &["payment.orders", "notification.events"],
    )];
    for attempt in 0..3 {
        obs.push(deliver(
            m.clone(),
            "payment.orders",
            "payment",
            1_000 + attempt * 1_000,
            attempt > 0,
        ));
        obs.push(span(
            "payment",
            SpanKind::Consumer,
            TRACE,
            &format!("{:016x}", 10 + attempt),
            Some("0000000000000001"),
            "p",
            Some("payment.orders"),
            1_000 + attempt * 1_000,
            true,
        ));
    }
    obs.push(Observation::DeadLetter(Box::new(dead)));
    let (flows, _) = correlate(obs, SEC);
    let v = view(&flows[0]);
    assert_eq!(v["status"], "failed");
    assert_eq!(
        v["reason"],
        "dead-lettered at payment.orders after 3 attempts: rejected"
    );
    let hop = &flows[0].hops[v["reason_hop"].as_u64().unwrap() as usize];
    assert_eq!(hop.queue.as_deref(), Some("payment.orders"));
    assert_eq!(hop.redeliveries, 2);
    assert!(hop.failed && hop.processed_unix_us.is_none());
    assert_eq!(flows[0].hops.len(), 2, "the DLQ is not a hop of its own");
}

#[test]
fn a_declined_payment_fails_at_the_payment_hop_and_out_of_stock_is_compensated() {
    let declined = vec![
        publish(
            msg("d1", "OrderPlaced", "order", "o-7", 0),
            &["payment.orders"],
        ),
        publish(
            msg("d2", "PaymentFailed", "payment", "o-7", 1_000),
            &["order.outcomes"],
        ),
        publish(msg("d3", "OrderCancelled", "order", "o-7", 2_000), &[]),
    ];
    let (flows, _) = correlate(declined, SEC);
    let v = view(&flows[0]);
    assert_eq!(v["status"], "failed");
    assert_eq!(
        v["reason"],
        "PaymentFailed from payment: card declined by issuer"
    );
    assert_eq!(
        flows[0].hops[v["reason_hop"].as_u64().unwrap() as usize]
            .event_type
            .as_deref(),
        Some("PaymentFailed")
    );

    let out_of_stock = vec![
        publish(
            msg("s1", "OrderPlaced", "order", "o-8", 0),
            &["payment.orders"],
        ),
        publish(
            msg("s2", "PaymentProcessed", "payment", "o-8", 1_000),
            &["inventory.payments"],
        ),
        publish(
            msg("s3", "InventoryFailed", "inventory", "o-8", 2_000),
            &["payment.orders"],
        ),
        publish(
            msg("s4", "PaymentRefunded", "payment", "o-8", 3_000),
            &["order.outcomes"],
        ),
        publish(msg("s5", "OrderCancelled", "order", "o-8", 4_000), &[]),
    ];
    let (flows, _) = correlate(out_of_stock, SEC);
    let v = view(&flows[0]);
    assert_eq!(v["status"], "compensated");
    assert_eq!(
        v["reason"],
        "InventoryFailed from inventory, compensated by PaymentRefunded"
    );
}

#[test]
fn unroutable_and_waiting_messages_make_their_flows_stuck() {
    let lost = vec![publish(msg("u1", "OrderPlaced", "order", "o-9", 0), &[])];
    let (flows, _) = correlate(lost, SEC);
    let v = view(&flows[0]);
    assert_eq!(v["status"], "stuck");
    assert!(
        v["reason"].as_str().unwrap().starts_with("unroutable"),
        "{v}"
    );

    // Published into payment.orders, never delivered: stuck once past the 30 s threshold.
    let waiting = vec![publish(
        msg("w1", "OrderPlaced", "order", "o-10", 0),
        &["payment.orders"],
    )];
    let (early, _) = correlate(waiting.clone(), 10 * SEC);
    assert_eq!(early[0].summary.status.as_str(), "in_flight");
    let (late, _) = correlate(waiting, 45 * SEC);
    let v = view(&late[0]);
    assert_eq!(v["status"], "stuck");
    assert_eq!(
        v["reason"],
        "waiting in payment.orders for 45 s, not delivered"
    );
}

#[test]
fn a_bridging_observation_merges_two_flows_and_reports_the_merged_away_id() {
    let mut correlator = Correlator::new(CorrelationConfig::default()).unwrap();
    // Two things seen apart: a span-only trace and a message with its own id.
    correlator.ingest(span(
        "payment",
        SpanKind::Consumer,
        TRACE,
        "0000000000000001",
        None,
        "m-x",
        None,
        0,
        false,
    ));
    correlator.ingest(publish(msg("m-y", "Other", "order", "c-1", 0), &["q"]));
    let first = correlator.take_changes(T0 + SEC);
    assert_eq!(first.updated.len(), 2);
    // A delivery of m-y carrying the span's trace joins them.
    correlator.ingest(deliver(
        traced(
            msg("m-y", "Other", "order", "c-1", 0),
            TRACE,
            "0000000000000001",
        ),
        "q",
        "payment",
        10,
        false,
    ));
    let second = correlator.take_changes(T0 + SEC);
    assert_eq!(second.removed.len(), 1);
    assert_eq!(second.updated.len(), 1);
    assert_eq!(correlator.num_flows(), 1);
    assert_eq!(correlator.find(TRACE), correlator.find("m-y"));
    assert_eq!(
        correlator.find("c-1"),
        Some(second.updated[0].summary.id.clone())
    );
}

#[test]
fn finished_flows_teach_the_process_map_and_propagation_is_reported() {
    let mut correlator = Correlator::new(CorrelationConfig::demo_shop()).unwrap();
    for (i, order) in ["a", "b", "c"].iter().enumerate() {
        for obs in happy_path(order) {
            // Distinct message ids and traces per order.
            let obs = match obs {
                Observation::Publish(mut m) | Observation::Deliver(mut m) if m.queue.is_none() => {
                    m.properties.message_id = m.properties.message_id.map(|id| format!("{id}-{i}"));
                    m.trace = None;
                    Observation::Publish(m)
                }
                Observation::Deliver(mut m) => {
                    m.properties.message_id = m.properties.message_id.map(|id| format!("{id}-{i}"));
                    m.trace = None;
                    Observation::Deliver(m)
                }
                _ => continue,
            };
            correlator.ingest(obs);
        }
    }
    let changes = correlator.take_changes(T0 + SEC);
    assert_eq!(changes.updated.len(), 3);
    let map = correlator.process_map();
    assert_eq!(map.variants.len(), 1);
    assert_eq!(map.variants[0].count, 3);
    assert_eq!(
        map.variants[0].steps.first().map(String::as_str),
        Some("OrderPlaced")
    );
    let report = correlator.propagation();
    let order = report
        .services
        .iter()
        .find(|s| s.service == "order")
        .unwrap();
    assert_eq!(
        order.share_without_trace_context, 1.0,
        "no traceparent was sent"
    );
}
