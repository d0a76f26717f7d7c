//! Reading a shard by received time: only the parts of its segments that can hold frames received
//! in a reader's window ([`FrameFilter::since`] to [`FrameFilter::until`]), and knowing when none
//! can come any more.
//!
//! Why the indexes and not a search of the files: received times are not in order inside a shard
//! (an emergency frame overtakes queued routine ones; frames recovered from a journal at a restart
//! are written after newer ones), so no bisection of a segment is exact. A sealed segment's index
//! (`crate::archive::format::index`) has the oldest and newest received time of every block of about
//! 64 KiB (a station's frames in smaller ones): the reader reads the blocks that meet its window and jumps over the others, and over
//! whole segments that hold nothing of it. The open segment has no index yet; it is read whole.
//!
//! When a window ends (`until`), a shard has nothing more to give once every sealed segment left
//! is read or jumped over and either its writer has stopped and its files are read to their end,
//! or, while it writes on, the archive clock (`crate::domain::clock`, which stamps the frames and
//! never steps) has passed `until` by [`UNTIL_SETTLE`] with everything durable read: a frame
//! waits in the daemon's queues for far less between its reception and its record, so none of the
//! window can still be on its way. The wall clock has no say: one stepped back would hold the
//! answer for as long as the step. (Frames recovered from a journal at a restart, written later
//! than that, are the exception: a reading of a stopped archive finds them, a live one may not.)

use std::path::Path;
use std::time::Duration;

use super::cursor::Cursor;
use super::error::ReadError;
use super::segment::Wanted;
use crate::archive::format;
use crate::archive::format::index::{SegmentIndex, SpanCache};
use crate::archive::format::retention_file::Retained;
use crate::domain::clock::ArchiveClock;
use crate::domain::filter::FrameFilter;
use crate::domain::position::DurableEnd;

/// How long after `until` a frame of the window may still be stored in a shard being written:
/// longer than any wait in the daemon's queues.
pub(crate) const UNTIL_SETTLE: Duration = Duration::from_secs(5);

/// A sealed segment's parts that hold frames of a window: its index and the byte ranges.
type SegmentRanges = (u64, Vec<(u64, u64)>);

/// A reader's window in one shard.
#[derive(Debug)]
pub(super) struct Window {
    /// What it asks of the sealed segments' indexes.
    wanted: Wanted,
    until: Option<u64>,
    /// The ranges of the window in the sealed segment read last.
    ranges: Option<SegmentRanges>,
    /// No frame of the window can come any more in this shard.
    pub(super) done: bool,
    /// The shard's writer stopped (the daemon drained) before the window's end: frames received
    /// after the restart may still belong to it. Such a reading is done, not finished.
    pub(super) cut_short: bool,
}

impl Window {
    /// The window of `filter`, if it has one.
    pub(super) fn of(filter: &FrameFilter) -> Option<Window> {
        filter.has_window().then(|| Window {
            wanted: Wanted::of(filter),
            until: filter.until,
            ranges: None,
            done: false,
            cut_short: false,
        })
    }

    /// Where to read next from `cursor` in shard `shard` (in `dir`), whose durable end is `end`,
    /// and how far: in a sealed segment, the next part that can hold frames of the window (its
    /// end the limit); past the sealed segments that hold no more of it, to the next one's start
    /// (one read per part, not one per segment of other times); elsewhere `cursor` as it is, to
    /// the durable end. A sealed segment that is missing is left to the read, which says so.
    /// Blocking.
    pub(super) fn plan(
        &mut self,
        dir: &Path,
        mut cursor: Cursor,
        end: DurableEnd,
        spans: &SpanCache,
    ) -> Result<(Cursor, Option<u64>), ReadError> {
        loop {
            if cursor.segment >= end.segment {
                return Ok((cursor, None));
            }
            if self.ranges.as_ref().is_none_or(|r| r.0 != cursor.segment) {
                let path = dir.join(format::segment_name(cursor.segment));
                let Ok(len) = std::fs::metadata(&path).map(|meta| meta.len()) else {
                    return Ok((cursor, None));
                };
                let wanted = &self.wanted;
                let ranges = match spans.known(dir, cursor.segment, len) {
                    // A segment of other times: passed over without its index.
                    Some(span)
                        if !span.is_some_and(|(oldest, newest)| wanted.meets(oldest, newest)) =>
                    {
                        Vec::new()
                    }
                    _ => wanted.sealed(dir, cursor.segment, &path, spans)?.ranges,
                };
                self.ranges = Some((cursor.segment, ranges));
            }
            let Some((segment, ranges)) = &self.ranges else {
                return Ok((cursor, None));
            };
            let at = |offset| Cursor {
                segment: *segment,
                offset,
                first_index: 0,
            };
            match ranges.iter().find(|r| r.1 > cursor.offset) {
                Some(&(start, stop)) if cursor.offset < start => {
                    return Ok((at(start), Some(stop)))
                }
                Some(&(_, stop)) => return Ok((cursor, Some(stop))),
                // Nothing more of the window here: on to the next segment, which a sealed one
                // always has (a missing one is found by the next turn, or by the read).
                None => cursor = Cursor::segment_start(segment + 1),
            }
        }
    }

    /// The shard is read to its durable end: it is done if it is `retired` (nothing is written
    /// there any more), its writer stopped (`open` false) or the clock is past `until` and the
    /// settling time; cut short if the writer stopped before `until` (every frame received
    /// before the stop is durable by then, none after it).
    pub(super) fn reached_end(&mut self, open: bool, retired: bool) {
        if retired {
            self.done = true;
        } else if let Some(until) = self.until {
            let now = ArchiveClock::process().now();
            if !open && !self.done {
                self.cut_short = now <= until;
            }
            self.done |= !open || now > until.saturating_add(settle_ns());
        }
    }

    /// How long until the clock passes `until` and the settling time; `None` without `until`, or
    /// once it has.
    pub(super) fn settles_in(&self) -> Option<Duration> {
        let until = self.until.filter(|_| !self.done)?;
        let now = ArchiveClock::process().now();
        let at = until.saturating_add(settle_ns());
        (at >= now).then(|| Duration::from_nanos(at - now + 1))
    }
}

fn settle_ns() -> u64 {
    UNTIL_SETTLE.as_nanos() as u64
}

/// A shard holds no frame received before `oldest` any more: retention deleted its older
/// segments. A reader whose window starts before it is told so once, at its start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Earliest {
    pub shard: usize,
    /// The oldest received time the shard still holds (nanoseconds since the Unix epoch).
    pub oldest: u64,
}

/// What a reader whose window starts at `since` is told of shard `shard` (in `dir`): nothing when
/// retention never deleted a segment there, or when the oldest frame left is not after `since`.
/// Blocking.
pub(super) fn earliest(
    dir: &Path,
    shard: usize,
    since: u64,
    spans: &SpanCache,
) -> Result<Option<Earliest>, ReadError> {
    let retained = Retained::read(dir)?;
    if retained.state.deleted_segments == 0 {
        return Ok(None);
    }
    let mut left = retained.segments.iter();
    let oldest = match left.next() {
        // The newest segment has no index yet: read it.
        Some((_, path)) if left.next().is_none() => SegmentIndex::build(path)?.received,
        Some((index, path)) => SegmentIndex::read_or_rebuild(dir, *index, path, spans)?.received,
        None => None,
    };
    Ok(oldest
        .map(|(oldest, _)| oldest)
        .filter(|&oldest| since < oldest)
        .map(|oldest| Earliest { shard, oldest }))
}
