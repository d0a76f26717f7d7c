//! The monitor's port holds against its clients: connection limits (in all and per address) that
//! always leave room for a health probe, a request head that must arrive in time, an idle
//! timeout, and no connection that outlives the stop's cut-off.

mod common;

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use aggregator::SourceKind;
use common::{http_get, test_config, wait_until, wait_until_async, Archive, Client, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// The probe's address; the flooding clients come from others.
const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

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

/// A request under way that stalls, holding its connection busy: a PUT whose body stops short,
/// sent once the server reads it (its `100 Continue`), so that the request is known to be under
/// way.
async fn busy(addr: SocketAddr) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = "PUT /catalog HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\
                Expect: 100-continue\r\n\r\n";
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0; 1];
        let read = tokio::time::timeout(PATIENCE, stream.read(&mut byte)).await;
        assert_eq!(read.expect("a 100 Continue").unwrap(), 1, "closed");
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100"), "{interim:?}");
    stream.write_all(b"abc").await.unwrap();
    stream
}

/// A connection to `addr` from `local`, a loopback address.
async fn connect_from(local: IpAddr, addr: SocketAddr) -> io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(local, 0))?;
    socket.connect(addr).await
}

/// `GET /healthz` from `local` (a loopback address), on a connection of its own: the status.
async fn healthz_from(local: IpAddr, addr: SocketAddr) -> io::Result<u16> {
    // From 127.0.0.1 as a probe connects, the kernel choosing the port at connect, where it
    // avoids the server's TIME_WAIT entries of earlier probes (bind would not).
    let mut stream = match local == LOCAL {
        true => TcpStream::connect(addr).await?,
        false => connect_from(local, addr).await?,
    };
    let request = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok());
    status.ok_or_else(|| io::Error::other(format!("no status line in {response:?}")))
}

/// When every slot is taken, a newcomer takes the place of the oldest idle connection (one
/// waiting for a request), never of one in the middle of a request; with none idle it is answered
/// 503 and closed.
#[tokio::test]
async fn a_newcomer_takes_the_place_of_an_idle_connection_never_of_a_busy_one() {
    let mut config = test_config();
    config.monitor.max_connections = 2;
    config.monitor.max_connections_per_address = Some(2);
    config.monitor.idle_timeout = PATIENCE * 6;
    let (_, sink) = Archive::open();
    let (_daemon, addr, _stop) = common::start_monitored(config, sink).await;
    let mut idle = TcpStream::connect(addr).await.unwrap();
    let _busy = busy(addr).await;
    wait_until_async("the newcomer is served", PATIENCE, || async {
        healthz_from(LOCAL, addr)
            .await
            .is_ok_and(|status| status == 200)
    })
    .await;
    let closed = read_until_closed(&mut idle).await;
    assert_eq!(closed.as_deref(), Some(""), "the idle connection is closed");

    let _also_busy = busy(addr).await;
    let other = IpAddr::from([127, 0, 0, 2]);
    let mut refused = connect_from(other, addr).await.unwrap();
    let refused = read_until_closed(&mut refused)
        .await
        .expect("the connection past the limit is closed");
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    assert!(
        refused.contains("all busy (monitor.max_connections = 2)"),
        "{refused:?}"
    );
}

/// One address holds at most `monitor.max_connections_per_address`; one more from it is answered
/// 503, while another address is served.
#[tokio::test]
async fn one_address_holds_at_most_its_share_of_the_slots() {
    let mut config = test_config();
    config.monitor.max_connections = 4;
    config.monitor.max_connections_per_address = Some(1);
    config.monitor.idle_timeout = PATIENCE * 6;
    let (_, sink) = Archive::open();
    let (_daemon, addr, _stop) = common::start_monitored(config, sink).await;
    let _held = busy(addr).await;
    let mut refused = TcpStream::connect(addr).await.unwrap();
    let refused = read_until_closed(&mut refused).await.unwrap_or_default();
    assert!(refused.starts_with("HTTP/1.1 503"), "{refused:?}");
    assert!(
        refused.contains("from 127.0.0.1 (monitor.max_connections_per_address = 1)"),
        "{refused:?}"
    );
    let other = IpAddr::from([127, 0, 0, 2]);
    assert_eq!(healthz_from(other, addr).await.unwrap(), 200);
}

/// What a flooding client does with each of its connections.
#[derive(Debug, Clone, Copy)]
enum Flood {
    /// Connects and says nothing.
    Idle,
    /// Sends a request's head a header line at a time, never finishing it.
    SlowHeader,
}

/// Holds one flooding connection from `local` to `addr` until `stop`: connects, behaves as
/// `flood` says until the server closes it, and after `pause` (a persistent client, paced: each
/// connection stays in the kernel's connection tracking for minutes) connects again. Counts its
/// connections and the closes it saw.
async fn flood(
    (local, addr): (IpAddr, SocketAddr),
    flood: Flood,
    pause: Duration,
    stop: CancellationToken,
    counts: Arc<(AtomicU64, AtomicU64)>,
) {
    while !stop.is_cancelled() {
        let Ok(mut stream) = connect_from(local, addr).await else {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(pause) => continue,
            }
        };
        counts.0.fetch_add(1, Relaxed);
        let (mut read, mut write) = stream.split();
        let behave = async {
            if let Flood::SlowHeader = flood {
                let mut lines = tokio::time::interval(Duration::from_millis(200));
                write.write_all(b"GET /healthz HTTP/1.1\r\n").await?;
                loop {
                    lines.tick().await;
                    write.write_all(b"X-Slow: 1\r\n").await?;
                }
            }
            std::future::pending::<io::Result<()>>().await
        };
        let mut byte = [0; 1];
        tokio::select! {
            () = stop.cancelled() => return,
            _ = behave => {}
            _ = read.read(&mut byte) => {}
        }
        counts.1.fetch_add(1, Relaxed);
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// 3,000 idle connections and 400 sending their request heads slowly, from other loopback
/// addresses, more than the monitor's slots: `/healthz` from 127.0.0.1 answers 200 within a
/// second throughout, and a source's frames are all stored and acknowledged meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_health_probe_answers_through_a_flood_of_idle_and_slow_clients() {
    // The flood's 3,400 client sockets live in this process beside the daemon's.
    aggregator::net::descriptors::raise_limit().unwrap();
    let config = test_config();
    let (archive, sink) = Archive::open();
    let (daemon, addr, _stop) = common::start_monitored(config, sink).await;
    let stop = CancellationToken::new();
    let counts = Arc::new((AtomicU64::new(0), AtomicU64::new(0)));
    let mut flooding = JoinSet::new();
    for i in 0..3400u32 {
        // 3,000 idle ones from 127.0.0.2 to 127.0.0.31, 400 slow ones from 127.0.1.1 to
        // 127.0.1.40: 100 or 10 an address, none past its share (128) but together far more
        // than the monitor's 256 slots.
        let (local, kind) = match i < 3000 {
            true => ([127, 0, 0, 2 + (i % 30) as u8], Flood::Idle),
            false => ([127, 0, 1, 1 + (i % 40) as u8], Flood::SlowHeader),
        };
        // Reconnections spread over a second and more, not in waves.
        let pause = Duration::from_millis(1000 + u64::from(i % 1000));
        let to = (local.into(), addr);
        let task = flood(to, kind, pause, stop.clone(), Arc::clone(&counts));
        flooding.spawn(task);
    }
    wait_until(
        "every flooding client has connected once",
        PATIENCE * 3,
        || counts.0.load(Relaxed) >= 3400,
    )
    .await;
    // A client connects once the kernel has its handshake, before the monitor accepts it, and
    // sees a close only when its task next runs: the evictions show a little after the connects.
    wait_until(
        "the monitor closes some of the flood, being full",
        PATIENCE,
        || counts.1.load(Relaxed) > 0,
    )
    .await;

    let source = tokio::spawn(async move {
        let mut client = Client::source(
            daemon.addr(SourceKind::LiveUplink),
            SourceKind::LiveUplink,
            7,
        )
        .await;
        for batch in 0..20u64 {
            client.send_routine(batch * 500..batch * 500 + 500).await;
        }
        client.finish_sending().await;
        let closed = client.read_to_close().await;
        (daemon, closed)
    });
    let mut probe = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..40 {
        probe.tick().await;
        let answered = tokio::time::timeout(Duration::from_secs(1), healthz_from(LOCAL, addr));
        match answered.await {
            Ok(Ok(status)) => assert_eq!(status, 200, "/healthz during the flood"),
            Ok(Err(err)) => panic!("/healthz during the flood failed: {err}"),
            Err(_) => panic!("/healthz took more than a second during the flood"),
        }
    }
    let (daemon, closed) = source.await.unwrap();
    assert_eq!(closed.final_ack, Some(9_999), "{closed:?}");
    assert!(archive.has_all_up_to(SourceKind::LiveUplink, 7, 9_999));
    stop.cancel();
    while flooding.join_next().await.is_some() {}
    assert!(daemon.shutdown().await.is_clean());
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
