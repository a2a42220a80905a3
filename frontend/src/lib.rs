//! flowscope's web UI: a Leptos client-side app, compiled to wasm and served
//! by the `flowscope` binary (see `scripts/build-ui`).
//!
//! - [`stream`]: `use_live_stream()` opens `/api/stream` and folds its
//!   messages into the [`state::DashboardState`] (a pure reducer, tested
//!   natively), provided to every page as context.
//! - [`api`]: the REST calls and their JSON.
//! - [`auth`]: the bearer token (asked for on a 401, kept in localStorage)
//!   and the server's UI config, as the [`auth::Session`] context.
//! - [`routes`]: one file per page, each with its own URL.
//! - [`rows`]: keyed live rows, one signal per row, so that an update
//!   patches only the rows and cells that changed (the diff is pure).
//! - [`layout`]: the pipeline diagram's geometry (pure).
//! - [`format`], [`components`]: how numbers, times and small widgets look.
//!
//! Text from messages (bodies, headers, names) is only ever rendered as
//! text nodes, which Leptos escapes; nothing here sets inner HTML.

pub mod api;
pub mod auth;
pub mod components;
pub mod format;
pub mod json;
pub mod layout;
pub mod number;
pub mod routes;
pub mod rows;
pub mod sort;
pub mod state;
pub mod stream;
pub mod text;
pub mod wire;

use leptos::prelude::*;
use leptos_router::components::{A, Route, Router, Routes};
use leptos_router::path;

use crate::stream::{ConnectionState, use_live, use_live_stream};

/// The whole app: the header, then the page of the URL.
#[component]
pub fn App() -> impl IntoView {
    auth::provide_session();
    provide_context(use_live_stream());
    view! {
        <Router>
            <Header/>
            <main id="main">
                <auth::SignIn/>
                <Routes fallback=|| view! { <routes::NotFound/> }>
                    <Route path=path!("/") view=routes::pipeline::PipelinePage/>
                    <Route path=path!("/flows") view=routes::flows::FlowsPage/>
                    <Route path=path!("/flows/:id") view=routes::flow::FlowPage/>
                    <Route path=path!("/queues") view=routes::queues::QueuesPage/>
                    <Route path=path!("/queues/:vhost/:queue") view=routes::queue::QueuePage/>
                    <Route path=path!("/stuck") view=routes::stuck::StuckPage/>
                    <Route path=path!("/alerts") view=routes::alerts::AlertsPage/>
                    <Route path=path!("/process") view=routes::process::ProcessPage/>
                    <Route path=path!("/demo") view=routes::demo::DemoPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// Navigation, the connection indicator, drop counters and the theme switch.
#[component]
fn Header() -> impl IntoView {
    let live = use_live();
    let connection = live.connection;
    let active_alerts = Memo::new(move |_| live.state.with(|s| s.active_alerts().len()));
    let demo = Memo::new(move |_| live.state.with(|s| s.stats.demo));
    let dropped = Memo::new(move |_| {
        live.state.with(|s| {
            (
                s.stats.observations_dropped,
                s.stats.stream_lagged,
                s.num_flows_evicted,
            )
        })
    });
    view! {
        <header class="top">
            <a class="skip" href="#main">"Skip to content"</a>
            <A href="/" attr:class="brand">"flowscope"</A>
            <nav aria-label="Views">
                <A href="/" exact=true>"Pipeline"</A>
                <A href="/flows">"Flows"</A>
                <A href="/queues">"Queues"</A>
                <A href="/stuck">"Stuck"</A>
                <A href="/alerts">
                    "Alerts"
                    <Show when=move || { active_alerts.get() > 0 }>
                        " "
                        <span class="count-badge">{move || active_alerts.get()}</span>
                    </Show>
                </A>
                <A href="/process">"Process"</A>
                <Show when=move || demo.get()>
                    <A href="/demo">"Demo"</A>
                </Show>
            </nav>
            <span class="spacer"></span>
            <span
                class="dropped"
                class:warn=move || { dropped.get().0 + dropped.get().1 > 0 }
                title="observations the server dropped (over capacity) · stream updates this page missed (it got a fresh snapshot instead) · flows beyond the 1000 kept here"
            >
                {move || {
                    let (observations, lagged, evicted) = dropped.get();
                    format!("dropped: {observations} obs · {lagged} updates · {evicted} flows")
                }}
            </span>
            <span
                class=move || format!("conn conn-{}", connection.get().label())
                title=move || connection.get().explain()
                role="status"
                aria-live="polite"
            >
                <span class="dot" aria-hidden="true"></span>
                {move || connection.get().label()}
            </span>
            <auth::SessionBadge/>
            <ThemeToggle/>
        </header>
        <Show when=move || {
            matches!(connection.get(), ConnectionState::Stale | ConnectionState::Reconnecting)
        }>
            <p class="banner" role="alert">{move || connection.get().explain()}</p>
        </Show>
    }
}

/// Light or dark: the system's choice until the user picks one (kept in localStorage).
#[component]
fn ThemeToggle() -> impl IntoView {
    let dark = RwSignal::new(initial_dark());
    let toggle = move |_| {
        let next = !dark.get_untracked();
        dark.set(next);
        let theme = if next { "dark" } else { "light" };
        if let Some(root) = document().document_element() {
            let _ = root.set_attribute("data-theme", theme);
        }
        if let Some(storage) = window().local_storage().ok().flatten() {
            let _ = storage.set_item(THEME_KEY, theme);
        }
    };
    view! {
        <button class="theme" on:click=toggle aria-label="Switch between light and dark theme">
            {move || if dark.get() { "☀ light" } else { "☾ dark" }}
        </button>
    }
}

const THEME_KEY: &str = "flowscope.theme";

/// The stored theme (applied to the page), else the system's preference.
fn initial_dark() -> bool {
    let stored = window()
        .local_storage()
        .ok()
        .flatten()
        .and_then(|s| s.get_item(THEME_KEY).ok().flatten());
    match stored.as_deref() {
        Some(theme @ ("dark" | "light")) => {
            if let Some(root) = document().document_element() {
                let _ = root.set_attribute("data-theme", theme);
            }
            theme == "dark"
        }
        _ => window()
            .match_media("(prefers-color-scheme: dark)")
            .ok()
            .flatten()
            .is_some_and(|m| m.matches()),
    }
}
