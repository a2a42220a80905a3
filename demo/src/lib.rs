//! The demo shop: five services that talk only through RabbitMQ.
//!
//! flowscope needs a real event-driven system to watch. This crate is one: a
//! small e-commerce shop whose services run as separate OS processes, each with
//! its own named AMQP connection, its own SQLite database, and OpenTelemetry
//! traces that follow every order across the broker.
//!
//! ```text
//!  POST /orders ─► order ──OrderPlaced──► payment ──PaymentProcessed──► inventory ──InventoryReserved──► shipping
//!                   ▲                       │  ▲                           │                                │
//!                   │              PaymentFailed └──────InventoryFailed─────┘                          OrderShipped
//!                   └─────────── PaymentFailed / PaymentRefunded / OrderShipped ◄─────────────────────────┘
//!  notification consumes every event on `shop.events`.
//! ```
//!
//! The principal pieces:
//!
//! - [`events`]: the wire format, a versioned JSON [`events::Envelope`] per message.
//! - [`topology`]: exchange, queue and dead-letter names, declared idempotently.
//! - [`amqp`]: connecting with a connection name, publishing with confirms, and
//!   W3C trace context carried in AMQP headers.
//! - [`store`]: each service's SQLite database with an inbox (idempotency) and
//!   an outbox (publish after commit).
//! - [`relay`]: the one publisher per service that drains the outbox with
//!   publisher confirms.
//! - [`consumer`]: the consume loop shared by every service: bounded retries,
//!   dead-lettering, idempotency, fault switches.
//! - [`faults`]: run-time fault switches, flipped over the `shop.control` exchange.
//! - [`services`]: the business logic of the five services.
//! - [`runtime`]: the connect → declare → consume session, rebuilt with backoff
//!   whenever the broker goes away.
//! - [`load`] and [`supervisor`]: the load generator and `shop up`.

pub mod amqp;
pub mod cli;
pub mod config;
pub mod consumer;
pub mod events;
pub mod faults;
pub mod load;
pub mod relay;
pub mod runtime;
pub mod services;
pub mod store;
pub mod supervisor;
pub mod telemetry;
pub mod topology;
