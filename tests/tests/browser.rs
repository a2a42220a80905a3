//! The web UI in a real headless Chromium, against `flowscope demo` on the
//! real broker: what a user sees, clicks and waits for.
//!
//! One scenario, in the order a user would go: the pipeline with the shop's
//! five services, orders arriving live, payment declines switched on from the
//! demo page and the failing order opened, poison messages switched on and
//! the DLQ alert firing, then the queues. Every view is saved as a screenshot
//! (see [`flowscope_tests::browser::artifacts_dir`]). Needs the built UI
//! (`scripts/build-ui`, which scripts/test runs first): without it the test
//! fails, it does not skip.

use std::time::Duration;

use fantoccini::Locator;
use fantoccini::key::Key;
use flowscope_tests::broker::TestVhost;
use flowscope_tests::browser::{Browser, artifacts_dir, built_ui};
use flowscope_tests::demo::Demo;
use serde_json::{Value, json};

/// The shop's services and the queue each consumes.
const SERVICES: [(&str, &str); 5] = [
    ("order", "order.outcomes"),
    ("payment", "payment.orders"),
    ("inventory", "inventory.payments"),
    ("shipping", "shipping.inventory"),
    ("notification", "notification.events"),
];
/// Page loads and things the live stream shows within a few seconds.
const SHORT: Duration = Duration::from_secs(30);
/// What waits on the shop, the management API (3–8 s behind) or the alert engine.
const LONG: Duration = Duration::from_secs(90);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_demo_shop_live_its_failures_and_the_dlq_alert() {
    let dist = built_ui().unwrap_or_else(|err| panic!("{err:#}"));
    // A screenshot of an earlier failure would mislead.
    let _ = std::fs::remove_file(artifacts_dir().join("failed-dashboard.png"));
    let vhost = TestVhost::create().await.unwrap();
    let assets = dist.to_str().expect("a UTF-8 path").to_owned();
    let mut demo = Demo::start(
        &vhost,
        &["--rate", "3"],
        &[("FLOWSCOPE_SERVER_ASSETS_DIR", &assets)],
    );
    demo.wait_until_serving(SHORT).await.unwrap();
    let browser = Browser::start().await.unwrap();

    let outcome = scenario(&browser, &demo.base).await;
    if outcome.is_err() {
        browser.report_failure("dashboard").await;
    }
    let console_errors = browser.console_errors().await;
    browser.close().await;
    let _ = demo.interrupt(Duration::from_secs(30)).await;

    if let Err(err) = outcome {
        panic!("{err:#}");
    }
    let console_errors = console_errors.unwrap();
    assert!(
        console_errors.is_empty(),
        "the browser console has errors: {console_errors:#?}"
    );
}

async fn scenario(b: &Browser, base: &str) -> anyhow::Result<()> {
    b.goto(&format!("{base}/")).await?;
    // The wasm app replaces the boot message; a broken bundle never does.
    b.wait_js(
        "the UI to start (the wasm app replaces #boot)",
        SHORT,
        "return document.getElementById('boot') === null && document.querySelector('header.top') !== null;",
        vec![],
    )
    .await?;
    pipeline(b).await?;
    let marker = flows_arrive_live(b).await?;
    decline_payments(b).await?;
    open_a_declined_order(b).await?;
    poison_orders(b).await?;
    dlq_alert_fires(b).await?;
    queues(b).await?;
    b.click(Locator::Css("nav a[href='/stuck']"), SHORT).await?;
    b.wait_js(
        "the stuck page to load",
        SHORT,
        "return document.querySelector('main h1')?.textContent === 'Stuck'
            && document.querySelector('main p.muted')?.textContent !== 'loading…';",
        vec![],
    )
    .await?;
    b.screenshot("stuck").await?;
    b.click(Locator::Css("nav a[href='/process']"), SHORT)
        .await?;
    b.wait_text("main svg text", "PaymentFailed", LONG).await?;
    b.screenshot("process-map").await?;
    // Every step above ran in one page load: navigation is client-side.
    let kept = b
        .js(
            "return window.__flowscopeTest === arguments[0];",
            vec![marker],
        )
        .await?;
    anyhow::ensure!(kept == true, "the page reloaded during the scenario");
    Ok(())
}

/// `/`: the five services and the queue each consumes, as diagram nodes.
async fn pipeline(b: &Browser) -> anyhow::Result<()> {
    let wanted: Vec<String> = SERVICES
        .iter()
        .flat_map(|(service, queue)| [format!("consumer {service}"), format!("queue {queue}")])
        .collect();
    b.wait_js(
        "the pipeline to show every service and its queue",
        LONG,
        "const have = [...document.querySelectorAll('svg.diagram g.node')]
             .map(g => g.getAttribute('aria-label'));
         const missing = arguments[0].filter(n => !have.includes(n));
         return missing.length === 0 ? true : {waiting: {missing, have}};",
        vec![json!(wanted)],
    )
    .await?;
    // Depths come from the live stream.
    b.wait_text("svg.diagram g.node text.sub", "ready", SHORT)
        .await?;
    b.screenshot("pipeline").await?;
    Ok(())
}

/// `/flows`: new orders appear without a reload; returns the marker set in the page.
async fn flows_arrive_live(b: &Browser) -> anyhow::Result<Value> {
    b.click(Locator::Css("nav a[href='/flows']"), SHORT).await?;
    let total = "const p = document.querySelector('table.flows + p.muted');
         const m = p && p.textContent.match(/of (\\d+) matching/);
         return m ? Number(m[1]) : null;";
    let first = b
        .wait_js("the first flows in the list", LONG, total, vec![])
        .await?;
    // A reload would clear this.
    let marker = json!(uuid::Uuid::new_v4().to_string());
    b.js(
        "window.__flowscopeTest = arguments[0];",
        vec![marker.clone()],
    )
    .await?;
    let first = first.as_u64().unwrap_or(0);
    b.wait_js(
        &format!("more than {first} flows, live"),
        SHORT,
        &format!(
            "const n = (() => {{ {total} }})();
             return n !== null && n > arguments[0] && window.__flowscopeTest === arguments[1];"
        ),
        vec![json!(first), marker.clone()],
    )
    .await?;
    anyhow::ensure!(
        b.count("table.flows tbody tr").await? > 0,
        "the flow count grew but no row is shown"
    );
    b.wait_css("table.flows .badge.status-completed", LONG)
        .await?;
    b.screenshot("flows").await?;
    Ok(marker)
}

/// `/demo`: every payment declined, with the slider (keyboard), then checked
/// by asking the shop again (Refresh).
async fn decline_payments(b: &Browser) -> anyhow::Result<()> {
    b.click(Locator::Css("nav a[href='/demo']"), SHORT).await?;
    // The switches as the shop reports them, before changing one.
    b.wait_text("main [role=status]", "answered:", LONG).await?;
    set_slider_to_max(b, "//input[@aria-label='payments declined']").await?;
    b.click(
        Locator::XPath("//button[normalize-space()='Refresh']"),
        SHORT,
    )
    .await?;
    wait_slider_shows(b, "//input[@aria-label='payments declined']", "100 %").await
}

/// `/flows`, failed only: a declined order, opened; its page names the
/// failing service and the reason.
async fn open_a_declined_order(b: &Browser) -> anyhow::Result<()> {
    b.click(Locator::Css("nav a[href='/flows']"), SHORT).await?;
    b.click(
        Locator::XPath(
            "//div[@aria-label='Filter by status']/button[span[contains(@class,'status-failed')]]",
        ),
        SHORT,
    )
    .await?;
    let href = b
        .wait_js(
            "a failed order whose reason is a declined payment",
            LONG,
            "const row = [...document.querySelectorAll('table.flows tbody tr')].find(tr =>
                 tr.querySelector('.badge.status-failed, .badge.status-compensated')
                 && (tr.querySelector('.reason')?.textContent ?? '').includes('PaymentFailed'));
             return row ? row.querySelector('td.key a').getAttribute('href') : null;",
            vec![],
        )
        .await?;
    b.screenshot("flows-failed").await?;
    let href = href.as_str().unwrap_or_default().to_owned();
    b.click(
        Locator::Css(&format!("table.flows a[href='{href}']")),
        SHORT,
    )
    .await?;
    let reason = b.wait_text(".reason-line", "declined", LONG).await?;
    anyhow::ensure!(
        reason.contains("PaymentFailed from payment"),
        "the reason does not name the failing service: {reason:?}"
    );
    b.wait_text(".headline .badge", "failed", SHORT).await?;
    // The failing hop: the payment service's PaymentFailed, in the sequence diagram.
    b.wait_text("svg.seq text", "PaymentFailed", SHORT).await?;
    b.wait_text("svg.seq text", "payment", SHORT).await?;
    b.screenshot_full_page("flow-failed").await?;
    Ok(())
}

/// `/demo`: every order the order service publishes poisoned.
async fn poison_orders(b: &Browser) -> anyhow::Result<()> {
    b.click(Locator::Css("nav a[href='/demo']"), SHORT).await?;
    b.wait_text("main [role=status]", "answered:", LONG).await?;
    let slider =
        "//div[h3[normalize-space()='order service']]//input[@aria-label='poison messages']";
    set_slider_to_max(b, slider).await?;
    b.click(
        Locator::XPath("//button[normalize-space()='Refresh']"),
        SHORT,
    )
    .await?;
    wait_slider_shows(b, slider, "100 %").await?;
    b.screenshot("demo").await?;
    Ok(())
}

/// `/alerts`: the default `dlq-growth` rule fires once dead letters arrive.
async fn dlq_alert_fires(b: &Browser) -> anyhow::Result<()> {
    b.click(Locator::Css("nav a[href='/alerts']"), SHORT)
        .await?;
    b.wait_js(
        "the dlq-growth alert firing for payment.orders.dlq",
        LONG,
        "return [...document.querySelectorAll('main .panel')].some(p =>
             p.querySelector('.badge.alert-firing') && p.textContent.includes('dlq-growth')
             && p.textContent.includes('payment.orders.dlq'));",
        vec![],
    )
    .await?;
    b.wait_css("header .count-badge", SHORT).await?;
    b.screenshot("alerts").await?;
    // The alert links its dead-letter queue.
    b.click(
        Locator::XPath("//a[normalize-space()='open payment.orders.dlq']"),
        SHORT,
    )
    .await?;
    b.wait_text("main .dlq-tag", "dead-letter queue", SHORT)
        .await?;
    b.wait_text("main h3", "failing service", LONG).await?;
    b.screenshot_full_page("queue-dlq").await?;
    Ok(())
}

/// `/queues`: the shop's dead-letter queue, marked, with its dead letters.
async fn queues(b: &Browser) -> anyhow::Result<()> {
    b.click(Locator::Css("nav a[href='/queues']"), SHORT)
        .await?;
    b.wait_js(
        "payment.orders.dlq listed as a dead-letter queue with messages",
        LONG,
        "const row = [...document.querySelectorAll('main tbody tr')]
             .find(tr => tr.querySelector('td a')?.textContent === 'payment.orders.dlq');
         if (!row) return null;
         const ready = Number(row.querySelectorAll('td.num')[0]?.textContent);
         return row.querySelector('.dlq-tag') !== null && ready > 0;",
        vec![],
    )
    .await?;
    b.screenshot("queues").await?;
    Ok(())
}

/// Moves a 0–100 % slider to 100 % from the keyboard, as a user can.
async fn set_slider_to_max(b: &Browser, xpath: &str) -> anyhow::Result<()> {
    let slider = b.client.find(Locator::XPath(xpath)).await?;
    slider.send_keys(&Key::End.to_string()).await?;
    Ok(())
}

/// Waits until the percentage next to the slider reads `text`.
async fn wait_slider_shows(b: &Browser, xpath: &str, text: &str) -> anyhow::Result<()> {
    b.wait_js(
        &format!("the slider {xpath} to show {text}"),
        SHORT,
        "const input = document.evaluate(arguments[0], document, null,
             XPathResult.FIRST_ORDERED_NODE_TYPE, null).singleNodeValue;
         const shown = input?.parentElement.querySelector('.mono')?.textContent;
         return shown === arguments[1] ? true : {waiting: shown ?? null};",
        vec![json!(xpath), json!(text)],
    )
    .await
    .map(drop)
}
