//! Priority over loopback sockets against an in-process daemon: emergency frames overtake queued
//! routine frames, and the pipeline's capacities hold while nothing is dropped.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use aggregator::protocol::ingest::{CloseReason, VERSION};
use aggregator::tls::stream::Writer;
use aggregator::{PipelineStats, Priority, SourceKind};
use common::*;

use SourceKind::LiveUplink;

/// Emergency frames are processed before routine frames of the same source that were
/// queued before them.
#[tokio::test]
async fn emergency_frames_overtake_queued_routine_frames_of_the_same_source() {
    const ROUTINE_CAPACITY: usize = 8;
    const ARCHIVE_CAPACITY: usize = 4;
    let config = unbatched_config(ROUTINE_CAPACITY, 8, ARCHIVE_CAPACITY);
    let (archive, sink) = Archive::gated();
    let daemon = TestDaemon::start(config, sink).await;
    let mut client = Client::source(daemon.uplink, LiveUplink, 7).await;

    // Exactly what the pipeline holds with the archive shut: the archive's queue, and the routine
    // lane (whose capacity includes the frame the processor holds while it waits for the archive).
    let routine_frames = (ROUTINE_CAPACITY + ARCHIVE_CAPACITY) as u64;
    client.send_routine(0..routine_frames).await;
    wait_until(
        "every routine frame is queued inside the pipeline",
        PATIENCE,
        || daemon.stats.snapshot().frames_routed == routine_frames && archive.is_blocked(),
    )
    .await;
    assert_eq!(daemon.stats.snapshot().frames_archived, 0);

    let emergencies = routine_frames..routine_frames + 3;
    client
        .send_frames(emergencies.clone().map(emergency_at))
        .await;
    wait_until("the emergencies are admitted", PATIENCE, || {
        daemon.stats.snapshot().frames_routed == routine_frames + 3
    })
    .await;
    // A full archive holds routine frames back, not emergencies: they are processed, and queued
    // for the archive under their own bound, while it is still shut.
    wait_until(
        "the emergencies are processed with the archive shut",
        PATIENCE,
        || daemon.stats.snapshot().emergency_frames == 3,
    )
    .await;
    assert!(archive.is_blocked() && archive.len() == 0);
    archive.open_gate();
    client.finish_sending().await;

    let closed = client
        .read_to_close_with(|acked| {
            assert!(
                archive.has_all_up_to(LiveUplink, 7, acked),
                "ACK {acked} claims frames the archive does not have"
            );
        })
        .await;
    assert_eq!(closed.reason, CloseReason::EndOfStream);
    assert_eq!(closed.final_ack, Some(emergencies.end - 1));

    let order: Vec<(Priority, u64)> = archive
        .records()
        .iter()
        .map(|r| (r.priority, r.sequence))
        .collect();
    assert_eq!(
        order.len() as u64,
        emergencies.end,
        "processing order: {order:?}"
    );
    let last_emergency = order
        .iter()
        .rposition(|(p, _)| *p == Priority::Emergency)
        .expect("emergencies processed");
    // While the archive was shut, only the frames already inside its queue could get ahead of the
    // emergencies. The frame in the processor's hands was waiting for room in that queue, which
    // emergencies do not wait for (they have a bound of their own there), so it comes after them
    // too, with every routine frame still queued in the fan-in.
    let could_pass = ARCHIVE_CAPACITY as u64;
    for (position, &(priority, sequence)) in order.iter().enumerate() {
        if priority == Priority::Routine && sequence >= could_pass {
            assert!(
                position > last_emergency,
                "routine frame {sequence} was processed before the emergencies: {order:?}"
            );
        }
    }
    let overtaken = order[last_emergency + 1..]
        .iter()
        .filter(|(p, s)| *p == Priority::Routine && *s < emergencies.start)
        .count();
    assert_eq!(
        overtaken as u64,
        routine_frames - could_pass,
        "the emergencies overtook every queued routine frame: {order:?}"
    );

    // Within one priority, a source's frames keep their order.
    assert_eq!(
        archive.sequences_with(LiveUplink, 7, Priority::Routine),
        (0..routine_frames).collect::<Vec<_>>()
    );
    assert_eq!(
        archive.sequences_with(LiveUplink, 7, Priority::Emergency),
        emergencies.collect::<Vec<_>>()
    );
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
}

/// With the archive stalled, the frames inside the daemon never exceed the configured
/// bound, the sender's writes block, and once the archive moves again nothing has been dropped.
#[tokio::test]
async fn processor_capacity_is_enforced_and_nothing_is_dropped() {
    let mut config = unbatched_config(16, 16, 16);
    config.connection.read_buffer = 1024;
    let bound = config.pipeline_frame_bound() as u64;
    // With only routine traffic the pipeline is full at the routine lane plus the archive queue.
    let saturated = (config.pipeline.processor_capacity + config.pipeline.archive_capacity) as u64;
    const FRAME_WIRE_BYTES: u64 = 4 + 10 + 8;
    // One decoded socket read per connection may wait to be admitted on top of the bound.
    let read_slack = 2 * config.connection.read_buffer as u64 / FRAME_WIRE_BYTES + 1;
    let (archive, sink) = Archive::gated();
    let daemon = TestDaemon::start(config, sink).await;

    let mut client = Client::connect_small_buffer(daemon.uplink, 4096).await;
    client.send_raw(&hello_bytes(VERSION, LiveUplink, 3)).await;
    client.expect_welcome().await;
    let (mut inbox, writer) = client.split();
    let Writer::Plain(writer) = writer else {
        unreachable!("a plain TCP client")
    };

    // Far more than the daemon may hold plus what the kernel buffers can absorb.
    const TOTAL: u64 = 30_000;
    let bytes = data_bytes((0..TOTAL).map(routine_at)).freeze();
    let total_bytes = bytes.len();
    let written = Arc::new(AtomicU64::new(0));
    let blocked = Arc::new(AtomicBool::new(false));
    let writing = tokio::spawn({
        let (written, blocked) = (Arc::clone(&written), Arc::clone(&blocked));
        async move {
            let mut offset = 0;
            while offset < bytes.len() {
                match writer.try_write(&bytes[offset..]) {
                    Ok(n) => {
                        offset += n;
                        written.store(offset as u64, Ordering::SeqCst);
                    }
                    Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                        blocked.store(true, Ordering::SeqCst);
                        writer.writable().await.expect("socket writable");
                    }
                    Err(err) => panic!("write failed: {err}"),
                }
            }
            writer
        }
    });

    let check = |s: PipelineStats| {
        let inside = s.frames_routed - s.frames_archived;
        assert!(
            inside <= bound,
            "{inside} frames inside the pipeline, bound {bound}: {s:?}"
        );
        let held = s.frames_accepted - s.frames_archived;
        assert!(
            held <= bound + read_slack,
            "{held} accepted frames held, bound {bound} + one read ({read_slack}): {s:?}"
        );
    };

    // Fill the pipeline, sampling the bound all the way.
    let started = tokio::time::Instant::now();
    loop {
        let s = daemon.stats.snapshot();
        check(s);
        if s.frames_routed == saturated {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "the pipeline never filled: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(daemon.stats.snapshot().frames_archived, 0);

    // Now the daemon stops reading and TCP pushes back: the client's writes block.
    blocked.store(false, Ordering::SeqCst);
    wait_until("the client's writes block", PATIENCE, || {
        check(daemon.stats.snapshot());
        blocked.load(Ordering::SeqCst)
    })
    .await;
    for _ in 0..100 {
        let s = daemon.stats.snapshot();
        check(s);
        assert_eq!(
            s.frames_routed, saturated,
            "nothing more enters a full pipeline"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert!(
        !writing.is_finished(),
        "the client could write everything into a stalled daemon"
    );
    let s = daemon.stats.snapshot();
    assert!(
        s.frames_accepted < TOTAL / 10,
        "accepted {} of {TOTAL} frames while stalled",
        s.frames_accepted
    );
    assert!((written.load(Ordering::SeqCst) as usize) < total_bytes);

    // Release the archive: the client finishes, and the bound holds while it does.
    archive.open_gate();
    let started = tokio::time::Instant::now();
    while !writing.is_finished() {
        check(daemon.stats.snapshot());
        assert!(
            started.elapsed() < PATIENCE,
            "the client never finished writing"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut writer = writing.await.expect("writer task");
    tokio::io::AsyncWriteExt::shutdown(&mut writer)
        .await
        .expect("shut down the sending side");
    let closed = inbox.read_to_close().await;
    assert_eq!(closed.reason, CloseReason::EndOfStream);
    assert_eq!(closed.final_ack, Some(TOTAL - 1));

    // Nothing dropped, nothing duplicated, order kept.
    assert_eq!(
        archive.sequences(LiveUplink, 3),
        (0..TOTAL).collect::<Vec<_>>()
    );
    let s = daemon.stats.snapshot();
    assert_eq!((s.frames_accepted, s.frames_archived), (TOTAL, TOTAL));
    assert_eq!(s.duplicates_dropped, 0);
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
}
