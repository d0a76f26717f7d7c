//! One test per class of bad input. In each, the offending connection gets the documented REFUSED
//! or CLOSE and is closed, the daemon counts it, the frames it had accepted before the bad message
//! are archived and covered by its final acknowledgement, and a well-behaved source connected at
//! the same time is unaffected.

mod common;

use std::time::Duration;

use aggregator::protocol::ingest::{CloseReason, RefuseReason, VERSION};
use aggregator::{Config, PipelineStats, Priority, SourceKind};
use bytes::{BufMut, BytesMut};
use common::*;
use tokio::time::Instant;

use SourceKind::{ArchivedReplay, LiveUplink};

/// The well-behaved source's id; offenders use other ids.
const GOOD: u32 = 100;
/// Frames the well-behaved source sends before and after the offence.
const GOOD_HALF: u64 = 20;
/// Frames an offender sends before its bad message.
const ACCEPTED_FIRST: u64 = 5;

/// A daemon with a well-behaved source that has already sent half its frames.
struct Scene {
    daemon: TestDaemon,
    archive: Archive,
    good: Client,
}

impl Scene {
    async fn start(config: Config) -> Scene {
        let (archive, sink) = Archive::open();
        let daemon = TestDaemon::start(config, sink).await;
        let mut good = Client::source(daemon.uplink, LiveUplink, GOOD).await;
        good.send_routine(0..GOOD_HALF).await;
        Scene {
            daemon,
            archive,
            good,
        }
    }

    /// An offender that registers and has `ACCEPTED_FIRST` frames accepted, then sends `bad` in
    /// the same write, and must be closed with `reason`.
    async fn offend_after_frames(&self, source_id: u32, bad: &[u8], reason: CloseReason) -> Closed {
        let mut offender = Client::source(self.daemon.uplink, LiveUplink, source_id).await;
        let mut bytes = data_bytes((0..ACCEPTED_FIRST).map(|s| (Priority::Routine, s)));
        bytes.put_slice(bad);
        offender.send_raw(&bytes).await;
        self.expect_close(offender, source_id, reason).await
    }

    async fn expect_close(&self, offender: Client, source_id: u32, reason: CloseReason) -> Closed {
        expect_close(&self.archive, offender, source_id, reason).await
    }

    /// Connects to `kind`'s listener, sends `bytes`, and expects REFUSED with `reason`.
    async fn refused(&self, kind: SourceKind, bytes: &[u8], reason: RefuseReason) -> String {
        let mut offender = Client::connect(self.daemon.addr(kind)).await;
        offender.send_raw(bytes).await;
        let (got, detail) = offender.expect_refused().await;
        assert_eq!(got, reason, "{detail}");
        detail
    }

    /// Waits until the counters show the offences, and nothing else went wrong.
    async fn expect_counted(&self, protocol_errors: u64, refused: u64) {
        let stats = &self.daemon.stats;
        wait_until("the offences are counted", PATIENCE, || {
            let s = stats.snapshot();
            s.protocol_errors >= protocol_errors && s.connections_refused >= refused
        })
        .await;
        let s: PipelineStats = stats.snapshot();
        assert_eq!(
            (s.protocol_errors, s.connections_refused),
            (protocol_errors, refused),
            "{s:?}"
        );
    }

    /// The well-behaved source sends the rest and ends its stream: everything acknowledged and
    /// archived, and the drain is clean.
    async fn finish(mut self) {
        self.good.send_routine(GOOD_HALF..2 * GOOD_HALF).await;
        self.good.finish_sending().await;
        let closed = self.good.read_to_close().await;
        assert_eq!(closed.reason, CloseReason::EndOfStream, "{closed:?}");
        assert_eq!(closed.final_ack, Some(2 * GOOD_HALF - 1));
        assert_eq!(
            self.archive.sequences(LiveUplink, GOOD),
            (0..2 * GOOD_HALF).collect::<Vec<_>>()
        );
        let report = self.daemon.shutdown().await;
        assert!(report.is_clean(), "{report:?}");
    }
}

/// Reads an offender's CLOSE and checks that the `ACCEPTED_FIRST` frames it had sent before its
/// offence are acknowledged and archived.
async fn expect_close(
    archive: &Archive,
    mut offender: Client,
    source_id: u32,
    reason: CloseReason,
) -> Closed {
    let closed = offender.read_to_close().await;
    assert_eq!(closed.reason, reason, "{closed:?}");
    assert_eq!(
        closed.final_ack,
        Some(ACCEPTED_FIRST - 1),
        "the frames before the bad message are acknowledged: {closed:?}"
    );
    assert_eq!(
        archive.sequences(LiveUplink, source_id),
        (0..ACCEPTED_FIRST).collect::<Vec<_>>(),
        "the frames before the bad message are archived"
    );
    closed
}

fn length_prefixed(body: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    out.put_u32(body.len() as u32);
    out.put_slice(body);
    out
}

#[tokio::test]
async fn oversize_length_prefix_closes_the_connection() {
    let scene = Scene::start(test_config()).await;
    let max = scene.daemon.config.connection.max_frame_length as u32;
    let mut oversize = BytesMut::new();
    oversize.put_u32(max + 1);
    oversize.put_slice(&[0x02, 0x00, 0x01]);

    let closed = scene
        .offend_after_frames(1, &oversize, CloseReason::FrameTooLarge)
        .await;
    assert!(closed.detail.contains(&(max + 1).to_string()), "{closed:?}");
    // Before the HELLO, it is a refusal, naming the frame limit.
    let detail = scene
        .refused(LiveUplink, &oversize, RefuseReason::HelloExpected)
        .await;
    assert!(
        detail.contains(&format!("maximum frame length {max}")),
        "{detail}"
    );
    scene.expect_counted(2, 0).await;
    scene.finish().await;
}

#[tokio::test]
async fn truncated_frame_at_end_of_stream_closes_the_connection() {
    let scene = Scene::start(test_config()).await;
    let mut offender = Client::source(scene.daemon.uplink, LiveUplink, 2).await;
    let mut bytes = data_bytes((0..ACCEPTED_FIRST).map(|s| (Priority::Routine, s)));
    // A DATA frame announcing 18 bytes, of which only 3 arrive before the end of the stream.
    bytes.put_slice(&[0, 0, 0, 18, 0x02, 0x00, 0x00]);
    offender.send_raw(&bytes).await;
    offender.finish_sending().await;
    scene
        .expect_close(offender, 2, CloseReason::TruncatedFrame)
        .await;
    // A HELLO cut short is refused.
    let hello = hello_bytes(VERSION, LiveUplink, 3);
    let mut truncated = Client::connect(scene.daemon.uplink).await;
    truncated.send_raw(&hello[..6]).await;
    truncated.finish_sending().await;
    assert_eq!(
        truncated.expect_refused().await.0,
        RefuseReason::HelloExpected
    );
    scene.expect_counted(2, 0).await;
    scene.finish().await;
}

#[tokio::test]
async fn unknown_message_type_closes_the_connection() {
    let scene = Scene::start(test_config()).await;
    let unknown = length_prefixed(&[0x7f, 1, 2, 3]);
    let closed = scene
        .offend_after_frames(4, &unknown, CloseReason::MalformedMessage)
        .await;
    assert!(closed.detail.contains("0x7f"), "{closed:?}");
    scene
        .refused(LiveUplink, &unknown, RefuseReason::HelloExpected)
        .await;
    scene.expect_counted(2, 0).await;
    scene.finish().await;
}

#[tokio::test]
async fn empty_message_closes_the_connection() {
    let scene = Scene::start(test_config()).await;
    scene
        .offend_after_frames(5, &length_prefixed(&[]), CloseReason::MalformedMessage)
        .await;
    scene.expect_counted(1, 0).await;
    scene.finish().await;
}

#[tokio::test]
async fn data_before_hello_is_refused() {
    let scene = Scene::start(test_config()).await;
    let data = data_bytes([(Priority::Emergency, 0)]);
    scene
        .refused(LiveUplink, &data, RefuseReason::HelloExpected)
        .await;
    scene.expect_counted(1, 0).await;
    assert_eq!(scene.daemon.stats.snapshot().connections_accepted, 1);
    scene.finish().await;
}

/// A first message longer than a HELLO could be is refused as soon as its length is read: the
/// daemon does not wait for (and hold) its body before the peer has said who it is.
#[tokio::test]
async fn a_long_first_message_is_refused_without_waiting_for_its_body() {
    let scene = Scene::start(test_config()).await;
    let length = 60_000u32;
    assert!(length as usize <= scene.daemon.config.connection.max_frame_length);
    let start = [&length.to_be_bytes()[..], &[0x02]].concat();
    let detail = scene
        .refused(LiveUplink, &start, RefuseReason::HelloExpected)
        .await;
    assert!(
        detail.contains("a first message of 60000 bytes"),
        "{detail}"
    );
    scene.expect_counted(1, 0).await;
    scene.finish().await;
}

#[tokio::test]
async fn a_ping_before_hello_is_refused() {
    let scene = Scene::start(test_config()).await;
    let detail = scene
        .refused(LiveUplink, &ping_bytes(1), RefuseReason::HelloExpected)
        .await;
    assert!(detail.contains("PING before HELLO"), "{detail}");
    scene.expect_counted(1, 0).await;
    scene.finish().await;
}

#[tokio::test]
async fn wrong_protocol_version_is_refused() {
    let scene = Scene::start(test_config()).await;
    let detail = scene
        .refused(
            LiveUplink,
            &hello_bytes(VERSION + 1, LiveUplink, 6),
            RefuseReason::UnsupportedVersion,
        )
        .await;
    assert!(detail.contains(&(VERSION + 1).to_string()), "{detail}");
    scene.expect_counted(0, 1).await;
    assert!(!scene.daemon.source_keys().await.contains(&(LiveUplink, 6)));
    // A later version's HELLO may be longer, or name a kind this version has not: refused for
    // its version all the same, so that its sender can fall back.
    let longer = length_prefixed(&[0x01, VERSION + 1, 7, 0, 0, 0, 6, 0xAA, 0xBB]);
    let detail = (scene.refused(LiveUplink, &longer, RefuseReason::UnsupportedVersion)).await;
    let spoken = format!(
        "HELLO of protocol version {}; this daemon speaks version {VERSION} only",
        VERSION + 1
    );
    assert_eq!(detail, spoken);
    scene.expect_counted(0, 2).await;
    scene.finish().await;
}

#[tokio::test]
async fn invalid_priority_byte_closes_the_connection() {
    let scene = Scene::start(test_config()).await;
    let mut bad = length_prefixed(&[0x02, 9, 0, 0, 0, 0, 0, 0, 0, 5]);
    // Frames behind the bad one are not accepted.
    bad.extend_from_slice(&data_bytes([(Priority::Routine, 6)]));
    let closed = scene
        .offend_after_frames(7, &bad, CloseReason::MalformedMessage)
        .await;
    assert!(closed.detail.contains("priority"), "{closed:?}");
    scene.expect_counted(1, 0).await;
    scene.finish().await;
}

/// The highest sequences: 2^64-2 is the last a frame may carry, and 2^64-1 is refused with a
/// reason. (Accepted once, it was acknowledged as 2^64-2 and stored again when resent: the daemon
/// keeps "every frame up to N, or none yet" in one 64-bit value.)
#[tokio::test]
async fn the_reserved_sequence_closes_the_connection_and_the_last_one_is_acknowledged() {
    let scene = Scene::start(test_config()).await;
    let last = u64::MAX - 1;
    let mut offender = Client::source(scene.daemon.uplink, LiveUplink, 8).await;
    let frames = [last - 1, last, u64::MAX].map(|s| (Priority::Routine, s));
    offender.send_raw(&data_bytes(frames)).await;
    let closed = offender.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::MalformedMessage, "{closed:?}");
    assert!(closed.detail.contains("reserved"), "{closed:?}");
    assert_eq!(closed.final_ack, Some(last));
    assert_eq!(scene.archive.sequences(LiveUplink, 8), [last - 1, last]);
    scene.expect_counted(1, 0).await;
    drop(offender);
    wait_until_async("the offender is deregistered", PATIENCE, || async {
        !scene.daemon.source_keys().await.contains(&(LiveUplink, 8))
    })
    .await;

    let mut again = Client::connect(scene.daemon.uplink).await;
    again.send_raw(&hello_bytes(VERSION, LiveUplink, 8)).await;
    assert_eq!(again.expect_welcome().await, Some(last));
    scene.finish().await;
}

#[tokio::test]
async fn a_hello_that_never_comes_times_out() {
    let mut config = test_config();
    config.connection.handshake_timeout = Duration::from_millis(100);
    let scene = Scene::start(config).await;

    let started = Instant::now();
    let mut silent = Client::connect(scene.daemon.uplink).await;
    let (reason, _) = silent.expect_refused().await;
    assert_eq!(reason, RefuseReason::HandshakeTimeout);
    assert!(started.elapsed() >= Duration::from_millis(100));

    // Part of a HELLO is not a HELLO either.
    let mut partial = Client::connect(scene.daemon.uplink).await;
    partial
        .send_raw(&hello_bytes(VERSION, LiveUplink, 8)[..5])
        .await;
    assert_eq!(
        partial.expect_refused().await.0,
        RefuseReason::HandshakeTimeout
    );
    scene.expect_counted(2, 0).await;
    scene.finish().await;
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    const IDLE: Duration = Duration::from_millis(300);
    let mut config = test_config();
    config.connection.idle_timeout = IDLE;
    let Scene {
        daemon,
        archive,
        mut good,
    } = Scene::start(config).await;

    let started = Instant::now();
    let mut idle = Client::source(daemon.uplink, LiveUplink, 9).await;
    idle.send_routine(0..ACCEPTED_FIRST).await;
    // The well-behaved source keeps talking while the other one falls silent.
    let mut next = GOOD_HALF;
    let mut pace = tokio::time::interval(IDLE / 10);
    let closed = {
        let closing = expect_close(&archive, idle, 9, CloseReason::IdleTimeout);
        tokio::pin!(closing);
        loop {
            tokio::select! {
                closed = &mut closing => break closed,
                _ = pace.tick() => {
                    good.send_routine([next]).await;
                    next += 1;
                }
            }
        }
    };
    assert!(
        started.elapsed() >= IDLE,
        "closed after {:?}",
        started.elapsed()
    );
    assert!(closed.detail.contains("300"), "{closed:?}");
    let s = daemon.stats.snapshot();
    assert_eq!((s.protocol_errors, s.connections_refused), (1, 0), "{s:?}");

    // The well-behaved source is still connected and everything it sent is acknowledged.
    good.finish_sending().await;
    let closed = good.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::EndOfStream);
    assert_eq!(closed.final_ack, Some(next - 1));
    assert_eq!(
        archive.sequences(LiveUplink, GOOD),
        (0..next).collect::<Vec<_>>()
    );
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn a_second_hello_closes_the_connection() {
    let scene = Scene::start(test_config()).await;
    scene
        .offend_after_frames(
            10,
            &hello_bytes(VERSION, LiveUplink, 10),
            CloseReason::UnexpectedMessage,
        )
        .await;
    // One of another version and length is a second HELLO too, not a malformed message.
    let later = length_prefixed(&[0x01, VERSION + 1, 0, 0, 0, 0, 11, 0xAA, 0xBB]);
    let closed = (scene.offend_after_frames(11, &later, CloseReason::UnexpectedMessage)).await;
    assert_eq!(closed.final_ack, Some(ACCEPTED_FIRST - 1), "{closed:?}");
    scene.expect_counted(2, 0).await;
    scene.finish().await;
}

#[tokio::test]
async fn wrong_kind_on_a_listener_is_refused() {
    let scene = Scene::start(test_config()).await;
    scene
        .refused(
            LiveUplink,
            &hello_bytes(VERSION, ArchivedReplay, 11),
            RefuseReason::WrongKind,
        )
        .await;
    scene
        .refused(
            ArchivedReplay,
            &hello_bytes(VERSION, LiveUplink, 11),
            RefuseReason::WrongKind,
        )
        .await;
    scene.expect_counted(0, 2).await;
    assert_eq!(scene.daemon.source_keys().await, vec![(LiveUplink, GOOD)]);
    scene.finish().await;
}

#[tokio::test]
async fn a_duplicate_source_id_is_refused() {
    let scene = Scene::start(test_config()).await;
    let detail = scene
        .refused(
            LiveUplink,
            &hello_bytes(VERSION, LiveUplink, GOOD),
            RefuseReason::DuplicateSource,
        )
        .await;
    assert!(detail.contains(&GOOD.to_string()), "{detail}");
    scene.expect_counted(0, 1).await;
    // The same id of the other kind is another source.
    let mut replay = Client::source(scene.daemon.replay, ArchivedReplay, GOOD).await;
    replay.finish_sending().await;
    assert_eq!(
        replay.read_to_close().await.reason,
        CloseReason::EndOfStream
    );

    // Run the well-behaved source to its end while keeping the daemon up.
    let Scene {
        daemon,
        archive,
        mut good,
    } = scene;
    good.send_routine(GOOD_HALF..2 * GOOD_HALF).await;
    good.finish_sending().await;
    let closed = good.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::EndOfStream);
    assert_eq!(closed.final_ack, Some(2 * GOOD_HALF - 1));
    assert_eq!(
        archive.sequences(LiveUplink, GOOD),
        (0..2 * GOOD_HALF).collect::<Vec<_>>()
    );

    // Once it has gone, the id is free again and resumes where it left off.
    wait_until("the source is deregistered", PATIENCE, || {
        daemon.stats.snapshot().active_sources == 0
    })
    .await;
    let mut again = Client::connect(daemon.uplink).await;
    again
        .send_raw(&hello_bytes(VERSION, LiveUplink, GOOD))
        .await;
    assert_eq!(again.expect_welcome().await, Some(2 * GOOD_HALF - 1));
    again.finish_sending().await;
    again.read_to_close().await;
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
}

#[tokio::test]
async fn connections_beyond_the_listener_limit_are_refused() {
    let mut config = test_config();
    config.uplink.max_connections = 1;
    let scene = Scene::start(config).await;

    // Refused at once, before any HELLO is read.
    let mut extra = Client::connect(scene.daemon.uplink).await;
    let (reason, detail) = extra.expect_refused().await;
    assert_eq!(reason, RefuseReason::TooManyConnections);
    assert!(detail.contains('1'), "{detail}");
    scene.expect_counted(0, 1).await;
    // The other listener has its own limit.
    let mut replay = Client::source(scene.daemon.replay, ArchivedReplay, 12).await;
    replay.finish_sending().await;
    replay.read_to_close().await;
    scene.finish().await;
}

/// One address holds at most `uplink.max_connections_per_address`; one more from it is refused
/// with a reason naming the limit, while another address still connects.
#[tokio::test]
async fn connections_beyond_the_per_address_limit_are_refused() {
    let mut config = test_config();
    config.uplink.max_connections = 8;
    config.uplink.max_connections_per_address = Some(1);
    let scene = Scene::start(config).await;

    let mut extra = Client::connect(scene.daemon.uplink).await;
    let (reason, detail) = extra.expect_refused().await;
    assert_eq!(reason, RefuseReason::TooManyConnections);
    assert!(
        detail.contains("127.0.0.1 holds this listener's limit of 1 connections per address"),
        "{detail}"
    );
    scene.expect_counted(0, 1).await;
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let stream = socket.connect(scene.daemon.uplink).await.unwrap();
    let mut other = Client::from_stream(stream);
    other.send_raw(&hello_bytes(VERSION, LiveUplink, 13)).await;
    other.expect_welcome().await;
    other.finish_sending().await;
    other.read_to_close().await;
    scene.finish().await;
}
