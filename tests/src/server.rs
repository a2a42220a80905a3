//! flowscope's server in the test process, watching a test vhost, with a
//! webhook receiver for its alerts.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::routing::post;
use flowscope_server::config::Config;
use flowscope_server::serve::{RunningServer, start};
use serde_json::Value;

use crate::broker::TestVhost;
use crate::eventually;
use crate::observe::broker_config;

/// A configuration for a server watching `vhost` on free ports, storing in `data_dir`.
pub fn test_config(vhost: &TestVhost, data_dir: &std::path::Path) -> Config {
    let mut config = Config {
        broker: broker_config(vhost),
        ..Default::default()
    };
    config.otlp.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.otlp.http_addr = "127.0.0.1:0".parse().unwrap();
    config.server.listen = "127.0.0.1:0".parse().unwrap();
    config.server.audit_file = None;
    config.store.url = format!("sqlite://{}", data_dir.join("flowscope.db").display());
    config.correlation = flowscope_server::correlator::config::CorrelationConfig::demo_shop();
    config.management.topology_interval_ms = 1000;
    config
}

/// The server and a client for its API.
#[derive(Debug)]
pub struct TestServer {
    pub server: Option<RunningServer>,
    pub base: String,
    pub otlp_endpoint: String,
    pub http: reqwest::Client,
}

impl TestServer {
    /// Starts flowscope with `config`.
    pub async fn start(config: Config, demo_amqp_url: Option<String>) -> anyhow::Result<Self> {
        // The server's own log, shown by the test runner when a test fails.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "info,lapin=off,flowscope_demo=warn",
            ))
            .with_test_writer()
            .try_init();
        let server = start(config, demo_amqp_url).await?;
        let base = format!("http://{}", server.addr);
        let otlp_endpoint = format!("http://{}", server.otlp_addrs.expect("OTLP on").0);
        Ok(Self {
            server: Some(server),
            base,
            otlp_endpoint,
            http: reqwest::Client::new(),
        })
    }

    /// GET `path` as JSON (panics on a non-2xx answer, with its body).
    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        anyhow::ensure!(status.is_success(), "GET {path}: {status} {body}");
        Ok(body)
    }

    /// POST `body` to `path`; returns status and JSON.
    pub async fn post(&self, path: &str, body: Value) -> anyhow::Result<(u16, Value)> {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await?;
        Ok((resp.status().as_u16(), resp.json().await?))
    }

    /// Waits until the flow of `order_id` exists and `check` accepts it; returns it.
    pub async fn wait_for_flow(
        &self,
        order_id: &str,
        timeout: Duration,
        what: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        eventually(timeout, what, || async {
            let found = self.get(&format!("/api/lookup/{order_id}")).await?;
            let id = found["flow_ids"][0].as_str().unwrap_or_default().to_owned();
            let flow = self.get(&format!("/api/flows/{id}")).await?;
            Ok(check(&flow).then_some(flow))
        })
        .await
    }

    /// Stops the server in order.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop().await;
        }
    }
}

/// A webhook receiver keeping every JSON body it is sent.
#[derive(Debug, Clone, Default)]
pub struct Webhook {
    pub received: Arc<Mutex<Vec<Value>>>,
}

impl Webhook {
    /// Serves on a free port; returns it and its URL.
    pub async fn start() -> (Self, String) {
        let hook = Webhook::default();
        let sink = hook.received.clone();
        let app = axum::Router::new().route(
            "/hook",
            post(move |Json(body): Json<Value>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(body);
                    "ok"
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (hook, url)
    }

    /// Bodies received so far.
    pub fn bodies(&self) -> Vec<Value> {
        self.received.lock().unwrap().clone()
    }
}

/// A `flowscope serve` configuration file in a directory, on free ports:
/// the UI/API and OTLP addresses and the audit log, then `sections` (more
/// TOML) as given.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The file written (`flowscope.toml` in the directory).
    pub path: std::path::PathBuf,
    /// The UI/API port.
    pub listen: u16,
    /// The OTLP/gRPC port.
    pub grpc: u16,
    /// The OTLP/HTTP port.
    pub http: u16,
}

impl ServeConfig {
    /// Writes it.
    pub fn write(dir: &std::path::Path, sections: &str) -> Self {
        let port = || crate::shop::free_port().expect("a free port");
        let (listen, grpc, http) = (port(), port(), port());
        let path = dir.join("flowscope.toml");
        std::fs::write(
            &path,
            format!(
                r#"[server]
listen = "127.0.0.1:{listen}"
audit_file = "{dir}/audit.log"
[otlp]
grpc_addr = "127.0.0.1:{grpc}"
http_addr = "127.0.0.1:{http}"
{sections}"#,
                dir = dir.display(),
            ),
        )
        .unwrap_or_else(|err| panic!("cannot write {}: {err}", path.display()));
        Self {
            path,
            listen,
            grpc,
            http,
        }
    }
}

/// `flowscope --config <file> serve` as a real process (the workspace's
/// binary, or `$FLOWSCOPE_BIN`), killed if the test ends early.
#[derive(Debug)]
pub struct ServeProcess(pub std::process::Child);

impl ServeProcess {
    /// Starts it; its log goes to the test's stderr.
    pub fn spawn(config: &std::path::Path) -> Self {
        let binary =
            crate::shop::workspace_binary("flowscope", "FLOWSCOPE_BIN", "flowscope-server");
        let child = std::process::Command::new(&binary)
            .args(["--config", &config.to_string_lossy(), "serve"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
        Self(child)
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
