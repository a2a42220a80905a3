//! flowscope's collectors: everything it sees enters here.
//!
//! Three kinds of source feed one bounded observation channel
//! ([`pipeline`]), each through its own counting [`pipeline::ObservationSender`]:
//!
//! ```text
//! RabbitMQ amq.rabbitmq.trace ──► firehose::FirehoseCollector ──┐  publish / deliver
//! RabbitMQ DLQs (peek, requeue) ─► dlq::DeadLetterInspector ─────┤  dead_letter
//! RabbitMQ management HTTP API ──► management::ManagementPoller ─┤  queue_sample / topology
//! OTLP gRPC :4317, HTTP :4318 ───► otlp::OtlpReceiver ───────────┘  span
//!                                        │
//!                                        ▼ ObservationRx
//! ```
//!
//! flowscope never harms the broker it watches: its only queues are its own
//! exclusive, auto-delete, length-bounded tap queues; it reads dead-letter
//! queues without removing anything, a bounded number of messages at a
//! bounded rate; and it backs off whenever the broker goes away.

pub mod amqp_value;
pub mod backoff;
pub mod config;
pub mod depth;
pub mod dlq;
pub mod firehose;
pub mod management;
pub mod otlp;
pub mod pipeline;
pub mod redact;
pub mod services;
