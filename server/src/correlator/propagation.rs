//! The propagation report: the first thing to check when flows come out broken.
//!
//! Per service: how many messages it published without trace context, and
//! how many of its consumer spans started a new trace instead of continuing
//! (or linking) the producer's.

use std::collections::BTreeMap;

use flowscope_model::SpanKind;
use serde::Serialize;

use super::flow::FlowState;

/// One service's propagation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ServicePropagation {
    pub service: String,
    pub published: u64,
    pub published_without_trace_context: u64,
    /// Share of its publishes without trace context, 0.0 to 1.0.
    pub share_without_trace_context: f64,
    pub consumed_with_span: u64,
    /// Consumer spans in a different trace than the message, with no link to it.
    pub consumers_starting_new_trace: u64,
}

/// Every service's propagation.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PropagationReport {
    pub services: Vec<ServicePropagation>,
}

/// The report over the given flows.
pub fn report<'a>(flows: impl Iterator<Item = &'a FlowState>) -> PropagationReport {
    let mut by_service: BTreeMap<String, ServicePropagation> = BTreeMap::new();
    for flow in flows {
        for record in flow.messages.values() {
            let Some(publish) = &record.publish else {
                continue;
            };
            let Some(service) = publish
                .service
                .clone()
                .or_else(|| publish.properties.app_id.clone())
            else {
                continue;
            };
            let entry = by_service
                .entry(service.clone())
                .or_insert_with(|| ServicePropagation {
                    service,
                    ..Default::default()
                });
            entry.published += 1;
            if publish.trace.is_none() {
                entry.published_without_trace_context += 1;
            }
        }
        for span in flow.spans.iter().filter(|s| s.kind == SpanKind::Consumer) {
            let Some(id) = span.messaging.as_ref().and_then(|m| m.message_id()) else {
                continue;
            };
            let Some(trace) = flow
                .messages
                .get(id)
                .and_then(|r| r.representative())
                .and_then(|m| m.trace.as_ref())
            else {
                continue;
            };
            let entry = by_service
                .entry(span.service.to_string())
                .or_insert_with(|| ServicePropagation {
                    service: span.service.to_string(),
                    ..Default::default()
                });
            entry.consumed_with_span += 1;
            let trace_id = trace.trace_id.as_str();
            let linked = span.links.iter().any(|l| l.trace_id == trace_id);
            if span.trace_id != trace_id && !linked {
                entry.consumers_starting_new_trace += 1;
            }
        }
    }
    let services = by_service
        .into_values()
        .map(|mut s| {
            s.share_without_trace_context =
                s.published_without_trace_context as f64 / s.published.max(1) as f64;
            s
        })
        .collect();
    PropagationReport { services }
}
