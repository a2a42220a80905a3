//! Small pieces the pages share: status badges, sparklines, error boxes.

use flowscope_model::{AlertState, FlowStatus, Severity};
use leptos::prelude::*;

use crate::format;

/// A flow's status as a coloured badge.
#[component]
pub fn StatusBadge(status: FlowStatus) -> impl IntoView {
    view! {
        <span class=format!("badge status-{}", status.as_str())>
            {format::status_label(status)}
        </span>
    }
}

/// An alert's state and severity as badges.
#[component]
pub fn AlertBadge(state: AlertState, severity: Severity) -> impl IntoView {
    view! {
        <span class=format!("badge alert-{}", state.as_str())>{state.as_str()}</span>
        " "
        <span class=format!("badge severity-{}", severity.as_str())>{severity.as_str()}</span>
    }
}

/// The points of a polyline drawing `values` in a `width`×`height` box
/// (the highest value at the top; all zero: a flat line at the bottom).
pub fn polyline_points(values: &[(i64, u64)], width: f64, height: f64) -> String {
    let (Some(first), Some(last)) = (values.first(), values.last()) else {
        return String::new();
    };
    let span = (last.0 - first.0).max(1) as f64;
    let max = values.iter().map(|v| v.1).max().unwrap_or(0).max(1) as f64;
    values
        .iter()
        .map(|(t, v)| {
            let x = (*t - first.0) as f64 / span * width;
            let y = height - (*v as f64 / max) * (height - 2.0) - 1.0;
            format!("{x:.1},{y:.1}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A tiny depth chart. Live: a new value redraws only the polyline's points.
#[component]
pub fn Sparkline(#[prop(into)] values: Signal<Vec<(i64, u64)>>) -> impl IntoView {
    let points = move || values.with(|v| polyline_points(v, 100.0, 20.0));
    let label = move || {
        values.with(|v| {
            format!(
                "ready over the last {} points, now {}",
                v.len(),
                v.last().map(|v| v.1).unwrap_or(0)
            )
        })
    };
    view! {
        <svg class="sparkline" viewBox="0 0 100 20" preserveAspectRatio="none" role="img" aria-label=label>
            <polyline points=points></polyline>
        </svg>
    }
}

/// A failed call, said as the server said it.
#[component]
pub fn ErrorBox(message: String) -> impl IntoView {
    view! { <p class="error" role="alert">{message}</p> }
}

/// Shown while a call is on its way.
#[component]
pub fn Loading() -> impl IntoView {
    view! { <p class="muted">"loading…"</p> }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sparklines_span_the_box() {
        let points = polyline_points(&[(0, 0), (5, 10), (10, 5)], 100.0, 20.0);
        assert_eq!(points, "0.0,19.0 50.0,1.0 100.0,10.0");
        assert_eq!(polyline_points(&[], 100.0, 20.0), "");
        assert_eq!(polyline_points(&[(3, 0)], 100.0, 20.0), "0.0,19.0");
    }
}
