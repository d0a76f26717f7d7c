//! The page cache a window's writes land in, told and made full.
//!
//! Why: a VM whose balloon reports free pages to its host (virtio-balloon free page reporting,
//! as on the 2-core VMs of `BENCHMARKS.md`) gives each freed page back, and the guest's next
//! touch of it is a fault the host serves. A daemon that archives 300 MB/s grows its page cache
//! by as much, and on a fresh such VM every new page of it costs that fault: writing to a new
//! file there ran at 0.47 GB/s, and at 4.9-5.8 GB/s once the pages were the guest's again. A
//! machine that has run a while has its memory full of page cache, and new writes take pages
//! the kernel reclaims from it, which stay the guest's. [`probe`] tells which machine a run had;
//! [`Ballast`] makes the second one: files whose cached pages fill the memory the windows do not
//! use, topped up before each window, since a window's files freed when it ends go back to the
//! host.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::durable;
use crate::results::TopUp;

/// What [`probe`] writes.
const PROBE_BYTES: usize = 256 << 20;

/// One ballast file.
const FILE_BYTES: u64 = 1 << 30;

/// Free memory the ballast leaves: room for the window's processes before reclaim starts.
const KEEP_FREE_KIB: u64 = 1536 << 10;

/// Free disk space the ballast leaves for the windows' archives and streams.
const KEEP_DISK: u64 = 24 << 30;

/// How fast this machine takes new pages into its page cache: MB/s of the writes of
/// [`PROBE_BYTES`] to a new file in `dir` (not synced: the disk is not what is measured), which
/// is then removed; `None` where that failed.
pub fn probe(dir: &Path) -> Option<f64> {
    let path = dir.join(format!("aggregator-bench-probe-{}", std::process::id()));
    let timed = write_unsynced(&path);
    let _ = std::fs::remove_file(&path);
    Some(PROBE_BYTES as f64 / timed.ok()? / 1e6)
}

/// Seconds to write [`PROBE_BYTES`] to a new file at `path`, in 1 MiB writes.
fn write_unsynced(path: &Path) -> std::io::Result<f64> {
    let chunk = vec![0xA5u8; 1 << 20];
    let mut file = File::create(path)?;
    let started = Instant::now();
    for _ in 0..PROBE_BYTES / chunk.len() {
        file.write_all(&chunk)?;
    }
    Ok(started.elapsed().as_secs_f64().max(1e-9))
}

/// Files in the page cache that keep the machine's free memory low; removed when dropped.
pub struct Ballast {
    dir: PathBuf,
    files: usize,
    /// The bytes of each file.
    file_bytes: u64,
    /// What its top-ups wrote, and in how long, all told.
    pub written: TopUp,
}

impl Ballast {
    /// An empty ballast in a new folder of `dir`; none on a tmpfs, whose pages the kernel could
    /// not reclaim for the windows' writes.
    pub fn new(dir: &Path) -> Result<Ballast, String> {
        if on_tmpfs(dir)? {
            return Err(format!("{} is a tmpfs", dir.display()));
        }
        let dir = dir.join(format!("aggregator-bench-ballast-{}", std::process::id()));
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("cannot make the ballast's folder {}: {e}", dir.display()))?;
        Ok(Ballast {
            dir,
            files: 0,
            file_bytes: FILE_BYTES,
            written: TopUp::default(),
        })
    }

    /// Writes files until the machine's free memory is below [`KEEP_FREE_KIB`] or its disk's
    /// free space below [`KEEP_DISK`], each synced, so that no writeback of them runs into the
    /// window that follows.
    pub fn top_up(&mut self) -> Result<(), String> {
        let dir = self.dir.clone();
        self.top_up_while(|| {
            let disk = durable::available(&dir)
                .ok_or_else(|| format!("cannot tell the free space of {}", dir.display()))?;
            Ok(mem_free_kib()? > KEEP_FREE_KIB && disk > KEEP_DISK)
        })
    }

    /// Writes files while `more` says so.
    fn top_up_while(
        &mut self,
        mut more: impl FnMut() -> Result<bool, String>,
    ) -> Result<(), String> {
        let started = Instant::now();
        let mut bytes = 0;
        while more()? {
            self.files += 1;
            let path = self.dir.join(self.files.to_string());
            durable::write_synced(&path, self.file_bytes)
                .map_err(|e| format!("cannot write ballast {}: {e}", path.display()))?;
            bytes += self.file_bytes;
        }
        let seconds = started.elapsed().as_secs_f64();
        self.written.bytes += bytes;
        self.written.seconds += seconds;
        Ok(())
    }
}

impl Drop for Ballast {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `MemFree` of `/proc/meminfo`, KiB.
fn mem_free_kib() -> Result<u64, String> {
    let meminfo = std::fs::read_to_string("/proc/meminfo")
        .map_err(|e| format!("cannot read /proc/meminfo: {e}"))?;
    meminfo
        .lines()
        .find_map(|line| line.strip_prefix("MemFree:"))
        .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| "/proc/meminfo has no MemFree".to_string())
}

/// Whether `dir` is on a tmpfs.
fn on_tmpfs(dir: &Path) -> Result<bool, String> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|_| format!("{} holds a NUL", dir.display()))?;
    let mut stat = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stat` is written by a successful call before it is
    // read.
    let stat = unsafe {
        if libc::statfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            let err = std::io::Error::last_os_error();
            return Err(format!("cannot stat {}: {err}", dir.display()));
        }
        stat.assume_init()
    };
    Ok(stat.f_type == libc::TMPFS_MAGIC)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe writes and removes its file; the ballast writes files while told to, each of
    /// its size, counts them, and its folder goes when it is dropped.
    #[test]
    fn the_probe_and_the_ballast_leave_nothing_behind() {
        // Beside the test's binary, in the target folder: on disk where /tmp may be a tmpfs.
        let exe = std::env::current_exe().unwrap();
        let dir = (exe.parent().unwrap()).join(format!("page-cache-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert!(probe(&dir).is_some_and(|rate| rate > 0.0));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert!(mem_free_kib().unwrap() > 0);
        if on_tmpfs(Path::new("/dev/shm")) == Ok(true) {
            let refused = Ballast::new(Path::new("/dev/shm")).err().unwrap();
            assert_eq!(refused, "/dev/shm is a tmpfs");
        }
        let folder = {
            let mut ballast = Ballast::new(&dir).unwrap();
            ballast.file_bytes = 1 << 20;
            let mut asked = 0;
            let topped = ballast.top_up_while(|| {
                asked += 1;
                Ok(asked <= 3)
            });
            topped.unwrap();
            assert_eq!(ballast.written.bytes, 3 << 20);
            let files = std::fs::read_dir(&ballast.dir).unwrap();
            let sizes: Vec<u64> = files
                .map(|f| f.unwrap().metadata().unwrap().len())
                .collect();
            assert_eq!(sizes, [1 << 20; 3]);
            let refused = ballast.top_up_while(|| Err("no".into()));
            assert_eq!(refused.unwrap_err(), "no");
            ballast.dir.clone()
        };
        assert!(!folder.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
