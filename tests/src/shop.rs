//! The demo shop as real processes in a throwaway vhost, with a tap on its events.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use flowscope_demo::amqp::header_str;
use flowscope_demo::faults::{self, FaultCommand, FaultReply};
use flowscope_demo::services::order::NewOrder;
use flowscope_demo::topology::{self, EVENTS_EXCHANGE, Service};
use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicGetOptions, BasicPublishOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;
use tokio::process::{Child, Command};
use uuid::Uuid;

use crate::broker::TestVhost;
use crate::eventually;

/// How long a service gets to come up.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `shop` binary built in this target directory (override with `SHOP_BIN`).
pub fn shop_binary() -> PathBuf {
    workspace_binary("shop", "SHOP_BIN", "flowscope-demo")
}

/// A binary of this workspace, built in this target directory.
pub fn workspace_binary(name: &str, override_var: &str, package: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(override_var) {
        return path.into();
    }
    // Tests run from <target>/<profile>/deps/<test>; binaries are in <target>/<profile>/.
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join(name))
        .expect("target directory layout");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p {package} --bin {name}` (scripts/test does)",
        bin.display()
    );
    bin
}

/// How to start the shop.
#[derive(Debug, Clone)]
pub struct ShopOptions {
    /// Where the services send traces; `None` turns tracing off.
    pub otlp_endpoint: Option<String>,
    /// Processing attempts before dead-lettering.
    pub max_attempts: u32,
    /// The services to start (all by default).
    pub services: Vec<Service>,
    /// Bind a test queue to every event (a queue, and so hops, of its own).
    pub tap: bool,
}

impl Default for ShopOptions {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            max_attempts: 3,
            services: Service::ALL.to_vec(),
            tap: true,
        }
    }
}

/// One message seen on `shop.events`.
#[derive(Debug, Clone)]
pub struct TapMessage {
    pub routing_key: String,
    pub event_type: String,
    pub message_id: String,
    pub correlation_id: String,
    pub app_id: String,
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl TapMessage {
    /// The body as JSON (panics on a malformed body).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).expect("tap message body is JSON")
    }
}

/// The running shop.
#[derive(Debug)]
pub struct Shop {
    children: Vec<(Service, Child)>,
    pub options: ShopOptions,
    pub order_url: String,
    pub data_dir: PathBuf,
    pub channel: Channel,
    tapped: Arc<Mutex<Vec<TapMessage>>>,
    _connection: Connection,
    pub vhost: TestVhost,
}

impl Shop {
    /// Creates a vhost, declares the topology and a tap on `shop.events`, and
    /// starts the services; returns once every one of them consumes.
    pub async fn start(options: ShopOptions) -> anyhow::Result<Shop> {
        Self::start_in(TestVhost::create().await?, options).await
    }

    /// Like [`Shop::start`], in a vhost the test already made (and watches).
    pub async fn start_in(vhost: TestVhost, options: ShopOptions) -> anyhow::Result<Shop> {
        let props = ConnectionProperties::default().with_connection_name("test-harness".into());
        let connection = Connection::connect(&vhost.amqp_url(), props).await?;
        let channel = connection.create_channel().await?;
        topology::declare(&channel).await?;
        let tapped = if options.tap {
            tap_events(&connection).await?
        } else {
            Arc::default()
        };
        let data_dir = std::env::temp_dir().join(format!("flowscope-shop-{}", vhost.name));
        std::fs::create_dir_all(&data_dir)?;
        let port = free_port()?;
        let mut shop = Shop {
            children: Vec::new(),
            order_url: format!("http://127.0.0.1:{port}"),
            options: options.clone(),
            data_dir,
            channel,
            tapped,
            _connection: connection,
            vhost,
        };
        for service in options.services.clone() {
            let child = shop.spawn(service)?;
            shop.children.push((service, child));
        }
        shop.wait_until_consuming().await?;
        Ok(shop)
    }

    fn spawn(&self, service: Service) -> anyhow::Result<Child> {
        let log = std::fs::File::create(self.log_path(service))?;
        let mut cmd = Command::new(shop_binary());
        cmd.arg(service.name())
            .env("SHOP_AMQP_URL", self.vhost.amqp_url())
            .env("SHOP_DATA_DIR", &self.data_dir)
            .env("SHOP_MAX_ATTEMPTS", self.options.max_attempts.to_string())
            .env(
                "SHOP_HTTP_ADDR",
                self.order_url.trim_start_matches("http://"),
            )
            .env("RUST_LOG", "info,flowscope_demo=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true);
        match &self.options.otlp_endpoint {
            Some(endpoint) => cmd
                .env("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
                .env("OTEL_BSP_SCHEDULE_DELAY", "100"),
            None => cmd.env("SHOP_NO_TRACES", "true"),
        };
        cmd.spawn().context("starting the shop binary")
    }

    async fn wait_until_consuming(&self) -> anyhow::Result<()> {
        let services = self.options.services.clone();
        for service in services {
            eventually(START_TIMEOUT, &format!("{service} to consume"), || async move {
                Ok((self.queue_consumers(service.queue()).await? > 0).then_some(()))
            })
            .await;
        }
        if self.options.services.contains(&Service::Order) {
            let url = format!("{}/healthz", self.order_url);
            eventually(START_TIMEOUT, "the order API", || {
                let url = url.clone();
                async move {
                    Ok(reqwest::get(&url)
                        .await?
                        .status()
                        .is_success()
                        .then_some(()))
                }
            })
            .await;
        }
        Ok(())
    }

    /// Where a service's stdout and stderr go.
    pub fn log_path(&self, service: Service) -> PathBuf {
        self.data_dir.join(format!("{service}.log"))
    }

    /// A service's log so far.
    pub fn log(&self, service: Service) -> String {
        std::fs::read_to_string(self.log_path(service)).unwrap_or_default()
    }

    /// Places an order over HTTP; returns its id.
    pub async fn place_order(&self, order: &NewOrder) -> anyhow::Result<Uuid> {
        let resp = reqwest::Client::new()
            .post(format!("{}/orders", self.order_url))
            .json(order)
            .send()
            .await?;
        anyhow::ensure!(
            resp.status() == 201,
            "POST /orders answered {}",
            resp.status()
        );
        let body: Value = resp.json().await?;
        Ok(body["order_id"]
            .as_str()
            .context("order_id in the answer")?
            .parse()?)
    }

    /// `GET /orders/{id}`.
    pub async fn order(&self, id: Uuid) -> anyhow::Result<Value> {
        let resp = reqwest::get(format!("{}/orders/{id}", self.order_url)).await?;
        anyhow::ensure!(
            resp.status().is_success(),
            "GET /orders/{id} answered {}",
            resp.status()
        );
        Ok(resp.json().await?)
    }

    /// Waits until the order has `status`; returns the order.
    pub async fn wait_for_status(&self, id: Uuid, status: &str, timeout: Duration) -> Value {
        eventually(
            timeout,
            &format!("order {id} to be {status}"),
            || async move {
                let order = self.order(id).await?;
                Ok((order["status"] == status).then_some(order))
            },
        )
        .await
    }

    /// Every message of `order_id` seen on `shop.events` so far.
    pub fn events_for(&self, order_id: Uuid) -> Vec<TapMessage> {
        let id = order_id.to_string();
        self.tapped
            .lock()
            .expect("tap lock")
            .iter()
            .filter(|m| m.correlation_id == id)
            .cloned()
            .collect()
    }

    /// Waits until an event of `event_type` for `order_id` was published.
    pub async fn wait_for_event(
        &self,
        order_id: Uuid,
        event_type: &str,
        timeout: Duration,
    ) -> TapMessage {
        eventually(
            timeout,
            &format!("{event_type} of order {order_id}"),
            || async move {
                Ok(self
                    .events_for(order_id)
                    .into_iter()
                    .find(|m| m.event_type == event_type))
            },
        )
        .await
    }

    /// Ready messages in a queue, exactly (a passive declare, no statistics lag).
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<u32> {
        Ok(self.passive_declare(queue).await?.message_count())
    }

    /// Consumers of a queue, exactly.
    pub async fn queue_consumers(&self, queue: &str) -> anyhow::Result<u32> {
        Ok(self.passive_declare(queue).await?.consumer_count())
    }

    async fn passive_declare(&self, queue: &str) -> anyhow::Result<lapin::Queue> {
        let options = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        Ok(self
            .channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await?)
    }

    /// Takes one message from a queue (for inspecting dead letters).
    pub async fn take_message(
        &self,
        queue: &str,
    ) -> anyhow::Result<Option<lapin::message::BasicGetMessage>> {
        let options = BasicGetOptions { no_ack: true };
        Ok(self.channel.basic_get(queue.into(), options).await?)
    }

    /// Publishes a message to `shop.events` as a client of the test would.
    pub async fn publish(
        &self,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> anyhow::Result<()> {
        self.channel
            .basic_publish(
                EVENTS_EXCHANGE.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                props,
            )
            .await?
            .await?;
        Ok(())
    }

    /// Flips a fault switch and checks every running service applied it.
    pub async fn set_fault(&self, command: FaultCommand) -> anyhow::Result<Vec<FaultReply>> {
        let replies =
            faults::send_command(&self.vhost.amqp_url(), command, Duration::from_secs(5)).await?;
        let answered: Vec<_> = replies.iter().map(|r| r.service.clone()).collect();
        anyhow::ensure!(
            replies.len() == self.options.services.len(),
            "only {answered:?} answered {command:?}"
        );
        if let Some(err) = replies.iter().find_map(|r| r.error.clone()) {
            anyhow::bail!("{command:?} refused: {err}");
        }
        Ok(replies)
    }

    /// Sends SIGTERM to a service and waits for it to exit.
    pub async fn terminate(&mut self, service: Service) -> anyhow::Result<ExitStatus> {
        let (_, child) = self
            .children
            .iter_mut()
            .find(|(s, _)| *s == service)
            .context("service not running")?;
        let pid = child.id().context("service already exited")?;
        kill(Pid::from_raw(pid as i32), Signal::SIGTERM)?;
        Ok(tokio::time::timeout(Duration::from_secs(15), child.wait()).await??)
    }

    /// Opens a service's SQLite database read-only.
    pub async fn database(&self, service: Service) -> anyhow::Result<sqlx::SqlitePool> {
        let options = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(self.data_dir.join(format!("{service}.db")))
            .read_only(true);
        Ok(sqlx::SqlitePool::connect_with(options).await?)
    }
}

impl Drop for Shop {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.start_kill();
        }
        if std::thread::panicking() {
            for service in &self.options.services {
                eprintln!("----- {service} log -----\n{}", self.log(*service));
            }
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

/// A bounded, exclusive queue bound to every event; its messages are collected.
async fn tap_events(connection: &Connection) -> anyhow::Result<Arc<Mutex<Vec<TapMessage>>>> {
    let channel = connection.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert("x-max-length".into(), AMQPValue::LongLongInt(100_000));
    let options = QueueDeclareOptions {
        exclusive: true,
        auto_delete: true,
        ..Default::default()
    };
    let queue = channel.queue_declare("".into(), options, args).await?;
    channel
        .queue_bind(
            queue.name().clone(),
            EVENTS_EXCHANGE.into(),
            "#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let options = BasicConsumeOptions {
        no_ack: true,
        ..Default::default()
    };
    let mut consumer = channel
        .basic_consume(
            queue.name().clone(),
            "tap".into(),
            options,
            FieldTable::default(),
        )
        .await?;
    let tapped = Arc::new(Mutex::new(Vec::new()));
    let sink = tapped.clone();
    tokio::spawn(async move {
        let _channel = channel;
        while let Some(Ok(delivery)) = consumer.next().await {
            let p = &delivery.properties;
            let text = |v: &Option<lapin::types::ShortString>| {
                v.as_ref().map(|s| s.to_string()).unwrap_or_default()
            };
            let headers = p
                .headers()
                .as_ref()
                .map(|h| {
                    h.inner()
                        .iter()
                        .filter_map(|(k, v)| Some((k.to_string(), header_str(v)?.to_owned())))
                        .collect()
                })
                .unwrap_or_default();
            sink.lock().expect("tap lock").push(TapMessage {
                routing_key: delivery.routing_key.to_string(),
                event_type: text(p.kind()),
                message_id: text(p.message_id()),
                correlation_id: text(p.correlation_id()),
                app_id: text(p.app_id()),
                headers,
                body: delivery.data.clone(),
            });
        }
    });
    Ok(tapped)
}

/// A free loopback TCP port (bound and released).
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// A small valid order.
pub fn sample_order(customer: &str) -> NewOrder {
    NewOrder {
        customer: customer.into(),
        items: vec![flowscope_demo::events::LineItem {
            sku: "book-rust".into(),
            quantity: 2,
            price_cents: 3999,
        }],
        total_cents: 7998,
    }
}
