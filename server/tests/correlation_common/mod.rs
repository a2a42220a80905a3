//! What the correlation tests share: observations of the demo shop as the
//! firehose and its services' spans report them, and a flow as a user sees it.

#![allow(dead_code)]

use std::sync::Arc;

use flowscope_model::{
    Body, BrokerMessage, FlowDetail, MessageProperties, MessagingAttributes, MessagingFields,
    Observation, SpanKind, SpanObservation, SpanStatus, StatusCode, TraceContext,
};
use flowscope_server::correlator::Correlator;
use flowscope_server::correlator::config::CorrelationConfig;
use serde_json::{Value, json};

pub const SEC: i64 = 1_000_000;
pub const T0: i64 = 1_700_000_000 * SEC;
pub const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// A message of the demo shop, as the firehose reports it.
pub fn msg(id: &str, kind: &str, service: &str, order: &str, at: i64) -> BrokerMessage {
    BrokerMessage {
        observed_unix_us: T0 + at,
        vhost: "/".into(),
        exchange: "shop.events".into(),
        routing_keys: vec![kind.to_lowercase()],
        service: Some(service.into()),
        properties: MessageProperties {
            message_id: Some(id.into()),
            correlation_id: Some(order.into()),
            kind: Some(kind.into()),
            app_id: Some(service.into()),
            ..Default::default()
        },
        body: Some(Body {
            content: json!({"order_id": order, "event_type": kind, "data": {"reason": "card declined by issuer"}}).to_string(),
            encoding: "utf8".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

pub fn traced(mut m: BrokerMessage, trace: &str, span: &str) -> BrokerMessage {
    m.trace = Some(TraceContext {
        trace_id: trace.into(),
        span_id: span.into(),
        sampled: true,
        tracestate: None,
    });
    m
}

pub fn publish(m: BrokerMessage, queues: &[&str]) -> Observation {
    Observation::Publish(Box::new(BrokerMessage {
        routed_queues: Some(queues.iter().map(|q| q.to_string()).collect()),
        ..m
    }))
}

pub fn deliver(
    m: BrokerMessage,
    queue: &str,
    consumer: &str,
    at: i64,
    redelivered: bool,
) -> Observation {
    Observation::Deliver(Box::new(BrokerMessage {
        queue: Some(queue.into()),
        service: Some(consumer.into()),
        redelivered: Some(redelivered),
        observed_unix_us: T0 + at,
        ..m
    }))
}

#[allow(clippy::too_many_arguments)]
pub fn span(
    service: &str,
    kind: SpanKind,
    trace: &str,
    id: &str,
    parent: Option<&str>,
    message_id: &str,
    queue: Option<&str>,
    at: i64,
    error: bool,
) -> Observation {
    Observation::Span(Arc::new(SpanObservation {
        service: service.into(),
        trace_id: trace.parse().unwrap(),
        span_id: id.parse().unwrap(),
        parent_span_id: parent.map(|p| p.parse().unwrap()),
        name: "span".into(),
        kind,
        start_unix_us: T0 + at,
        end_unix_us: T0 + at + 2_000,
        status: SpanStatus {
            code: if error {
                StatusCode::Error
            } else {
                StatusCode::Unset
            },
            message: if error {
                "malformed message body".into()
            } else {
                String::new()
            },
        },
        messaging: MessagingAttributes::new(MessagingFields {
            system: Some("rabbitmq"),
            message_id: Some(message_id),
            queue,
            ..Default::default()
        }),
        ..Default::default()
    }))
}

/// Runs observations through a correlator with the demo rules, judged at `now`.
pub fn correlate(observations: Vec<Observation>, now: i64) -> (Vec<FlowDetail>, Vec<String>) {
    let mut correlator = Correlator::new(CorrelationConfig::demo_shop()).unwrap();
    for obs in observations {
        correlator.ingest(obs);
    }
    let mut changes = correlator.take_changes(T0 + now);
    changes.updated.sort_by_key(|f| f.summary.started_unix_us);
    (changes.updated, changes.removed)
}

/// What a user sees of a flow.
pub fn view(flow: &FlowDetail) -> Value {
    json!({
        "key": flow.summary.key,
        "status": flow.summary.status,
        "reason": flow.summary.reason.as_ref().map(|r| r.message.clone()),
        "reason_hop": flow.summary.reason.as_ref().and_then(|r| r.hop),
        "events": flow.summary.event_types,
        "hops": flow.hops.iter().map(|h| json!({
            "event": h.event_type, "from": h.producer, "queue": h.queue, "to": h.consumer,
            "redeliveries": h.redeliveries,
            "dead": h.dead_lettered.as_ref().map(|d| d.reason.clone()),
            "unroutable": h.unroutable,
            "waited": h.queue_wait_us.is_some(),
        })).collect::<Vec<_>>(),
    })
}

pub fn hop(event: &str, from: &str, queue: Option<&str>, to: Option<&str>) -> Value {
    json!({"event": event, "from": from, "queue": queue, "to": to, "redeliveries": 0, "dead": null, "unroutable": false, "waited": to.is_some()})
}

/// The happy path: broker observations with trace context, and consumer
/// spans that are children of the producers' spans.
pub fn happy_path(order: &str) -> Vec<Observation> {
    let steps = [
        ("m1", "OrderPlaced", "order", "payment.orders", "payment"),
        (
            "m2",
            "PaymentProcessed",
            "payment",
            "inventory.payments",
            "inventory",
        ),
        (
            "m3",
            "InventoryReserved",
            "inventory",
            "shipping.inventory",
            "shipping",
        ),
        ("m4", "OrderShipped", "shipping", "order.outcomes", "order"),
    ];
    let mut obs = Vec::new();
    for (i, (id, kind, from, queue, to)) in steps.iter().enumerate() {
        let at = i as i64 * 100_000;
        let producer_span = format!("{:016x}", i + 1);
        let m = traced(msg(id, kind, from, order, at), TRACE, &producer_span);
        obs.push(publish(m.clone(), &[queue]));
        obs.push(deliver(m, queue, to, at + 5_000, false));
        obs.push(span(
            to,
            SpanKind::Consumer,
            TRACE,
            &format!("{:016x}", i + 100),
            Some(&producer_span),
            id,
            Some(queue),
            at + 5_000,
            false,
        ));
    }
    obs.push(publish(
        traced(
            msg("m5", "OrderCompleted", "order", order, 400_000),
            TRACE,
            "00000000000000aa",
        ),
        &[],
    ));
    obs
}
