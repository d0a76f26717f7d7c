//! A cgroup v1 blkio write throttle on one process: how the throttle run gives the daemon a disk
//! slower than its senders without slowing anyone else's writes to that disk.
//!
//! The process gets a cgroup of its own, a child of this process's blkio cgroup, whose
//! `blkio.throttle.write_bps_device` limits its writes to one disk: the whole disk under a path,
//! found with util-linux (`findmnt`, `lsblk`), since the throttle takes no partitions. The
//! cgroup is removed when the [`WriteThrottle`] is dropped, the process moved back out first if it
//! still runs, so an error on the way leaves nothing behind.
//!
//! cgroup v1 charges a write to the cgroup of the thread that submits it to the disk: the
//! process's own `fsync`s and direct writes are throttled, but pages the kernel's flusher threads
//! write back are not. [`WriteThrottle::written_bytes`] is the cgroup's own count of what it wrote,
//! so a run can tell how much of its writing the throttle saw.
//!
//! Setting it up needs root and a mounted cgroup v1 blkio hierarchy; where something is missing,
//! [`WriteThrottle::apply`] says what, and the run is skipped rather than failed.

use std::fs;
use std::path::{Path, PathBuf};

use std::process::Command;

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
        let device = disk_of(path).map_err(|e| format!("{e}: there is no disk to throttle"))?;
        let parent = blkio_cgroup().map_err(|e| {
            format!(
                "{e}; under cgroup v2 alone the limit would be io.max, which this run does not set"
            )
        })?;
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

/// The output of a util-linux command, trimmed; `Err` says what failed.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    match out.status.success() {
        true => Ok(String::from_utf8_lossy(&out.stdout).trim().to_string()),
        false => Err(format!(
            "{program} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
    }
}

/// The whole disk under the filesystem holding `path`, `MAJ:MIN`: the filesystem's source
/// (`findmnt`), then the disk among it and its parents (`lsblk --inverse`).
pub fn disk_of(path: &Path) -> Result<String, String> {
    let source = run(
        "findmnt",
        &["-nvo", "SOURCE", "--target", &path.display().to_string()],
    )?;
    let devices = run("lsblk", &["-nrso", "MAJ:MIN,TYPE", &source])
        .map_err(|e| format!("{e}: {} is on no block device", path.display()))?;
    devices
        .lines()
        .find_map(|line| line.strip_suffix(" disk"))
        .map(String::from)
        .ok_or_else(|| format!("no disk under {source}"))
}

/// This process's cgroup in the v1 blkio hierarchy: the hierarchy's mount (`findmnt`) joined with
/// the path `/proc/self/cgroup` gives for it.
fn blkio_cgroup() -> Result<PathBuf, String> {
    let mount = run(
        "findmnt",
        &["-nro", "TARGET", "-t", "cgroup", "-O", "blkio"],
    )
    .ok()
    .filter(|m| !m.is_empty())
    .ok_or("no cgroup v1 blkio hierarchy is mounted")?;
    let own = fs::read_to_string("/proc/self/cgroup").map_err(|e| e.to_string())?;
    let path = own
        .lines()
        .filter_map(|line| line.split_once(':')?.1.split_once(':'))
        .find(|(controllers, _)| controllers.split(',').any(|c| c == "blkio"))
        .map(|(_, path)| path.trim_start_matches('/'))
        .ok_or("this process is in no blkio cgroup")?;
    Ok(Path::new(mount.lines().next().unwrap_or_default()).join(path))
}
