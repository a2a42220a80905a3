//! Ctrl-C and SIGTERM as a cancellation token.

use tokio_util::sync::CancellationToken;

/// A token cancelled on SIGTERM or SIGINT. A second signal exits at once:
/// the orderly stop waits for the store, and an operator may not want to.
pub fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down (a second Ctrl-C exits at once)");
        cancel.cancel();
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::warn!("second signal: exiting without finishing the shutdown");
        std::process::exit(130);
    });
    token
}
