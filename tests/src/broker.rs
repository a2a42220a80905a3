//! Throwaway vhosts on the real RabbitMQ, and the management API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use anyhow::Context;
use serde_json::Value;

/// Management API of the machine's broker (override with `RABBITMQ_MGMT_URL`).
pub fn mgmt_url() -> String {
    std::env::var("RABBITMQ_MGMT_URL").unwrap_or_else(|_| "http://127.0.0.1:15672".into())
}

/// AMQP host:port of the machine's broker (override with `RABBITMQ_AMQP_ADDR`).
pub fn amqp_addr() -> String {
    std::env::var("RABBITMQ_AMQP_ADDR").unwrap_or_else(|_| "127.0.0.1:5672".into())
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// A vhost created for one test, deleted (with everything in it) on drop.
#[derive(Debug)]
pub struct TestVhost {
    pub name: String,
}

impl TestVhost {
    /// Creates `flowscope-test-<random>` and gives `guest` full rights on it.
    pub async fn create() -> anyhow::Result<Self> {
        let name = format!(
            "flowscope-test-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let http = client();
        http.put(format!("{}/api/vhosts/{name}", mgmt_url()))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"description": "flowscope test, deleted after"}))
            .send()
            .await
            .context(
                "the RabbitMQ management API does not answer; run scripts/test, which enables it",
            )?
            .error_for_status()?;
        http.put(format!("{}/api/permissions/{name}/guest", mgmt_url()))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({"configure": ".*", "write": ".*", "read": ".*"}))
            .send()
            .await?
            .error_for_status()?;
        Ok(Self { name })
    }

    /// The AMQP URL of this vhost.
    pub fn amqp_url(&self) -> String {
        format!("amqp://guest:guest@{}/{}", amqp_addr(), self.name)
    }

    /// A GET on the management API, under this vhost where `path` has `{vhost}`.
    pub async fn mgmt_get(&self, path: &str) -> anyhow::Result<Value> {
        let path = path.replace("{vhost}", &self.name);
        let resp = client()
            .get(format!("{}/api/{path}", mgmt_url()))
            .basic_auth("guest", Some("guest"))
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.json().await?)
    }

    /// Turns the firehose of this vhost on or off, as `rabbitmqctl trace_on/off` would.
    pub async fn set_tracing(&self, on: bool) -> anyhow::Result<()> {
        client()
            .put(format!("{}/api/vhosts/{}", mgmt_url(), self.name))
            .basic_auth("guest", Some("guest"))
            .json(&serde_json::json!({ "tracing": on }))
            .send()
            .await?
            .error_for_status()?;
        Ok(())
    }

    /// Force-closes every connection of this vhost whose client-provided name is `name`,
    /// as an operator (or a broker restart) would; returns how many it closed.
    pub async fn close_connections_named(&self, name: &str) -> anyhow::Result<usize> {
        let connections = self.mgmt_get("vhosts/{vhost}/connections").await?;
        let mut closed = 0;
        for conn in connections.as_array().into_iter().flatten() {
            let provided = conn["client_properties"]["connection_name"].as_str();
            if provided == Some(name) {
                let id = conn["name"].as_str().context("connection without a name")?;
                client()
                    .delete(format!("{}/api/connections/{}", mgmt_url(), encode(id)))
                    .basic_auth("guest", Some("guest"))
                    .header("X-Reason", "flowscope test: simulated connection drop")
                    .send()
                    .await?
                    .error_for_status()?;
                closed += 1;
            }
        }
        Ok(closed)
    }
}

impl Drop for TestVhost {
    fn drop(&mut self) {
        // Synchronous on purpose: Drop may run outside a runtime.
        if let Err(err) = delete_vhost(&self.name) {
            eprintln!("could not delete test vhost {}: {err}", self.name);
        }
    }
}

fn delete_vhost(name: &str) -> std::io::Result<()> {
    let url = mgmt_url();
    let host = url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        stream,
        "DELETE /api/vhosts/{name} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic Z3Vlc3Q6Z3Vlc3Q=\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(())
}

/// Percent-encodes a path segment (connection names have spaces, `>` and `:`).
pub fn encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
