//! `flowscope demo` as a user runs it: one process that brings up the server
//! and the shop, a live API to curl, and Ctrl-C stopping everything.

use std::time::Duration;

use flowscope_tests::broker::TestVhost;
use flowscope_tests::demo::Demo;
use flowscope_tests::eventually;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

async fn get(url: &str) -> anyhow::Result<Value> {
    let resp = reqwest::get(url).await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowscope_demo_serves_live_flows_of_the_shop_and_ctrl_c_stops_everything() {
    let vhost = TestVhost::create().await.unwrap();
    let mut demo = Demo::start(&vhost, &["--rate", "5"], &[]);
    let base = demo.base.clone();

    let page = eventually(WAIT, "completed flows with spans from the demo", || async {
        let page = get(&format!("{base}/api/flows?status=completed")).await?;
        let traced = page["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["num_spans"].as_u64() >= Some(5))
            .count();
        Ok((traced >= 3).then_some(page))
    })
    .await;
    let flow = &page["items"][0];
    assert_eq!(flow["event_types"][0], "OrderPlaced");
    // The pipeline knows every service (consumers appear once the management API lists them).
    eventually(WAIT, "all five services in the topology", || async {
        let topology = get(&format!("{base}/api/topology")).await?;
        let services: Vec<&str> = topology["services"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str())
            .collect();
        let all = ["order", "payment", "inventory", "shipping", "notification"]
            .iter()
            .all(|s| services.contains(s));
        Ok(all.then_some(()))
    })
    .await;
    let queues = get(&format!("{base}/api/queues")).await.unwrap();
    assert!(
        queues
            .as_array()
            .unwrap()
            .iter()
            .any(|q| q["name"] == "payment.orders.dlq" && q["is_dead_letter_queue"] == true)
    );

    // Ctrl-C: the shop and the server stop, cleanly.
    let status = demo.interrupt(Duration::from_secs(30)).await.unwrap();
    assert!(status.success(), "flowscope demo exited with {status}");
    eventually(
        Duration::from_secs(10),
        "the shop's connections to close",
        || async {
            let conns = vhost.mgmt_get("vhosts/{vhost}/connections").await?;
            Ok(conns.as_array().is_some_and(|c| c.is_empty()).then_some(()))
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_stops_when_flowscope_demo_is_killed() {
    let vhost = TestVhost::create().await.unwrap();
    let mut demo = Demo::start(&vhost, &["--no-load"], &[]);
    eventually(WAIT, "the shop's five connections", || async {
        let conns = vhost.mgmt_get("vhosts/{vhost}/connections").await?;
        let shop = conns
            .as_array()
            .into_iter()
            .flatten()
            .filter(|c| {
                ["order", "payment", "inventory", "shipping", "notification"].contains(
                    &c["client_properties"]["connection_name"]
                        .as_str()
                        .unwrap_or(""),
                )
            })
            .count();
        Ok((shop == 5).then_some(()))
    })
    .await;
    // SIGKILL: no chance to stop the children; they notice and stop themselves.
    demo.child.kill().unwrap();
    demo.child.wait().unwrap();
    eventually(
        Duration::from_secs(20),
        "the orphaned shop services to stop",
        || async {
            let conns = vhost.mgmt_get("vhosts/{vhost}/connections").await?;
            Ok(conns.as_array().is_some_and(|c| c.is_empty()).then_some(()))
        },
    )
    .await;
}
