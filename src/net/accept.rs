//! The accept loop every listener runs: a connection limit whose overflow is refused at once,
//! the archive's descriptor reserve kept from connections, and failed accepts retried with a
//! backoff.
//!
//! Why one loop for every listener: a connection on any port takes a file descriptor, so each
//! listener (the sources', the followers', the TM servers', the monitor's) must leave the
//! archive's reserve alone in the same way, and count and log what it closes for it in one place.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::descriptors;
use crate::stats::Stats;

/// Accepts connections on `listener` until `drain` is cancelled and hands each to `admit`, with
/// one of `limit` slots (held for as long as the connection is), or `None` when all are taken.
/// A connection whose descriptor falls in the archive's reserve ([`descriptors`]) is closed at
/// once and counted in `stats`. A failed accept (typically out of file descriptors) is retried
/// with a backoff.
pub(crate) async fn accept_until(
    listener: &TcpListener,
    limit: usize,
    drain: &CancellationToken,
    stats: &Stats,
    mut admit: impl FnMut(TcpStream, SocketAddr, Option<OwnedSemaphorePermit>),
) {
    let slots = Arc::new(Semaphore::new(limit));
    let mut backoff = Duration::from_millis(10);
    let mut refusals = Refusals::default();
    loop {
        let accepted = tokio::select! {
            _ = drain.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) if descriptors::in_reserve(stream.as_raw_fd()) => {
                drop(stream);
                stats.connection_refused_for_descriptors();
                refusals.count();
            }
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                admit(stream, peer, Arc::clone(&slots).try_acquire_owned().ok());
            }
            Err(err) => {
                // Typically out of file descriptors: wait for connections to close.
                tracing::warn!(error = %err, backoff_ms = backoff.as_millis() as u64, "accept failed");
                tokio::select! {
                    _ = drain.cancelled() => break,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
    tracing::debug!("stopped accepting");
}

/// Connections closed for the archive's descriptors, logged at most once a second: a flood of
/// them must not become a flood of log lines.
#[derive(Debug, Default)]
struct Refusals {
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    fn count(&mut self) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        tracing::warn!(
            refused = self.unlogged,
            "connections refused: the open-file limit is near, and its last descriptors are kept for the archive"
        );
        self.unlogged = 0;
        self.logged_at = Some(now);
    }
}
