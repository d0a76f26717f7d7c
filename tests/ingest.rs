//! Ingest over loopback sockets against an in-process daemon: sources connect and register while
//! traffic flows.

mod common;

use aggregator::protocol::ingest::CloseReason;
use aggregator::SourceKind;
use common::*;

use SourceKind::{ArchivedReplay, LiveUplink};

/// Sources connect and register while traffic is already flowing, and their frames
/// are processed.
#[tokio::test]
async fn sources_register_while_traffic_flows() {
    let (archive, sink) = Archive::gated();
    let daemon = TestDaemon::start(test_config(), sink).await;
    let mut first = Client::source(daemon.uplink, LiveUplink, 1).await;
    first.send_routine(0..50).await;
    wait_until("the first source's frames are in flight", PATIENCE, || {
        daemon.stats.snapshot().frames_routed == 50 && archive.is_blocked()
    })
    .await;

    // Two more sources register while the first one's frames are inside the pipeline; one is a
    // replay feed with the same id (sources are told apart by kind and id).
    let mut second = Client::source(daemon.uplink, LiveUplink, 2).await;
    let mut replay = Client::source(daemon.replay, ArchivedReplay, 1).await;
    assert_eq!(
        daemon.source_keys().await,
        vec![(LiveUplink, 1), (LiveUplink, 2), (ArchivedReplay, 1)]
    );
    assert_eq!(daemon.stats.snapshot().active_sources, 3);

    second.send_frames(every_nth_emergency(0..40, 10)).await;
    replay.send_routine(0..30).await;
    first.send_routine(50..100).await;
    archive.open_gate();

    let expected = [
        ((LiveUplink, 1), 100u64),
        ((LiveUplink, 2), 40),
        ((ArchivedReplay, 1), 30),
    ];
    wait_until_async("every source's frames are stored", PATIENCE, || async {
        let sources = daemon.router.sources().await.expect("router alive");
        sources.len() == 3
            && sources.iter().zip(expected).all(|(s, (key, frames))| {
                (s.kind, s.id) == key
                    && s.frames == frames
                    && s.lag == 0
                    && s.last_acked == Some(frames - 1)
            })
    })
    .await;

    for (client, (key, frames)) in [&mut first, &mut second, &mut replay]
        .into_iter()
        .zip(expected)
    {
        client.finish_sending().await;
        let closed = client.read_to_close().await;
        assert_eq!(closed.reason, CloseReason::EndOfStream, "{key:?}");
        assert_eq!(closed.final_ack, Some(frames - 1), "{key:?}");
        let mut stored = archive.sequences(key.0, key.1);
        stored.sort_unstable();
        assert_eq!(stored, (0..frames).collect::<Vec<_>>(), "{key:?}");
    }
    wait_until("every source deregistered", PATIENCE, || {
        daemon.stats.snapshot().active_sources == 0
    })
    .await;
    assert!(daemon.source_keys().await.is_empty());
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 170);
}
