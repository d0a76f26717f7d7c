//! Servers far apart, on one machine: a proxy in front of a port that holds every byte it
//! forwards for a fixed time, each way, so that a cluster on loopback answers as one whose nodes
//! and clients are that far apart (a round trip through it takes twice the delay).
//!
//! Why a proxy and not `tc netem`: the kernels this bench runs on need not have `sch_netem` (this
//! project's VMs do not), and a proxy delays only the ports it fronts, not the daemon's uplinks on
//! the same loopback. Threads and blocking sockets: a few dozen connections, each forwarded as
//! read, so the bytes keep their order and pace.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// How often the accepting thread looks whether the proxy was dropped.
const POLL: Duration = Duration::from_millis(50);

/// A delaying proxy to `upstream`, listening on a port of its own until dropped; connections
/// already forwarded end when either side closes.
pub struct Delay {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Delay {
    /// Listens on a fresh loopback port; each connection accepted is connected to `upstream`
    /// and its bytes are held `delay` each way.
    pub fn start(upstream: SocketAddr, delay: Duration) -> io::Result<Delay> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        thread::spawn(move || {
            while !stopped.load(Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => forward(client, upstream, delay),
                    // None waiting (or a failed accept): look again shortly.
                    Err(_) => thread::sleep(POLL),
                }
            }
        });
        Ok(Delay { addr, stop })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Delay {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// Connects `client` to `upstream` (a refused connect closes the client, which tries again as it
/// would with a server not up yet) and forwards both ways.
fn forward(client: TcpStream, upstream: SocketAddr, delay: Duration) {
    let (Ok(()), Ok(server)) = (client.set_nonblocking(false), TcpStream::connect(upstream)) else {
        return;
    };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    for (from, to) in [(&client, &server), (&server, &client)] {
        if let (Ok(from), Ok(to)) = (from.try_clone(), to.try_clone()) {
            one_way(from, to, delay);
        }
    }
}

/// Reads `from` as bytes come and writes each read to `to` `delay` after it was read; at the end
/// of `from`, or a failed write, shuts both down.
fn one_way(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (held, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0; 64 << 10];
        while let Ok(n @ 1..) = from.read(&mut buf) {
            if held
                .send((Instant::now() + delay, buf[..n].to_vec()))
                .is_err()
            {
                break;
            }
        }
        let _ = from.shutdown(Shutdown::Read);
    });
    thread::spawn(move || {
        for (at, bytes) in due {
            thread::sleep(at.saturating_duration_since(Instant::now()));
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_come_back_in_order_a_round_trip_later() {
        let echo = TcpListener::bind("127.0.0.1:0").expect("bind");
        let upstream = echo.local_addr().expect("address");
        thread::spawn(move || {
            let (mut conn, _) = echo.accept().expect("accept");
            let mut buf = [0; 1024];
            while let Ok(n @ 1..) = conn.read(&mut buf) {
                conn.write_all(&buf[..n]).expect("echo");
            }
        });
        let delay = Duration::from_millis(20);
        let proxy = Delay::start(upstream, delay).expect("proxy");
        let mut conn = TcpStream::connect(proxy.addr()).expect("connect");
        let sent = Instant::now();
        conn.write_all(b"ping").expect("write");
        let mut answer = [0; 4];
        conn.read_exact(&mut answer).expect("read");
        assert_eq!(&answer, b"ping");
        assert!(sent.elapsed() >= delay * 2, "{:?}", sent.elapsed());
    }
}
