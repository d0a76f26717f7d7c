//! The monitor's port holds against its clients: a connection limit, a request head that must
//! arrive in time, an idle timeout, and no connection that outlives the stop's cut-off.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::{http_get, test_config, wait_until_async, Archive, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A daemon whose monitor has `max_connections`, a head timeout and an idle timeout.
async fn monitor(
    max_connections: usize,
    header_read_timeout: Duration,
    idle_timeout: Duration,
) -> (
    common::TestDaemon,
    SocketAddr,
    tokio_util::sync::CancellationToken,
) {
    let mut config = test_config();
    config.monitor.max_connections = max_connections;
    config.monitor.header_read_timeout = header_read_timeout;
    config.monitor.idle_timeout = idle_timeout;
    let (_, sink) = Archive::open();
    common::start_monitored(config, sink).await
}

/// Reads until the server closes the connection: what it sent before, or `None` if it stays open
/// past `PATIENCE`.
async fn read_until_closed(stream: &mut TcpStream) -> Option<String> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut got)).await;
    match read {
        Ok(_) => Some(String::from_utf8_lossy(&got).into_owned()),
        Err(_) => None,
    }
}

/// One connection more than `monitor.max_connections` is answered 503 and closed; once one of the
/// others closes, a new one is served.
#[tokio::test]
async fn a_connection_past_the_limit_is_answered_503_and_closed() {
    let (_daemon, addr, _stop) = monitor(2, PATIENCE * 6, PATIENCE * 6).await;
    let first = TcpStream::connect(addr).await.unwrap();
    let _second = TcpStream::connect(addr).await.unwrap();
    let mut third = TcpStream::connect(addr).await.unwrap();
    let refused = read_until_closed(&mut third)
        .await
        .expect("the connection past the limit is closed");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    assert!(
        refused.contains("monitor.max_connections = 2"),
        "{refused:?}"
    );

    drop(first);
    wait_until_async("a connection is served again", PATIENCE, || async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        read_until_closed(&mut stream)
            .await
            .is_some_and(|response| response.starts_with("HTTP/1.1 200"))
    })
    .await;
}

/// A request whose head never completes, and a connection that says nothing at all, are closed
/// after `monitor.header_read_timeout_ms`; so is a keep-alive connection silent after a response.
#[tokio::test]
async fn silent_and_half_sent_requests_are_closed_after_the_head_timeout() {
    let (_daemon, addr, _stop) = monitor(16, Duration::from_millis(200), PATIENCE * 6).await;
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    for (what, stream) in [
        ("silent", &mut silent),
        ("half-sent", &mut half),
        ("kept alive", &mut kept_alive),
    ] {
        let sent = read_until_closed(stream).await;
        assert!(sent.is_some(), "the {what} connection is still open");
    }
    let answered = read_until_closed(&mut kept_alive).await.unwrap_or_default();
    assert!(answered.is_empty(), "nothing more after the close");
    // The monitor itself is fine.
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
}

/// A request whose body stalls is closed after `monitor.idle_timeout_ms`: the head arrived in
/// time, so only the idle timeout can end it.
#[tokio::test]
async fn a_stalled_body_is_closed_after_the_idle_timeout() {
    let (_daemon, addr, _stop) = monitor(16, PATIENCE * 6, Duration::from_millis(200)).await;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(b"PUT /catalog HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nabc")
        .await
        .unwrap();
    assert!(
        read_until_closed(&mut stalled).await.is_some(),
        "the stalled connection is still open"
    );
}

/// When the monitor stops, a connection that sent half a request is cut off by the drain deadline
/// instead of holding the monitor (and so the exit) open.
#[tokio::test]
async fn a_half_sent_request_is_cut_off_when_the_monitor_stops() {
    let mut config = test_config();
    config.monitor.header_read_timeout = PATIENCE * 6;
    config.monitor.idle_timeout = PATIENCE * 6;
    config.shutdown.drain_deadline = Duration::from_millis(300);
    let (_, sink) = Archive::open();
    let (daemon, state) =
        common::TestDaemon::start_with(config, sink, aggregator::Daemon::monitor_state).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    let served = tokio::spawn(aggregator::ops::monitor::serve(
        listener,
        state,
        stop.clone().cancelled_owned(),
    ));
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    assert_eq!(http_get(addr, "/healthz").await.0, 200);
    assert!(daemon.shutdown().await.is_clean());
    stop.cancel();
    tokio::time::timeout(PATIENCE, served)
        .await
        .expect("the monitor ends by the drain deadline")
        .unwrap();
    assert!(read_until_closed(&mut half).await.is_some());
}
