//! One test per acceptance criterion of the brief (issue 2, "Tests" 1-7), over real loopback
//! sockets against an in-process daemon.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use aggregator::protocol::ingest::{CloseReason, RefuseReason, ServerMessage, VERSION};
use aggregator::tls::stream::Writer;
use aggregator::{PipelineStats, Priority, SourceKind};
use common::*;

use SourceKind::{ArchivedReplay, LiveUplink};

fn routine(sequence: u64) -> (Priority, u64) {
    (Priority::Routine, sequence)
}

fn emergency(sequence: u64) -> (Priority, u64) {
    (Priority::Emergency, sequence)
}

/// Every `n`th frame is an emergency.
fn mixed(sequences: std::ops::Range<u64>, n: u64) -> Vec<(Priority, u64)> {
    sequences
        .map(|s| {
            if s % n == n - 1 {
                emergency(s)
            } else {
                routine(s)
            }
        })
        .collect()
}

/// Criterion 1: emergency frames are processed before routine frames of the same source that were
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
    client.send_frames(emergencies.clone().map(emergency)).await;
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

/// Criterion 2: sources connect and register while traffic is already flowing, and their frames
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

    second.send_frames(mixed(0..40, 10)).await;
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

/// Criterion 3: with the archive stalled, the frames inside the daemon never exceed the configured
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
    let bytes = data_bytes((0..TOTAL).map(routine)).freeze();
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

/// Criterion 4: the archive receives every processed frame: the same frames, in the same order,
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
                .send_frames(mixed(chunk[0]..chunk[0] + chunk.len() as u64, 7))
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

/// Criterion 5: the stats are read without locks while frames flow: readers hammering
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
            client.send_frames(mixed(start..start + 50, 10)).await;
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

/// Criterion 6: the drain processes and archives every frame accepted before the signal, and each
/// client's final acknowledgement says exactly which of its frames those were.
#[tokio::test]
async fn shutdown_drains_everything_accepted() {
    let (archive, sink) = Archive::gated();
    let mut daemon = TestDaemon::start(test_config(), sink).await;

    // A source that sent all it had, before the archive backed up.
    let mut quiet = Client::source(daemon.uplink, LiveUplink, 31).await;
    quiet
        .send_frames((0..30).map(routine).chain((30..35).map(emergency)))
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
            let bytes = data_bytes((start..start + 500).map(routine));
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

/// Criterion 7: a dashboard that does not keep up lags, is told how much it missed, and carries on;
/// the archive gets every frame regardless.
#[tokio::test]
async fn slow_dashboard_lags_logs_and_continues() {
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
