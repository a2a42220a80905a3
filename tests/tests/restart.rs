//! A `flowscope serve` process killed with SIGKILL mid-stream loses no stored flow.

use std::time::Duration;

use flowscope_tests::broker::TestVhost;
use flowscope_tests::eventually;
use flowscope_tests::server::{ServeConfig, ServeProcess};
use flowscope_tests::shop::{Shop, ShopOptions, sample_order};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

async fn get(url: &str) -> anyhow::Result<Value> {
    let resp = reqwest::get(url).await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.json().await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarts_with_every_stored_flow() {
    let vhost = TestVhost::create().await.unwrap();
    let dir = std::env::temp_dir().join(format!("flowscope-restart-{}", vhost.name));
    std::fs::create_dir_all(&dir).unwrap();
    let config = ServeConfig::write(
        &dir,
        &format!(
            r#"
[broker]
amqp_url = "amqp://guest:guest@{amqp}"
vhosts = ["{vhost}"]
[store]
url = "sqlite://{dir}/flowscope.db"
[correlation]
terminal_events = ["OrderCompleted", "OrderCancelled"]
keys = [{{ name = "order_id", from = "json:/order_id" }}]
"#,
            dir = dir.display(),
            amqp = flowscope_tests::broker::amqp_addr(),
            vhost = vhost.name,
        ),
    );
    let (listen, grpc) = (config.listen, config.grpc);
    let mut flowscope = ServeProcess::spawn(&config.path);
    let base = format!("http://127.0.0.1:{listen}");
    eventually(WAIT, "flowscope to answer", || async {
        Ok(get(&format!("{base}/healthz")).await.ok().map(|_| ()))
    })
    .await;
    let options = ShopOptions {
        otlp_endpoint: Some(format!("http://127.0.0.1:{grpc}")),
        ..Default::default()
    };
    let shop = Shop::start_in(vhost, options).await.unwrap();
    let mut orders = Vec::new();
    for name in ["ada", "grace", "linus"] {
        orders.push(
            shop.place_order(&sample_order(name))
                .await
                .unwrap()
                .to_string(),
        );
    }
    let stored = eventually(WAIT, "three completed flows stored", || async {
        let page = get(&format!("{base}/api/flows?status=completed")).await?;
        Ok((page["total"] == 3).then_some(page))
    })
    .await;
    let ids: Vec<String> = stored["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap().to_owned())
        .collect();

    // Mid-stream: more orders flowing while flowscope dies without warning.
    shop.place_order(&sample_order("ken")).await.unwrap();
    flowscope.0.kill().unwrap();
    flowscope.0.wait().unwrap();
    let flowscope = ServeProcess::spawn(&config.path);
    eventually(WAIT, "flowscope to answer again", || async {
        Ok(get(&format!("{base}/healthz")).await.ok().map(|_| ()))
    })
    .await;
    for (id, order) in ids.iter().zip(&orders) {
        let flow = get(&format!("{base}/api/flows/{id}")).await.unwrap();
        assert_eq!(flow["summary"]["status"], "completed");
        assert!(
            orders.contains(&flow["summary"]["key"].as_str().unwrap().to_owned()),
            "{order}"
        );
    }
    let found = get(&format!("{base}/api/lookup/{}", orders[0]))
        .await
        .unwrap();
    assert_eq!(found["flow_ids"].as_array().unwrap().len(), 1);
    drop(flowscope);
    let _ = std::fs::remove_dir_all(&dir);
}
