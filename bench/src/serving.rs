//! What every server variant (`floor`, `daemon`) shares with the server role: the
//! handle a started variant returns, the latency samples and connection errors, and reading more of
//! a connection.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

use tokio::task::JoinHandle;

use crate::control::{Counts, DrainInfo, Recorder, READ_BUFFER};

/// What a started variant hands back to the role.
pub struct Running {
    pub addr: SocketAddr,
    /// The daemon's monitor, served for the `watched` variant only.
    pub monitor: Option<SocketAddr>,
    /// Where followers of the archive subscribe: the durable daemon only.
    pub follow: Option<SocketAddr>,
    /// Reads the variant's counters (`at_ns` and `cpu_ns` are filled in by the role).
    pub counts: Box<dyn Fn() -> Counts + Send + Sync>,
    /// Ends when the variant has stopped after the stop token was cancelled.
    pub done: JoinHandle<Option<DrainInfo>>,
    /// The process that serves, where it is not this one (`--daemon PATH`).
    pub pid: Option<u32>,
}

/// What every variant shares with the role: latency samples and connection errors.
#[derive(Debug, Default)]
pub struct Shared {
    pub recorder: Recorder,
    pub errors: AtomicU64,
    pub first_error: Mutex<Option<String>>,
}

impl Shared {
    /// Counts a connection that ended on an error; a peer that went away is not one.
    pub fn connection_error(&self, err: String) {
        self.errors.fetch_add(1, Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(err);
        }
    }
}

/// Whether an I/O error only says that the load client went away.
pub fn peer_gone(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        err.kind(),
        ConnectionReset | BrokenPipe | ConnectionAborted | UnexpectedEof
    )
}

/// Reads more of a connection into `buf`, keeping a quarter of a read buffer free: `Ok(false)` once
/// the peer closed or went away, which ends a connection of the floor cleanly.
pub async fn read_more(
    stream: &mut tokio::net::TcpStream,
    buf: &mut bytes::BytesMut,
) -> Result<bool, String> {
    use tokio::io::AsyncReadExt;
    if buf.capacity() - buf.len() < READ_BUFFER / 4 {
        buf.reserve(READ_BUFFER);
    }
    match stream.read_buf(buf).await {
        Ok(0) => Ok(false),
        Ok(_) => Ok(true),
        Err(err) if peer_gone(&err) => Ok(false),
        Err(err) => Err(format!("read: {err}")),
    }
}
