//! Firehose messages (and peeked dead letters) into observations.
//!
//! A firehose message carries nothing in its own properties: its routing key
//! is `publish.<exchange>` or `deliver.<queue>`, its headers say
//! `exchange_name`, `routing_keys`, `routed_queues` (publish only),
//! `redelivered` (deliver only), `node`, `vhost`, `user`, `channel`,
//! `connection`, and `properties`: a table of the original message's
//! properties, its `headers` among them. The body is the original body.

use flowscope_model::{
    BrokerMessage, Death, FirstDeath, MessageProperties, Observation, TraceContext,
};
use lapin::message::Delivery;
use lapin::types::{AMQPValue, FieldTable};

use crate::amqp_value::{as_bool, as_i64, as_str, as_strings, table_to_json};
use crate::redact::RedactConfig;

/// Why a firehose message could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConvertError {
    #[error("firehose routing key {0:?} is neither publish.<exchange> nor deliver.<queue>")]
    UnknownEvent(String),
    #[error("firehose message without headers")]
    NoHeaders,
}

/// Converts one message from `amq.rabbitmq.trace`.
pub fn from_trace_message(
    routing_key: &str,
    headers: Option<&FieldTable>,
    body: &[u8],
    observed_unix_us: i64,
    redact: &RedactConfig,
) -> Result<Observation, ConvertError> {
    let headers = headers.ok_or(ConvertError::NoHeaders)?.inner();
    let text = |key: &str| headers.get(key).and_then(as_str).map(str::to_owned);
    let (kind, name) = routing_key
        .split_once('.')
        .ok_or_else(|| ConvertError::UnknownEvent(routing_key.to_owned()))?;
    let original = match headers.get("properties") {
        Some(AMQPValue::FieldTable(t)) => Some(t),
        _ => None,
    };
    let mut msg = BrokerMessage {
        observed_unix_us,
        vhost: text("vhost").unwrap_or_default(),
        node: text("node"),
        exchange: text("exchange_name").unwrap_or_default(),
        routing_keys: headers
            .get("routing_keys")
            .map(as_strings)
            .unwrap_or_default(),
        redelivered: headers.get("redelivered").and_then(as_bool),
        connection: text("connection"),
        channel: headers.get("channel").and_then(as_i64),
        user: text("user"),
        properties: original.map(properties_from_table).unwrap_or_default(),
        body_size: body.len() as u64,
        ..Default::default()
    };
    let app_headers = original.and_then(|t| match t.inner().get("headers") {
        Some(AMQPValue::FieldTable(h)) => Some(h),
        _ => None,
    });
    enrich(&mut msg, app_headers, body, redact);
    match kind {
        "publish" => {
            msg.routed_queues = Some(
                headers
                    .get("routed_queues")
                    .map(as_strings)
                    .unwrap_or_default(),
            );
            Ok(Observation::Publish(Box::new(msg)))
        }
        "deliver" => {
            msg.queue = Some(name.to_owned());
            Ok(Observation::Deliver(Box::new(msg)))
        }
        _ => Err(ConvertError::UnknownEvent(routing_key.to_owned())),
    }
}

/// Converts a message peeked from a dead-letter queue.
pub fn dead_letter(
    vhost: &str,
    queue: &str,
    delivery: &Delivery,
    observed_unix_us: i64,
    redact: &RedactConfig,
) -> Observation {
    let (properties, body) = (&delivery.properties, delivery.data.as_slice());
    let (exchange, routing_key) = (delivery.exchange.as_str(), delivery.routing_key.as_str());
    let s = |v: &Option<lapin::types::ShortString>| v.as_ref().map(|s| s.to_string());
    let mut msg = BrokerMessage {
        observed_unix_us,
        vhost: vhost.to_owned(),
        exchange: exchange.to_owned(),
        routing_keys: vec![routing_key.to_owned()],
        queue: Some(queue.to_owned()),
        properties: MessageProperties {
            message_id: s(properties.message_id()),
            correlation_id: s(properties.correlation_id()),
            kind: s(properties.kind()),
            app_id: s(properties.app_id()),
            timestamp: properties.timestamp().and_then(|t| i64::try_from(t).ok()),
            content_type: s(properties.content_type()),
            content_encoding: s(properties.content_encoding()),
            delivery_mode: *properties.delivery_mode(),
            priority: *properties.priority(),
            reply_to: s(properties.reply_to()),
            expiration: s(properties.expiration()),
            user_id: s(properties.user_id()),
            headers: Default::default(),
        },
        body_size: body.len() as u64,
        ..Default::default()
    };
    enrich(&mut msg, properties.headers().as_ref(), body, redact);
    Observation::DeadLetter(Box::new(msg))
}

fn properties_from_table(table: &FieldTable) -> MessageProperties {
    let t = table.inner();
    let text = |key: &str| t.get(key).and_then(as_str).map(str::to_owned);
    let small = |key: &str| {
        t.get(key)
            .and_then(as_i64)
            .and_then(|n| u8::try_from(n).ok())
    };
    MessageProperties {
        message_id: text("message_id"),
        correlation_id: text("correlation_id"),
        kind: text("type"),
        app_id: text("app_id"),
        timestamp: t.get("timestamp").and_then(as_i64),
        content_type: text("content_type"),
        content_encoding: text("content_encoding"),
        delivery_mode: small("delivery_mode"),
        priority: small("priority"),
        reply_to: text("reply_to"),
        expiration: text("expiration"),
        user_id: text("user_id"),
        headers: Default::default(),
    }
}

/// Trace context, dead-letter history, headers and body, redacted.
fn enrich(
    msg: &mut BrokerMessage,
    headers: Option<&FieldTable>,
    body: &[u8],
    redact: &RedactConfig,
) {
    if let Some(headers) = headers {
        let h = headers.inner();
        let text = |key: &str| h.get(key).and_then(as_str).map(str::to_owned);
        msg.trace = text("traceparent")
            .and_then(|tp| TraceContext::from_traceparent(&tp, text("tracestate")));
        msg.deaths = match h.get("x-death") {
            Some(AMQPValue::FieldArray(entries)) => {
                entries.as_slice().iter().filter_map(death).collect()
            }
            _ => Vec::new(),
        };
        let first = FirstDeath {
            queue: text("x-first-death-queue"),
            reason: text("x-first-death-reason"),
            exchange: text("x-first-death-exchange"),
        };
        if first != FirstDeath::default() {
            msg.first_death = Some(first);
        }
        if let serde_json::Value::Object(map) = table_to_json(headers) {
            msg.properties.headers = map.into_iter().collect();
        }
        redact.redact_headers(&mut msg.properties.headers);
    }
    msg.body = redact.capture(body);
}

fn death(entry: &AMQPValue) -> Option<Death> {
    let AMQPValue::FieldTable(t) = entry else {
        return None;
    };
    let t = t.inner();
    let text = |key: &str| {
        t.get(key)
            .and_then(as_str)
            .map(str::to_owned)
            .unwrap_or_default()
    };
    Some(Death {
        queue: text("queue"),
        reason: text("reason"),
        exchange: text("exchange"),
        routing_keys: t.get("routing-keys").map(as_strings).unwrap_or_default(),
        count: t.get("count").and_then(as_i64).unwrap_or(1),
        time: t.get("time").and_then(as_i64),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    fn table(pairs: Vec<(&str, AMQPValue)>) -> FieldTable {
        let mut t = FieldTable::default();
        for (k, v) in pairs {
            t.insert(k.into(), v);
        }
        t
    }

    fn long(s: &str) -> AMQPValue {
        AMQPValue::LongString(s.into())
    }

    #[test]
    fn a_deliver_event_with_a_dead_letter_history() {
        let death = table(vec![
            ("queue", long("payment.orders")),
            ("reason", long("rejected")),
            ("exchange", long("shop.events")),
            (
                "routing-keys",
                AMQPValue::FieldArray(FieldArray::from(vec![long("order.placed")])),
            ),
            ("count", AMQPValue::LongLongInt(1)),
            ("time", AMQPValue::Timestamp(1_700_000_000)),
        ]);
        let app_headers = table(vec![
            (
                "x-death",
                AMQPValue::FieldArray(FieldArray::from(vec![AMQPValue::FieldTable(death)])),
            ),
            ("x-first-death-reason", long("rejected")),
            (
                "traceparent",
                AMQPValue::ByteArray(
                    b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                        .to_vec()
                        .into(),
                ),
            ),
        ]);
        let props = table(vec![
            ("message_id", long("m-1")),
            ("timestamp", AMQPValue::LongInt(1_700_000_000)),
            ("delivery_mode", AMQPValue::ShortShortUInt(2)),
            ("headers", AMQPValue::FieldTable(app_headers)),
        ]);
        let headers = table(vec![
            ("exchange_name", long("shop.dlx")),
            (
                "routing_keys",
                AMQPValue::FieldArray(FieldArray::from(vec![long("payment.orders")])),
            ),
            ("redelivered", AMQPValue::LongInt(0)),
            ("vhost", long("/")),
            ("channel", AMQPValue::LongInt(1)),
            ("properties", AMQPValue::FieldTable(props)),
        ]);
        let obs = from_trace_message(
            "deliver.payment.orders.dlq",
            Some(&headers),
            b"{}",
            7,
            &RedactConfig::default(),
        )
        .unwrap();
        let Observation::Deliver(msg) = obs else {
            panic!("{obs:?}")
        };
        assert_eq!(msg.queue.as_deref(), Some("payment.orders.dlq"));
        assert_eq!(msg.redelivered, Some(false));
        assert_eq!(msg.properties.message_id.as_deref(), Some("m-1"));
        assert_eq!(msg.properties.delivery_mode, Some(2));
        assert_eq!(msg.trace.as_ref().unwrap().span_id, "00f067aa0ba902b7");
        assert_eq!(msg.deaths[0].reason, "rejected");
        assert_eq!(msg.deaths[0].routing_keys, ["order.placed"]);
        assert_eq!(msg.deaths[0].time, Some(1_700_000_000));
        assert_eq!(msg.first_death.unwrap().reason.as_deref(), Some("rejected"));
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        let empty = FieldTable::default();
        assert_eq!(
            from_trace_message("nonsense", Some(&empty), b"", 0, &RedactConfig::default()),
            Err(ConvertError::UnknownEvent("nonsense".into()))
        );
        assert_eq!(
            from_trace_message("publish.x", None, b"", 0, &RedactConfig::default()),
            Err(ConvertError::NoHeaders)
        );
        // Headers of the wrong types are ignored, not fatal.
        let odd = table(vec![
            ("routing_keys", AMQPValue::Boolean(true)),
            ("properties", long("x")),
        ]);
        let obs =
            from_trace_message("publish.x", Some(&odd), b"", 0, &RedactConfig::default()).unwrap();
        let Observation::Publish(msg) = obs else {
            panic!()
        };
        assert!(msg.routing_keys.is_empty() && msg.is_unroutable());
    }
}
