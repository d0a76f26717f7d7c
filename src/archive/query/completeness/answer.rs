//! A completeness answer, typed: per source the sequences held and the gaps with their causes,
//! and what could not be read.

use std::collections::BTreeMap;

use crate::archive::read::DamagedRange;
use crate::domain::clock::ClockEvent;
use crate::domain::frame::SourceKey;
use crate::domain::reception::Reception;
use crate::domain::sequence_set::SequenceSet;

use super::timeline::Bucket;

/// Why sequences between two held runs are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCause {
    /// Retention (or `archive prune`) deleted the segments that held them.
    Retention,
    /// A source of the ingest protocol never sent them: it skipped them.
    NotReceived,
    /// A ground-segment link's source: the spacecraft's count jumped over them, so no station
    /// delivered them (a loss on the space link, or a counter restart).
    SpaceLink,
}

impl GapCause {
    /// `retention`, `not_received` or `space_link`, as the tools and the HTTP API print it.
    pub fn label(self) -> &'static str {
        match self {
            GapCause::Retention => "retention",
            GapCause::NotReceived => "not_received",
            GapCause::SpaceLink => "space_link",
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
    /// Frames held of the window: those received in it, and the `outside_window` ones.
    pub frames: u64,
    /// Sequences held whose received time is outside the window, between frames of the window
    /// in sequence: stamped out of order (the clock stood behind the archive at a start), they
    /// are held, not missing: in `held` and in `frames`, but in no bucket of the timeline.
    pub outside_window: u64,
    /// The sequences held.
    pub held: SequenceSet,
    /// The gaps between the runs held, lowest first.
    pub gaps: Vec<Gap>,
    /// With a [`Timeline`](super::Timeline): its buckets, oldest first.
    pub timeline: Option<Vec<Bucket>>,
    /// A ground-segment link's source: the sequences each station delivered (whose copy was
    /// stored), by the station's name. Empty for a source of the ingest protocol.
    pub stations: BTreeMap<String, SequenceSet>,
}

/// What the archive holds of the sources asked about, and what of it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completeness {
    pub sources: Vec<SourceCompleteness>,
    /// Damaged records passed over, as `archive verify` names them: their frames are not held.
    pub damaged: Vec<DamagedRange>,
    /// Segments missing from a shard's numbering that retention did not delete (an operator
    /// did), as (shard, segment): their frames are not held.
    pub missing: Vec<(usize, u64)>,
    /// The CLOCK records among the segments that meet the window that tell of a step, shard by
    /// shard in file order: where the wall clock stepped while a daemon ran, or where a daemon
    /// started with its clock behind the archive (its received times jump back there).
    pub clock: Vec<ClockRecord>,
}

/// A frame of the window as [`with_frames`](super::with_frames) hands it on: what the passes of
/// stations are made of (`crate::archive::query::passes`), without its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenFrame {
    pub source: SourceKey,
    pub sequence: u64,
    /// When the daemon received it (its archive time), nanoseconds since the Unix epoch.
    pub received_ns: u64,
    /// Its payload's length.
    pub bytes: u64,
    /// A link's frame: what the station said of its reception; `None` for the ingest protocol's.
    pub reception: Option<Reception>,
}

/// A CLOCK record and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRecord {
    pub shard: usize,
    pub segment: u64,
    pub offset: u64,
    pub event: ClockEvent,
}

impl std::fmt::Display for ClockRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (shard, segment, offset) = (self.shard, self.segment, self.offset);
        write!(
            f,
            "shard {shard} segment {segment} offset {offset}: {}",
            self.event
        )
    }
}

impl Completeness {
    /// The lines that say what could not be read, each for an operator's eyes.
    pub fn problems(&self) -> Vec<String> {
        let missing = self.missing.iter().map(|(shard, segment)| {
            format!(
                "shard {shard} segment {segment} is missing (deleted, not by retention): its \
                 frames are not held"
            )
        });
        let damaged = self.damaged.iter().map(ToString::to_string);
        damaged.chain(missing).collect()
    }
}

/// The gaps between the runs of `held`, each cut into what retention deleted (`pruned`) and what
/// never arrived (`never`: the cause for this kind of source).
pub(super) fn gaps(
    held: &SequenceSet,
    pruned: Option<&SequenceSet>,
    never_cause: GapCause,
) -> Vec<Gap> {
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
            gaps.push(gap(a, b, never_cause));
            at = b + 1;
        }
        if at <= last {
            gaps.push(gap(at, last, GapCause::Retention));
        }
    }
    gaps
}

pub(super) fn gap(first: u64, last: u64, cause: GapCause) -> Gap {
    Gap { first, last, cause }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(runs: &[(u64, u64)]) -> SequenceSet {
        SequenceSet::of_runs(runs)
    }

    #[test]
    fn gaps_between_held_runs_say_what_retention_deleted_and_what_never_came() {
        let held = set(&[(0, 9), (20, 29), (40, 49)]);
        assert_eq!(
            gaps(&held, None, GapCause::NotReceived),
            [
                gap(10, 19, GapCause::NotReceived),
                gap(30, 39, GapCause::NotReceived)
            ]
        );
        // Retention deleted 12..=15 and all of 30..=39.
        let pruned = set(&[(12, 15), (30, 39)]);
        assert_eq!(
            gaps(&held, Some(&pruned), GapCause::NotReceived),
            [
                gap(10, 11, GapCause::NotReceived),
                gap(12, 15, GapCause::Retention),
                gap(16, 19, GapCause::NotReceived),
                gap(30, 39, GapCause::Retention),
            ]
        );
        assert_eq!(
            gaps(&set(&[(5, 9)]), Some(&pruned), GapCause::NotReceived),
            []
        );
    }
}
