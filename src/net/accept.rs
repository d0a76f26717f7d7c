//! The accept loop every listener runs: connection limits (the listener's and each address's,
//! [`Slots`]) whose overflow is refused at once, the archive's descriptor reserve kept from
//! connections, and failed accepts retried with a backoff.
//!
//! Why one loop for every listener: a connection on any port takes a file descriptor, so each
//! listener (the sources', the followers', the TM servers', the monitor's) must leave the
//! archive's reserve alone in the same way, and count and log what it closes for it in one place.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::descriptors;
use super::slots::{Refused, Slot, Slots};
use crate::stats::Stats;

/// How a connection gets its slot: [`Slots::take`], or [`Slots::take_or_evict`] where a newcomer
/// may take the place of an idle connection.
pub(crate) type Take = fn(&Arc<Slots>, IpAddr) -> Result<Slot, Refused>;

/// Accepts connections on `listener` until `drain` is cancelled and hands each to `admit`, with
/// its slot from `slots` through `take` (held for as long as the connection is), or why it has
/// none. A connection whose descriptor falls in the archive's reserve ([`descriptors`]) is closed
/// at once and counted in `stats`. A failed accept (typically out of file descriptors) is retried
/// with a backoff.
pub(crate) async fn accept_until(
    listener: &TcpListener,
    slots: &Arc<Slots>,
    take: Take,
    drain: &CancellationToken,
    stats: &Stats,
    mut admit: impl FnMut(TcpStream, SocketAddr, Result<Slot, Refused>),
) {
    let mut backoff = Duration::from_millis(10);
    let mut refusals = Refusals::default();
    let mut crowded = Refusals::default();
    loop {
        let accepted = tokio::select! {
            _ = drain.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) if descriptors::in_reserve(stream.as_raw_fd()) => {
                drop(stream);
                stats.connection_refused_for_descriptors();
                refusals.count(|unlogged| tracing::warn!(
                    refused = unlogged,
                    "connections refused: the open-file limit is near, and its last descriptors are kept for the archive"
                ));
            }
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(10);
                let slot = take(slots, peer.ip());
                if let Err(refused @ Refused::Address { .. }) = slot {
                    crowded.count(|unlogged| {
                        tracing::warn!(refused = unlogged, "connections refused: {refused}")
                    });
                }
                admit(stream, peer, slot);
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

/// Connections refused for one reason (the archive's descriptors, an address at its limit), logged
/// at most once a second: a flood of them must not become a flood of log lines.
#[derive(Debug, Default)]
struct Refusals {
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Refusals {
    /// Counts one, and calls `log` with those not logged yet unless one was logged within a
    /// second.
    fn count(&mut self, log: impl FnOnce(u64)) {
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .logged_at
            .is_some_and(|at| now.duration_since(at) < Duration::from_secs(1))
        {
            return;
        }
        log(self.unlogged);
        self.unlogged = 0;
        self.logged_at = Some(now);
    }
}
