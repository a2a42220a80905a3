//! Serving the built UI next to the API: files from the assets directory
//! (`scripts/build-ui` writes `dist/`), `index.html` for client-side routes,
//! and 404 for a missing static file (never `index.html` for a missing script).
//!
//! A file with a precompressed sibling (`pkg/app_bg.wasm.br` or `.gz`, written
//! by `scripts/build-ui`) is answered compressed, with the original content
//! type: brotli to clients that accept `br` (every current browser does, on
//! plain HTTP to localhost too), else gzip to clients that accept gzip.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{Html, IntoResponse, Response};

/// Extensions of static files: a missing one is a 404, not the app. Other
/// dotted paths (`/queues/%2F/payment.orders`) are client-side routes.
const STATIC_EXTENSIONS: [&str; 15] = [
    "js", "mjs", "wasm", "css", "html", "map", "json", "png", "svg", "ico", "txt", "gz", "br",
    "woff", "woff2",
];

/// `api` plus the UI from `assets` (when given and present).
pub fn with_assets(api: Router, assets: Option<&Path>) -> Router {
    match assets.filter(|dir| dir.join("index.html").exists()) {
        Some(dir) => {
            let index = std::fs::read_to_string(dir.join("index.html")).unwrap_or_default();
            let files = dir.to_path_buf();
            api.fallback(move |uri: Uri, headers: HeaderMap| {
                let index = index.clone();
                let files = files.clone();
                async move { serve(&files, uri.path(), &accepted(&headers), index).await }
            })
        }
        None => api.fallback(|| async {
            Html("<!doctype html><title>flowscope</title><p>flowscope is running. The API is at <a href=\"/api/openapi.json\">/api</a>; the UI is not built (run scripts/build-ui, or set server.assets_dir).</p>")
        }),
    }
}

/// The precompressed encodings we serve, best first: (coding, file suffix).
const ENCODINGS: [(&str, &str); 2] = [("br", "br"), ("gzip", "gz")];

/// The codings of [`ENCODINGS`] that `Accept-Encoding` lists (without `q=0`), best first.
fn accepted(headers: &HeaderMap) -> Vec<&'static str> {
    let items: Vec<(String, bool)> = headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|item| {
            let mut parts = item.split(';').map(str::trim);
            let coding = parts.next().unwrap_or("").to_ascii_lowercase();
            let refused = parts.any(|p| p.replace(' ', "") == "q=0");
            (coding, refused)
        })
        .collect();
    ENCODINGS
        .iter()
        .filter(|(coding, _)| {
            let named = items.iter().find(|(c, _)| c == coding);
            match named {
                Some((_, refused)) => !refused,
                None => items.iter().any(|(c, refused)| c == "*" && !refused),
            }
        })
        .map(|(coding, _)| *coding)
        .collect()
}

fn content_type(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some("js" | "mjs") => "text/javascript",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css",
        Some("html") => "text/html; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json" | "map") => "application/json",
        _ => "application/octet-stream",
    }
}

/// `file` with `.<suffix>` appended (`app_bg.wasm` → `app_bg.wasm.br`).
fn sibling(file: &Path, suffix: &str) -> PathBuf {
    let mut name = file.as_os_str().to_owned();
    name.push(".");
    name.push(suffix);
    PathBuf::from(name)
}

fn is_static_file(relative: &str) -> bool {
    relative.starts_with("pkg/")
        || Path::new(relative)
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| STATIC_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

async fn serve(dir: &Path, path: &str, accepted: &[&'static str], index: String) -> Response {
    let relative = path.trim_start_matches('/');
    if relative.split('/').any(|part| part == "..") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    let file = dir.join(relative);
    if !relative.is_empty() && file.is_file() {
        let mime = content_type(&file);
        let vary = (header::VARY, HeaderValue::from_static("accept-encoding"));
        for (coding, suffix) in ENCODINGS.iter().filter(|(c, _)| accepted.contains(c)) {
            let compressed = sibling(&file, suffix);
            if compressed.is_file()
                && let Ok(bytes) = tokio::fs::read(&compressed).await
            {
                let encoding = (header::CONTENT_ENCODING, HeaderValue::from_static(coding));
                let mime = (header::CONTENT_TYPE, HeaderValue::from_static(mime));
                return ([mime, encoding, vary], bytes).into_response();
            }
        }
        let Ok(bytes) = tokio::fs::read(&file).await else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let mime = (header::CONTENT_TYPE, HeaderValue::from_static(mime));
        return ([mime, vary], bytes).into_response();
    }
    if is_static_file(relative) {
        return StatusCode::NOT_FOUND.into_response();
    }
    Html(index).into_response()
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    fn assets() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("flowscope-ui-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("pkg")).unwrap();
        std::fs::write(dir.join("index.html"), "<!doctype html><p>app</p>").unwrap();
        std::fs::write(dir.join("pkg/app_bg.wasm"), b"\0asm raw").unwrap();
        std::fs::write(dir.join("pkg/app_bg.wasm.gz"), b"gzipped bytes").unwrap();
        std::fs::write(dir.join("pkg/app_bg.wasm.br"), b"brotli bytes").unwrap();
        std::fs::write(dir.join("style.css"), "body{}").unwrap();
        dir
    }

    async fn get(app: &Router, path: &str, accept: Option<&str>) -> Response {
        let mut request = Request::get(path);
        if let Some(accept) = accept {
            request = request.header(header::ACCEPT_ENCODING, accept);
        }
        app.clone()
            .oneshot(request.body(Body::empty()).unwrap())
            .await
            .unwrap()
    }

    async fn body(response: Response) -> Vec<u8> {
        axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn precompressed_files_go_to_clients_that_accept_them_brotli_first() {
        let app = with_assets(Router::new(), Some(&assets()));
        let brotli = get(&app, "/pkg/app_bg.wasm", Some("gzip, deflate, br, zstd")).await;
        assert_eq!(brotli.status(), StatusCode::OK);
        assert_eq!(brotli.headers()[header::CONTENT_ENCODING], "br");
        assert_eq!(brotli.headers()[header::CONTENT_TYPE], "application/wasm");
        assert_eq!(body(brotli).await, b"brotli bytes");

        let zipped = get(&app, "/pkg/app_bg.wasm", Some("gzip, deflate")).await;
        assert_eq!(zipped.headers()[header::CONTENT_ENCODING], "gzip");
        assert_eq!(body(zipped).await, b"gzipped bytes");
        let no_br = get(&app, "/pkg/app_bg.wasm", Some("br;q=0, *")).await;
        assert_eq!(no_br.headers()[header::CONTENT_ENCODING], "gzip");

        let raw = get(&app, "/pkg/app_bg.wasm", None).await;
        assert!(raw.headers().get(header::CONTENT_ENCODING).is_none());
        assert_eq!(body(raw).await, b"\0asm raw");
        let refused = get(&app, "/pkg/app_bg.wasm", Some("gzip;q=0, br; q=0")).await;
        assert!(refused.headers().get(header::CONTENT_ENCODING).is_none());

        let css = get(&app, "/style.css", Some("gzip")).await;
        assert!(
            css.headers().get(header::CONTENT_ENCODING).is_none(),
            "no .gz: as is"
        );
        assert_eq!(css.headers()[header::CONTENT_TYPE], "text/css");
    }

    #[tokio::test]
    async fn deep_links_get_the_app_and_missing_files_a_404() {
        let app = with_assets(Router::new(), Some(&assets()));
        for path in ["/", "/flows/abc", "/queues/%2F/payment.orders.dlq"] {
            let response = get(&app, path, Some("gzip")).await;
            assert_eq!(response.status(), StatusCode::OK, "{path}");
            assert_eq!(body(response).await, b"<!doctype html><p>app</p>", "{path}");
        }
        for path in ["/pkg/missing.js", "/missing.wasm", "/pkg/anything"] {
            assert_eq!(
                get(&app, path, None).await.status(),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        assert_eq!(
            get(&app, "/../etc/passwd", None).await.status(),
            StatusCode::BAD_REQUEST
        );
    }
}
