//! The archive consumer's promises: an acknowledgement means "stored under the sync policy", and
//! a failing archive stops acknowledgements and turns health to degraded without losing anything
//! already acknowledged.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregator::archive::{ArchiveSink, BoxFuture};
use aggregator::config::SyncMode;
use aggregator::{Batch, Health, SourceKind};
use common::{test_config, wait_until, Client, TestDaemon, PATIENCE};

/// Accepts the first `good` frames, then fails every write; counts writes and syncs.
struct FlakySink {
    good: u64,
    written: Arc<AtomicU64>,
    syncs: Arc<AtomicU64>,
}

impl ArchiveSink for FlakySink {
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>> {
        let frames: u64 = batches.iter().map(|b| b.len() as u64).sum();
        let written = self.written.load(Ordering::SeqCst);
        let result = if written + frames <= self.good {
            self.written.fetch_add(frames, Ordering::SeqCst);
            Ok(())
        } else {
            Err(io::Error::other("/archive/segment-1.seg: disk full"))
        };
        Box::pin(async move { result })
    }

    fn sync(&mut self) -> BoxFuture<'static, io::Result<()>> {
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
    assert_eq!(report.lost, 100, "{report:?}");
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
