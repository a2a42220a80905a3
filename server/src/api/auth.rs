//! Bearer tokens with roles. Off unless tokens are configured; then every
//! API and stream call needs one (`Authorization: Bearer <token>`, or
//! `?access_token=` for the browser's EventSource, which cannot set headers).
//! Tokens are never logged.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::error::ApiError;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Read everything.
    Viewer,
    /// Also redrive and purge dead letters, and flip the demo's switches.
    Operator,
    /// Everything.
    Admin,
}

/// One configured token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    pub role: Role,
    /// Who it is, for the audit log.
    #[serde(default)]
    pub name: String,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("token", &"***")
            .field("role", &self.role)
            .field("name", &self.name)
            .finish()
    }
}

/// `[auth]`: tokens inline or in a file (one `role token [name]` per line).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub tokens: Vec<TokenConfig>,
    pub token_file: Option<PathBuf>,
}

/// The EventSource's token, in the query.
#[derive(Deserialize)]
struct TokenQuery {
    access_token: Option<String>,
}

/// Who called.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub role: Role,
}

/// The tokens in force; empty = auth off.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    tokens: Arc<HashMap<String, Caller>>,
}

impl Auth {
    /// Reads the configured tokens; a malformed token file is an error naming the line.
    pub fn load(config: &AuthConfig) -> Result<Self, String> {
        let mut tokens = HashMap::new();
        for t in &config.tokens {
            let name = if t.name.is_empty() {
                format!("{:?} token", t.role).to_lowercase()
            } else {
                t.name.clone()
            };
            tokens.insert(t.token.clone(), Caller { name, role: t.role });
        }
        if let Some(path) = &config.token_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("auth.token_file {}: {e}", path.display()))?;
            for (n, line) in text
                .lines()
                .enumerate()
                .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            {
                let mut parts = line.split_whitespace();
                let (Some(role), Some(token)) = (parts.next(), parts.next()) else {
                    return Err(format!(
                        "auth.token_file {} line {}: expected `<viewer|operator|admin> <token> [name]`",
                        path.display(),
                        n + 1
                    ));
                };
                let role: Role = serde_json::from_value(serde_json::json!(role))
                    .map_err(|_| format!("auth.token_file {} line {}: role {role:?} is not viewer, operator or admin", path.display(), n + 1))?;
                let name = parts
                    .next()
                    .map(str::to_owned)
                    .unwrap_or_else(|| format!("token on line {}", n + 1));
                tokens.insert(token.to_owned(), Caller { name, role });
            }
        }
        Ok(Self {
            tokens: Arc::new(tokens),
        })
    }

    /// Whether tokens are required.
    pub fn enabled(&self) -> bool {
        !self.tokens.is_empty()
    }

    fn caller(&self, request: &Request) -> Option<Caller> {
        let header = request
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned);
        // Percent-decoded, as a browser encodes it.
        let query = axum::extract::Query::<TokenQuery>::try_from_uri(request.uri())
            .ok()
            .and_then(|q| q.0.access_token);
        header
            .or(query)
            .and_then(|t| self.tokens.get(t.trim()).cloned())
    }
}

/// Middleware: the role needed is viewer for reads and operator for changes.
pub async fn require(State(auth): State<Auth>, mut request: Request, next: Next) -> Response {
    if !auth.enabled() {
        request.extensions_mut().insert(Caller {
            name: "anonymous".into(),
            role: Role::Admin,
        });
        return next.run(request).await;
    }
    let Some(caller) = auth.caller(&request) else {
        return ApiError {
            status: StatusCode::UNAUTHORIZED,
            message: "a bearer token is required (Authorization: Bearer <token>)".into(),
        }
        .into_response();
    };
    let needed = if request.method() == Method::GET || request.method() == Method::HEAD {
        Role::Viewer
    } else {
        Role::Operator
    };
    if caller.role < needed {
        let message = format!(
            "this needs the {needed:?} role; the token has {:?}",
            caller.role
        )
        .to_lowercase();
        // `role` and `needed` let the UI say what the token may not do.
        let body = serde_json::json!({ "error": message, "role": caller.role, "needed": needed });
        return (StatusCode::FORBIDDEN, axum::Json(body)).into_response();
    }
    request.extensions_mut().insert(caller);
    next.run(request).await
}
