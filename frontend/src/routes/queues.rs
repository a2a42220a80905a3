//! `/queues`: every queue, live: depth with a sparkline, consumers, rates,
//! oldest message, its dead-letter queue. Growing DLQs come first, in red.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::Sparkline;
use crate::format;
use crate::rows::LiveRows;
use crate::state::{QueueEntry, QueueHealth};
use crate::stream::use_live;

/// Rows shown at most (about 14 DOM nodes a row, so ~700 nodes; measured with
/// 200 queues by `flowscope-bench ui-load`); the filter finds the others.
pub const MAX_ROWS: usize = 50;

/// A queue's identity: `(vhost, name)`. Rows are keyed by it, so a row keeps
/// its DOM while the queue is shown and an update patches only its cells.
type QueueKey = (String, String);
/// What a row shows: the queue and how it is doing.
type QueueRow = (QueueHealth, QueueEntry);

#[component]
pub fn QueuesPage() -> impl IntoView {
    let live = use_live();
    let text = RwSignal::new(String::new());
    let dlq_only = RwSignal::new(false);
    // The rows shown and how many pass the filter; recomputed per update
    // (200 queues: cheap), but it only notifies when a shown row changed.
    let visible = Memo::new(move |_| {
        let now = live.now_us.get();
        let text = crate::text::lowercase(&text.get());
        let dlq_only = dlq_only.get();
        live.state.with(|s| {
            let mut total = 0;
            let mut shown: Vec<(QueueKey, QueueRow)> = Vec::new();
            let passing = s
                .queue_rows(now)
                .into_iter()
                .filter(|(_, q)| !dlq_only || q.state.is_dead_letter_queue)
                .filter(|(_, q)| {
                    text.is_empty() || crate::text::lowercase(&q.state.name).contains(&text)
                });
            for (health, q) in passing {
                total += 1;
                if shown.len() < MAX_ROWS {
                    let key = (q.state.vhost.clone(), q.state.name.clone());
                    shown.push((key, (health, q.clone())));
                }
            }
            (shown, total)
        })
    });
    let rows = LiveRows::new(move || visible.with(|v| v.0.clone()));
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
                        each=move || rows.keys().get()
                        key=|k| k.clone()
                        children=move |key| rows.row(&key).map(|row| view! { <QueueRowView key=key row=row/> })
                    />
                </tbody>
            </table>
            <p class="muted">
                {move || {
                    let (shown, total) = visible.with(|r| (r.0.len(), r.1));
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

/// One queue's row: built once per queue shown; each cell reads the row's
/// own signal, so a change to this queue patches these cells only.
#[component]
fn QueueRowView(key: QueueKey, row: RwSignal<QueueRow>) -> impl IntoView {
    let (vhost, name) = key;
    let href = format::queue_href(&vhost, &name);
    let state = move |f: fn(&flowscope_model::QueueState) -> String| row.with(|r| f(&r.1.state));
    let health = Memo::new(move |_| row.with(|r| r.0));
    let is_dlq = Memo::new(move |_| row.with(|r| r.1.state.is_dead_letter_queue));
    let tag = move || match health.get() {
        QueueHealth::DlqGrowing => Some("DLQ growing"),
        _ if is_dlq.get() => Some("DLQ"),
        QueueHealth::NoConsumers => Some("no consumers"),
        _ => None,
    };
    let history = Memo::new(move |_| row.with(|r| r.1.history.clone()));
    let dead_letters = Memo::new(move |_| row.with(|r| r.1.state.dead_letter_queue.clone()));
    let dlq_link = {
        let vhost = vhost.clone();
        move || match dead_letters.get() {
            Some(d) => view! { <A href=format::queue_href(&vhost, &d)>{d}</A> }.into_any(),
            None => view! { <span class="muted">"–"</span> }.into_any(),
        }
    };
    let oldest = |s: &flowscope_model::QueueState| {
        s.oldest_age_secs
            .map(|a| format::duration_us((a * 1e6) as i64))
            .unwrap_or_else(|| "–".into())
    };
    view! {
        <tr class=move || health.get().class()>
            <td>
                <A href=href>{name}</A>
                {move || tag().map(|t| view! { <span class="dlq-tag">{t}</span> })}
                {(vhost != "/").then(|| view! { <span class="muted">{format!(" ({vhost})")}</span> })}
            </td>
            <td class="num">{move || state(|s| s.ready.to_string())}</td>
            <td><Sparkline values=history/></td>
            <td class="num">{move || state(|s| s.unacked.to_string())}</td>
            <td class="num">{move || state(|s| s.consumers.to_string())}</td>
            <td class="num">{move || state(|s| format::rate(s.publish_rate))}</td>
            <td class="num">{move || state(|s| format::rate(s.deliver_rate))}</td>
            <td class="num">{move || state(|s| format::rate(s.ack_rate))}</td>
            <td class="num">{move || state(oldest)}</td>
            <td>{dlq_link}</td>
        </tr>
    }
}
