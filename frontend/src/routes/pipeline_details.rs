//! The pipeline page's side panel: what the selected node is, live, with
//! links onwards (its queue page, its recent flows).

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::TopologyEdge;
use crate::components::{Sparkline, StatusBadge};
use crate::format;
use crate::layout::{Node, NodeKind};
use crate::stream::use_live;

/// Recent flows listed for a selected service.
const SERVICE_FLOWS: usize = 8;

/// What the selected node is, with links onwards.
#[component]
pub fn NodeDetails(node: Node, edges: Memo<Vec<TopologyEdge>>) -> impl IntoView {
    match node.kind {
        NodeKind::Queue | NodeKind::DeadLetterQueue => {
            view! { <QueueDetails node=node/> }.into_any()
        }
        NodeKind::Publisher | NodeKind::Consumer => {
            view! { <ServiceDetails node=node edges=edges/> }.into_any()
        }
        NodeKind::Exchange => view! { <ExchangeDetails node=node edges=edges/> }.into_any(),
    }
}

#[component]
fn QueueDetails(node: Node) -> impl IntoView {
    let live = use_live();
    let vhost = node.vhost.clone().unwrap_or_else(|| "/".into());
    let name = node.name.clone();
    let href = format::queue_href(&vhost, &name);
    let entry = Memo::new(move |_| live.state.with(|s| s.queue(&vhost, &name).cloned()));
    let kind = if node.kind == NodeKind::DeadLetterQueue {
        "dead-letter queue"
    } else {
        "queue"
    };
    view! {
        <h2>{node.name.clone()}</h2>
        <p class="muted">{kind}</p>
        {move || match entry.get() {
            None => view! { <p class="muted">"No depth reported yet."</p> }.into_any(),
            Some(q) => {
                let s = q.state.clone();
                view! {
                    <dl>
                        <dt>"ready"</dt><dd>{s.ready}" ("{s.ready_source.clone()}")"</dd>
                        <dt>"unacked"</dt><dd>{s.unacked}</dd>
                        <dt>"consumers"</dt><dd>{s.consumers}</dd>
                        <dt>"in"</dt><dd>{format::rate(s.publish_rate)}</dd>
                        <dt>"out"</dt><dd>{format::rate(s.deliver_rate)}</dd>
                        <dt>"oldest"</dt><dd>{s.oldest_age_secs.map(|a| format::duration_us((a * 1e6) as i64)).unwrap_or_else(|| "–".into())}</dd>
                        <dt>"dead letters to"</dt><dd>{s.dead_letter_queue.clone().unwrap_or_else(|| "–".into())}</dd>
                    </dl>
                    <Sparkline values=q.history.clone()/>
                }
                .into_any()
            }
        }}
        <p><A href=href>"Open the queue page →"</A></p>
    }
}

#[component]
fn ServiceDetails(node: Node, edges: Memo<Vec<TopologyEdge>>) -> impl IntoView {
    let live = use_live();
    let id = node.id.clone();
    let name = node.name.clone();
    let (publishes, consumes) = edges.with_untracked(|edges| {
        let publishes: Vec<String> = edges
            .iter()
            .filter(|e| e.kind == "publish" && e.from == id)
            .map(|e| {
                format!(
                    "{} ({} msgs)",
                    e.to.trim_start_matches("exchange:"),
                    e.messages.unwrap_or(0)
                )
            })
            .collect();
        let consumes: Vec<String> = edges
            .iter()
            .filter(|e| e.kind == "consume" && e.to == id)
            .map(|e| {
                format!(
                    "{}: {} · wait {} · processing {}",
                    e.from.trim_start_matches("queue:"),
                    format::rate(e.rate.unwrap_or(0.0)),
                    format::duration_ms(e.queue_wait_ms.unwrap_or(0.0)),
                    format::duration_ms(e.processing_ms.unwrap_or(0.0))
                )
            })
            .collect();
        (publishes, consumes)
    });
    let recent = Memo::new(move |_| {
        live.state.with(|s| {
            s.flows
                .iter()
                .filter(|f| f.services.contains(&name))
                .take(SERVICE_FLOWS)
                .cloned()
                .collect::<Vec<_>>()
        })
    });
    let list = |items: Vec<String>| {
        if items.is_empty() {
            view! { <p class="muted">"none seen"</p> }.into_any()
        } else {
            view! { <ul>{items.into_iter().map(|i| view! { <li>{i}</li> }).collect_view()}</ul> }
                .into_any()
        }
    };
    view! {
        <h2>{node.name.clone()}</h2>
        <p class="muted">"service"</p>
        <h3>"Publishes to"</h3>
        {list(publishes)}
        <h3>"Consumes"</h3>
        {list(consumes)}
        <h3>"Recent flows"</h3>
        <ul>
            <For
                each=move || recent.get()
                key=|f| (f.id.clone(), f.status, f.last_seen_unix_us)
                children=move |f| {
                    view! {
                        <li>
                            <StatusBadge status=f.status/>
                            " "
                            <A href=format::flow_href(&f.id)>{f.key.clone().unwrap_or(f.id.clone())}</A>
                        </li>
                    }
                }
            />
        </ul>
    }
}

#[component]
fn ExchangeDetails(node: Node, edges: Memo<Vec<TopologyEdge>>) -> impl IntoView {
    let id = node.id.clone();
    let bindings: Vec<String> = edges.with_untracked(|edges| {
        edges
            .iter()
            .filter(|e| e.kind == "binding" && e.from == id)
            .map(|e| {
                format!(
                    "{} ← {}",
                    e.to.trim_start_matches("queue:"),
                    e.routing_keys.join(", ")
                )
            })
            .collect()
    });
    view! {
        <h2>{node.name.clone()}</h2>
        <p class="muted">"exchange"</p>
        <h3>"Bindings (queue ← routing keys)"</h3>
        <ul>{bindings.into_iter().map(|b| view! { <li class="mono">{b}</li> }).collect_view()}</ul>
    }
}
