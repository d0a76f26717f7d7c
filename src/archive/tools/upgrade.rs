//! `aggregator archive upgrade`: an archive an earlier build wrote, checked and brought up to
//! date, on a stopped archive.
//!
//! Why there is little to convert: every format version the project wrote is read in place
//! ([`format::READ_VERSIONS`]), and a segment is never rewritten, because a position (a
//! follower's, a sink's cursor) is a byte offset in one: a rewritten segment would move every
//! frame under them. What is left is what the daemon's start and its readers would otherwise do
//! as they meet each file, done once and reported: every segment and journal is read through (a
//! file this build cannot read is named now, not when a follower reaches it), and each sealed
//! segment's index that is not of a version read is built again. The next start appends in a
//! segment of the current version. It takes every shard's lock, so it never runs beside a daemon.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::archive::format::index::{self, SegmentIndex};
use crate::archive::format::{self, ArchiveError, DamageReason, Entry};

/// What `upgrade` found and did in one shard.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardUpgrade {
    pub shard: usize,
    pub dir: PathBuf,
    /// Its segments, counted by format version.
    pub segments: BTreeMap<u8, u64>,
    /// Its emergency journals, counted by format version.
    pub journals: BTreeMap<u8, u64>,
    /// Frames in its segments' valid records.
    pub frames: u64,
    /// Sealed segments whose index was built again (a dry run: would be).
    pub indexes: u64,
    /// Files not read to their end cleanly: the path and the first damage's reason (`archive
    /// verify` and `repair` say more).
    pub damaged: Vec<(PathBuf, DamageReason)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradeReport {
    pub dry_run: bool,
    pub shards: Vec<ShardUpgrade>,
}

/// Reads every segment and journal of the archive at `root` and, unless `dry_run`, builds again
/// each sealed segment's index of a version not read. An `Err` is an archive that cannot be read
/// at all, is locked by a running daemon, or holds a file of a format version not read (named).
pub fn upgrade(root: &std::path::Path, dry_run: bool) -> Result<UpgradeReport, ArchiveError> {
    let _locks = format::lock_shards(root)?;
    let shards = format::list_shard_segments(root)?
        .into_iter()
        .map(|shard| upgrade_shard(shard, dry_run))
        .collect::<Result<_, ArchiveError>>()?;
    Ok(UpgradeReport { dry_run, shards })
}

fn upgrade_shard(
    files: format::ShardSegments,
    dry_run: bool,
) -> Result<ShardUpgrade, ArchiveError> {
    let mut shard = ShardUpgrade {
        shard: files.shard,
        dir: files.dir.clone(),
        ..ShardUpgrade::default()
    };
    let newest = files.segments.last().map(|(index, _)| *index);
    for (index, path) in &files.segments {
        let version = format::file_version(path)?;
        *shard.segments.entry(version).or_default() += 1;
        let scan = format::read_segment(path)?;
        shard.frames += (scan.entries.iter())
            .filter(|(_, entry)| matches!(entry, Entry::Frame(_)))
            .count() as u64;
        if let Some(damage) = scan.damaged.first() {
            shard.damaged.push((path.clone(), damage.reason.clone()));
        }
        // The newest segment of this version is the one the next start goes on in; one of an
        // earlier version is sealed (the start begins a segment after it).
        let open = Some(*index) == newest && version == format::FORMAT_VERSION;
        if open || SegmentIndex::read_current(&files.dir, *index, scan.file_len).is_some() {
            continue;
        }
        shard.indexes += 1;
        if !dry_run {
            SegmentIndex::of_scan(&scan).write(&index::index_path(&files.dir, *index))?;
        }
    }
    for path in &files.journals {
        *shard
            .journals
            .entry(format::file_version(path)?)
            .or_default() += 1;
        let scan = format::read_segment(path)?;
        if let Some(damage) = scan.damaged.first() {
            shard.damaged.push((path.clone(), damage.reason.clone()));
        }
    }
    Ok(shard)
}
