//! The live stream: a snapshot on connect, then coalesced updates.
//!
//! Each client has its own small task between the live bus and its
//! connection. Updates are merged and sent at most every
//! [`COALESCE_INTERVAL`]; a client whose connection cannot take them (or
//! that fell behind the bus) gets a fresh snapshot instead, and the server
//! never waits for it.

use std::convert::Infallible;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use flowscope_model::{LiveUpdate, StreamMessage};
use futures_util::Stream;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;

use super::SharedLive;

/// At most ten updates a second per client.
pub const COALESCE_INTERVAL: Duration = Duration::from_millis(100);
/// Events queued for a client's connection; beyond, it is behind.
const CLIENT_BUFFER: usize = 8;

/// The SSE response for one client.
pub fn sse(
    live: SharedLive,
    updates: broadcast::Receiver<LiveUpdate>,
    shutdown: CancellationToken,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = mpsc::channel(CLIENT_BUFFER);
    tokio::spawn(async move {
        tokio::select! {
            _ = feed(live, updates, tx) => {}
            _ = shutdown.cancelled() => {}
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|message| (Ok(event(&message)), rx))
    });
    Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

fn event(message: &StreamMessage) -> Event {
    let name = match message {
        StreamMessage::Snapshot(_) => "snapshot",
        StreamMessage::Update(_) => "update",
    };
    Event::default()
        .event(name)
        .data(serde_json::to_string(message).expect("stream messages serialize"))
}

fn snapshot(live: &SharedLive, lagged: u64) -> StreamMessage {
    let mut snapshot = live.read().expect("live lock").snapshot();
    snapshot.stats.stream_lagged = lagged;
    StreamMessage::Snapshot(Box::new(snapshot))
}

async fn feed(
    live: SharedLive,
    mut updates: broadcast::Receiver<LiveUpdate>,
    tx: mpsc::Sender<StreamMessage>,
) {
    let mut lagged = 0u64;
    let mut needs_snapshot = true;
    let mut pending = LiveUpdate::default();
    let mut tick = tokio::time::interval(COALESCE_INTERVAL);
    loop {
        if needs_snapshot {
            match tx.try_send(snapshot(&live, lagged)) {
                Ok(()) => {
                    needs_snapshot = false;
                    pending = LiveUpdate::default();
                }
                Err(mpsc::error::TrySendError::Closed(_)) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {}
            }
        }
        tokio::select! {
            received = updates.recv() => match received {
                Ok(update) => pending.merge(update),
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    lagged += n;
                    needs_snapshot = true;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            },
            _ = tick.tick() => {
                if needs_snapshot || pending.is_empty() {
                    continue;
                }
                if let Some(stats) = pending.stats.as_mut() {
                    stats.stream_lagged = lagged;
                }
                let message = StreamMessage::Update(Box::new(std::mem::take(&mut pending)));
                match tx.try_send(message) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                    // The connection is not keeping up: skip ahead to a snapshot.
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        lagged += 1;
                        needs_snapshot = true;
                    }
                }
            }
            _ = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, RwLock};

    use super::*;
    use crate::alerts::{AlertConfig, AlertEngine};
    use crate::correlator::Correlator;
    use crate::live::Live;

    #[tokio::test]
    async fn a_client_that_cannot_keep_up_gets_a_fresh_snapshot_and_never_blocks_the_bus() {
        let correlator = Correlator::new(Default::default()).unwrap();
        let live = Arc::new(RwLock::new(Live::new(
            correlator,
            AlertEngine::new(AlertConfig::default()),
            false,
        )));
        let (bus, _) = broadcast::channel(4);
        // A connection that takes one message and then reads nothing for a while.
        let (tx, mut rx) = mpsc::channel(1);
        tokio::spawn(feed(live, bus.subscribe(), tx));
        let first = rx.recv().await.unwrap();
        assert!(matches!(first, StreamMessage::Snapshot(ref s) if s.stats.stream_lagged == 0));
        for i in 0..50 {
            // The server's send never waits for the client.
            let update = LiveUpdate {
                removed_flows: vec![format!("f{i}")],
                ..Default::default()
            };
            bus.send(update).unwrap();
        }
        tokio::time::sleep(COALESCE_INTERVAL * 3).await;
        let next = rx.recv().await.unwrap();
        match next {
            StreamMessage::Snapshot(s) => assert!(
                s.stats.stream_lagged > 0,
                "the snapshot says updates were missed"
            ),
            StreamMessage::Update(u) => panic!("expected a fresh snapshot, got an update {u:?}"),
        }
    }
}
