//! `[ui]`: what the web UI is told about this server (`GET /api/ui-config`).
//!
//! ```toml
//! [ui]
//! # Jaeger
//! trace_url_template = "http://localhost:16686/trace/{trace_id}"
//! ```

use axum::extract::State;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::AppState;
use super::auth::Caller;

/// The placeholder a trace URL template must contain.
pub const TRACE_ID_PLACEHOLDER: &str = "{trace_id}";

/// `[ui]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// Link from a flow to its trace in a tracing UI: an http(s) URL with
    /// `{trace_id}` where the trace id goes (URL-encoded), e.g.
    /// `http://localhost:16686/trace/{trace_id}` for Jaeger. None: no link.
    pub trace_url_template: Option<String>,
}

impl UiConfig {
    /// A template without `{trace_id}`, or not an http(s) URL, is refused.
    pub fn validate(&self) -> Result<(), String> {
        let Some(template) = &self.trace_url_template else {
            return Ok(());
        };
        let refuse = |why: &str| {
            Err(format!(
                "ui.trace_url_template {template:?} {why}; expected e.g. \"http://localhost:16686/trace/{{trace_id}}\""
            ))
        };
        if !template.contains(TRACE_ID_PLACEHOLDER) {
            return refuse("has no {trace_id} placeholder");
        }
        let url = template.replace(TRACE_ID_PLACEHOLDER, "0");
        match reqwest::Url::parse(&url) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(()),
            Ok(_) => refuse("is not an http:// or https:// URL"),
            Err(e) => refuse(&format!("is not a URL ({e})")),
        }
    }
}

/// `GET /api/ui-config`: the trace link template, whether the demo shop
/// runs here, whether tokens are required, and who the caller is.
pub async fn ui_config(
    State(state): State<AppState>,
    Extension(caller): Extension<Caller>,
) -> Json<Value> {
    Json(json!({
        "trace_url_template": state.ui.trace_url_template,
        "demo": state.demo.is_some(),
        "auth_required": state.auth.enabled(),
        "user": caller.name,
        "role": caller.role,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(template: &str) -> Result<(), String> {
        UiConfig {
            trace_url_template: Some(template.into()),
        }
        .validate()
    }

    #[test]
    fn trace_templates_need_the_placeholder_and_http() {
        assert_eq!(check("http://localhost:16686/trace/{trace_id}"), Ok(()));
        assert_eq!(
            check(
                "https://grafana.example/explore?left={\"queries\":[{\"query\":\"{trace_id}\"}]}"
            ),
            Ok(())
        );
        assert!(
            check("http://localhost:16686/trace/{traceid}")
                .unwrap_err()
                .contains("no {trace_id} placeholder")
        );
        assert!(
            check("ftp://host/{trace_id}")
                .unwrap_err()
                .contains("not an http")
        );
        assert!(check("localhost:16686/{trace_id}").is_err());
        assert_eq!(UiConfig::default().validate(), Ok(()));
    }
}
