//! The monitor's TLS handshake: each runs in its connection's task, within a time limit, so a client
//! that stalls in its handshake holds up no other.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// How long a monitor client has for its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The handshake of one monitor connection; a failure is logged with the peer.
pub(crate) async fn handshake(
    acceptor: tokio_rustls::TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(stream)) => Some(stream),
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
