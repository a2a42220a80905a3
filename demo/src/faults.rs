//! Fault switches, flipped at run time over the broker itself.
//!
//! A [`FaultCommand`] is a JSON message published to the `shop.control`
//! fanout exchange, with `reply_to` set. Every running service holds the whole
//! [`FaultState`], applies each command, and answers with a [`FaultReply`]
//! (its name and its state after the command), so the sender knows who heard
//! it. The `shop fault …` CLI and, later, flowscope's UI are such senders.
//!
//! Commands are JSON, tagged by `command`:
//!
//! ```json
//! {"command":"decline_rate","rate":0.3}
//! {"command":"slow","service":"payment","ms":500}
//! {"command":"pause","service":"payment"}
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::topology::{CONTROL_EXCHANGE, MAX_CONTROL_QUEUE_LENGTH, Service};

/// The longest slow-processing delay a command may set.
pub const MAX_SLOW_MS: u64 = 60_000;

/// Faults that apply to one service.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServiceFaults {
    /// Sleep this long before processing each message.
    pub slow_ms: u64,
    /// Consumer cancelled: messages pile up in the queue.
    pub paused: bool,
    /// Take messages and never acknowledge them (they stay unacked).
    pub no_ack: bool,
    /// Share of this service's published messages sent with a malformed body.
    pub poison_rate: f64,
}

/// Every fault switch of the shop.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultState {
    /// Share of payments the payment service declines.
    pub decline_rate: f64,
    /// Share of reservations the inventory service fails as out of stock.
    pub out_of_stock_rate: f64,
    /// Per-service switches, by service name; absent means all off.
    pub services: BTreeMap<String, ServiceFaults>,
}

impl FaultState {
    /// The switches of one service.
    pub fn of(&self, service: Service) -> ServiceFaults {
        self.services
            .get(service.name())
            .cloned()
            .unwrap_or_default()
    }

    fn of_mut(&mut self, service: Service) -> &mut ServiceFaults {
        self.services.entry(service.name().to_owned()).or_default()
    }

    /// Applies a command; a command with a value out of range changes nothing.
    pub fn apply(&mut self, command: &FaultCommand) -> Result<(), String> {
        match *command {
            FaultCommand::DeclineRate { rate } => self.decline_rate = check_rate(rate)?,
            FaultCommand::OutOfStockRate { rate } => self.out_of_stock_rate = check_rate(rate)?,
            FaultCommand::PoisonRate { service, rate } => {
                self.of_mut(service).poison_rate = check_rate(rate)?
            }
            FaultCommand::Slow { service, ms } => {
                if ms > MAX_SLOW_MS {
                    return Err(format!(
                        "slow {ms} ms is above the limit of {MAX_SLOW_MS} ms"
                    ));
                }
                self.of_mut(service).slow_ms = ms;
            }
            FaultCommand::Pause { service } => self.of_mut(service).paused = true,
            FaultCommand::Resume { service } => self.of_mut(service).paused = false,
            FaultCommand::NoAck { service, enabled } => self.of_mut(service).no_ack = enabled,
            FaultCommand::Reset => *self = FaultState::default(),
            FaultCommand::Show => {}
        }
        self.services
            .retain(|_, faults| *faults != ServiceFaults::default());
        Ok(())
    }
}

fn check_rate(rate: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!("rate {rate} is outside 0.0 ..= 1.0"))
    }
}

/// One change to the fault switches.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub enum FaultCommand {
    DeclineRate {
        rate: f64,
    },
    OutOfStockRate {
        rate: f64,
    },
    PoisonRate {
        service: Service,
        rate: f64,
    },
    Slow {
        service: Service,
        ms: u64,
    },
    Pause {
        service: Service,
    },
    Resume {
        service: Service,
    },
    NoAck {
        service: Service,
        enabled: bool,
    },
    Reset,
    /// Changes nothing; every service answers with its state.
    Show,
}

/// A service's answer to a command.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FaultReply {
    pub service: String,
    pub state: FaultState,
    /// Why the command was refused, if it was.
    pub error: Option<String>,
}

/// A service's live fault switches.
pub type Faults = watch::Sender<FaultState>;

/// Listens on `shop.control` until the connection fails; applies commands to
/// `faults` and answers each one. Its queue is exclusive and bounded.
pub async fn listen(
    connection: &Connection,
    service: Service,
    faults: &Faults,
) -> anyhow::Result<()> {
    let channel = connection.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(MAX_CONTROL_QUEUE_LENGTH),
    );
    let queue = format!(
        "shop.control.{service}.{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(queue.as_str().into(), options, args)
        .await?;
    channel
        .queue_bind(
            queue.as_str().into(),
            CONTROL_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut commands = channel
        .basic_consume(
            queue.as_str().into(),
            "".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    while let Some(delivery) = commands.next().await {
        let delivery = delivery?;
        let error = match serde_json::from_slice::<FaultCommand>(&delivery.data) {
            Ok(command) => {
                let mut result = Ok(());
                let changed = faults.send_if_modified(|state| {
                    let before = state.clone();
                    result = state.apply(&command);
                    *state != before
                });
                if changed {
                    tracing::info!(?command, "fault switch applied");
                }
                result.err()
            }
            Err(err) => Some(format!("unreadable fault command: {err}")),
        };
        if let Some(reply_to) = delivery.properties.reply_to() {
            let reply = FaultReply {
                service: service.name().to_owned(),
                state: faults.borrow().clone(),
                error,
            };
            let mut props = BasicProperties::default().with_content_type("application/json".into());
            if let Some(id) = delivery.properties.correlation_id() {
                props = props.with_correlation_id(id.clone());
            }
            channel
                .basic_publish(
                    "".into(),
                    reply_to.clone(),
                    BasicPublishOptions::default(),
                    &serde_json::to_vec(&reply).expect("a reply serializes"),
                    props,
                )
                .await?;
        }
    }
    anyhow::bail!("the broker ended the control consumer")
}

/// Sends `command` to every running service and collects their answers for
/// up to `wait` (or until all five answered).
pub async fn send_command(
    amqp_url: &str,
    command: FaultCommand,
    wait: Duration,
) -> anyhow::Result<Vec<FaultReply>> {
    const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";
    let connection = crate::amqp::connect(amqp_url, "shop-cli").await?;
    let channel = connection.create_channel().await?;
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut replies = channel
        .basic_consume(
            DIRECT_REPLY_TO.into(),
            "".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    let correlation_id = uuid::Uuid::new_v4().to_string();
    let props = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_reply_to(DIRECT_REPLY_TO.into())
        .with_correlation_id(correlation_id.as_str().into());
    channel
        .basic_publish(
            CONTROL_EXCHANGE.into(),
            "".into(),
            BasicPublishOptions::default(),
            &serde_json::to_vec(&command)?,
            props,
        )
        .await?;
    let mut answers = Vec::new();
    let deadline = tokio::time::Instant::now() + wait;
    while answers.len() < Service::ALL.len() {
        match tokio::time::timeout_at(deadline, replies.next()).await {
            Ok(Some(Ok(delivery))) => {
                let ours = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .is_some_and(|id| id.as_str() == correlation_id);
                if ours {
                    answers.push(serde_json::from_slice(&delivery.data)?);
                }
            }
            Ok(Some(Err(err))) => return Err(err.into()),
            Ok(None) | Err(_) => break,
        }
    }
    let _ = connection.close(200, "done".into()).await;
    answers.sort_by_key(|reply: &FaultReply| {
        reply
            .service
            .parse::<Service>()
            .map(|s| s as usize)
            .unwrap_or(usize::MAX)
    });
    Ok(answers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_change_only_their_switch() {
        let mut state = FaultState::default();
        state
            .apply(&FaultCommand::DeclineRate { rate: 0.3 })
            .unwrap();
        state
            .apply(&FaultCommand::Slow {
                service: Service::Payment,
                ms: 250,
            })
            .unwrap();
        assert_eq!(state.decline_rate, 0.3);
        assert_eq!(state.of(Service::Payment).slow_ms, 250);
        assert_eq!(state.of(Service::Inventory), ServiceFaults::default());
        state
            .apply(&FaultCommand::Slow {
                service: Service::Payment,
                ms: 0,
            })
            .unwrap();
        assert!(
            state.services.is_empty(),
            "switched-off services are dropped"
        );
        state.apply(&FaultCommand::Reset).unwrap();
        assert_eq!(state, FaultState::default());
    }

    #[test]
    fn out_of_range_values_are_refused_without_change() {
        let mut state = FaultState::default();
        let err = state
            .apply(&FaultCommand::DeclineRate { rate: 1.5 })
            .unwrap_err();
        assert!(err.contains("outside"), "{err}");
        let err = state
            .apply(&FaultCommand::Slow {
                service: Service::Order,
                ms: 3_600_000,
            })
            .unwrap_err();
        assert!(err.contains("limit"), "{err}");
        assert_eq!(state, FaultState::default());
    }

    #[test]
    fn wire_format_is_tagged_by_command() {
        let cmd: FaultCommand =
            serde_json::from_str(r#"{"command":"no_ack","service":"shipping","enabled":true}"#)
                .unwrap();
        assert_eq!(
            cmd,
            FaultCommand::NoAck {
                service: Service::Shipping,
                enabled: true
            }
        );
        assert!(
            serde_json::from_str::<FaultCommand>(r#"{"command":"pause","service":"x"}"#).is_err()
        );
    }
}
