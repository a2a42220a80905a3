//! The demo page's load controls: place a batch of orders now
//! (`POST /api/demo/orders`) and set the load generator's rate
//! (`PUT /api/demo/load`, 0 stops it).

use leptos::prelude::*;

use crate::api;
use crate::components::ErrorBox;

/// Batches offered by the "Place N orders" buttons.
const BATCHES: [u32; 3] = [1, 10, 100];
/// Rates offered as one click (orders per second).
const PRESETS: [f64; 4] = [0.0, 1.0, 5.0, 20.0];
/// The highest rate the server accepts.
const MAX_RATE: f64 = 500.0;

/// The rate as the page says it.
pub fn rate_label(rate: Option<f64>) -> String {
    match rate {
        None => "not run by this server".into(),
        Some(r) if r <= 0.0 => "stopped".into(),
        Some(r) => format!("{} orders/s", trim_number(r)),
    }
}

fn trim_number(n: f64) -> String {
    let text = format!("{n:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// What was typed into the rate field, as a rate the server accepts.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    match crate::number::parse_f64(text.trim()) {
        Some(rate) if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) => Ok(rate),
        _ => Err(format!(
            "enter orders per second from 0 (stop) to {MAX_RATE}"
        )),
    }
}

/// "Place N orders" and the load rate; `rate` is the rate in force (none: no generator here).
#[component]
pub fn LoadPanel(rate: RwSignal<Option<f64>>) -> impl IntoView {
    let outcome = RwSignal::new(None::<Result<String, String>>);
    let busy = RwSignal::new(false);
    let typed = RwSignal::new(String::new());
    let place = move |count: u32| {
        busy.set(true);
        leptos::task::spawn_local(async move {
            let result = api::place_orders(count).await.map(|p| {
                let failed = if p.failed > 0 {
                    format!(", {} refused by the order API", p.failed)
                } else {
                    String::new()
                };
                format!("placed {} of {count} orders{failed}", p.placed)
            });
            busy.set(false);
            outcome.set(Some(result));
        });
    };
    let set_rate = move |value: f64| {
        leptos::task::spawn_local(async move {
            let result = api::set_load_rate(value).await.map(|r| {
                rate.set(Some(r.rate));
                format!("load: {}", rate_label(Some(r.rate)))
            });
            outcome.set(Some(result));
        });
    };
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match parse_rate(&typed.get_untracked()) {
            Ok(value) => set_rate(value),
            Err(e) => outcome.set(Some(Err(e))),
        }
    };
    view! {
        <div class="panel load-panel">
            <h3>"Orders"</h3>
            <div class="buttons">
                {BATCHES.into_iter().map(|n| view! {
                    <button on:click=move |_| place(n) disabled=move || busy.get()>
                        {if n == 1 { "Place 1 order".to_owned() } else { format!("Place {n} orders") }}
                    </button>
                }).collect_view()}
            </div>
            <p>"load generator: " <strong class="load-rate">{move || rate_label(rate.get())}</strong></p>
            <Show when=move || rate.get().is_some()>
                <div class="buttons" role="group" aria-label="Load presets">
                    {PRESETS.into_iter().map(|preset| view! {
                        <button
                            aria-pressed=move || (rate.get() == Some(preset)).to_string()
                            on:click=move |_| set_rate(preset)
                        >
                            {if preset == 0.0 { "stop".to_owned() } else { format!("{preset}/s") }}
                        </button>
                    }).collect_view()}
                </div>
                <form class="rate-form" on:submit=submit>
                    <label>
                        "orders/s "
                        <input
                            type="number"
                            min="0"
                            max=MAX_RATE.to_string()
                            step="any"
                            placeholder="0 stops"
                            aria-label="Load rate in orders per second (0 stops)"
                            prop:value=move || typed.get()
                            on:input=move |ev| typed.set(event_target_value(&ev))
                        />
                    </label>
                    " "
                    <button type="submit">"Set rate"</button>
                </form>
            </Show>
            <p role="status">
                {move || outcome.get().map(|o| match o {
                    Ok(text) => view! { <span class="muted">{text}</span> }.into_any(),
                    Err(e) => view! { <ErrorBox message=e/> }.into_any(),
                })}
            </p>
        </div>
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_and_parse_within_bounds() {
        assert_eq!(rate_label(None), "not run by this server");
        assert_eq!(rate_label(Some(0.0)), "stopped");
        assert_eq!(rate_label(Some(2.5)), "2.5 orders/s");
        assert_eq!(rate_label(Some(20.0)), "20 orders/s");
        assert_eq!(parse_rate(" 5 "), Ok(5.0));
        assert_eq!(parse_rate("0"), Ok(0.0));
        assert!(parse_rate("501").unwrap_err().contains("0 (stop) to 500"));
        assert!(parse_rate("-1").is_err());
        assert!(parse_rate("fast").is_err());
    }
}
