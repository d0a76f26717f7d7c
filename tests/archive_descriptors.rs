//! The archive when the process runs out of file descriptors (`EMFILE`: a flood of idle
//! connections can do it): syncs and rollovers that fail for want of a descriptor lose nothing,
//! so the archive holds its frames, says it is failing, and carries on by itself once descriptors
//! are back, with no restart.
//!
//! Alone in its file, so in a process of its own: it lowers the process's open-file limit and takes
//! every descriptor left, which would fail any test running beside it.

mod common;

use std::fs::File;
use std::io;

use aggregator::archive::tools;
use aggregator::config::{ArchiveKind, SyncMode};
use aggregator::protocol::ingest::ServerMessage;
use aggregator::{Health, SourceKind};
use common::{test_config, wait_until, Client, TempDir, PATIENCE};

/// Lowers the soft open-file limit to `limit` and opens `/dev/null` until no descriptor is left;
/// dropping what it returns gives them back.
fn take_every_descriptor(limit: u64) -> Vec<File> {
    let mut rlimit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write the struct they are given, nothing else.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut rlimit), 0);
        rlimit.rlim_cur = limit.min(rlimit.rlim_max);
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &rlimit), 0);
    }
    let mut held = Vec::new();
    loop {
        match File::open("/dev/null") {
            Ok(file) => held.push(file),
            Err(err) if err.raw_os_error() == Some(libc::EMFILE) => return held,
            Err(err) => panic!("opening /dev/null: {err}"),
        }
    }
}

/// Reads until the server acknowledges `sequence`.
async fn acknowledged(client: &mut Client, sequence: u64) {
    let wait = async {
        loop {
            match client.recv_message().await {
                ServerMessage::Ack { sequence: acked } if acked >= sequence => return,
                _ => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, wait)
        .await
        .unwrap_or_else(|_| panic!("sequence {sequence} was never acknowledged"));
}

/// While no descriptor is left, a sync still works (it needs none), and a rollover to the next
/// segment, which cannot name it, holds the archive: it says it is failing and `/healthz` says
/// degraded, and nothing more is acknowledged. Once the descriptors are back, the frames held are
/// stored and acknowledged, health is ready again, and the drain is clean; the archive holds every
/// frame once. Before, the sync (the `dup` of the segment's descriptor it made) failed as if its
/// `fsync` had: nothing more was written until a restart.
#[tokio::test]
async fn running_out_of_descriptors_holds_the_archive_until_they_are_back() -> io::Result<()> {
    let dir = TempDir::new("descriptors");
    let mut config = test_config();
    config.archive.kind = ArchiveKind::Segments;
    config.archive.dir = dir.0.clone();
    config.archive.sync = SyncMode::Interval;
    // About 400 frames of 8 bytes fill a segment.
    config.archive.segment_bytes = 8192;
    let archive = aggregator::archive::write::open(&config.archive, 1)?;
    let (mut daemon, health) =
        common::TestDaemon::start_with(config, archive, |d| d.health()).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 1).await;
    client.send_routine(0..100).await;
    // Stored, and the next segment (created before the first sync ended) is ready.
    acknowledged(&mut client, 99).await;

    let held = take_every_descriptor(256);
    client.send_routine(100..200).await;
    acknowledged(&mut client, 199).await;
    assert_eq!(health.health(), Health::Ready);
    // These fill the segment: the rollover cannot name the next one.
    client.send_routine(200..1000).await;
    wait_until("the archive says it is failing", PATIENCE, || {
        daemon.stats.snapshot().archive_failing == 1
    })
    .await;
    assert_eq!(health.health(), Health::Degraded);

    drop(held);
    acknowledged(&mut client, 999).await;
    wait_until("the archive says it has recovered", PATIENCE, || {
        daemon.stats.snapshot().archive_failing == 0
    })
    .await;
    assert_eq!(health.health(), Health::Ready);

    daemon.begin_shutdown();
    let closed = client.read_to_close().await;
    assert_eq!(closed.final_ack, Some(999));
    let report = daemon.join().await;
    assert!(report.is_clean(), "{report:?}");

    let verified = tools::verify(&dir.0)?;
    assert!(verified.segments.len() >= 2, "rolled over: {verified:?}");
    assert!(
        verified.is_valid() && verified.is_exactly_once(),
        "{verified:?}"
    );
    assert_eq!(verified.frames(), 1000);
    Ok(())
}
