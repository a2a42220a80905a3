//! `/stuck`: stuck flows grouped by where and why (`GET /api/stuck`), with how long.

use std::time::Duration;

use leptos::prelude::*;
use leptos_router::components::A;

use crate::api::{self, StuckGroup};
use crate::components::{ErrorBox, Loading};
use crate::format;
use crate::rows::LiveRows;
use crate::stream::use_live;

/// Flows listed per group at most.
const MAX_GROUP_FLOWS: usize = 12;
/// Groups (places) shown at most, the largest first; the rest are summed up in one
/// line, so that the page stays small with hundreds of stuck queues.
const MAX_GROUPS: usize = 15;
const REFRESH: Duration = Duration::from_secs(5);

/// The groups shown, largest first (at most [`MAX_GROUPS`]), and the number
/// of places and of flows left out.
pub fn top_groups(mut groups: Vec<StuckGroup>) -> (Vec<StuckGroup>, usize, u64) {
    crate::sort::sort_by_key(&mut groups, |g| std::cmp::Reverse(g.count));
    let rest = groups.split_off(groups.len().min(MAX_GROUPS));
    let rest_flows = rest.iter().map(|g| g.count as u64).sum();
    (groups, rest.len(), rest_flows)
}

/// A group's identity: where and why.
type GroupKey = (String, String);

#[component]
pub fn StuckPage() -> impl IntoView {
    let refresh = RwSignal::new(0u32);
    let interval = set_interval_with_handle(move || refresh.update(|n| *n += 1), REFRESH).ok();
    on_cleanup(move || {
        if let Some(handle) = interval {
            handle.clear();
        }
    });
    let stuck = api::get_resource(move || {
        refresh.track();
        api::STUCK_PATH.to_owned()
    });
    // A refresh that brings the same groups changes nothing on the page; a
    // changed group redraws alone (groups keyed by place and reason).
    let shown =
        Memo::new(move |_| api::read(stuck).map(|r| r.map(|s: api::Stuck| top_groups(s.groups))));
    let error =
        Memo::new(move |_| shown.with(|s| s.as_ref().and_then(|r| r.as_ref().err().cloned())));
    let phase = Memo::new(move |_| {
        shown.with(|s| match s {
            None => "loading",
            Some(Err(_)) => "error",
            Some(Ok((groups, _, _))) if groups.is_empty() => "empty",
            Some(Ok(_)) => "groups",
        })
    });
    let rows = LiveRows::new(move || {
        shown.with(|s| match s {
            Some(Ok((groups, _, _))) => groups
                .iter()
                .map(|g| ((g.place.clone(), g.why.clone()), g.clone()))
                .collect::<Vec<(GroupKey, StuckGroup)>>(),
            _ => Vec::new(),
        })
    });
    let rest = move || {
        shown.with(|s| match s {
            Some(Ok((_, places, flows))) if *places > 0 => Some((*places, *flows)),
            _ => None,
        })
    };
    view! {
        <section>
            <div class="toolbar">
                <h1>"Stuck"</h1>
                <span class="muted">"flows waiting too long in a queue or a consumer, unroutable, or past their deadline"</span>
            </div>
            {move || match phase.get() {
                "loading" => view! { <Loading/> }.into_any(),
                "error" => view! { <ErrorBox message=error.get().unwrap_or_default()/> }.into_any(),
                "empty" => view! {
                    <p class="panel muted">"Nothing is stuck."</p>
                }.into_any(),
                _ => view! {
                    <For
                        each=move || rows.keys().get()
                        key=|k| k.clone()
                        children=move |k| rows.row(&k).map(|g| view! { <Group group=g/> })
                    />
                    {move || rest().map(|(places, flows)| view! {
                        <p class="panel muted">
                            {format!("and {} in {places} more places, each with fewer stuck flows", format::count_of(flows, "flow", "flows"))}
                        </p>
                    })}
                }.into_any(),
            }}
        </section>
    }
}

/// One place: redrawn when its group changes (a new flow, a new count).
#[component]
fn Group(group: RwSignal<StuckGroup>) -> impl IntoView {
    move || view! { <GroupPanel group=group.get()/> }
}

#[component]
fn GroupPanel(group: StuckGroup) -> impl IntoView {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn group(place: &str, count: usize) -> StuckGroup {
        StuckGroup {
            place: place.into(),
            why: "waiting".into(),
            count,
            ..Default::default()
        }
    }

    #[test]
    fn the_largest_places_are_shown_and_the_rest_summed_up() {
        let groups = (0..MAX_GROUPS + 3)
            .map(|i| group(&format!("q{i}"), i + 1))
            .collect();
        let (shown, places, flows) = top_groups(groups);
        assert_eq!(shown.len(), MAX_GROUPS);
        assert_eq!(
            shown[0].place,
            format!("q{}", MAX_GROUPS + 2),
            "largest first"
        );
        assert_eq!(places, 3);
        assert_eq!(flows, 1 + 2 + 3);
        let (few, places, flows) = top_groups(vec![group("a", 1), group("b", 5)]);
        assert_eq!(
            few.iter().map(|g| g.place.as_str()).collect::<Vec<_>>(),
            ["b", "a"]
        );
        assert_eq!((places, flows), (0, 0));
    }
}
