//! `/alerts`: firing and pending alerts with their evidence, the recently
//! resolved ones, and the rules (`GET /api/alerts`, `GET /api/alerts/rules`).
//! The live stream's alert changes trigger a refetch.

use flowscope_model::{Alert, AlertRule};
use leptos::prelude::*;
use leptos_router::components::A;

use crate::api;
use crate::components::{AlertBadge, ErrorBox, Loading};
use crate::format;
use crate::stream::use_live;

/// Resolved alerts listed at most.
const MAX_RECENT: usize = 30;

#[component]
pub fn AlertsPage() -> impl IntoView {
    let live = use_live();
    // Any alert change in the stream: fetch again.
    let version = Memo::new(move |_| {
        live.state.with(|s| {
            s.alerts
                .iter()
                .map(|a| a.updated_unix_us)
                .max()
                .unwrap_or(0)
        })
    });
    let alerts = LocalResource::new(move || {
        version.track();
        api::alerts()
    });
    let rules = LocalResource::new(api::rules);
    view! {
        <section>
            <div class="toolbar">
                <h1>"Alerts"</h1>
                <span class="muted">"pending → firing once the condition held for the rule's time → resolved"</span>
            </div>
            {move || match alerts.get() {
                None => view! { <Loading/> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox message=e/> }.into_any(),
                Some(Ok(a)) => {
                    let recent: Vec<Alert> = a
                        .recent
                        .into_iter()
                        .filter(|r| r.resolved_unix_us.is_some())
                        .take(MAX_RECENT)
                        .collect();
                    view! {
                        <h2>{format!("Active ({})", a.active.len())}</h2>
                        {if a.active.is_empty() {
                            view! { <p class="panel muted">"No alert is pending or firing."</p> }.into_any()
                        } else {
                            a.active.into_iter().map(|al| view! { <AlertView alert=al/> }).collect_view().into_any()
                        }}
                        <h2>{format!("Recently resolved ({})", recent.len())}</h2>
                        {recent.into_iter().map(|al| view! { <AlertView alert=al/> }).collect_view()}
                    }
                    .into_any()
                }
            }}
            <h2>"Rules"</h2>
            {move || match rules.get() {
                None => view! { <Loading/> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox message=e/> }.into_any(),
                Some(Ok(r)) => view! { <RulesTable rules=r.rules/> }.into_any(),
            }}
        </section>
    }
}

#[component]
fn AlertView(alert: Alert) -> impl IntoView {
    let live = use_live();
    let e = alert.evidence.clone();
    let pairs = |items: &[(String, u64)]| {
        items
            .iter()
            .map(|(k, n)| format!("{k} ({n})"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let queue_link = alert
        .vhost
        .clone()
        .zip(e.queue.clone())
        .map(|(vhost, queue)| {
            view! { <A href=format::queue_href(&vhost, &queue)>{format!("open {queue}")}</A> }
        });
    let started = alert.started_unix_us;
    view! {
        <div class="panel">
            <div class="headline">
                <AlertBadge state=alert.state severity=alert.severity/>
                <strong>{alert.summary.clone()}</strong>
                <span class="spacer"></span>
                <span class="muted">{move || format!("since {}", format::age(live.now_us.get(), started))}</span>
            </div>
            <dl class="kv">
                <dt>"rule"</dt><dd>{alert.rule.clone()}</dd>
                <dt>"subject"</dt><dd>{alert.subject.clone()}</dd>
                <dt>"value / threshold"</dt><dd>{format!("{} / {}", e.value, e.threshold)}</dd>
                {(!e.top_reasons.is_empty()).then(|| view! { <dt>"reasons"</dt><dd>{pairs(&e.top_reasons)}</dd> })}
                {(!e.failing_services.is_empty()).then(|| view! { <dt>"failing services"</dt><dd>{pairs(&e.failing_services)}</dd> })}
                {(!e.source_queues.is_empty()).then(|| view! { <dt>"from queues"</dt><dd>{e.source_queues.join(", ")}</dd> })}
                {alert.fired_unix_us.map(|t| view! { <dt>"fired"</dt><dd>{format::clock(t)}" UTC"</dd> })}
                {alert.resolved_unix_us.map(|t| view! { <dt>"resolved"</dt><dd>{format::clock(t)}" UTC"</dd> })}
            </dl>
            {queue_link}
        </div>
    }
}

#[component]
fn RulesTable(rules: Vec<AlertRule>) -> impl IntoView {
    view! {
        <table>
            <thead><tr><th>"name"</th><th>"kind"</th><th>"condition"</th><th class="num">"for"</th><th>"severity"</th></tr></thead>
            <tbody>
                {rules.into_iter().map(|r| {
                    let mut condition = serde_json::to_value(&r.kind).unwrap_or_default();
                    if let Some(map) = condition.as_object_mut() {
                        map.remove("kind");
                    }
                    let condition = condition
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", "))
                        .unwrap_or_default();
                    view! {
                        <tr>
                            <td>{r.name.clone()}</td>
                            <td class="mono">{r.kind.as_str()}</td>
                            <td class="mono">{condition}</td>
                            <td class="num">{format!("{} s", r.for_secs)}</td>
                            <td><span class=format!("badge severity-{}", r.severity.as_str())>{r.severity.as_str()}</span></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}
