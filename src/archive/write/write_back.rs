//! A segment made durable without a burst: the disk thread writes back what the writer appended a
//! piece at a time (`sync_file_range`), paced, and after the emergency appends in flight, so that
//! the `fdatasync` that follows has little left to write.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

use super::files::Segment;
use super::journal::Gate;
use super::pace::PAGE;
use super::page_cache::release_cached;
use crate::archive::format::ArchiveError;
use crate::domain::readers::Readers;

/// How long one piece of a segment's write-back should take: what an emergency append waits
/// behind at most, on a disk that serves a writer's I/O in order.
const PIECE_TIME: Duration = Duration::from_millis(10);
/// The pieces' bounds, whatever the disk's pace.
const MIN_PIECE: u64 = 256 << 10;
const MAX_PIECE: u64 = 64 << 20;
/// Passes over what the writer appended meanwhile, at most, before the `fdatasync`: more when
/// paced, whose `fdatasync` would write what is left in one burst past the pace.
const PASSES: usize = 2;
const PACED_PASSES: usize = 4;

/// How far the disk thread has written a segment back, and the size of the next piece.
#[derive(Debug)]
pub(super) struct WriteBack {
    /// The segment, and the bytes of it already written back.
    done: (u64, u64),
    piece: u64,
}

impl Default for WriteBack {
    fn default() -> Self {
        WriteBack {
            done: (0, 0),
            piece: 1 << 20,
        }
    }
}

impl WriteBack {
    /// Writes back what the segment holds beyond the last call, a piece at a time: paced below
    /// the process's write limit where it has one ([`super::pace`]), else each piece after the
    /// emergency appends in flight ([`Gate`]). The sync that follows then has little left to
    /// write. Sized to take about [`PIECE_TIME`] at the pace the last piece went, and to fit the
    /// pace.
    #[cfg(target_os = "linux")]
    pub(super) fn run(
        &mut self,
        file: &File,
        index: u64,
        path: &Path,
        gate: &Gate,
    ) -> Result<(), ArchiveError> {
        use std::os::fd::AsRawFd;
        let mut at = match self.done {
            (done_index, done) if done_index == index => done,
            _ => 0,
        };
        // Paced below a write limit, pieces are small enough to leave room in the limit's slices.
        let paced = gate.pace().largest_piece();
        let largest = paced.unwrap_or(MAX_PIECE);
        // The writer goes on appending: what it appended since the sync began, and while the
        // pieces were written, is written back too, or the sync's `fdatasync` would write it in
        // one go, past the pace. A few passes at most: a writer as fast as the disk (`sync =
        // never` has no bound on what is unsynced) must not keep a rollover from ending.
        let passes = if paced.is_some() {
            PACED_PASSES
        } else {
            PASSES
        };
        for _ in 0..passes {
            let end = file.metadata().map_or(0, |m| m.len());
            if end.saturating_sub(at) <= self.piece.min(largest) {
                break;
            }
            while at < end {
                // Paced, the throttle holds no piece that a journal write could queue behind.
                if paced.is_none() {
                    gate.wait_idle();
                }
                let mut len = self.piece.min(largest).min(end - at);
                // A piece ends on a page boundary, but the last: a page cut in two is written
                // twice.
                let stop = (at + len) / PAGE * PAGE;
                if at + len < end && stop > at {
                    len = stop - at;
                }
                gate.pace().take(len);
                let started = Instant::now();
                let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                // SAFETY: sync_file_range reads no memory; `file` keeps the descriptor open.
                let written = unsafe {
                    libc::sync_file_range(
                        file.as_raw_fd(),
                        at as libc::off64_t,
                        len as libc::off64_t,
                        flags,
                    )
                };
                if written != 0 {
                    let err = io::Error::last_os_error();
                    return Err(ArchiveError::io(path, "write back segment")(err));
                }
                // A piece the kernel had already written back says nothing of the disk's pace; the
                // others move the size by at most a factor of two.
                let took = started.elapsed();
                if took >= PIECE_TIME / 10 {
                    let pace = len as f64 / took.as_secs_f64();
                    let fits = (pace * PIECE_TIME.as_secs_f64()) as u64;
                    self.piece = fits
                        .clamp(self.piece / 2, self.piece.saturating_mul(2))
                        .clamp(MIN_PIECE, MAX_PIECE);
                }
                at += len;
                self.done = (index, at);
            }
        }
        // The `fdatasync` that follows writes what is left: counted against the pace, and not
        // written back again by the next call.
        let end = file.metadata().map_or(at, |m| m.len()).max(at);
        gate.pace().charge(end - at);
        self.done = (index, end);
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    pub(super) fn run(&mut self, _: &File, _: u64, _: &Path, _: &Gate) -> Result<(), ArchiveError> {
        Ok(())
    }
}

/// Makes the first `len` bytes of the segment durable, then drops them from the page cache.
pub(super) fn sync_segment(
    segment: &Segment,
    write_back: &mut WriteBack,
    gate: &Gate,
    readers: &Readers,
) -> Result<(), ArchiveError> {
    write_back.run(&segment.file, segment.index, &segment.path, gate)?;
    segment
        .file
        .sync_data()
        .map_err(ArchiveError::io(&segment.path, "sync segment"))?;
    release_cached(&segment.file, segment.len, readers);
    Ok(())
}
