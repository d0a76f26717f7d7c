//! A walk of whole shards: each shard with a durable end, its retained segments up to that end,
//! and the holes in their numbering. What a reading of every segment walks (completeness), where
//! the cursors read on one segment after another.
//!
//! Why here: which segments a shard still has is the read side's to say once, for every reader
//! (retention's [`Retained`] listing, cut at the durable end); and a hole in the numbering
//! is news only past what retention deleted, which a reader checks against the state it reads
//! *after* its reading (retention records a deletion before it unlinks, so that state names
//! every segment deleted before or during the reading): [`ShardWalk::by_hand`].

use std::path::{Path, PathBuf};

use super::shards::DurableEnds;
use crate::archive::format::retention_file::{Retained, ShardState};
use crate::archive::format::{self, ArchiveError};
use crate::domain::position::DurableEnd;

/// One shard's retained segments up to its durable end.
#[derive(Debug)]
pub(crate) struct ShardWalk {
    pub shard: usize,
    pub dir: PathBuf,
    pub end: DurableEnd,
    /// By index, oldest first; the last is the segment the end is in, when it is there.
    pub segments: Vec<(u64, PathBuf)>,
    /// Segments missing from the numbering: below the first listed one down to the first
    /// retained, and between listed ones.
    holes: Vec<u64>,
}

impl ShardWalk {
    /// The shard `shard` in `dir`, up to `end`. Blocking.
    fn of(shard: usize, dir: PathBuf, end: DurableEnd) -> Result<ShardWalk, ArchiveError> {
        let Retained {
            state,
            mut segments,
        } = Retained::read(&dir)?;
        segments.retain(|(index, _)| *index <= end.segment);
        let holes = holes(state.first_retained, &segments);
        Ok(ShardWalk {
            shard,
            dir,
            end,
            segments,
            holes,
        })
    }

    /// The segments missing that retention did not delete: the holes of the listing and `gone`
    /// (listed, but gone when read), less those below `after.first_retained`, the state read
    /// after the reading.
    pub(crate) fn by_hand(&self, gone: Vec<u64>, after: &ShardState) -> Vec<u64> {
        let mut missing: Vec<u64> = (self.holes.iter().copied())
            .chain(gone)
            .filter(|&index| index >= after.first_retained)
            .collect();
        missing.sort_unstable();
        missing
    }
}

/// The indexes missing from `listed` (oldest first): segments are numbered without gaps, and
/// retention deletes the oldest, below `first_retained`; so each is the next one expected after
/// that, or after the last one listed.
fn holes(first_retained: u64, listed: &[(u64, PathBuf)]) -> Vec<u64> {
    let mut expected = (first_retained > 0).then_some(first_retained);
    let mut holes = Vec::new();
    for (index, _) in listed {
        holes.extend(expected.map_or(0..0, |expected| expected..*index));
        expected = Some(index + 1);
    }
    holes
}

impl DurableEnds {
    /// Every shard of the archive at `root` that has an end here, walked up to it. Blocking.
    pub(crate) fn walk(&self, root: &Path) -> Result<Vec<ShardWalk>, ArchiveError> {
        let mut walks = Vec::new();
        for (shard, dir) in format::list_shards(root)? {
            let end = self
                .iter()
                .find(|(k, _)| *k == shard)
                .map(|(_, e)| *e.borrow());
            if let Some(end) = end {
                walks.push(ShardWalk::of(shard, dir, end)?);
            }
        }
        Ok(walks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(first_retained: u64, listed: &[u64]) -> ShardWalk {
        let segments: Vec<_> = listed.iter().map(|&i| (i, PathBuf::new())).collect();
        ShardWalk {
            shard: 0,
            dir: PathBuf::new(),
            end: DurableEnd { segment: 9, len: 0 },
            holes: holes(first_retained, &segments),
            segments,
        }
    }

    #[test]
    fn a_hole_is_missing_by_hand_only_past_what_retention_deleted_meanwhile() {
        let state = |first_retained| ShardState {
            first_retained,
            ..ShardState::default()
        };
        let walk = walk(3, &[5, 6, 8]);
        assert_eq!(walk.by_hand(vec![], &state(3)), [3, 4, 7]);
        assert_eq!(
            self::walk(0, &[0, 2]).by_hand(vec![], &state(0)),
            [1],
            "a shard retention never touched starts at 0"
        );
        assert_eq!(walk.by_hand(vec![6], &state(3)), [3, 4, 6, 7]);
        assert_eq!(
            walk.by_hand(vec![5, 6], &state(7)),
            [7],
            "deleted by retention during the reading"
        );
    }
}
