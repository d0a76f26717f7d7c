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
    // Below the kernel's ephemeral range (`ip_local_port_range`): a port from there could be
    // handed to an outgoing connection, or to a listener of port 0, before its server binds it.
    // A port is given out once per test process.
    static GIVEN: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    let low = ephemeral_low().unwrap_or(32_768);
    assert!(
        low >= FLOOR + 1_000,
        "the kernel's ephemeral ports start at {low}: too few ports below them for the tests"
    );
    let mut given = GIVEN.lock().expect("ports lock");
    for _ in 0..1_000 {
        let port = FLOOR + (random() % u64::from(low - FLOOR)) as u16;
        // Checked first: a port handed out is not bound here, even for a moment.
        if !given.contains(&port) && std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            given.push(port);
            return port;
        }
    }
    panic!("no free loopback port in {FLOOR}..{low} after 1,000 tries");
}

/// The least port [`free_port`] gives: above the well-known and most registered services'.
const FLOOR: u16 = 20_000;

/// The first port of the kernel's ephemeral range, where it can be read (Linux's default is
/// 32768).
pub fn ephemeral_low() -> Option<u16> {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range");
    range
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
}

/// A random number: std's hasher keys are random per process, and differ for each new state.
fn random() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
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
