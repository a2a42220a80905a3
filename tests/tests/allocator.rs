//! `flowscope serve` runs with the allocator's purge delay set
//! (`flowscope_server::allocator`: the live flows stay in huge pages under
//! load), and keeps a value the user set.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowscope_server::allocator::{PURGE_DELAY_MS, PURGE_DELAY_VAR};
use flowscope_tests::server::ServeConfig;
use flowscope_tests::shop::workspace_binary;

/// The value of `var` in a running process's environment.
fn env_of(pid: u32, var: &str) -> Option<String> {
    let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    environ
        .split(|b| *b == 0)
        .filter_map(|entry| std::str::from_utf8(entry).ok())
        .find_map(|entry| entry.strip_prefix(var)?.strip_prefix('='))
        .map(str::to_owned)
}

#[test]
fn serve_runs_with_the_purge_delay_set_and_keeps_a_value_the_user_set() {
    let dir = std::env::temp_dir().join(format!("flowscope-allocator-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for given in [None, Some("250")] {
        let config = ServeConfig::write(
            &dir,
            "[firehose]\nenabled = false\n[management]\nenabled = false\n[store]\nurl = \"none\"\n",
        );
        let listen = config.listen;
        let mut command = Command::new(workspace_binary(
            "flowscope",
            "FLOWSCOPE_BIN",
            "flowscope-server",
        ));
        command
            .args(["--config", &config.path.to_string_lossy(), "serve"])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        match given {
            Some(value) => command.env(PURGE_DELAY_VAR, value),
            None => command.env_remove(PURGE_DELAY_VAR),
        };
        let mut child = command.spawn().unwrap();
        // Serving (so past its start) on the address it was given.
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", listen)).is_err() {
            assert!(
                child.try_wait().unwrap().is_none(),
                "flowscope exited before it served"
            );
            assert!(Instant::now() < deadline, "flowscope did not serve in 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        let seen = env_of(child.id(), PURGE_DELAY_VAR);
        let _ = child.kill();
        let _ = child.wait();
        assert_eq!(seen.as_deref(), Some(given.unwrap_or(PURGE_DELAY_MS)));
    }
    let _ = std::fs::remove_dir_all(&dir);
}
