//! The archive consumer's promises: an acknowledgement means "stored under the sync policy"; a
//! failing archive stops acknowledgements and turns health to degraded without losing anything
//! already acknowledged; a full disk holds frames until space returns and stores each once; and a
//! drain during an outage, or after a failed `fsync`, ends at once, naming what it could not store.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregator::archive::format::ArchiveError;
use aggregator::archive::write::{ArchiveSink, BoxFuture};
use aggregator::config::SyncMode;
use aggregator::protocol::ingest::{CloseReason, VERSION};
use aggregator::{Batch, Health, Priority, SourceKind};
use common::{hello_bytes, test_config, wait_until, Archive, Client, TestDaemon, PATIENCE};

/// Accepts the first `good` frames, then fails every write; counts writes and syncs.
struct FlakySink {
    good: u64,
    written: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
}

impl ArchiveSink for FlakySink {
    fn write<'a>(
        &'a mut self,
        batches: &'a [Arc<Batch>],
    ) -> BoxFuture<'a, Result<(), ArchiveError>> {
        let frames: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let written = self.written.load(Ordering::SeqCst);
        let result = if written + frames <= self.good {
            self.written.fetch_add(frames, Ordering::SeqCst);
            Ok(())
        } else {
            Err(ArchiveError::Io {
                path: "/archive/segment-1.seg".into(),
                operation: "append to segment",
                source: io::Error::from_raw_os_error(libc::ENOSPC),
            })
        };
        Box::pin(async move { result })
    }

    fn sync(&mut self) -> BoxFuture<'static, Result<(), ArchiveError>> {
        self.syncs.fetch_add(1, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}

fn flaky(good: u64) -> (Box<dyn ArchiveSink>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let written = Arc::new(AtomicU64::new(0));
    let syncs = Arc::new(AtomicU64::new(0));
    let sink = FlakySink {
        good,
        written: Arc::clone(&written),
        syncs: Arc::clone(&syncs),
    };
    (Box::new(sink), written, syncs)
}

#[tokio::test]
async fn a_failing_archive_stops_acks_and_degrades_health_but_keeps_what_was_acked() {
    let mut config = test_config();
    config.pipeline.max_batch_frames = 10;
    // The unstored frames can never drain: do not wait long for them.
    config.shutdown.drain_deadline = Duration::from_millis(300);
    let (sink, written, _) = flaky(100);
    let (mut daemon, health) = TestDaemon::start_with(config, sink, |d| d.health()).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 3).await;
    client.send_routine(0..100).await;
    wait_until("the first 100 frames archived", PATIENCE, || {
        daemon.stats.snapshot().frames_archived == 100
    })
    .await;
    assert_eq!(health.health(), Health::Ready);

    client.send_routine(100..200).await;
    wait_until("the archive reports its failure", PATIENCE, || {
        daemon.stats.snapshot().archive_errors > 0
    })
    .await;
    assert_eq!(health.health(), Health::Degraded);
    assert_eq!(written.load(Ordering::SeqCst), 100);

    daemon.begin_shutdown();
    let closed = client.read_to_close().await;
    // Acknowledgements never claim a frame the archive did not take.
    assert!(
        closed.acks.iter().all(|&ack| ack <= 99),
        "{:?}",
        closed.acks
    );
    assert_eq!(closed.final_ack, Some(99));
    let report = daemon.join().await;
    assert_eq!(report.archived, 100);
    assert_eq!(report.unacknowledged, 100, "{report:?}");
    assert!(!report.is_clean());
}

#[tokio::test]
async fn with_interval_sync_nothing_counts_as_stored_before_its_sync() {
    let mut config = test_config();
    config.archive.sync = SyncMode::Interval;
    config.archive.sync_interval = Duration::from_secs(3600);
    let (sink, written, syncs) = flaky(u64::MAX);
    let mut daemon = TestDaemon::start(config, sink).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 4).await;
    client.send_routine(0..50).await;
    wait_until("the archive has written all 50", PATIENCE, || {
        written.load(Ordering::SeqCst) == 50
    })
    .await;
    // Written, not synced: not archived, not acknowledgeable.
    assert_eq!(daemon.stats.snapshot().frames_archived, 0);
    let syncs_before = syncs.load(Ordering::SeqCst);

    // The drain's final sync covers them: archived, and the final ACK says so.
    daemon.begin_shutdown();
    let closed = client.read_to_close().await;
    assert_eq!(closed.final_ack, Some(49));
    let report = daemon.join().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 50);
    assert!(syncs.load(Ordering::SeqCst) > syncs_before);
}

/// Live uplink `id`'s frames `sequences`, every fifth an emergency (which overtakes routine frames
/// in the archive, so acknowledgements cannot be a count of frames stored).
fn mixed(sequences: std::ops::Range<u64>) -> impl Iterator<Item = (Priority, u64)> {
    sequences.map(|s| match s % 5 {
        0 => (Priority::Emergency, s),
        _ => (Priority::Routine, s),
    })
}

/// A config whose archive moves small batches and gives up on a closing connection soon.
fn outage_config() -> aggregator::Config {
    let mut config = test_config();
    config.pipeline.max_batch_frames = 8;
    config
}

/// A full disk in the middle of the stream: nothing is acknowledged past a frame not stored, the
/// daemon is degraded until every frame held is stored, and once space returns every frame is
/// stored exactly once and acknowledged, without a restart or a reconnection.
#[tokio::test]
async fn a_full_disk_holds_frames_until_space_returns_and_stores_each_once() {
    let (archive, sink) = Archive::open();
    let (daemon, health) = TestDaemon::start_with(outage_config(), sink, |d| d.health()).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 5).await;
    client.send_frames(mixed(0..100)).await;
    wait_until("frames 0..100 stored", PATIENCE, || {
        archive.has_all_up_to(SourceKind::LiveUplink, 5, 99)
    })
    .await;

    archive.fill_disk();
    client.send_frames(mixed(100..300)).await;
    wait_until("a write fails and is tried again", PATIENCE, || {
        archive.failed_writes() >= 2
    })
    .await;
    assert_eq!(health.health(), Health::Degraded);
    assert_eq!(daemon.stats.snapshot().archive_failing, 1);

    archive.free_disk();
    client.finish_sending().await;
    let closed = client
        .read_to_close_with(|ack| {
            assert!(
                archive.has_all_up_to(SourceKind::LiveUplink, 5, ack),
                "ACK {ack} passed a frame not stored"
            );
        })
        .await;
    assert_eq!(closed.reason, CloseReason::EndOfStream, "{}", closed.detail);
    assert_eq!(closed.final_ack, Some(299));
    assert_eq!(archive.duplicates(), []);
    assert_eq!(archive.len(), 300);
    assert_eq!(health.health(), Health::Ready, "every frame held is stored");
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
}

/// SIGTERM while the disk is full: the frames the archive holds cannot be stored, so the drain
/// does not wait for them until its deadline. It ends at once, the connection closes with its
/// final acknowledgement below them and says why, and the report names them unacknowledged.
#[tokio::test]
async fn a_drain_during_an_outage_gives_up_at_once_on_what_cannot_be_stored() {
    let mut config = outage_config();
    // Far longer than the test's patience: waiting for it fails the test.
    config.shutdown.drain_deadline = Duration::from_secs(600);
    let (archive, sink) = Archive::open();
    let mut daemon = TestDaemon::start(config, sink).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 6).await;
    client.send_frames(mixed(0..100)).await;
    wait_until("frames 0..100 stored", PATIENCE, || {
        archive.has_all_up_to(SourceKind::LiveUplink, 6, 99)
    })
    .await;
    archive.fill_disk();
    client.send_frames(mixed(100..200)).await;
    wait_until("a write fails", PATIENCE, || archive.failed_writes() > 0).await;

    daemon.begin_shutdown();
    let closed = client.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::StorageUnavailable);
    assert_eq!(closed.final_ack, Some(99));
    let report = daemon.join().await;
    assert!(report.completed, "{report:?}");
    assert!(!report.is_clean());
    assert_eq!(report.accepted, 200);
    assert_eq!(report.unacknowledged, 100, "{report:?}");
    assert_eq!(daemon.stats.snapshot().frames_abandoned, 100);
    assert_eq!(archive.len(), 100);
}

/// A source that closes its side while the disk is full is told, once the connection has waited
/// its drain deadline, that its last frames were not stored: not `EndOfStream`, which would say
/// everything it sent was handled.
#[tokio::test]
async fn a_connection_that_gives_up_waiting_for_storage_says_so() {
    let mut config = outage_config();
    config.shutdown.drain_deadline = Duration::from_millis(100);
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 7).await;
    client.send_routine(0..10).await;
    wait_until("frames 0..10 stored", PATIENCE, || archive.len() == 10).await;
    archive.fill_disk();
    client.send_routine(10..20).await;
    client.finish_sending().await;
    let closed = client.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::StorageUnavailable);
    assert_eq!(closed.final_ack, Some(9));
    assert!(closed.detail.contains("not stored"), "{}", closed.detail);
}

/// A source whose connection ended while the disk was full reconnects and resends everything
/// above its acknowledgement: the frames its last connection left with the archive are
/// duplicates, acknowledged once the originals are stored, so each is stored once.
#[tokio::test]
async fn a_source_reconnecting_during_an_outage_does_not_store_its_frames_twice() {
    let mut config = outage_config();
    config.shutdown.drain_deadline = Duration::from_millis(100);
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(config, sink).await;
    let mut first = Client::source(daemon.uplink, SourceKind::LiveUplink, 8).await;
    first.send_frames(mixed(0..100)).await;
    wait_until("frames 0..100 stored", PATIENCE, || archive.len() == 100).await;
    archive.fill_disk();
    first.send_frames(mixed(100..200)).await;
    wait_until("a write fails", PATIENCE, || archive.failed_writes() > 0).await;
    first.finish_sending().await;
    let closed = first.read_to_close().await;
    assert_eq!(closed.final_ack, Some(99));

    let mut second = Client::connect(daemon.uplink).await;
    second
        .send_raw(&hello_bytes(VERSION, SourceKind::LiveUplink, 8))
        .await;
    assert_eq!(second.expect_welcome().await, Some(99));
    second.send_frames(mixed(100..250)).await;
    archive.free_disk();
    second.finish_sending().await;
    let closed = second
        .read_to_close_with(|ack| {
            assert!(archive.has_all_up_to(SourceKind::LiveUplink, 8, ack));
        })
        .await;
    assert_eq!(closed.reason, CloseReason::EndOfStream, "{}", closed.detail);
    assert_eq!(closed.final_ack, Some(249));
    assert_eq!(archive.duplicates(), []);
    assert_eq!(archive.len(), 250);
    assert_eq!(daemon.stats.snapshot().duplicates_dropped, 100);
}

/// Takes every write; a sync fails (EIO) once `fails_from` frames are written, as every sync
/// after it would.
struct FailingSync {
    fails_from: u64,
    written: Arc<AtomicU64>,
}

impl ArchiveSink for FailingSync {
    fn write<'a>(
        &'a mut self,
        batches: &'a [Arc<Batch>],
    ) -> BoxFuture<'a, Result<(), ArchiveError>> {
        let frames: u64 = batches.iter().map(|b| b.len() as u64).sum();
        self.written.fetch_add(frames, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }

    fn sync(&mut self) -> BoxFuture<'static, Result<(), ArchiveError>> {
        let result = match self.written.load(Ordering::SeqCst) >= self.fails_from {
            true => Err(ArchiveError::Io {
                path: "segment".into(),
                operation: "sync",
                source: io::Error::from_raw_os_error(libc::EIO),
            }),
            false => Ok(()),
        };
        Box::pin(async move { result })
    }
}

/// SIGTERM after a failed `fsync`, with nothing written since (so nothing held): the archive
/// stores nothing more, and the drain does not wait for its deadline. The connection closes at
/// once with its final acknowledgement below what the failed sync covered.
#[tokio::test]
async fn a_drain_after_a_failed_fsync_ends_at_once() {
    let mut config = test_config();
    config.archive.sync = SyncMode::Batch;
    // Far longer than the test's patience: waiting for it fails the test.
    config.shutdown.drain_deadline = Duration::from_secs(600);
    let written = Arc::new(AtomicU64::new(0));
    let sink = FailingSync {
        fails_from: 200,
        written: Arc::clone(&written),
    };
    let mut daemon = TestDaemon::start(config, Box::new(sink)).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 8).await;
    client.send_routine(0..200).await;
    wait_until("the sync of the last frames fails", PATIENCE, || {
        daemon.stats.snapshot().archive_errors > 0
    })
    .await;
    assert_eq!(written.load(Ordering::SeqCst), 200);

    daemon.begin_shutdown();
    let closed = tokio::time::timeout(PATIENCE, client.read_to_close()).await;
    let closed = closed.expect("the connection closes before the drain's deadline");
    assert_eq!(closed.reason, CloseReason::StorageUnavailable);
    let acked = closed.final_ack.map_or(0, |ack| ack + 1);
    assert!(acked < 200, "{closed:?}");
    let report = daemon.join().await;
    assert!(!report.is_clean());
    assert_eq!(report.unacknowledged, 200 - acked, "{report:?}");
}
