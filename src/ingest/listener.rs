//! The listeners: binding with room for a fleet that reconnects at once, and the accept loop with
//! its connection limit.
//!
//! A connection beyond a listener's limit is refused at once with a reason, not left in the
//! kernel's queue; the queue itself is as long as the limit (at least 1,024), so a whole fleet
//! reconnecting after a restart waits there instead of having its handshakes dropped.

use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::connection::{self, Services};
use super::descriptors;
use crate::config::Config;
use crate::domain::frame::SourceKind;
use crate::stats::Stats;

/// The two bound listeners.
#[derive(Debug)]
pub struct Listeners {
    pub uplink: TcpListener,
    pub replay: TcpListener,
}

impl Listeners {
    /// Binds both configured addresses; the error names the one that failed.
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        let bind = |addr: SocketAddr, max_connections: usize, what: &'static str| {
            listen(
                addr,
                accept_queue(max_connections),
                config.connection.receive_buffer,
            )
            .map_err(|err| {
                std::io::Error::new(
                    err.kind(),
                    format!("cannot bind the {what} listener on {addr}: {err}"),
                )
            })
        };
        Ok(Listeners {
            uplink: bind(
                config.uplink.listen,
                config.uplink.max_connections,
                "uplink",
            )?,
            replay: bind(
                config.replay.listen,
                config.replay.max_connections,
                "replay",
            )?,
        })
    }
}

/// How many connections the kernel may hold for the accept loop: all a listener allows, at least
/// 1,024, so that a whole fleet reconnecting at once (after a restart or a network failure) waits
/// in the queue. `TcpListener::bind` asks for 128: past that the kernel drops the handshakes, and
/// each dropped source waits out SYN retransmissions of 1, 3, 7, 15 s and more (in the benchmark,
/// 59 of 1,001 sources were still not connected after 30 s). The kernel caps the queue at
/// `net.core.somaxconn` (4,096 by default since Linux 5.4).
fn accept_queue(max_connections: usize) -> u32 {
    u32::try_from(max_connections.max(1024)).unwrap_or(u32::MAX)
}

/// Binds `addr` with room for `backlog` connections waiting to be accepted, each accepted with
/// `receive_buffer` (or the kernel's autotuning).
fn listen(
    addr: SocketAddr,
    backlog: u32,
    receive_buffer: Option<usize>,
) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As `TcpListener::bind` does: a restart may bind while old connections are in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    if let Some(bytes) = receive_buffer {
        // On the listener, before it listens: accepted sockets inherit it, and the window scale
        // offered in the handshake fits it.
        socket.set_recv_buffer_size(u32::try_from(bytes).unwrap_or(u32::MAX))?;
        // Linux doubles what it is asked for (room for its bookkeeping) and caps the request
        // at net.core.rmem_max without an error.
        let granted =
            socket.recv_buffer_size()? as usize / if cfg!(target_os = "linux") { 2 } else { 1 };
        if granted < bytes {
            tracing::warn!(
                %addr,
                asked = bytes,
                granted,
                "connection.receive_buffer is capped by the kernel's net.core.rmem_max"
            );
        }
    }
    socket.bind(addr)?;
    socket.listen(backlog)
}

/// Starts an accept loop on each listener; the connections they accept join `tracker`.
pub(crate) fn serve(
    listeners: Listeners,
    config: &Config,
    services: Arc<Services>,
    tracker: &TaskTracker,
) {
    for (listener, kind, limit) in [
        (
            listeners.uplink,
            SourceKind::LiveUplink,
            config.uplink.max_connections,
        ),
        (
            listeners.replay,
            SourceKind::ArchivedReplay,
            config.replay.max_connections,
        ),
    ] {
        let accept = accept_loop(
            listener,
            kind,
            limit,
            Arc::clone(&services),
            tracker.clone(),
        );
        tracker.spawn(accept);
    }
}

/// Accepts connections until the drain starts. Beyond `limit` open connections a new one is
/// refused at once, with a reason, rather than left waiting in the backlog.
#[tracing::instrument(name = "listener", skip_all, fields(kind = kind.as_str()))]
async fn accept_loop(
    listener: TcpListener,
    kind: SourceKind,
    limit: usize,
    services: Arc<Services>,
    tracker: TaskTracker,
) {
    let (drain, stats) = (services.drain.clone(), services.stats.clone());
    accept_until(&listener, limit, &drain, &stats, |stream, peer, slot| {
        let services = Arc::clone(&services);
        match slot {
            Some(slot) => tracker.spawn(async move {
                connection::serve(stream, peer, kind, services).await;
                drop(slot);
            }),
            None => tracker.spawn(connection::refuse_over_limit(
                stream, peer, kind, limit, services,
            )),
        };
    })
    .await;
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A fleet that reconnects at once waits in the kernel's queue until the accept loop takes it.
    /// With `TcpListener::bind`'s queue of 128, the kernel drops the handshakes past it and those
    /// sources wait a second or more for their SYN to be sent again.
    #[tokio::test]
    async fn the_accept_queue_holds_a_fleet_reconnecting_at_once() {
        let mut config = Config::default();
        config.uplink.listen = "127.0.0.1:0".parse().unwrap();
        config.replay.listen = "127.0.0.1:0".parse().unwrap();
        let listeners = Listeners::bind(&config).await.unwrap();
        let addr = listeners.uplink.local_addr().unwrap();
        // Nothing accepts: every connection stays in the queue.
        let wave = 300;
        let mut fleet = Vec::with_capacity(wave);
        for i in 0..wave {
            let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(addr));
            match connect.await {
                Ok(Ok(stream)) => fleet.push(stream),
                Ok(Err(err)) => panic!("connection {i} of {wave} failed: {err}"),
                Err(_) => panic!("connection {i} of {wave} found the accept queue full"),
            }
        }
        assert_eq!(fleet.len(), wave);
    }

    /// `connection.receive_buffer` reaches the accepted connections: what the kernel may hold of a
    /// source's unread data.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn accepted_connections_get_the_configured_receive_buffer() {
        let mut config = Config::default();
        config.uplink.listen = "127.0.0.1:0".parse().unwrap();
        config.replay.listen = "127.0.0.1:0".parse().unwrap();
        let receive_buffer = |stream: TcpStream| {
            let socket = TcpSocket::from_std_stream(stream.into_std().unwrap());
            socket.recv_buffer_size().unwrap() as usize
        };
        let accepted = |listeners: Listeners| async move {
            let addr = listeners.replay.local_addr().unwrap();
            let _client = TcpStream::connect(addr).await.unwrap();
            let (stream, _) = listeners.replay.accept().await.unwrap();
            receive_buffer(stream)
        };
        let kernel = accepted(Listeners::bind(&config).await.unwrap()).await;
        let asked = 48 * 1024;
        config.connection.receive_buffer = Some(asked);
        let configured = accepted(Listeners::bind(&config).await.unwrap()).await;
        // Linux keeps twice what it is asked for, the half beyond it for its bookkeeping.
        assert_eq!(configured, 2 * asked);
        assert_ne!(kernel, configured);
    }
}
