//! The archive's errors.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::Path;

/// `err` with the path of the file it is about, after `what` was tried.
pub(crate) fn with_path(err: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

/// An error that lost nothing: the step that failed only gets a descriptor or a name (`open`,
/// `dup`, `rename`, opening a directory to sync it), it did not happen, and the same step may be
/// tried again. Everything else that fails in a sync (an `fsync` itself, whatever its `errno`)
/// may have lost what the sync covered: after a failed `fsync` the kernel may have marked the
/// pages it could not write clean, or dropped them (ext4 does on `ENOSPC` during delayed
/// allocation), and a later `fsync` would succeed over them.
#[derive(Debug)]
struct Transient(io::Error);

impl fmt::Display for Transient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Error for Transient {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// Marks `err` as [transient](is_transient): it lost nothing, and the step may be tried again.
pub(crate) fn transient(err: io::Error) -> io::Error {
    io::Error::new(err.kind(), Transient(err))
}

/// Whether `err` lost nothing, so that what failed may be tried again ([`transient`]); a sink's
/// sync that fails with any other error may have lost what it covered.
pub(crate) fn is_transient(err: &io::Error) -> bool {
    err.get_ref().is_some_and(|inner| inner.is::<Transient>())
}

/// The `errno`s of a step that opens, creates or names a file that say the system is short of
/// something for now: descriptors (`EMFILE`, `ENFILE`), memory, or space for a directory entry.
const SHORT_OF: [i32; 6] = [
    libc::EMFILE,
    libc::ENFILE,
    libc::ENOMEM,
    libc::ENOSPC,
    libc::EDQUOT,
    libc::EINTR,
];

/// The error of a step that only opens, creates or names `path` (never an `fsync`), with the
/// path: [transient](is_transient) when the system was short of something for now.
pub(crate) fn opening_failed(err: io::Error, path: &Path, what: &str) -> io::Error {
    let short = err
        .raw_os_error()
        .is_some_and(|errno| SHORT_OF.contains(&errno));
    let err = with_path(err, path, what);
    match short {
        true => transient(err),
        false => err,
    }
}

/// Makes the names in `dir` durable (the segments' and the journals'). Opening the directory is a
/// step that may be tried again; its `fsync` is not.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    std::fs::File::open(dir)
        .map_err(|err| opening_failed(err, dir, "cannot open the archive directory"))?
        .sync_all()
        .map_err(|err| with_path(err, dir, "cannot sync the archive directory"))
}
