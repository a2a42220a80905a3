//! AMQP plumbing: named connections, confirmed publishes, trace context in headers.

use std::time::Duration;

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator};
use opentelemetry_sdk::propagation::TraceContextPropagator;

/// How long a publish may wait for the broker's confirm before it counts as failed.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects with `connection_name` = the service name, so the broker (and
/// flowscope) can tell which service owns which connection.
pub async fn connect(url: &str, connection_name: &str) -> lapin::Result<Connection> {
    let props = ConnectionProperties::default()
        .with_connection_name(LongString::from(connection_name))
        .with_client_property("product".into(), "flowscope demo shop".into());
    Connection::connect(url, props).await
}

/// Why a publish did not go through.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker connection failed while publishing: {0}")]
    Amqp(#[from] lapin::Error),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("no publisher confirm within {CONFIRM_TIMEOUT:?}")]
    ConfirmTimeout,
}

/// A channel in confirm mode: every publish waits for the broker's ack.
#[derive(Debug, Clone)]
pub struct ConfirmedPublisher {
    channel: Channel,
}

impl ConfirmedPublisher {
    /// Opens a channel on `connection` and switches it to confirm mode.
    pub async fn open(connection: &Connection) -> lapin::Result<Self> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok(Self { channel })
    }

    /// The underlying channel, for declarations.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// Publishes and waits until the broker has taken responsibility for the message.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> Result<(), PublishError> {
        let confirm = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| PublishError::ConfirmTimeout)??;
        if confirmation.is_nack() {
            return Err(PublishError::Nacked);
        }
        Ok(())
    }
}

/// Writes W3C trace context into an AMQP header table, as long strings.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut FieldTable);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0
            .insert(key.into(), AMQPValue::LongString(value.into()));
    }
}

/// Reads W3C trace context from an AMQP header table: long strings, short
/// strings and byte arrays are all accepted, as clients differ.
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a FieldTable);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        header_str(self.0.inner().get(key)?)
    }

    fn keys(&self) -> Vec<&str> {
        self.0.inner().keys().map(|k| k.as_str()).collect()
    }
}

/// A header value as text, when it is text.
pub fn header_str(value: &AMQPValue) -> Option<&str> {
    match value {
        AMQPValue::LongString(s) => std::str::from_utf8(s.as_bytes()).ok(),
        AMQPValue::ShortString(s) => Some(s.as_str()),
        AMQPValue::ByteArray(b) => std::str::from_utf8(b.as_slice()).ok(),
        _ => None,
    }
}

/// Puts the trace context of `cx` into `headers` (`traceparent`, `tracestate`).
pub fn inject_context(cx: &Context, headers: &mut FieldTable) {
    TraceContextPropagator::new().inject_context(cx, &mut HeaderInjector(headers));
}

/// Reads the trace context a producer put into `headers`; empty when none.
pub fn extract_context(headers: Option<&FieldTable>) -> Context {
    match headers {
        Some(headers) => TraceContextPropagator::new().extract(&HeaderExtractor(headers)),
        None => Context::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::{SpanContext, TraceContextExt, TraceFlags, TraceState};
    use opentelemetry::trace::{SpanId, TraceId};

    #[test]
    fn trace_context_round_trips_through_headers() {
        let span = SpanContext::new(
            TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap(),
            SpanId::from_hex("00f067aa0ba902b7").unwrap(),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        let cx = Context::new().with_remote_span_context(span.clone());
        let mut headers = FieldTable::default();
        inject_context(&cx, &mut headers);
        assert_eq!(
            header_str(headers.inner().get("traceparent").unwrap()),
            Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
        );
        let back = extract_context(Some(&headers));
        assert_eq!(back.span().span_context().trace_id(), span.trace_id());
        assert_eq!(back.span().span_context().span_id(), span.span_id());
    }

    #[test]
    fn byte_array_traceparent_is_read() {
        let mut headers = FieldTable::default();
        headers.insert(
            "traceparent".into(),
            AMQPValue::ByteArray(
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                    .to_vec()
                    .into(),
            ),
        );
        let cx = extract_context(Some(&headers));
        assert_eq!(
            cx.span().span_context().trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }
}
