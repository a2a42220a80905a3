//! Headless Chromium over WebDriver (chromedriver + fantoccini), with a MutationObserver
//! that timestamps every change of one value on the page.
//!
//! The observer runs in the page: on each DOM mutation it reads the watched value with a
//! page-specific reader and, when the value differs from the last one, records
//! `[value, performance.timeOrigin + performance.now()]` — wall-clock milliseconds on the
//! machine's clock, comparable with the benchmark's own `SystemTime` (same machine). It
//! timestamps the DOM change, before paint.

use std::time::{Duration, Instant};

use anyhow::bail;
use fantoccini::{Client, Locator};
use serde_json::json;

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

/// The end-to-end tests' headless Chromium (`flowscope_tests::browser`), with the
/// freshness observer on top.
#[derive(Debug)]
pub struct Browser {
    pub client: Client,
    inner: flowscope_tests::browser::Browser,
}

impl Browser {
    /// Starts chromedriver (on a free port) and a headless Chromium session with a fresh profile.
    pub async fn start() -> anyhow::Result<Self> {
        let inner = flowscope_tests::browser::Browser::start().await?;
        Ok(Self {
            client: inner.client.clone(),
            inner,
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
    pub async fn close(self) {
        self.inner.close().await;
    }
}
