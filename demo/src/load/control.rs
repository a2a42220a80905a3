//! The load generator under remote control.
//!
//! `flowscope demo` holds a [`LoadControl`]; its API sets the rate at run
//! time (`0` stops the load, any other value up to [`MAX_RATE`] starts it
//! again) and places a batch of orders on demand with [`place_orders`]. The
//! generator ([`run_controlled`]) watches the rate through a
//! `tokio::sync::watch` channel, so a change takes effect at once and the
//! API can always read the rate in force.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::progress::Progress;
use super::{LoadSummary, MAX_RATE, Placer, random_order, ticker};

/// Orders one [`place_orders`] call may place at most.
pub const MAX_ORDERS_AT_ONCE: usize = 1000;

/// The load generator's rate (orders per second; 0 = stopped), shared
/// between the generator and whoever steers it. Cloning shares it.
#[derive(Debug, Clone)]
pub struct LoadControl {
    rate: Arc<watch::Sender<f64>>,
}

impl LoadControl {
    /// A control starting at `rate` (clamped into `0..=MAX_RATE`).
    pub fn new(rate: f64) -> Self {
        let rate = if rate.is_finite() {
            rate.clamp(0.0, MAX_RATE)
        } else {
            0.0
        };
        Self {
            rate: Arc::new(watch::channel(rate).0),
        }
    }

    /// The rate in force.
    pub fn rate(&self) -> f64 {
        *self.rate.borrow()
    }

    /// Sets the rate; one outside `0..=MAX_RATE` is refused and changes nothing.
    pub fn set_rate(&self, rate: f64) -> Result<(), String> {
        let rate = check_rate(rate)?;
        self.rate.send_replace(rate);
        Ok(())
    }

    fn subscribe(&self) -> watch::Receiver<f64> {
        self.rate.subscribe()
    }
}

/// Checks a rate set at run time: 0 (stop) to [`MAX_RATE`] orders per second.
pub fn check_rate(rate: f64) -> Result<f64, String> {
    if rate.is_finite() && (0.0..=MAX_RATE).contains(&rate) {
        Ok(rate)
    } else {
        Err(format!(
            "rate {rate} is outside 0 ..= {MAX_RATE} orders/s (0 stops the load)"
        ))
    }
}

/// Checks how many orders to place at once: 1 to [`MAX_ORDERS_AT_ONCE`].
pub fn check_count(count: u64) -> Result<usize, String> {
    usize::try_from(count)
        .ok()
        .filter(|n| (1..=MAX_ORDERS_AT_ONCE).contains(n))
        .ok_or_else(|| format!("count {count} is outside 1 ..= {MAX_ORDERS_AT_ONCE} orders"))
}

/// Orders placed at once, several at a time.
const PLACE_CONCURRENCY: usize = 16;

/// What [`place_orders`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PlacedOrders {
    /// The ids the order API gave the orders it took.
    pub order_ids: Vec<String>,
    pub num_failed: u64,
    /// Why the first failed order failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_error: Option<String>,
}

/// Places `count` random orders through the order API at `order_url` now,
/// [`PLACE_CONCURRENCY`] at a time, and waits until each was answered.
pub async fn place_orders(order_url: &str, count: usize) -> anyhow::Result<PlacedOrders> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let url = format!("{}/orders", order_url.trim_end_matches('/'));
    let outcomes: Vec<Result<String, String>> = futures_util::stream::iter(0..count)
        .map(|_| place_one(&client, &url))
        .buffer_unordered(PLACE_CONCURRENCY)
        .collect()
        .await;
    let mut placed = PlacedOrders::default();
    for outcome in outcomes {
        match outcome {
            Ok(id) => placed.order_ids.push(id),
            Err(err) => {
                placed.num_failed += 1;
                placed.first_error.get_or_insert(err);
            }
        }
    }
    Ok(placed)
}

/// One random order; its id, or why it failed.
async fn place_one(client: &reqwest::Client, url: &str) -> Result<String, String> {
    let resp = client
        .post(url)
        .json(&random_order())
        .send()
        .await
        .map_err(|e| format!("the order API does not answer: {e}"))?;
    let status = resp.status();
    let body: serde_json::Value = resp.json().await.unwrap_or_default();
    match body["order_id"].as_str() {
        Some(id) if status.is_success() => Ok(id.to_owned()),
        _ => Err(format!("the order API answered {status}: {body}")),
    }
}

/// Places orders at the control's rate until `cancel`, following every
/// change of the rate at once. After `auto_stop_after` the rate is set to 0,
/// unless someone changed it before then (the demo's `--duration`).
pub async fn run_controlled(
    order_url: &str,
    control: LoadControl,
    auto_stop_after: Duration,
    cancel: CancellationToken,
) -> anyhow::Result<LoadSummary> {
    let placer = Placer::new(order_url)?;
    let mut rates = control.subscribe();
    let started = Instant::now();
    let auto_stop = tokio::time::sleep(auto_stop_after);
    tokio::pin!(auto_stop);
    let mut auto_stop_pending = true;
    let mut progress = Progress::new(control.rate(), None);
    'rates: loop {
        let rate = *rates.borrow_and_update();
        progress.rate = rate;
        tracing::info!(url = %order_url, rate, "load generator rate");
        let mut tick = (rate > 0.0).then(|| ticker(rate));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break 'rates,
                changed = rates.changed() => {
                    if changed.is_err() {
                        break 'rates;
                    }
                    auto_stop_pending = false;
                    continue 'rates;
                }
                _ = &mut auto_stop, if auto_stop_pending => {
                    auto_stop_pending = false;
                    tracing::info!(after_s = auto_stop_after.as_secs(), "load generator duration over; rate set to 0");
                    control.rate.send_replace(0.0);
                    continue 'rates;
                }
                _ = next_tick(&mut tick) => {
                    placer.place_or_skip();
                    progress.show(started.elapsed(), &placer);
                }
            }
        }
    }
    let summary = placer.finish().await;
    progress.finish(started.elapsed(), summary);
    Ok(summary)
}

/// The next tick, or never when stopped.
async fn next_tick(tick: &mut Option<tokio::time::Interval>) {
    match tick {
        Some(tick) => {
            tick.tick().await;
        }
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_counts_are_bounded_with_reasons() {
        assert_eq!(check_rate(0.0), Ok(0.0));
        assert_eq!(check_rate(500.0), Ok(500.0));
        assert!(check_rate(500.5).unwrap_err().contains("0 ..= 500"));
        assert!(check_rate(-1.0).is_err());
        assert!(check_rate(f64::NAN).is_err());
        assert_eq!(check_count(1), Ok(1));
        assert_eq!(check_count(1000), Ok(1000));
        assert!(check_count(0).unwrap_err().contains("1 ..= 1000"));
        assert!(check_count(1001).is_err());
    }

    #[test]
    fn a_refused_rate_changes_nothing() {
        let control = LoadControl::new(2.0);
        let seen = control.clone();
        assert!(control.set_rate(9000.0).is_err());
        assert_eq!(seen.rate(), 2.0);
        control.set_rate(0.0).unwrap();
        assert_eq!(seen.rate(), 0.0, "clones share the rate");
        assert_eq!(LoadControl::new(f64::INFINITY).rate(), 0.0);
    }
}
