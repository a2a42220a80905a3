//! Operator actions on dead-letter queues: redrive (one message or all, at a
//! bounded rate, back to the exchange and routing key `x-death` names) and purge.

use std::time::Duration;

use flowscope_collectors::amqp_value::{as_str, as_strings};
use flowscope_collectors::config::BrokerConfig;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueuePurgeOptions,
};
use lapin::types::{AMQPValue, LongString};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde::{Deserialize, Serialize};

/// Messages per second when the request names no rate.
pub const DEFAULT_REDRIVE_RATE: u32 = 50;
/// Highest rate accepted.
pub const MAX_REDRIVE_RATE: u32 = 1_000;
/// Messages one request moves (or looks through for one id) at most.
pub const MAX_REDRIVE: u32 = 10_000;

/// A queue that looks empty is asked again this many times, [`EMPTY_PAUSE`]
/// apart: flowscope's own dead-letter inspector (or another client) may be
/// holding its messages unacknowledged for a moment while it peeks.
const EMPTY_RETRIES: u32 = 5;
const EMPTY_PAUSE: Duration = Duration::from_millis(100);

/// What to redrive.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    /// One message by id; absent with `all: true` for every message.
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub all: bool,
    /// Messages per second (default 50, at most 1000).
    #[serde(default)]
    pub rate_per_sec: Option<u32>,
}

/// What a redrive did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RedriveReport {
    pub moved: u64,
    /// Messages without an `x-death` saying where they came from, left in place.
    pub left_in_place: u64,
}

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    #[error("{0}")]
    Invalid(String),
    #[error("message {0:?} is not in the queue (looked through {1} messages)")]
    NotFound(String, u64),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

async fn connect(
    broker: &BrokerConfig,
    vhost: &str,
    purpose: &str,
) -> Result<Connection, ActionError> {
    let uri = broker.uri_for(vhost).map_err(ActionError::Invalid)?;
    let props = ConnectionProperties::default()
        .with_connection_name(LongString::from(format!("flowscope-{purpose}")));
    Ok(Connection::connect_uri(uri, props).await?)
}

/// Moves dead letters back where they came from.
pub async fn redrive(
    broker: &BrokerConfig,
    vhost: &str,
    queue: &str,
    request: &RedriveRequest,
) -> Result<RedriveReport, ActionError> {
    if request.message_id.is_none() && !request.all {
        return Err(ActionError::Invalid(
            "say which: {\"message_id\": \"…\"} or {\"all\": true}".into(),
        ));
    }
    let rate = request.rate_per_sec.unwrap_or(DEFAULT_REDRIVE_RATE);
    if rate == 0 || rate > MAX_REDRIVE_RATE {
        return Err(ActionError::Invalid(format!(
            "rate_per_sec must be 1 to {MAX_REDRIVE_RATE}"
        )));
    }
    let connection = connect(broker, vhost, "redrive").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let pause = Duration::from_secs_f64(1.0 / f64::from(rate));
    let mut report = RedriveReport::default();
    let mut held = None;
    let mut looked = 0u64;
    let mut empty = 0;
    let result = async {
        for _ in 0..MAX_REDRIVE {
            let Some(msg) = channel
                .basic_get(queue.into(), BasicGetOptions { no_ack: false })
                .await?
            else {
                empty += 1;
                if empty > EMPTY_RETRIES {
                    break;
                }
                tokio::time::sleep(EMPTY_PAUSE).await;
                continue;
            };
            empty = 0;
            looked += 1;
            let d = msg.delivery;
            let id = d.properties.message_id().as_ref().map(|s| s.to_string());
            let wanted = request.all || id.as_deref() == request.message_id.as_deref();
            let target = origin(&d.properties);
            match (wanted, target) {
                (true, Some((exchange, routing_key))) => {
                    channel
                        .basic_publish(
                            exchange.as_str().into(),
                            routing_key.as_str().into(),
                            BasicPublishOptions::default(),
                            &d.data,
                            d.properties.clone(),
                        )
                        .await?
                        .await?;
                    channel
                        .basic_ack(d.delivery_tag, BasicAckOptions::default())
                        .await?;
                    report.moved += 1;
                    if !request.all {
                        break;
                    }
                    tokio::time::sleep(pause).await;
                }
                (true, None) => {
                    report.left_in_place += 1;
                    held = Some(d.delivery_tag);
                }
                (false, _) => held = Some(d.delivery_tag),
            }
        }
        Ok::<_, ActionError>(())
    }
    .await;
    if let Some(tag) = held {
        channel
            .basic_nack(
                tag,
                BasicNackOptions {
                    multiple: true,
                    requeue: true,
                },
            )
            .await?;
    }
    let _ = connection.close(200, "redrive done".into()).await;
    result?;
    if let Some(id) = &request.message_id
        && report.moved == 0
        && report.left_in_place == 0
    {
        return Err(ActionError::NotFound(id.clone(), looked));
    }
    Ok(report)
}

/// The exchange and routing key a dead letter was first published with.
fn origin(properties: &BasicProperties) -> Option<(String, String)> {
    let headers = properties.headers().as_ref()?.inner();
    let AMQPValue::FieldArray(deaths) = headers.get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(last) = deaths.as_slice().last()? else {
        return None;
    };
    let t = last.inner();
    let exchange = as_str(t.get("exchange")?)?.to_owned();
    let key = as_strings(t.get("routing-keys")?).into_iter().next()?;
    Some((exchange, key))
}

/// Empties a queue; returns how many messages it held.
pub async fn purge(broker: &BrokerConfig, vhost: &str, queue: &str) -> Result<u64, ActionError> {
    let connection = connect(broker, vhost, "purge").await?;
    let channel = connection.create_channel().await?;
    let count = channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await?;
    let _ = connection.close(200, "purge done".into()).await;
    Ok(u64::from(count))
}
