//! Reading one shard's segment stream: where a start lies in it ([`locate`]), and from a cursor up
//! to the shard's durable end, a bounded chunk at a time ([`read`]), from the segment files.
//! [`super::shards`] reads every shard.
//!
//! Every function here blocks on the disk; the readers call them through `spawn_blocking`, so the
//! runtime that runs ingest never waits for a reader's read. A reader reads files, never the
//! pipeline's memory, so it cannot hold the pipeline back: a reader that falls behind is only
//! further back in the files (as a Kafka consumer or Vector's disk buffer reader is).
//!
//! A segment is read under its name, or under its staging name (`….seg.new`) while the disk
//! thread has not yet renamed it: with `archive.sync = never` a write is durable before the
//! segment has its name. A rename keeps the file, so either name reads the same bytes. Segments
//! are numbered without gaps (a restart starts the next index), so a missing next segment is one
//! an operator deleted, and the reader is told ([`next_segment`]) instead of skipping its frames.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use super::error::{DamagedRange, ReadError};
use super::gap::Passed;
use super::run::{ArchivedFrame, FrameRun};
use super::segment::{advise, Advice, Piece, SegmentFile};
use super::start::Start;
use crate::archive::format::{self, ArchiveError, Entry, Records, MAGIC};
use crate::domain::filter::FrameFilter;
use crate::domain::position::DurableEnd;
use crate::domain::position::{Position, ShardPosition};

/// About how many bytes of records one read takes: what a reader holds in memory at most,
/// besides a single record larger than this.
pub(crate) const READ_BUDGET: usize = 256 * 1024;

/// Where a reader reads next: the record at `offset` of segment `segment`, from its frame
/// `first_index` on (a position resumes inside a FRAMES record).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub segment: u64,
    pub offset: u64,
    pub first_index: u32,
}

/// The frames one read found, and where the next read starts.
#[derive(Debug)]
pub(crate) struct Chunk {
    /// The frames the filter wants, in archive order, a run per record.
    pub runs: Vec<FrameRun>,
    pub cursor: Cursor,
    /// How many frames it passed of each source the filter wants, both priorities: with `track`.
    pub passed: Passed,
    /// The damaged bytes it passed over instead of reading frames: with `pass_damage`.
    pub damaged: Option<DamagedRange>,
}

impl Cursor {
    /// The start of segment `segment`, after its magic.
    pub(super) fn segment_start(segment: u64) -> Cursor {
        Cursor {
            segment,
            offset: MAGIC.len() as u64,
            first_index: 0,
        }
    }

    /// Whether everything up to `end` has been read.
    pub(crate) fn has_reached(&self, end: DurableEnd) -> bool {
        (self.segment, self.offset) >= (end.segment, end.len)
    }
}

/// Opens segment `index` under its name or its staging name; `None` when it has neither. The name
/// is tried again last: the disk thread may rename the segment between the first two tries.
fn open_segment(dir: &Path, index: u64) -> Result<Option<(File, PathBuf)>, ArchiveError> {
    let named = format::segment_name(index);
    for name in [named.clone(), format::staged_name(index), named] {
        let path = dir.join(name);
        match File::open(&path) {
            Ok(file) => return Ok(Some((file, path))),
            Err(err) if err.kind() == io::ErrorKind::NotFound => continue,
            Err(err) => return Err(ArchiveError::io(&path, "open")(err)),
        }
    }
    Ok(None)
}

/// Opens segment `segment` of shard `shard`, in `dir`, to read on in it. Segments are numbered
/// without gaps, so one that is missing was deleted, and reading on would skip its frames.
fn open_to_read(dir: &Path, shard: usize, segment: u64) -> Result<(File, PathBuf), ReadError> {
    open_segment(dir, segment)?.ok_or(ReadError::SegmentDeleted { shard, segment })
}

/// Where reading goes on once segment `segment` of shard `shard` is read to its end: the start of
/// the next segment, which must be there ([`open_to_read`]).
fn next_segment(dir: &Path, shard: usize, segment: u64) -> Result<Cursor, ReadError> {
    let next = segment + 1;
    open_to_read(dir, shard, next)?;
    Ok(Cursor::segment_start(next))
}

/// Where a reading of shard `shard`, in `dir`, from `start` begins, or why it cannot.
pub(crate) fn locate(
    dir: &Path,
    shard: usize,
    start: &Start,
    end: DurableEnd,
) -> Result<Cursor, ReadError> {
    match start {
        Start::Now => Ok(Cursor {
            segment: end.segment,
            offset: end.len,
            first_index: 0,
        }),
        Start::After(positions) => match positions.get(shard) {
            Some(position) => after(dir, ShardPosition { shard, position }, end),
            None => locate(dir, shard, &Start::Oldest, end),
        },
        Start::Oldest => {
            let segments = format::list_segments(dir)?;
            let oldest = segments.first().map_or(end.segment, |(index, _)| *index);
            Ok(Cursor::segment_start(oldest.min(end.segment)))
        }
    }
}

/// The cursor right after `at`, once it is known to name a durable frame of its shard.
fn after(dir: &Path, at: ShardPosition, end: DurableEnd) -> Result<Cursor, ReadError> {
    let position = at.position;
    if (position.segment, position.offset) >= (end.segment, end.len) {
        return Err(ReadError::PositionPastEnd { at, end });
    }
    let Some((file, path)) = open_segment(dir, position.segment)? else {
        return Err(ReadError::PositionDeleted { at });
    };
    let to = segment_limit(&file, &path, position.segment, end)?;
    let unknown = |why: String| ReadError::UnknownPosition { at, why };
    if position.offset < MAGIC.len() as u64 || position.offset >= to {
        return Err(unknown(format!(
            "no record starts at offset {}",
            position.offset
        )));
    }
    let records =
        format::read_records(&file, &path, position.offset, to, 1).map_err(|err| match err {
            ArchiveError::Damaged(damage) => unknown(format!("no record starts there ({damage})")),
            err => ReadError::Unreadable(err),
        })?;
    let frames = records
        .entries
        .iter()
        .filter(|(offset, entry)| *offset == position.offset && matches!(entry, Entry::Frame(_)))
        .count();
    if (position.index as usize) >= frames {
        return Err(unknown(format!(
            "the record there holds {frames} frames, no frame {}",
            position.index
        )));
    }
    Ok(Cursor {
        segment: position.segment,
        offset: position.offset,
        first_index: position.index + 1,
    })
}

/// How far segment `index` may be read: to the durable end in the segment it names, to the end of
/// the file in the complete segments before it.
fn segment_limit(
    file: &File,
    path: &Path,
    index: u64,
    end: DurableEnd,
) -> Result<u64, ArchiveError> {
    if index == end.segment {
        return Ok(end.len);
    }
    let len = file
        .metadata()
        .map_err(ArchiveError::io(path, "stat"))?
        .len();
    Ok(len)
}

/// What one read of a shard asks: where, how far, which frames, and how.
#[derive(Debug)]
pub(crate) struct ChunkRead<'a> {
    pub shard: usize,
    /// Where it reads from.
    pub cursor: Cursor,
    /// The shard's durable end, which it never passes.
    pub end: DurableEnd,
    /// No further than this offset of the cursor's segment: the end of a window's part.
    pub stop: Option<u64>,
    pub filter: &'a FrameFilter,
    /// Counts the frames it passes ([`Chunk::passed`]).
    pub track: bool,
    /// What it reads of a sealed segment leaves the page cache.
    pub uncache: bool,
    /// A damaged record at the cursor is passed over ([`Chunk::damaged`]) rather than an error.
    pub pass_damage: bool,
}

/// Reads the next chunk of a shard (in `dir`) as `ask` asks: the frames its filter wants after
/// its cursor, each with its position, no further than its end nor its stop. At the end of a
/// complete segment the chunk is empty and its cursor is the next segment's start; past a
/// damaged record, it is empty and its cursor the next record that decodes.
pub(crate) fn read(dir: &Path, ask: &ChunkRead) -> Result<Chunk, ReadError> {
    let (shard, cursor, end) = (ask.shard, ask.cursor, ask.end);
    let empty = |cursor| Chunk {
        runs: Vec::new(),
        cursor,
        passed: Passed::new(),
        damaged: None,
    };
    if cursor.has_reached(end) {
        return Ok(empty(cursor));
    }
    let (file, path) = open_to_read(dir, shard, cursor.segment)?;
    // A reader of a time window reads parts of segments (a few blocks of a sealed one's time
    // index, the magic at its start, the first chunk of the open one), so the kernel reads no
    // further ahead: its readahead more than doubled the bytes a query of one source read from
    // the disk (`docs/bench/queries.md`).
    if ask.filter.has_window() {
        advise(&file, 0, 0, Advice::Random);
    }
    let limit = segment_limit(&file, &path, cursor.segment, end)?;
    if cursor.offset >= limit {
        return Ok(empty(next_segment(dir, shard, cursor.segment)?));
    }
    let to = ask.stop.map_or(limit, |stop| stop.min(limit));
    let segment = SegmentFile::new(shard, cursor.segment, file, path);
    let past_damage = ask.pass_damage.then_some(limit);
    let read = segment.read(cursor.offset, to, READ_BUDGET, past_damage);
    let records = match read.map_err(|err| match err {
        ArchiveError::Damaged(damage) => ReadError::Damaged(damage),
        err => ReadError::Unreadable(err),
    })? {
        Piece::Records(records) => records,
        Piece::Damaged(range) => {
            let resumed = Cursor {
                offset: range.bytes.end,
                first_index: 0,
                ..cursor
            };
            return Ok(Chunk {
                damaged: Some(range),
                ..empty(resumed)
            });
        }
    };
    if ask.uncache && cursor.segment < end.segment {
        let read = records.next.saturating_sub(cursor.offset);
        advise(segment.file(), cursor.offset, read, Advice::DontNeed);
    }
    let next = Cursor {
        segment: cursor.segment,
        offset: records.next,
        first_index: 0,
    };
    let mut passed = Passed::new();
    let runs = runs_of(
        records,
        shard,
        cursor,
        ask.filter,
        ask.track.then_some(&mut passed),
    );
    Ok(Chunk {
        runs,
        cursor: next,
        passed,
        damaged: None,
    })
}

/// The frames of `records` that `filter` wants, a run per record, each frame with its position;
/// those before `cursor`'s first index in its record are skipped. With `passed`, every frame of a
/// wanted source is counted there too, whatever its priority.
fn runs_of(
    records: Records,
    shard: usize,
    cursor: Cursor,
    filter: &FrameFilter,
    mut passed: Option<&mut Passed>,
) -> Vec<FrameRun> {
    let mut runs: Vec<FrameRun> = Vec::new();
    let (mut record, mut index) = (u64::MAX, 0u32);
    for (offset, entry) in records.entries {
        let Entry::Frame(frame) = entry else { continue };
        if offset != record {
            (record, index) = (offset, 0);
        }
        let position = Position {
            segment: cursor.segment,
            offset,
            index,
        };
        index += 1;
        let skipped = offset == cursor.offset && position.index < cursor.first_index;
        if let Some(passed) = passed
            .as_deref_mut()
            .filter(|_| filter.wants_source(&frame))
        {
            *passed.entry((frame.kind, frame.source_id)).or_default() += 1;
        }
        if skipped || !filter.wants(&frame) {
            continue;
        }
        let followed = ArchivedFrame {
            frame,
            shard,
            position,
        };
        let extended = match runs.last_mut() {
            Some(run) => run.extend(followed),
            None => Err(followed),
        };
        if let Err(first) = extended {
            runs.push(FrameRun::starting_with(first));
        }
    }
    runs
}
