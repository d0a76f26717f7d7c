//! What the archive holds of each source over a time window, and what it is missing: the runs of
//! sequences held, and each gap between them with its cause, retention's deletions or sequences
//! that never arrived (the source skipped them, or a link lost them).
//!
//! Why from the indexes: an operator asks this about a day or a pass, and a day of a busy station
//! is gigabytes. A sealed segment's index (`crate::archive::index`) holds each source's sequences
//! and the received times of its blocks, so a segment wholly inside the window is answered from
//! its index alone, one wholly outside is passed over, and only the blocks of the few segments the
//! window's ends cut through (and each shard's newest segment, which has no index yet) are read.
//! Retention's state (`crate::archive::retention::state`) says which sequences it deleted.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::Path;

use super::index::SegmentIndex;
use super::read::{DurableEnds, FrameFilter};
use super::retention::state::ShardState;
use super::segment::{self, Entry};
use super::{layout, DurableEnd};
use crate::domain::frame::{SourceKey, SourceKind};
use crate::domain::sequence_set::SequenceSet;

/// Why sequences between two held runs are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCause {
    /// Retention (or `archive prune`) deleted the segments that held them.
    Retention,
    /// They never reached the archive: the source skipped them, or they were lost on the way.
    NotReceived,
}

impl GapCause {
    /// `retention` or `not_received`, as the tools and the HTTP API print it.
    pub fn label(self) -> &'static str {
        match self {
            GapCause::Retention => "retention",
            GapCause::NotReceived => "not_received",
        }
    }
}

/// Missing sequences `first..=last`, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub first: u64,
    pub last: u64,
    pub cause: GapCause,
}

/// What the archive holds of one source in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCompleteness {
    pub source: SourceKey,
    pub frames: u64,
    /// The sequences held.
    pub held: SequenceSet,
    /// The gaps between the runs held, lowest first.
    pub gaps: Vec<Gap>,
}

/// Each source's sequences, by kind byte and id, and its frame count.
type Held = BTreeMap<(u8, u32), (u64, SequenceSet)>;

/// [`completeness`] of the archive's files as they are now (a stopped archive, or one read beside
/// its daemon: each shard to its newest segment's last whole record). Blocking.
pub fn of_files(root: &Path, filter: &FrameFilter) -> io::Result<Vec<SourceCompleteness>> {
    completeness(root, &super::export::stopped_ends(root)?, filter)
}

/// What the archive at `root` holds of each source `filter` wants (its sources, its window; not
/// its priority: completeness is of both) up to `ends`, by source. Blocking.
pub fn completeness(
    root: &Path,
    ends: &DurableEnds,
    filter: &FrameFilter,
) -> io::Result<Vec<SourceCompleteness>> {
    let mut held = Held::new();
    let mut pruned: BTreeMap<(u8, u32), SequenceSet> = BTreeMap::new();
    for (shard, dir) in layout::list_shards(root)? {
        let Some(end) = ends
            .iter()
            .find(|(k, _)| *k == shard)
            .map(|(_, e)| *e.borrow())
        else {
            continue;
        };
        let state = ShardState::read(&dir)?;
        for (&key, span) in &state.pruned {
            let sequences = pruned.entry(key).or_default();
            span.sequences
                .runs()
                .for_each(|(a, b)| sequences.insert_run(a, b));
        }
        for (index, path) in segment::list_segments(&dir)? {
            if index < state.first_retained || index > end.segment {
                continue;
            }
            add_segment(&dir, (index, &path), end, filter, &mut held)?;
        }
    }
    Ok(held
        .into_iter()
        .filter_map(|((kind, id), (frames, held))| {
            let source = (SourceKind::from_byte(kind)?, id);
            let gaps = gaps(&held, pruned.get(&(kind, id)));
            Some(SourceCompleteness {
                source,
                frames,
                held,
                gaps,
            })
        })
        .collect())
}

/// Adds what segment `index` (at `path`, in `dir`) holds of the window: from its index when it
/// is sealed and wholly inside, by reading the blocks that meet the window otherwise.
fn add_segment(
    dir: &Path,
    (index, path): (u64, &Path),
    end: DurableEnd,
    filter: &FrameFilter,
    held: &mut Held,
) -> io::Result<()> {
    let window = filter.received();
    let ranges = match index < end.segment {
        true => {
            let contents = SegmentIndex::read_or_rebuild(dir, index, path)?;
            let inside = contents.received.is_some_and(|(oldest, newest)| {
                window.contains(&oldest) && window.contains(&newest)
            });
            if inside {
                for (&key, span) in &contents.sources {
                    if wants(filter, key) {
                        let (frames, sequences) = held.entry(key).or_default();
                        *frames += span.frames;
                        span.sequences
                            .runs()
                            .for_each(|(a, b)| sequences.insert_run(a, b));
                    }
                }
                return Ok(());
            }
            contents.ranges_between(*window.start(), *window.end())
        }
        false => vec![(segment::MAGIC.len() as u64, end.len)],
    };
    let file = File::open(path).map_err(|err| segment::with_path(err, path, "cannot read"))?;
    for (mut from, to) in ranges {
        while from < to {
            let records = segment::read_records(&file, path, from, to, 1 << 20)?;
            for (_, entry) in records.entries {
                let Entry::Frame(frame) = entry else { continue };
                let key = (frame.kind.to_byte(), frame.source_id);
                if window.contains(&frame.received_unix_ns) && wants(filter, key) {
                    let (frames, sequences) = held.entry(key).or_default();
                    *frames += 1;
                    sequences.insert_run(frame.sequence, frame.sequence);
                }
            }
            from = records.next;
        }
    }
    Ok(())
}

/// The answer as JSON, as `GET /archive/completeness` and `aggregator archive gaps --json` give
/// it: the window (`null` for an open end) and each source's frames, runs held and gaps.
pub fn to_json(sources: &[SourceCompleteness], filter: &FrameFilter) -> serde_json::Value {
    let time = |ns: Option<u64>| ns.map(crate::domain::display::unix_ns_to_rfc3339);
    let sources: Vec<serde_json::Value> = sources
        .iter()
        .map(|s| {
            let held: Vec<[u64; 2]> = s.held.runs().map(|(a, b)| [a, b]).collect();
            let gaps: Vec<serde_json::Value> = (s.gaps.iter())
                .map(|g| {
                    serde_json::json!({
                        "first": g.first,
                        "last": g.last,
                        "frames": g.last - g.first + 1,
                        "cause": g.cause.label(),
                    })
                })
                .collect();
            serde_json::json!({
                "kind": s.source.0.label(),
                "source": s.source.1,
                "frames": s.frames,
                "first": s.held.first(),
                "last": s.held.last(),
                "held": held,
                "gaps": gaps,
            })
        })
        .collect();
    serde_json::json!({
        "from": time(filter.since),
        "to": time(filter.until),
        "sources": sources,
    })
}

fn wants(filter: &FrameFilter, (kind, id): (u8, u32)) -> bool {
    let source = SourceKind::from_byte(kind).map(|kind| (kind, id));
    filter.sources.is_empty() || source.is_some_and(|s| filter.sources.contains(&s))
}

/// The gaps between the runs of `held`, each cut into what retention deleted (`pruned`) and what
/// never arrived.
fn gaps(held: &SequenceSet, pruned: Option<&SequenceSet>) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let runs: Vec<(u64, u64)> = held.runs().collect();
    for pair in runs.windows(2) {
        let (first, last) = (pair[0].1 + 1, pair[1].0 - 1);
        let never = match pruned {
            Some(pruned) => pruned.missing_in(first, last),
            None => vec![(first, last)],
        };
        // Between the pieces that never arrived, retention's.
        let mut at = first;
        for (a, b) in never {
            if a > at {
                gaps.push(gap(at, a - 1, GapCause::Retention));
            }
            gaps.push(gap(a, b, GapCause::NotReceived));
            at = b + 1;
        }
        if at <= last {
            gaps.push(gap(at, last, GapCause::Retention));
        }
    }
    gaps
}

fn gap(first: u64, last: u64, cause: GapCause) -> Gap {
    Gap { first, last, cause }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(runs: &[(u64, u64)]) -> SequenceSet {
        let mut set = SequenceSet::default();
        runs.iter().for_each(|&(a, b)| set.insert_run(a, b));
        set
    }

    #[test]
    fn gaps_between_held_runs_say_what_retention_deleted_and_what_never_came() {
        let held = set(&[(0, 9), (20, 29), (40, 49)]);
        assert_eq!(
            gaps(&held, None),
            [
                gap(10, 19, GapCause::NotReceived),
                gap(30, 39, GapCause::NotReceived)
            ]
        );
        // Retention deleted 12..=15 and all of 30..=39.
        let pruned = set(&[(12, 15), (30, 39)]);
        assert_eq!(
            gaps(&held, Some(&pruned)),
            [
                gap(10, 11, GapCause::NotReceived),
                gap(12, 15, GapCause::Retention),
                gap(16, 19, GapCause::NotReceived),
                gap(30, 39, GapCause::Retention),
            ]
        );
        assert_eq!(gaps(&set(&[(5, 9)]), Some(&pruned)), []);
    }
}
