//! A small client of the RabbitMQ management HTTP API, asking only for the
//! columns flowscope uses.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::config::BrokerConfig;

/// How long one management API call may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

const QUEUE_COLUMNS: &str = "name,durable,auto_delete,exclusive,type,arguments,messages_ready,\
messages_unacknowledged,consumers,head_message_timestamp,message_stats.publish_details.rate,\
message_stats.deliver_get_details.rate,message_stats.ack_details.rate,message_stats.publish,message_stats.deliver_get";

/// What went wrong talking to the management API.
#[derive(Debug, thiserror::Error)]
pub enum ManagementError {
    #[error(
        "the RabbitMQ management API at {url} does not answer ({source}); is the management plugin on? \
         (`rabbitmq-plugins enable rabbitmq_management`)"
    )]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "the management API refused the credentials of broker.amqp_url (HTTP {0}); the user needs the `monitoring` tag"
    )]
    Unauthorized(u16),
    #[error("the management API answered {status} for {path}: {body}")]
    Status {
        status: u16,
        path: String,
        body: String,
    },
    #[error("unexpected answer from the management API for {path}: {source}")]
    Decode {
        path: String,
        #[source]
        source: reqwest::Error,
    },
}

/// Result of a management API call.
pub type Result<T> = std::result::Result<T, ManagementError>;

/// The management API of one broker.
#[derive(Debug, Clone)]
pub struct ManagementClient {
    base: String,
    user: String,
    password: String,
    http: reqwest::Client,
}

/// Percent-encodes one path segment (vhost `/` is `%2F`).
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

impl ManagementClient {
    /// A client of the broker's management API, logging in with the AMQP URL's credentials.
    pub fn new(broker: &BrokerConfig) -> Self {
        let (user, password) = broker.credentials();
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .expect("HTTP client builds");
        Self {
            base: broker.management_url.trim_end_matches('/').to_owned(),
            user,
            password,
            http,
        }
    }

    async fn send(
        &self,
        request: reqwest::RequestBuilder,
        path: &str,
    ) -> Result<reqwest::Response> {
        let resp = request
            .basic_auth(&self.user, Some(&self.password))
            .send()
            .await
            .map_err(|source| ManagementError::Unreachable {
                url: self.base.clone(),
                source,
            })?;
        let status = resp.status().as_u16();
        match status {
            200..=299 => Ok(resp),
            401 | 403 => Err(ManagementError::Unauthorized(status)),
            _ => Err(ManagementError::Status {
                status,
                path: path.to_owned(),
                body: resp
                    .text()
                    .await
                    .unwrap_or_default()
                    .chars()
                    .take(300)
                    .collect(),
            }),
        }
    }

    /// GET `/api/<path>` as JSON.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        let resp = self
            .send(self.http.get(format!("{}/api/{path}", self.base)), path)
            .await?;
        resp.json().await.map_err(|source| ManagementError::Decode {
            path: path.to_owned(),
            source,
        })
    }

    /// Turns tracing (the firehose) on for `vhost` if it is off; `true` if it was off.
    pub async fn ensure_tracing(&self, vhost: &str) -> Result<bool> {
        let path = format!("vhosts/{}", encode(vhost));
        let current: Value = self.get(&path).await?;
        if current["tracing"].as_bool() == Some(true) {
            return Ok(false);
        }
        // PUT replaces the vhost's metadata: keep its description and tags.
        let mut body = json!({ "tracing": true });
        for key in ["description", "tags", "default_queue_type"] {
            if let Some(value) = current.get(key).filter(|v| !v.is_null()) {
                body[key] = value.clone();
            }
        }
        if let Some(tags) = body.get("tags").and_then(Value::as_array) {
            let joined: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
            body["tags"] = json!(joined.join(","));
        }
        self.send(
            self.http
                .put(format!("{}/api/{path}", self.base))
                .json(&body),
            &path,
        )
        .await?;
        Ok(true)
    }

    /// Queues of a vhost, with the columns the poller uses.
    pub async fn queues(&self, vhost: &str) -> Result<Vec<Value>> {
        self.get(&format!("queues/{}?columns={QUEUE_COLUMNS}", encode(vhost)))
            .await
    }

    /// Exchanges of a vhost.
    pub async fn exchanges(&self, vhost: &str) -> Result<Vec<Value>> {
        self.get(&format!(
            "exchanges/{}?columns=name,type,durable,internal",
            encode(vhost)
        ))
        .await
    }

    /// Bindings of a vhost.
    pub async fn bindings(&self, vhost: &str) -> Result<Vec<Value>> {
        self.get(&format!("bindings/{}", encode(vhost))).await
    }

    /// Connections of a vhost.
    pub async fn connections(&self, vhost: &str) -> Result<Vec<Value>> {
        self.get(&format!(
            "vhosts/{}/connections?columns=name,user,peer_host,peer_port,client_properties",
            encode(vhost)
        ))
        .await
    }

    /// Consumers of a vhost.
    pub async fn consumers(&self, vhost: &str) -> Result<Vec<Value>> {
        self.get(&format!("consumers/{}", encode(vhost))).await
    }

    /// One connection by its broker name; `None` if the broker does not know it.
    pub async fn connection(&self, name: &str) -> Result<Option<Value>> {
        match self.get(&format!("connections/{}", encode(name))).await {
            Ok(value) => Ok(Some(value)),
            Err(ManagementError::Status { status: 404, .. }) => Ok(None),
            Err(err) => Err(err),
        }
    }
}
