//! The accept loop both OTLP transports run: each connection served on its
//! own task, and on shutdown told to stop, given a grace period for the
//! requests in flight, then cut.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A pause after a failed `accept` (out of file descriptors, say) before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long requests in flight get to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Accepts connections on `listener`, each served by the connection
/// `serve_connection` makes of it, until `shutdown` is cancelled; then stops
/// accepting, lets the requests in flight finish and returns.
pub(super) async fn accept_loop<C, F>(
    transport: &'static str,
    listener: TcpListener,
    shutdown: CancellationToken,
    mut serve_connection: F,
) -> io::Result<()>
where
    F: FnMut(TokioIo<TcpStream>) -> C,
    C: GracefulConnection<Error = hyper::Error> + Send + 'static,
{
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!(transport, error = %err, "otlp: could not accept a connection");
                    tokio::time::sleep(ACCEPT_PAUSE).await;
                    continue;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            () = shutdown.cancelled() => break,
        };
        // Answers are small and written whole: no need to wait for more.
        let _ = stream.set_nodelay(true);
        let connection = graceful.watch(serve_connection(TokioIo::new(stream)));
        connections.spawn(log_error(transport, peer, connection));
    }
    drop(listener);
    // Each connection is told to stop (GOAWAY on HTTP/2, `connection: close`
    // on HTTP/1) and finishes its requests in flight; one that has not within
    // the grace period is cut, so that its sender is dropped and the pipeline
    // can drain.
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            transport,
            connections = connections.len(),
            "otlp: connections still busy after {SHUTDOWN_GRACE:?} of shutdown; closing them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// A connection that ends in an error is the client's business (it went
/// away, or did not speak the protocol): worth a line at DEBUG only.
async fn log_error(
    transport: &'static str,
    peer: SocketAddr,
    connection: impl Future<Output = Result<(), hyper::Error>>,
) {
    if let Err(err) = connection.await {
        tracing::debug!(transport, %peer, error = %err, "otlp connection ended with an error");
    }
}
