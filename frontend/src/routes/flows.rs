//! `/flows`: the live flow list. Filter by status (also `?status=` in the
//! URL), service and event type, or to one process-map variant
//! (`?variant=A,B,C`: exactly that path, linked from the process map);
//! type to narrow, press Enter to look an order id, message id or trace id
//! up on the server; pause live updates.

use flowscope_model::FlowSummary;
use leptos::prelude::*;
use leptos_router::NavigateOptions;
use leptos_router::components::A;
use leptos_router::hooks::{use_navigate, use_query_map};

use crate::api;
use crate::components::ErrorBox;
use crate::format;
use crate::rows::LiveRows;
use crate::state::{FlowFilter, STATUSES, filter_flows};
use crate::stream::use_live;

/// Rows shown at most: keeps the page small (about 12 DOM nodes a row).
pub const MAX_ROWS: usize = 60;

#[component]
pub fn FlowsPage() -> impl IntoView {
    let live = use_live();
    let query = use_query_map();
    let status = RwSignal::new(
        query
            .with_untracked(|q| q.get("status"))
            .and_then(|s| format::parse_status(&s)),
    );
    let service = RwSignal::new(query.with_untracked(|q| q.get("service")));
    let event_type = RwSignal::new(query.with_untracked(|q| q.get("event_type")));
    let variant = RwSignal::new(
        query
            .with_untracked(|q| q.get("variant"))
            .and_then(|v| format::parse_variant(&v)),
    );
    let text = RwSignal::new(query.with_untracked(|q| q.get("q")).unwrap_or_default());
    let filter = Memo::new(move |_| FlowFilter {
        status: status.get(),
        service: service.get(),
        event_type: event_type.get(),
        variant: variant.get(),
        text: text.get(),
    });
    // Paused: the flows as they were, still filterable; updates keep arriving underneath.
    let frozen = RwSignal::new(None::<(Vec<FlowSummary>, u64)>);
    let rows = Memo::new(move |_| {
        let filter = filter.get();
        frozen.with(|frozen| match frozen {
            Some((flows, _)) => filter_flows(flows, &filter, MAX_ROWS),
            None => live.state.with(|s| s.filtered_flows(&filter, MAX_ROWS)),
        })
    });
    let toggle_pause = move |_| {
        if frozen.with_untracked(Option::is_some) {
            frozen.set(None);
        } else {
            let (flows, updates) = live
                .state
                .with_untracked(|s| (s.flows.clone(), s.num_updates));
            frozen.set(Some((flows, updates)));
        }
    };
    let missed = move || {
        let at = frozen.with(|f| f.as_ref().map(|f| f.1))?;
        Some(live.state.with(|s| s.num_updates) - at)
    };
    view! {
        <section>
            <div class="toolbar">
                <h1>"Flows"</h1>
                <span class="muted">"one business flow per order: every message, span and hop that belongs to it"</span>
            </div>
            <StatusFilter status=status/>
            <div class="toolbar">
                <Search text=text/>
                <ServiceFilter service=service/>
                <EventTypeFilter event_type=event_type/>
                <VariantFilter variant=variant/>
                <button on:click=toggle_pause aria-pressed=move || frozen.with(Option::is_some).to_string()>
                    {move || if frozen.with(Option::is_some) { "Resume live updates" } else { "Pause live updates" }}
                </button>
                {move || missed().map(|n| view! { <span class="muted">{format!("paused: {n} updates arrived since")}</span> })}
            </div>
            <FlowTable rows=rows/>
        </section>
    }
}

#[component]
fn StatusFilter(status: RwSignal<Option<flowscope_model::FlowStatus>>) -> impl IntoView {
    let live = use_live();
    let counts = Memo::new(move |_| live.state.with(|s| (s.flows.len(), s.status_counts())));
    view! {
        <div class="toolbar" role="group" aria-label="Filter by status">
            <button
                on:click=move |_| status.set(None)
                aria-pressed=move || status.get().is_none().to_string()
            >
                {move || format!("all ({})", counts.with(|c| c.0))}
            </button>
            {STATUSES
                .into_iter()
                .map(|s| {
                    view! {
                        <button
                            on:click=move |_| status.set(Some(s))
                            aria-pressed=move || (status.get() == Some(s)).to_string()
                        >
                            <span class=format!("badge status-{}", s.as_str())>{format::status_label(s)}</span>
                            {move || format!(" {}", counts.with(|c| c.1.of(s)))}
                        </button>
                    }
                })
                .collect_view()}
        </div>
    }
}

/// Narrows the list as you type; Enter looks the text up on the server.
#[component]
fn Search(text: RwSignal<String>) -> impl IntoView {
    let navigate = use_navigate();
    let found = RwSignal::new(None::<Result<Vec<String>, String>>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        let key = text.get_untracked();
        if key.trim().is_empty() {
            return;
        }
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match api::lookup(&key).await.map(|l| l.flow_ids) {
                Ok(ids) if ids.len() == 1 => {
                    navigate(&format::flow_href(&ids[0]), NavigateOptions::default())
                }
                result => found.set(Some(result)),
            }
        });
    };
    view! {
        <form on:submit=submit role="search">
            <input
                type="search"
                placeholder="order id, message id or trace id"
                aria-label="Search flows by order id, message id or trace id"
                prop:value=move || text.get()
                on:input=move |ev| {
                    found.set(None);
                    text.set(event_target_value(&ev));
                }
            />
            " "
            <button type="submit">"Look up"</button>
        </form>
        {move || match found.get() {
            Some(Err(e)) => Some(view! { <ErrorBox message=e/> }.into_any()),
            Some(Ok(ids)) => Some(
                view! {
                    <span>
                        "found: "
                        {ids
                            .into_iter()
                            .map(|id| view! { <A href=format::flow_href(&id)>{id.clone()}</A> " " })
                            .collect_view()}
                    </span>
                }
                .into_any(),
            ),
            None => None,
        }}
    }
}

#[component]
fn ServiceFilter(service: RwSignal<Option<String>>) -> impl IntoView {
    let live = use_live();
    let services = Memo::new(move |_| live.state.with(|s| s.services()));
    view! {
        <label>
            "service "
            <select
                prop:value=move || service.get().unwrap_or_default()
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    service.set((!v.is_empty()).then_some(v));
                }
            >
                <option value="">"all"</option>
                <For each=move || services.get() key=|s| s.clone() let:s>
                    <option value=s.clone()>{s.clone()}</option>
                </For>
            </select>
        </label>
    }
}

#[component]
fn EventTypeFilter(event_type: RwSignal<Option<String>>) -> impl IntoView {
    let live = use_live();
    let types = Memo::new(move |_| live.state.with(|s| s.event_types()));
    view! {
        <label>
            "event type "
            <select
                prop:value=move || event_type.get().unwrap_or_default()
                on:change=move |ev| {
                    let v = event_target_value(&ev);
                    event_type.set((!v.is_empty()).then_some(v));
                }
            >
                <option value="">"all"</option>
                <For each=move || types.get() key=|s| s.clone() let:t>
                    <option value=t.clone()>{t.clone()}</option>
                </For>
            </select>
        </label>
    }
}

/// The process-map variant the list is narrowed to (from `?variant=`), and a way out.
#[component]
fn VariantFilter(variant: RwSignal<Option<Vec<String>>>) -> impl IntoView {
    move || {
        variant.get().map(|steps| {
            view! {
                <span class="chip">
                    "path: " {steps.join(" → ")} " "
                    <button on:click=move |_| variant.set(None) aria-label="Show every path">"✕"</button>
                </span>
            }
        })
    }
}

/// The rows, keyed by flow id: a row is built once while its flow is shown,
/// and an update to the flow patches that row's cells only.
#[component]
pub fn FlowTable(rows: Memo<(Vec<FlowSummary>, usize)>) -> impl IntoView {
    let live_rows = LiveRows::new(move || {
        rows.with(|r| r.0.iter().map(|f| (f.id.clone(), f.clone())).collect())
    });
    view! {
        <table class="flows">
            <thead>
                <tr>
                    <th>"status"</th>
                    <th>"order / flow"</th>
                    <th>"current step"</th>
                    <th>"services"</th>
                    <th class="num">"age"</th>
                    <th class="num">"duration"</th>
                </tr>
            </thead>
            <tbody>
                <For
                    each=move || live_rows.keys().get()
                    key=|id| id.clone()
                    children=move |id| live_rows.row(&id).map(|row| view! { <FlowRow id=id row=row/> })
                />
            </tbody>
        </table>
        <p class="muted">
            {move || {
                let (shown, total) = rows.with(|r| (r.0.len(), r.1));
                if total == 0 {
                    "No flow matches. Flows appear here as the broker and the services report them.".to_owned()
                } else {
                    format!("showing {shown} of {total} matching flows, newest first")
                }
            }}
        </p>
    }
}

/// One flow's row; each cell reads the row's own signal.
#[component]
fn FlowRow(id: String, row: RwSignal<FlowSummary>) -> impl IntoView {
    let live = use_live();
    let status = Memo::new(move |_| row.with(|f| f.status));
    let times = Memo::new(move |_| {
        row.with(|f| {
            (
                f.started_unix_us,
                f.ended_unix_us.unwrap_or(f.last_seen_unix_us),
            )
        })
    });
    let href = format::flow_href(&id);
    let label = move || {
        row.with(|f| {
            f.key
                .clone()
                .unwrap_or_else(|| f.id.chars().take(16).collect())
        })
    };
    let reason = move || {
        row.with(|f| f.reason.as_ref().map(|r| r.message.clone()))
            .map(|message| view! { <span class="reason">{message}</span> })
    };
    view! {
        <tr>
            <td>
                <span class=move || format!("badge status-{}", status.get().as_str())>
                    {move || format::status_label(status.get())}
                </span>
            </td>
            <td class="key">
                <A href=href>{label}</A>
                {reason}
            </td>
            <td>{move || row.with(|f| f.current_step.clone().unwrap_or_default())}</td>
            <td class="services">{move || row.with(|f| f.services.join(", "))}</td>
            <td class="num">{move || format::age(live.now_us.get(), times.get().0)}</td>
            <td class="num">{move || { let (start, end) = times.get(); format::duration_us(end - start) }}</td>
        </tr>
    }
}
