//! A flow's hops: producer → exchange → queue → consumer, one per message and queue.

use std::collections::BTreeSet;

use compact_str::CompactString;
use flowscope_model::{Hop, SpanKind, SpanObservation};
use smallvec::SmallVec;

use super::flow::{FlowState, MessageRecord};

/// A flow's spans picked for one hop: on the stack for the usual few.
type Picked<'a> = SmallVec<[&'a SpanObservation; 8]>;

/// The hops of a flow, in publish order.
///
/// Built once for each judgement that finds the flow holding something
/// new: for every flow at least once, so the picked spans stay on the stack
/// and a flow without broker messages (spans only) skips their passes.
pub fn build(flow: &FlowState) -> Vec<Hop> {
    let mut hops = Vec::new();
    let in_order = if flow.messages.is_empty() {
        Vec::new()
    } else {
        flow.messages_in_order()
    };
    for (id, record) in in_order {
        let spans: Picked<'_> = flow
            .spans
            .iter()
            .map(|s| &**s)
            .filter(|s| s.messaging.as_ref().and_then(|m| m.message_id()) == Some(id.as_str()))
            .collect();
        hops.extend(hops_of_message(id, record, &spans));
    }
    // Messages only spans know about (services traced, broker not tapped).
    let known: BTreeSet<&str> = flow.messages.keys().map(String::as_str).collect();
    let mut span_only: Picked<'_> = flow
        .spans
        .iter()
        .map(|s| &**s)
        .filter(|s| s.kind == SpanKind::Producer)
        .filter(|s| {
            s.messaging
                .as_ref()
                .and_then(|m| m.message_id())
                .is_some_and(|id| !known.contains(id))
        })
        .collect();
    span_only.sort_by_key(|s| s.start_unix_us);
    hops.reserve_exact(span_only.len());
    for producer in span_only {
        let m = producer.messaging.as_ref().expect("filtered on messaging");
        let id = CompactString::from(m.message_id().unwrap_or_default());
        let consumers: Picked<'_> = flow
            .spans
            .iter()
            .map(|s| &**s)
            .filter(|s| {
                s.kind == SpanKind::Consumer
                    && s.messaging.as_ref().and_then(|c| c.message_id()) == Some(id.as_str())
            })
            .collect();
        let mut hop = Hop {
            message_id: id,
            event_type: producer.attributes.find("shop.event_type").and_then(|kv| {
                // A string, read without making a JSON value when given once.
                kv.borrowed_str()
                    .map(CompactString::from)
                    .or_else(|| kv.value(0).ok()?.as_str().map(CompactString::from))
            }),
            producer: Some(CompactString::from(&*producer.service)),
            exchange: m.destination().unwrap_or_default().into(),
            routing_key: m.routing_key().unwrap_or_default().into(),
            published_unix_us: Some(producer.end_unix_us),
            ..Default::default()
        };
        if let Some(first) = consumers.iter().min_by_key(|s| s.start_unix_us) {
            hop.queue = first
                .messaging
                .as_ref()
                .and_then(|c| c.queue().map(CompactString::from));
            hop.consumer = Some(CompactString::from(&*first.service));
            hop.delivered_unix_us = Some(first.start_unix_us);
        }
        apply_processing(&mut hop, &consumers);
        hops.push(hop);
    }
    hops.sort_by_key(|h| h.published_unix_us.unwrap_or(i64::MAX));
    hops
}

fn hops_of_message(id: &str, record: &MessageRecord, spans: &[&SpanObservation]) -> Vec<Hop> {
    let Some(msg) = record.representative() else {
        return vec![];
    };
    let mut queues: BTreeSet<String> = BTreeSet::new();
    if let Some(publish) = &record.publish {
        queues.extend(publish.routed_queues.iter().flatten().cloned());
    }
    queues.extend(record.deliveries.iter().filter_map(|d| d.queue.clone()));
    queues.extend(
        record
            .dead_letters
            .iter()
            .flat_map(|d| d.deaths.iter().map(|death| death.queue.clone())),
    );
    // Deliveries from a dead-letter queue are not a hop of their own.
    let dlqs: BTreeSet<String> = record
        .dead_letters
        .iter()
        .filter_map(|d| d.queue.clone())
        .collect();
    queues.retain(|q| {
        !dlqs.contains(q)
            || record
                .publish
                .as_ref()
                .is_some_and(|p| p.routed_queues.iter().flatten().any(|r| r == q))
    });
    let base = Hop {
        message_id: id.into(),
        event_type: msg.properties.kind.as_deref().map(CompactString::from),
        producer: record
            .publish
            .as_ref()
            .and_then(|p| p.service.as_deref())
            .or(msg.properties.app_id.as_deref())
            .map(CompactString::from),
        exchange: msg.exchange.as_str().into(),
        routing_key: msg
            .routing_keys
            .first()
            .map_or_else(CompactString::default, |k| k.as_str().into()),
        published_unix_us: record.published_unix_us(),
        ..Default::default()
    };
    if queues.is_empty() {
        // Direct reply-to routes to a pseudo-queue the broker does not list.
        let direct_reply = base.routing_key.starts_with("amq.rabbitmq.reply-to");
        let unroutable =
            !direct_reply && record.publish.as_ref().is_some_and(|p| p.is_unroutable());
        return vec![Hop { unroutable, ..base }];
    }
    let single_queue = queues.len() == 1;
    queues
        .into_iter()
        .map(|queue| {
            let mut hop = base.clone();
            let deliveries: Vec<_> = record
                .deliveries
                .iter()
                .filter(|d| d.queue.as_deref() == Some(queue.as_str()))
                .collect();
            if let Some(first) = deliveries.iter().min_by_key(|d| d.observed_unix_us) {
                hop.delivered_unix_us = Some(first.observed_unix_us);
                hop.consumer = first.service.as_deref().map(CompactString::from);
            }
            hop.redeliveries = deliveries.len().saturating_sub(1) as u32;
            hop.dead_lettered = record
                .dead_letters
                .iter()
                .flat_map(|d| d.deaths.iter())
                .find(|death| death.queue == queue)
                .cloned();
            // The consumer spans of this queue: by queue attribute, else by the consumer service.
            let consumer_spans: Vec<&SpanObservation> = spans
                .iter()
                .copied()
                .filter(|s| s.kind == SpanKind::Consumer)
                .filter(|s| {
                    match (
                        s.messaging.as_ref().and_then(|m| m.queue()),
                        hop.consumer.as_deref(),
                    ) {
                        (Some(q), _) => q == queue,
                        (None, Some(consumer)) => consumer == &*s.service,
                        // Neither queue nor delivery known: a message with one queue has one consumer.
                        (None, None) => single_queue,
                    }
                })
                .collect();
            if hop.consumer.is_none() {
                hop.consumer = consumer_spans
                    .first()
                    .map(|s| CompactString::from(&*s.service));
            }
            if hop.delivered_unix_us.is_none() {
                hop.delivered_unix_us = consumer_spans.iter().map(|s| s.start_unix_us).min();
            }
            hop.queue = Some(queue.into());
            apply_processing(&mut hop, &consumer_spans);
            hop
        })
        .collect()
}

/// Processed time, failures and derived durations from the consumer's spans.
fn apply_processing(hop: &mut Hop, consumer_spans: &[&SpanObservation]) {
    hop.failed = consumer_spans.iter().any(|s| s.status.is_error());
    hop.processed_unix_us = consumer_spans
        .iter()
        .filter(|s| !s.status.is_error())
        .map(|s| s.end_unix_us)
        .max();
    let attempts = consumer_spans.len() as u32;
    if attempts > 1 {
        hop.redeliveries = hop.redeliveries.max(attempts - 1);
    }
    hop.queue_wait_us = match (hop.published_unix_us, hop.delivered_unix_us) {
        (Some(p), Some(d)) => Some((d - p).max(0)),
        _ => None,
    };
    hop.processing_us = match (hop.delivered_unix_us, hop.processed_unix_us) {
        (Some(d), Some(p)) => Some((p - d).max(0)),
        _ => None,
    };
}
