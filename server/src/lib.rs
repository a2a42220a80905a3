//! The flowscope server.
//!
//! ```text
//! collect (collectors) ─► live::engine ─► correlator ─► store (batched writes)
//!                              │            queues      alerts ─► notify (webhook, Alertmanager)
//!                              └─► live bus ─► api (REST, /api/stream SSE) ─► UI
//! ```
//!
//! `flowscope serve` runs it ([`serve`]); `flowscope tap` prints the
//! collectors' observations ([`tap`]); `flowscope demo` runs it beside the
//! demo shop ([`demo`]).

pub mod alerts;
pub mod allocator;
pub mod api;
pub mod audit;
pub mod collect;
pub mod config;
pub mod correlator;
pub mod demo;
pub mod dlq_actions;
pub mod live;
pub mod serve;
pub mod signals;
pub mod store;
pub mod tap;
pub mod ui;
