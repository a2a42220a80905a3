//! `/process`: the process map learned from the flows (`GET /api/process-map`):
//! event types left to right as they follow each other, transitions with
//! counts and p50/p95 latencies, and the variants with their shares (each
//! links to its flows: `/flows?variant=…`).

use std::collections::BTreeMap;
use std::time::Duration;

use flowscope_model::{ProcessMap, ProcessVariant};
use leptos::prelude::*;
use leptos_router::components::A;

use crate::api;
use crate::components::{ErrorBox, Loading};
use crate::format;
use crate::sort::{self, CollectTree};

const REFRESH: Duration = Duration::from_secs(10);
const STEP_W: f64 = 170.0;
const STEP_H: f64 = 44.0;
const COL: f64 = 310.0;
const ROW: f64 = 80.0;
/// Variants listed at most.
const MAX_VARIANTS: usize = 20;

/// Each step's (column, row): the column is the longest path from a step
/// nothing leads to (cycles cut), rows by count within a column. As `f64`s
/// by `&str`: the map type the pipeline layout uses too (one type fewer).
pub fn place_steps(map: &ProcessMap) -> BTreeMap<&str, (f64, f64)> {
    let mut column: BTreeMap<&str, usize> = map
        .steps
        .iter()
        .map(|s| (s.event_type.as_str(), 0))
        .collect_tree();
    // Bellman-Ford style relaxation, bounded so that a cycle cannot loop forever.
    for _ in 0..map.steps.len() {
        let mut changed = false;
        for t in &map.transitions {
            if t.from == t.to {
                continue;
            }
            let next = column.get(t.from.as_str()).copied().unwrap_or(0) + 1;
            let to = column.entry(t.to.as_str()).or_insert(0);
            if next > *to && next < map.steps.len().max(1) {
                *to = next;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    // A step's count (the last step of that name, as a map would keep):
    // a search rather than one more map type in the wasm.
    let count = |name: &str| {
        map.steps
            .iter()
            .rev()
            .find(|s| s.event_type == name)
            .map_or(0, |s| s.count)
    };
    // By column, then by count (most first), then by name: a sorted list
    // rather than a map of columns (one map type fewer in the wasm).
    let mut steps: Vec<(usize, &str)> = column.iter().map(|(s, c)| (*c, *s)).collect();
    sort::sort_by_key(&mut steps, |&(col, s)| {
        (col, std::cmp::Reverse(count(s)), s)
    });
    let mut placed = BTreeMap::new();
    let mut row = 0;
    for (i, &(col, step)) in steps.iter().enumerate() {
        row = if i > 0 && steps[i - 1].0 == col {
            row + 1
        } else {
            0
        };
        placed.insert(step, (col as f64, row as f64));
    }
    placed
}

#[component]
pub fn ProcessPage() -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let interval = set_interval_with_handle(move || refresh.update(|n| *n += 1), REFRESH).ok();
    on_cleanup(move || {
        if let Some(handle) = interval {
            handle.clear();
        }
    });
    let map = api::get_resource(move || {
        refresh.track();
        api::PROCESS_MAP_PATH.to_owned()
    });
    view! {
        <section>
            <div class="toolbar">
                <h1>"Process map"</h1>
                <span class="muted">"learned from the flows: which event follows which, how often, how fast"</span>
            </div>
            {move || match api::read::<ProcessMap>(map) {
                None => view! { <Loading/> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox message=e/> }.into_any(),
                Some(Ok(m)) if m.steps.is_empty() => view! {
                    <p class="panel muted">"No flow has finished yet: the map is learned from them."</p>
                }.into_any(),
                Some(Ok(m)) => view! {
                    <div class="panel"><MapDiagram map=m.clone()/></div>
                    <div class="panel"><Variants variants=m.variants/></div>
                }.into_any(),
            }}
        </section>
    }
}

#[component]
fn MapDiagram(map: ProcessMap) -> impl IntoView {
    let placed = place_steps(&map);
    let pos = |step: &str| {
        placed
            .get(step)
            .map(|(c, r)| (20.0 + c * COL, 20.0 + r * ROW))
    };
    let cols = placed.values().map(|p| p.0).fold(0.0, f64::max) + 1.0;
    let rows = placed.values().map(|p| p.1).fold(0.0, f64::max) + 1.0;
    let (width, height) = (40.0 + cols * COL, 40.0 + rows * ROW);
    let edges = map
        .transitions
        .iter()
        .filter_map(|t| {
            let ((x1, y1), (x2, y2)) = (pos(&t.from)?, pos(&t.to)?);
            let (sx, sy, ex, ey) = (x1 + STEP_W, y1 + STEP_H / 2.0, x2, y2 + STEP_H / 2.0);
            let path = if ex > sx {
                let bend = (ex - sx) / 2.0;
                format!(
                    "M{sx},{sy} C{},{sy} {},{ey} {ex},{ey}",
                    sx + bend,
                    ex - bend
                )
            } else {
                // Backwards (a retry loop): around underneath.
                format!(
                    "M{sx},{sy} C{},{} {},{} {},{}",
                    sx + 60.0,
                    sy + 70.0,
                    ex - 60.0,
                    ey + 70.0,
                    ex,
                    ey
                )
            };
            let count = format!("{} ×", t.count);
            let times = format!(
                "p50 {} · p95 {}",
                format::duration_us(t.p50_us),
                format::duration_us(t.p95_us)
            );
            let (lx, ly) = ((sx + ex) / 2.0, (sy + ey) / 2.0);
            Some(view! {
                <path class="edge" d=path marker-end="url(#step-arrow)"></path>
                <text class="edge-label" x=lx y=ly - 6.0>{count}</text>
                <text class="edge-label" x=lx y=ly + 14.0>{times}</text>
            })
        })
        .collect_view();
    let steps = map
        .steps
        .iter()
        .filter_map(|s| {
            let (x, y) = pos(&s.event_type)?;
            Some(view! {
                <g transform=format!("translate({x},{y})")>
                    <rect class="step" width=STEP_W height=STEP_H rx="8"></rect>
                    <text x="10" y="19">{s.event_type.clone()}</text>
                    <text class="count" x="10" y="35">{format!("{} seen", s.count)}</text>
                </g>
            })
        })
        .collect_view();
    view! {
        <svg class="process" viewBox=format!("0 0 {width} {height}") width="100%" style=format!("max-width: {width}px") role="img" aria-label="Process map">
            <defs>
                <marker id="step-arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">
                    <path d="M0,0 L10,5 L0,10 z" fill="var(--edge)"></path>
                </marker>
            </defs>
            {edges}
            {steps}
        </svg>
    }
}

#[component]
fn Variants(variants: Vec<ProcessVariant>) -> impl IntoView {
    view! {
        <h2>"Variants"</h2>
        <table>
            <thead><tr><th>"path"</th><th class="num">"flows"</th><th>"share"</th><th>"examples"</th></tr></thead>
            <tbody>
                {variants.into_iter().take(MAX_VARIANTS).map(|v| view! {
                    <tr>
                        <td>
                            <A href=format::variant_href(&v.steps) attr:title="List the flows that took this path">
                                {v.steps.join(" → ")}
                            </A>
                        </td>
                        <td class="num">{v.count}</td>
                        <td>
                            <span class="share-bar" style=format!("width: {:.0}px", v.share * 120.0)></span>
                            " " {format::percent(v.share)}
                        </td>
                        <td>
                            {v.example_flow_ids.into_iter().take(3).map(|id| view! {
                                <A href=format::flow_href(&id)>{format::short_flow_id(&id)}</A>" "
                            }).collect_view()}
                        </td>
                    </tr>
                }).collect_view()}
            </tbody>
        </table>
    }
}

#[cfg(test)]
mod tests {
    use flowscope_model::{ProcessStep, ProcessTransition};

    use super::*;

    fn map(steps: &[(&str, u64)], transitions: &[(&str, &str)]) -> ProcessMap {
        ProcessMap {
            steps: steps
                .iter()
                .map(|(e, c)| ProcessStep {
                    event_type: e.to_string(),
                    count: *c,
                })
                .collect(),
            transitions: transitions
                .iter()
                .map(|(f, t)| ProcessTransition {
                    from: f.to_string(),
                    to: t.to_string(),
                    ..Default::default()
                })
                .collect(),
            variants: vec![],
        }
    }

    #[test]
    fn steps_are_placed_in_order_with_branches_by_count() {
        let m = map(
            &[
                ("OrderPlaced", 10),
                ("PaymentProcessed", 8),
                ("PaymentDeclined", 2),
                ("OrderShipped", 8),
            ],
            &[
                ("OrderPlaced", "PaymentProcessed"),
                ("OrderPlaced", "PaymentDeclined"),
                ("PaymentProcessed", "OrderShipped"),
            ],
        );
        let placed = place_steps(&m);
        assert_eq!(placed["OrderPlaced"], (0.0, 0.0));
        assert_eq!(
            placed["PaymentProcessed"],
            (1.0, 0.0),
            "the commoner branch on top"
        );
        assert_eq!(placed["PaymentDeclined"], (1.0, 1.0));
        assert_eq!(placed["OrderShipped"], (2.0, 0.0));
    }

    #[test]
    fn a_cycle_does_not_loop_forever() {
        let m = map(&[("A", 1), ("B", 1)], &[("A", "B"), ("B", "A")]);
        let placed = place_steps(&m);
        assert_eq!(placed.len(), 2);
    }
}
