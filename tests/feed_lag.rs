//! A lossy frame subscription (`Daemon::subscribe_frames`) that does not keep up, over loopback
//! sockets against an in-process daemon: it lags, is told how much it missed, and the pipeline
//! carries on.

mod common;

use std::sync::{Arc, Mutex, OnceLock};

use aggregator::protocol::ingest::CloseReason;
use aggregator::SourceKind;
use common::*;

use SourceKind::LiveUplink;

/// Every warning logged by this test binary, from any thread. A global subscriber, not a thread's
/// default: with the daemon's shards on threads of their own and the other tests running beside
/// this one, a thread's default subscriber missed the warning now and then (tracing caches each
/// log call site's interest across threads).
fn warnings() -> Arc<Mutex<Vec<u8>>> {
    static LOG: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    let log = LOG.get_or_init(|| {
        let (log, subscriber) = log_capture(tracing::Level::WARN);
        tracing::subscriber::set_global_default(subscriber).expect("the only global subscriber");
        log
    });
    Arc::clone(log)
}

/// A frame feed subscriber that does not keep up lags, is told how much it missed, and carries on;
/// the archive gets every frame regardless.
#[tokio::test]
async fn a_slow_frame_feed_subscriber_lags_is_told_what_it_missed_and_continues() {
    let log = warnings();

    const CAPACITY: usize = 4;
    const FRAMES: u64 = 60;
    let config = unbatched_config(64, 64, 1024);
    let (archive, sink) = Archive::open();
    let (daemon, mut slow) = TestDaemon::start_with_feed(config, sink, "slow", CAPACITY).await;

    let mut client = Client::source(daemon.uplink, LiveUplink, 41).await;
    client.send_routine(0..FRAMES).await;
    wait_until("the archive has every frame", PATIENCE, || {
        daemon.stats.snapshot().frames_archived == FRAMES
    })
    .await;

    // Only now does the slow consumer look: it gets the batches still held, after a lag notice.
    let mut seen = Vec::new();
    while seen.last() != Some(&(FRAMES - 1)) {
        let batch = tokio::time::timeout(PATIENCE, slow.next())
            .await
            .expect("the feed yields the batches it still holds")
            .expect("the feed is open while the daemon runs");
        seen.extend(batch.frames().map(|f| f.sequence));
    }
    assert!(
        seen.len() <= CAPACITY,
        "only the last {CAPACITY} batches are held: {seen:?}"
    );
    assert_eq!(
        seen,
        (FRAMES - seen.len() as u64..FRAMES).collect::<Vec<_>>(),
        "the feed continues with the newest batches, in order"
    );
    let s = daemon.stats.snapshot();
    assert!(s.lag_events >= 1, "{s:?}");
    assert!(
        s.lagged_batches >= FRAMES - CAPACITY as u64,
        "the slow feed alone skipped {} batches: {s:?}",
        FRAMES - CAPACITY as u64
    );
    let logged = String::from_utf8(log.lock().unwrap().clone()).unwrap();
    assert!(
        logged.lines().any(|line| line.contains("WARN")
            && line.contains("consumer=\"slow\"")
            && line.contains("missed_frames=")),
        "the lag is logged as a warning naming the consumer and the count: {logged}"
    );

    client.finish_sending().await;
    let closed = client.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::EndOfStream);
    assert_eq!(closed.final_ack, Some(FRAMES - 1));
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(
        tokio::time::timeout(PATIENCE, slow.next())
            .await
            .expect("the feed ends after the drain")
            .map(|b| b.len()),
        None
    );
    assert_eq!(
        archive.sequences(LiveUplink, 41),
        (0..FRAMES).collect::<Vec<_>>()
    );
}
