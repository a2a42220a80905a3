//! The alert engine: rules over queue depths, dead letters and flows;
//! alerts that go pending → firing → resolved with their evidence; and
//! notifications to webhooks and Alertmanager.
//!
//! ```text
//! QueueSample, TopologySnapshot, dead letters ─► AlertEngine::observe_*   (facts.rs)
//! stuck / finished / failed flow counts ──────► AlertEngine::set_flow_stats
//!                                                 │ evaluate(now): each rule (rules.rs)
//!                                                 ▼ against the facts, then the state machine (engine.rs)
//!                                Vec<Alert> that changed state ─► live stream, store
//!                                                 └─► NotifierHandle::notify ─► webhooks, Alertmanager (notify.rs, payload.rs)
//! ```
//!
//! - [`AlertConfig`] (`[alerts]` in the configuration): the rules, the default
//!   `dlq-growth` rule (on by default: every dead-letter queue, 1 message in
//!   60 s), the webhook URLs and the Alertmanager URL.
//! - [`AlertEngine`] is pure: every input carries its time and `evaluate`
//!   takes the time, so it is tested without a clock. A rule with
//!   `for_secs = 0` fires at the first evaluation that sees its condition;
//!   a dead-letter alert waits up to [`engine::EVIDENCE_GRACE_US`] for the
//!   dead letters behind it, so that notifications name the reasons.
//! - [`Notifier`] delivers; the engine hands over through a
//!   [`NotifierHandle`] that never blocks.
//!
//! The wire types ([`flowscope_model::Alert`], [`flowscope_model::AlertRule`])
//! and their JSON are documented in the model crate.

pub mod engine;
pub mod facts;
pub mod notify;
pub mod payload;
pub mod rules;

pub use engine::AlertEngine;
pub use notify::{Notifier, NotifierHandle};
pub use rules::AlertConfig;
