//! `flowscope demo` as a user runs it: one process that brings up the server
//! and the shop, a live API to curl, and Ctrl-C stopping everything.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use flowscope_tests::broker::TestVhost;
use flowscope_tests::eventually;
use flowscope_tests::shop::{free_port, workspace_binary};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(45);

/// Kills the process if the test ends early.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn get(url: &str) -> anyhow::Result<Value> {
    let resp = reqwest::get(url).await?;
    anyhow::ensure!(resp.status().is_success(), "{url}: {}", resp.status());
    Ok(resp.json().await?)
}

/// `flowscope demo <load_args>` on free ports in `vhost`, from a scratch directory;
/// returns the process, the server's base URL and the directory.
fn start_demo(vhost: &TestVhost, load_args: &[&str]) -> (Guard, String, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("flowscope-demo-{}", vhost.name));
    std::fs::create_dir_all(&dir).unwrap();
    let port = || free_port().unwrap();
    let (listen, grpc, http, order) = (port(), port(), port(), port());
    let child = Command::new(workspace_binary(
        "flowscope",
        "FLOWSCOPE_BIN",
        "flowscope-server",
    ))
    .current_dir(&dir)
    .args(["--vhost", &vhost.name])
    .args(["--otlp-grpc-addr", &format!("127.0.0.1:{grpc}")])
    .args(["--otlp-http-addr", &format!("127.0.0.1:{http}")])
    .arg("demo")
    .args(load_args)
    .args(["--order-addr", &format!("127.0.0.1:{order}")])
    .env("FLOWSCOPE_SERVER_LISTEN", format!("127.0.0.1:{listen}"))
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .unwrap();
    (Guard(child), format!("http://127.0.0.1:{listen}"), dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flowscope_demo_serves_live_flows_of_the_shop_and_ctrl_c_stops_everything() {
    let vhost = TestVhost::create().await.unwrap();
    let (mut demo, base, dir) = start_demo(&vhost, &["--rate", "5"]);

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
    kill(Pid::from_raw(demo.0.id() as i32), Signal::SIGINT).unwrap();
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = demo.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "flowscope demo did not stop within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_stops_when_flowscope_demo_is_killed() {
    let vhost = TestVhost::create().await.unwrap();
    let (mut demo, _, dir) = start_demo(&vhost, &["--no-load"]);
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
    demo.0.kill().unwrap();
    demo.0.wait().unwrap();
    eventually(
        Duration::from_secs(20),
        "the orphaned shop services to stop",
        || async {
            let conns = vhost.mgmt_get("vhosts/{vhost}/connections").await?;
            Ok(conns.as_array().is_some_and(|c| c.is_empty()).then_some(()))
        },
    )
    .await;
    let _ = std::fs::remove_dir_all(&dir);
}
