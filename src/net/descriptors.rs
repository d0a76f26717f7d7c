//! File descriptors: the archive must always be able to open and sync its files, whatever the
//! network's clients do.
//!
//! Every connection, on every listener, takes a descriptor, and so does every segment, journal and
//! directory the archive opens. With the soft limit a shell gives (1,024), a thousand idle HTTP
//! connections once took them all: the archive's next open failed with `EMFILE` and nothing more
//! was stored. Two measures keep that from happening:
//! - at start the daemon raises its soft `RLIMIT_NOFILE` to the hard limit ([`raise_limit`]);
//! - the top [`reserve`] descriptors are kept for the archive: the kernel hands out the lowest free
//!   number, so an accepted connection whose descriptor falls in the reserve means every number
//!   below it is taken, and it is closed at once ([`in_reserve`]). No connection ever holds a
//!   descriptor of the reserve, so the archive always finds one there.

use std::io;
use std::os::fd::RawFd;

/// The soft and hard limits on open files, before and after [`raise_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The soft limit the process was started with.
    pub inherited: u64,
    /// The soft limit now.
    pub soft: u64,
    pub hard: u64,
}

/// Raises the soft limit on open files to the hard limit (capped at the kernel's `fs.nr_open`,
/// past which `setrlimit` fails).
pub fn raise_limit() -> io::Result<Limits> {
    let mut limit = get_limit()?;
    let inherited = widen(limit.rlim_cur);
    let mut target = limit.rlim_max;
    if let Some(nr_open) = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|text| text.trim().parse::<libc::rlim_t>().ok())
    {
        target = target.min(nr_open);
    }
    if target > limit.rlim_cur {
        limit.rlim_cur = target;
        // SAFETY: setrlimit reads the struct it is given, which lives across the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let now = get_limit()?;
    Ok(Limits {
        inherited,
        soft: widen(now.rlim_cur),
        hard: widen(now.rlim_max),
    })
}

/// `rlim_t` is `u64` on 64-bit Linux, and narrower on some 32-bit targets.
#[allow(clippy::unnecessary_cast)]
fn widen(value: libc::rlim_t) -> u64 {
    value as u64
}

fn get_limit() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given, which lives across the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

/// How many descriptors at the top of `soft` are kept from connections: an eighth, at least 64
/// (each shard's archive holds a segment, a journal and a directory open, and opens the next
/// segment before it lets go of the last), at most half.
pub fn reserve(soft: u64) -> u64 {
    (soft / 8).max(64).min(soft / 2)
}

/// Whether `fd`, just accepted, lies in the reserve of the current soft limit: then every lower
/// number is taken, and the connection must be closed for the archive's sake.
pub(crate) fn in_reserve(fd: RawFd) -> bool {
    let Ok(limit) = get_limit() else {
        return false;
    };
    let soft = widen(limit.rlim_cur);
    u64::try_from(fd).is_ok_and(|fd| fd >= soft - reserve(soft))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_an_eighth_within_its_bounds() {
        assert_eq!(reserve(1024), 128);
        assert_eq!(reserve(256), 64);
        assert_eq!(reserve(100), 50);
        assert_eq!(reserve(1 << 20), 1 << 17);
    }

    /// Raising never lowers: the soft limit ends at the hard one (or `fs.nr_open`), and a second
    /// raise changes nothing.
    #[test]
    fn raising_reaches_the_hard_limit_and_is_idempotent() {
        let first = raise_limit().unwrap();
        assert!(first.soft >= first.inherited);
        assert!(first.soft <= first.hard);
        let second = raise_limit().unwrap();
        assert_eq!(second.soft, first.soft);
        assert_eq!(second.inherited, first.soft);
    }
}
