//! `/flows/:id`: one flow, drilled into. The headline says its status and
//! why; the sequence diagram and the waterfall show its hops; every message
//! opens to its properties, headers, body and `x-death` history. Fetched
//! again whenever the live stream says the flow changed.

use flowscope_model::{BrokerMessage, FlowDetail, FlowStatus, SpanObservation};
use leptos::prelude::*;
use leptos_router::components::A;
use leptos_router::hooks::use_params_map;

use super::flow_diagrams::{SequenceDiagram, Waterfall};
use crate::api;
use crate::auth::use_session;
use crate::components::{ErrorBox, Loading, StatusBadge};
use crate::format;
use crate::stream::use_live;

/// Messages listed at most.
const MAX_MESSAGES: usize = 100;

#[component]
pub fn FlowPage() -> impl IntoView {
    let live = use_live();
    let params = use_params_map();
    let id = Memo::new(move |_| {
        params.with(|p| {
            p.get("id")
                .map(|s| format::decode_segment(&s))
                .unwrap_or_default()
        })
    });
    // The flow's version in the live stream: a change refetches the detail.
    let version = Memo::new(move |_| {
        live.state
            .with(|s| s.flow(&id.get()).map(|f| (f.last_seen_unix_us, f.status)))
    });
    let detail = api::get_resource(move || {
        version.track();
        api::flow_path(&id.get())
    });
    view! {
        <section>
            <p><A href="/flows">"← all flows"</A></p>
            {move || match api::read::<FlowDetail>(detail) {
                None => view! { <Loading/> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox message=e/> }.into_any(),
                Some(Ok(flow)) => {
                    let json = crate::json::pretty(&api::body(detail).unwrap_or_default());
                    view! { <FlowView detail=flow json=json/> }.into_any()
                }
            }}
        </section>
    }
}

#[component]
fn FlowView(detail: FlowDetail, json: String) -> impl IntoView {
    let s = detail.summary.clone();
    let bad = matches!(s.status, FlowStatus::Failed | FlowStatus::Stuck);
    let reason = s
        .reason
        .clone()
        .map(|r| r.message)
        .unwrap_or_else(|| match s.status {
            FlowStatus::Completed => "completed: every step ran".into(),
            FlowStatus::InFlight => format!(
                "in flight: last step {}",
                s.current_step.clone().unwrap_or_default()
            ),
            _ => String::new(),
        });
    let end = s.ended_unix_us.unwrap_or(s.last_seen_unix_us);
    let errors: Vec<std::sync::Arc<SpanObservation>> = detail
        .spans
        .iter()
        .filter(|sp| sp.status.is_error())
        .cloned()
        .collect();
    let messages: Vec<BrokerMessage> = detail.messages.iter().take(MAX_MESSAGES).cloned().collect();
    let hidden = detail.messages.len().saturating_sub(MAX_MESSAGES);
    view! {
        <div class="panel">
            <div class="headline">
                <StatusBadge status=s.status/>
                <h1>{s.key.clone().unwrap_or_else(|| s.id.clone())}</h1>
                <span class="spacer"></span>
                <CopyJson id=detail.summary.id.clone() json=json/>
            </div>
            <p class="reason-line" class:bad=bad>{reason}</p>
            <div class="facts">
                <span>"flow " <code>{s.id.clone()}</code></span>
                <span>"started " {format::clock(s.started_unix_us)} " UTC"</span>
                <span>"took " {format::duration_us(end - s.started_unix_us)}</span>
                <span>{format!("{} messages · {} spans · {} hops", s.num_messages, s.num_spans, s.num_hops)}</span>
                <span>"services: " {s.services.join(", ")}</span>
                {(!s.trace_ids.is_empty()).then(|| view! { <span>"trace " <code>{s.trace_ids.join(", ")}</code></span> })}
            </div>
            <TraceLinks trace_ids=s.trace_ids.clone()/>
        </div>
        <div class="panel">
            <h2>"Sequence"</h2>
            {if detail.hops.is_empty() {
                view! { <p class="muted">"No message hops seen for this flow."</p> }.into_any()
            } else {
                view! { <SequenceDiagram detail=detail.clone()/> }.into_any()
            }}
        </div>
        <div class="panel">
            <h2>"Timeline"</h2>
            <Waterfall detail=detail.clone()/>
        </div>
        {(!errors.is_empty()).then(|| view! {
            <div class="panel">
                <h2>"Errors"</h2>
                {errors.into_iter().map(|span| view! { <SpanError span=span/> }).collect_view()}
            </div>
        })}
        <div class="panel">
            <h2>{format!("Messages ({})", detail.messages.len())}</h2>
            {messages.into_iter().map(|m| view! { <MessageView message=m/> }).collect_view()}
            {(hidden > 0).then(|| view! { <p class="muted">{format!("{hidden} more messages not listed")}</p> })}
        </div>
    }
}

/// "Open in trace UI" per trace, when the server has a trace link template (`[ui]`).
#[component]
fn TraceLinks(trace_ids: Vec<String>) -> impl IntoView {
    let session = use_session();
    let template = Memo::new(move |_| {
        session
            .config
            .with(|c| c.as_ref().and_then(|c| c.trace_url_template.clone()))
    });
    move || {
        let template = template.get()?;
        let many = trace_ids.len() > 1;
        Some(view! {
            <p class="trace-links">
                {trace_ids.iter().map(|id| {
                    let label = if many {
                        format!("Open trace {} in trace UI", id.chars().take(8).collect::<String>())
                    } else {
                        "Open in trace UI".to_owned()
                    };
                    view! {
                        <a href=format::trace_href(&template, id) target="_blank" rel="noopener noreferrer">{label}" ↗"</a>" "
                    }
                }).collect_view()}
            </p>
        })
    }
}

/// Copies the flow's JSON (`json`, laid out) to the clipboard; also offers
/// it as a download.
#[component]
fn CopyJson(id: String, json: String) -> impl IntoView {
    let href = format!(
        "data:application/json;charset=utf-8,{}",
        String::from(js_sys::encode_uri_component(&json))
    );
    let file = format!("flow-{id}.json");
    let copied = RwSignal::new(None::<&'static str>);
    let copy = move |_| {
        let promise = window().navigator().clipboard().write_text(&json);
        leptos::task::spawn_local(async move {
            let done = wasm_bindgen_futures::JsFuture::from(promise).await;
            copied.set(Some(if done.is_ok() {
                "copied"
            } else {
                "copy failed: use Download"
            }));
        });
    };
    view! {
        <button on:click=copy>"Copy as JSON"</button>
        <a href=href download=file>"Download JSON"</a>
        <span class="muted" role="status">{move || copied.get()}</span>
    }
}

#[component]
fn SpanError(span: std::sync::Arc<SpanObservation>) -> impl IntoView {
    let exceptions: Vec<String> = span
        .events
        .iter()
        .filter(|e| e.name == "exception")
        .map(|e| {
            let get = |k: &str| e.attributes.get(k).and_then(|v| v.as_str()).unwrap_or("");
            format!("{}: {}", get("exception.type"), get("exception.message"))
        })
        .collect();
    view! {
        <div class="span-error">
            <strong>{format!("{}: {}", span.service, span.name)}</strong>
            " "
            <span class="muted">{format::clock(span.start_unix_us)}</span>
            {(!span.status.message.is_empty()).then(|| view! { <p>{span.status.message.clone()}</p> })}
            {exceptions.into_iter().map(|e| view! { <pre>{e}</pre> }).collect_view()}
        </div>
    }
}

/// One message, closed until asked: then properties, headers, body, x-death.
#[component]
fn MessageView(message: BrokerMessage) -> impl IntoView {
    let open = RwSignal::new(false);
    let p = &message.properties;
    let title = format!(
        "{} · {} → {}",
        p.kind.as_deref().unwrap_or("message"),
        if message.exchange.is_empty() {
            "(default exchange)"
        } else {
            &message.exchange
        },
        message.routing_keys.join(", ")
    );
    let dead = !message.deaths.is_empty();
    let when = format::clock(message.observed_unix_us);
    let message = StoredValue::new(message);
    view! {
        <div class="message" class:dead=dead>
            <button on:click=move |_| open.update(|o| *o = !*o) aria-expanded=move || open.get().to_string()>
                <span aria-hidden="true">{move || if open.get() { "▾" } else { "▸" }}</span>
                <span>{title}</span>
                {dead.then(|| view! { <span class="badge status-failed">"dead-lettered"</span> })}
                <span class="spacer"></span>
                <span class="muted mono">{when}</span>
            </button>
            <Show when=move || open.get()>
                {move || message.with_value(|m| view! { <MessageBody message=m.clone()/> })}
            </Show>
        </div>
    }
}

#[component]
fn MessageBody(message: BrokerMessage) -> impl IntoView {
    let p = &message.properties;
    let mut props: Vec<(&str, String)> = vec![
        ("message_id", p.message_id.clone().unwrap_or_default()),
        (
            "correlation_id",
            p.correlation_id.clone().unwrap_or_default(),
        ),
        ("type", p.kind.clone().unwrap_or_default()),
        ("app_id", p.app_id.clone().unwrap_or_default()),
        ("content_type", p.content_type.clone().unwrap_or_default()),
        (
            "timestamp",
            p.timestamp
                .map(|t| format::clock(t * 1_000_000))
                .unwrap_or_default(),
        ),
        (
            "delivery_mode",
            p.delivery_mode.map(|d| d.to_string()).unwrap_or_default(),
        ),
        ("vhost", message.vhost.clone()),
        ("queue", message.queue.clone().unwrap_or_default()),
        (
            "routed to",
            message
                .routed_queues
                .as_ref()
                .map(|q| q.join(", "))
                .unwrap_or_default(),
        ),
        ("service", message.service.clone().unwrap_or_default()),
        (
            "trace",
            message
                .trace
                .as_ref()
                .map(|t| format!("{} / {}", t.trace_id, t.span_id))
                .unwrap_or_default(),
        ),
        ("body size", format!("{} bytes", message.body_size)),
    ];
    props.retain(|(_, v)| !v.is_empty());
    let headers = serde_json::to_value(&p.headers).unwrap_or_default();
    let body = message.body.as_ref().map(|b| {
        let mut note = Vec::new();
        if b.truncated {
            note.push("cut at the capture limit");
        }
        if b.redacted {
            note.push("redacted");
        }
        (format::body_text(b), note.join(", "))
    });
    view! {
        <div class="body">
            <h3>"Properties"</h3>
            <dl class="kv">
                {props.into_iter().map(|(k, v)| view! { <dt>{k}</dt><dd>{v}</dd> }).collect_view()}
            </dl>
            {(!p.headers.is_empty()).then(|| view! {
                <h3>"Headers"</h3>
                <pre>{format::pretty_json(&headers)}</pre>
            })}
            <h3>"Body"</h3>
            {match body {
                Some((text, note)) => view! {
                    {(!note.is_empty()).then(|| view! { <p class="muted">{note}</p> })}
                    <pre>{text}</pre>
                }.into_any(),
                None => view! { <p class="muted">"not captured"</p> }.into_any(),
            }}
            {(!message.deaths.is_empty()).then(|| view! {
                <h3>"x-death"</h3>
                <table>
                    <thead><tr><th>"queue"</th><th>"reason"</th><th>"exchange"</th><th>"routing keys"</th><th class="num">"count"</th><th>"time"</th></tr></thead>
                    <tbody>
                        {message.deaths.iter().map(|d| view! {
                            <tr>
                                <td>{d.queue.clone()}</td>
                                <td>{d.reason.clone()}</td>
                                <td>{d.exchange.clone()}</td>
                                <td>{d.routing_keys.join(", ")}</td>
                                <td class="num">{d.count}</td>
                                <td>{d.time.map(|t| format::clock(t * 1_000_000)).unwrap_or_default()}</td>
                            </tr>
                        }).collect_view()}
                    </tbody>
                </table>
            })}
        </div>
    }
}
