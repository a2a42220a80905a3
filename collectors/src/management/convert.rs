//! Management API JSON into queue samples and topology.

use std::collections::BTreeMap;

use flowscope_model::{
    BindingInfo, ConnectionInfo, ConsumerInfo, DeadLetterEdge, ExchangeInfo, QueueInfo,
    QueueSample, SampleSource,
};
use serde_json::Value;

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_owned)
}

/// A queue sample from one entry of `/api/queues`.
pub fn queue_sample(vhost: &str, q: &Value, observed_unix_us: i64) -> Option<QueueSample> {
    let stats = &q["message_stats"];
    Some(QueueSample {
        observed_unix_us,
        source: SampleSource::Management,
        vhost: vhost.to_owned(),
        queue: text(&q["name"])?,
        messages_ready: q["messages_ready"].as_u64(),
        messages_unacked: q["messages_unacknowledged"].as_u64(),
        consumers: q["consumers"].as_u64(),
        publish_rate: stats["publish_details"]["rate"].as_f64(),
        deliver_rate: stats["deliver_get_details"]["rate"].as_f64(),
        ack_rate: stats["ack_details"]["rate"].as_f64(),
        head_message_timestamp: q["head_message_timestamp"].as_i64(),
    })
}

/// A queue's shape from one entry of `/api/queues`.
pub fn queue_info(q: &Value) -> Option<QueueInfo> {
    let arguments: BTreeMap<String, Value> = q["arguments"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    Some(QueueInfo {
        name: text(&q["name"])?,
        durable: q["durable"].as_bool().unwrap_or(false),
        exclusive: q["exclusive"].as_bool().unwrap_or(false),
        auto_delete: q["auto_delete"].as_bool().unwrap_or(false),
        queue_type: text(&q["type"]),
        dead_letter_exchange: arguments.get("x-dead-letter-exchange").and_then(text),
        dead_letter_routing_key: arguments.get("x-dead-letter-routing-key").and_then(text),
        arguments,
    })
}

/// An exchange from `/api/exchanges`.
pub fn exchange_info(e: &Value) -> Option<ExchangeInfo> {
    Some(ExchangeInfo {
        name: text(&e["name"])?,
        kind: text(&e["type"]).unwrap_or_default(),
        durable: e["durable"].as_bool().unwrap_or(false),
        internal: e["internal"].as_bool().unwrap_or(false),
    })
}

/// A binding from `/api/bindings` (the default exchange's implicit ones are skipped).
pub fn binding_info(b: &Value) -> Option<BindingInfo> {
    let source = text(&b["source"])?;
    if source.is_empty() {
        return None;
    }
    Some(BindingInfo {
        source,
        destination: text(&b["destination"])?,
        destination_type: text(&b["destination_type"]).unwrap_or_default(),
        routing_key: text(&b["routing_key"]).unwrap_or_default(),
    })
}

/// A connection from `/api/vhosts/<v>/connections`.
pub fn connection_info(c: &Value) -> Option<ConnectionInfo> {
    let peer = match (c["peer_host"].as_str(), c["peer_port"].as_u64()) {
        (Some(host), Some(port)) => Some(format!("{host}:{port}")),
        _ => None,
    };
    Some(ConnectionInfo {
        name: text(&c["name"])?,
        client_name: text(&c["client_properties"]["connection_name"]),
        user: text(&c["user"]).unwrap_or_default(),
        peer,
    })
}

/// A consumer from `/api/consumers/<v>`.
pub fn consumer_info(c: &Value) -> Option<ConsumerInfo> {
    let details = &c["channel_details"];
    Some(ConsumerInfo {
        queue: text(&c["queue"]["name"])?,
        tag: text(&c["consumer_tag"]).unwrap_or_default(),
        connection: text(&details["connection_name"]).unwrap_or_default(),
        client_name: None,
        prefetch: c["prefetch_count"].as_u64().unwrap_or(0),
        ack_required: c["ack_required"].as_bool().unwrap_or(true),
    })
}

/// Which queue dead-letters into which: each queue with a dead-letter
/// exchange, and the queues that exchange's bindings route its dead letters to.
pub fn dead_letter_edges(
    queues: &[QueueInfo],
    exchanges: &[ExchangeInfo],
    bindings: &[BindingInfo],
) -> Vec<DeadLetterEdge> {
    queues
        .iter()
        .filter_map(|q| {
            let dlx = q.dead_letter_exchange.clone()?;
            let kind = exchanges
                .iter()
                .find(|e| e.name == dlx)
                .map(|e| e.kind.as_str())
                .unwrap_or("direct");
            // Without a dead-letter routing key, dead letters keep their own keys: any binding may match.
            let targets = bindings
                .iter()
                .filter(|b| b.source == dlx && b.destination_type == "queue")
                .filter(|b| match (&q.dead_letter_routing_key, kind) {
                    (_, "fanout" | "headers") | (None, _) => true,
                    (Some(key), "topic") => topic_matches(&b.routing_key, key),
                    (Some(key), _) => &b.routing_key == key,
                })
                .map(|b| b.destination.clone())
                .collect();
            Some(DeadLetterEdge {
                queue: q.name.clone(),
                exchange: dlx,
                routing_key: q.dead_letter_routing_key.clone(),
                targets,
            })
        })
        .collect()
}

/// AMQP topic matching: `*` is one word, `#` zero or more.
pub fn topic_matches(pattern: &str, key: &str) -> bool {
    fn go(p: &[&str], k: &[&str]) -> bool {
        match (p.first(), k.first()) {
            (None, None) => true,
            (Some(&"#"), _) => go(&p[1..], k) || (!k.is_empty() && go(p, &k[1..])),
            (Some(&"*"), Some(_)) => go(&p[1..], &k[1..]),
            (Some(pw), Some(kw)) => pw == kw && go(&p[1..], &k[1..]),
            _ => false,
        }
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let k: Vec<&str> = key.split('.').collect();
    go(&p, &k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn topic_patterns() {
        assert!(topic_matches("order.*", "order.placed"));
        assert!(topic_matches("#", "a.b.c"));
        assert!(topic_matches("a.#.c", "a.c"));
        assert!(!topic_matches("order.*", "order.placed.late"));
    }

    #[test]
    fn dead_letter_edges_follow_the_dlx_bindings() {
        let queues: Vec<QueueInfo> = [
            json!({"name": "payment.orders", "arguments": {"x-dead-letter-exchange": "shop.dlx", "x-dead-letter-routing-key": "payment.orders"}}),
            json!({"name": "payment.orders.dlq", "arguments": {}}),
        ]
        .iter()
        .filter_map(queue_info)
        .collect();
        let exchanges = vec![ExchangeInfo {
            name: "shop.dlx".into(),
            kind: "direct".into(),
            ..Default::default()
        }];
        let bindings: Vec<BindingInfo> = [
            json!({"source": "shop.dlx", "destination": "payment.orders.dlq", "destination_type": "queue", "routing_key": "payment.orders"}),
            json!({"source": "shop.dlx", "destination": "other.dlq", "destination_type": "queue", "routing_key": "other"}),
            json!({"source": "", "destination": "payment.orders", "destination_type": "queue", "routing_key": "payment.orders"}),
        ]
        .iter()
        .filter_map(binding_info)
        .collect();
        assert_eq!(bindings.len(), 2, "default-exchange bindings are implicit");
        let edges = dead_letter_edges(&queues, &exchanges, &bindings);
        assert_eq!(edges.len(), 1);
        assert_eq!(edges[0].queue, "payment.orders");
        assert_eq!(edges[0].targets, ["payment.orders.dlq"]);
    }
}
