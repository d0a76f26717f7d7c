//! Binding a listener with an accept queue deep enough for a burst of connections.
//!
//! Why not `TcpListener::bind`: it asks the kernel for a queue of 128, and past that the kernel
//! drops the handshakes. A fleet reconnecting at once then waits out SYN retransmissions of 1, 3,
//! 7, 15 s and more (in the benchmark, 59 of 1,001 sources were still not connected after 30 s),
//! and a health probe arriving during a flood of connections waits a second or more before the
//! accept loop ever sees it, however fast that loop makes room. Every listener binds here.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// How many connections the kernel may hold for the accept loop: all a listener allows, at least
/// 4,096 (a wave of thousands of handshakes at once, a fleet's or a flood's, must not overflow
/// it). The kernel caps the queue at `net.core.somaxconn` (4,096 by default since Linux 5.4).
fn accept_queue(max_connections: usize) -> u32 {
    u32::try_from(max_connections.max(4096)).unwrap_or(u32::MAX)
}

/// Binds `addr` for the listener `what` (named in the error) with room for a burst of
/// connections waiting to be accepted (as many as `max_connections`, at least 4,096), each
/// accepted with `receive_buffer` (or the kernel's autotuning).
pub fn listen(
    addr: SocketAddr,
    max_connections: usize,
    receive_buffer: Option<usize>,
    what: &str,
) -> io::Result<TcpListener> {
    bind(addr, accept_queue(max_connections), receive_buffer).map_err(|err| {
        io::Error::new(
            err.kind(),
            format!("cannot bind the {what} listener on {addr}: {err}"),
        )
    })
}

fn bind(addr: SocketAddr, backlog: u32, receive_buffer: Option<usize>) -> io::Result<TcpListener> {
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
