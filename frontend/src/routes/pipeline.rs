//! `/`: the pipeline. Services, exchanges, queues and dead-letter queues
//! from `GET /api/topology` (refreshed every few seconds), laid out left to
//! right; queue depths from the live stream. Clicking a node shows its details.

use std::time::Duration;

use flowscope_model::FlowStatus;
use leptos::prelude::*;
use leptos_router::components::A;
use wasm_bindgen::JsCast;

use super::pipeline_details::NodeDetails;
use crate::api::{self, Topology};
use crate::components::{ErrorBox, Loading};
use crate::format;
use crate::layout::{self, Edge, FlowOrder, Layout, NODE_H, NODE_W, Node, NodeKind};
use crate::state::{QueueHealth, STATUSES};
use crate::stream::use_live;

/// How often the topology is fetched again.
const TOPOLOGY_REFRESH: Duration = Duration::from_secs(5);
/// Flows whose hops teach the pipeline its row order.
const SAMPLE_FLOWS: usize = 3;

#[component]
pub fn PipelinePage() -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let topology = api::get_resource(move || {
        refresh.track();
        api::TOPOLOGY_PATH.to_owned()
    });
    let interval =
        set_interval_with_handle(move || refresh.update(|n| *n += 1), TOPOLOGY_REFRESH).ok();
    on_cleanup(move || {
        if let Some(handle) = interval {
            handle.clear();
        }
    });
    // Keep the last good topology across refreshes and failed calls.
    let last = RwSignal::new(None::<Topology>);
    let error = RwSignal::new(None::<String>);
    Effect::new(move |_| match api::read::<Topology>(topology) {
        Some(Ok(t)) => {
            last.set(Some(t));
            error.set(None);
        }
        Some(Err(e)) => error.set(Some(e)),
        None => {}
    });
    let order = learn_flow_order();
    let show_idle = RwSignal::new(false);
    let shown = Memo::new(move |_| {
        last.with(|t| {
            t.as_ref().map(|t| {
                if show_idle.get() {
                    (t.clone(), 0)
                } else {
                    layout::without_idle(t)
                }
            })
        })
    });
    // Laid out from the structure only: a refresh that changes counts and
    // rates (every refresh, under load) neither re-lays out nor redraws.
    let structure =
        Memo::new(move |_| shown.with(|t| t.as_ref().map(|(t, _)| layout::structure_of(t))));
    let diagram = Memo::new(move |_| {
        structure.with(|t| t.as_ref().map(|t| order.with(|o| layout::layout(t, o))))
    });
    let styles = Memo::new(move |_| {
        shown.with(|t| {
            t.as_ref()
                .map(|(t, _)| layout::edge_styles(t))
                .unwrap_or_default()
        })
    });
    // Which of the three views to show: changes far more rarely than the diagram.
    let phase = Memo::new(move |_| diagram.with(|l| l.as_ref().map(|l| l.nodes.is_empty())));
    let num_hidden = move || shown.with(|t| t.as_ref().map_or(0, |t| t.1));
    let edges =
        Memo::new(move |_| last.with(|t| t.as_ref().map(|t| t.edges.clone()).unwrap_or_default()));
    let selected = RwSignal::new(None::<Node>);
    view! {
        <section>
            <div class="toolbar">
                <h1>"Pipeline"</h1>
                <span class="muted">"how messages move: publishing services → exchanges → queues → consuming services → dead-letter queues"</span>
            </div>
            <StatusCards/>
            <div class="toolbar">
                <button
                    on:click=move |_| show_idle.update(|s| *s = !*s)
                    aria-pressed=move || show_idle.get().to_string()
                >
                    "show quiet exchanges"
                </button>
                <span class="muted">
                    {move || match num_hidden() {
                        0 => String::new(),
                        n => format!("hidden: exchanges with under 1 % of the messages (control, replies) and their {n} queues"),
                    }}
                </span>
            </div>
            {move || error.get().map(|e| view! { <ErrorBox message=e/> })}
            {move || match phase.get() {
                None => view! { <Loading/> }.into_any(),
                Some(true) => view! {
                    <p class="panel muted">
                        "No topology yet: flowscope polls the broker's management API every few seconds, and learns who publishes from the traffic."
                    </p>
                }.into_any(),
                Some(false) => view! {
                    <div class="pipeline-wrap">
                        <Diagram diagram=diagram styles=styles selected=selected/>
                        <aside class="details panel" aria-live="polite">
                            {move || match selected.get() {
                                None => view! {
                                    <p class="muted">"Select a node (click, or Tab then Enter) for its details and recent flows."</p>
                                }.into_any(),
                                Some(node) => view! { <NodeDetails node=node edges=edges/> }.into_any(),
                            }}
                        </aside>
                    </div>
                }.into_any(),
            }}
        </section>
    }
}

/// The flow order of the pipeline's rows, learned once from the details of
/// the longest live flows (until then, names decide).
fn learn_flow_order() -> RwSignal<FlowOrder> {
    let live = use_live();
    let order = RwSignal::new(FlowOrder::default());
    Effect::new(move |asked: Option<bool>| {
        if asked == Some(true) {
            return true;
        }
        // The longest completed flows went the whole way.
        let mut longest: Vec<(bool, usize, String)> = live.state.with(|s| {
            s.flows
                .iter()
                .map(|f| (f.status == FlowStatus::Completed, f.num_hops, f.id.clone()))
                .collect()
        });
        if longest.is_empty() {
            return false;
        }
        crate::sort::sort_by_key(&mut longest, |(completed, hops, _)| {
            std::cmp::Reverse((*completed, *hops))
        });
        leptos::task::spawn_local(async move {
            let mut details = Vec::new();
            for (_, _, id) in longest.into_iter().take(SAMPLE_FLOWS) {
                if let Ok(detail) = api::flow(&id).await {
                    details.push(detail);
                }
            }
            order.set(FlowOrder::from_flows(&details));
        });
        true
    });
    order
}

/// Flow counts per status, each a link to the filtered flow list.
#[component]
fn StatusCards() -> impl IntoView {
    let live = use_live();
    let counts = Memo::new(move |_| live.state.with(|s| s.status_counts()));
    view! {
        <div class="cards">
            {STATUSES
                .into_iter()
                .map(|status| {
                    view! {
                        <A href=format!("/flows?status={}", status.as_str()) attr:class="card">
                            <span class="n">{move || counts.with(|c| c.of(status))}</span>
                            <span class=format!("l badge status-{}", status.as_str())>
                                {format::status_label(status)}
                            </span>
                        </A>
                    }
                })
                .collect_view()}
            <span class="muted">
                {move || live.state.with(|s| format!("of the {} latest flows", s.flows.len()))}
                <br/>
                <A href="/stuck">"all stuck flows →"</A>
            </span>
        </div>
    }
}

/// The SVG: pan by dragging, zoom with the buttons or Ctrl + wheel.
#[component]
fn Diagram(
    diagram: Memo<Option<Layout>>,
    styles: Memo<layout::EdgeStyles>,
    selected: RwSignal<Option<Node>>,
) -> impl IntoView {
    let size = move || diagram.with(|l| l.as_ref().map_or((1.0, 1.0), |l| (l.width, l.height)));
    // (x, y, zoom): the view box is the diagram's size divided by zoom.
    let view = RwSignal::new((0.0f64, 0.0f64, 1.0f64));
    let drag = RwSignal::new(None::<(i32, i32, f64, f64, f64)>);
    let view_box = move || {
        let (w, h) = size();
        let (x, y, zoom) = view.get();
        format!("{x:.1} {y:.1} {:.1} {:.1}", w / zoom, h / zoom)
    };
    let zoom_by = move |factor: f64| {
        let (w, h) = size();
        view.update(|(x, y, zoom)| {
            let next = (*zoom * factor).clamp(0.4, 4.0);
            // Keep the centre where it is.
            *x += w / *zoom / 2.0 - w / next / 2.0;
            *y += h / *zoom / 2.0 - h / next / 2.0;
            *zoom = next;
        });
    };
    let on_wheel = move |ev: leptos::ev::WheelEvent| {
        if ev.ctrl_key() || ev.meta_key() {
            ev.prevent_default();
            zoom_by(if ev.delta_y() > 0.0 { 1.0 / 1.15 } else { 1.15 });
        }
    };
    let on_down = move |ev: leptos::ev::PointerEvent| {
        let (x, y, zoom) = view.get_untracked();
        drag.set(Some((ev.client_x(), ev.client_y(), x, y, zoom)));
    };
    let on_move = move |ev: leptos::ev::PointerEvent| {
        let Some((cx, cy, x0, y0, zoom)) = drag.get_untracked() else {
            return;
        };
        let width_px = ev
            .current_target()
            .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
            .map_or(1000.0, |svg| svg.client_width().max(1) as f64);
        let scale = size().0 / zoom / width_px;
        let (dx, dy) = ((ev.client_x() - cx) as f64, (ev.client_y() - cy) as f64);
        if dx.abs() + dy.abs() > 3.0 {
            view.set((x0 - dx * scale, y0 - dy * scale, zoom));
        }
    };
    let end_drag = move |_| drag.set(None);
    let nodes = move || diagram.with(|l| l.as_ref().map(|l| l.nodes.clone()).unwrap_or_default());
    let edges = move || diagram.with(|l| l.as_ref().map(|l| l.edges.clone()).unwrap_or_default());
    view! {
        <div>
            <svg
                class="diagram"
                viewBox=view_box
                role="group"
                aria-label="Pipeline diagram"
                on:wheel=on_wheel
                on:pointerdown=on_down
                on:pointermove=on_move
                on:pointerup=end_drag
                on:pointerleave=end_drag
            >
                <ColumnTitles/>
                <For
                    each=edges
                    key=|e| (e.key.clone(), e.path.clone())
                    children=move |e| view! { <EdgeView edge=e styles=styles/> }
                />
                <For
                    each=nodes
                    key=|n| (n.key.clone(), n.x as i64, n.y as i64)
                    children=move |n| view! { <NodeView node=n selected=selected/> }
                />
            </svg>
            <div class="toolbar legend">
                <span class="zoom">
                    <button on:click=move |_| zoom_by(1.25) aria-label="Zoom in">"+"</button>
                    <button on:click=move |_| zoom_by(0.8) aria-label="Zoom out">"−"</button>
                    <button on:click=move |_| view.set((0.0, 0.0, 1.0))>"Reset view"</button>
                </span>
                <span>"Drag to pan, Ctrl + wheel to zoom."</span>
                <Legend/>
            </div>
        </div>
    }
}

/// One edge: its route is fixed, its label and width follow the live styles.
#[component]
fn EdgeView(edge: Edge, styles: Memo<layout::EdgeStyles>) -> impl IntoView {
    let source = edge.source;
    let style = Memo::new(move |_| styles.with(|m| m.get(&source).cloned()));
    let (label, width) = (edge.label, edge.width);
    view! {
        <g>
            <path
                class=format!("edge {}", edge.kind)
                d=edge.path
                stroke-width=move || style.with(|s| s.as_ref().map_or(width, |s| s.width))
            ></path>
            <text class="edge-label" x=edge.label_x y=edge.label_y>
                {move || style.with(|s| s.as_ref().map_or_else(|| label.clone(), |s| s.label.clone()))}
            </text>
        </g>
    }
}

#[component]
fn ColumnTitles() -> impl IntoView {
    let titles = [
        "publishers",
        "exchanges",
        "queues",
        "consumers",
        "dead-letter queues",
    ];
    titles
        .into_iter()
        .enumerate()
        .map(|(i, title)| {
            let x = layout::MARGIN + i as f64 * layout::COLUMN_STEP;
            view! { <text class="column-title" x=x y=14>{title}</text> }
        })
        .collect_view()
}

#[component]
fn Legend() -> impl IntoView {
    view! {
        <span>
            <svg width="22" height="14" aria-hidden="true" class="diagram-legend">
                <rect x="1" y="1" width="20" height="12" rx="6" fill="var(--flight-bg)" stroke="var(--flight)"></rect>
            </svg>
            " service"
        </span>
        <span>
            <svg width="22" height="14" aria-hidden="true">
                <polygon points="4,1 18,1 21,7 18,13 4,13 1,7" fill="var(--info-bg)" stroke="var(--info)"></polygon>
            </svg>
            " exchange"
        </span>
        <span>
            <svg width="22" height="14" aria-hidden="true">
                <rect x="1" y="1" width="20" height="12" rx="2" fill="var(--panel-2)" stroke="var(--edge)"></rect>
            </svg>
            " queue (bar: depth)"
        </span>
        <span>
            <svg width="22" height="14" aria-hidden="true">
                <rect x="1" y="1" width="20" height="12" rx="2" fill="var(--bad-bg)" stroke="var(--bad)"></rect>
            </svg>
            " dead-letter queue holding messages"
        </span>
    }
}

fn short(name: &str, max: usize) -> String {
    if name.chars().count() <= max {
        name.to_owned()
    } else {
        format!("{}…", name.chars().take(max - 1).collect::<String>())
    }
}

/// One node: its shape by kind, its live depth and health for queues.
#[component]
fn NodeView(node: Node, selected: RwSignal<Option<Node>>) -> impl IntoView {
    let live = use_live();
    let is_queue = matches!(node.kind, NodeKind::Queue | NodeKind::DeadLetterQueue);
    // Looked up by its ready-made key: ~200 queue nodes re-check on every update.
    let queue_key = (node.vhost.clone().unwrap_or_default(), node.name.clone());
    let depth = Memo::new(move |_| {
        if !is_queue {
            return None;
        }
        let now = live.now_us.get();
        live.state.with(|s| {
            s.queues.get(&queue_key).map(|q| {
                (
                    q.state.ready,
                    q.state.unacked,
                    q.state.consumers,
                    q.health(now),
                )
            })
        })
    });
    let class = {
        let kind = node.kind;
        let key = node.key.clone();
        move || {
            let health = depth.get().map_or(QueueHealth::Ok, |d| d.3);
            let chosen = selected.with(|s| s.as_ref().is_some_and(|s| s.key == key));
            format!(
                "node {} {}{}",
                kind.class(),
                health.class(),
                if chosen { " selected" } else { "" }
            )
        }
    };
    let shape = match node.kind {
        NodeKind::Publisher | NodeKind::Consumer => view! {
            <rect class="shape" width=NODE_W height=NODE_H rx="20"></rect>
        }
        .into_any(),
        NodeKind::Exchange => view! {
            <polygon class="shape" points=format!("16,0 {a},0 {NODE_W},20 {a},{NODE_H} 16,{NODE_H} 0,20", a = NODE_W - 16.0)></polygon>
        }
        .into_any(),
        NodeKind::Queue | NodeKind::DeadLetterQueue => view! {
            <rect class="shape" width=NODE_W height=NODE_H rx="3"></rect>
            <rect class="fill" x="1.5" y=NODE_H - 6.0 height="4.5" width=move || {
                let ready = depth.get().map_or(0, |d| d.0) as f64;
                // Logarithmic: 1 message shows, 10,000 fill the node.
                ((ready + 1.0).log10() / 4.0).min(1.0) * (NODE_W - 3.0)
            }></rect>
        }
        .into_any(),
    };
    let dlq = node.kind == NodeKind::DeadLetterQueue;
    let sub = move || match depth.get() {
        Some((ready, _, _, _)) if dlq => format!("{ready} dead letters"),
        Some((ready, unacked, _, _)) => format!("{ready} ready · {unacked} unacked"),
        None => match node.kind {
            NodeKind::Publisher => "publishes".to_owned(),
            NodeKind::Consumer => "consumes".to_owned(),
            _ => "exchange".to_owned(),
        },
    };
    let label = crate::text::lowercase(&format!("{:?} {}", node.kind, node.name));
    let title = short(&node.name, 21);
    let transform = format!("translate({},{})", node.x, node.y);
    let pick = {
        let node = node.clone();
        move || selected.set(Some(node.clone()))
    };
    let pick_key = pick.clone();
    view! {
        <g
            class=class
            transform=transform
            tabindex="0"
            role="button"
            aria-label=label
            on:click=move |_| pick()
            on:keydown=move |ev| {
                if ev.key() == "Enter" || ev.key() == " " {
                    ev.prevent_default();
                    pick_key();
                }
            }
        >
            {shape}
            <text x="12" y="17">{title}</text>
            <text class="sub" x="12" y="31">{sub}</text>
        </g>
    }
}
