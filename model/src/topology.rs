//! Queue samples and topology snapshots of the broker.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Where a queue sample's numbers come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSource {
    /// The management API: complete (rates, consumers), but 3–8 s behind.
    Management,
    /// A passive queue declare: the exact ready count and consumers, now.
    PassiveDeclare,
    /// The last exact count plus messages routed minus delivered since, from
    /// the firehose: fresh to the millisecond, an estimate between exact counts.
    Firehose,
}

impl SampleSource {
    /// The source's name as in JSON.
    pub fn as_str(&self) -> &'static str {
        match self {
            SampleSource::Management => "management",
            SampleSource::PassiveDeclare => "passive_declare",
            SampleSource::Firehose => "firehose",
        }
    }
}

/// A queue's state at one moment. Fields a source cannot know are `None`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueSample {
    pub observed_unix_us: i64,
    pub source: SampleSource,
    pub vhost: String,
    pub queue: String,
    /// Messages waiting to be delivered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_ready: Option<u64>,
    /// Messages delivered and not yet acknowledged.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_unacked: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consumers: Option<u64>,
    /// Messages per second into the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub publish_rate: Option<f64>,
    /// Messages per second delivered (or fetched) from the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliver_rate: Option<f64>,
    /// Acknowledgements per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ack_rate: Option<f64>,
    /// Timestamp property of the message at the head (seconds since the
    /// epoch), where the broker reports it: its age is the oldest message's age.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub head_message_timestamp: Option<i64>,
}

/// The broker's topology of one vhost, from the management API.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TopologySnapshot {
    pub observed_unix_us: i64,
    pub vhost: String,
    pub exchanges: Vec<ExchangeInfo>,
    pub queues: Vec<QueueInfo>,
    pub bindings: Vec<BindingInfo>,
    pub connections: Vec<ConnectionInfo>,
    pub consumers: Vec<ConsumerInfo>,
    /// Which queue dead-letters into which (through its dead-letter exchange).
    pub dead_letter_edges: Vec<DeadLetterEdge>,
}

/// An exchange.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExchangeInfo {
    pub name: String,
    /// `direct`, `topic`, `fanout`, `headers`, …
    pub kind: String,
    pub durable: bool,
    pub internal: bool,
}

/// A queue and the arguments that shape its behaviour.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub durable: bool,
    pub exclusive: bool,
    pub auto_delete: bool,
    /// `classic`, `quorum` or `stream`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_exchange: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dead_letter_routing_key: Option<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty", default)]
    pub arguments: BTreeMap<String, Value>,
}

/// A binding of a queue (or exchange) to an exchange.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BindingInfo {
    pub source: String,
    pub destination: String,
    /// `queue` or `exchange`.
    pub destination_type: String,
    pub routing_key: String,
}

/// A client connection.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionInfo {
    /// The broker's name for it, as in firehose headers.
    pub name: String,
    /// The `connection_name` the client sent: the service, by convention.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub user: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
}

/// A consumer of a queue.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    pub queue: String,
    pub tag: String,
    /// The broker's name of its connection.
    pub connection: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    pub prefetch: u64,
    pub ack_required: bool,
}

/// `queue` dead-letters through `exchange` into `targets`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DeadLetterEdge {
    pub queue: String,
    pub exchange: String,
    /// The routing key dead letters get (`None`: their own).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// The queues those dead letters land in, from the exchange's bindings.
    pub targets: Vec<String>,
}
