//! The archive's errors: one type, [`ArchiveError`], with a variant per failure a caller tells
//! apart (damage, another format version, a failed step of I/O, a transient one, a lock held), so
//! callers match variants, never an [`io::ErrorKind`] or a message's text. Every variant names the
//! file it is about; damage says why as a [`DamageReason`], made text only where it is printed.

use std::io;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};

use super::damage::{DamageReason, Kept};

/// What [`ArchiveError::Locked`] says of the directory (the words operators and tests look for).
const IN_USE: &str = "is in use by another aggregator process";

/// Bytes of a file that do not decode: which file, where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: offset {offset}: {reason}", path.display())]
pub struct FileDamage {
    pub path: PathBuf,
    /// The byte offset of the damage in the file (0 for a whole file that does not decode).
    pub offset: u64,
    pub reason: DamageReason,
}

/// What went wrong in the archive, and with which file.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// A file, or a record in it, does not decode: bytes on disk that are not what the format
    /// says (a bad CRC, an impossible length, a bad magic, a damaged `RETENTION` file). Never a
    /// reason to delete anything; `archive repair` shows and moves damaged segment bytes.
    #[error(transparent)]
    Damaged(FileDamage),
    /// Damage a repair leaves in place: a corrupt record the daemon's start does not cut, or a
    /// segment magic `archive repair` does not guess. `kept` says which, and the way out.
    #[error("{}: offset {offset}: {}", path.display(), kept.says(reason))]
    Unrepaired {
        path: PathBuf,
        offset: u64,
        reason: DamageReason,
        kept: Kept,
    },
    /// A segment or journal of a format version this build does not read (a later build wrote
    /// it): refused with the versions named, never read as damage (which `archive repair
    /// --quarantine` would move aside).
    #[error(
        "cannot read {}: archive format version {found} (magic TLMSEG{found:02}); \
         this build reads versions {} to {}",
        path.display(), reads.start(), reads.end()
    )]
    Version {
        path: PathBuf,
        found: u8,
        /// The versions this build reads ([`super::READ_VERSIONS`]).
        reads: RangeInclusive<u8>,
    },
    /// A step of I/O on `path` failed; `operation` says which ("read", "create segment", ...).
    /// A failed `fsync` is one: it may have lost what it covered.
    #[error("cannot {operation} {}: {source}", path.display())]
    Io {
        path: PathBuf,
        operation: &'static str,
        source: io::Error,
    },
    /// A step that lost nothing: it only gets a descriptor or a name (`open`, `dup`, `rename`,
    /// opening a directory to sync it) and the system was short of something for now; it did not
    /// happen, and may be tried again. Everything else that fails in a sync (an `fsync` itself,
    /// whatever its `errno`) may have lost what the sync covered: after a failed `fsync` the kernel
    /// may have marked the pages it could not write clean, or dropped them (ext4 does on `ENOSPC`
    /// during delayed allocation), and a later `fsync` would succeed over them.
    #[error("cannot {operation} {}: {source}", path.display())]
    Transient {
        path: PathBuf,
        operation: &'static str,
        source: io::Error,
    },
    /// The shard directory `path` is locked (`LOCK`) by another process: a daemon, `archive
    /// repair` or `archive prune`.
    #[error("the archive directory {} {IN_USE} ({source})", path.display())]
    Locked { path: PathBuf, source: io::Error },
    /// The archive cannot go on: an earlier step failed and may have lost what it covered (a
    /// failed sync, a failed rollover), one of its threads stopped, or it was asked to stop. `reason` names the
    /// directory or file and the first failure. Never transient: nothing is tried again.
    #[error("{reason}")]
    Broken { reason: String },
}

impl ArchiveError {
    /// `operation` on `path` failed with an I/O error: for `map_err`.
    pub(crate) fn io<'a>(
        path: &'a Path,
        operation: &'static str,
    ) -> impl Fn(io::Error) -> Self + Copy + 'a {
        move |source| ArchiveError::Io {
            path: path.to_path_buf(),
            operation,
            source,
        }
    }

    /// A step that only opens, creates or names `path` (never an `fsync`) failed:
    /// [`Transient`](ArchiveError::Transient) when the system was short of something for now
    /// ([`SHORT_OF`]), else [`Io`](ArchiveError::Io). For `map_err`.
    pub(crate) fn opening<'a>(
        path: &'a Path,
        operation: &'static str,
    ) -> impl Fn(io::Error) -> Self + Copy + 'a {
        move |source| {
            let path = path.to_path_buf();
            match source
                .raw_os_error()
                .is_some_and(|errno| SHORT_OF.contains(&errno))
            {
                true => ArchiveError::Transient {
                    path,
                    operation,
                    source,
                },
                false => ArchiveError::Io {
                    path,
                    operation,
                    source,
                },
            }
        }
    }

    /// Damage in the file at `path`, at byte `offset`.
    pub(crate) fn damaged(path: &Path, offset: u64, reason: DamageReason) -> Self {
        ArchiveError::Damaged(FileDamage {
            path: path.to_path_buf(),
            offset,
            reason,
        })
    }

    /// The archive cannot go on, for `reason` ([`Broken`](ArchiveError::Broken)).
    pub fn broken(reason: impl Into<String>) -> Self {
        ArchiveError::Broken {
            reason: reason.into(),
        }
    }

    /// Whether the failed step lost nothing, so that it may be tried again
    /// ([`Transient`](ArchiveError::Transient)); a sink's sync that fails with any other error may
    /// have lost what it covered.
    pub fn is_transient(&self) -> bool {
        matches!(self, ArchiveError::Transient { .. })
    }

    /// Whether the file it is about is not there (retention or an operator deleted it after it
    /// was listed).
    pub fn is_gone(&self) -> bool {
        matches!(self, ArchiveError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// The same error again, for a second party to hold (an `io::Error` is not `Clone`): the
    /// variant, the path and the operation kept, the source's kind and text.
    pub(crate) fn duplicate(&self) -> Self {
        let again = |source: &io::Error| io::Error::new(source.kind(), source.to_string());
        match self {
            ArchiveError::Damaged(damage) => ArchiveError::Damaged(damage.clone()),
            ArchiveError::Unrepaired {
                path,
                offset,
                reason,
                kept,
            } => ArchiveError::Unrepaired {
                path: path.clone(),
                offset: *offset,
                reason: reason.clone(),
                kept: kept.clone(),
            },
            ArchiveError::Version { path, found, reads } => ArchiveError::Version {
                path: path.clone(),
                found: *found,
                reads: reads.clone(),
            },
            ArchiveError::Io {
                path,
                operation,
                source,
            } => ArchiveError::io(path, operation)(again(source)),
            ArchiveError::Transient {
                path,
                operation,
                source,
            } => ArchiveError::Transient {
                path: path.clone(),
                operation,
                source: again(source),
            },
            ArchiveError::Locked { path, source } => ArchiveError::Locked {
                path: path.clone(),
                source: again(source),
            },
            ArchiveError::Broken { reason } => ArchiveError::broken(reason.clone()),
        }
    }
}

/// For the boundaries that still speak `io::Error` (the daemon's startup, the operators' tools'
/// callers): the kind a caller outside the archive may look at, with the archive's error inside.
impl From<ArchiveError> for io::Error {
    fn from(err: ArchiveError) -> io::Error {
        let kind = match &err {
            ArchiveError::Damaged(_) | ArchiveError::Unrepaired { .. } => {
                io::ErrorKind::InvalidData
            }
            ArchiveError::Version { .. } => io::ErrorKind::Unsupported,
            ArchiveError::Broken { .. } => io::ErrorKind::Other,
            ArchiveError::Io { source, .. }
            | ArchiveError::Transient { source, .. }
            | ArchiveError::Locked { source, .. } => source.kind(),
        };
        io::Error::new(kind, err)
    }
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

/// Makes the names in `dir` durable (the segments' and the journals'). Opening the directory is a
/// step that may be tried again; its `fsync` is not.
pub(crate) fn sync_dir(dir: &Path) -> Result<(), ArchiveError> {
    std::fs::File::open(dir)
        .map_err(ArchiveError::opening(dir, "open the archive directory"))?
        .sync_all()
        .map_err(ArchiveError::io(dir, "sync the archive directory"))
}
