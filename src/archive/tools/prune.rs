//! `aggregator archive prune`: retention by hand, on a stopped archive.
//!
//! An operator who set no `[archive.retention]`, or wants room now, deletes the oldest sealed
//! segments the way the daemon's retention does: the same plan (whole segments, oldest first by
//! their newest frame, each shard's in index order, never a shard's newest segment) and the same
//! crash-safe deletion, which records what each source lost in the shard's `RETENTION` state. It
//! takes every shard's lock first, so it never runs beside a daemon, and lists what it deletes and
//! what each source keeps.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Write};
use std::path::Path;
use std::time::Duration;

use crate::archive::index::SegmentIndex;
use crate::archive::layout;
use crate::archive::retention::catalogue::{Catalogue, ShardFiles};
use crate::archive::retention::plan::{self, Candidate, Usage};
use crate::archive::segment;
use crate::config::RetentionConfig;
use crate::domain::display::unix_ns_to_rfc3339;
use crate::domain::frame::SourceKind;
use crate::domain::sequence_set::SequenceSet;

/// What to delete: one of the three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneLimit {
    /// The sealed segments whose newest frame was received before this time (ns since the epoch).
    Before(u64),
    /// The oldest sealed segments, until the archive holds at most this many bytes on disk.
    KeepBytes(u64),
    /// The sealed segments whose newest frame is older than this, counted back from now.
    KeepAge(Duration),
}

/// A segment `prune` deletes (or, in a dry run, would).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrunedSegment {
    pub shard: usize,
    pub segment: u64,
    pub bytes: u64,
    pub frames: u64,
    /// Its newest frame's received time; `None` without frames.
    pub newest: Option<u64>,
}

/// What a source keeps after the prune.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeptSource {
    pub kind: SourceKind,
    pub id: u32,
    pub frames: u64,
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Frames of it the prune deletes.
    pub deleted: u64,
}

/// What `prune` did, or would do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneReport {
    pub dry_run: bool,
    pub deleted: Vec<PrunedSegment>,
    /// Every source the archive holds or held, by kind (live first) and id.
    pub sources: Vec<KeptSource>,
    /// The archive's bytes on disk before, and after the deletions.
    pub bytes_before: u64,
    pub bytes_after: u64,
    pub segments_after: u64,
}

/// Deletes (or with `dry_run` only lists) the oldest sealed segments of the archive at `root` that
/// `limit` asks for, at `now_ns`. An `Err` names the cause: the archive is locked by a running
/// daemon, a directory or segment cannot be read, or a deletion failed (what was deleted before it
/// is recorded).
pub fn prune(
    root: &Path,
    limit: PruneLimit,
    dry_run: bool,
    now_ns: u64,
) -> io::Result<PruneReport> {
    let _locks = layout::lock_shards(root)?;
    let mut catalogue = Catalogue::load(root)?;
    let (limits, at) = match limit {
        PruneLimit::Before(time) => (with(|l| l.max_age = Some(Duration::ZERO)), time),
        PruneLimit::KeepBytes(bytes) => (with(|l| l.max_bytes = Some(bytes)), now_ns),
        PruneLimit::KeepAge(age) => (with(|l| l.max_age = Some(age)), now_ns),
    };
    let bytes_before = catalogue.bytes()?;
    let queues = catalogue.candidates(|_, _| false);
    let usage = Usage {
        bytes: bytes_before,
        free: None,
    };
    let plan = plan::plan(&queues, usage, &limits, at);
    let deleted: Vec<PrunedSegment> = plan
        .delete
        .iter()
        .map(|&(queue, segment)| pruned_segment(&catalogue.shards[queue], &queues[queue], segment))
        .collect();
    let sources = kept_sources(&catalogue, &plan.delete)?;
    if !dry_run {
        catalogue.finish_deletions()?;
        catalogue.delete(&plan, now_ns)?;
    }
    let freed: u64 = deleted.iter().map(|d| d.bytes).sum();
    Ok(PruneReport {
        dry_run,
        bytes_after: bytes_before.saturating_sub(freed),
        segments_after: catalogue.segments() - if dry_run { deleted.len() as u64 } else { 0 },
        deleted,
        sources,
        bytes_before,
    })
}

fn with(edit: impl FnOnce(&mut RetentionConfig)) -> RetentionConfig {
    let mut limits = RetentionConfig::default();
    edit(&mut limits);
    limits
}

fn pruned_segment(files: &ShardFiles, queue: &VecDeque<Candidate>, segment: u64) -> PrunedSegment {
    let entry = files.sealed.iter().find(|e| e.segment == segment);
    let candidate = queue.iter().find(|c| c.segment == segment);
    PrunedSegment {
        shard: files.shard,
        segment,
        bytes: candidate.map_or(0, |c| c.bytes),
        frames: entry.map_or(0, |e| e.frames),
        newest: entry.and_then(|e| e.received).map(|(_, newest)| newest),
    }
}

/// What each source keeps once the `deleting` segments are gone: every retained segment's index
/// (the newest read from the segment itself).
fn kept_sources(catalogue: &Catalogue, deleting: &[(usize, u64)]) -> io::Result<Vec<KeptSource>> {
    #[derive(Default)]
    struct Tally {
        frames: u64,
        deleted: u64,
        sequences: SequenceSet,
    }
    let mut tallies: BTreeMap<(u8, u32), Tally> = BTreeMap::new();
    for (queue, files) in catalogue.shards.iter().enumerate() {
        let sealed = files.sealed.iter().map(|e| e.segment);
        for segment in sealed.chain(files.newest) {
            let path = files.dir.join(segment::segment_name(segment));
            let contents = match Some(segment) == files.newest {
                true => SegmentIndex::build(&path)?,
                false => SegmentIndex::read_or_rebuild(&files.dir, segment, &path)?,
            };
            let gone = deleting.contains(&(queue, segment));
            for (&key, span) in &contents.sources {
                let tally = tallies.entry(key).or_default();
                if gone {
                    tally.deleted += span.frames;
                } else {
                    tally.frames += span.frames;
                    span.sequences
                        .runs()
                        .for_each(|(a, b)| tally.sequences.insert_run(a, b));
                }
            }
        }
    }
    Ok(tallies
        .into_iter()
        .filter_map(|((kind, id), tally)| {
            Some(KeptSource {
                kind: SourceKind::from_byte(kind)?,
                id,
                frames: tally.frames,
                first: tally.sequences.first(),
                last: tally.sequences.last(),
                deleted: tally.deleted,
            })
        })
        .collect())
}

impl PruneReport {
    /// A line per segment deleted, one per source, then `prune total: key=value ...` (stable for
    /// scripts).
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        let verb = if self.dry_run {
            "would delete"
        } else {
            "deleted"
        };
        for d in &self.deleted {
            let newest = d.newest.map_or("-".into(), unix_ns_to_rfc3339);
            writeln!(
                out,
                "{verb} shard {} segment {}: {} bytes, {} frames, newest frame {newest}",
                d.shard, d.segment, d.bytes, d.frames
            )?;
        }
        for s in &self.sources {
            let seq = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
            writeln!(
                out,
                "source {} {}: keeps frames={} first={} last={} deleted={}",
                s.kind.label(),
                s.id,
                s.frames,
                seq(s.first),
                seq(s.last),
                s.deleted
            )?;
        }
        writeln!(
            out,
            "prune total: deleted_segments={} deleted_bytes={} bytes_before={} bytes_after={} segments_after={} dry_run={}",
            self.deleted.len(),
            self.deleted.iter().map(|d| d.bytes).sum::<u64>(),
            self.bytes_before,
            self.bytes_after,
            self.segments_after,
            self.dry_run
        )
    }
}
