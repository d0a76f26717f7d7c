//! Read credits under contention: with one full-read credit for many saturating sources, every
//! source still gets its turn and every frame is stored and acknowledged.

mod common;

use aggregator::ingest::protocol::CloseReason;
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
