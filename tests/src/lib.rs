//! Test harness for flowscope's end-to-end tests (the tests are in `tests/`).
//!
//! Everything here is real: [`broker::TestVhost`] is a fresh vhost on the
//! machine's RabbitMQ, created through the management API and deleted after;
//! [`shop::Shop`] runs the demo services as real OS processes (the `shop`
//! binary); [`otlp::SpanSink`] is a real OTLP/gRPC receiver the services
//! export their traces to; [`demo::Demo`] is `flowscope demo` as one real
//! process; [`browser::Browser`] is a real headless Chromium over WebDriver.

pub mod amqp;
pub mod broker;
pub mod browser;
pub mod demo;
pub mod observe;
pub mod otlp;
pub mod receiver;
pub mod server;
pub mod shop;

use std::time::Duration;

/// Polls `check` every 100 ms until it returns `Some`, or panics after `timeout`
/// with `what` and the last state `describe` gives.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check().await {
            Ok(Some(value)) => return value,
            Ok(None) => {}
            Err(err) => last_error = Some(format!("{err:#}")),
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what} (last error: {last_error:?})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
