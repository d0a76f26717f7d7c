//! The durable floor: how fast the filesystem of the daemon variants' archives takes sequential
//! writes that must reach the disk. The durable daemon stores every payload byte there and syncs
//! it, so that is its physical limit, as decoding and discarding is the pipeline's (the floor
//! variant).
//!
//! Measured as `dd if=/dev/zero of=FILE bs=1M count=N conv=fsync` would: N blocks of 1 MiB written
//! to a new file beside the archives, one `fsync` at the end, timed from the open to the end of
//! the `fsync`, then the file removed. N is 1 GiB's worth where the filesystem has room for it
//! eight times over, less where it has not, so that the benchmark runs unchanged on any machine.

use std::io::{self, Write};
use std::path::Path;
use std::time::Instant;

use crate::results::DurableFloor;

/// The block size, as `dd bs=1M`.
const BLOCK: usize = 1024 * 1024;
/// The least a measurement writes: below this, the disk's cache and the timer's granularity weigh
/// more than its bandwidth.
const LEAST: u64 = 16 * 1024 * 1024;

/// Writes at most `most` bytes (whole MiB) to a new file in `dir`, syncs it, removes it.
pub fn measure(dir: &Path, most: u64) -> io::Result<DurableFloor> {
    let bytes = size(most, available(dir));
    let path = dir.join(format!(
        "aggregator-bench-durable-floor-{}",
        std::process::id()
    ));
    let timed = write_synced(&path, bytes);
    let _ = std::fs::remove_file(&path);
    let seconds = timed?;
    Ok(DurableFloor {
        dir: dir.to_path_buf(),
        bytes,
        seconds,
        mb_per_s: bytes as f64 / seconds / 1e6,
    })
}

/// Whole MiB: at most `most`, at most an eighth of what the filesystem has free (when known), and
/// at least [`LEAST`].
fn size(most: u64, available: Option<u64>) -> u64 {
    let bytes = available.map_or(most, |free| most.min(free / 8));
    (bytes - bytes % BLOCK as u64).max(LEAST)
}

/// Seconds from creating `path` to the end of the `fsync` of `bytes` written to it in blocks.
pub fn write_synced(path: &Path, bytes: u64) -> io::Result<f64> {
    // Not zeros: a filesystem or a virtual disk may store those without writing them.
    let block = vec![0xA5u8; BLOCK];
    let started = Instant::now();
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)?;
    for _ in 0..bytes / BLOCK as u64 {
        file.write_all(&block)?;
    }
    file.sync_all()?;
    Ok(started.elapsed().as_secs_f64().max(1e-9))
}

/// Bytes free to an unprivileged writer on the filesystem of `dir`, if `statvfs` says.
pub fn available(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs(3) with a NUL-terminated path and a zeroed struct it fills in.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some((stat.f_bavail as u64).saturating_mul(stat.f_frsize as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1024 * 1024;

    #[test]
    fn the_size_is_whole_mib_bounded_by_the_free_space_and_the_least() {
        assert_eq!(size(1024 * MIB, None), 1024 * MIB);
        assert_eq!(size(1024 * MIB, Some(100 * 1024 * MIB)), 1024 * MIB);
        assert_eq!(size(1024 * MIB, Some(800 * MIB + 5)), 100 * MIB);
        assert_eq!(size(1024 * MIB, Some(8 * MIB)), LEAST);
        assert_eq!(size(64 * MIB + 3, None), 64 * MIB);
    }

    #[test]
    fn a_measurement_writes_syncs_and_removes_its_file() {
        let dir = std::env::temp_dir().join(format!("bench_durable_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("a temporary directory");
        let floor = measure(&dir, LEAST).expect("the write is measured");
        let left = std::fs::read_dir(&dir).expect("readable").count();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(floor.bytes, LEAST);
        assert!(floor.mb_per_s > 0.0 && floor.seconds > 0.0, "{floor:?}");
        assert_eq!(left, 0, "the file was removed");
    }
}
