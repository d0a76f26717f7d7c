//! `aggregator archive prune`: retention by hand, on a stopped archive.
//!
//! An operator who set no `[archive.retention]`, or wants room now, deletes the oldest sealed
//! segments the way the daemon's retention does: the same plan (whole segments, oldest first by
//! their newest frame, each shard's in index order, never a shard's newest segment) and the same
//! crash-safe deletion, which records what each source lost in the shard's `RETENTION` state. It
//! takes every shard's lock first, so it never runs beside a daemon, and lists what it deletes and
//! what each source keeps.
//!
//! By time it trusts what the daemon does not: the received times as stamped, and, by age
//! (`--keep-age`), this machine's clock now. A segment is at least as old as those its shard
//! wrote after it, as for retention ([`crate::archive::retention::ages`]), but a clock stepped
//! forward since the daemon stopped would still delete all it wrote. So by age it refuses without
//! `--force` when this machine's clock is behind the newest frame the archive holds, or when it
//! would delete a segment of the daemon's last run (from the segment of the last start's CLOCK
//! record on) that is not that old by the last run's own received times (the archive clock,
//! which no step moved), and says which. `--before` deletes by the time it is given.

use std::collections::{BTreeMap, VecDeque};
use std::path::Path;
use std::time::Duration;

use crate::archive::format::index::SegmentIndex;
use crate::archive::format::{self, ArchiveError};
use crate::archive::retention::ages::Ages;
use crate::archive::retention::catalogue::{Catalogue, ShardFiles};
use crate::archive::retention::plan::{self, Candidate, Plan, Usage};
use crate::config::RetentionConfig;
use crate::domain::clock::{ArchiveClock, ClockEventKind};
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

/// How a prune runs: only listing (`dry_run`), at `now_ns` by this machine's clock, and with
/// `force` past what it would otherwise refuse to trust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneRun {
    pub dry_run: bool,
    pub now_ns: u64,
    pub force: bool,
}

/// Why a prune did not run.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The archive cannot be read or written, or is locked by a running daemon.
    #[error(transparent)]
    Archive(#[from] ArchiveError),
    /// By time, it would trust a clock it should not (the text says which); nothing is deleted.
    #[error("{0}; nothing deleted: if the clock and the received times are right, run it again with --force")]
    Untrusted(String),
}

/// Deletes (or with `run.dry_run` only lists) the oldest sealed segments of the archive at `root`
/// that `limit` asks for. An `Err` names the cause: the archive is locked by a running daemon, a
/// directory or segment cannot be read, a deletion failed (what was deleted before it is
/// recorded), or, by time and without `run.force`, the clock is not to be trusted with it.
pub fn prune(root: &Path, limit: PruneLimit, run: PruneRun) -> Result<PruneReport, PruneError> {
    let _locks = format::lock_shards(root)?;
    let mut catalogue = Catalogue::load(root)?;
    let now_ns = run.now_ns;
    let (limits, at) = match limit {
        PruneLimit::Before(time) => (with(|l| l.max_age = Some(Duration::ZERO)), time),
        PruneLimit::KeepBytes(bytes) => (with(|l| l.max_bytes = Some(bytes)), now_ns),
        PruneLimit::KeepAge(age) => (with(|l| l.max_age = Some(age)), now_ns),
    };
    let bytes_before = catalogue.bytes()?;
    let mut queues = catalogue.candidates(|_, _| false);
    // No run of a daemon to age by: the stamps against `at`, each segment at least as old as
    // those after it.
    let ages = Ages::new(ArchiveClock::process(), &[], Duration::ZERO);
    ages.apply(&mut queues, &catalogue.shard_numbers(), at);
    let usage = Usage {
        bytes: bytes_before,
        free: None,
    };
    let plan = plan::plan(&queues, usage, &limits, at);
    if let (PruneLimit::KeepAge(age), false) = (limit, run.force) {
        check_trust(&catalogue, &plan, &queues, age, now_ns)?;
    }
    let dry_run = run.dry_run;
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

/// Refuses a prune by age (`age`) that trusts this machine's clock where it should not: when it
/// is behind the newest frame the archive holds, or when `plan` deletes (of `queues`, their
/// received times as the plan took them) a segment the daemon's last run wrote that the last run's
/// own received times do not call old enough: what deletes it is the time since the last run's
/// newest frame, which a clock stepped forward since (or a long stop) says alike. Within a run,
/// received times are on the archive clock and trusted.
fn check_trust(
    catalogue: &Catalogue,
    plan: &Plan,
    queues: &[VecDeque<Candidate>],
    age: Duration,
    now_ns: u64,
) -> Result<(), PruneError> {
    let last_run = last_run(catalogue)?;
    let Some(newest) = last_run.newest else {
        return Ok(());
    };
    let slack = 1_000_000_000;
    if now_ns.saturating_add(slack) < newest {
        return Err(PruneError::Untrusted(format!(
            "this machine's clock ({}) is behind the newest frame the archive holds ({}): ages \
             counted by it would be wrong",
            unix_ns_to_rfc3339(now_ns),
            unix_ns_to_rfc3339(newest)
        )));
    }
    // The cutoff the last run's own times allow: received before it, a segment goes whatever
    // the time since.
    let allowed = newest.saturating_sub(nanos(age));
    let untrusted = plan.delete.iter().find_map(|&(queue, segment)| {
        let (began, at) = *last_run.began_in.get(&queue)?;
        let received = queues[queue].iter().find(|c| c.segment == segment)?.newest;
        (segment >= began && received >= allowed).then_some((queue, segment, at))
    });
    match untrusted {
        Some((queue, segment, at)) => Err(PruneError::Untrusted(format!(
            "it would delete shard {} segment {segment}, which the daemon's last run (started \
             {}) wrote less than that before its newest frame ({}): only the time since that \
             frame, by this machine's clock, makes it old enough, and a clock stepped forward \
             says the same",
            catalogue.shards[queue].shard,
            unix_ns_to_rfc3339(at),
            unix_ns_to_rfc3339(newest)
        ))),
        None => Ok(()),
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// What the archive says of the last run that wrote it.
struct LastRun {
    /// By queue: the segment of the last start's CLOCK record, and the start's time (an
    /// archive of a format version before 5 has none).
    began_in: BTreeMap<usize, (u64, u64)>,
    /// The newest received time of each shard's last segment with frames, the newest of them.
    newest: Option<u64>,
}

/// Reads each shard's segments, newest first, for its last start and its newest frame.
fn last_run(catalogue: &Catalogue) -> Result<LastRun, ArchiveError> {
    let mut last = LastRun {
        began_in: BTreeMap::new(),
        newest: None,
    };
    let spans = catalogue.spans();
    for (queue, files) in catalogue.shards.iter().enumerate() {
        let mut shard_newest = None;
        let sealed = files.sealed.iter().rev().map(|e| e.segment);
        for segment in files.newest.into_iter().chain(sealed) {
            let path = files.dir.join(format::segment_name(segment));
            let contents = match Some(segment) == files.newest {
                true => SegmentIndex::build(&path)?,
                false => SegmentIndex::read_or_rebuild(&files.dir, segment, &path, spans)?,
            };
            shard_newest = shard_newest.or(contents.received.map(|(_, newest)| newest));
            let mut starts = contents.clock.iter().rev();
            let start = starts.find(|(_, e)| e.kind == ClockEventKind::Start);
            if let (Some((_, event)), false) = (start, last.began_in.contains_key(&queue)) {
                last.began_in.insert(queue, (segment, event.archive_ns));
            }
            if shard_newest.is_some() && last.began_in.contains_key(&queue) {
                break;
            }
        }
        last.newest = last.newest.max(shard_newest);
    }
    Ok(last)
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
fn kept_sources(
    catalogue: &Catalogue,
    deleting: &[(usize, u64)],
) -> Result<Vec<KeptSource>, ArchiveError> {
    #[derive(Default)]
    struct Tally {
        frames: u64,
        deleted: u64,
        sequences: SequenceSet,
    }
    let mut tallies: BTreeMap<(u8, u32), Tally> = BTreeMap::new();
    let spans = catalogue.spans();
    for (queue, files) in catalogue.shards.iter().enumerate() {
        let sealed = files.sealed.iter().map(|e| e.segment);
        for segment in sealed.chain(files.newest) {
            let path = files.dir.join(format::segment_name(segment));
            let contents = match Some(segment) == files.newest {
                true => SegmentIndex::build(&path)?,
                false => SegmentIndex::read_or_rebuild(&files.dir, segment, &path, spans)?,
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
