//! Which service is behind a broker connection: the `connection_name` the
//! client sent, as the management API reports it.
//!
//! The management API lists a new connection only with its next statistics
//! round (up to ~5 s after it opens), so the firehose holds the observations
//! of a connection it cannot name yet and asks again in the background
//! ([`spawn_resolver`]) until the API knows it or [`GIVE_UP_AFTER`] passes.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::management::client::ManagementClient;

/// How long observations wait for their connection's name at most.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(8);
/// How often unknown connections are asked about.
const RETRY_EVERY: Duration = Duration::from_millis(250);
/// Connections remembered at most (cleared beyond, then relearned).
const MAX_ENTRIES: usize = 10_000;
/// Connection names flowscope's own connections start with.
pub const OWN_CONNECTION_PREFIX: &str = "flowscope";

/// Broker connection name → the client's `connection_name` (if it sent one),
/// for every connection the management API has listed. Shared by the collectors.
#[derive(Debug, Clone, Default)]
pub struct ServiceDirectory {
    entries: Arc<RwLock<HashMap<String, Option<String>>>>,
}

impl ServiceDirectory {
    /// Records a connection the management API listed.
    pub fn learn(&self, connection: &str, client_name: Option<String>) {
        let mut entries = self.entries.write().expect("directory lock");
        if entries.len() >= MAX_ENTRIES && !entries.contains_key(connection) {
            entries.clear();
        }
        entries.insert(connection.to_owned(), client_name);
    }

    /// `Some(name)` for a listed connection (`name` is `None` if the client
    /// sent none); `None` if the management API has not listed it yet.
    pub fn known(&self, connection: &str) -> Option<Option<String>> {
        self.entries
            .read()
            .expect("directory lock")
            .get(connection)
            .cloned()
    }
}

/// Starts the background lookup of unknown connections: send a connection
/// name in, get `(connection, service)` out once known, or `(connection, None)`
/// after [`GIVE_UP_AFTER`].
pub fn spawn_resolver(
    directory: ServiceDirectory,
    management: ManagementClient,
) -> (
    mpsc::Sender<String>,
    mpsc::Receiver<(String, Option<String>)>,
) {
    let (want_tx, mut want_rx) = mpsc::channel::<String>(1024);
    let (done_tx, done_rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        let mut wanted: HashMap<String, Instant> = HashMap::new();
        let mut tick = tokio::time::interval(RETRY_EVERY);
        loop {
            tokio::select! {
                want = want_rx.recv() => match want {
                    Some(connection) => { wanted.entry(connection).or_insert_with(Instant::now); }
                    None => return,
                },
                _ = tick.tick() => {}
            }
            let mut settled = Vec::new();
            for (connection, since) in &wanted {
                let known = match directory.known(connection) {
                    Some(name) => Some(name),
                    None => match tokio::time::timeout(
                        Duration::from_secs(1),
                        management.connection(connection),
                    )
                    .await
                    {
                        Ok(Ok(Some(conn))) => {
                            let name = conn["client_properties"]["connection_name"]
                                .as_str()
                                .map(str::to_owned);
                            directory.learn(connection, name.clone());
                            Some(name)
                        }
                        _ => None,
                    },
                };
                match known {
                    Some(name) => settled.push((connection.clone(), name)),
                    None if since.elapsed() >= GIVE_UP_AFTER => {
                        settled.push((connection.clone(), None))
                    }
                    None => {}
                }
            }
            for (connection, name) in settled {
                wanted.remove(&connection);
                if done_tx.send((connection, name)).await.is_err() {
                    return;
                }
            }
        }
    });
    (want_tx, done_rx)
}

/// Whether a service name is one of flowscope's own connections.
pub fn is_own(service: Option<&str>) -> bool {
    service.is_some_and(|s| s.starts_with(OWN_CONNECTION_PREFIX))
}
