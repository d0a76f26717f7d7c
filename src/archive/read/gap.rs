//! What a reader does when the next frames it needs were deleted, by retention or an operator.
//!
//! By default it stops, and says so ([`ReadError::SegmentDeleted`]): skipping frames silently
//! would break every promise a reader makes downstream. A reader that prefers to go on
//! ([`OnGap::Oldest`]: a follower that asked for it, the NATS sink, whose next segments retention
//! may delete under a size limit) goes on at the oldest segment left, and is told how many frames
//! of each source it wants it skipped ([`Skipped`]), so that it can say so in turn.
//!
//! The count is exact without reading what is gone. Retention counts each source's deleted frames
//! in the shard's state before it unlinks a segment (`archive::retention::state`), and within a
//! shard it deletes in index order. So when a reader finds its next segment missing, every
//! segment it read since it last looked is deleted too, each after the reader read it: the frames
//! deleted since it last looked are those it skipped and those it had read. It keeps how many it
//! read of each source it wants, of both priorities, since its last look ([`GapWatch`]), and the
//! skip is the difference. (Counts, not the deleted sequences: those are kept as at most 1,024
//! runs, merging the oldest gaps, and a set widened so would hide skipped frames inside it.) A
//! reader that starts after a position inside a segment, or at the frames to come, counts the
//! frames of its first segment before its start as skipped when that segment goes before it
//! reads on; one that starts at a position whose segment is already gone cannot know which of the
//! frames deleted before it came before that position: its first notice counts every frame of
//! its sources retention deleted.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::error::ReadError;
use crate::archive::format::retention_file::{Retained, ShardState};
use crate::archive::format::ArchiveError;
use crate::domain::filter::FrameFilter;
use crate::domain::frame::{SourceKey, SourceKind};

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

/// How many frames of each source a reader passed in one read, both priorities.
pub(crate) type Passed = HashMap<SourceKey, u64>;

/// What a shard's reader remembers to count what a deletion made it skip.
#[derive(Debug, Default)]
pub(crate) struct GapWatch {
    /// Each source's deleted frames when the reader last looked: not skips of its own.
    seen: BTreeMap<(u8, u32), u64>,
    /// The frames of the wanted sources it has passed since.
    passed: Passed,
}

impl GapWatch {
    /// A reader starting now in the shard in `dir`: what is deleted already is not its skip.
    pub(crate) fn starting(dir: &Path) -> Result<GapWatch, ArchiveError> {
        let state = ShardState::read(dir)?;
        Ok(GapWatch {
            seen: pruned_frames(&state),
            passed: Passed::new(),
        })
    }

    /// Adds the frames of one read.
    pub(crate) fn pass(&mut self, passed: Passed) {
        for (key, frames) in passed {
            *self.passed.entry(key).or_default() += frames;
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
        let Retained { state, segments } = Retained::read(dir)?;
        let resumed = (segments.into_iter())
            .map(|(index, _)| index)
            .find(|&index| index >= deleted)
            .ok_or(ReadError::SegmentDeleted {
                shard,
                segment: deleted,
            })?;
        let now = pruned_frames(&state);
        let mut sources = Vec::new();
        for (&(kind, id), &deleted) in &now {
            let Some(kind) = SourceKind::from_byte(kind) else {
                continue;
            };
            let key = (kind, id);
            if !(filter.sources.is_empty() || filter.sources.contains(&key)) {
                continue;
            }
            let before = self.seen.get(&(kind.to_byte(), id)).copied().unwrap_or(0);
            let read = self.passed.get(&key).copied().unwrap_or(0);
            let frames = deleted.saturating_sub(before).saturating_sub(read);
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

/// Each source's deleted frames in a shard's retention state.
fn pruned_frames(state: &ShardState) -> BTreeMap<(u8, u32), u64> {
    state
        .pruned
        .iter()
        .map(|(&key, p)| (key, p.frames))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::archive::format;
    use crate::archive::format::index::SegmentIndex;
    use crate::archive::format::retention_file::Deleted;

    /// A source's frames with sequences far apart: one run each.
    fn scattered(first: u64, frames: u64) -> SegmentIndex {
        let mut contents = SegmentIndex::default();
        let sequences = (0..frames).map(|n| first + 2 * n);
        contents.add(8, (SourceKind::LiveUplink, 7), 1, sequences);
        contents
    }

    /// Retention keeps at most 1,024 runs of a source's deleted sequences, merging the oldest: a
    /// skip past them still counts exactly the frames deleted that the reader had not read.
    #[test]
    fn a_skip_counts_what_was_deleted_since_and_not_read_however_scattered() {
        let dir = std::env::temp_dir().join(format!("gap-count-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        for index in 0..4 {
            fs::write(dir.join(format::segment_name(index)), format::MAGIC).unwrap();
        }
        let mut gap = GapWatch::starting(&dir).unwrap();
        // The reader read segment 0 (1,200 frames, every other sequence from 0); then retention
        // deleted it and segment 1 (1,200 more, from 2,400): 2,400 runs, merged to 1,024.
        gap.pass(Passed::from([((SourceKind::LiveUplink, 7), 1_200)]));
        let mut state = ShardState::read(&dir).unwrap();
        let deleted =
            [(0, scattered(0, 1_200)), (1, scattered(2_400, 1_200))].map(|(segment, contents)| {
                Deleted {
                    segment,
                    bytes: 1,
                    contents,
                }
            });
        state.delete(&dir, &deleted, 1).unwrap();
        let pruned = ShardState::read(&dir).unwrap();
        let runs = pruned
            .pruned((SourceKind::LiveUplink, 7))
            .unwrap()
            .sequences
            .runs();
        assert!(runs.count() <= 1_024, "the deleted sequences were merged");
        let skipped = gap.skip(&dir, 0, 1, &FrameFilter::default()).unwrap();
        assert_eq!(skipped.resumed, 2);
        assert_eq!(skipped.sources, [((SourceKind::LiveUplink, 7), 1_200)]);
        // Nothing more deleted: the next skip finds none.
        fs::remove_file(dir.join(format::segment_name(2))).unwrap();
        let again = gap.skip(&dir, 0, 2, &FrameFilter::default()).unwrap();
        assert_eq!((again.resumed, again.sources), (3, vec![]));
        fs::remove_dir_all(&dir).unwrap();
    }
}
