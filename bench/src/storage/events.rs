//! The storage benchmark's events: a seeded, deterministic shop.
//!
//! Order `i` crosses four steps (`OrderPlaced` → `PaymentProcessed` →
//! `InventoryReserved` → `OrderShipped`; 3 % of payments fail as
//! `PaymentFailed`), and each step is three events: the publish and the
//! delivery the firehose sees, and the consumer's span. So 12 events per
//! order, with a trace id, message ids, `correlation_id` = the order id, a
//! JSON body holding `order_id`, and the span attribute `shop.order_id`.
//!
//! Orders come in groups of [`GROUP_ORDERS`]; a chunk holds the last two
//! steps of one group and the first two of the next, so a flow is written
//! twice (half done, then done), as the live engine does. Everything is a
//! function of the seed and the order's number: the lookup phase regenerates
//! the keys it looks up instead of keeping them.

use std::collections::BTreeMap;
use std::sync::Arc;

use flowscope_model::{
    Attributes, Body, BrokerMessage, MessageProperties, MessagingAttributes, Observation, SpanKind,
    SpanObservation, SpanStatus, StatusCode, TraceContext,
};
use serde_json::{Value, json};

/// Events per order.
pub const EVENTS_PER_ORDER: u64 = 12;
/// Orders generated together (their events interleaved).
pub const GROUP_ORDERS: u64 = 100;
/// Time of order 0 (2026-01-01T00:00:00Z): fixed, so runs are identical.
const BASE_UNIX_US: i64 = 1_767_225_600_000_000;
/// One order starts per millisecond; steps are 20 ms apart.
const ORDER_EVERY_US: i64 = 1_000;
const STEP_US: i64 = 20_000;

/// (producer, event, routing key, consumer).
const STEPS: [(&str, &str, &str, &str); 4] = [
    ("order", "OrderPlaced", "order.placed", "payment"),
    (
        "payment",
        "PaymentProcessed",
        "payment.processed",
        "inventory",
    ),
    (
        "inventory",
        "InventoryReserved",
        "inventory.reserved",
        "shipping",
    ),
    ("shipping", "OrderShipped", "order.shipped", "notification"),
];

/// SplitMix64: a tiny, well-mixed generator whose sequence never changes.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The order id of order `i`.
pub fn order_id(seed: u64, i: u64) -> String {
    format!("ord-{:012x}", mix(seed ^ mix(i)) >> 16)
}

/// The trace id of order `i`.
pub fn trace_id(seed: u64, i: u64) -> String {
    let a = mix(seed.wrapping_add(1) ^ mix(i));
    format!("{:016x}{:016x}", a, mix(a) | 1)
}

fn span_id(seed: u64, i: u64, step: usize, consumer: bool) -> String {
    format!(
        "{:016x}",
        mix(seed ^ mix(i) ^ ((step as u64) << 1 | consumer as u64)) | 1
    )
}

/// Orders needed for `events` events.
pub fn num_orders(events: u64) -> u64 {
    events.div_ceil(EVENTS_PER_ORDER)
}

/// The three events of one step of order `i`.
pub fn step_events(seed: u64, i: u64, step: usize) -> [Observation; 3] {
    let (producer, mut event, routing_key, consumer) = STEPS[step];
    if step == 1 && mix(seed ^ i ^ 0xfa11) % 100 < 3 {
        event = "PaymentFailed";
    }
    let (order, trace) = (order_id(seed, i), trace_id(seed, i));
    let published = BASE_UNIX_US + i as i64 * ORDER_EVERY_US + step as i64 * STEP_US;
    let publish_span = span_id(seed, i, step, false);
    let message_id = format!("{order}-{step}");
    let queue = format!("{consumer}.q");
    let amount = 500 + mix(seed ^ i) % 50_000;
    let body = json!({"order_id": order, "event": event, "amount_cents": amount, "currency": "EUR", "items": 1 + amount % 5}).to_string();
    let publish = BrokerMessage {
        observed_unix_us: published,
        vhost: "/".into(),
        node: Some("rabbit@bench".into()),
        exchange: "shop.events".into(),
        routing_keys: vec![routing_key.into()],
        routed_queues: Some(vec![queue.clone()]),
        connection: Some(format!("127.0.0.1:{} -> 127.0.0.1:5672", 40_000 + step)),
        channel: Some(1),
        user: Some("guest".into()),
        service: Some(producer.into()),
        properties: MessageProperties {
            message_id: Some(message_id.clone()),
            correlation_id: Some(order.clone()),
            kind: Some(event.into()),
            app_id: Some(producer.into()),
            timestamp: Some(published / 1_000_000),
            content_type: Some("application/json".into()),
            delivery_mode: Some(2),
            headers: BTreeMap::from([(
                "traceparent".to_owned(),
                Value::String(format!("00-{trace}-{publish_span}-01")),
            )]),
            ..Default::default()
        },
        trace: Some(TraceContext {
            trace_id: trace.clone(),
            span_id: publish_span.clone(),
            sampled: true,
            tracestate: None,
        }),
        body_size: body.len() as u64,
        body: Some(Body {
            content: body,
            encoding: "utf8".into(),
            truncated: false,
            redacted: false,
        }),
        ..Default::default()
    };
    let delivered = published + 1_500;
    let deliver = BrokerMessage {
        observed_unix_us: delivered,
        queue: Some(queue.clone()),
        routed_queues: None,
        redelivered: Some(false),
        connection: Some(format!("127.0.0.1:{} -> 127.0.0.1:5672", 41_000 + step)),
        channel: Some(2),
        service: Some(consumer.into()),
        ..publish.clone()
    };
    let attributes: Attributes = [
        ("messaging.system", json!("rabbitmq")),
        ("messaging.destination.name", json!("shop.events")),
        ("messaging.operation", json!("process")),
        (
            "messaging.rabbitmq.destination.routing_key",
            json!(routing_key),
        ),
        ("messaging.message.id", json!(message_id)),
        ("shop.order_id", json!(order)),
    ]
    .iter()
    .map(|(k, v)| (*k, v))
    .collect();
    let span = SpanObservation {
        observed_unix_us: delivered + 9_000,
        service: consumer.into(),
        scope: "shop.messaging".into(),
        trace_id: trace.parse().expect("a trace id is 32 hex digits"),
        span_id: span_id(seed, i, step, true)
            .parse()
            .expect("a span id is 16 hex digits"),
        parent_span_id: Some(publish_span.parse().expect("a span id is 16 hex digits")),
        name: format!("{queue} process").into(),
        kind: SpanKind::Consumer,
        start_unix_us: delivered,
        end_unix_us: delivered + 8_000,
        status: SpanStatus {
            code: if event == "PaymentFailed" {
                StatusCode::Error
            } else {
                StatusCode::Ok
            },
            message: String::new(),
        },
        messaging: MessagingAttributes::from_attributes(&attributes),
        attributes,
        ..Default::default()
    };
    [
        Observation::Publish(Box::new(publish)),
        Observation::Deliver(Box::new(deliver)),
        Observation::Span(Arc::new(span)),
    ]
}

/// Chunks of events, in order, until `total` events (the last chunk cut short).
#[derive(Debug)]
pub struct Chunks {
    seed: u64,
    total: u64,
    emitted: u64,
    group: u64,
}

impl Chunks {
    pub fn new(seed: u64, total: u64) -> Self {
        Self {
            seed,
            total,
            emitted: 0,
            group: 0,
        }
    }

    /// The events of steps `steps` of every order in group `g`, step by step.
    fn half(&self, g: u64, steps: std::ops::Range<usize>, out: &mut Vec<(u64, Observation)>) {
        let orders = num_orders(self.total);
        let first = g * GROUP_ORDERS;
        let last = (first + GROUP_ORDERS).min(orders);
        for step in steps {
            for i in first..last {
                out.extend(step_events(self.seed, i, step).map(|e| (i, e)));
            }
        }
    }
}

impl Iterator for Chunks {
    /// Events with the number of the order each belongs to.
    type Item = Vec<(u64, Observation)>;

    fn next(&mut self) -> Option<Self::Item> {
        let groups = num_orders(self.total).div_ceil(GROUP_ORDERS);
        if self.emitted >= self.total || self.group > groups {
            return None;
        }
        let mut chunk = Vec::with_capacity((GROUP_ORDERS * EVENTS_PER_ORDER) as usize);
        if self.group > 0 {
            self.half(self.group - 1, 2..4, &mut chunk);
        }
        if self.group < groups {
            self.half(self.group, 0..2, &mut chunk);
        }
        self.group += 1;
        let room = (self.total - self.emitted) as usize;
        chunk.truncate(room);
        self.emitted += chunk.len() as u64;
        Some(chunk)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_events_and_another_seed_others() {
        let a: Vec<_> = Chunks::new(7, 3_000).flatten().collect();
        let b: Vec<_> = Chunks::new(7, 3_000).flatten().collect();
        let c: Vec<_> = Chunks::new(8, 3_000).flatten().collect();
        assert_eq!(a.len(), 3_000);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(order_id(7, 1), order_id(7, 2));
        assert_eq!(trace_id(7, 5).len(), 32);
    }

    #[test]
    fn every_order_has_twelve_events_split_over_two_chunks() {
        let chunks: Vec<_> = Chunks::new(1, 250 * EVENTS_PER_ORDER).collect();
        // 3 groups (100, 100, 50 orders): 4 chunks, the first and last half-size.
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[0].len(), 600);
        assert_eq!(chunks[1].len(), 1_200);
        let mut per_order = std::collections::HashMap::new();
        for (order, _) in chunks.iter().flatten() {
            *per_order.entry(*order).or_insert(0u64) += 1;
        }
        assert_eq!(per_order.len(), 250);
        assert!(per_order.values().all(|n| *n == EVENTS_PER_ORDER));
    }

    #[test]
    fn events_carry_the_order_key_and_trace_id() {
        let [publish, deliver, span] = step_events(3, 42, 2);
        let (order, trace) = (order_id(3, 42), trace_id(3, 42));
        let Observation::Publish(p) = publish else {
            panic!()
        };
        assert_eq!(p.properties.correlation_id.as_deref(), Some(order.as_str()));
        assert!(p.body.unwrap().content.contains(&order));
        assert_eq!(p.trace.unwrap().trace_id, trace);
        let Observation::Deliver(d) = deliver else {
            panic!()
        };
        assert_eq!(d.queue.as_deref(), Some("shipping.q"));
        let Observation::Span(s) = span else { panic!() };
        assert_eq!(s.trace_id, trace);
        assert_eq!(s.attributes.get("shop.order_id"), Some(json!(order)));
    }
}
