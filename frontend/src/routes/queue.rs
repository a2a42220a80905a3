//! `/queues/:vhost/:queue`: one queue. Its depth over a chosen window
//! (`GET /api/queues/{vhost}/{queue}`) and, for a dead-letter queue, its
//! messages grouped by reason and failing service, with redrive and purge.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use crate::api::{self, DeadLetterGroup, DeadLetters, HistoryPoint, QueueDetail};
use crate::components::{ErrorBox, Loading};
use crate::format;
use crate::stream::use_live;

/// Windows offered for the chart (seconds, label).
const WINDOWS: [(i64, &str); 5] = [
    (60, "1 min"),
    (300, "5 min"),
    (900, "15 min"),
    (3600, "1 h"),
    (86_400, "24 h"),
];
/// How often the chart and the dead letters are fetched again.
const REFRESH: Duration = Duration::from_secs(5);
/// Dead letters listed per group at most.
const MAX_GROUP_MESSAGES: usize = 20;

#[component]
pub fn QueuePage() -> impl IntoView {
    let live = use_live();
    let params = use_params_map();
    let param = move |name: &str| {
        params.with(|p| {
            p.get(name)
                .map(|s| format::decode_segment(&s))
                .unwrap_or_default()
        })
    };
    let vhost = Memo::new(move |_| param("vhost"));
    let name = Memo::new(move |_| param("queue"));
    let window = RwSignal::new(300i64);
    let refresh = RwSignal::new(0u32);
    let interval = set_interval_with_handle(move || refresh.update(|n| *n += 1), REFRESH).ok();
    on_cleanup(move || {
        if let Some(handle) = interval {
            handle.clear();
        }
    });
    let detail = api::get_resource(move || {
        refresh.track();
        api::queue_detail_path(&vhost.get(), &name.get(), window.get())
    });
    let entry = Memo::new(move |_| {
        live.state
            .with(|s| s.queue(&vhost.get(), &name.get()).map(|q| q.state.clone()))
    });
    let is_dlq = Memo::new(move |_| {
        entry.with(|e| e.as_ref().is_some_and(|q| q.is_dead_letter_queue))
            || matches!(api::read::<QueueDetail>(detail), Some(Ok(d)) if d.queue.is_dead_letter_queue)
    });
    view! {
        <section>
            <p><A href="/queues">"← all queues"</A></p>
            <div class="toolbar">
                <h1>{move || name.get()}</h1>
                <span class="muted">{move || format!("vhost {}", vhost.get())}</span>
                <Show when=move || is_dlq.get()><span class="dlq-tag">"dead-letter queue"</span></Show>
            </div>
            {move || entry.get().map(|q| view! {
                <div class="cards">
                    <div class="card"><span class="n">{q.ready}</span><span class="l">"ready"</span></div>
                    <div class="card"><span class="n">{q.unacked}</span><span class="l">"unacked"</span></div>
                    <div class="card"><span class="n">{q.consumers}</span><span class="l">"consumers"</span></div>
                    <div class="card"><span class="n">{format::rate(q.publish_rate)}</span><span class="l">"in"</span></div>
                    <div class="card"><span class="n">{format::rate(q.deliver_rate)}</span><span class="l">"out"</span></div>
                    <div class="card"><span class="n">{q.oldest_age_secs.map(|a| format::duration_us((a * 1e6) as i64)).unwrap_or_else(|| "–".into())}</span><span class="l">"oldest message"</span></div>
                </div>
            })}
            <div class="panel">
                <div class="toolbar" role="group" aria-label="Chart window">
                    <h2>"Depth"</h2>
                    {WINDOWS.into_iter().map(|(secs, label)| view! {
                        <button on:click=move |_| window.set(secs) aria-pressed=move || (window.get() == secs).to_string()>{label}</button>
                    }).collect_view()}
                </div>
                {move || match api::read::<QueueDetail>(detail) {
                    None => view! { <Loading/> }.into_any(),
                    Some(Err(e)) => view! { <ErrorBox message=e/> }.into_any(),
                    Some(Ok(d)) => view! { <DepthChart points=d.history window_secs=d.window_secs/> }.into_any(),
                }}
            </div>
            <Show when=move || is_dlq.get()>
                <DeadLetterPanel vhost=vhost name=name refresh=refresh/>
            </Show>
        </section>
    }
}

/// Ready (and unacked, when the store has it) over the window.
#[component]
fn DepthChart(points: Vec<HistoryPoint>, window_secs: i64) -> impl IntoView {
    const W: f64 = 900.0;
    const H: f64 = 220.0;
    const LEFT: f64 = 50.0;
    const BOTTOM: f64 = 24.0;
    if points.is_empty() {
        return view! { <p class="muted">"No samples in this window yet."</p> }.into_any();
    }
    let t1 = points.iter().map(|p| p.unix_us).max().unwrap_or(0);
    let t0 = t1 - window_secs * 1_000_000;
    let max = points
        .iter()
        .flat_map(|p| [p.ready, p.unacked])
        .flatten()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let x = move |t: i64| LEFT + (t - t0) as f64 / (t1 - t0).max(1) as f64 * (W - LEFT - 10.0);
    let y = move |v: u64| 10.0 + (1.0 - v as f64 / max) * (H - BOTTOM - 10.0);
    let line = |pick: fn(&HistoryPoint) -> Option<u64>| {
        points
            .iter()
            .filter_map(|p| pick(p).map(|v| format!("{:.1},{:.1}", x(p.unix_us), y(v))))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let ready = line(|p| p.ready);
    let unacked = line(|p| p.unacked);
    let grid = [0.0, 0.5, 1.0]
        .into_iter()
        .map(|f| {
            let v = (max * f).round() as u64;
            view! {
                <line class="grid" x1=LEFT y1=y(v) x2=W - 10.0 y2=y(v)></line>
                <text class="axis" x=LEFT - 6.0 y=y(v) + 4.0 text-anchor="end">{v}</text>
            }
        })
        .collect_view();
    let times = (0..=4)
        .map(|i| {
            let t = t0 + (t1 - t0) * i / 4;
            // The first and last labels align to the plot's edges so that they are never cut off.
            let anchor = match i {
                0 => "start",
                4 => "end",
                _ => "middle",
            };
            view! { <text class="axis" x=x(t) y=H - 6.0 text-anchor=anchor>{format::clock(t)[..8].to_owned()}</text> }
        })
        .collect_view();
    view! {
        <svg class="chart" viewBox=format!("0 0 {W} {H}") role="img" aria-label="Queue depth over time">
            {grid}
            {times}
            <polyline class="unacked" points=unacked></polyline>
            <polyline class="ready" points=ready></polyline>
        </svg>
        <p class="legend"><span>"— ready"</span><span>"- - unacked"</span><span>"times in UTC"</span></p>
    }
    .into_any()
}

/// A DLQ's messages by reason and failing service, with the operator actions.
#[component]
fn DeadLetterPanel(
    vhost: Memo<String>,
    name: Memo<String>,
    refresh: RwSignal<u32>,
) -> impl IntoView {
    let letters = api::get_resource(move || {
        refresh.track();
        api::dead_letters_path(&vhost.get(), &name.get())
    });
    let result = RwSignal::new(None::<Result<String, String>>);
    let confirm_purge = RwSignal::new(false);
    let busy = RwSignal::new(false);
    let run = move |purge: bool| {
        let (vhost, name) = (vhost.get_untracked(), name.get_untracked());
        busy.set(true);
        confirm_purge.set(false);
        leptos::task::spawn_local(async move {
            let outcome = if purge {
                api::purge(&vhost, &name)
                    .await
                    .map(|r| format!("purged {} messages", r.purged))
            } else {
                api::redrive_all(&vhost, &name).await.map(|r| {
                    format!(
                        "moved {} messages back to their queues ({} without x-death left in place)",
                        r.moved, r.left_in_place
                    )
                })
            };
            result.set(Some(outcome));
            busy.set(false);
            refresh.update(|n| *n += 1);
        });
    };
    view! {
        <div class="panel">
            <div class="toolbar">
                <h2>"Dead letters"</h2>
                <button class="primary" on:click=move |_| run(false) disabled=move || busy.get()>"Redrive all"</button>
                {move || if confirm_purge.get() {
                    view! {
                        <span>
                            "Delete every message of this queue? "
                            <button class="danger" on:click=move |_| run(true)>"Yes, purge"</button>
                            " "
                            <button on:click=move |_| confirm_purge.set(false)>"Cancel"</button>
                        </span>
                    }.into_any()
                } else {
                    view! {
                        <button class="danger" on:click=move |_| confirm_purge.set(true) disabled=move || busy.get()>"Purge"</button>
                    }.into_any()
                }}
            </div>
            {move || result.get().map(|r| match r {
                Ok(text) => view! { <p class="ok-box" role="status">{text}</p> }.into_any(),
                Err(e) => view! { <ErrorBox message=e/> }.into_any(),
            })}
            {move || match api::read::<DeadLetters>(letters) {
                None => view! { <Loading/> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox message=e/> }.into_any(),
                Some(Ok(d)) if d.groups.is_empty() => view! {
                    <p class="muted">"No dead letters seen in this queue (flowscope lists those delivered or inspected since it started)."</p>
                }.into_any(),
                Some(Ok(d)) => view! {
                    <p class="muted">{format::count_of(d.count as u64, "message", "messages")}</p>
                    {d.groups.into_iter().map(|g| view! { <GroupView group=g vhost=vhost name=name result=result refresh=refresh/> }).collect_view()}
                }.into_any(),
            }}
        </div>
    }
}

#[component]
fn GroupView(
    group: DeadLetterGroup,
    vhost: Memo<String>,
    name: Memo<String>,
    result: RwSignal<Option<Result<String, String>>>,
    refresh: RwSignal<u32>,
) -> impl IntoView {
    let hidden = group.messages.len().saturating_sub(MAX_GROUP_MESSAGES);
    let redrive_one = move |id: String| {
        let (vhost, name) = (vhost.get_untracked(), name.get_untracked());
        leptos::task::spawn_local(async move {
            let outcome = api::redrive_one(&vhost, &name, &id)
                .await
                .map(|r| format!("moved {} message back ({id})", r.moved));
            result.set(Some(outcome));
            refresh.update(|n| *n += 1);
        });
    };
    view! {
        <h3>
            {format!("{} × {}", group.count, group.reason)}
            <span class="muted">{format!(" · failing service {} · from {}", group.failing_service, group.source_queue)}</span>
        </h3>
        <table>
            <thead><tr><th>"message id"</th><th>"type"</th><th>"deaths"</th><th>"seen"</th><th></th></tr></thead>
            <tbody>
                {group.messages.into_iter().take(MAX_GROUP_MESSAGES).map(|m| {
                    let id = m.properties.message_id.clone();
                    let deaths: i64 = m.deaths.iter().map(|d| d.count).sum();
                    view! {
                        <tr>
                            <td class="mono">{id.clone().unwrap_or_else(|| "(none)".into())}</td>
                            <td>{m.properties.kind.clone().unwrap_or_default()}</td>
                            <td class="num">{deaths}</td>
                            <td class="mono">{format::clock(m.observed_unix_us)}</td>
                            <td>{id.map(|id| view! { <button on:click=move |_| redrive_one(id.clone())>"Redrive"</button> })}</td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
        {(hidden > 0).then(|| view! { <p class="muted">{format!("{hidden} more in this group")}</p> })}
    }
}
