//! The load generator: places random orders at a steady rate for a bounded
//! time ([`run`], `shop load`), or at a rate changed at run time through a
//! [`LoadControl`] ([`run_controlled`], `flowscope demo` and its demo page).

mod control;
mod progress;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::Rng;
use rand::seq::IndexedRandom;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

pub use self::control::{
    LoadControl, MAX_ORDERS_AT_ONCE, PlacedOrders, check_count, check_rate, place_orders,
    run_controlled,
};
use self::progress::Progress;
use crate::events::LineItem;
use crate::services::order::NewOrder;

/// Highest rate the generator accepts, orders per second.
pub const MAX_RATE: f64 = 500.0;
/// Longest run the generator accepts.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 3600);
/// Requests in flight at most; beyond it a tick is skipped, not queued.
const MAX_IN_FLIGHT: usize = 64;

const CUSTOMERS: [&str; 8] = [
    "ada", "grace", "linus", "margaret", "ken", "barbara", "dennis", "frances",
];
const CATALOG: [(&str, i64); 8] = [
    ("book-rust", 3999),
    ("book-amqp", 2999),
    ("mug-tokio", 1299),
    ("shirt-ferris", 2499),
    ("sticker-pack", 499),
    ("keyboard", 8999),
    ("headphones", 12999),
    ("lamp", 3499),
];

/// Options of `shop load`.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadArgs {
    /// Base URL of the order service's API.
    #[arg(long, env = "SHOP_ORDER_URL", default_value = "http://127.0.0.1:8081")]
    pub order_url: String,

    /// Orders per second, from 0.01 to 500.
    #[arg(long, default_value_t = 2.0, value_parser = parse_rate)]
    pub rate: f64,

    /// How long to place orders: `90s`, `5m`, `1h` (at most 24h).
    #[arg(long, default_value = "1m", value_parser = parse_duration)]
    pub duration: Duration,
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoadSummary {
    pub num_placed: u64,
    pub num_failed: u64,
    pub num_skipped: u64,
}

/// Parses an orders-per-second rate within bounds.
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("{s:?} is not a number"))?;
    if !(0.01..=MAX_RATE).contains(&rate) {
        return Err(format!("rate must be between 0.01 and {MAX_RATE} orders/s"));
    }
    Ok(rate)
}

/// Parses `250ms`, `90s`, `5m`, `2h` or plain seconds, at most 24h.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 90s, 5m or 1h"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in {s:?}; use ms, s, m or h")),
    };
    let duration = Duration::from_secs_f64(seconds);
    if duration.is_zero() || duration > MAX_DURATION {
        return Err(format!(
            "duration must be more than 0 and at most {}h",
            MAX_DURATION.as_secs() / 3600
        ));
    }
    Ok(duration)
}

/// A random, valid order.
pub fn random_order() -> NewOrder {
    let mut rng = rand::rng();
    let lines = rng.random_range(1..=3);
    let items: Vec<LineItem> = CATALOG
        .choose_multiple(&mut rng, lines)
        .map(|(sku, price)| LineItem {
            sku: (*sku).to_owned(),
            quantity: rng.random_range(1..=3),
            price_cents: *price,
        })
        .collect();
    let total_cents = items
        .iter()
        .map(|i| i64::from(i.quantity) * i.price_cents)
        .sum();
    NewOrder {
        customer: CUSTOMERS
            .choose(&mut rng)
            .copied()
            .unwrap_or("ada")
            .to_owned(),
        items,
        total_cents,
    }
}

/// Places orders until the duration ends or `cancel`, with a progress line on stderr.
pub async fn run(args: &LoadArgs, cancel: CancellationToken) -> anyhow::Result<LoadSummary> {
    let placer = Placer::new(&args.order_url)?;
    let started = Instant::now();
    let mut tick = ticker(args.rate);
    let mut progress = Progress::new(args.rate, Some(args.duration));
    tracing::info!(url = %placer.url, rate = args.rate, duration_s = args.duration.as_secs_f64(), "placing orders");
    while started.elapsed() < args.duration {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {}
        }
        placer.place_or_skip();
        progress.show(started.elapsed(), &placer);
    }
    let summary = placer.finish().await;
    progress.finish(started.elapsed(), summary);
    Ok(summary)
}

/// A steady tick at `rate` per second that does not catch up after a stall.
pub(crate) fn ticker(rate: f64) -> tokio::time::Interval {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Sends orders to the order API in the background, at most
/// [`MAX_IN_FLIGHT`] at a time, and counts how they went.
#[derive(Debug, Clone)]
pub(crate) struct Placer {
    client: reqwest::Client,
    url: String,
    permits: Arc<Semaphore>,
    placed: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    skipped: Arc<AtomicU64>,
}

impl Placer {
    /// Orders go to `{order_url}/orders`.
    pub(crate) fn new(order_url: &str) -> anyhow::Result<Self> {
        Ok(Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
            url: format!("{}/orders", order_url.trim_end_matches('/')),
            permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            placed: Arc::default(),
            failed: Arc::default(),
            skipped: Arc::default(),
        })
    }

    /// One order, unless [`MAX_IN_FLIGHT`] are already in flight (then it is skipped and counted).
    pub(crate) fn place_or_skip(&self) {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => self.spawn(permit),
            Err(_) => {
                self.skipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn spawn(&self, permit: tokio::sync::OwnedSemaphorePermit) {
        let (client, url) = (self.client.clone(), self.url.clone());
        let (placed, failed) = (self.placed.clone(), self.failed.clone());
        tokio::spawn(async move {
            let outcome = client.post(&url).json(&random_order()).send().await;
            let counter = match outcome {
                Ok(resp) if resp.status().is_success() => &placed,
                Ok(resp) => {
                    tracing::warn!(status = %resp.status(), "order rejected");
                    &failed
                }
                Err(err) => {
                    tracing::warn!(error = %err, "order request failed");
                    &failed
                }
            };
            counter.fetch_add(1, Ordering::Relaxed);
            drop(permit);
        });
    }

    /// The counts so far.
    pub(crate) fn summary(&self) -> LoadSummary {
        LoadSummary {
            num_placed: self.placed.load(Ordering::Relaxed),
            num_failed: self.failed.load(Ordering::Relaxed),
            num_skipped: self.skipped.load(Ordering::Relaxed),
        }
    }

    /// Waits for the orders in flight (bounded by the client timeout), then counts.
    pub(crate) async fn finish(&self) -> LoadSummary {
        let _ = self.permits.acquire_many(MAX_IN_FLIGHT as u32).await;
        self.summary()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units_and_bounds() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("25h").unwrap_err().contains("at most 24h"));
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("0s").is_err());
    }

    #[test]
    fn rates_are_bounded() {
        assert_eq!(parse_rate("2.5"), Ok(2.5));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("1000").unwrap_err().contains("between"));
    }

    #[test]
    fn random_orders_add_up() {
        for _ in 0..50 {
            let order = random_order();
            let sum: i64 = order
                .items
                .iter()
                .map(|i| i64::from(i.quantity) * i.price_cents)
                .sum();
            assert_eq!(sum, order.total_cents);
            assert!((1..=3).contains(&order.items.len()));
        }
    }
}
