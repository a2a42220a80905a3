//! A real headless Chromium driven over WebDriver (`chromedriver` + fantoccini).
//!
//! [`Browser::start`] runs `chromedriver --port=<free port>` in a process
//! group of its own (so that the Chromium it starts dies with it), opens a
//! session with a fresh profile, and records the browser's console. Waits
//! poll the page with a deadline; [`Browser::screenshot`] saves PNGs to the
//! artifacts directory ([`artifacts_dir`]). A broken wasm bundle is a blank
//! page: [`Browser::report_failure`] saves a screenshot and prints the
//! console, so a failing test says why.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};

use crate::shop::free_port;

/// The Chromium binary (override with `CHROMIUM_BIN`).
const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// The viewport: wide enough for the pipeline diagram.
const WINDOW: (u32, u32) = (1400, 900);
/// How often the waits look at the page.
const POLL: Duration = Duration::from_millis(250);

/// Where screenshots go: `$FLOWSCOPE_ARTIFACTS_DIR`, else
/// `<workspace>/target/test-artifacts/screenshots/`.
pub fn artifacts_dir() -> PathBuf {
    std::env::var_os("FLOWSCOPE_ARTIFACTS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/test-artifacts/screenshots"))
}

/// The repository root (the tests crate is one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The built UI (`scripts/build-ui` writes `<workspace>/dist`); an error
/// saying how to build it when it is missing.
pub fn built_ui() -> anyhow::Result<PathBuf> {
    let dist = workspace_root().join("dist");
    anyhow::ensure!(
        dist.join("index.html").exists() && dist.join("pkg").is_dir(),
        "the web UI is not built: {} has no index.html and pkg/. Run scripts/build-ui (scripts/test does, before the tests)",
        dist.display()
    );
    Ok(dist)
}

/// One entry of the browser's console (`console.*`, uncaught errors, failed loads).
#[derive(Debug, Clone)]
pub struct ConsoleEntry {
    /// `SEVERE`, `WARNING`, `INFO`, `DEBUG`.
    pub level: String,
    pub message: String,
}

/// `chromedriver`, its Chromium and one WebDriver session.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    driver: Driver,
    /// The chromedriver base URL (for its log endpoint).
    driver_url: String,
    /// Everything the console said so far (chromedriver hands each entry out once).
    console: Mutex<Vec<ConsoleEntry>>,
}

/// The chromedriver process group and the profile directory, both removed on drop.
#[derive(Debug)]
struct Driver {
    child: Child,
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        // The whole group: chromedriver and the Chromium processes it started.
        let _ = killpg(Pid::from_raw(self.child.id() as i32), Signal::SIGKILL);
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session with a fresh profile.
    pub async fn start() -> anyhow::Result<Self> {
        let chromium = std::env::var("CHROMIUM_BIN").unwrap_or_else(|_| DEFAULT_CHROMIUM.into());
        anyhow::ensure!(
            Path::new(&chromium).exists(),
            "{chromium} is missing: install it with `apt-get install -y chromium chromium-driver` (scripts/test does)"
        );
        let port = free_port()?;
        let profile = std::env::temp_dir().join(format!(
            "flowscope-chromium-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        ));
        std::fs::create_dir_all(&profile)?;
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("chromedriver did not start: install it with `apt-get install -y chromium-driver` (scripts/test does)")?;
        let driver = Driver { child, profile };
        let driver_url = format!("http://127.0.0.1:{port}");
        wait_for_driver(&driver_url).await?;

        let mut caps = serde_json::Map::new();
        caps.insert("browserName".into(), json!("chrome"));
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": chromium, "args": chromium_args(&driver.profile) }),
        );
        caps.insert("goog:loggingPrefs".into(), json!({ "browser": "ALL" }));
        let client = ClientBuilder::new(HttpConnector::new())
            .capabilities(caps)
            .connect(&driver_url)
            .await
            .context("chromedriver could not start a Chromium session")?;
        Ok(Self {
            client,
            driver,
            driver_url,
            console: Mutex::new(Vec::new()),
        })
    }

    /// Ends the session (Chromium quits), then stops chromedriver.
    pub async fn close(self) {
        let Self { client, driver, .. } = self;
        let _ = tokio::time::timeout(Duration::from_secs(10), client.close()).await;
        drop(driver);
    }

    /// Opens `url`.
    pub async fn goto(&self, url: &str) -> anyhow::Result<()> {
        self.client
            .goto(url)
            .await
            .with_context(|| format!("opening {url}"))
    }

    /// Runs `script` (a function body: `arguments[i]` are `args`) in the page.
    pub async fn js(&self, script: &str, args: Vec<Value>) -> anyhow::Result<Value> {
        Ok(self.client.execute(script, args).await?)
    }

    /// Polls `script` until it returns something other than `null`, `false`
    /// or `{waiting: <state>}`, or fails after `timeout` naming `what` and the
    /// last state or error (a script returns `{waiting: ...}` to say what is missing).
    pub async fn wait_js(
        &self,
        what: &str,
        timeout: Duration,
        script: &str,
        args: Vec<Value>,
    ) -> anyhow::Result<Value> {
        let deadline = Instant::now() + timeout;
        let mut last = Value::Null;
        loop {
            match self.js(script, args.clone()).await {
                Ok(Value::Null | Value::Bool(false)) => {}
                Ok(Value::Object(mut map)) if map.contains_key("waiting") => {
                    last = map.remove("waiting").unwrap_or_default();
                }
                Ok(value) => return Ok(value),
                Err(err) => last = json!(format!("{err:#}")),
            }
            if Instant::now() >= deadline {
                bail!("timed out after {timeout:?} waiting for {what} (last: {last})");
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until `css` matches at least one element.
    pub async fn wait_css(&self, css: &str, timeout: Duration) -> anyhow::Result<()> {
        self.wait_js(
            &format!("an element matching `{css}`"),
            timeout,
            "return document.querySelector(arguments[0]) !== null;",
            vec![json!(css)],
        )
        .await
        .map(drop)
    }

    /// Waits until an element matching `css` shows `text` (case-insensitive);
    /// returns that element's text.
    pub async fn wait_text(
        &self,
        css: &str,
        text: &str,
        timeout: Duration,
    ) -> anyhow::Result<String> {
        let found = self
            .wait_js(
                &format!("`{css}` to show {text:?}"),
                timeout,
                "const want = arguments[1].toLowerCase();
                 const hit = [...document.querySelectorAll(arguments[0])]
                     .find(e => e.textContent.toLowerCase().includes(want));
                 return hit ? hit.textContent : null;",
                vec![json!(css), json!(text)],
            )
            .await?;
        Ok(found.as_str().unwrap_or_default().to_owned())
    }

    /// How many elements match `css` now.
    pub async fn count(&self, css: &str) -> anyhow::Result<u64> {
        let n = self
            .js(
                "return document.querySelectorAll(arguments[0]).length;",
                vec![json!(css)],
            )
            .await?;
        Ok(n.as_u64().unwrap_or(0))
    }

    /// Clicks the element `locator` finds, retrying until `timeout` (the UI
    /// re-renders live: an element can be replaced between finding and clicking).
    pub async fn click(&self, locator: Locator<'_>, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = async { self.client.find(locator).await?.click().await };
            match attempt.await {
                Ok(()) => return Ok(()),
                Err(err) if Instant::now() >= deadline => {
                    bail!("could not click {locator:?} within {timeout:?}: {err}")
                }
                Err(_) => tokio::time::sleep(POLL).await,
            }
        }
    }

    /// Saves the page as `<artifacts>/<name>.png`; prints and returns the path.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let dir = artifacts_dir();
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating the artifacts directory {}", dir.display()))?;
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, png).with_context(|| format!("writing {}", path.display()))?;
        println!("screenshot: {}", path.display());
        Ok(path)
    }

    /// Like [`Browser::screenshot`], of the whole page (up to 4000 px high):
    /// the window grows to the page's height for the shot, then shrinks back.
    pub async fn screenshot_full_page(&self, name: &str) -> anyhow::Result<PathBuf> {
        let (width, height) = self.client.get_window_size().await?;
        let sizes = self
            .js(
                "return [document.documentElement.scrollHeight, window.innerHeight];",
                vec![],
            )
            .await?;
        let page = sizes[0].as_u64().unwrap_or(height);
        let chrome = height.saturating_sub(sizes[1].as_u64().unwrap_or(height));
        let tall = (page + chrome).clamp(height, 4000);
        self.client
            .set_window_size(width as u32, tall as u32)
            .await?;
        // One frame for the layout at the new size.
        self.client
            .execute_async("requestAnimationFrame(() => arguments[0]());", vec![])
            .await?;
        let shot = self.screenshot(name).await;
        self.client
            .set_window_size(width as u32, height as u32)
            .await?;
        shot
    }

    /// Everything the console said since the session started.
    pub async fn console(&self) -> anyhow::Result<Vec<ConsoleEntry>> {
        let session = self.client.session_id().await?.context("no session id")?;
        let answer: Value = reqwest::Client::new()
            .post(format!("{}/session/{session}/se/log", self.driver_url))
            .json(&json!({ "type": "browser" }))
            .timeout(Duration::from_secs(10))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let mut all = self.console.lock().unwrap();
        all.extend(
            answer["value"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| ConsoleEntry {
                    level: e["level"].as_str().unwrap_or("?").to_owned(),
                    message: e["message"].as_str().unwrap_or("").to_owned(),
                }),
        );
        Ok(all.clone())
    }

    /// The console's errors: uncaught exceptions, panics, failed loads.
    pub async fn console_errors(&self) -> anyhow::Result<Vec<String>> {
        Ok(self
            .console()
            .await?
            .into_iter()
            .filter(|e| e.level == "SEVERE")
            .map(|e| e.message)
            .collect())
    }

    /// After a failure: saves `failed-<name>.png` and the page's URL, prints
    /// the console (where a wasm panic or a failed load shows).
    pub async fn report_failure(&self, name: &str) {
        let url = self.client.current_url().await.map(|u| u.to_string());
        eprintln!("browser test {name} failed at {url:?}");
        match self.screenshot(&format!("failed-{name}")).await {
            Ok(path) => eprintln!("screenshot of the failure: {}", path.display()),
            Err(err) => eprintln!("no screenshot of the failure: {err:#}"),
        }
        match self.console().await {
            Ok(entries) if entries.is_empty() => eprintln!("browser console: (empty)"),
            Ok(entries) => {
                eprintln!("browser console ({} entries):", entries.len());
                for e in entries {
                    eprintln!("  [{}] {}", e.level, e.message);
                }
            }
            Err(err) => eprintln!("could not read the browser console: {err:#}"),
        }
    }
}

/// The Chromium flags: headless, as root, nothing that calls home, a fresh profile.
fn chromium_args(profile: &Path) -> Vec<String> {
    let mut args: Vec<String> = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
    ]
    .map(String::from)
    .into();
    args.push(format!("--window-size={},{}", WINDOW.0, WINDOW.1));
    args.push(format!("--user-data-dir={}", profile.display()));
    args
}

/// Waits until chromedriver answers `GET /status` with `ready`.
async fn wait_for_driver(url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let http = reqwest::Client::new();
    loop {
        let ready = async {
            let status: Value = http
                .get(format!("{url}/status"))
                .timeout(Duration::from_secs(2))
                .send()
                .await?
                .json()
                .await?;
            anyhow::Ok(status["value"]["ready"] == true)
        };
        if matches!(ready.await, Ok(true)) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!("chromedriver did not answer at {url} within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
