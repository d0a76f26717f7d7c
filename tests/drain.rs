//! The drain over loopback sockets against an in-process daemon: a shutdown processes and archives
//! everything accepted before it, and tells each source.

mod common;

use aggregator::protocol::ingest::{CloseReason, RefuseReason, ServerMessage, VERSION};
use aggregator::{Priority, SourceKind};
use common::*;

use SourceKind::{ArchivedReplay, LiveUplink};

/// The drain processes and archives every frame accepted before the signal, and each
/// client's final acknowledgement says exactly which of its frames those were.
#[tokio::test]
async fn shutdown_drains_everything_accepted() {
    let (archive, sink) = Archive::gated();
    let mut daemon = TestDaemon::start(test_config(), sink).await;

    // A source that sent all it had, before the archive backed up.
    let mut quiet = Client::source(daemon.uplink, LiveUplink, 31).await;
    quiet
        .send_frames((0..30).map(routine_at).chain((30..35).map(emergency_at)))
        .await;
    wait_until(
        "the first source's frames are in the pipeline",
        PATIENCE,
        || daemon.stats.snapshot().frames_routed == 35,
    )
    .await;

    // A source still streaming when the signal comes.
    let (streaming, mut writer) = Client::source(daemon.replay, ArchivedReplay, 32)
        .await
        .split();
    let writing = tokio::spawn(async move {
        for start in (0..1_000_000u64).step_by(500) {
            let bytes = data_bytes((start..start + 500).map(routine_at));
            if tokio::io::AsyncWriteExt::write_all(&mut writer, &bytes)
                .await
                .is_err()
            {
                break;
            }
        }
    });
    wait_until("frames are backed up behind the archive", PATIENCE, || {
        let s = daemon.stats.snapshot();
        archive.is_blocked() && s.frames_accepted >= 35 + 200
    })
    .await;

    // Keep the quiet source's sending side open: dropping it would end its stream.
    let (quiet, _quiet_writer) = quiet.split();
    let mut readers = Vec::new();
    for (mut inbox, key) in [(quiet, (LiveUplink, 31)), (streaming, (ArchivedReplay, 32))] {
        let archive = archive.clone();
        readers.push(tokio::spawn(async move {
            inbox
                .read_to_close_with(|acked| {
                    assert!(
                        archive.has_all_up_to(key.0, key.1, acked),
                        "{key:?}: ACK {acked} claims frames the archive does not have"
                    );
                })
                .await
        }));
    }

    daemon.begin_shutdown();
    // A source arriving now is not admitted: the listener is gone, or it is refused.
    if let Ok(stream) = tokio::net::TcpStream::connect(daemon.uplink).await {
        let mut late = Client::from_stream(stream);
        let hello = hello_bytes(VERSION, LiveUplink, 33);
        if tokio::io::AsyncWriteExt::write_all(&mut late.writer, &hello)
            .await
            .is_ok()
        {
            match late.recv().await {
                None => {}
                Some(Err(err)) if is_disconnect(&err) => {}
                Some(Ok(ServerMessage::Refused { reason, .. })) => {
                    assert_eq!(reason, RefuseReason::ShuttingDown)
                }
                Some(other) => panic!("a source connecting during the drain got {other:?}"),
            }
        }
    }
    archive.open_gate();
    let report = daemon.join().await;
    writing.abort();

    assert!(report.completed, "{report:?}");
    assert_eq!(report.unacknowledged, 0, "{report:?}");
    assert_eq!(report.accepted, report.archived, "{report:?}");
    assert_eq!(report.processed, report.archived, "{report:?}");
    assert_eq!(report.archived, archive.len() as u64);
    assert!(archive.is_closed());

    let mut final_acks = Vec::new();
    for reader in readers {
        let closed = reader.await.expect("reader task");
        assert_eq!(closed.reason, CloseReason::Shutdown, "{closed:?}");
        final_acks.push(closed.final_ack);
    }
    assert_eq!(
        final_acks[0],
        Some(34),
        "the quiet source's frames were all accepted"
    );
    assert_eq!(
        archive.sequences_with(LiveUplink, 31, Priority::Routine),
        (0..30).collect::<Vec<_>>()
    );
    let streamed = archive.sequences(ArchivedReplay, 32);
    assert!(streamed.len() >= 200);
    assert_eq!(
        streamed,
        (0..streamed.len() as u64).collect::<Vec<_>>(),
        "the streaming source's accepted frames are a prefix, archived once, in order"
    );
    assert_eq!(
        final_acks[1],
        Some(streamed.len() as u64 - 1),
        "the final acknowledgement equals the last accepted frame"
    );
    assert_eq!(report.accepted, 35 + streamed.len() as u64);
}
