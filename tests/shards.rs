//! Shards: each a whole chain on its own thread. A source lands on one shard, priority holds
//! across shards (a shard stuck on its disk holds back no other shard's emergencies), the
//! per-shard counters show the imbalance, and a restart with another shard count resumes every
//! source exactly where the archive left it.

mod common;

use std::time::Duration;

use aggregator::archive::{format, write};
use aggregator::config::{ArchiveKind, SyncMode};
use aggregator::domain::shard::shard_of;
use aggregator::protocol::ingest::ServerMessage;
use aggregator::{Config, Priority, SourceKind};
use common::*;

use SourceKind::LiveUplink;

/// Live sources 0 and 2 land on shard 0 of two, 1 and 3 on shard 1.
const SHARDS: usize = 2;

#[tokio::test]
async fn a_shard_stuck_on_its_disk_holds_back_no_other_shards_emergencies() {
    assert_eq!(shard_of((LiveUplink, 0), SHARDS), 0);
    assert_eq!(shard_of((LiveUplink, 1), SHARDS), 1);
    let (stuck, stuck_sink) = Archive::gated();
    let (storing, storing_sink) = Archive::open();
    let daemon = TestDaemon::start(unbatched_config(8, 4, 8), vec![stuck_sink, storing_sink]).await;
    let uplink = daemon.addr(LiveUplink);

    // Shard 0's archive waits at its gate, and routine frames pile up behind it.
    let mut flooding = Client::source(uplink, LiveUplink, 0).await;
    flooding.send_routine(0..200).await;
    wait_until("shard 0 backed up", PATIENCE, || {
        stuck.is_blocked() && daemon.stats.shard_snapshots()[0].in_flight >= 8
    })
    .await;

    // An emergency and a routine frame on shard 1 are stored and acknowledged meanwhile.
    let mut urgent = Client::source(uplink, LiveUplink, 1).await;
    urgent
        .send_frames([(Priority::Emergency, 0), (Priority::Routine, 1)])
        .await;
    loop {
        match urgent.recv_message().await {
            ServerMessage::Ack { sequence: 1 } => break,
            ServerMessage::Ack { .. } | ServerMessage::Catalog { .. } => {}
            other => panic!("expected ACK 1, got {other:?}"),
        }
    }
    assert_eq!(
        storing.sequences_with(LiveUplink, 1, Priority::Emergency),
        vec![0]
    );
    assert!(stuck.records().is_empty(), "shard 0's gate is closed");
    let shards = daemon.stats.shard_snapshots();
    assert_eq!(shards.len(), SHARDS);
    assert_eq!((shards[1].frames_archived, shards[1].in_flight), (2, 0));
    assert_eq!(shards[0].frames_archived, 0);
    assert!(shards[0].in_flight >= 8, "{shards:?}");

    // Once the gate opens, shard 0 stores everything, and each source only in its own shard.
    stuck.open_gate();
    flooding.finish_sending().await;
    urgent.finish_sending().await;
    assert_eq!(flooding.read_to_close().await.final_ack, Some(199));
    assert_eq!(urgent.read_to_close().await.final_ack, Some(1));
    let report = daemon.shutdown().await;
    assert!(report.is_clean(), "{report:?}");
    assert!(stuck.has_all_up_to(LiveUplink, 0, 199));
    assert!(stuck.sequences(LiveUplink, 1).is_empty());
    assert!(storing.sequences(LiveUplink, 0).is_empty());
    assert!(stuck.duplicates().is_empty() && storing.duplicates().is_empty());
}

/// A config for the segment archive in `dir`, with `shards` shards.
fn segment_config(dir: &std::path::Path, shards: usize) -> Config {
    let mut config = test_config();
    config.archive.kind = ArchiveKind::Segments;
    config.archive.dir = dir.to_path_buf();
    config.archive.sync = SyncMode::Interval;
    config.archive.sync_interval = Duration::from_millis(5);
    config.runtime.shards = shards;
    config
}

/// Runs a daemon of `shards` shards on the archive in `dir`; sources `0..sources` each resend
/// from the point the daemon gives them up to `through`, and the daemon drains.
async fn run(dir: &std::path::Path, shards: usize, sources: u32, through: u64) {
    let config = segment_config(dir, shards);
    let archive = write::open(&config.archive, shards).expect("open the archive");
    assert_eq!(archive.sinks.len(), shards);
    let daemon = TestDaemon::start(config, archive).await;
    for id in 0..sources {
        let mut client = Client::connect(daemon.uplink).await;
        client
            .send_raw(&hello_bytes(
                aggregator::protocol::ingest::VERSION,
                LiveUplink,
                id,
            ))
            .await;
        let resume = client.expect_welcome().await;
        let from = resume.map_or(0, |acked| acked + 1);
        // A few frames the archive already holds come again: they must be dropped.
        client.send_routine(from.saturating_sub(3)..=through).await;
        client.finish_sending().await;
        assert_eq!(client.read_to_close().await.final_ack, Some(through));
    }
    daemon.shutdown_clean().await;
}

/// Every frame of every shard directory, as (source id, sequence).
fn stored(dir: &std::path::Path) -> Vec<(u32, u64)> {
    let mut frames = Vec::new();
    let shards = format::list_shard_segments(dir).unwrap();
    for (_, path) in shards.into_iter().flat_map(|shard| shard.segments) {
        for (_, entry) in format::read_segment(&path).unwrap().entries {
            if let format::Entry::Frame(frame) = entry {
                frames.push((frame.source_id, frame.sequence));
            }
        }
    }
    frames.sort_unstable();
    frames
}

#[tokio::test]
async fn a_restart_with_another_shard_count_resumes_every_source_exactly_once() {
    let dir = TempDir::new("shards-restart");
    run(&dir.0, 2, 6, 49).await;
    assert!(dir.0.join("shard-01").is_dir());
    run(&dir.0, 3, 6, 99).await;
    assert!(dir.0.join("shard-02").is_dir());
    // Down to one shard: the others are retired, still read for where each source resumes.
    let config = segment_config(&dir.0, 1);
    let reopened = write::open(&config.archive, 1).unwrap();
    assert_eq!(reopened.sinks.len(), 1);
    let retired: Vec<usize> = reopened.retired.iter().map(|(shard, _)| *shard).collect();
    assert_eq!(retired, vec![1, 2]);
    // A retired shard ends at the end of its newest segment: all of it is readable.
    for (shard, end) in &reopened.retired {
        let dir = format::shard_dir(&dir.0, *shard);
        let (index, path) = format::list_segments(&dir).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        assert_eq!(
            (end.borrow().segment, end.borrow().len),
            (index, len),
            "shard {shard}"
        );
    }
    for id in 0..6 {
        let point = &reopened.resume[&(LiveUplink, id)];
        assert_eq!(point.after(), Some(99), "source {id}");
    }
    drop(reopened);
    run(&dir.0, 1, 6, 120).await;
    let expected: Vec<(u32, u64)> = (0..6)
        .flat_map(|id| (0..=120).map(move |s| (id, s)))
        .collect();
    assert_eq!(
        stored(&dir.0),
        expected,
        "every frame stored once, over all shards"
    );
}
