//! What a reader does when the next frames it needs were deleted, by retention or an operator.
//!
//! By default it stops, and says so ([`ReadError::SegmentDeleted`]): skipping frames silently
//! would break every promise a reader makes downstream. A reader that prefers to go on
//! ([`OnGap::Oldest`]: a follower that asked for it, the NATS sink, whose next segments retention
//! may delete under a size limit) goes on at the oldest segment left, and is told how many frames
//! of each source it wants it skipped ([`Skipped`]), so that it can say so in turn.
//!
//! The count is exact without reading what is gone. Retention writes down each source's deleted
//! sequences before it unlinks a segment (`archive::retention::state`), so a reader that found a
//! segment missing finds its frames there; it only has to take away what was deleted before it
//! started (or before its last skip), which it noted, and what it had read already: a reader keeps
//! the sequences it passed, of both priorities, for the sources it wants ([`GapWatch`]), as a few
//! runs each. A reader that starts at a position whose segment is already gone cannot know which
//! of the frames deleted before it came before that position: its first notice counts every frame
//! of its sources retention deleted.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::Path;

use super::error::ReadError;
use super::filter::FrameFilter;
use crate::archive::retention::state::ShardState;
use crate::archive::segment;
use crate::domain::frame::{SourceKey, SourceKind};
use crate::domain::sequence_set::SequenceSet;

/// The runs a reader keeps of each source's passed sequences, at most: older gaps merge (gaps in
/// what the source sent; the holes near the top, routine frames an emergency overtook that the
/// reader has yet to read, are hundreds at most).
const MOST_RUNS: usize = 1024;

/// What a reader does when its next frames were deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum OnGap {
    /// It stops with [`ReadError::SegmentDeleted`].
    #[default]
    End,
    /// It goes on at the oldest segment left, after a [`Skipped`] notice.
    Oldest,
}

/// Frames a reader skipped because their segments were deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub shard: usize,
    /// The first segment it found missing.
    pub deleted: u64,
    /// The segment it goes on in: the oldest one left at or after `deleted`.
    pub resumed: u64,
    /// Of each source the reader wants, the frames deleted that it had not read (of both
    /// priorities), by kind and id; a source it skipped nothing of is left out.
    pub sources: Vec<(SourceKey, u64)>,
}

impl Skipped {
    /// Every source's skipped frames together.
    pub fn frames(&self) -> u64 {
        self.sources.iter().map(|(_, frames)| frames).sum()
    }

    /// Logs the skip (at warn level) as `reader`'s.
    pub(crate) fn log(&self, reader: &str) {
        tracing::warn!(
            reader,
            shard = self.shard,
            deleted = self.deleted,
            resumed = self.resumed,
            frames = self.frames(),
            "segments a reader needed were deleted; it goes on at the oldest segment left"
        );
    }
}

/// The sequences of each source a reader passed in one read, both priorities.
pub(crate) type Passed = HashMap<SourceKey, SequenceSet>;

/// What a shard's reader remembers to count what a deletion made it skip.
#[derive(Debug, Default)]
pub(crate) struct GapWatch {
    /// Each source's deleted sequences when the reader last looked: not skips of its own.
    seen: BTreeMap<(u8, u32), SequenceSet>,
    /// The sequences of the wanted sources it has passed since.
    passed: Passed,
}

impl GapWatch {
    /// A reader starting now in the shard in `dir`: what is deleted already is not its skip.
    pub(crate) fn starting(dir: &Path) -> io::Result<GapWatch> {
        let state = ShardState::read(dir)?;
        Ok(GapWatch {
            seen: pruned_sequences(&state),
            passed: Passed::new(),
        })
    }

    /// Adds the sequences of one read.
    pub(crate) fn pass(&mut self, passed: Passed) {
        for (key, sequences) in passed {
            let all = self.passed.entry(key).or_default();
            sequences.runs().for_each(|(a, b)| all.insert_run(a, b));
            all.merge_oldest_past(MOST_RUNS);
        }
    }

    /// Segment `deleted` of shard `shard` (in `dir`) is gone: what the reader skipped of the
    /// sources `filter` wants, with the segment it goes on in (`resumed`). Blocking.
    pub(crate) fn skip(
        &mut self,
        dir: &Path,
        shard: usize,
        deleted: u64,
        filter: &FrameFilter,
    ) -> Result<Skipped, ReadError> {
        // The state first: retention writes it before it unlinks, so a segment it names deleted
        // may still be listed, and its frames are counted skipped.
        let state = ShardState::read(dir)?;
        let resumed = segment::list_segments(dir)?
            .into_iter()
            .map(|(index, _)| index)
            .find(|&index| index >= deleted.max(state.first_retained))
            .ok_or(ReadError::SegmentDeleted {
                shard,
                segment: deleted,
            })?;
        let now = pruned_sequences(&state);
        let mut sources = Vec::new();
        for (&(kind, id), sequences) in &now {
            let Some(kind) = SourceKind::from_byte(kind) else {
                continue;
            };
            let key = (kind, id);
            if !(filter.sources.is_empty() || filter.sources.contains(&key)) {
                continue;
            }
            let before = self.seen.get(&(kind.to_byte(), id));
            let read = self.passed.get(&key);
            let frames = count_new(sequences, before, read);
            if frames > 0 {
                sources.push((key, frames));
            }
        }
        self.seen = now;
        self.passed.clear();
        Ok(Skipped {
            shard,
            deleted,
            resumed,
            sources,
        })
    }
}

/// Each source's deleted sequences in a shard's retention state.
fn pruned_sequences(state: &ShardState) -> BTreeMap<(u8, u32), SequenceSet> {
    let pruned = state.pruned.iter();
    pruned.map(|(&key, p)| (key, p.sequences.clone())).collect()
}

/// How many sequences of `now` are in neither `before` nor `read`.
fn count_new(now: &SequenceSet, before: Option<&SequenceSet>, read: Option<&SequenceSet>) -> u64 {
    now.runs()
        .map(|(first, last)| {
            let mut left = vec![(first, last)];
            for known in [before, read].into_iter().flatten() {
                left = (left.into_iter())
                    .flat_map(|(a, b)| known.missing_in(a, b))
                    .collect();
            }
            left.iter().map(|(a, b)| b - a + 1).sum::<u64>()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(runs: &[(u64, u64)]) -> SequenceSet {
        SequenceSet::of_runs(runs)
    }

    #[test]
    fn a_skip_counts_what_was_deleted_since_and_not_read() {
        // Deleted before the reader started: 0..=99. Since: 100..=199 and an emergency at 250.
        // The reader read 100..=149 and 250 of them.
        let now = set(&[(0, 199), (250, 250)]);
        let before = set(&[(0, 99)]);
        let read = set(&[(100, 149), (250, 250)]);
        assert_eq!(count_new(&now, Some(&before), Some(&read)), 50);
        assert_eq!(count_new(&now, None, None), 201);
    }
}
