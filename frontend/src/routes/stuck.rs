//! `/stuck`: stuck flows grouped by where and why (`GET /api/stuck`), with how long.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::{self, StuckGroup};
use crate::components::{ErrorBox, Loading};
use crate::format;
use crate::stream::use_live;

/// Flows listed per group at most.
const MAX_GROUP_FLOWS: usize = 12;
/// Groups (places) shown at most, the largest first; the rest are summed up in one
/// line, so that the page stays small with hundreds of stuck queues.
const MAX_GROUPS: usize = 15;
const REFRESH: Duration = Duration::from_secs(5);

#[component]
pub fn StuckPage() -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let interval = set_interval_with_handle(move || refresh.update(|n| *n += 1), REFRESH).ok();
    on_cleanup(move || {
        if let Some(handle) = interval {
            handle.clear();
        }
    });
    let stuck = LocalResource::new(move || {
        refresh.track();
        api::stuck()
    });
    view! {
        <section>
            <div class="toolbar">
                <h1>"Stuck"</h1>
                <span class="muted">"flows waiting too long in a queue or a consumer, unroutable, or past their deadline"</span>
            </div>
            {move || match stuck.get() {
                None => view! { <Loading/> }.into_any(),
                Some(Err(e)) => view! { <ErrorBox message=e/> }.into_any(),
                Some(Ok(s)) if s.groups.is_empty() => view! {
                    <p class="panel muted">"Nothing is stuck."</p>
                }.into_any(),
                Some(Ok(s)) => {
                    let mut groups = s.groups;
                    crate::sort::sort_by_key(&mut groups, |g| std::cmp::Reverse(g.count));
                    let rest = groups.split_off(groups.len().min(MAX_GROUPS));
                    let rest_flows: u64 = rest.iter().map(|g| g.count as u64).sum();
                    view! {
                        {groups.into_iter().map(|g| view! { <Group group=g/> }).collect_view()}
                        {(!rest.is_empty()).then(|| view! {
                            <p class="panel muted">
                                {format!("and {} in {} more places, each with fewer stuck flows", format::count_of(rest_flows, "flow", "flows"), rest.len())}
                            </p>
                        })}
                    }.into_any()
                }
            }}
        </section>
    }
}

#[component]
fn Group(group: StuckGroup) -> impl IntoView {
    let live = use_live();
    let oldest = group.oldest_started_unix_us;
    let hidden = group.flows.len().saturating_sub(MAX_GROUP_FLOWS);
    view! {
        <div class="panel">
            <h2>
                {if group.place == "flow" {
                    format!("{} stuck", group.count)
                } else {
                    format!("{} stuck at {}", group.count, group.place)
                }}
                <span class="muted">{format!(" · {}", group.why)}</span>
            </h2>
            {oldest.map(|t| view! {
                <p class="muted">"oldest started " {move || format::age(live.now_us.get(), t)}</p>
            })}
            <table>
                <thead><tr><th>"order / flow"</th><th>"reason"</th><th class="num">"stuck for"</th></tr></thead>
                <tbody>
                    {group.flows.into_iter().take(MAX_GROUP_FLOWS).map(|f| {
                        let since = f.last_seen_unix_us;
                        view! {
                            <tr>
                                <td class="mono"><A href=format::flow_href(&f.id)>{f.key.clone().unwrap_or(f.id.clone())}</A></td>
                                <td>{f.reason.map(|r| r.message).unwrap_or_default()}</td>
                                <td class="num">{move || format::duration_us(live.now_us.get() - since)}</td>
                            </tr>
                        }
                    }).collect_view()}
                </tbody>
            </table>
            {(hidden > 0).then(|| view! { <p class="muted">{format!("{hidden} more")}</p> })}
        </div>
    }
}
