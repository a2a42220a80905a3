//! Judging a flow: in flight, completed, failed, compensated or stuck, and why.

use flowscope_model::{FlowReason, FlowStatus, Hop};

use super::config::CorrelationConfig;
use super::flow::FlowState;

/// A flow's status and the reason for it, as of `now_unix_us`.
pub fn evaluate(
    flow: &FlowState,
    hops: &[Hop],
    config: &CorrelationConfig,
    now_unix_us: i64,
) -> (FlowStatus, Option<FlowReason>) {
    let timeline = timeline(flow);
    let at = |events: &[String]| {
        timeline
            .iter()
            .position(|(kind, _)| events.iter().any(|e| e == kind))
    };
    let compensation_after = |index: usize| {
        timeline[index..]
            .iter()
            .position(|(kind, _)| config.compensating_events.iter().any(|e| e == kind))
            .map(|i| i + index)
    };

    // A dead letter is a failure.
    if let Some((i, hop)) = hops
        .iter()
        .enumerate()
        .find(|(_, h)| h.dead_lettered.is_some())
    {
        let death = hop.dead_lettered.as_ref().expect("found above");
        let attempts = (hop.redeliveries + 1).max(death.count.max(1) as u32);
        // The same message dead-lettered from several queues: name them all.
        let mut queues: Vec<&str> = hops
            .iter()
            .filter(|h| h.message_id == hop.message_id)
            .filter_map(|h| h.dead_lettered.as_ref().map(|d| d.queue.as_str()))
            .collect();
        queues.dedup();
        let reason = reason_at(
            i,
            hop,
            format!(
                "dead-lettered at {} after {attempts} attempt{}: {}",
                queues.join(" and "),
                if attempts == 1 { "" } else { "s" },
                death.reason
            ),
        );
        return (FlowStatus::Failed, Some(reason));
    }
    if let Some(fail) = at(&config.failure_events) {
        let (kind, service) = &timeline[fail];
        let hop = hops
            .iter()
            .position(|h| h.event_type.as_deref() == Some(kind.as_str()));
        if let Some(comp) = compensation_after(fail) {
            let message = format!("{kind} from {service}, compensated by {}", timeline[comp].0);
            return (
                FlowStatus::Compensated,
                Some(FlowReason {
                    hop,
                    service: Some(service.clone()),
                    queue: None,
                    message,
                }),
            );
        }
        let detail = failure_detail(flow, kind)
            .map(|d| format!(": {d}"))
            .unwrap_or_default();
        let message = format!("{kind} from {service}{detail}");
        return (
            FlowStatus::Failed,
            Some(FlowReason {
                hop,
                service: Some(service.clone()),
                queue: None,
                message,
            }),
        );
    }
    if !config.terminal_events.is_empty() && at(&config.terminal_events).is_some() {
        return (FlowStatus::Completed, None);
    }
    if let Some((i, hop)) = hops
        .iter()
        .enumerate()
        .find(|(_, h)| h.failed && h.processed_unix_us.is_none())
    {
        let last_error = flow
            .spans
            .iter()
            .filter(|s| {
                s.status.is_error()
                    && s.messaging.as_ref().and_then(|m| m.message_id())
                        == Some(hop.message_id.as_str())
            })
            .max_by_key(|s| s.end_unix_us);
        let error = last_error
            .map(|s| s.status.message.clone())
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "error".into());
        let where_ = hop.queue.as_deref().unwrap_or("?");
        let who = hop.consumer.as_deref().unwrap_or("the consumer");
        // A consumer may still retry (and a dead-lettering shows only later):
        // failed once the processing threshold passes without a success.
        let since_error = now_unix_us - last_error.map_or(flow.last_unix_us, |s| s.end_unix_us);
        if since_error < config.processing_ms as i64 * 1000 {
            let message = format!("retrying: processing failed at {where_} in {who}: {error}");
            return (FlowStatus::InFlight, Some(reason_at(i, hop, message)));
        }
        let message = format!("processing failed at {where_} in {who}: {error}");
        return (FlowStatus::Failed, Some(reason_at(i, hop, message)));
    }
    if let Some(stuck) = stuck(flow, hops, config, now_unix_us) {
        return (FlowStatus::Stuck, Some(stuck));
    }
    let pending = hops
        .iter()
        .any(|h| h.queue.is_some() && h.delivered_unix_us.is_none());
    let quiet = now_unix_us - flow.last_unix_us >= secs(config.quiescence_secs);
    if config.terminal_events.is_empty() && quiet && !pending {
        return (FlowStatus::Completed, None);
    }
    (FlowStatus::InFlight, None)
}

/// The earliest time after `after_unix_us` at which [`evaluate`] may answer
/// otherwise for a flow that receives nothing new: when one of its waits
/// crosses a threshold. Early is safe (the flow is judged again and found
/// unchanged), late is not; `None` when time alone changes nothing.
pub fn next_change(
    flow: &FlowState,
    hops: &[Hop],
    config: &CorrelationConfig,
    status: FlowStatus,
    after_unix_us: i64,
) -> Option<i64> {
    if status.is_final() {
        return None;
    }
    if status == FlowStatus::Stuck {
        // Its reason counts the seconds waited.
        return Some(after_unix_us + 1);
    }
    let ms = |v: u64| v as i64 * 1000;
    // The earliest crossing still ahead (no allocation: this runs at every judgement).
    let mut next: Option<i64> = None;
    let mut consider = |t: i64| {
        if t > after_unix_us {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
    };
    if config.terminal_events.is_empty() {
        consider(flow.last_unix_us + secs(config.quiescence_secs));
    } else {
        consider(flow.first_unix_us + secs(config.flow_deadline_secs) + 1);
    }
    let mut failing = false;
    for hop in hops {
        if hop.queue.is_some()
            && let Some(published) = hop.published_unix_us
            && hop.delivered_unix_us.is_none()
        {
            consider(published + ms(config.queue_wait_ms) + 1);
        }
        if let Some(delivered) = hop.delivered_unix_us
            && hop.processed_unix_us.is_none()
        {
            consider(delivered + ms(config.processing_ms) + 1);
        }
        failing |= hop.failed && hop.processed_unix_us.is_none();
    }
    if failing {
        // A retrying consumer fails once the processing time passes after
        // its last error (or the flow's last activity).
        consider(flow.last_unix_us + ms(config.processing_ms));
        for span in flow.spans.iter().filter(|s| s.status.is_error()) {
            consider(span.end_unix_us + ms(config.processing_ms));
        }
    }
    next
}

fn secs(s: u64) -> i64 {
    s as i64 * 1_000_000
}

fn reason_at(index: usize, hop: &Hop, message: String) -> FlowReason {
    FlowReason {
        hop: Some(index),
        queue: hop.queue.as_deref().map(str::to_owned),
        service: hop
            .consumer
            .as_deref()
            .or(hop.producer.as_deref())
            .map(str::to_owned),
        message,
    }
}

/// (event type, publishing service) in publish order.
fn timeline(flow: &FlowState) -> Vec<(String, String)> {
    flow.messages_in_order()
        .into_iter()
        .filter_map(|(_, r)| {
            let m = r.representative()?;
            let service = r
                .publish
                .as_ref()
                .and_then(|p| p.service.clone())
                .or_else(|| m.properties.app_id.clone());
            Some((
                m.properties.kind.clone()?,
                service.unwrap_or_else(|| "an unknown service".into()),
            ))
        })
        .collect()
}

/// A failure event's own explanation: a `reason` field in its JSON body.
fn failure_detail(flow: &FlowState, kind: &str) -> Option<String> {
    let record = flow
        .messages
        .values()
        .find(|r| r.event_type() == Some(kind))?;
    let body = record.representative()?.body.as_ref()?;
    let json: serde_json::Value = serde_json::from_str(&body.content).ok()?;
    ["/reason", "/data/reason", "/error"]
        .iter()
        .find_map(|p| json.pointer(p).and_then(|v| v.as_str()).map(str::to_owned))
}

fn stuck(
    flow: &FlowState,
    hops: &[Hop],
    config: &CorrelationConfig,
    now: i64,
) -> Option<FlowReason> {
    for (i, hop) in hops.iter().enumerate() {
        if hop.unroutable {
            let message = format!(
                "unroutable: published to {:?} with routing key {:?}, no queue bound",
                hop.exchange, hop.routing_key
            );
            return Some(reason_at(i, hop, message));
        }
        let (Some(queue), Some(published)) = (&hop.queue, hop.published_unix_us) else {
            continue;
        };
        match hop.delivered_unix_us {
            None if now - published > config.queue_wait_ms as i64 * 1000 => {
                let waited = (now - published) / 1_000_000;
                return Some(reason_at(
                    i,
                    hop,
                    format!("waiting in {queue} for {waited} s, not delivered"),
                ));
            }
            Some(delivered)
                if hop.processed_unix_us.is_none()
                    && now - delivered > config.processing_ms as i64 * 1000 =>
            {
                // Only a consumer known to trace its processing can be said not to have finished.
                let consumer = hop.consumer.as_deref()?;
                let traced = flow.spans.iter().any(|s| &*s.service == consumer);
                let moved_on = flow.messages.values().any(|r| {
                    r.publish.as_ref().is_some_and(|p| {
                        p.service.as_deref() == Some(consumer) && p.observed_unix_us >= delivered
                    })
                });
                if traced && !moved_on {
                    let waited = (now - delivered) / 1_000_000;
                    return Some(reason_at(
                        i,
                        hop,
                        format!(
                            "delivered to {consumer} from {queue} {waited} s ago, not processed"
                        ),
                    ));
                }
            }
            _ => {}
        }
    }
    if !config.terminal_events.is_empty()
        && now - flow.first_unix_us > secs(config.flow_deadline_secs)
    {
        return Some(FlowReason {
            message: format!(
                "no terminal event ({}) within {} s",
                config.terminal_events.join(", "),
                config.flow_deadline_secs
            ),
            ..Default::default()
        });
    }
    None
}
