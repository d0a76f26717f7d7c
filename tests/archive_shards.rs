//! `aggregator archive verify`, `inspect`, `repair` and the replay's `load_archive` on an archive
//! of several shards (`archive::layout`): segments built with the encoder in the archive directory
//! (shard 0) and in its `shard-KK/` directories, as a sharded daemon writes them, one source split
//! across two shards as a change of `runtime.shards` between runs leaves it. The daemon's own
//! recovery (`SegmentSink::open` on each shard's directory) checks what a repair leaves.

mod common;

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use aggregator::archive::format::shard_dir;
use aggregator::archive::format::Entry;
use aggregator::archive::format::{self, encode_frames, encode_watermark, MAGIC};
use aggregator::archive::tools::{self, repair, ShardCheck};
use aggregator::archive::write::SegmentSink;
use aggregator::config::{ArchiveConfig, ArchiveKind, SyncMode};
use aggregator::domain::filter::FrameFilter;
use aggregator::sim::{self, Pace};
use aggregator::{Config, Priority, SourceKind};
use common::TempDir;

use SourceKind::{ArchivedReplay as Replay, LiveUplink as Live};

const T0: u64 = 1_700_000_000_000_000_000;

/// Keeps this process's forks and the lives of the archive locks its tests take apart. A child
/// holds a copy of every descriptor open in this process at its fork until its exec closes them
/// (`O_CLOEXEC`), and a copy of a `LOCK` file's descriptor keeps its `flock`: a test that drops a
/// sink (or a repair's locks) and takes the lock again found it "in use by another aggregator
/// process" while the child of a test running beside it had not yet exec'd (2 runs in 60 under
/// load, never without the test that runs the binary). A retry would also hide a lock that
/// outlives its sink for a reason of the daemon's own, so the two are kept apart instead: a test
/// that runs the binary holds this shared until its child has exited ([`forking`]), and a test
/// that takes archive locks in this process holds it alone ([`locking`]).
static FORKS: RwLock<()> = RwLock::new(());

/// Held while a child of this process may not have exec'd yet.
fn forking() -> RwLockReadGuard<'static, ()> {
    FORKS.read().unwrap_or_else(PoisonError::into_inner)
}

/// Held while this process takes, drops and takes again archive locks.
fn locking() -> RwLockWriteGuard<'static, ()> {
    FORKS.write().unwrap_or_else(PoisonError::into_inner)
}

/// Writes segment `index` of `shard` in the archive at `root`: for each (kind, id, sequences), one
/// FRAMES record of routine frames, then a watermark at the last of them. Returns its path.
fn write_segment(
    root: &Path,
    shard: usize,
    index: u64,
    frames: &[(SourceKind, u32, Range<u64>)],
) -> PathBuf {
    let dir = shard_dir(root, shard);
    fs::create_dir_all(&dir).unwrap();
    let mut bytes = MAGIC.to_vec();
    for (kind, id, seqs) in frames {
        let payloads: Vec<_> = seqs.clone().map(|seq| format!("{id}:{seq}")).collect();
        let batch = seqs.clone().zip(&payloads).map(|(s, p)| (s, p.as_bytes()));
        let received = T0 + seqs.start * 1_000_000;
        encode_frames(&mut bytes, *kind, Priority::Routine, *id, received, batch);
        encode_watermark(&mut bytes, *kind, *id, seqs.end - 1);
    }
    let path = dir.join(format::segment_name(index));
    fs::write(&path, bytes).unwrap();
    path
}

/// Four shards and an empty fifth: live 1 with 0..10 in shard 0 and, after a change of
/// `runtime.shards`, 10..15 in shard 3; live 2 with 0..8 in shard 1; live 3 with 0..12 in two
/// segments of shard 2; replay 1000 with 0..4 in shard 3. 39 frames in 6 segments.
fn sharded_archive(root: &Path) {
    write_segment(root, 0, 1, &[(Live, 1, 0..5)]);
    write_segment(root, 0, 2, &[(Live, 1, 5..10)]);
    write_segment(root, 1, 1, &[(Live, 2, 0..8)]);
    write_segment(root, 2, 1, &[(Live, 3, 0..6)]);
    write_segment(root, 2, 2, &[(Live, 3, 6..12)]);
    write_segment(root, 3, 1, &[(Live, 1, 10..15), (Replay, 1000, 0..4)]);
    fs::create_dir_all(shard_dir(root, 5)).unwrap();
}

/// The first sequence and the count of each source's frames.
fn source_spans(report: &tools::VerifyReport) -> Vec<(SourceKind, u32, Option<u64>, u64)> {
    let spans = report
        .sources
        .iter()
        .map(|s| (s.kind, s.id, s.first, s.frames));
    spans.collect()
}

#[test]
fn verify_reads_every_shard_and_checks_a_split_source_as_one() {
    let root = TempDir::new("shards-verify");
    sharded_archive(&root.0);
    let report = tools::verify(&root.0).unwrap();
    assert_eq!(report.segments.len(), 6);
    assert_eq!(report.frames(), 39);
    assert!(report.is_valid() && report.is_exactly_once(), "{report:?}");
    assert_eq!(
        source_spans(&report),
        vec![
            (Live, 1, Some(0), 15),
            (Live, 2, Some(0), 8),
            (Live, 3, Some(0), 12),
            (Replay, 1000, Some(0), 4),
        ]
    );
    let live_one = &report.sources[0];
    assert_eq!((live_one.last, live_one.watermark), (Some(14), Some(14)));
    let per_shard: Vec<_> = report
        .shards
        .iter()
        .map(|s| (s.shard, s.segments, s.frames))
        .collect();
    assert_eq!(
        per_shard,
        vec![(0, 2, 10), (1, 1, 8), (2, 2, 12), (3, 1, 9), (5, 0, 0)]
    );

    // The command prints each segment with its shard's path, and a line per shard.
    let forks = forking();
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "verify", root.0.to_str().unwrap(), "--strict"])
        .output()
        .unwrap();
    drop(forks);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    let shard_two = shard_dir(&root.0, 2);
    let segment_line = format!(
        "segment {}: ",
        shard_two.join(format::segment_name(2)).display()
    );
    assert!(
        stdout.contains(&segment_line),
        "{segment_line:?} in:\n{stdout}"
    );
    let bytes = report.shards[2].bytes;
    let shard_line = format!(
        "shard 2 {}: segments=2 bytes={bytes} frames=12",
        shard_two.display()
    );
    assert!(
        stdout.lines().any(|l| l == shard_line),
        "{shard_line:?} in:\n{stdout}"
    );
    assert!(stdout.contains("verify total: segments=6 "), "{stdout}");
}

#[test]
fn a_sequence_stored_in_two_shards_is_a_duplicate() {
    let root = TempDir::new("shards-duplicate");
    sharded_archive(&root.0);
    // Live 1's 9 and 10 again, in shard 1: each is already in shard 0 or shard 3.
    write_segment(&root.0, 1, 2, &[(Live, 1, 9..11)]);
    let report = tools::verify(&root.0).unwrap();
    assert!(report.is_valid());
    assert!(!report.is_exactly_once());
    let live_one = &report.sources[0];
    assert_eq!(live_one.duplicates, vec![9, 10]);
    assert_eq!(live_one.duplicate_frames, 2);
    assert_eq!(live_one.missing, 0);

    // The replay sends each sequence once, and counts the copies it dropped.
    let loaded = sim::replay::load_archive(&root.0, Pace::Max).unwrap();
    assert_eq!(loaded.duplicates, 2);
    let (_, recording) = &loaded.sources[0];
    let sequences: Vec<_> = recording.frames.iter().map(|f| f.sequence).collect();
    assert_eq!(sequences, (0..15).collect::<Vec<_>>());
}

#[test]
fn the_replay_merges_each_source_across_shards() {
    let root = TempDir::new("shards-replay");
    sharded_archive(&root.0);
    let loaded = sim::replay::load_archive(&root.0, Pace::Max).unwrap();
    assert_eq!(loaded.segments, 6);
    assert_eq!(loaded.duplicates, 0);
    assert!(loaded.torn.is_empty() && loaded.skipped.is_empty());
    let recorded: Vec<_> = loaded
        .sources
        .iter()
        .map(|(id, r)| (*id, r.archived_kind, r.frames.len()))
        .collect();
    assert_eq!(
        recorded,
        vec![
            (1, Live, 15),
            (2, Live, 8),
            (3, Live, 12),
            (1000, Replay, 4)
        ]
    );
    let (_, live_one) = &loaded.sources[0];
    let sequences: Vec<_> = live_one.frames.iter().map(|f| f.sequence).collect();
    assert_eq!(sequences, (0..15).collect::<Vec<_>>());
    assert_eq!(live_one.frames[12].payload.as_ref(), b"1:12");
}

/// What `inspect` lists for `filter`, at most `limit`: each record's file and, for a frame, its
/// sequence.
fn inspect(root: &Path, filter: &FrameFilter, limit: Option<usize>) -> Vec<(String, Option<u64>)> {
    let mut listed = Vec::new();
    let summary = tools::inspect(root, filter, limit, &mut |record| {
        let sequence = match record.entry {
            Entry::Frame(frame) => Some(frame.sequence),
            _ => None,
        };
        listed.push((record.file.to_string(), sequence));
        Ok(())
    })
    .unwrap();
    assert!(summary.damaged.is_empty());
    listed
}

#[test]
fn inspect_walks_shard_zero_first_then_by_shard() {
    let root = TempDir::new("shards-inspect");
    sharded_archive(&root.0);
    let all = inspect(&root.0, &FrameFilter::default(), None);
    assert_eq!(all.len(), 39 + 7, "every frame and watermark");
    let mut segments: Vec<_> = all.iter().map(|(file, _)| file.clone()).collect();
    segments.dedup();
    let name = format::segment_name;
    assert_eq!(
        segments,
        vec![
            name(1),
            name(2),
            format!("shard-01/{}", name(1)),
            format!("shard-02/{}", name(1)),
            format!("shard-02/{}", name(2)),
            format!("shard-03/{}", name(1)),
        ]
    );
    // Live 1, split across shards 0 and 3, from 8 to 11: its frames in both, in that order.
    let filter = FrameFilter {
        sources: vec![(Live, 1)],
        priority: Some(Priority::Routine),
        first_sequence: Some(8),
        last_sequence: Some(11),
        ..FrameFilter::default()
    };
    let sequences = inspect(&root.0, &filter, Some(3));
    assert_eq!(
        sequences,
        vec![
            (name(2), Some(8)),
            (name(2), Some(9)),
            (format!("shard-03/{}", name(1)), Some(10)),
        ]
    );
}

/// The daemon's archive config for shard `shard` of the archive at `root`.
fn shard_config(root: &Path, shard: usize) -> ArchiveConfig {
    ArchiveConfig {
        kind: ArchiveKind::Segments,
        dir: shard_dir(root, shard),
        segment_bytes: 1 << 20,
        sync: SyncMode::Never,
        ..Config::default().archive
    }
}

#[test]
fn repair_cuts_a_torn_tail_in_shard_two_and_leaves_the_other_shards() {
    let _locks = locking();
    let root = TempDir::new("shards-repair");
    sharded_archive(&root.0);
    let newest = shard_dir(&root.0, 2).join(format::segment_name(2));
    let full = fs::read(&newest).unwrap();
    fs::write(&newest, &full[..full.len() - 3]).unwrap();
    let torn = fs::read(&newest).unwrap();
    let report = tools::verify(&root.0).unwrap();
    let problems: Vec<_> = report
        .problems()
        .map(|s| (s.shard, s.path.clone()))
        .collect();
    assert_eq!(problems, vec![(2, newest.clone())]);

    // A dry run: every shard's newest segment looked at, shard 2's damage named, nothing moved.
    let dry = repair::repair(&root.0, false).unwrap();
    let looked_at: Vec<_> = dry
        .shards
        .iter()
        .map(|r| (r.shard, r.damaged.len()))
        .collect();
    assert_eq!(looked_at, vec![(0, 0), (1, 0), (2, 1), (3, 0)]);
    assert!(!dry.is_settled());
    // The command says how to do it (a dry run that found damage: status 1).
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "repair", root.0.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let printed = String::from_utf8(out.stdout).unwrap();
    let hint = format!(
        "run `aggregator archive repair {} --quarantine`",
        root.0.display()
    );
    assert!(printed.contains(&hint), "{printed}");
    assert_eq!(fs::read(&newest).unwrap(), torn);

    // A daemon holding any shard stops the repair before anything moves.
    let (sink, _) = SegmentSink::open(&shard_config(&root.0, 3)).unwrap();
    let err = repair::repair(&root.0, true).unwrap_err();
    assert!(err.to_string().contains("shard-03"), "{err}");
    assert!(err.to_string().contains("in use"), "{err}");
    assert_eq!(fs::read(&newest).unwrap(), torn);
    drop(sink);

    let done = repair::repair(&root.0, true).unwrap();
    assert!(done.is_settled());
    let shard_two = &done.shards[2];
    let damage = &shard_two.damaged[0];
    let quarantined = shard_dir(&root.0, 2).join("quarantine").join(format!(
        "{}.at-{}.damaged",
        format::segment_name(2),
        damage.start
    ));
    assert_eq!(shard_two.quarantine_path(damage), quarantined);
    let start = damage.start as usize;
    assert_eq!(fs::read(&quarantined).unwrap(), &torn[start..]);
    assert_eq!(fs::read(&newest).unwrap(), &torn[..start]);
    assert!(
        !root.0.join("quarantine").exists(),
        "shard 0 had nothing to move"
    );

    // Every shard's recovery starts, and the archive is whole but for the cut watermark.
    for shard in 0..4 {
        drop(SegmentSink::open(&shard_config(&root.0, shard)).unwrap());
    }
    let report = tools::verify(&root.0).unwrap();
    assert!(report.is_valid() && report.is_exactly_once(), "{report:?}");
    assert_eq!(report.frames(), 39);
    assert_eq!(
        report.sources[2].watermark,
        Some(5),
        "live 3's last watermark was cut"
    );
}

#[test]
fn an_archive_written_before_shards_is_shard_zero() {
    let root = TempDir::new("shards-none");
    write_segment(&root.0, 0, 1, &[(Live, 1, 0..5), (Live, 2, 0..3)]);
    write_segment(&root.0, 0, 2, &[(Live, 1, 5..10)]);
    let report = tools::verify(&root.0).unwrap();
    let bytes = report.bytes();
    assert_eq!(
        report.shards,
        vec![ShardCheck {
            shard: 0,
            dir: root.0.clone(),
            segments: 2,
            bytes,
            frames: 13,
        }]
    );
    assert!(report.segments.iter().all(|s| s.shard == 0));
    assert_eq!(
        source_spans(&report),
        vec![(Live, 1, Some(0), 10), (Live, 2, Some(0), 3)]
    );
    let listed = inspect(&root.0, &FrameFilter::default(), None);
    assert_eq!(listed[0].0, format::segment_name(1));
    let repaired = repair::repair(&root.0, false).unwrap();
    assert_eq!(repaired.shards.len(), 1);
    assert_eq!(repaired.shards[0].dir, root.0);
    assert_eq!(
        repaired.shards[0].segment,
        root.0.join(format::segment_name(2))
    );
    let loaded = sim::replay::load_archive(&root.0, Pace::Max).unwrap();
    assert_eq!(loaded.segments, 2);
    assert_eq!(loaded.sources.len(), 2);
}

#[test]
fn a_shard_that_cannot_be_repaired_stops_the_repair_before_any_shard_changes() {
    let _locks = locking();
    let root = TempDir::new("shards-repair-refused");
    sharded_archive(&root.0);
    let torn_path = root.0.join(format::segment_name(2));
    let full = fs::read(&torn_path).unwrap();
    fs::write(&torn_path, &full[..full.len() - 3]).unwrap();
    let torn = fs::read(&torn_path).unwrap();
    let bad_magic = shard_dir(&root.0, 3).join(format::segment_name(1));
    let mut bytes = fs::read(&bad_magic).unwrap();
    bytes[0] ^= 0xff;
    fs::write(&bad_magic, &bytes).unwrap();

    let err = repair::repair(&root.0, true).unwrap_err();
    assert!(
        err.to_string().contains(&bad_magic.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("magic"), "{err}");
    assert_eq!(
        fs::read(&torn_path).unwrap(),
        torn,
        "shard 0 is left as it was"
    );
    assert!(!root.0.join("quarantine").exists());
}

/// The emergency journal of a shard beyond `runtime.shards` (a daemon that ran more shards
/// crashed after journaling an emergency that its segment lost): the next start stores the frame
/// in shard 0, once, resumes its source after it, and deletes that journal.
#[test]
fn a_retired_shards_journal_is_stored_by_shard_zero() {
    let _locks = locking();
    let root = TempDir::new("shards-journal");
    write_segment(&root.0, 0, 1, &[(Live, 1, 0..5)]);
    write_segment(&root.0, 1, 1, &[(Live, 2, 0..3)]);
    // Live 2's emergency 3 is in shard 1's journal only.
    let mut journal = MAGIC.to_vec();
    let frame = [(3, b"abort".as_slice())];
    encode_frames(&mut journal, Live, Priority::Emergency, 2, T0, frame);
    let path = shard_dir(&root.0, 1).join("emergency-00000000000000000001.journal");
    fs::write(&path, &journal).unwrap();

    let config = ArchiveConfig {
        sync: SyncMode::Interval,
        ..shard_config(&root.0, 0)
    };
    let archive = aggregator::archive::write::open(&config, 1).unwrap();
    assert_eq!(archive.retired.len(), 1, "shard 1 is retired");
    assert_eq!(archive.resume[&(Live, 2)].after(), Some(3));
    assert!(!path.exists(), "the retired shard's journal is deleted");
    drop(archive);

    let exactly_once = || {
        let report = tools::verify(&root.0).unwrap();
        assert!(report.is_valid() && report.is_exactly_once(), "{report:?}");
        assert_eq!(
            source_spans(&report),
            vec![(Live, 1, Some(0), 5), (Live, 2, Some(0), 4)]
        );
        let per_shard: Vec<_> = report.shards.iter().map(|s| (s.shard, s.frames)).collect();
        assert_eq!(per_shard, vec![(0, 6), (1, 3)], "shard 0 stores it");
    };
    exactly_once();

    // A crash after shard 0 stored it and before the journal was deleted: stored once all the same.
    fs::write(&path, &journal).unwrap();
    let archive = aggregator::archive::write::open(&config, 1).unwrap();
    assert!(!path.exists());
    drop(archive);
    exactly_once();
}
