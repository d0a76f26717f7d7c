//! Where every frame is stored.
//!
//! The archive is the consumer that must receive every frame: an acknowledgement promises that a
//! frame is stored, so nothing here may drop one. [`consumer`] takes the processor's batches and
//! applies the sync policy, the bound on what is written and not yet durable, and the handling of
//! failed writes; an [`ArchiveSink`] stores them. The durable sink writes CRC-checked segment files
//! ([`segment`] is their format, [`writer`] appends, [`disk`] syncs and rolls over on a thread of
//! its own, [`recovery`] reads them back at start); [`tools`] are the operators' `verify`,
//! `inspect`, `repair`, `prune` and `export`. [`open`] is how a daemon gets its archive and where
//! each source resumes. A sink that keeps files publishes its [`DurableEnd`], which the archive's
//! readers ([`read`]: followers, TM outputs, sinks, time-window queries) read up to and never
//! past; [`index`] is each sealed segment's index (its contents and time blocks), [`retention`]
//! bounds the archive, [`export`] writes frames as rows and [`completeness`] finds the gaps.

use std::collections::HashMap;
use std::error::Error;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::Path;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{ArchiveConfig, ArchiveKind, SyncMode};
use crate::domain::batch::Batch;
use crate::domain::clock::ClockSteps;
use crate::domain::frame::SourceKey;
use crate::domain::ledger::ResumePoint;

pub mod completeness;
pub mod consumer;
mod disk;
pub mod export;
pub mod index;
mod journal;
pub mod layout;
pub mod pace;
pub mod read;
mod recovery;
pub mod retention;
pub mod segment;
pub mod tools;
mod tracked;
pub mod writer;

pub(crate) use consumer::{ArchiveConsumer, ArchiveSettings};
pub(crate) use disk::{ReaderHold, Readers};
pub use retention::{ReadMarks, Retention, SealedFeed};
pub use writer::SegmentSink;

/// Opens the archive the config names for `shards` shards: the durable segment archive, each
/// shard recovered from its newest segment, with every source's resume point; or counting sinks,
/// which remember nothing.
pub fn open(config: &ArchiveConfig, shards: usize) -> io::Result<Archive> {
    match config.kind {
        ArchiveKind::Segments => writer::open_shards(config, shards),
        ArchiveKind::Count => Ok(Archive::from(
            (0..shards)
                .map(|_| Box::new(CountingSink::default()) as Box<dyn ArchiveSink>)
                .collect::<Vec<_>>(),
        )),
    }
}

/// An opened archive: a sink for each shard the daemon runs, and what the archive knows.
pub struct Archive {
    /// Shard `k` stores into `sinks[k]`; the daemon runs one shard per sink.
    pub sinks: Vec<Box<dyn ArchiveSink>>,
    /// The durable ends of shard directories beyond the sinks (a daemon that ran more shards left
    /// them): complete, read by followers, never written. Their senders are gone.
    pub retired: Vec<(usize, watch::Receiver<DurableEnd>)>,
    /// Where each source the archive knows resumes.
    pub resume: HashMap<SourceKey, ResumePoint>,
    /// The followers reading its files, which keep its synced segments cached; `None` when it
    /// keeps no files.
    pub readers: Option<Arc<Readers>>,
    /// What retention watches, its files and the segments its writers seal; `None` when it keeps
    /// no files.
    pub files: Option<SealedFeed>,
    /// Where its received times stood at the start, and the steps of the wall clock its writers
    /// record.
    pub clock: ArchiveTime,
}

/// What the archive knows of time: the newest received time it held when it was opened (the last
/// run's, in every shard; `None` when it held no frame), and the steps of the wall clock that the
/// daemon notices and every shard's writer records ([`ClockSteps`]).
#[derive(Debug, Clone, Default)]
pub struct ArchiveTime {
    pub newest_at_start: Option<u64>,
    pub steps: Arc<ClockSteps>,
}

impl From<Vec<Box<dyn ArchiveSink>>> for Archive {
    /// Shards storing into `sinks`, with nothing to resume.
    fn from(sinks: Vec<Box<dyn ArchiveSink>>) -> Archive {
        Archive {
            sinks,
            retired: Vec::new(),
            resume: HashMap::new(),
            readers: None,
            files: None,
            clock: ArchiveTime::default(),
        }
    }
}

impl From<Box<dyn ArchiveSink>> for Archive {
    /// One shard storing into `sink`.
    fn from(sink: Box<dyn ArchiveSink>) -> Archive {
        Archive::from(vec![sink])
    }
}

impl<S: ArchiveSink> From<Box<S>> for Archive {
    /// One shard storing into `sink`.
    fn from(sink: Box<S>) -> Archive {
        Archive::from(sink as Box<dyn ArchiveSink>)
    }
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
    let err = segment::with_path(err, path, what);
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
        .map_err(|err| segment::with_path(err, dir, "cannot sync the archive directory"))
}

/// A boxed future, the return type of [`ArchiveSink`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where archived frames go.
pub trait ArchiveSink: Send + 'static {
    /// Writes a group of batches, in order. `Ok` means they will be stored once [`Self::sync`]
    /// (or nothing, for a sink without a sync) has covered them. `Err` means none of the group was
    /// written (a sink cuts a partial write back): the consumer offers the same batches again.
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>>;

    /// Makes emergency batches, which the last [`Self::write`] wrote, durable on a path of their
    /// own that does not wait for the routine data written before them (the emergency journal).
    /// The future ends once they are. `None`: the sink has no such path, and they are stored with
    /// the next [`Self::sync`], which stores them in any case.
    fn journal(&mut self, batches: &[Arc<Batch>]) -> Option<BoxFuture<'static, io::Result<()>>> {
        let _ = batches;
        None
    }

    /// Starts making everything written so far durable. The future completes once it is, and
    /// does not hold the sink: writes go on while the disk syncs. A [transient](is_transient)
    /// error lost nothing: what the sync was to cover is written and waits for the next one. Any
    /// other error may have lost it: nothing written before it may count as stored.
    fn sync(&mut self) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Called once after the last batch, when the pipeline has drained.
    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// How far the files hold durable records, for followers of the archive; `None` for a sink
    /// that keeps no files. The sender goes when the sink does: nothing more will become durable.
    fn durable_end(&self) -> Option<watch::Receiver<DurableEnd>> {
        None
    }
}

/// How far the segment files are durable: every record of the segments before `segment`, and
/// the first `len` bytes (whole records) of segment `segment`, are stored under the sync policy.
/// It only moves forward. A follower that reads no further than this never hands out a frame
/// that a crash could take back, so a position it gave stays valid across restarts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DurableEnd {
    /// The segment index (as in its file name).
    pub segment: u64,
    /// Bytes of that segment, from the start of the file.
    pub len: u64,
}

/// When written frames count as stored, and so may be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SyncPolicy {
    /// After an `fsync` of the group that holds them.
    EveryBatch,
    /// After the next periodic `fsync`, at most this long after they were written.
    Interval(Duration),
    /// As soon as they are written to the operating system (lost if the machine crashes).
    Never,
}

impl SyncPolicy {
    /// The policy `archive.sync` and `archive.sync_interval_ms` ask for.
    pub(crate) fn of(config: &ArchiveConfig) -> SyncPolicy {
        match config.sync {
            SyncMode::Batch => SyncPolicy::EveryBatch,
            SyncMode::Interval => SyncPolicy::Interval(config.sync_interval),
            SyncMode::Never => SyncPolicy::Never,
        }
    }
}

/// Keeps nothing but the count: for tests, benchmarks and deployments that need no archive.
#[derive(Debug, Default)]
pub struct CountingSink {
    frames: u64,
}

impl ArchiveSink for CountingSink {
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>> {
        self.frames += batches.iter().map(|b| b.len() as u64).sum::<u64>();
        Box::pin(async { Ok(()) })
    }

    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        tracing::info!(frames = self.frames, "archive closed");
        Box::pin(async { Ok(()) })
    }
}
