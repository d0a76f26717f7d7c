//! The archive over loopback sockets against an in-process daemon: it receives every processed
//! frame.

mod common;

use aggregator::protocol::ingest::CloseReason;
use aggregator::{Priority, SourceKind};
use common::*;

use SourceKind::{ArchivedReplay, LiveUplink};

/// The archive receives every processed frame: the same frames, in the same order,
/// as a subscriber that reads the fan-out fast enough never to lag.
#[tokio::test]
async fn archive_receives_every_processed_frame() {
    let (archive, sink) = Archive::open();
    let (daemon, mut feed) = TestDaemon::start_with_feed(test_config(), sink, "check", 4096).await;
    let following = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(batch) = feed.next().await {
            seen.extend(
                batch
                    .frames()
                    .map(|f| (f.source_kind, f.source_id, f.sequence, f.priority)),
            );
        }
        seen
    });

    const FRAMES: u64 = 500;
    let keys = [(LiveUplink, 11), (LiveUplink, 12), (ArchivedReplay, 11)];
    let mut clients = Vec::new();
    for (kind, id) in keys {
        clients.push(Client::source(daemon.addr(kind), kind, id).await);
    }
    for chunk in (0..FRAMES).collect::<Vec<_>>().chunks(100) {
        for client in &mut clients {
            client
                .send_frames(every_nth_emergency(
                    chunk[0]..chunk[0] + chunk.len() as u64,
                    7,
                ))
                .await;
        }
    }
    for client in &mut clients {
        client.finish_sending().await;
        let closed = client.read_to_close().await;
        assert_eq!(closed.reason, CloseReason::EndOfStream);
        assert_eq!(closed.final_ack, Some(FRAMES - 1));
    }
    let stats = daemon.stats.clone();
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    let processed = tokio::time::timeout(PATIENCE, following)
        .await
        .expect("the feed ends after the drain")
        .expect("feed task");

    let total = FRAMES * keys.len() as u64;
    let stored: Vec<_> = archive
        .records()
        .iter()
        .map(|r| (r.kind, r.source_id, r.sequence, r.priority))
        .collect();
    assert_eq!(stored.len() as u64, total);
    assert_eq!(
        processed, stored,
        "the archive got what the processor put out, in order"
    );
    assert_eq!(
        (report.processed, report.archived, report.accepted),
        (total, total, total)
    );
    assert!(
        archive.is_closed(),
        "the sink was closed after the last batch"
    );
    for (kind, id) in keys {
        let mut sequences = archive.sequences(kind, id);
        sequences.sort_unstable();
        assert_eq!(sequences, (0..FRAMES).collect::<Vec<_>>(), "{kind:?} {id}");
        for priority in [Priority::Routine, Priority::Emergency] {
            let in_order = archive.sequences_with(kind, id, priority);
            assert!(
                in_order.windows(2).all(|w| w[0] < w[1]),
                "{kind:?} {id} {priority:?}"
            );
        }
    }
    assert!(archive
        .records()
        .iter()
        .all(|r| r.payload[..] == payload_for(r.sequence)));
    let s = stats.snapshot();
    assert_eq!(s.emergency_frames, keys.len() as u64 * (FRAMES / 7));
    assert_eq!(s.bytes_processed, total * 8);
    assert_eq!(s.lag_events, 0);
}
