//! Ingest over loopback sockets against an in-process daemon: sources connect and register while
//! traffic flows, and hear of what is stored while their reads wait for room in the pipeline.

mod common;

use aggregator::protocol::ingest::{CloseReason, ServerMessage};
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

/// A source whose last read waits for admission (the pipeline full behind a slow archive) still
/// hears of the frames the archive stores meanwhile, at its ACK timer: not only once all it read
/// is admitted, which a slow archive may put off for as long as it is slow.
#[tokio::test]
async fn a_source_whose_read_waits_for_admission_hears_of_stored_frames() {
    const PROCESSOR_CAPACITY: u64 = 2;
    const ARCHIVE_CAPACITY: u64 = 2;
    let config = unbatched_config(PROCESSOR_CAPACITY as usize, 8, ARCHIVE_CAPACITY as usize);
    let (archive, sink) = Archive::gated();
    let daemon = TestDaemon::start(config, sink).await;
    let mut client = Client::source(daemon.uplink, LiveUplink, 5).await;

    // Frame 0 alone: the archive's first write holds it, and nothing else, at the gate.
    client.send_routine([0]).await;
    wait_until("frame 0 waits at the archive's gate", PATIENCE, || {
        daemon.stats.snapshot().frames_routed == 1 && archive.is_blocked()
    })
    .await;

    // One read of more than the pipeline has room for: what does not fit waits for admission.
    // Full means the archive's queue (frame 0 included) and the routine lane (the frame the
    // processor holds included).
    const LAST: u64 = 7;
    let full = ARCHIVE_CAPACITY + PROCESSOR_CAPACITY;
    client.send_routine(1..=LAST).await;
    wait_until(
        "the read's last frames wait for admission",
        PATIENCE,
        || {
            let s = daemon.stats.snapshot();
            s.frames_accepted == LAST + 1 && s.frames_routed == full
        },
    )
    .await;

    // The archive stores frame 0 and blocks in its next write: the pipeline fills again, and the
    // read's last frames still wait, for as long as the gate stays closed.
    archive.open_for_one_write();
    // Within half the patience, so that this, and not the read's own timeout, says what is late.
    let ack = async {
        loop {
            match client.recv_message().await {
                ServerMessage::Ack { sequence } => return sequence,
                ServerMessage::Catalog { .. } => {}
                other => panic!("expected an ACK, got {other:?}"),
            }
        }
    };
    let acked = tokio::time::timeout(PATIENCE / 2, ack)
        .await
        .expect("an ACK of the stored frame 0 while the read's last frames wait for admission");
    assert_eq!(acked, 0, "only frame 0 is stored");
    wait_until(
        "the archive's next write waits at the gate",
        PATIENCE,
        || daemon.stats.snapshot().frames_routed == 1 + full && archive.is_blocked(),
    )
    .await;
    // Staged frames only ever leave by admission: still staged now, they were when the ACK went.
    let s = daemon.stats.snapshot();
    assert_eq!(archive.sequences(LiveUplink, 5), [0]);
    assert_eq!(s.frames_archived, 1);
    assert_eq!(
        s.frames_accepted - s.frames_routed,
        LAST - full,
        "the ACK came while the read's last frames wait for admission: {s:?}"
    );

    archive.open_gate();
    client.finish_sending().await;
    let closed = client.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::EndOfStream);
    assert_eq!(closed.final_ack, Some(LAST));
    assert_eq!(
        archive.sequences(LiveUplink, 5),
        (0..=LAST).collect::<Vec<_>>()
    );
    daemon.shutdown_clean().await;
}
