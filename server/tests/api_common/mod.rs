//! What the API tests share: broker messages of the demo shop's shape.

use flowscope_model::{Body as MsgBody, BrokerMessage, MessageProperties, Observation};

/// A publish of event `kind` for `order`, with message id `id`, at `at` µs.
pub fn message(id: &str, kind: &str, order: &str, at: i64) -> Observation {
    Observation::Publish(Box::new(BrokerMessage {
        observed_unix_us: at,
        vhost: "/".into(),
        exchange: "shop.events".into(),
        routing_keys: vec!["k".into()],
        routed_queues: Some(vec!["q".into()]),
        service: Some("order".into()),
        properties: MessageProperties {
            message_id: Some(id.into()),
            correlation_id: Some(format!("c-{order}")),
            kind: Some(kind.into()),
            ..Default::default()
        },
        body: Some(MsgBody {
            content: format!("{{\"order_id\":\"{order}\"}}"),
            encoding: "utf8".into(),
            ..Default::default()
        }),
        ..Default::default()
    }))
}
