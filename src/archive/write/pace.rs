//! Routine write-back paced below the daemon's own write limit on the archive's disk, so that an
//! emergency journal's sync does not wait for that limit.
//!
//! Operators limit a service's writes with a cgroup: systemd's `IOWriteBandwidthMax=`, cgroup v2
//! `io.max` (`wbps`), cgroup v1 `blkio.throttle.write_bps_device`. The kernel (blk-throttle)
//! grants the budget per time slice, 100 ms on a disk it takes for rotational and 20 ms on others:
//! once the cgroup has written a slice's budget, every further write waits for the slice's end,
//! and every write after it queues behind it. A write-back that keeps the cgroup at its limit
//! makes each emergency sync wait for the end of the slice it arrives in: half a slice at the
//! median, a whole one at p99. So the disk threads of all shards together write back at most
//! [`SHARE`] of the limit, in pieces of at most the rest of a 20 ms slice's budget: every slice has
//! budget left when a journal write comes, and the throttle does not hold it (above about 20 MB/s,
//! where that rest holds a piece and two journal syncs). The journal's own writes are charged to
//! the same pace, so routine data gets what they leave.
//!
//! The limit is read from the cgroup files when the daemon starts and once a second after, so a
//! limit set or changed while it runs (or a move into another cgroup) is followed. Without a limit
//! the write-back is not paced: the disk's own queue is the daemon's alone.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The share of the write limit the write-back takes, at most.
const SHARE: f64 = 0.95;
/// The shortest time slice blk-throttle grants a budget for (20 ms; 100 ms on a disk the kernel
/// takes for rotational): a piece that leaves room in it leaves room in any.
const SLICE: Duration = Duration::from_millis(20);
/// Room a slice keeps beyond the pace for journal syncs under way: a page of records and the
/// inode, for two at once.
const JOURNAL_ROOM: u64 = 4 * PAGE;
/// The unit a file is written back in.
pub(super) const PAGE: u64 = 4096;
/// The furthest the schedule runs ahead of the clock: the longest a piece waits for its turn.
const MOST_AHEAD: Duration = Duration::from_secs(1);
/// How often the limit is read again.
const REREAD: Duration = Duration::from_secs(1);

/// The pace the disk threads of every shard share: they write to the same disk, under the same
/// limit.
#[derive(Debug)]
pub(super) struct Pace {
    /// The whole disk under the archive, `MAJ:MIN`; `None` when it is on no block device (a
    /// tmpfs), which nothing throttles.
    disk: Option<String>,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Bytes per second the write-back may take; `None`: unpaced.
    rate: Option<f64>,
    read_at: Option<Instant>,
    /// When the next piece may start: every piece and charge moves it on by its bytes at `rate`.
    next: Instant,
}

impl Pace {
    /// The pace of writes to the disk that holds `dir`.
    pub(super) fn of(dir: &Path) -> Pace {
        let disk = disk_of(dir)
            .inspect_err(|why| {
                tracing::info!(
                    dir = %dir.display(),
                    "archive: no write limit can apply to the archive's disk ({why}); the write-back is not paced"
                );
            })
            .ok();
        Pace {
            disk,
            state: Mutex::new(State {
                rate: None,
                read_at: None,
                next: Instant::now(),
            }),
        }
    }

    /// Whether there is a write limit to keep below.
    pub(super) fn paced(&self) -> bool {
        self.rate().is_some()
    }

    /// The largest piece of write-back that leaves room in a slice for the journals' syncs,
    /// whole pages; `None` when unpaced.
    pub(super) fn largest_piece(&self) -> Option<u64> {
        let rate = self.rate()?;
        let room = (rate * (1.0 / SHARE - 1.0) * SLICE.as_secs_f64()) as u64;
        Some((room.saturating_sub(JOURNAL_ROOM) / PAGE * PAGE).max(PAGE))
    }

    /// Waits until `bytes` of write-back may start, and counts them.
    pub(super) fn take(&self, bytes: u64) {
        let Some(rate) = self.rate() else {
            return;
        };
        let wait = self.lock().schedule(rate, bytes, Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// Counts `bytes` written without waiting (the journal's), which the write-back then leaves.
    pub(super) fn charge(&self, bytes: u64) {
        if let Some(rate) = self.rate() {
            self.lock().schedule(rate, bytes, Instant::now());
        }
    }

    /// The write-back's rate, the limit read again if it is due: the files are read outside the
    /// lock, which the journals' syncs take too.
    fn rate(&self) -> Option<f64> {
        let disk = self.disk.as_deref()?;
        let now = Instant::now();
        {
            let mut state = self.lock();
            if state.read_at.is_some_and(|at| now - at < REREAD) {
                return state.rate;
            }
            state.read_at = Some(now);
        }
        let rate = write_limit(disk).map(|limit| limit as f64 * SHARE);
        let mut state = self.lock();
        if rate != state.rate {
            match rate {
                Some(rate) => tracing::info!(
                    disk,
                    write_back_bytes_per_s = rate as u64,
                    "archive: the write-back is paced below this process's write limit on the disk (cgroup)"
                ),
                None => tracing::info!(
                    disk,
                    "archive: no write limit on the disk any more; the write-back is not paced"
                ),
            }
            state.rerate(rate, now);
        }
        state.rate
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// Counts `bytes` at `rate` from `now` on, and returns how long they wait to start: until the
    /// bytes counted before them have had their time. Idle time earns no credit, so nothing is
    /// ever written faster than `rate` after one piece. The schedule runs at most [`MOST_AHEAD`]
    /// ahead of the clock: under a limit so small that the journals' syncs alone exceed it, the
    /// write-back still goes on, a piece at a time.
    fn schedule(&mut self, rate: f64, bytes: u64, now: Instant) -> Duration {
        let start = self.next.max(now);
        let time = Duration::from_secs_f64((bytes as f64 / rate).min(MOST_AHEAD.as_secs_f64()));
        self.next = (start + time).min(now + MOST_AHEAD);
        start - now
    }

    /// A new rate from `now` on: what was counted at the old one no longer holds pieces back.
    fn rerate(&mut self, rate: Option<f64>, now: Instant) {
        self.rate = rate;
        self.next = self.next.min(now);
    }
}

/// Why no write limit can apply to the archive's disk: it is found on no block device, or the
/// calling thread's cgroup is not found.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PaceError {
    #[error("cannot {operation} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        operation: &'static str,
        source: io::Error,
    },
    #[error(
        "{} is on device {device}, which is no block device (a tmpfs, an overlay or a network \
         filesystem)",
        path.display()
    )]
    NoBlockDevice { path: PathBuf, device: String },
    #[error("cannot find the disk of partition {partition} in /sys")]
    NoDiskOfPartition { partition: String },
    #[error("no {} hierarchy is mounted (/proc/self/mountinfo)", hierarchy.name())]
    NotMounted { hierarchy: Hierarchy },
    #[error("this thread is in no cgroup of the {} hierarchy (/proc/thread-self/cgroup)", hierarchy.name())]
    NoCgroup { hierarchy: Hierarchy },
}

/// The whole disk under the filesystem that holds `path`, as `MAJ:MIN`: what cgroup write limits
/// name (they take no partitions).
pub(crate) fn disk_of(path: &Path) -> Result<String, PaceError> {
    let dev = fs::metadata(path)
        .map_err(|source| PaceError::Io {
            path: path.to_path_buf(),
            operation: "stat",
            source,
        })?
        .dev();
    let number = format!("{}:{}", libc::major(dev), libc::minor(dev));
    let sys = Path::new("/sys/dev/block").join(&number);
    if !sys.exists() {
        return Err(PaceError::NoBlockDevice {
            path: path.to_path_buf(),
            device: number,
        });
    }
    if !sys.join("partition").exists() {
        return Ok(number);
    }
    // A partition: its directory in sysfs lies inside its disk's.
    let disk = fs::canonicalize(&sys)
        .ok()
        .and_then(|partition| Some(partition.parent()?.join("dev")))
        .and_then(|dev| fs::read_to_string(dev).ok())
        .ok_or(PaceError::NoDiskOfPartition { partition: number })?;
    Ok(disk.trim().to_string())
}

/// The cgroup hierarchies a write limit is set in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hierarchy {
    /// cgroup v1, the blkio controller: `blkio.throttle.write_bps_device`.
    Blkio,
    /// cgroup v2: `io.max`.
    Unified,
}

impl Hierarchy {
    /// The hierarchy's name, for messages.
    fn name(self) -> &'static str {
        match self {
            Hierarchy::Blkio => "cgroup v1 blkio",
            Hierarchy::Unified => "cgroup v2",
        }
    }
}

/// The calling thread's cgroup directory in `hierarchy` (cgroup v1 may put a process's threads in
/// different ones), and the hierarchy's mount point, from `/proc/self/mountinfo` and
/// `/proc/thread-self/cgroup`.
pub(crate) fn own_cgroup(hierarchy: Hierarchy) -> Result<(PathBuf, PathBuf), PaceError> {
    let read = |path: &str| {
        fs::read_to_string(path).map_err(|source| PaceError::Io {
            path: path.into(),
            operation: "read",
            source,
        })
    };
    cgroup_in(
        hierarchy,
        &read("/proc/self/mountinfo")?,
        &read("/proc/thread-self/cgroup")?,
    )
}

fn cgroup_in(
    hierarchy: Hierarchy,
    mountinfo: &str,
    cgroups: &str,
) -> Result<(PathBuf, PathBuf), PaceError> {
    let (root, mountpoint) = mountinfo
        .lines()
        .find_map(|line| mount_of(hierarchy, line))
        .ok_or(PaceError::NotMounted { hierarchy })?;
    let own = cgroups
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            let ours = match hierarchy {
                Hierarchy::Blkio => controllers.split(',').any(|c| c == "blkio"),
                Hierarchy::Unified => controllers.is_empty(),
            };
            ours.then_some(path)
        })
        .ok_or(PaceError::NoCgroup { hierarchy })?;
    let inside = own.strip_prefix(root).unwrap_or(own);
    let mountpoint = PathBuf::from(mountpoint);
    Ok((mountpoint.join(inside.trim_start_matches('/')), mountpoint))
}

/// (root, mount point) of a mountinfo line that mounts `hierarchy`.
fn mount_of(hierarchy: Hierarchy, line: &str) -> Option<(&str, &str)> {
    let (mount, filesystem) = line.split_once(" - ")?;
    let mut filesystem = filesystem.split(' ');
    let (kind, _source, options) = (filesystem.next()?, filesystem.next()?, filesystem.next()?);
    let ours = match hierarchy {
        Hierarchy::Blkio => kind == "cgroup" && options.split(',').any(|o| o == "blkio"),
        Hierarchy::Unified => kind == "cgroup2",
    };
    if !ours {
        return None;
    }
    let mut mount = mount.split(' ').skip(3);
    Some((mount.next()?, mount.next()?))
}

/// The least write limit on `disk` (`MAJ:MIN`), in bytes per second, set for the calling thread's
/// cgroup or any above it, in either hierarchy; `None` when there is none.
fn write_limit(disk: &str) -> Option<u64> {
    [Hierarchy::Blkio, Hierarchy::Unified]
        .into_iter()
        .filter_map(|hierarchy| Some((hierarchy, own_cgroup(hierarchy).ok()?)))
        .flat_map(|(hierarchy, (dir, mountpoint))| {
            let file = match hierarchy {
                Hierarchy::Blkio => "blkio.throttle.write_bps_device",
                Hierarchy::Unified => "io.max",
            };
            dir.ancestors()
                .take_while(|cgroup| cgroup.starts_with(&mountpoint))
                .filter_map(|cgroup| fs::read_to_string(cgroup.join(file)).ok())
                .filter_map(|text| limit_in(hierarchy, &text, disk))
                .collect::<Vec<_>>()
        })
        .min()
}

/// The write limit on `disk` a limit file's `text` sets.
fn limit_in(hierarchy: Hierarchy, text: &str, disk: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        if fields.next()? != disk {
            return None;
        }
        let limit: u64 = match hierarchy {
            Hierarchy::Blkio => fields.next()?.parse().ok()?,
            Hierarchy::Unified => fields
                .find_map(|field| field.strip_prefix("wbps="))?
                .parse()
                .ok()?,
        };
        // No limit is zero (writing one removes the rule); a file that says so is not believed.
        (limit > 0).then_some(limit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hierarchy_is_found_among_the_mounts() {
        let blkio =
            "36 25 0:31 / /sys/fs/cgroup/blkio rw,relatime shared:13 - cgroup cgroup rw,blkio";
        assert_eq!(
            mount_of(Hierarchy::Blkio, blkio),
            Some(("/", "/sys/fs/cgroup/blkio"))
        );
        let joined = "40 25 0:35 /lxc/c1 /sys/fs/cgroup/io rw - cgroup cgroup rw,cpu,blkio";
        assert_eq!(
            mount_of(Hierarchy::Blkio, joined),
            Some(("/lxc/c1", "/sys/fs/cgroup/io"))
        );
        let memory = "33 25 0:28 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory";
        assert_eq!(mount_of(Hierarchy::Blkio, memory), None);
        let v2 = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate";
        assert_eq!(mount_of(Hierarchy::Blkio, v2), None);
        assert_eq!(
            mount_of(Hierarchy::Unified, v2),
            Some(("/", "/sys/fs/cgroup"))
        );
        assert_eq!(mount_of(Hierarchy::Unified, blkio), None);
    }

    #[test]
    fn the_own_cgroup_is_the_path_below_the_mounts_root() {
        let mountinfo = "30 25 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n\
                         36 25 0:31 /lxc /sys/fs/cgroup/blkio rw - cgroup cgroup rw,blkio";
        let cgroups =
            "4:blkio:/lxc/c1/aggregator\n2:memory:/other\n0::/system.slice/aggregator.service";
        assert_eq!(
            cgroup_in(Hierarchy::Blkio, mountinfo, cgroups).unwrap(),
            (
                PathBuf::from("/sys/fs/cgroup/blkio/c1/aggregator"),
                PathBuf::from("/sys/fs/cgroup/blkio")
            )
        );
        assert_eq!(
            cgroup_in(Hierarchy::Unified, mountinfo, cgroups).unwrap(),
            (
                PathBuf::from("/sys/fs/cgroup/system.slice/aggregator.service"),
                PathBuf::from("/sys/fs/cgroup")
            )
        );
    }

    #[test]
    fn a_limit_is_read_for_its_disk_alone() {
        let v1 = "8:0 1048576\n254:0 52428800\n";
        assert_eq!(limit_in(Hierarchy::Blkio, v1, "254:0"), Some(52_428_800));
        assert_eq!(limit_in(Hierarchy::Blkio, v1, "254:16"), None);
        let v2 = "254:0 rbps=max wbps=52428800 riops=max wiops=max\n8:0 rbps=1000 wbps=max\n";
        assert_eq!(limit_in(Hierarchy::Unified, v2, "254:0"), Some(52_428_800));
        assert_eq!(limit_in(Hierarchy::Unified, v2, "8:0"), None, "max is none");
        assert_eq!(limit_in(Hierarchy::Blkio, "254:0 0\n", "254:0"), None);
        assert_eq!(limit_in(Hierarchy::Blkio, "254:0 lots\n", "254:0"), None);
    }

    #[test]
    fn pieces_start_a_pace_apart_and_idle_time_earns_no_credit() {
        let now = Instant::now();
        let mut state = State {
            rate: None,
            read_at: None,
            next: now,
        };
        let ms = Duration::from_millis;
        assert_eq!(state.schedule(1000.0, 100, now), ms(0), "the first at once");
        assert_eq!(state.schedule(1000.0, 100, now), ms(100));
        assert_eq!(state.schedule(1000.0, 50, now + ms(50)), ms(150));
        assert_eq!(
            state.schedule(1000.0, 10, now + ms(250)),
            ms(0),
            "caught up"
        );
        // A second idle: the next pieces are as far apart as ever.
        let later = now + ms(1260);
        assert_eq!(state.schedule(1000.0, 100, later), ms(0));
        assert_eq!(state.schedule(1000.0, 100, later), ms(100));
        // However small the rate, and however much is counted, a piece waits a second at most.
        assert_eq!(state.schedule(1e-9, u64::MAX, later), ms(200));
        assert_eq!(state.schedule(1.0, 1, later), MOST_AHEAD);
        assert_eq!(state.schedule(1.0, 1, later), MOST_AHEAD);
        // A new rate drops what was counted at the old one.
        state.rerate(Some(1000.0), later);
        assert_eq!(state.schedule(1000.0, 100, later), ms(0));
    }

    /// A cgroup v1 blkio child of the calling thread's cgroup, removed on drop (the thread moved
    /// back first).
    struct Child {
        dir: PathBuf,
        parent: PathBuf,
    }

    impl Drop for Child {
        fn drop(&mut self) {
            // SAFETY: gettid has no preconditions.
            let tid = unsafe { libc::gettid() };
            let _ = fs::write(self.parent.join("tasks"), tid.to_string());
            let _ = fs::remove_dir(&self.dir);
        }
    }

    #[test]
    fn a_thread_under_a_write_limit_paces_its_write_back_below_it() {
        let tmp = std::env::temp_dir();
        let (disk, (parent, _)) = match (disk_of(&tmp), own_cgroup(Hierarchy::Blkio)) {
            (Ok(disk), Ok(cgroup)) => (disk, cgroup),
            (Err(why), _) | (_, Err(why)) => return eprintln!("skipped: {why}"),
        };
        let dir = parent.join(format!("aggregator-pace-test-{}", std::process::id()));
        if let Err(err) = fs::create_dir(&dir) {
            return eprintln!("skipped: cannot create {} ({err})", dir.display());
        }
        let child = Child { dir, parent };
        let limit = 50u64 << 20;
        let throttle = child.dir.join("blkio.throttle.write_bps_device");
        fs::write(&throttle, format!("{disk} {limit}")).expect("the limit is set");
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() };
        fs::write(child.dir.join("tasks"), tid.to_string()).expect("the thread moves in");

        assert_eq!(write_limit(&disk), Some(limit));
        let pace = Pace::of(&tmp);
        let piece = pace.largest_piece().expect("paced");
        let room = ((limit as f64 * SHARE) * (1.0 / SHARE - 1.0) * SLICE.as_secs_f64()) as u64;
        assert_eq!(piece, (room - JOURNAL_ROOM) / PAGE * PAGE);
        assert!(
            piece + JOURNAL_ROOM <= room,
            "a piece leaves room in a slice"
        );
        drop(child);
        assert_eq!(write_limit(&disk), None, "back outside, no limit");
    }

    #[test]
    fn a_disk_nothing_throttles_is_not_paced() {
        let pace = Pace {
            disk: None,
            state: Mutex::new(State {
                rate: None,
                read_at: None,
                next: Instant::now(),
            }),
        };
        assert_eq!(pace.largest_piece(), None);
        pace.take(1 << 40);
        pace.charge(1 << 40);
        assert!(pace.lock().next <= Instant::now(), "nothing was counted");
    }
}
