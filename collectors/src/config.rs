//! Configuration of the collectors; `[broker]`, `[firehose]` and
//! `[management]` in flowscope's TOML file.

use std::str::FromStr;

use lapin::uri::AMQPUri;
use serde::{Deserialize, Serialize};

use crate::redact::RedactConfig;

/// The broker flowscope watches unless configured.
pub const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672";
/// Its management API unless configured.
pub const DEFAULT_MANAGEMENT_URL: &str = "http://127.0.0.1:15672";
/// Ready tap messages the broker holds for flowscope at most; beyond, the
/// oldest go (the broker is never filled by flowscope). In flight on top of
/// these: at most the prefetch.
pub const DEFAULT_TAP_MAX_LENGTH: i64 = 100_000;
/// Bytes the tap queue holds at most.
pub const DEFAULT_TAP_MAX_BYTES: i64 = 64 * 1024 * 1024;
/// Tap messages in flight to flowscope at once.
pub const DEFAULT_TAP_PREFETCH: u16 = 1000;
/// How often tracing is re-asserted (the broker forgets it on restart).
pub const DEFAULT_REASSERT_TRACING_SECS: u64 = 30;
/// Management API queue poll: rates, unacked counts, the queue list. The
/// broker refreshes these numbers every 5 s (its default
/// `collect_statistics_interval`): asking more often reads the same numbers
/// and costs it CPU. Depths are fresher anyway (passive declares and the
/// firehose), and a queue a message is routed into is read before it is listed.
pub const DEFAULT_POLL_INTERVAL_MS: u64 = 5000;
/// Exchanges, bindings, connections and consumers.
pub const DEFAULT_TOPOLOGY_INTERVAL_MS: u64 = 5000;
/// Exact depths by passive declare (cheap: one round trip per queue).
pub const DEFAULT_DEPTH_INTERVAL_MS: u64 = 500;
/// Queues whose depth is read by passive declare, at most.
pub const DEFAULT_MAX_WATCHED_QUEUES: usize = 500;
/// Messages read from one dead-letter queue per inspection, at most.
pub const DEFAULT_DLQ_INSPECT_MAX: u16 = 100;
/// Inspections of one dead-letter queue, at most one per this interval.
pub const DEFAULT_DLQ_INSPECT_INTERVAL_MS: u64 = 1000;

/// Which broker, which vhosts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// AMQP URL without the vhost; its user and password also log in to the management API.
    pub amqp_url: String,
    /// Management API base URL.
    pub management_url: String,
    /// The vhosts to watch.
    pub vhosts: Vec<String>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        Self {
            amqp_url: DEFAULT_AMQP_URL.into(),
            management_url: DEFAULT_MANAGEMENT_URL.into(),
            vhosts: vec!["/".into()],
        }
    }
}

impl BrokerConfig {
    /// The parsed AMQP URI of `vhost`.
    pub fn uri_for(&self, vhost: &str) -> Result<AMQPUri, String> {
        let mut uri = AMQPUri::from_str(&self.amqp_url).map_err(|e| {
            format!(
                "broker.amqp_url {:?} is not an AMQP URL: {e}",
                redact_url(&self.amqp_url)
            )
        })?;
        uri.vhost = vhost.to_owned();
        Ok(uri)
    }

    /// User and password (from the AMQP URL).
    pub fn credentials(&self) -> (String, String) {
        match AMQPUri::from_str(&self.amqp_url) {
            Ok(uri) => (
                uri.authority.userinfo.username,
                uri.authority.userinfo.password,
            ),
            Err(_) => ("guest".into(), "guest".into()),
        }
    }

    /// Checks what can be checked before connecting.
    pub fn validate(&self) -> Result<(), String> {
        self.uri_for("/")?;
        if !self.management_url.starts_with("http://")
            && !self.management_url.starts_with("https://")
        {
            return Err(format!(
                "broker.management_url {:?} must start with http:// or https://",
                self.management_url
            ));
        }
        if self.vhosts.is_empty() {
            return Err("broker.vhosts is empty: name at least one vhost, e.g. [\"/\"]".into());
        }
        Ok(())
    }
}

/// An AMQP URL with its password hidden, for messages.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_owned(),
    }
}

/// The firehose tap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FirehoseConfig {
    /// Tap the firehose at all.
    pub enabled: bool,
    /// Tap queue bound in messages (`x-max-length`, oldest dropped).
    pub tap_max_length: i64,
    /// Tap queue bound in bytes (`x-max-length-bytes`).
    pub tap_max_bytes: i64,
    /// Unacked tap messages at once (`basic.qos`).
    pub prefetch: u16,
    /// Seconds between re-assertions of tracing on the vhost.
    pub reassert_tracing_secs: u64,
    /// Body capture and masking.
    pub redact: RedactConfig,
}

impl Default for FirehoseConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            tap_max_length: DEFAULT_TAP_MAX_LENGTH,
            tap_max_bytes: DEFAULT_TAP_MAX_BYTES,
            prefetch: DEFAULT_TAP_PREFETCH,
            reassert_tracing_secs: DEFAULT_REASSERT_TRACING_SECS,
            redact: RedactConfig::default(),
        }
    }
}

/// The management poller, exact depths and dead-letter inspection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManagementConfig {
    /// Poll the management API at all.
    pub enabled: bool,
    /// Milliseconds between queue polls.
    pub poll_interval_ms: u64,
    /// Milliseconds between topology polls.
    pub topology_interval_ms: u64,
    /// Milliseconds between exact depth reads (passive declares).
    pub depth_interval_ms: u64,
    /// Queues read by passive declare at most.
    pub max_watched_queues: usize,
    /// Messages peeked per dead-letter queue inspection (0 turns inspection off).
    pub dlq_inspect_max: u16,
    /// Milliseconds between inspections of one dead-letter queue, at least.
    pub dlq_inspect_interval_ms: u64,
}

impl Default for ManagementConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            poll_interval_ms: DEFAULT_POLL_INTERVAL_MS,
            topology_interval_ms: DEFAULT_TOPOLOGY_INTERVAL_MS,
            depth_interval_ms: DEFAULT_DEPTH_INTERVAL_MS,
            max_watched_queues: DEFAULT_MAX_WATCHED_QUEUES,
            dlq_inspect_max: DEFAULT_DLQ_INSPECT_MAX,
            dlq_inspect_interval_ms: DEFAULT_DLQ_INSPECT_INTERVAL_MS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vhost_goes_into_the_uri_and_passwords_stay_out_of_messages() {
        let broker = BrokerConfig::default();
        assert_eq!(broker.uri_for("shop").unwrap().vhost, "shop");
        assert_eq!(broker.credentials(), ("guest".into(), "guest".into()));
        assert_eq!(
            redact_url("amqp://u:secret@h:5672/v"),
            "amqp://u:***@h:5672/v"
        );
        let bad = BrokerConfig {
            amqp_url: "http://x".into(),
            ..Default::default()
        };
        assert!(bad.validate().is_err());
    }
}
