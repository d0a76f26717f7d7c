//! The archive's file names and how a directory is listed: segments (`segment-{index:020}.seg`),
//! segments being staged (`.seg.new`), emergency journals (`emergency-{generation:020}.journal`)
//! and the `LOCK` a running daemon holds. A name carries a zero-padded number, so the lexical order
//! of the names is their write order, and a listing is sorted by it.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::error::ArchiveError;

/// A kind of numbered file: `{prefix}{number:020}{suffix}`.
struct Numbered {
    prefix: &'static str,
    suffix: &'static str,
}

const SEGMENT: Numbered = Numbered {
    prefix: "segment-",
    suffix: ".seg",
};

const JOURNAL: Numbered = Numbered {
    prefix: "emergency-",
    suffix: ".journal",
};

impl Numbered {
    fn name(&self, number: u64) -> String {
        format!("{}{number:020}{}", self.prefix, self.suffix)
    }

    /// The number in a file name of this kind; `None` for any other file.
    fn number(&self, name: &str) -> Option<u64> {
        let digits = name.strip_prefix(self.prefix)?.strip_suffix(self.suffix)?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }
}

/// The file name of segment `index`: `segment-{index:020}.seg`.
pub fn segment_name(index: u64) -> String {
    SEGMENT.name(index)
}

/// The index in a segment file name; `None` for any other file.
pub(crate) fn segment_index(path: &Path) -> Option<u64> {
    SEGMENT.number(path.file_name()?.to_str()?)
}

/// The name segment `index` has while the daemon writes it and the segment before it is not yet
/// durable: `segment-{index:020}.seg.new`. Readers ignore it.
pub(crate) fn staged_name(index: u64) -> String {
    format!("{}.new", segment_name(index))
}

/// The index in a staged segment's file name; `None` for any other file.
fn staged_index(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    SEGMENT.number(name.strip_suffix(".new")?)
}

/// The file name of journal generation `generation`: `emergency-{generation:020}.journal`.
pub(crate) fn journal_name(generation: u64) -> String {
    JOURNAL.name(generation)
}

/// The generation in a journal's file name; `None` for any other file.
fn journal_generation(path: &Path) -> Option<u64> {
    JOURNAL.number(path.file_name()?.to_str()?)
}

/// The segments in `dir`, sorted by index. Other files and directories are ignored.
pub fn list_segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ArchiveError> {
    list_numbered(dir, segment_index)
}

/// The staged segments in `dir` ([`staged_name`]), sorted by index.
pub(crate) fn list_staged(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ArchiveError> {
    list_numbered(dir, staged_index)
}

/// The journal files in `dir`, by generation.
pub(crate) fn list_journals(dir: &Path) -> Result<Vec<(u64, PathBuf)>, ArchiveError> {
    list_numbered(dir, journal_generation)
}

/// The files in `dir` that `number_of` gives a number, sorted by it.
fn list_numbered(
    dir: &Path,
    number_of: fn(&Path) -> Option<u64>,
) -> Result<Vec<(u64, PathBuf)>, ArchiveError> {
    let entries = fs::read_dir(dir).map_err(ArchiveError::io(dir, "list"))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(ArchiveError::io(dir, "list"))?;
        let path = entry.path();
        if let Some(number) = number_of(&path) {
            let file_type = entry.file_type().map_err(ArchiveError::io(&path, "stat"))?;
            if !file_type.is_dir() {
                files.push((number, path));
            }
        }
    }
    files.sort_by_key(|(number, _)| *number);
    Ok(files)
}

/// Takes the exclusive lock on `dir/LOCK` that a running daemon holds, without waiting: two
/// processes writing one archive would interleave segments, or rewrite one being appended to.
/// Held until the file is dropped. (`SegmentSink::open` takes the same `flock` on the same file.)
pub(crate) fn lock_directory(dir: &Path) -> Result<File, ArchiveError> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(ArchiveError::io(&path, "open"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        return Err(ArchiveError::Locked {
            path: dir.to_path_buf(),
            source: io::Error::last_os_error(),
        });
    }
    Ok(file)
}
