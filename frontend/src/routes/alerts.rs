//! `/alerts`: firing and pending alerts with their evidence, the recently
//! resolved ones, and the rules (`GET /api/alerts`, `GET /api/alerts/rules`).
//! The live stream's alert changes trigger a refetch.

use flowscope_model::Alert;
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
    let alerts = api::get_resource(move || {
        version.track();
        api::ALERTS_PATH.to_owned()
    });
    let rules = api::get_resource(|| api::RULES_PATH.to_owned());
    view! {
        <section>
            <div class="toolbar">
                <h1>"Alerts"</h1>
                <span class="muted">"pending → firing once the condition held for the rule's time → resolved"</span>
            </div>
            {move || match api::read::<api::Alerts>(alerts) {
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
            {move || match api::read::<api::Rules>(rules) {
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
fn RulesTable(rules: Vec<api::RuleFields>) -> impl IntoView {
    view! {
        <table>
            <thead><tr><th>"name"</th><th>"kind"</th><th>"condition"</th><th class="num">"for"</th><th>"severity"</th></tr></thead>
            <tbody>
                {rules.into_iter().map(|r| {
                    let RuleRow { name, kind, condition, for_secs, severity } = RuleRow::from_fields(&r);
                    view! {
                        <tr>
                            <td>{name}</td>
                            <td class="mono">{kind}</td>
                            <td class="mono">{condition}</td>
                            <td class="num">{format!("{for_secs} s")}</td>
                            <td><span class=format!("badge severity-{severity}")>{severity.clone()}</span></td>
                        </tr>
                    }
                }).collect_view()}
            </tbody>
        </table>
    }
}

/// What the rules table shows of one rule.
#[derive(Debug, Clone, PartialEq)]
struct RuleRow {
    name: String,
    kind: String,
    /// The kind's own fields, `key = value`, by key.
    condition: String,
    for_secs: u64,
    severity: String,
}

/// Fields of a rule that are not part of its condition.
const RULE_FIELDS: [&str; 4] = ["name", "kind", "for_secs", "severity"];

impl RuleRow {
    /// From the rule's JSON object, with the model's defaults (`for_secs` 0,
    /// severity `warning`).
    fn from_fields(fields: &api::RuleFields) -> Self {
        let text = |key: &str| fields.get(key).and_then(|v| v.as_str()).map(str::to_owned);
        let condition = fields
            .iter()
            .filter(|(k, _)| !RULE_FIELDS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ");
        RuleRow {
            name: text("name").unwrap_or_default(),
            kind: text("kind").unwrap_or_default(),
            condition,
            for_secs: fields.get("for_secs").and_then(|v| v.as_u64()).unwrap_or(0),
            severity: text("severity").unwrap_or_else(|| "warning".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use flowscope_model::{AlertRule, RuleKind, Severity};

    use super::*;

    fn row_of(rule: &AlertRule) -> RuleRow {
        let text = serde_json::to_string(rule).unwrap();
        RuleRow::from_fields(&crate::json::from_str(&text).unwrap())
    }

    #[test]
    fn rule_row_shows_the_kind_fields_as_the_condition() {
        let rule = AlertRule {
            name: "slow-failures".into(),
            kind: RuleKind::FailureRateAbove {
                share: 0.25,
                window_secs: 300,
                min_flows: 20,
            },
            for_secs: 60,
            severity: Severity::Critical,
        };
        assert_eq!(
            row_of(&rule),
            RuleRow {
                name: "slow-failures".into(),
                kind: "failure_rate_above".into(),
                condition: "min_flows = 20, share = 0.25, window_secs = 300".into(),
                for_secs: 60,
                severity: "critical".into(),
            }
        );
    }

    #[test]
    fn rule_row_leaves_out_an_absent_queue_and_keeps_a_string_quoted() {
        let every = AlertRule {
            name: "dlq".into(),
            kind: RuleKind::DlqDepthAbove {
                queue: None,
                threshold: 1,
            },
            for_secs: 0,
            severity: Severity::Warning,
        };
        assert_eq!(row_of(&every).condition, "threshold = 1");
        let one = AlertRule {
            kind: RuleKind::NoConsumers {
                queue: "payment.orders".into(),
            },
            ..every
        };
        assert_eq!(row_of(&one).condition, r#"queue = "payment.orders""#);
        assert_eq!(row_of(&one).severity, "warning");
    }
}
