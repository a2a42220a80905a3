//! One module per page; each page has its own URL (see `App`).

pub mod alerts;
pub mod demo;
mod demo_load;
pub mod flow;
mod flow_diagrams;
pub mod flows;
pub mod pipeline;
mod pipeline_details;
pub mod process;
pub mod queue;
pub mod queues;
pub mod stuck;

use leptos::prelude::*;
use leptos_router::components::A;

/// Any other URL.
#[component]
pub fn NotFound() -> impl IntoView {
    view! {
        <section>
            <h1>"Not found"</h1>
            <p>"No page here. " <A href="/">"Back to the pipeline"</A></p>
        </section>
    }
}
