//! `/queues`: every queue, live: depth with a sparkline, consumers, rates,
//! oldest message, its dead-letter queue. Growing DLQs come first, in red.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::Sparkline;
use crate::format;
use crate::state::QueueHealth;
use crate::stream::use_live;

/// Rows shown at most (about 14 DOM nodes a row, so ~700 nodes; measured with
/// 200 queues by `flowscope-bench ui-load`); the filter finds the others.
pub const MAX_ROWS: usize = 50;

#[component]
pub fn QueuesPage() -> impl IntoView {
    let live = use_live();
    let text = RwSignal::new(String::new());
    let dlq_only = RwSignal::new(false);
    let rows = Memo::new(move |_| {
        let now = live.now_us.get();
        let text = crate::text::lowercase(&text.get());
        let dlq_only = dlq_only.get();
        live.state.with(|s| {
            let all: Vec<_> = s
                .queue_rows(now)
                .into_iter()
                .filter(|(_, q)| !dlq_only || q.state.is_dead_letter_queue)
                .filter(|(_, q)| {
                    text.is_empty() || crate::text::lowercase(&q.state.name).contains(&text)
                })
                .collect();
            let total = all.len();
            let shown: Vec<_> = all
                .into_iter()
                .take(MAX_ROWS)
                .map(|(h, q)| (h, q.clone()))
                .collect();
            (shown, total)
        })
    });
    view! {
        <section>
            <div class="toolbar">
                <h1>"Queues"</h1>
                <span class="muted">"depth from the freshest source (firehose, passive declare or management API)"</span>
            </div>
            <div class="toolbar">
                <input
                    type="search"
                    placeholder="filter by name"
                    aria-label="Filter queues by name"
                    prop:value=move || text.get()
                    on:input=move |ev| text.set(event_target_value(&ev))
                />
                <button
                    on:click=move |_| dlq_only.update(|d| *d = !*d)
                    aria-pressed=move || dlq_only.get().to_string()
                >
                    "dead-letter queues only"
                </button>
            </div>
            <table>
                <thead>
                    <tr>
                        <th>"queue"</th>
                        <th class="num">"ready"</th>
                        <th>"last 2 min"</th>
                        <th class="num">"unacked"</th>
                        <th class="num">"consumers"</th>
                        <th class="num">"in"</th>
                        <th class="num">"out"</th>
                        <th class="num">"acks"</th>
                        <th class="num">"oldest"</th>
                        <th>"dead letters to"</th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=move || rows.get().0
                        key=|(h, q)| (q.state.vhost.clone(), q.state.name.clone(), *h, q.state.updated_unix_us, q.history.len())
                        children=move |(health, q)| {
                            let s = q.state;
                            let href = format::queue_href(&s.vhost, &s.name);
                            let dlq_href = s.dead_letter_queue.as_ref().map(|d| format::queue_href(&s.vhost, d));
                            let tag = match health {
                                QueueHealth::DlqGrowing => Some("DLQ growing"),
                                _ if s.is_dead_letter_queue => Some("DLQ"),
                                QueueHealth::NoConsumers => Some("no consumers"),
                                _ => None,
                            };
                            view! {
                                <tr class=health.class()>
                                    <td>
                                        <A href=href>{s.name.clone()}</A>
                                        {tag.map(|t| view! { <span class="dlq-tag">{t}</span> })}
                                        {(s.vhost != "/").then(|| view! { <span class="muted">{format!(" ({})", s.vhost)}</span> })}
                                    </td>
                                    <td class="num">{s.ready}</td>
                                    <td><Sparkline values=q.history/></td>
                                    <td class="num">{s.unacked}</td>
                                    <td class="num">{s.consumers}</td>
                                    <td class="num">{format::rate(s.publish_rate)}</td>
                                    <td class="num">{format::rate(s.deliver_rate)}</td>
                                    <td class="num">{format::rate(s.ack_rate)}</td>
                                    <td class="num">{s.oldest_age_secs.map(|a| format::duration_us((a * 1e6) as i64)).unwrap_or_else(|| "–".into())}</td>
                                    <td>
                                        {match (dlq_href, s.dead_letter_queue.clone()) {
                                            (Some(h), Some(d)) => view! { <A href=h>{d}</A> }.into_any(),
                                            _ => view! { <span class="muted">"–"</span> }.into_any(),
                                        }}
                                    </td>
                                </tr>
                            }
                        }
                    />
                </tbody>
            </table>
            <p class="muted">
                {move || {
                    let (shown, total) = rows.with(|r| (r.0.len(), r.1));
                    if total == 0 {
                        "No queue reported yet.".to_owned()
                    } else {
                        format!("showing {shown} of {total} queues")
                    }
                }}
            </p>
        </section>
    }
}
