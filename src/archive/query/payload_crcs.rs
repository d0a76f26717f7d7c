//! The CRC-32 of the bytes of given frames (source and sequence): what a backfill compares a
//! recording's packets with, to tell the cycle of 16,384 counts they belong to when the counts
//! alone meet the group's in several (a pass held across wraps).
//!
//! Why the indexes first: a sealed segment's index holds each source's sequences exactly, so
//! only segments holding one of the frames asked for are read, and a shard's newest segment
//! (no index yet) up to its durable end. The few frames a backfill asks for cost a few
//! segments' reading, not the archive's.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use super::last_seen::{each_frame, segment_len};
use crate::archive::format::index::SegmentIndex;
use crate::archive::format::ArchiveError;
use crate::archive::read::{DurableEnds, SegmentFile, ShardWalk};
use crate::domain::frame::SourceKey;

/// A frame asked for: its source and sequence.
pub type FrameAt = (SourceKey, u64);

/// The CRC-32 of each frame of `wanted` that the archive at `root` holds up to `ends` (as they
/// are now); a frame it does not hold is absent. Damaged records are passed over, a segment
/// retention deleted meanwhile too. Blocking.
pub fn payload_crcs(
    root: &Path,
    ends: &DurableEnds,
    wanted: &BTreeSet<FrameAt>,
) -> Result<HashMap<FrameAt, u32>, ArchiveError> {
    let mut found = HashMap::new();
    if wanted.is_empty() {
        return Ok(found);
    }
    for walk in ends.frozen().walk(root)? {
        for (index, path) in &walk.segments {
            match shard_segment(&walk, *index, path, wanted, &mut found) {
                Err(err) if err.is_gone() => continue,
                done => done?,
            }
        }
    }
    Ok(found)
}

/// Reads segment `index` of the walk's shard if it may hold a frame of `wanted`.
fn shard_segment(
    walk: &ShardWalk,
    index: u64,
    path: &Path,
    wanted: &BTreeSet<FrameAt>,
    found: &mut HashMap<FrameAt, u32>,
) -> Result<(), ArchiveError> {
    let to = match index < walk.end.segment {
        true => {
            let len = segment_len(path)?;
            if !may_hold(&walk.dir, index, len, wanted) {
                return Ok(());
            }
            len
        }
        false => walk.end.len,
    };
    let segment = SegmentFile::open(walk.shard, index, path)?;
    each_frame(&segment, to, |frame| {
        let at = ((frame.kind, frame.source_id), frame.sequence);
        if wanted.contains(&at) {
            found.insert(at, crc32fast::hash(&frame.payload));
        }
    })
}

/// Whether sealed segment `index` (of `len` bytes) may hold a frame of `wanted`: its index
/// says so, or it has no current index.
fn may_hold(dir: &Path, index: u64, len: u64, wanted: &BTreeSet<FrameAt>) -> bool {
    let Some(contents) = SegmentIndex::read_current(dir, index, len) else {
        return true;
    };
    wanted.iter().any(|&((kind, id), sequence)| {
        (contents.sources.get(&(kind.to_byte(), id)))
            .is_some_and(|span| span.sequences.contains(sequence))
    })
}
