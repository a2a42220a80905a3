//! Serving the built UI next to the API: files from the assets directory,
//! `index.html` for client-side routes, and 404 for a missing asset with an
//! extension (never `index.html` for a missing script).

use std::path::Path;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse};

/// `api` plus the UI from `assets` (when given and present).
pub fn with_assets(api: Router, assets: Option<&Path>) -> Router {
    match assets.filter(|dir| dir.join("index.html").exists()) {
        Some(dir) => {
            let index = std::fs::read_to_string(dir.join("index.html")).unwrap_or_default();
            let files = dir.to_path_buf();
            api.fallback(move |uri: axum::http::Uri| {
                let index = index.clone();
                let files = files.clone();
                async move { serve(&files, uri.path(), index).await }
            })
        }
        None => api.fallback(|| async {
            Html("<!doctype html><title>flowscope</title><p>flowscope is running. The API is at <a href=\"/api/openapi.json\">/api</a>; the UI is not built (server.assets_dir).</p>")
        }),
    }
}

async fn serve(dir: &Path, path: &str, index: String) -> axum::response::Response {
    let relative = path.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let file = dir.join(relative);
    if !relative.is_empty() && file.is_file() {
        let Ok(bytes) = tokio::fs::read(&file).await else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let mime = match file.extension().and_then(|e| e.to_str()) {
            Some("js") => "text/javascript",
            Some("wasm") => "application/wasm",
            Some("css") => "text/css",
            Some("html") => "text/html; charset=utf-8",
            Some("svg") => "image/svg+xml",
            Some("png") => "image/png",
            Some("json") => "application/json",
            _ => "application/octet-stream",
        };
        return ([(axum::http::header::CONTENT_TYPE, mime)], bytes).into_response();
    }
    if Path::new(relative).extension().is_some() {
        return StatusCode::NOT_FOUND.into_response();
    }
    Html(index).into_response()
}
