//! `aggregator archive inspect`: the records of every segment of every shard, then the frames of
//! the emergency journals that no segment holds, those a [`FrameFilter`] wants, one at a time.
//!
//! It reads with [`crate::archive::format`] and changes nothing, so it works on a copy of an
//! archive, with the daemon stopped or running. The scan goes on past damage, so every valid
//! record is listed, and each damaged range is named in the summary. After a crash, and before
//! the next start, an acknowledged emergency may be in a journal alone ([`super::journals`]):
//! such a frame is listed, naming its journal; a journal frame a segment also holds is not
//! listed again.
//!
//! Each record is handed to the caller as it is read ([`Listed`]), so memory stays bounded
//! whatever the archive's size; the binary words the lines.

use std::io;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::journals::{self, FileKind};
use crate::archive::format::{Damage, Entry, SegmentScan};
use crate::domain::filter::FrameFilter;

/// A record `inspect` lists, and where it is.
#[derive(Debug, Clone, Copy)]
pub struct Listed<'a> {
    /// Its file, by its path inside the archive directory (`shard-02/segment-...seg`,
    /// `shard-02/emergency-...journal`; a file of shard 0, as before shards, by its name).
    pub file: &'a str,
    /// The offset of its record in the file (the frames of one FRAMES record share it).
    pub offset: u64,
    pub entry: &'a Entry,
}

/// What `inspect` went through.
#[derive(Debug, Clone, Default)]
pub struct InspectSummary {
    pub segments: u64,
    /// Records listed.
    pub listed: u64,
    /// Whether the limit cut the listing short.
    pub truncated: bool,
    /// Every damaged range of every segment (the valid records around them were listed).
    pub damaged: Vec<(PathBuf, Damage)>,
}

/// Hands `list` each record of every segment of every shard of the archive at `dir` that
/// `filter` wants ([`FrameFilter::wants_record`]), at most `limit` of them: shard 0 first, then
/// by shard ([`crate::archive::format::list_shard_segments`]); then, shard by shard, the frames
/// of the emergency journals that no segment holds ([`journals`]), which the next start stores.
/// The journals' damage is not named: a torn tail is what a crash during an append leaves, and
/// what recovery skips too. An `Err` is a file that cannot be read, or `list`'s.
pub fn inspect(
    dir: &Path,
    filter: &FrameFilter,
    limit: Option<usize>,
    list: &mut dyn FnMut(Listed<'_>) -> io::Result<()>,
) -> io::Result<InspectSummary> {
    let mut listing = Listing {
        filter,
        limit,
        list,
        summary: InspectSummary::default(),
    };
    journals::read_archive(dir, |kind, path, scan| {
        if !listing.list_entries(&name_in(dir, path), &scan)? {
            listing.summary.truncated = true;
            return Ok(ControlFlow::Break(()));
        }
        if kind == FileKind::Segment {
            listing.summary.segments += 1;
            let damaged = scan.damaged.into_iter();
            (listing.summary.damaged).extend(damaged.map(|damage| (path.to_path_buf(), damage)));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(listing.summary)
}

/// `path` inside the archive directory `dir`, as `inspect` names a file.
fn name_in(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// An `inspect` under way: what it lists, to whom, and what it went through so far.
struct Listing<'a> {
    filter: &'a FrameFilter,
    limit: Option<usize>,
    list: &'a mut dyn FnMut(Listed<'_>) -> io::Result<()>,
    summary: InspectSummary,
}

impl Listing<'_> {
    /// Lists the entries of the segment or journal `file` that the filter wants; false when the
    /// limit stopped it.
    fn list_entries(&mut self, file: &str, scan: &SegmentScan) -> io::Result<bool> {
        for (offset, entry) in &scan.entries {
            if !self.filter.wants_record(entry) {
                continue;
            }
            if (self.limit).is_some_and(|l| self.summary.listed >= l as u64) {
                return Ok(false);
            }
            let offset = *offset;
            (self.list)(Listed {
                file,
                offset,
                entry,
            })?;
            self.summary.listed += 1;
        }
        Ok(true)
    }
}
