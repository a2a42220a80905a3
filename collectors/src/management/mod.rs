//! Queue state and topology, fresher than the management UI.
//!
//! The [`poller::ManagementPoller`] combines three sources, and every
//! [`flowscope_model::QueueSample`] says which it came from:
//!
//! - the management API ([`client`]) every second: discovery, rates,
//!   consumers, arguments, and every few seconds the topology (exchanges,
//!   bindings, connections, consumers, dead-letter edges); its numbers lag
//!   the truth by 3–8 s;
//! - passive queue declares every 500 ms: the exact ready count and
//!   consumers, now;
//! - the firehose (see [`crate::firehose`]): routed minus delivered since the
//!   last exact count, fresh to the millisecond.
//!
//! When a dead-letter queue grows, the [`crate::dlq::DeadLetterInspector`]
//! peeks at its messages. A broker without the management plugin gets a
//! clear error and is retried; passive declares go on for the queues known.

pub mod client;
pub mod convert;
pub mod poller;
