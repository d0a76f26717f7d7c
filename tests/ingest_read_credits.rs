//! Read credits under contention: with one full-read credit for many saturating sources, every
//! source still gets its turn and every frame is stored and acknowledged.

mod common;

use aggregator::protocol::ingest::{CloseReason, VERSION};
use aggregator::{Priority, SourceKind};
use common::*;

/// Sends `count` frames from `first` on, one in a hundred an emergency.
fn frames(first: u64, count: u64) -> impl Iterator<Item = (Priority, u64)> {
    (first..first + count).map(|s| {
        let priority = if s % 100 == 0 {
            Priority::Emergency
        } else {
            Priority::Routine
        };
        (priority, s)
    })
}

/// A source that never runs dry holds the only credit only for one read at a time: the others,
/// which start once it is streaming, are served in turn and finish while it still streams.
#[tokio::test]
async fn one_read_credit_serves_every_saturating_source_in_turn() {
    let mut config = test_config();
    config.connection.read_buffer = 64 * 1024;
    config.connection.read_budget = 64 * 1024;
    assert_eq!(config.read_credits(), 1);
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let addr = daemon.addr(SourceKind::LiveUplink);

    const HOG: u32 = 100;
    const CHUNK: u64 = 2_000;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let hog = tokio::spawn(async move {
        let mut client = Client::source(addr, SourceKind::LiveUplink, HOG).await;
        let mut stopped = std::pin::pin!(stopped);
        let mut next = 0;
        loop {
            client.send_frames(frames(next, CHUNK)).await;
            next += CHUNK;
            if futures_util::poll!(stopped.as_mut()).is_ready() {
                break;
            }
        }
        client.finish_sending().await;
        (client.read_to_close().await, next)
    });
    let stats = daemon.stats.clone();
    wait_until("the hog's frames are being stored", PATIENCE, || {
        stats.snapshot().frames_archived > 4 * CHUNK
    })
    .await;

    const SOURCES: u32 = 5;
    // About half a megabyte per source: many full reads each, far more than a small read.
    const FRAMES: u64 = 20_000;
    let mut tasks = Vec::new();
    for id in 1..=SOURCES {
        tasks.push(tokio::spawn(async move {
            let mut client = Client::source(addr, SourceKind::LiveUplink, id).await;
            client.send_frames(frames(0, FRAMES)).await;
            client.finish_sending().await;
            client.read_to_close().await
        }));
    }
    for task in tasks {
        let closed = task.await.expect("client task");
        assert_eq!(closed.reason, CloseReason::EndOfStream);
        assert_eq!(closed.final_ack, Some(FRAMES - 1));
    }
    assert!(
        !hog.is_finished(),
        "the others finished while the hog streamed"
    );
    stop.send(()).expect("the hog is still streaming");
    let (closed, sent) = hog.await.expect("hog task");
    assert_eq!(closed.final_ack, Some(sent - 1));

    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    let total = FRAMES * u64::from(SOURCES) + sent;
    assert_eq!((report.accepted, report.archived), (total, total));
    for id in 1..=SOURCES {
        let mut sequences = archive.sequences(SourceKind::LiveUplink, id);
        sequences.sort_unstable();
        assert_eq!(sequences, (0..FRAMES).collect::<Vec<_>>(), "source {id}");
    }
}

/// A source that stops reading what the daemon sends holds no read credit while the daemon's write
/// to it waits: with one credit, a saturating source beside it is still served. Each PING is read
/// on its own and answered with a PONG the stuck source never reads, until the daemon's send buffer
/// (made small from here, in-process) is full and the next PONG waits.
#[cfg(target_os = "linux")]
#[tokio::test]
async fn a_source_that_does_not_read_holds_no_credit_while_a_write_to_it_waits() {
    use std::os::fd::RawFd;
    let mut config = test_config();
    config.runtime.shards = 1;
    config.connection.read_buffer = 64 * 1024;
    config.connection.read_budget = 64 * 1024;
    // A write waits this long for the peer: far past the test's patience.
    config.connection.idle_timeout = std::time::Duration::from_secs(600);
    let (_archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let addr = daemon.addr(SourceKind::LiveUplink);

    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(2048).unwrap();
    let mut stuck = socket.connect(addr).await.unwrap();
    stuck.set_nodelay(true).unwrap();
    let stuck_addr = stuck.local_addr().unwrap();
    send_all(&mut stuck, &hello_bytes(VERSION, SourceKind::LiveUplink, 1)).await;

    // The daemon's side of the stuck connection: the socket of this process whose peer it is.
    let peer_of = |fd: RawFd| {
        use std::os::fd::FromRawFd;
        // SAFETY: the descriptor stays open (never dropped: ManuallyDrop); only its peer is read.
        let stream = std::mem::ManuallyDrop::new(unsafe { std::net::TcpStream::from_raw_fd(fd) });
        stream.peer_addr().ok()
    };
    let unread = |fd: RawFd| {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into `n`.
        assert_eq!(unsafe { libc::ioctl(fd, libc::FIONREAD, &mut n) }, 0);
        n
    };
    let mut daemon_side = None;
    wait_until("the daemon accepted the stuck source", PATIENCE, || {
        daemon_side = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
            .find(|&fd| peer_of(fd) == Some(stuck_addr));
        daemon_side.is_some()
    })
    .await;
    let daemon_side = daemon_side.unwrap();
    let size: libc::c_int = 4096;
    // SAFETY: setsockopt reads one int from `size`.
    let set = unsafe {
        libc::setsockopt(
            daemon_side,
            libc::SOL_SOCKET,
            libc::SO_SNDBUF,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0);

    // PINGs one read at a time, until one is no longer read: the daemon waits in a PONG's write.
    let mut token = 0;
    loop {
        token += 1;
        assert!(token < 100_000, "the daemon's writes never waited");
        send_all(&mut stuck, &ping_bytes(token)).await;
        let read = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            while unread(daemon_side) > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
            }
        })
        .await;
        if read.is_err() {
            break;
        }
    }
    assert!(unread(daemon_side) > 0, "the daemon stopped reading");

    const FRAMES: u64 = 20_000;
    let served = tokio::time::timeout(PATIENCE, async move {
        let mut client = Client::source(addr, SourceKind::LiveUplink, 2).await;
        client.send_routine(0..FRAMES).await;
        client.finish_sending().await;
        client.read_to_close().await
    })
    .await
    .expect("the other source is served while the stuck one's PONG waits");
    assert_eq!(served.reason, CloseReason::EndOfStream);
    assert_eq!(served.final_ack, Some(FRAMES - 1));
    drop(stuck);
}

async fn send_all(stream: &mut tokio::net::TcpStream, bytes: &[u8]) {
    use tokio::io::AsyncWriteExt;
    stream.write_all(bytes).await.expect("write to the daemon");
}
