//! The statistics while frames flow, over loopback sockets against an in-process daemon: readers
//! hammering the snapshot never slow or block the pipeline.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use aggregator::{PipelineStats, SourceKind};
use common::*;

use SourceKind::LiveUplink;

/// The stats are read without locks while frames flow: readers hammering
/// `Stats::snapshot` see every counter move forward only, and the final values are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_are_read_lock_free_while_frames_flow() {
    let (archive, sink) = Archive::open();
    let (daemon, published) =
        TestDaemon::start_with(test_config(), sink, |d| d.subscribe_stats()).await;

    let stop = Arc::new(AtomicBool::new(false));
    // Every reader takes its first snapshot before the first frame, and its last after the last.
    let ready = Arc::new(tokio::sync::Barrier::new(5));
    // Reader tasks on both worker threads, yielding now and then so the daemon is not starved.
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (stats, stop) = (daemon.stats.clone(), Arc::clone(&stop));
            let ready = Arc::clone(&ready);
            tokio::spawn(async move {
                let monotonic = |s: &PipelineStats| {
                    [
                        s.frames_accepted,
                        s.frames_routed,
                        s.frames_processed,
                        s.emergency_frames,
                        s.bytes_processed,
                        s.frames_archived,
                        s.duplicates_dropped,
                        s.connections_accepted,
                        s.connections_refused,
                        s.protocol_errors,
                        s.lag_events,
                        s.lagged_batches,
                        s.archive_errors,
                    ]
                };
                let mut last = stats.snapshot();
                let mut reads = 1u64;
                let mut changes = 0u64;
                ready.wait().await;
                let mut stopped = false;
                while !stopped {
                    stopped = stop.load(Ordering::Relaxed);
                    let now = stats.snapshot();
                    for (before, after) in monotonic(&last).into_iter().zip(monotonic(&now)) {
                        assert!(
                            after >= before,
                            "a counter went backwards: {last:?} -> {now:?}"
                        );
                    }
                    changes += u64::from(now != last);
                    last = now;
                    reads += 1;
                    if reads % 64 == 0 {
                        tokio::task::yield_now().await;
                    }
                }
                (reads, changes, last)
            })
        })
        .collect();

    const FRAMES: u64 = 2_000;
    ready.wait().await;
    let mut clients = Vec::new();
    for id in [21, 22] {
        clients.push(Client::source(daemon.uplink, LiveUplink, id).await);
    }
    for start in (0..FRAMES).step_by(50) {
        for client in &mut clients {
            client
                .send_frames(every_nth_emergency(start..start + 50, 10))
                .await;
        }
    }
    for client in &mut clients {
        client.finish_sending().await;
        assert_eq!(client.read_to_close().await.final_ack, Some(FRAMES - 1));
    }
    wait_until("every source deregistered", PATIENCE, || {
        daemon.stats.snapshot().active_sources == 0
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let final_stats = daemon.stats.snapshot();
    for reader in readers {
        let (reads, changes, last) = reader.await.expect("reader task");
        assert!(reads > 1 && changes > 0, "{reads} reads, {changes} changes");
        assert!(last.frames_archived <= final_stats.frames_archived);
    }

    let total = 2 * FRAMES;
    let expected = PipelineStats {
        frames_accepted: total,
        frames_routed: total,
        frames_processed: total,
        emergency_frames: total / 10,
        bytes_processed: total * 8,
        frames_archived: total,
        duplicates_dropped: 0,
        active_sources: 0,
        connections_accepted: 2,
        connections_refused: 0,
        protocol_errors: 0,
        archive_errors: 0,
        // Nothing subscribed to the frames, so nothing fell behind.
        lag_events: 0,
        lagged_batches: 0,
        // Gauges are not this test's business.
        ..final_stats
    };
    assert_eq!(final_stats, expected);
    assert_eq!(archive.len() as u64, total);
    // The watch channel publishes the same figures.
    wait_until("the published snapshot catches up", PATIENCE, || {
        *published.borrow() == final_stats
    })
    .await;
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
}
