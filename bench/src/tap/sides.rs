//! The three capturers of the firehose: flowscope's tap, the `rabbitmq_tracing` plugin and a
//! null consumer. Each counts the `publish` events it captured.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use flowscope_collectors::config::{DEFAULT_TAP_MAX_BYTES, DEFAULT_TAP_MAX_LENGTH};
use lapin::options::QueueBindOptions;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::task::JoinHandle;

use crate::rabbit::flowscope::FlowscopeProcess;
use crate::rabbit::publish::{Drain, PacedPublisher};
use crate::rabbit::{BenchNode, encode};

/// Which capturer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Side {
    /// A lapin consumer of `amq.rabbitmq.trace` that acks and drops (the floor).
    Null,
    /// The `rabbitmq_tracing` plugin writing JSON lines to a file.
    Plugin,
    /// `flowscope tap` (collectors only), counting the publish observations it prints.
    Flowscope,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Null => "null consumer",
            Side::Plugin => "rabbitmq_tracing",
            Side::Flowscope => "flowscope",
        }
    }
}

/// The name of the plugin's trace (and of its file, `<name>.log`).
const TRACE_NAME: &str = "bench";
/// What marks a publish in the plugin's JSON lines (bodies are base64, so never match).
const PLUGIN_PUBLISH_MARK: &[u8] = br#""type":"published""#;

/// A capturer, running.
#[derive(Debug)]
pub enum Running {
    Null(Drain),
    Plugin { counter: FileCounter, file: PathBuf },
    Flowscope(FlowscopeProcess),
}

impl Running {
    /// Starts `side` on `vhost` and waits until it consumes.
    pub async fn start(
        side: Side,
        node: &BenchNode,
        vhost: &str,
        publisher: &PacedPublisher,
        flowscope_bin: &Path,
    ) -> anyhow::Result<Self> {
        match side {
            Side::Null => {
                node.mgmt.set_tracing(vhost, true).await?;
                // The same bounds as flowscope's tap queue, so the broker does the same work.
                let queue = "bench.null-tap";
                let mut args = FieldTable::default();
                args.insert(
                    "x-max-length".into(),
                    AMQPValue::LongLongInt(DEFAULT_TAP_MAX_LENGTH),
                );
                args.insert(
                    "x-max-length-bytes".into(),
                    AMQPValue::LongLongInt(DEFAULT_TAP_MAX_BYTES),
                );
                args.insert(
                    "x-overflow".into(),
                    AMQPValue::LongString("drop-head".into()),
                );
                let channel = publisher.channel();
                channel
                    .queue_declare(
                        queue.into(),
                        lapin::options::QueueDeclareOptions {
                            auto_delete: true,
                            ..Default::default()
                        },
                        args,
                    )
                    .await?;
                channel
                    .queue_bind(
                        queue.into(),
                        "amq.rabbitmq.trace".into(),
                        "#".into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                let url = node.vhost_url(vhost);
                let drain = Drain::start(&url, "bench-null-tap", queue, |key| {
                    key.starts_with("publish.")
                })
                .await?;
                Ok(Running::Null(drain))
            }
            Side::Plugin => {
                node.mgmt.set_tracing(vhost, true).await?;
                let file = node.dir.join("traces").join(format!("{TRACE_NAME}.log"));
                let _ = std::fs::remove_file(&file);
                node.mgmt
                    .put(
                        &format!("traces/{}/{TRACE_NAME}", encode(vhost)),
                        &json!({ "format": "json", "pattern": "#" }),
                    )
                    .await?;
                let counter = FileCounter::start(file.clone(), PLUGIN_PUBLISH_MARK);
                Ok(Running::Plugin { counter, file })
            }
            Side::Flowscope => {
                let args = [
                    "tap",
                    "--only",
                    "publish",
                    "--no-otlp",
                    "--amqp-url",
                    &node.amqp_url,
                    "--management-url",
                    &node.mgmt.base,
                    "--vhost",
                    vhost,
                ];
                let envs = [("FLOWSCOPE_CONFIG", "/dev/null".to_owned())];
                let mut process = FlowscopeProcess::spawn(flowscope_bin, &args, &envs, true)?;
                process
                    .wait_for_log("tapping the firehose", Duration::from_secs(30))
                    .await?;
                Ok(Running::Flowscope(process))
            }
        }
    }

    /// Publish events captured so far.
    pub fn captured(&self) -> u64 {
        match self {
            Running::Null(drain) => drain.count(),
            Running::Plugin { counter, .. } => counter.count(),
            Running::Flowscope(process) => process.lines(),
        }
    }

    /// The capturer's own pid, when it is a process of its own.
    pub fn pid(&self) -> Option<u32> {
        match self {
            Running::Flowscope(process) => Some(process.pid),
            _ => None,
        }
    }

    /// Stops the capturer (the plugin's trace is deleted, its file removed).
    pub async fn stop(self, node: &BenchNode, vhost: &str) -> anyhow::Result<()> {
        match self {
            Running::Null(drain) => drain.stop().await,
            Running::Plugin { counter, file } => {
                node.mgmt
                    .delete(&format!("traces/{}/{TRACE_NAME}", encode(vhost)))
                    .await?;
                counter.stop();
                let _ = std::fs::remove_file(file);
            }
            Running::Flowscope(process) => process.stop().await?,
        }
        Ok(())
    }
}

/// Counts, as a file grows, the complete lines that contain a mark.
#[derive(Debug)]
pub struct FileCounter {
    count: Arc<AtomicU64>,
    task: JoinHandle<()>,
}

impl FileCounter {
    /// Reads `path` every 50 ms from where it left off (the file may not exist yet).
    pub fn start(path: PathBuf, mark: &'static [u8]) -> Self {
        let count = Arc::new(AtomicU64::new(0));
        let counter = count.clone();
        let task = tokio::spawn(async move {
            let mut offset = 0u64;
            let mut partial: Vec<u8> = Vec::new();
            let mut buf = vec![0u8; 1 << 20];
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                let Ok(mut file) = tokio::fs::File::open(&path).await else {
                    continue;
                };
                if file.seek(std::io::SeekFrom::Start(offset)).await.is_err() {
                    continue;
                }
                while let Ok(n) = file.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    offset += n as u64;
                    partial.extend_from_slice(&buf[..n]);
                    let (lines, rest) = count_marked_lines(&partial, mark);
                    counter.fetch_add(lines, Ordering::Relaxed);
                    partial.drain(..partial.len() - rest);
                }
            }
        });
        Self { count, task }
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// How many complete lines of `data` contain `mark`, and the length of the incomplete
/// last line (kept for the next read).
pub fn count_marked_lines(data: &[u8], mark: &[u8]) -> (u64, usize) {
    let mut lines = 0;
    let mut start = 0;
    for (i, b) in data.iter().enumerate() {
        if *b == b'\n' {
            if data[start..i].windows(mark.len()).any(|w| w == mark) {
                lines += 1;
            }
            start = i + 1;
        }
    }
    (lines, data.len() - start)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_complete_marked_lines_count() {
        let data = b"{\"type\":\"published\",\"a\":1}\n{\"type\":\"received\"}\n{\"type\":\"pub";
        let (lines, rest) = count_marked_lines(data, PLUGIN_PUBLISH_MARK);
        assert_eq!((lines, rest), (1, 12));
        let (lines, rest) = count_marked_lines(b"lished\"}\n", br#"lished""#);
        assert_eq!((lines, rest), (1, 0));
        assert_eq!(count_marked_lines(b"", b"x"), (0, 0));
    }
}
