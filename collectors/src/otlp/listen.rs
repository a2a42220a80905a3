//! The accept loop both OTLP transports run: each connection served on its
//! own task; on HTTP/1.1, one whose request headers do not all arrive in
//! time is cut; on shutdown each is told to stop, given a grace period for
//! the requests in flight, then cut.
//!
//! Both watches cost a connection nothing per request. hyper's own header
//! timeout set a timer for every request (allocated, put in the runtime's
//! timer wheel, taken out when the headers came) and hyper-util's graceful
//! shutdown polled a watch channel at every wake-up: together ~2 % of the
//! CPU of receiving small exports (docs/benchmarks.md, sixteenth sitting).
//! Here a connection has one timer, rearmed only when it fires, which
//! looks at what the connection has read and answered since
//! ([`Progress`]), and shutdown is a flag each connection reads as it is
//! polled, with its waker kept to wake it once.

use std::collections::HashMap;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::task::AtomicWaker;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A pause after a failed `accept` (out of file descriptors, say) before the next.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// How long requests in flight get to finish once shutdown begins.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Looks at a connection's progress this many times per header timeout:
/// one is cut between the timeout and a third more.
const CHECKS_PER_TIMEOUT: u32 = 3;

/// The connection as the transports' services see it: counted as it is read.
pub(super) type Io = TokioIo<Counted>;

/// Accepts connections on `listener`, each served by the connection
/// `serve_connection` makes of it, until `shutdown` is cancelled; then stops
/// accepting, lets the requests in flight finish and returns.
///
/// With a `header_timeout`, a connection that has not sent a whole request
/// head within it — the first, from the moment it opened, or a later one,
/// from its first byte — is cut (slow clients holding connections open,
/// "slowloris"). The service marks heads and answers in the [`Progress`]
/// it is given; an idle kept-alive connection is left open.
pub(super) async fn accept_loop<C, F>(
    transport: &'static str,
    listener: TcpListener,
    shutdown: CancellationToken,
    header_timeout: Option<Duration>,
    mut serve_connection: F,
) -> io::Result<()>
where
    F: FnMut(Io, Arc<Progress>) -> C,
    C: GracefulConnection<Error = hyper::Error> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    // Each live connection's waker, by its task: woken once at shutdown.
    let mut wakers: HashMap<tokio::task::Id, Arc<AtomicWaker>> = HashMap::new();
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
            Some(done) = connections.join_next_with_id(), if !connections.is_empty() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(err) => err.id(),
                };
                wakers.remove(&id);
                continue;
            }
            () = shutdown.cancelled() => break,
        };
        // Answers are small and written whole: no need to wait for more.
        let _ = stream.set_nodelay(true);
        let progress = Arc::new(Progress::default());
        let io = TokioIo::new(Counted {
            stream,
            progress: Arc::clone(&progress),
        });
        let connection = serve_connection(io, Arc::clone(&progress));
        let waker = Arc::new(AtomicWaker::new());
        let told = Told {
            stop: Arc::clone(&stop),
            waker: Arc::clone(&waker),
        };
        let watchdog = header_timeout.map(|timeout| Watchdog::new(progress, timeout));
        let task = connections.spawn(drive(transport, peer, connection, told, watchdog));
        wakers.insert(task.id(), waker);
    }
    drop(listener);
    // Each connection is told to stop (GOAWAY on HTTP/2, `connection: close`
    // on HTTP/1) and finishes its requests in flight; one that has not within
    // the grace period is cut, so that its sender is dropped and the pipeline
    // can drain.
    stop.store(true, Ordering::Release);
    for waker in wakers.values() {
        waker.wake();
    }
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(SHUTDOWN_GRACE, drained).await.is_err() {
        tracing::warn!(
            transport,
            connections = connections.len(),
            "otlp: connections still busy after {SHUTDOWN_GRACE:?} of shutdown; closing them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// Whether shutdown has begun, as one connection sees it.
struct Told {
    stop: Arc<AtomicBool>,
    waker: Arc<AtomicWaker>,
}

impl Told {
    /// Whether to stop; if not yet, the task is woken when it is time.
    fn poll(&self, cx: &Context<'_>) -> bool {
        // Registered first: a stop set after the look below wakes it.
        self.waker.register(cx.waker());
        self.stop.load(Ordering::Acquire)
    }
}

/// Serves one connection until it ends, is cut for slow headers, or is
/// told to stop and has finished; a connection that ends in an error is
/// the client's business (it went away, or did not speak the protocol):
/// worth a line at DEBUG only.
async fn drive<C>(
    transport: &'static str,
    peer: SocketAddr,
    connection: C,
    told: Told,
    mut watchdog: Option<Watchdog>,
) where
    C: GracefulConnection<Error = hyper::Error>,
{
    let mut connection = pin!(connection);
    let mut stopping = false;
    let ended = poll_fn(|cx| {
        if !stopping && told.poll(cx) {
            stopping = true;
            connection.as_mut().graceful_shutdown();
        }
        if let Some(watchdog) = watchdog.as_mut()
            && watchdog.poll(cx).is_ready()
        {
            return Poll::Ready(Err(None));
        }
        connection.as_mut().poll(cx).map_err(Some)
    })
    .await;
    match ended {
        Ok(()) => {}
        Err(Some(err)) => {
            tracing::debug!(transport, %peer, error = %err, "otlp connection ended with an error");
        }
        Err(None) => {
            let timeout = watchdog.map(|w| w.timeout).unwrap_or_default();
            tracing::debug!(
                transport,
                %peer,
                "otlp connection cut: a request's headers did not arrive within {timeout:?}"
            );
        }
    }
}

/// What one connection has read and answered, for its [`Watchdog`]. Only
/// its own task writes it (reading the socket, calling the service), so
/// the counts are loads and stores, not atomic additions.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Bytes read from the socket.
    bytes: AtomicU64,
    /// Request heads handed to the service.
    heads: AtomicU64,
    /// Requests the service has taken whole (read their bodies) and answered.
    answered: AtomicU64,
    /// `bytes` when the last of them was answered.
    bytes_answered: AtomicU64,
}

impl Progress {
    fn add(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// A request's head has arrived (call as the service is called).
    pub(super) fn head(&self) {
        Self::add(&self.heads, 1);
    }

    /// The request is read whole and answered (call as the service returns).
    pub(super) fn answered(&self) {
        Self::add(&self.answered, 1);
        let bytes = self.bytes.load(Ordering::Relaxed);
        self.bytes_answered.store(bytes, Ordering::Relaxed);
    }

    /// The heads so far, when the connection waits for one to complete:
    /// no request is being served, and some bytes of the next have come
    /// (or none has come yet, on a connection that has sent nothing).
    fn waiting_for_headers(&self) -> Option<u64> {
        let heads = self.heads.load(Ordering::Relaxed);
        let serving = heads != self.answered.load(Ordering::Relaxed);
        let unread =
            self.bytes.load(Ordering::Relaxed) != self.bytes_answered.load(Ordering::Relaxed);
        (!serving && (unread || heads == 0)).then_some(heads)
    }
}

/// Cuts a connection that has waited for a request's headers longer than
/// the timeout: looks at its [`Progress`] a few times per timeout, with one
/// timer that is rearmed when it fires (never per request).
struct Watchdog {
    progress: Arc<Progress>,
    timeout: Duration,
    timer: Pin<Box<tokio::time::Sleep>>,
    /// Since when the connection has waited for the head after these heads.
    waiting: Option<(Instant, u64)>,
}

impl Watchdog {
    fn new(progress: Arc<Progress>, timeout: Duration) -> Self {
        let now = Instant::now();
        Self {
            progress,
            timeout,
            timer: Box::pin(tokio::time::sleep_until(now + timeout / CHECKS_PER_TIMEOUT)),
            // A new connection waits for its first head from now.
            waiting: Some((now, 0)),
        }
    }

    /// Ready when the connection is to be cut.
    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        while self.timer.as_mut().poll(cx).is_ready() {
            let now = Instant::now();
            self.waiting = match (self.progress.waiting_for_headers(), self.waiting) {
                (None, _) => None,
                // Still the same request's head.
                (Some(heads), Some((since, then))) if heads == then => {
                    if now.duration_since(since) >= self.timeout {
                        return Poll::Ready(());
                    }
                    Some((since, then))
                }
                // Another request's head begun since the last look.
                (Some(heads), _) => Some((now, heads)),
            };
            let next = now + self.timeout / CHECKS_PER_TIMEOUT;
            self.timer.as_mut().reset(next);
        }
        Poll::Pending
    }
}

/// The socket, its reads counted into the connection's [`Progress`].
pub(super) struct Counted {
    stream: TcpStream,
    progress: Arc<Progress>,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.stream).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            Progress::add(&self.progress.bytes, (buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
