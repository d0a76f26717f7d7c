//! The sources' listeners: binding with room for a fleet that reconnects at once, and an accept
//! loop per listener (the shared `net::accept_until`) that hands each connection its task.
//!
//! A connection beyond a listener's limit is refused at once with a reason, not left in the
//! kernel's queue; the queue itself is as long as the limit (at least 4,096, `net::listen`), so a
//! whole fleet reconnecting after a restart waits there instead of having its handshakes dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

use super::connection::{self, Services};
use crate::config::Config;
use crate::domain::frame::SourceKind;
use crate::net::{accept_until, listen, Limits, Slots};

/// Connections past a listener's limits refused at once, at most, each answered
/// `TooManyConnections` (after its TLS handshake, which may take `connection.handshake_timeout_ms`):
/// what a flood of them holds in descriptors is bounded; past it they are closed unanswered.
const REFUSING_AT_ONCE: usize = 64;

/// The two bound listeners.
#[derive(Debug)]
pub struct Listeners {
    pub uplink: TcpListener,
    pub replay: TcpListener,
}

impl Listeners {
    /// Binds both configured addresses; the error names the one that failed.
    pub async fn bind(config: &Config) -> std::io::Result<Listeners> {
        let receive_buffer = config.connection.receive_buffer;
        let bind = |addr: SocketAddr, max_connections: usize, what: &'static str| {
            listen(addr, max_connections, receive_buffer, what)
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

/// Starts an accept loop on each listener; the connections they accept join `tracker`.
pub(crate) fn serve(
    listeners: Listeners,
    config: &Config,
    services: Arc<Services>,
    tracker: &TaskTracker,
) {
    for (listener, kind, limits) in [
        (
            listeners.uplink,
            SourceKind::LiveUplink,
            config.uplink.limits(),
        ),
        (
            listeners.replay,
            SourceKind::ArchivedReplay,
            config.replay.limits(),
        ),
    ] {
        let accept = accept_loop(
            listener,
            kind,
            limits,
            Arc::clone(&services),
            tracker.clone(),
        );
        tracker.spawn(accept);
    }
}

/// Accepts connections until the drain starts. Beyond `limits` open connections (in all, or from
/// one address) a new one is refused at once, with a reason, rather than left waiting in the
/// backlog.
#[tracing::instrument(name = "listener", skip_all, fields(kind = kind.as_str()))]
async fn accept_loop(
    listener: TcpListener,
    kind: SourceKind,
    limits: Limits,
    services: Arc<Services>,
    tracker: TaskTracker,
) {
    let (drain, stats) = (services.drain.clone(), services.stats.clone());
    let slots = Slots::new(limits);
    let refusing = Arc::new(Semaphore::new(REFUSING_AT_ONCE));
    accept_until(
        &listener,
        &slots,
        Slots::take,
        &drain,
        &stats,
        |stream, peer, slot| {
            let services = Arc::clone(&services);
            let refusal =
                |refused| Some((refused, Arc::clone(&refusing).try_acquire_owned().ok()?));
            match slot.map_err(refusal) {
                Ok(slot) => drop(tracker.spawn(async move {
                    connection::serve(stream, peer, kind, services).await;
                    drop(slot);
                })),
                Err(Some((refused, permit))) => drop(tracker.spawn(async move {
                    connection::refuse_over_limit(stream, peer, kind, refused, services).await;
                    drop(permit);
                })),
                // A flood past the limits, with as many refusals under way as are let be (each
                // may wait for a TLS handshake): closed at once, unanswered.
                Err(None) => drop(stream),
            }
        },
    )
    .await;
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::net::TcpStream;

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
            let socket = tokio::net::TcpSocket::from_std_stream(stream.into_std().unwrap());
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
