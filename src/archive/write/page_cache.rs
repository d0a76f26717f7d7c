//! What the writer leaves in the page cache: synced segments are dropped from it unless a follower
//! reads the archive ([`Readers`]).

use std::fs::File;
#[cfg(test)]
use std::io;
#[cfg(all(test, target_os = "linux"))]
use std::path::Path;

use crate::domain::readers::Readers;

/// Drops the first `len` bytes of a segment, synced by now, from the page cache, unless a follower
/// reads the archive (`readers`).
///
/// Without followers the daemon never reads a segment back while it runs (recovery and the archive
/// tools read from the disk), so cached pages of synced segments only push other programs' pages
/// out until the kernel reclaims them, and every page a write takes is a fresh page: on a virtual
/// machine whose free memory goes back to the host (a balloon driver) a first touch of a page
/// costs several times the copy into it. Dropped pages go back to the free lists, where the next
/// writes find them. A follower, though, reads what was written a moment ago: dropped, it would
/// read it from the disk the writer needs (with four followers the writer lost a quarter to a
/// third of its pace). Only advice: a failure changes nothing that matters, so it is not reported.
pub(super) fn release_cached(file: &File, len: u64, readers: &Readers) {
    if readers.any() {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
        // SAFETY: posix_fadvise reads no memory; `file` keeps the descriptor open for the call.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, len, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, len);
}

/// How many of the pages of `file`'s first `len` bytes are in the page cache: `mincore` over a
/// mapping, which faults nothing in. For the tests of what the disk thread leaves cached.
#[cfg(test)]
pub(super) fn cached_pages(file: &File, len: usize) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh read-only shared mapping of `len` bytes of an open file, only passed to
    // mincore with a vector of one byte per page, and unmapped before returning.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            map,
            libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        let mut resident = vec![0u8; len.div_ceil(page)];
        let answered = libc::mincore(map, len, resident.as_mut_ptr());
        libc::munmap(map, len);
        assert_eq!(answered, 0, "mincore: {}", io::Error::last_os_error());
        resident.iter().filter(|&&page| page & 1 == 1).count()
    }
}

/// Whether `dir` is on a tmpfs, whose pages the page-cache advice cannot drop. For the tests of
/// what is left cached.
#[cfg(all(test, target_os = "linux"))]
pub(super) fn on_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct it is given; `path` is NUL-terminated.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut stat) == 0 && stat.f_type == libc::TMPFS_MAGIC
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::fs::{self, OpenOptions};
    use std::io::Write;
    use std::path::PathBuf;
    use std::sync::Arc;

    use super::*;

    /// Removes the file when dropped, an assertion failing or not.
    struct Removed(PathBuf);

    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    #[test]
    fn synced_pages_stay_cached_while_a_follower_reads_and_go_without_one() {
        let dir = std::env::temp_dir();
        if on_tmpfs(&dir) {
            eprintln!(
                "skipped: {} is a tmpfs, whose pages stay cached",
                dir.display()
            );
            return;
        }
        let path = Removed(dir.join(format!("cached-{}", std::process::id())));
        let path = &path.0;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        let len = 64 * 4096;
        file.write_all(&vec![7u8; len]).unwrap();
        file.sync_data().unwrap();
        let readers = Arc::new(Readers::default());
        let all = cached_pages(&file, len);
        assert!(all > 0, "written pages are cached");

        let following = readers.hold();
        release_cached(&file, len as u64, &readers);
        assert_eq!(cached_pages(&file, len), all, "a follower keeps them");

        drop(following);
        release_cached(&file, len as u64, &readers);
        let left = cached_pages(&file, len);
        assert!(
            left < all,
            "without followers they are dropped ({left} of {all} left)"
        );
    }
}
