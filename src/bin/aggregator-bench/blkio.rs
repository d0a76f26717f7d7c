//! A cgroup v1 blkio write throttle on one process: how the throttle run gives the daemon a disk
//! slower than its senders without slowing anyone else's writes to that disk.
//!
//! The process gets a cgroup of its own, a child of this process's blkio cgroup, whose
//! `blkio.throttle.write_bps_device` limits its writes to one disk: the whole disk under a path,
//! found from the path's filesystem (`stat`, then `/sys/dev/block`), since the throttle takes no
//! partitions. The cgroup is removed when the [`WriteThrottle`] is dropped, the process moved back
//! out first if it still runs, so an error on the way leaves nothing behind.
//!
//! cgroup v1 charges a write to the cgroup of the thread that submits it to the disk: the
//! process's own `fsync`s and direct writes are throttled, but pages the kernel's flusher threads
//! write back are not. [`WriteThrottle::written_bytes`] is the cgroup's own count of what it wrote,
//! so a run can tell how much of its writing the throttle saw.
//!
//! Setting it up needs root and a mounted cgroup v1 blkio hierarchy; where something is missing,
//! [`WriteThrottle::apply`] says what, and the run is skipped rather than failed.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// A process's writes to one disk, limited; the cgroup is removed on drop.
#[derive(Debug)]
pub struct WriteThrottle {
    /// The cgroup's directory, and its parent's: where the process goes back on drop.
    dir: PathBuf,
    parent: PathBuf,
    /// The disk, `MAJ:MIN`.
    device: String,
}

impl WriteThrottle {
    /// Limits the writes of process `pid` to the disk holding `path` to `bytes_per_s`; `Err` says
    /// why that cannot be done here.
    pub fn apply(pid: i32, path: &Path, bytes_per_s: u64) -> Result<WriteThrottle, String> {
        let device = disk_of(path)?;
        let parent = own_blkio_cgroup()?;
        let dir = parent.join(format!("aggregator-bench-throttle-{}", std::process::id()));
        fs::create_dir(&dir)
            .map_err(|e| needs_root(format!("cannot create {}", dir.display()), e))?;
        // From here on, dropping `throttle` removes the cgroup.
        let throttle = WriteThrottle {
            dir,
            parent,
            device,
        };
        let limit = format!("{} {bytes_per_s}", throttle.device);
        throttle.write("blkio.throttle.write_bps_device", &limit)?;
        throttle.write("cgroup.procs", &pid.to_string())?;
        Ok(throttle)
    }

    /// The throttled disk, `MAJ:MIN`.
    pub fn device(&self) -> &str {
        &self.device
    }

    pub fn cgroup(&self) -> &Path {
        &self.dir
    }

    /// Bytes the cgroup has written to the disk so far, as the throttle counted them.
    pub fn written_bytes(&self) -> Option<u64> {
        let stats = fs::read_to_string(self.dir.join("blkio.throttle.io_service_bytes")).ok()?;
        let line = format!("{} Write ", self.device);
        stats
            .lines()
            .find_map(|l| l.strip_prefix(&line))
            .and_then(|bytes| bytes.trim().parse().ok())
    }

    fn write(&self, file: &str, value: &str) -> Result<(), String> {
        let path = self.dir.join(file);
        fs::write(&path, value)
            .map_err(|e| needs_root(format!("cannot write {value:?} to {}", path.display()), e))
    }
}

impl Drop for WriteThrottle {
    /// Moves whatever still runs in the cgroup back to the parent, and removes the cgroup.
    fn drop(&mut self) {
        let procs = fs::read_to_string(self.dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.split_whitespace() {
            let _ = fs::write(self.parent.join("cgroup.procs"), pid);
        }
        if let Err(err) = fs::remove_dir(&self.dir) {
            eprintln!(
                "[bench] warning: cannot remove the cgroup {}: {err}; rmdir it by hand",
                self.dir.display()
            );
        }
    }
}

/// `what` failed with `err`, with a word on root where permission was the cause.
fn needs_root(what: String, err: std::io::Error) -> String {
    match err.kind() {
        std::io::ErrorKind::PermissionDenied => format!("{what}: {err} (this needs root)"),
        _ => format!("{what}: {err}"),
    }
}

/// The whole disk under the filesystem that holds `path`, as `MAJ:MIN`.
fn disk_of(path: &Path) -> Result<String, String> {
    let dev = fs::metadata(path)
        .map_err(|e| format!("cannot stat {}: {e}", path.display()))?
        .dev();
    let number = format!("{}:{}", libc::major(dev), libc::minor(dev));
    let sys = Path::new("/sys/dev/block").join(&number);
    if !sys.exists() {
        return Err(format!(
            "{} is on device {number}, which is no block device (a tmpfs, an overlay or a network filesystem): there is no disk to throttle",
            path.display()
        ));
    }
    if !sys.join("partition").exists() {
        return Ok(number);
    }
    // A partition: its directory in sysfs lies inside its disk's.
    let disk = fs::canonicalize(&sys)
        .ok()
        .and_then(|partition| Some(partition.parent()?.join("dev")))
        .and_then(|dev| fs::read_to_string(dev).ok())
        .ok_or_else(|| format!("cannot find the disk of partition {number} in /sys"))?;
    Ok(disk.trim().to_string())
}

/// This process's blkio cgroup directory, from `/proc/self/mountinfo` and `/proc/self/cgroup`.
fn own_blkio_cgroup() -> Result<PathBuf, String> {
    let read =
        |path: &str| fs::read_to_string(path).map_err(|e| format!("cannot read {path}: {e}"));
    let mountinfo = read("/proc/self/mountinfo")?;
    let (root, mountpoint) = mountinfo
        .lines()
        .find_map(blkio_mount)
        .ok_or("no cgroup v1 blkio hierarchy is mounted (/proc/self/mountinfo); under cgroup v2 alone the limit would be io.max, which this run does not set")?;
    let cgroups = read("/proc/self/cgroup")?;
    let own = cgroups
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers.split(',').any(|c| c == "blkio").then_some(path)
        })
        .ok_or("this process is in no blkio cgroup (/proc/self/cgroup)")?;
    let inside = own.strip_prefix(root).unwrap_or(own);
    Ok(Path::new(mountpoint).join(inside.trim_start_matches('/')))
}

/// (root, mount point) of a mountinfo line that mounts a cgroup v1 hierarchy with blkio.
fn blkio_mount(line: &str) -> Option<(&str, &str)> {
    let (mount, filesystem) = line.split_once(" - ")?;
    let mut filesystem = filesystem.split(' ');
    let (kind, _source, options) = (filesystem.next()?, filesystem.next()?, filesystem.next()?);
    if kind != "cgroup" || !options.split(',').any(|o| o == "blkio") {
        return None;
    }
    let mut mount = mount.split(' ').skip(3);
    Some((mount.next()?, mount.next()?))
}

#[cfg(test)]
mod tests {
    use super::blkio_mount;

    #[test]
    fn the_blkio_hierarchy_is_found_among_the_mounts() {
        let blkio =
            "36 25 0:31 / /sys/fs/cgroup/blkio rw,relatime shared:13 - cgroup cgroup rw,blkio";
        assert_eq!(blkio_mount(blkio), Some(("/", "/sys/fs/cgroup/blkio")));
        let joined = "40 25 0:35 /lxc/c1 /sys/fs/cgroup/io rw - cgroup cgroup rw,cpu,blkio";
        assert_eq!(blkio_mount(joined), Some(("/lxc/c1", "/sys/fs/cgroup/io")));
        let memory = "33 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        assert_eq!(blkio_mount(memory), None);
        let v2 = "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(blkio_mount(v2), None);
    }
}
