//! A paced publisher and a draining consumer over lapin.
//!
//! With **publisher confirms** a message counts as published once the broker confirmed it,
//! with at most [`CONFIRM_WINDOW`] unconfirmed at a time (persistent messages: written to
//! disk or consumed before the confirm). Without them (the tap ramp's default: on this
//! machine the broker's confirms of persistent messages top out at ~1.5–2k msg/s, its fsync
//! under load), a message counts as published once lapin handed it to the socket.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use lapin::PublisherConfirm;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{FieldTable, LongString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use tokio::task::JoinHandle;

/// Unconfirmed messages in flight at most.
pub const CONFIRM_WINDOW: usize = 20_000;
/// How often the pacer wakes up (it publishes what is due at each wake-up).
const PACE_TICK: Duration = Duration::from_millis(5);

/// Opens a connection that shows as `name` in the management API (never `flowscope…`:
/// flowscope ignores its own connections).
pub async fn connect(url: &str, name: &str) -> anyhow::Result<Connection> {
    let props = ConnectionProperties::default().with_connection_name(LongString::from(name));
    Connection::connect(url, props)
        .await
        .with_context(|| format!("connecting to {url}"))
}

/// Declares a durable queue with extra arguments.
pub async fn declare_queue(channel: &Channel, name: &str, args: FieldTable) -> anyhow::Result<()> {
    channel
        .queue_declare(name.into(), QueueDeclareOptions::durable(), args)
        .await?;
    Ok(())
}

/// What a paced run published.
#[derive(Debug, Clone, Copy, Default)]
pub struct Published {
    /// Messages the broker confirmed.
    pub confirmed: u64,
    /// Messages the broker refused (nack).
    pub nacked: u64,
    /// Seconds from the first publish to the last confirm.
    pub secs: f64,
}

impl Published {
    /// Confirmed messages per second.
    pub fn rate(&self) -> f64 {
        self.confirmed as f64 / self.secs.max(1e-9)
    }
}

/// Publishes to one routing key at a steady rate.
#[derive(Debug)]
pub struct PacedPublisher {
    channel: Channel,
    confirms: bool,
    _connection: Connection,
}

impl PacedPublisher {
    /// A publisher with publisher confirms.
    pub async fn connect(url: &str, name: &str) -> anyhow::Result<Self> {
        Self::connect_with(url, name, true).await
    }

    /// A publisher with or without publisher confirms.
    pub async fn connect_with(url: &str, name: &str, confirms: bool) -> anyhow::Result<Self> {
        let connection = connect(url, name).await?;
        let channel = connection.create_channel().await?;
        if confirms {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
        }
        Ok(Self {
            channel,
            confirms,
            _connection: connection,
        })
    }

    /// Publishes `body` persistently to the default exchange, `routing_key`, at `rate` per
    /// second for `duration` (bounded: it stops at `duration` even when behind), then waits
    /// (at most 30 s) for the outstanding confirms.
    pub async fn run(
        &self,
        routing_key: &str,
        body: &[u8],
        rate: f64,
        duration: Duration,
    ) -> anyhow::Result<Published> {
        let started = Instant::now();
        let mut window: VecDeque<PublisherConfirm> = VecDeque::with_capacity(CONFIRM_WINDOW);
        let mut out = Published::default();
        let mut sent = 0u64;
        let mut tick = tokio::time::interval(PACE_TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        while started.elapsed() < duration {
            tick.tick().await;
            let due = (started.elapsed().as_secs_f64() * rate) as u64;
            while sent < due && started.elapsed() < duration {
                if window.len() >= CONFIRM_WINDOW {
                    let confirm = window.pop_front().expect("window is full");
                    count(&mut out, confirm.await?);
                    continue;
                }
                // Publishes go out concurrently: one at a time, each waits for lapin's I/O
                // loop to take the frame, which caps a publisher at ~2k msg/s here.
                let batch = (due - sent).min((CONFIRM_WINDOW - window.len()) as u64);
                let publishes = (0..batch).map(|_| self.publish(routing_key, body));
                for confirm in futures_util::future::join_all(publishes).await {
                    let confirm = confirm?;
                    if self.confirms {
                        window.push_back(confirm);
                    } else {
                        out.confirmed += 1;
                    }
                }
                sent += batch;
            }
        }
        let drain = async {
            for confirm in window.drain(..) {
                count(&mut out, confirm.await?);
            }
            anyhow::Ok(())
        };
        tokio::time::timeout(Duration::from_secs(30), drain)
            .await
            .context("confirms still outstanding 30 s after the last publish")??;
        out.secs = started.elapsed().as_secs_f64();
        Ok(out)
    }

    /// Publishes one persistent message and waits for its confirm.
    pub async fn publish_confirmed(
        &self,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> anyhow::Result<()> {
        let confirm = self
            .channel
            .basic_publish(
                "".into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                properties.with_delivery_mode(2),
            )
            .await?
            .await?;
        if !confirm.is_ack() {
            bail!("the broker refused a message to {routing_key}");
        }
        Ok(())
    }

    async fn publish(&self, routing_key: &str, body: &[u8]) -> anyhow::Result<PublisherConfirm> {
        Ok(self
            .channel
            .basic_publish(
                "".into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?)
    }

    pub fn channel(&self) -> &Channel {
        &self.channel
    }
}

fn count(out: &mut Published, confirmation: lapin::Confirmation) {
    if confirmation.is_ack() {
        out.confirmed += 1;
    } else {
        out.nacked += 1;
    }
}

/// Consumes a queue and acks (in batches of [`DRAIN_ACK_BATCH`]) until dropped; counts what
/// it got. What a real consumer of the benchmarked queue does.
#[derive(Debug)]
pub struct Drain {
    /// Messages received so far.
    pub received: Arc<AtomicU64>,
    task: JoinHandle<()>,
    connection: Connection,
}

/// Acks go out for this many messages at once (`multiple`).
pub const DRAIN_ACK_BATCH: u64 = 100;

impl Drain {
    /// Starts consuming `queue` (prefetch 1000) on a connection named `name`; `filter` says
    /// which deliveries to count (by routing key).
    pub async fn start(
        url: &str,
        name: &str,
        queue: &str,
        filter: fn(&str) -> bool,
    ) -> anyhow::Result<Self> {
        let connection = connect(url, name).await?;
        let channel = connection.create_channel().await?;
        channel.basic_qos(1000, BasicQosOptions::default()).await?;
        let mut deliveries = channel
            .basic_consume(
                queue.into(),
                name.into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let received = Arc::new(AtomicU64::new(0));
        let counter = received.clone();
        let task = tokio::spawn(async move {
            let mut since_ack = 0u64;
            let mut ack_tick = tokio::time::interval(Duration::from_millis(100));
            let mut last_tag = None;
            loop {
                tokio::select! {
                    delivery = deliveries.next() => {
                        let Some(Ok(delivery)) = delivery else { return };
                        if filter(delivery.routing_key.as_str()) {
                            counter.fetch_add(1, Ordering::Relaxed);
                        }
                        last_tag = Some(delivery.delivery_tag);
                        since_ack += 1;
                        if since_ack >= DRAIN_ACK_BATCH {
                            since_ack = 0;
                            if ack(&channel, last_tag.take()).await.is_err() { return }
                        }
                    }
                    _ = ack_tick.tick() => {
                        since_ack = 0;
                        if ack(&channel, last_tag.take()).await.is_err() { return }
                    }
                }
            }
        });
        Ok(Self {
            received,
            task,
            connection,
        })
    }

    pub fn count(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Stops consuming and closes the connection.
    pub async fn stop(self) {
        self.task.abort();
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.connection.close(200, "bench done".into()),
        )
        .await;
    }
}

async fn ack(channel: &Channel, tag: Option<u64>) -> Result<(), lapin::Error> {
    match tag {
        Some(tag) => {
            channel
                .basic_ack(tag, BasicAckOptions { multiple: true })
                .await
        }
        None => Ok(()),
    }
}
