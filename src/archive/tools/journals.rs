//! The frames of an archive's emergency journals that none of its segments holds, as the offline
//! readers show them: `verify` counts them, `inspect` lists them and the replay plays them.
//!
//! Why they read the journals at all: after a power cut, and before the next start, an
//! acknowledged emergency may be in its shard's journal alone (the crash took the segment's
//! unsynced tail); the next start stores it in the segment (`docs/archive-format.md`,
//! "Emergency journals"). A reader of segments only would miss frames the archive does hold.
//!
//! Why through one type: a journal also holds most of its frames a second time (each was written
//! to the segment first), and those must not count, list or play twice. Whether a journal frame is
//! the journal's alone is decided here for all three readers, with recovery's own test
//! (`journal::take_missing`) over every frame the segments of every shard hold, so that they agree
//! on which frames those are. The journals are read after every segment, since a frame of one
//! shard's journal may be held by another shard's segment (a change of `runtime.shards`).
//! `repair`, which states what the next start stores, asks recovery itself instead
//! (`tools::repair`).

use std::collections::HashMap;
use std::io;
use std::ops::ControlFlow;
use std::path::Path;

use crate::archive::format::{self, ArchiveError, Entry, SegmentScan};
use crate::archive::write::journal;
use crate::archive::write::tracked::Tracked;
use crate::domain::frame::SourceKey;

/// The frames the segments read so far hold (and those taken from the journals read so far), by
/// source: what a journal's frame is tested against.
#[derive(Debug, Default)]
pub(crate) struct Held {
    sources: HashMap<SourceKey, Tracked>,
}

/// One emergency journal, as [`Held::read_journal`] read it.
#[derive(Debug, Clone)]
pub(crate) struct JournalFrames {
    /// Frames in its valid records.
    pub frames: u64,
    /// Its scan, whose entries are only the frames nothing held before: each a
    /// [`Entry::Frame`] with the offset of its record. Its `end` and `damaged` are the journal's:
    /// a torn tail is what a crash during an append leaves, never acknowledged.
    pub scan: SegmentScan,
}

impl Held {
    /// Holds every frame of a segment's scan.
    pub(crate) fn hold(&mut self, scan: &SegmentScan) {
        for (_, entry) in &scan.entries {
            if let Entry::Frame(frame) = entry {
                let tracked = self
                    .sources
                    .entry((frame.kind, frame.source_id))
                    .or_default();
                tracked.above.insert_run(frame.sequence, frame.sequence);
            }
        }
    }

    /// Reads the journal at `path` and returns its frames that were not held, which are held from
    /// then on. An `Err` names the file that cannot be read.
    pub(crate) fn read_journal(&mut self, path: &Path) -> Result<JournalFrames, ArchiveError> {
        let mut scan = format::read_segment(path)?;
        let mut frames = 0;
        scan.entries.retain(|(_, entry)| match entry {
            Entry::Frame(frame) => {
                frames += 1;
                journal::take_missing(&mut self.sources, frame)
            }
            _ => false,
        });
        Ok(JournalFrames { frames, scan })
    }
}

/// Which kind of file [`read_archive`] hands out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// A segment: every valid record.
    Segment,
    /// An emergency journal: only its frames no segment holds (nor a journal read before).
    Journal,
}

/// Reads every segment of every shard of the archive at `dir` (shard 0 first, each shard's by
/// index: [`format::list_shard_segments`]), then every shard's journals, and hands each file's
/// scan to `visit`, a journal's with only the frames no segment holds ([`Held::read_journal`]).
/// `visit` stops the reading with [`ControlFlow::Break`]. An `Err` names the directory or file
/// that cannot be read, or is `visit`'s.
pub(crate) fn read_archive(
    dir: &Path,
    mut visit: impl FnMut(FileKind, &Path, SegmentScan) -> io::Result<ControlFlow<()>>,
) -> io::Result<()> {
    let mut held = Held::default();
    let mut journals = Vec::new();
    for shard in format::list_shard_segments(dir)? {
        journals.extend(shard.journals);
        for (_, path) in shard.segments {
            let scan = format::read_segment(&path)?;
            held.hold(&scan);
            if visit(FileKind::Segment, &path, scan)?.is_break() {
                return Ok(());
            }
        }
    }
    for path in journals {
        let journal = held.read_journal(&path)?;
        if visit(FileKind::Journal, &path, journal.scan)?.is_break() {
            break;
        }
    }
    Ok(())
}
