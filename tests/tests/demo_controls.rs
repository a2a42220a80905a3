//! The demo page's controls through the API of a real `flowscope demo`:
//! orders placed on demand, the load generator stopped and started again,
//! and the state read back as the page reads it after a reload.

use std::time::Duration;

use flowscope_tests::broker::TestVhost;
use flowscope_tests::demo::Demo;
use flowscope_tests::eventually;
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

struct Api {
    http: reqwest::Client,
    base: String,
}

impl Api {
    async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = self.http.get(format!("{}{path}", self.base)).send().await?;
        anyhow::ensure!(resp.status().is_success(), "GET {path}: {}", resp.status());
        Ok(resp.json().await?)
    }

    async fn set_rate(&self, rate: f64) {
        let (status, answer) = self
            .send(
                reqwest::Method::PUT,
                "/api/demo/load",
                json!({ "rate": rate }),
            )
            .await;
        assert_eq!((status, &answer["rate"]), (200, &json!(rate)), "{answer}");
    }

    /// Order flows (the shop's control messages make flows of their own), started at or after `since`.
    async fn order_flows_since(&self, since: i64) -> anyhow::Result<u64> {
        let page = self
            .get(&format!(
                "/api/flows?event_type=OrderPlaced&since={since}&limit=1"
            ))
            .await?;
        page["total"]
            .as_u64()
            .ok_or_else(|| anyhow::anyhow!("no total in {page}"))
    }

    /// Waits until the flow of `order_id` has ended (completed, or failed
    /// when the shop ran out of stock); returns its summary.
    async fn ended_flow(&self, order_id: &str) -> Value {
        eventually(WAIT, "the order's flow to end", || async {
            let found = self.get(&format!("/api/lookup/{order_id}")).await?;
            let id = found["flow_ids"][0].as_str().unwrap_or_default().to_owned();
            let flow = self.get(&format!("/api/flows/{id}")).await?;
            let summary = flow["summary"].clone();
            let ended = ["completed", "failed", "compensated"]
                .iter()
                .any(|s| summary["status"] == *s);
            Ok(ended.then_some(summary))
        })
        .await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_on_demand_and_the_load_rate_steer_a_running_demo() {
    let vhost = TestVhost::create().await.unwrap();
    let demo = Demo::start(&vhost, &["--no-load"], &[]);
    let api = Api {
        http: reqwest::Client::new(),
        base: demo.base.clone(),
    };

    // What the page reads on opening: the generator stopped, every switch off.
    let status = eventually(
        WAIT,
        "the five services to answer GET /api/demo",
        || async {
            let status = api.get("/api/demo").await?;
            let answered = status["answered"].as_array().map_or(0, Vec::len);
            Ok((answered == 5).then_some(status))
        },
    )
    .await;
    assert_eq!(status["rate"], 0.0, "--no-load starts stopped: {status}");
    assert_eq!(status["can_place_orders"], true);
    assert_eq!(status["faults"]["decline_rate"], 0.0);
    assert_eq!(api.order_flows_since(0).await.unwrap(), 0);

    // Place 10 orders: 10 order flows appear.
    let (code, placed) = api
        .send(
            reqwest::Method::POST,
            "/api/demo/orders",
            json!({ "count": 10 }),
        )
        .await;
    assert_eq!((code, &placed["placed"]), (200, &json!(10)), "{placed}");
    assert_eq!(placed["order_ids"].as_array().unwrap().len(), 10);
    eventually(WAIT, "the 10 placed orders as flows", || async {
        Ok((api.order_flows_since(0).await? >= 10).then_some(()))
    })
    .await;

    // Out of bounds: refused, saying why.
    for (method, path, body) in [
        (
            reqwest::Method::PUT,
            "/api/demo/load",
            json!({ "rate": 501 }),
        ),
        (
            reqwest::Method::POST,
            "/api/demo/orders",
            json!({ "count": 0 }),
        ),
        (
            reqwest::Method::POST,
            "/api/demo/orders",
            json!({ "count": 1001 }),
        ),
    ] {
        let (code, err) = api.send(method, path, body.clone()).await;
        assert_eq!(code, 400, "{body}: {err}");
        assert!(err["error"].as_str().unwrap().contains("..="), "{err}");
    }

    // Rate 5: the generator places orders beyond the 10.
    api.set_rate(5.0).await;
    assert_eq!(api.get("/api/demo").await.unwrap()["rate"], 5.0);
    eventually(WAIT, "the load generator's orders", || async {
        Ok((api.order_flows_since(0).await? >= 20).then_some(()))
    })
    .await;

    // Rate 0: no new order flows. Once the count has settled, a marker
    // order placed by hand stays the newest, even after its flow ended.
    api.set_rate(0.0).await;
    eventually(WAIT, "the order flow count to settle", || async {
        let before = api.order_flows_since(0).await?;
        tokio::time::sleep(Duration::from_secs(2)).await;
        Ok((api.order_flows_since(0).await? == before).then_some(()))
    })
    .await;
    let (code, marker) = api
        .send(
            reqwest::Method::POST,
            "/api/demo/orders",
            json!({ "count": 1 }),
        )
        .await;
    assert_eq!(code, 200, "{marker}");
    let marker = api
        .ended_flow(marker["order_ids"][0].as_str().unwrap())
        .await;
    let marker_started = marker["started_unix_us"].as_i64().unwrap();
    // Zero, given a moment: once, with the whole suite running, one flow was
    // counted right after the marker ended and not found since. An order the
    // stopped load still placed would stay, and fail this.
    eventually(WAIT, "no order flow started after the marker", || async {
        Ok((api.order_flows_since(marker_started + 1).await? == 0).then_some(()))
    })
    .await;

    // Rate 5 again: the load resumes.
    api.set_rate(5.0).await;
    eventually(WAIT, "the load to resume", || async {
        Ok((api.order_flows_since(marker_started + 1).await? >= 5).then_some(()))
    })
    .await;

    // Every change is in the audit log.
    let audit = api.get("/api/audit").await.unwrap();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions.iter().filter(|a| **a == "demo_load").count(),
        3,
        "{actions:?}"
    );
    assert_eq!(
        actions.iter().filter(|a| **a == "demo_orders").count(),
        2,
        "{actions:?}"
    );
    drop(demo);
}
