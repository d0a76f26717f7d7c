//! A segment's file steps: creating it under its staging name with its disk reserved, opening it
//! again to append, naming it once the segment before it is durable, and cutting it back to its
//! whole records. Each step names the file it failed on.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::archive::format::{self, sync_dir, ArchiveError};

/// A segment file, and how many bytes of whole records it holds.
#[derive(Debug)]
pub(super) struct Segment {
    /// Shared with the disk thread's jobs: a sync never needs a descriptor of its own.
    pub(super) file: Arc<File>,
    /// Where the file is now: the staging name until its rollover has named it.
    pub(super) path: PathBuf,
    pub(super) index: u64,
    /// Bytes of whole records written so far: where a failed write is cut back to.
    pub(super) len: u64,
}

/// The path a segment is created under, until the segment before it is durable.
pub(super) fn staged_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format::staged_name(index))
}

/// Creates segment `index` under its staging name, with `bytes` of disk reserved.
pub(super) fn create_staged(dir: &Path, index: u64, bytes: u64) -> Result<File, ArchiveError> {
    let path = staged_path(dir, index);
    // A staged file holds nothing yet, whatever an earlier attempt left there.
    match fs::remove_file(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            return Err(ArchiveError::opening(&path, "delete")(err))
        }
        _ => {}
    }
    // Appends only: a write cut back after an error leaves no hole before the next one.
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(ArchiveError::opening(&path, "create segment"))?;
    preallocate(&file, bytes);
    Ok(file)
}

/// Opens a segment to go on appending to it, with `bytes` of disk reserved from its start.
pub(super) fn open_appending(path: &Path, bytes: u64) -> Result<File, ArchiveError> {
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(ArchiveError::opening(path, "open segment"))?;
    preallocate(&file, bytes);
    Ok(file)
}

/// Makes a staged segment durable and gives it its name: from here on, recovery reads it. Called
/// again after a [transient](ArchiveError::Transient) failure, it does not rename twice.
pub(super) fn publish(dir: &Path, file: &File, index: u64) -> Result<PathBuf, ArchiveError> {
    let staged = staged_path(dir, index);
    let path = dir.join(format::segment_name(index));
    file.sync_data()
        .map_err(ArchiveError::io(&staged, "sync segment"))?;
    match fs::rename(&staged, &path) {
        // An earlier attempt named it, and failed after.
        Err(err) if err.kind() == io::ErrorKind::NotFound && path.exists() => {}
        Err(err) => return Err(ArchiveError::opening(&staged, "name segment")(err)),
        Ok(()) => {}
    }
    // The name must survive a crash too.
    sync_dir(dir)?;
    Ok(path)
}

/// Reserves the disk blocks of a whole segment before the first append.
///
/// Appends are written from the runtime thread while an `fsync` of the same file runs on the disk
/// thread. On ext4 with delayed allocation, a write into blocks not yet allocated takes the
/// inode's allocation lock, which the sync's writeback holds while it allocates: the runtime thread,
/// and with it every connection, then waits for the disk, emergencies included. Into reserved
/// blocks a write only copies into the page cache. The size is kept (`FALLOC_FL_KEEP_SIZE`), so readers still see only whole records, and
/// [`trim`] gives back what a segment did not use. Only advice: on a file system without
/// `fallocate` the appends still work, with the stalls.
fn preallocate(file: &File, bytes: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(bytes).unwrap_or(libc::off_t::MAX);
        // SAFETY: fallocate reads no memory; `file` keeps the descriptor open for the call.
        unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, bytes);
}

/// Gives back the blocks [`preallocate`] reserved beyond the segment's `len` bytes of records (a
/// truncation to the current size frees the blocks past it).
pub(super) fn trim(file: &File, path: &Path, len: u64) -> Result<(), ArchiveError> {
    file.set_len(len)
        .map_err(ArchiveError::io(path, "trim segment"))
}
