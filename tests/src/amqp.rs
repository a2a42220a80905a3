//! Plain AMQP steps the tests take on the real broker, panicking on failure.

use std::time::Duration;

use flowscope_model::Observation;
use lapin::options::{
    BasicPublishOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};

use crate::broker::TestVhost;
use crate::eventually;
use crate::observe::ObservationLog;

/// A connection to `vhost` named `name` (as the management API lists it), and a channel.
pub async fn connect(vhost: &TestVhost, name: &str) -> (Connection, Channel) {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let conn = Connection::connect(&vhost.amqp_url(), props).await.unwrap();
    let channel = conn.create_channel().await.unwrap();
    (conn, channel)
}

/// Declares exchange `name`.
pub async fn exchange(ch: &Channel, name: &str, kind: ExchangeKind) {
    ch.exchange_declare(
        name.into(),
        kind,
        ExchangeDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Declares queue `name`.
pub async fn queue(ch: &Channel, name: &str, args: FieldTable) {
    ch.queue_declare(name.into(), QueueDeclareOptions::default(), args)
        .await
        .unwrap();
}

/// Binds `queue` to `exchange` with `key`.
pub async fn bind(ch: &Channel, queue: &str, exchange: &str, key: &str) {
    ch.queue_bind(
        queue.into(),
        exchange.into(),
        key.into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
}

/// Publishes and waits for the publish to go out.
pub async fn publish(ch: &Channel, exchange: &str, key: &str, body: &[u8], props: BasicProperties) {
    ch.basic_publish(
        exchange.into(),
        key.into(),
        BasicPublishOptions::default(),
        body,
        props,
    )
    .await
    .unwrap()
    .await
    .unwrap();
}

/// Publishes probes until the tap shows one: the tap is then live.
pub async fn wait_until_tapped(log: &ObservationLog, ch: &Channel) {
    exchange(ch, "probe", ExchangeKind::Fanout).await;
    publish_until_tapped(log, ch, "probe", "the firehose tap to see a probe").await;
}

/// Publishes to `exchange` every 200 ms until the tap shows a publish to it
/// (for up to 30 s; `what` names the wait when it times out).
pub async fn publish_until_tapped(log: &ObservationLog, ch: &Channel, exchange: &str, what: &str) {
    eventually(Duration::from_secs(30), what, || async {
        publish(ch, exchange, "", b"probe", BasicProperties::default()).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
        Ok(log
            .all()
            .iter()
            .any(|o| matches!(o, Observation::Publish(m) if m.exchange == exchange))
            .then_some(()))
    })
    .await;
}
