//! Waiting: for a condition, within a patience every test shares; and free ports.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How long any single wait in a test may take before the test fails. Generous: the machine is
/// shared; a healthy run never gets near it.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A free loopback port, for a server that keeps its port across restarts (nats-server, a daemon
/// killed and started again).
pub fn free_port() -> u16 {
    // The kernel may hand a port it just gave out, and since freed, out again: a daemon's uplink
    // and replay listeners got the same one. A port is given out once per test process.
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let mut given = GIVEN.lock().expect("ports lock");
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
        let port = listener.local_addr().expect("local address").port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}

/// Polls `condition` until it holds; fails the test after `timeout`, naming `what`.
pub async fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if condition() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Like [`wait_until`] for a condition that must be awaited (the router's listing, say).
pub async fn wait_until_async<F, Fut>(what: &str, timeout: Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Like [`wait_until`] on a thread of its own, outside a runtime (a test driving child processes):
/// polls `condition` every 20 ms; fails the test after `timeout`, naming `what`.
pub fn wait_until_blocking(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + timeout;
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
