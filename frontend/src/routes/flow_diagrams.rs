//! The flow page's two diagrams: a sequence diagram (one lane per service,
//! one arrow per hop) and a waterfall (spans and hops on one time axis,
//! queue wait and processing apart). Geometry is plain functions, tested
//! natively; message text is only ever put into text nodes.

use flowscope_model::{FlowDetail, Hop};
use leptos::prelude::*;

use crate::format;

const LANE_STEP: f64 = 190.0;
const LANE_W: f64 = 150.0;
const SEQ_TOP: f64 = 56.0;
const SEQ_ROW: f64 = 46.0;
/// Arrows drawn at most (the hops beyond are listed as a count).
pub const MAX_HOPS: usize = 60;
/// Waterfall rows at most.
pub const MAX_ROWS: usize = 80;

/// The lanes: every service of the hops, in order of first appearance.
pub fn lanes(hops: &[Hop]) -> Vec<String> {
    let mut lanes: Vec<String> = Vec::new();
    for hop in ordered(hops) {
        let producer = hop.producer.as_deref().unwrap_or("unknown").to_owned();
        let consumer = hop.consumer.as_deref().map(str::to_owned);
        for service in [Some(producer), consumer].into_iter().flatten() {
            if !lanes.contains(&service) {
                lanes.push(service);
            }
        }
    }
    lanes
}

/// Hops in time order (unpublished ones by delivery, then last).
pub fn ordered(hops: &[Hop]) -> Vec<&Hop> {
    let mut sorted: Vec<&Hop> = hops.iter().collect();
    crate::sort::sort_by_key(&mut sorted, |h| {
        h.published_unix_us
            .or(h.delivered_unix_us)
            .unwrap_or(i64::MAX)
    });
    sorted
}

/// The label under a hop's arrow: waits, or what went wrong.
pub fn hop_note(hop: &Hop) -> String {
    if hop.unroutable {
        return "unroutable: no queue took it".into();
    }
    let mut parts = Vec::new();
    if let Some(wait) = hop.queue_wait_us {
        parts.push(format!("wait {}", format::duration_us(wait)));
    }
    if let Some(work) = hop.processing_us {
        parts.push(format!("processing {}", format::duration_us(work)));
    }
    if hop.redeliveries > 0 {
        parts.push(format!("{} redeliveries", hop.redeliveries));
    }
    if let Some(death) = &hop.dead_lettered {
        parts.push(format!(
            "dead-lettered ({}, ×{})",
            death.reason, death.count
        ));
    } else if hop.failed {
        parts.push("processing failed".into());
    }
    if hop.consumer.is_none() && hop.delivered_unix_us.is_none() {
        parts.push(format!(
            "waiting in {}",
            hop.queue.as_deref().unwrap_or("the broker")
        ));
    }
    parts.join(" · ")
}

fn hop_class(hop: &Hop) -> &'static str {
    if hop.unroutable || hop.dead_lettered.is_some() || hop.failed {
        "failed"
    } else if hop.consumer.is_none() {
        "pending"
    } else {
        ""
    }
}

/// One lane per service, one arrow per hop, top to bottom in time order.
#[component]
pub fn SequenceDiagram(detail: FlowDetail) -> impl IntoView {
    let lanes = lanes(&detail.hops);
    let hops: Vec<Hop> = ordered(&detail.hops)
        .into_iter()
        .take(MAX_HOPS)
        .cloned()
        .collect();
    let hidden = detail.hops.len().saturating_sub(MAX_HOPS);
    let start = detail.summary.started_unix_us;
    let lane_x = |name: &str| {
        let i = lanes.iter().position(|l| l == name).unwrap_or(0);
        20.0 + LANE_W / 2.0 + i as f64 * LANE_STEP
    };
    let width = 40.0 + lanes.len().max(2) as f64 * LANE_STEP;
    let height = SEQ_TOP + (hops.len() as f64 + 0.5) * SEQ_ROW + 10.0;
    let heads = lanes
        .iter()
        .enumerate()
        .map(|(i, lane)| {
            let x = 20.0 + i as f64 * LANE_STEP;
            let mid = x + LANE_W / 2.0;
            view! {
                <g>
                    <rect class="lane-head" x=x y="8" width=LANE_W height="30" rx="15"></rect>
                    <text x=mid y="28" text-anchor="middle">{lane.clone()}</text>
                    <line class="lane-line" x1=mid y1="38" x2=mid y2=height></line>
                </g>
            }
        })
        .collect_view();
    let arrows = hops
        .iter()
        .enumerate()
        .map(|(i, hop)| {
            let y = SEQ_TOP + (i as f64 + 0.6) * SEQ_ROW;
            let from = lane_x(hop.producer.as_deref().unwrap_or("unknown"));
            let class = hop_class(hop);
            let to = match &hop.consumer {
                Some(c) => lane_x(c),
                // Not delivered (yet): the arrow stops in the broker, between lanes.
                None => from + LANE_STEP * 0.6,
            };
            let marker = if class == "failed" {
                "url(#arrow-bad)"
            } else {
                "url(#arrow)"
            };
            let path = if (to - from).abs() < 1.0 {
                format!("M{from},{y} h40 v14 h-36", y = y - 7.0)
            } else {
                format!("M{from},{y} L{to},{y}")
            };
            let label_x = if (to - from).abs() < 1.0 {
                from + 60.0
            } else {
                (from + to) / 2.0
            };
            let title = format!(
                "{} → {}",
                hop.event_type.as_deref().unwrap_or("message"),
                hop.queue.as_deref().unwrap_or(&hop.routing_key)
            );
            let when = hop
                .published_unix_us
                .map(|t| format!("+{}", format::duration_us(t - start)))
                .unwrap_or_default();
            view! {
                <g>
                    <path class=format!("arrow {class}") d=path marker-end=marker></path>
                    <text class=format!("label {class}") x=label_x y=y - 6.0>{title}</text>
                    <text class=format!("label {class}") x=label_x y=y + 15.0>{hop_note(hop)}</text>
                    <text class="time" x="2" y=y + 4.0>{when}</text>
                </g>
            }
        })
        .collect_view();
    view! {
        <svg class="seq" viewBox=format!("0 0 {width} {height}") width="100%" style=format!("max-width: {width}px") role="img"
            aria-label="Sequence diagram: one lane per service, one arrow per message">
            <defs>
                <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
                    <path d="M0,0 L10,5 L0,10 z"></path>
                </marker>
                <marker id="arrow-bad" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
                    <path d="M0,0 L10,5 L0,10 z"></path>
                </marker>
            </defs>
            {heads}
            {arrows}
        </svg>
        {(hidden > 0).then(|| view! { <p class="muted">{format!("{hidden} more hops not drawn")}</p> })}
    }
}

/// One row of the waterfall: a label and its bars (start, end, class) in µs.
#[derive(Debug, Clone, PartialEq)]
pub struct WaterfallRow {
    pub label: String,
    pub bars: Vec<(i64, i64, &'static str)>,
    pub note: String,
}

/// The rows (spans and hops, by start time) and the time range they cover.
pub fn waterfall_rows(detail: &FlowDetail) -> (Vec<WaterfallRow>, i64, i64) {
    let mut rows: Vec<(i64, WaterfallRow)> = Vec::new();
    for hop in &detail.hops {
        let mut bars = Vec::new();
        if let (Some(p), Some(d)) = (hop.published_unix_us, hop.delivered_unix_us) {
            bars.push((p, d, "wait"));
        }
        if let (Some(d), Some(done)) = (hop.delivered_unix_us, hop.processed_unix_us) {
            bars.push((d, done, "work"));
        }
        let Some(start) = hop.published_unix_us.or(hop.delivered_unix_us) else {
            continue;
        };
        if bars.is_empty() {
            bars.push((start, start, "wait"));
        }
        let label = format!(
            "{} → {}",
            hop.event_type.as_deref().unwrap_or("message"),
            hop.queue.as_deref().unwrap_or("(no queue)")
        );
        rows.push((
            start,
            WaterfallRow {
                label,
                bars,
                note: hop_note(hop),
            },
        ));
    }
    for span in &detail.spans {
        let class = if span.status.is_error() {
            "span error"
        } else {
            "span"
        };
        rows.push((
            span.start_unix_us,
            WaterfallRow {
                label: format!("{}: {}", span.service, span.name),
                bars: vec![(span.start_unix_us, span.end_unix_us, class)],
                note: format::duration_us(span.end_unix_us - span.start_unix_us),
            },
        ));
    }
    crate::sort::sort_by_key(&mut rows, |(start, _)| *start);
    let t0 = rows
        .iter()
        .flat_map(|(_, r)| r.bars.iter().map(|b| b.0))
        .min()
        .unwrap_or(0);
    let t1 = rows
        .iter()
        .flat_map(|(_, r)| r.bars.iter().map(|b| b.1))
        .max()
        .unwrap_or(t0);
    (
        rows.into_iter().map(|(_, r)| r).collect(),
        t0,
        t1.max(t0 + 1),
    )
}

/// Spans and hops on one time axis.
#[component]
pub fn Waterfall(detail: FlowDetail) -> impl IntoView {
    const LABEL_W: f64 = 300.0;
    const CHART_W: f64 = 640.0;
    const ROW: f64 = 20.0;
    let (rows, t0, t1) = waterfall_rows(&detail);
    let hidden = rows.len().saturating_sub(MAX_ROWS);
    let rows: Vec<WaterfallRow> = rows.into_iter().take(MAX_ROWS).collect();
    let span = (t1 - t0) as f64;
    let x_of = move |t: i64| LABEL_W + (t - t0) as f64 / span * CHART_W;
    let height = 24.0 + rows.len() as f64 * ROW + 4.0;
    let width = LABEL_W + CHART_W + 210.0;
    let ticks = (0..=4)
        .map(|i| {
            let t = t0 + (span * i as f64 / 4.0) as i64;
            let x = x_of(t);
            view! {
                <line class="grid" x1=x y1="18" x2=x y2=height></line>
                <text class="axis" x=x y="12" text-anchor="middle">{format::duration_us(t - t0)}</text>
            }
        })
        .collect_view();
    let body = rows
        .into_iter()
        .enumerate()
        .map(|(i, row)| {
            let y = 24.0 + i as f64 * ROW;
            let end = row.bars.iter().map(|b| b.1).max().unwrap_or(t0);
            let bars = row
                .bars
                .iter()
                .map(|(a, b, class)| {
                    let w = (x_of(*b) - x_of(*a)).max(2.0);
                    view! { <rect class=*class x=x_of(*a) y=y + 3.0 width=w height=ROW - 6.0 rx="2"></rect> }
                })
                .collect_view();
            let label: String = row.label.chars().take(44).collect();
            view! {
                <g>
                    <rect class="row-bg" x="0" y=y width=width height=ROW fill="transparent"></rect>
                    <text x="4" y=y + 14.0>{label}</text>
                    {bars}
                    <text class="axis" x=x_of(end) + 6.0 y=y + 14.0>{row.note}</text>
                </g>
            }
        })
        .collect_view();
    view! {
        <svg class="waterfall" viewBox=format!("0 0 {width} {height}") width="100%" style=format!("max-width: {width}px") role="img"
            aria-label="Waterfall: spans and broker hops on one time axis">
            {ticks}
            {body}
        </svg>
        <p class="legend">
            <span><svg width="14" height="10" aria-hidden="true"><rect width="14" height="10" fill="var(--wait)"></rect></svg>" waiting in a queue"</span>
            <span><svg width="14" height="10" aria-hidden="true"><rect width="14" height="10" fill="var(--work)"></rect></svg>" processing by the consumer"</span>
            <span><svg width="14" height="10" aria-hidden="true"><rect width="14" height="10" fill="var(--info)"></rect></svg>" span"</span>
            <span><svg width="14" height="10" aria-hidden="true"><rect width="14" height="10" fill="var(--bad)"></rect></svg>" failed span"</span>
        </p>
        {(hidden > 0).then(|| view! { <p class="muted">{format!("{hidden} more rows not drawn")}</p> })}
    }
}

#[cfg(test)]
mod tests {
    use flowscope_model::{Death, SpanObservation, SpanStatus};

    use super::*;

    fn hop(event: &str, producer: &str, consumer: Option<&str>, at: i64) -> Hop {
        Hop {
            event_type: Some(event.into()),
            producer: Some(producer.into()),
            consumer: consumer.map(Into::into),
            queue: Some(format!("{}.orders", consumer.unwrap_or("x")).into()),
            published_unix_us: Some(at),
            delivered_unix_us: consumer.map(|_| at + 1_000),
            processed_unix_us: consumer.map(|_| at + 3_000),
            queue_wait_us: consumer.map(|_| 1_000),
            processing_us: consumer.map(|_| 2_000),
            ..Default::default()
        }
    }

    #[test]
    fn lanes_follow_first_appearance_in_time() {
        let hops = vec![
            hop("PaymentProcessed", "payment", Some("inventory"), 20),
            hop("OrderPlaced", "order", Some("payment"), 10),
        ];
        assert_eq!(lanes(&hops), ["order", "payment", "inventory"]);
    }

    #[test]
    fn notes_say_what_happened_at_a_hop() {
        let ok = hop("OrderPlaced", "order", Some("payment"), 0);
        assert_eq!(hop_note(&ok), "wait 1 ms · processing 2 ms");
        let mut dead = ok.clone();
        dead.dead_lettered = Some(Death {
            reason: "rejected".into(),
            count: 3,
            ..Default::default()
        });
        assert!(hop_note(&dead).ends_with("dead-lettered (rejected, ×3)"));
        let waiting = hop("OrderPlaced", "order", None, 0);
        assert_eq!(hop_note(&waiting), "waiting in x.orders");
        let lost = Hop {
            unroutable: true,
            ..waiting
        };
        assert_eq!(hop_note(&lost), "unroutable: no queue took it");
    }

    #[test]
    fn the_waterfall_splits_wait_from_processing_on_one_axis() {
        let detail = FlowDetail {
            hops: vec![hop("OrderPlaced", "order", Some("payment"), 1_000)],
            spans: vec![std::sync::Arc::new(SpanObservation {
                service: "payment".into(),
                name: "process".into(),
                start_unix_us: 500,
                end_unix_us: 4_500,
                status: SpanStatus {
                    code: flowscope_model::StatusCode::Error,
                    message: String::new(),
                },
                ..Default::default()
            })],
            ..Default::default()
        };
        let (rows, t0, t1) = waterfall_rows(&detail);
        assert_eq!((t0, t1), (500, 4_500));
        assert_eq!(rows[0].label, "payment: process", "by start time");
        assert_eq!(rows[0].bars, [(500, 4_500, "span error")]);
        assert_eq!(
            rows[1].bars,
            [(1_000, 2_000, "wait"), (2_000, 4_000, "work")]
        );
    }
}
