//! An export's file written behind: its pages go to the disk as it is written, and leave the page
//! cache once they are there.
//!
//! Why: an export beside a running daemon writes gigabytes. Left to the page cache, they become
//! dirty pages that the kernel's flusher writes in bursts, at the priority of any write, beside
//! the daemon's segments and their `fsync`s; and the written pages then push the daemon's out of
//! the cache. Written behind, at most two windows of the file are dirty at once, the export's own
//! thread starts their write-back (so an `ionice -c 3` export's writes wait for the daemon's, as
//! its reads do), and each window is dropped from the cache once written. What it costs an export
//! alone: waiting for the window before, when the disk is slower than the export.

use std::fs::File;
use std::io::{self, Write};

/// Bytes of the file between two write-backs.
const WINDOW: u64 = 8 << 20;

/// A file being written from its start, written behind ([module docs](self)).
#[derive(Debug)]
pub struct WriteBehind {
    file: File,
    /// Bytes written.
    written: u64,
    /// Where the window being written back starts, and the one after it (where the next starts).
    behind: (u64, u64),
}

impl WriteBehind {
    pub fn new(file: File) -> WriteBehind {
        WriteBehind {
            file,
            written: 0,
            behind: (0, 0),
        }
    }

    /// Starts the write-back of what was written since the last one, then waits for the one
    /// before to end and drops its pages. Only advice to the kernel: a failure here changes
    /// nothing that the file holds (a write error shows in the writes and at the close), so it
    /// is not reported.
    fn write_back(&mut self) {
        #[cfg(target_os = "linux")]
        {
            use std::os::fd::AsRawFd;
            let fd = self.file.as_raw_fd();
            let (before, start) = self.behind;
            let range = |from: u64, to: u64| (from as libc::off64_t, (to - from) as libc::off64_t);
            let (at, len) = range(start, self.written);
            // SAFETY: sync_file_range and posix_fadvise read no memory; `self.file` keeps the
            // descriptor open for the calls.
            unsafe {
                libc::sync_file_range(fd, at, len, libc::SYNC_FILE_RANGE_WRITE);
                if start > before {
                    let (at, len) = range(before, start);
                    let wait = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                        | libc::SYNC_FILE_RANGE_WRITE
                        | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                    libc::sync_file_range(fd, at, len, wait);
                    libc::posix_fadvise(fd, at, len, libc::POSIX_FADV_DONTNEED);
                }
            }
        }
        self.behind = (self.behind.1, self.written);
    }
}

impl Write for WriteBehind {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.file.write(buf)?;
        self.written += written as u64;
        if self.written - self.behind.1 >= WINDOW {
            self.write_back();
        }
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever is written reaches the file, in order, across windows and at the end.
    #[test]
    fn the_file_holds_what_was_written() {
        let path = std::env::temp_dir().join(format!("write-behind-{}", std::process::id()));
        let mut out = WriteBehind::new(File::create(&path).unwrap());
        let block: Vec<u8> = (0..=255).cycle().take(3 << 20).collect();
        for _ in 0..7 {
            out.write_all(&block).unwrap();
        }
        out.write_all(b"end").unwrap();
        out.flush().unwrap();
        // Written back at 9 MiB and at 18 MiB, the first window waited for.
        assert_eq!(out.behind, (9 << 20, 18 << 20));
        drop(out);
        let read = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(read.len(), 7 * (3 << 20) + 3);
        assert!(read.chunks(3 << 20).take(7).all(|chunk| chunk == block));
        assert!(read.ends_with(b"end"));
    }
}
