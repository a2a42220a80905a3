//! Headless Chromium over WebDriver (chromedriver + fantoccini), with a MutationObserver
//! that timestamps every change of one value on the page.
//!
//! The observer runs in the page: on each DOM mutation it reads the watched value with a
//! page-specific reader and, when the value differs from the last one, records
//! `[value, performance.timeOrigin + performance.now()]` — wall-clock milliseconds on the
//! machine's clock, comparable with the benchmark's own `SystemTime` (same machine). It
//! timestamps the DOM change, before paint.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Chromium's flags: headless, quiet (no background traffic), a fresh profile.
const CHROMIUM_FLAGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
];

/// Reads the ready count on flowscope's queue page: the first card (`ready`).
pub const FLOWSCOPE_READER: &str = r#"
const e = document.querySelector('.cards .card .n');
if (!e) return null;
const v = parseInt(e.textContent.replace(/[^0-9]/g, ''), 10);
return isNaN(v) ? null : v;
"#;

/// Reads the ready count on the RabbitMQ management UI's queue page: the `Messages` row of
/// the facts table, in the `Ready` column.
pub const MANAGEMENT_READER: &str = r#"
for (const t of document.querySelectorAll('table.facts')) {
  const heads = [...t.querySelectorAll('th.horizontal')].map(h => h.textContent.trim());
  const i = heads.indexOf('Ready');
  if (i < 0) continue;
  const row = [...t.querySelectorAll('tr')].find(r => {
    const th = r.querySelector('th');
    return th && th.textContent.trim().startsWith('Messages');
  });
  if (!row) continue;
  const td = row.querySelectorAll('td')[i];
  if (!td) continue;
  const v = parseInt(td.textContent.replace(/[^0-9]/g, ''), 10);
  return isNaN(v) ? null : v;
}
return null;
"#;

/// Installs (or reinstalls) the observer with `reader`; returns the value shown now.
const INSTALL: &str = r#"
const read = new Function(arguments[0]);
window.__fs = { seen: [], last: null };
const record = () => {
  let v = null;
  try { v = read(); } catch (e) {}
  if (v !== null && v !== window.__fs.last) {
    window.__fs.last = v;
    window.__fs.seen.push([v, performance.timeOrigin + performance.now()]);
  }
};
if (window.__fs_observer) window.__fs_observer.disconnect();
window.__fs_observer = new MutationObserver(record);
window.__fs_observer.observe(document.body, { subtree: true, childList: true, characterData: true });
record();
return window.__fs.last;
"#;

/// chromedriver and one browser session; both end when this is dropped or closed.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    driver: Child,
    profile: PathBuf,
}

impl Browser {
    /// Starts chromedriver on `port` and a headless Chromium session with a fresh profile.
    pub async fn start(port: u16) -> anyhow::Result<Self> {
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting chromedriver (apt-get install chromium chromium-driver)")?;
        let status = format!("http://127.0.0.1:{port}/status");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = match http.get(&status).send().await {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == json!(true)),
                Err(_) => false,
            };
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!("chromedriver did not become ready on port {port} within 20 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let profile = std::env::temp_dir().join(format!(
            "flowscope-bench-chromium-{}-{port}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&profile);
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|f| f.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({ "binary": "/usr/bin/chromium", "args": args }),
        );
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
            .context("opening a Chromium session through chromedriver")?;
        Ok(Self {
            client,
            driver,
            profile,
        })
    }

    /// Logs in to the RabbitMQ management UI at `base` as guest.
    pub async fn login_management(&self, base: &str) -> anyhow::Result<()> {
        self.client.goto(&format!("{base}/")).await?;
        let user = self
            .client
            .wait()
            .at_most(Duration::from_secs(30))
            .for_element(Locator::Css("input[name=username]"))
            .await?;
        user.send_keys("guest").await?;
        self.client
            .find(Locator::Css("input[name=password]"))
            .await?
            .send_keys("guest")
            .await?;
        self.client
            .find(Locator::Css("input[type=submit]"))
            .await?
            .click()
            .await?;
        // The queue page's reader then waits for the page itself ([`Browser::watch`]).
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(())
    }

    /// Opens `url` and waits (at most `limit`) until `reader` finds a value; installs the
    /// observer and returns that value.
    pub async fn watch(&self, url: &str, reader: &str, limit: Duration) -> anyhow::Result<u64> {
        self.client.goto(url).await?;
        let deadline = Instant::now() + limit;
        loop {
            let value = self.client.execute(INSTALL, vec![json!(reader)]).await?;
            if let Some(v) = value.as_u64() {
                return Ok(v);
            }
            if Instant::now() > deadline {
                bail!("no value to watch on {url} within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The last value the observer saw.
    pub async fn last(&self) -> anyhow::Result<Option<u64>> {
        Ok(self
            .client
            .execute("return window.__fs ? window.__fs.last : null;", vec![])
            .await?
            .as_u64())
    }

    /// When (wall-clock ms) the page first showed a value ≥ `at_least`, if it has.
    pub async fn seen_at(&self, at_least: u64) -> anyhow::Result<Option<f64>> {
        let found = self
            .client
            .execute(
                "const e = window.__fs && window.__fs.seen.find(e => e[0] >= arguments[0]); return e ? e[1] : null;",
                vec![json!(at_least)],
            )
            .await?;
        Ok(found.as_f64())
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), self.client.clone().close()).await;
        let _ = self.driver.kill().await;
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}
