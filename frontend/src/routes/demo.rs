//! `/demo`: the demo shop's controls (shown when `stats.demo` is true):
//! orders on demand and the load rate ([`super::demo_load`]), and the fault
//! switches. Each switch posts a `FaultCommand` to `/api/demo/faults`; the
//! page shows which services answered and the switches as they now stand
//! (read from `GET /api/demo` when the page opens).

use std::collections::BTreeMap;

use leptos::prelude::*;
use serde::Deserialize;

use super::demo_load::LoadPanel;
use crate::api::{self, FaultCommand};
use crate::components::ErrorBox;
use crate::format;
use crate::stream::use_live;

/// The shop's services, in the order an order flows through them.
const SERVICES: [&str; 5] = ["order", "payment", "inventory", "shipping", "notification"];
/// Slow-processing delays offered (ms).
const SLOW_MS: [u64; 5] = [0, 100, 500, 2_000, 10_000];

/// The shop's switches, as a service reports them.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct FaultState {
    pub decline_rate: f64,
    pub out_of_stock_rate: f64,
    pub services: BTreeMap<String, ServiceFaults>,
}

/// One service's switches.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default)]
pub struct ServiceFaults {
    pub slow_ms: u64,
    pub paused: bool,
    pub no_ack: bool,
    pub poison_rate: f64,
}

#[component]
pub fn DemoPage() -> impl IntoView {
    let live = use_live();
    let demo = Memo::new(move |_| live.state.with(|s| s.stats.demo));
    let faults = RwSignal::new(FaultState::default());
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let send = move |command: FaultCommand| {
        leptos::task::spawn_local(async move {
            match api::demo_fault(&command).await {
                Ok(answers) => {
                    if let Some(state) = answers
                        .answered
                        .first()
                        .and_then(|r| crate::json::from_value::<FaultState>(&r.state))
                    {
                        faults.set(state);
                    }
                    let mut names: Vec<String> =
                        answers.answered.into_iter().map(|r| r.service).collect();
                    crate::sort::sort(&mut names);
                    outcome.set(Some(Ok(if names.is_empty() {
                        "no service answered: is the shop running?".into()
                    } else {
                        format!("answered: {}", names.join(", "))
                    })));
                }
                Err(e) => outcome.set(Some(Err(e))),
            }
        });
    };
    // The switches and the load rate as they stand (a viewer may read them too).
    let rate = RwSignal::new(None::<f64>);
    let refresh = move || {
        leptos::task::spawn_local(async move {
            match api::demo_status().await {
                Ok(status) => {
                    if let Some(state) = status
                        .faults
                        .and_then(|f| crate::json::from_value::<FaultState>(&f))
                    {
                        faults.set(state);
                    }
                    rate.set(status.rate);
                    outcome.set(Some(Ok(if status.answered.is_empty() {
                        "no service answered: is the shop running?".into()
                    } else {
                        format!("answered: {}", status.answered.join(", "))
                    })));
                }
                Err(e) => outcome.set(Some(Err(e))),
            }
        });
    };
    Effect::new(move |done: Option<bool>| {
        if done != Some(true) && demo.get() {
            refresh();
            return true;
        }
        done.unwrap_or(false)
    });
    view! {
        <section>
            <div class="toolbar">
                <h1>"Demo shop"</h1>
                <span class="muted">"flip a fault, then watch the pipeline, the flows and the alerts react"</span>
            </div>
            <Show
                when=move || demo.get()
                fallback=|| view! { <p class="panel muted">"The demo shop is not running here: start it with " <code>"flowscope demo"</code> "."</p> }
            >
                <div class="toolbar">
                    <button on:click=move |_| send(FaultCommand::Reset)>"Reset every fault"</button>
                    <button on:click=move |_| refresh()>"Refresh"</button>
                    <span role="status">
                        {move || outcome.get().map(|o| match o {
                            Ok(text) => view! { <span class="muted">{text}</span> }.into_any(),
                            Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                        })}
                    </span>
                </div>
                <div class="demo-grid">
                    <LoadPanel rate=rate/>
                    <div class="panel">
                        <h3>"Business faults"</h3>
                        <RateControl
                            label="payments declined"
                            value=Signal::derive(move || faults.with(|f| f.decline_rate))
                            on_set=move |rate| send(FaultCommand::DeclineRate { rate })
                        />
                        <RateControl
                            label="out of stock"
                            value=Signal::derive(move || faults.with(|f| f.out_of_stock_rate))
                            on_set=move |rate| send(FaultCommand::OutOfStockRate { rate })
                        />
                    </div>
                    {SERVICES.into_iter().map(|service| view! { <ServicePanel service=service faults=faults send=send/> }).collect_view()}
                </div>
            </Show>
        </section>
    }
}

/// A 0–100 % slider that sends its value when released.
#[component]
fn RateControl(
    label: &'static str,
    value: Signal<f64>,
    on_set: impl Fn(f64) + Copy + 'static,
) -> impl IntoView {
    let shown = RwSignal::new(None::<f64>);
    view! {
        <label class="control">
            <span>{label}</span>
            <input
                type="range"
                min="0"
                max="100"
                step="5"
                aria-label=label
                prop:value=move || (shown.get().unwrap_or_else(|| value.get()) * 100.0).round().to_string()
                on:input=move |ev| shown.set(crate::number::parse_f64(&event_target_value(&ev)).map(|v| v / 100.0))
                on:change=move |ev| {
                    if let Some(v) = crate::number::parse_f64(&event_target_value(&ev)) {
                        on_set(v / 100.0);
                    }
                    shown.set(None);
                }
            />
            <span class="mono">{move || format::percent(shown.get().unwrap_or_else(|| value.get()))}</span>
        </label>
    }
}

#[component]
fn ServicePanel(
    service: &'static str,
    faults: RwSignal<FaultState>,
    send: impl Fn(FaultCommand) + Copy + 'static,
) -> impl IntoView {
    let mine =
        Memo::new(move |_| faults.with(|f| f.services.get(service).cloned().unwrap_or_default()));
    let name = || service.to_owned();
    view! {
        <div class="panel">
            <h3>{format!("{service} service")}</h3>
            <div class="buttons">
                <button
                    aria-pressed=move || mine.with(|m| m.paused).to_string()
                    on:click=move |_| {
                        let service = name();
                        send(if mine.with_untracked(|m| m.paused) {
                            FaultCommand::Resume { service }
                        } else {
                            FaultCommand::Pause { service }
                        })
                    }
                >
                    {move || if mine.with(|m| m.paused) { "paused: resume" } else { "pause consumer" }}
                </button>
                <button
                    aria-pressed=move || mine.with(|m| m.no_ack).to_string()
                    on:click=move |_| send(FaultCommand::NoAck { service: name(), enabled: !mine.with_untracked(|m| m.no_ack) })
                >
                    {move || if mine.with(|m| m.no_ack) { "never acks: fix" } else { "stop acking" }}
                </button>
            </div>
            <label class="control">
                "slow processing "
                <select
                    prop:value=move || mine.with(|m| m.slow_ms).to_string()
                    on:change=move |ev| {
                        if let Ok(ms) = event_target_value(&ev).parse::<u64>() {
                            send(FaultCommand::Slow { service: name(), ms });
                        }
                    }
                >
                    {SLOW_MS.into_iter().map(|ms| view! {
                        <option value=ms.to_string()>{if ms == 0 { "off".to_owned() } else { format!("{ms} ms") }}</option>
                    }).collect_view()}
                </select>
            </label>
            <RateControl
                label="poison messages"
                value=Signal::derive(move || mine.with(|m| m.poison_rate))
                on_set=move |rate| send(FaultCommand::PoisonRate { service: name(), rate })
            />
        </div>
    }
}
