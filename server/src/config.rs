//! flowscope's configuration: one TOML file, every key overridable by a
//! `FLOWSCOPE_<SECTION>_<KEY>` environment variable and by CLI flags.
//!
//! ```toml
//! [broker]
//! amqp_url = "amqp://guest:guest@127.0.0.1:5672"
//! management_url = "http://127.0.0.1:15672"
//! vhosts = ["/"]
//!
//! [firehose.redact]
//! headers = ["authorization"]
//! json_pointers = ["/data/card_number"]
//!
//! [otlp]
//! grpc_addr = "127.0.0.1:4317"
//!
//! [ui]
//! trace_url_template = "http://localhost:16686/trace/{trace_id}"
//! ```
//!
//! `FLOWSCOPE_BROKER_AMQP_URL=amqp://…` sets `broker.amqp_url`;
//! `FLOWSCOPE_FIREHOSE_REDACT_HEADERS='["authorization"]'` sets a list (values
//! are TOML literals, or plain strings). A key that does not exist, in the
//! file or the environment, is an error that names it.

use std::path::{Path, PathBuf};

use flowscope_collectors::config::{BrokerConfig, FirehoseConfig, ManagementConfig};
use flowscope_collectors::otlp::OtlpConfig;
use flowscope_collectors::pipeline::DEFAULT_CHANNEL_CAPACITY;
use serde::{Deserialize, Serialize};

/// The file read when `--config` is not given, if it exists.
pub const DEFAULT_CONFIG_FILE: &str = "flowscope.toml";
/// Environment variables with the prefix that are not settings: flowscope's own
/// (`--config`, logging) and those of its scripts, tests and benchmarks, which a
/// shell that runs them may still have set.
const NOT_SETTINGS: &[&str] = &[
    "FLOWSCOPE_CONFIG",
    "FLOWSCOPE_LOG",
    "FLOWSCOPE_PY_VENV",
    "FLOWSCOPE_BIN",
    "FLOWSCOPE_ARTIFACTS_DIR",
    "FLOWSCOPE_TOOLS_DIR",
    "FLOWSCOPE_BENCH_JSON",
];

/// Everything configurable.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: crate::serve::ServerConfig,
    pub broker: BrokerConfig,
    pub firehose: FirehoseConfig,
    pub management: ManagementConfig,
    pub otlp: OtlpConfig,
    pub pipeline: PipelineConfig,
    pub correlation: crate::correlator::config::CorrelationConfig,
    pub store: crate::store::StoreConfig,
    pub alerts: crate::alerts::AlertConfig,
    pub auth: crate::api::auth::AuthConfig,
    pub ui: crate::api::ui_config::UiConfig,
}

/// The observation channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Observations buffered between the collectors and their consumer.
    pub channel_capacity: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            channel_capacity: DEFAULT_CHANNEL_CAPACITY,
        }
    }
}

/// A configuration that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the configuration file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("configuration file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("environment variable {name}: {message}")]
    Env { name: String, message: String },
    #[error("configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads `path` (or `flowscope.toml` if present), then the environment.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let mut value = toml::Value::try_from(Config::default()).expect("defaults serialize");
        let file = match path {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(DEFAULT_CONFIG_FILE)).filter(|p| p.exists()),
        };
        if let Some(path) = &file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let overlay: toml::Value = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
            merge(&mut value, overlay);
            // Unknown keys are reported against the file they are in.
            check(value.clone()).map_err(|message| ConfigError::Parse {
                path: path.clone(),
                message,
            })?;
        }
        for (name, raw) in std::env::vars() {
            if name.starts_with("FLOWSCOPE_") && !NOT_SETTINGS.contains(&name.as_str()) {
                apply_env(&mut value, &name, &raw)?;
            }
        }
        let config = check(value).map_err(ConfigError::Invalid)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.broker.validate().map_err(ConfigError::Invalid)?;
        self.firehose
            .redact
            .validate()
            .map_err(ConfigError::Invalid)?;
        if self.pipeline.channel_capacity == 0 {
            return Err(ConfigError::Invalid(
                "pipeline.channel_capacity must be at least 1".into(),
            ));
        }
        self.ui.validate().map_err(ConfigError::Invalid)?;
        if self.firehose.tap_max_length <= 0 {
            return Err(ConfigError::Invalid(
                "firehose.tap_max_length must be positive: the tap queue is always bounded".into(),
            ));
        }
        Ok(())
    }
}

fn check(value: toml::Value) -> Result<Config, String> {
    Config::deserialize(value).map_err(|e| e.to_string())
}

fn merge(base: &mut toml::Value, overlay: toml::Value) {
    match (base, overlay) {
        (toml::Value::Table(base), toml::Value::Table(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(&key) {
                    Some(existing) if existing.is_table() && value.is_table() => {
                        merge(existing, value)
                    }
                    _ => {
                        base.insert(key, value);
                    }
                }
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// Sets the key a `FLOWSCOPE_…` variable names, and checks the result so a
/// typo is reported against the variable.
fn apply_env(value: &mut toml::Value, name: &str, raw: &str) -> Result<(), ConfigError> {
    let env_error = |message: String| ConfigError::Env {
        name: name.to_owned(),
        message,
    };
    let path = name.trim_start_matches("FLOWSCOPE_").to_ascii_lowercase();
    let mut table = value.as_table_mut().expect("config is a table");
    let mut rest = path.as_str();
    let mut depth = 0;
    loop {
        // The longest key that is the rest, or a section whose name prefixes it.
        let key = table
            .iter()
            .filter(|(k, v)| {
                rest == k.as_str() || (v.is_table() && rest.starts_with(&format!("{k}_")))
            })
            .map(|(k, _)| k.clone())
            .max_by_key(String::len);
        match key {
            Some(key) if rest != key => {
                rest = &rest[key.len() + 1..];
                table = table
                    .get_mut(&key)
                    .and_then(toml::Value::as_table_mut)
                    .expect("filtered on tables");
                depth += 1;
            }
            // A leaf: an existing key, or one the defaults leave out (an unset option).
            _ if depth > 0 => {
                table.insert(rest.to_owned(), parse_env_value(raw));
                break;
            }
            _ => {
                return Err(env_error(format!(
                    "does not name a setting (no section {rest:?})"
                )));
            }
        }
    }
    // A key no section has, or a value of the wrong type: the error says which.
    check(value.clone())
        .map(drop)
        .map_err(|e| env_error(format!("is not a valid setting: {e}")))
}

/// A TOML literal (`true`, `5`, `["a"]`) when it is one, else the string itself.
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_names_reach_nested_keys_and_typos_are_named() {
        let mut value = toml::Value::try_from(Config::default()).unwrap();
        apply_env(&mut value, "FLOWSCOPE_BROKER_AMQP_URL", "amqp://u:p@h:5672").unwrap();
        apply_env(
            &mut value,
            "FLOWSCOPE_FIREHOSE_REDACT_HEADERS",
            r#"["authorization"]"#,
        )
        .unwrap();
        apply_env(&mut value, "FLOWSCOPE_MANAGEMENT_POLL_INTERVAL_MS", "250").unwrap();
        let config = check(value.clone()).unwrap();
        assert_eq!(config.broker.amqp_url, "amqp://u:p@h:5672");
        assert_eq!(config.firehose.redact.headers, ["authorization"]);
        assert_eq!(config.management.poll_interval_ms, 250);
        let err = apply_env(&mut value, "FLOWSCOPE_BROKER_AMQP_URI", "x").unwrap_err();
        assert!(
            err.to_string().contains("FLOWSCOPE_BROKER_AMQP_URI")
                && err.to_string().contains("amqp_uri"),
            "{err}"
        );
        // A value of the wrong type names the key and what it takes.
        let mut value = toml::Value::try_from(Config::default()).unwrap();
        let err = apply_env(&mut value, "FLOWSCOPE_OTLP_HEADER_TIMEOUT_SECS", "soon").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("FLOWSCOPE_OTLP_HEADER_TIMEOUT_SECS")
                && text.contains("otlp.header_timeout_secs")
                && text.contains("expected u64")
                && !text.contains("does not name"),
            "{text}"
        );
        // An option key works whether or not the defaults serialize it.
        let mut value = toml::Value::try_from(Config::default()).unwrap();
        apply_env(&mut value, "FLOWSCOPE_SERVER_ASSETS_DIR", "dist").unwrap();
        assert_eq!(check(value).unwrap().server.assets_dir, Some("dist".into()));
    }

    #[test]
    fn the_trace_link_template_comes_from_env_and_a_bad_one_is_refused() {
        let mut value = toml::Value::try_from(Config::default()).unwrap();
        apply_env(
            &mut value,
            "FLOWSCOPE_UI_TRACE_URL_TEMPLATE",
            "http://localhost:16686/trace/{trace_id}",
        )
        .unwrap();
        let config = check(value).unwrap();
        assert_eq!(
            config.ui.trace_url_template.as_deref(),
            Some("http://localhost:16686/trace/{trace_id}")
        );
        assert_eq!(config.validate().map_err(|e| e.to_string()), Ok(()));
        let typo = Config {
            ui: crate::api::ui_config::UiConfig {
                trace_url_template: Some("http://localhost:16686/trace/{traceId}".into()),
            },
            ..Default::default()
        };
        let err = typo.validate().unwrap_err().to_string();
        assert!(
            err.contains("ui.trace_url_template") && err.contains("{trace_id}"),
            "{err}"
        );
    }

    #[test]
    fn a_typo_in_the_file_is_named() {
        let dir = std::env::temp_dir().join(format!("flowscope-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[broker]\namqp_ur = \"amqp://x\"\n").unwrap();
        let err = Config::load(Some(&path)).unwrap_err().to_string();
        assert!(err.contains("amqp_ur") && err.contains("bad.toml"), "{err}");
        std::fs::write(&path, "[broker]\nvhosts = [\"/\", \"shop\"]\n").unwrap();
        assert_eq!(
            Config::load(Some(&path)).unwrap().broker.vhosts,
            ["/", "shop"]
        );
    }
}
