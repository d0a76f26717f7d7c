//! The monitor's listener over TLS, for `axum::serve`: handshakes run in tasks of their own, so a
//! client that stalls in its handshake holds up no other.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;

use super::ServerTls;

/// How long a monitor client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts TCP connections and hands axum those whose TLS handshake succeeded.
#[derive(Debug)]
pub struct HttpsListener {
    tcp: TcpListener,
    tls: Arc<ServerTls>,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl HttpsListener {
    pub fn new(tcp: TcpListener, tls: Arc<ServerTls>) -> HttpsListener {
        HttpsListener {
            tcp,
            tls,
            handshakes: JoinSet::new(),
        }
    }
}

/// The handshake of one monitor connection; a failure is logged with the peer.
async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(TlsStream<TcpStream>, SocketAddr)> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some((stream, peer)),
        Ok(Err(err)) => {
            tracing::warn!(%peer, error = %err, "monitor: TLS handshake failed; connection closed");
            None
        }
        Err(_) => {
            tracing::warn!(%peer, "monitor: no TLS handshake in time; connection closed");
            None
        }
    }
}

impl axum::serve::Listener for HttpsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let acceptor = self.tls.monitor_acceptor();
                        self.handshakes.spawn(handshake(acceptor, stream, peer));
                    }
                    Err(err) => {
                        // Typically out of file descriptors: wait for connections to close.
                        tracing::warn!(error = %err, "monitor: accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(accepted)) = done {
                        return accepted;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
