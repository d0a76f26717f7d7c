//! What a shard stores into: the [`ArchiveSink`] trait, the sinks' sync policy, a sink that only
//! counts, and an opened [`Archive`] with what it knows at the start.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;

use crate::archive::format::index::SpanCache;
use crate::archive::format::ArchiveError;
use crate::archive::retention::SealedFeed;
use crate::config::{ArchiveConfig, SyncMode};
use crate::domain::batch::Batch;
use crate::domain::clock::ClockSteps;
use crate::domain::frame::SourceKey;
use crate::domain::ledger::ResumePoint;
use crate::domain::position::DurableEnd;
use crate::domain::readers::Readers;

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
    /// The span cache its writers and retention fill, for its readers.
    pub spans: SpanCache,
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
            spans: SpanCache::default(),
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

/// A boxed future, the return type of [`ArchiveSink`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An emergency journal append under way ([`ArchiveSink::journal`]).
pub struct JournalAppend {
    /// Each batch's records, byte for byte as the journal will hold them: known at once, so that
    /// they can be published while the journal syncs.
    pub records: Vec<Bytes>,
    /// Ends once they are durable.
    pub durable: BoxFuture<'static, Result<(), ArchiveError>>,
}

/// Where archived frames go.
pub trait ArchiveSink: Send + 'static {
    /// Writes a group of batches, in order. `Ok` means they will be stored once [`Self::sync`]
    /// (or nothing, for a sink without a sync) has covered them. `Err` means none of the group was
    /// written (a sink cuts a partial write back): the consumer offers the same batches again.
    fn write<'a>(
        &'a mut self,
        batches: &'a [Arc<Batch>],
    ) -> BoxFuture<'a, Result<(), ArchiveError>>;

    /// Makes emergency batches, which the last [`Self::write`] wrote, durable on a path of their
    /// own that does not wait for the routine data written before them (the emergency journal).
    /// `None`: the sink has no such path, and they are stored with the next [`Self::sync`], which
    /// stores them in any case.
    fn journal(&mut self, batches: &[Arc<Batch>]) -> Option<JournalAppend> {
        let _ = batches;
        None
    }

    /// Starts making everything written so far durable. The future completes once it is, and
    /// does not hold the sink: writes go on while the disk syncs. A [transient](ArchiveError::Transient)
    /// error lost nothing: what the sync was to cover is written and waits for the next one. Any
    /// other error may have lost it: nothing written before it may count as stored.
    fn sync(&mut self) -> BoxFuture<'static, Result<(), ArchiveError>> {
        Box::pin(async { Ok(()) })
    }

    /// Called once after the last batch, when the pipeline has drained.
    fn close(&mut self) -> BoxFuture<'_, Result<(), ArchiveError>> {
        Box::pin(async { Ok(()) })
    }

    /// How far the files hold durable records, for followers of the archive; `None` for a sink
    /// that keeps no files. The sender goes when the sink does: nothing more will become durable.
    fn durable_end(&self) -> Option<watch::Receiver<DurableEnd>> {
        None
    }
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
    fn write<'a>(
        &'a mut self,
        batches: &'a [Arc<Batch>],
    ) -> BoxFuture<'a, Result<(), ArchiveError>> {
        self.frames += batches.iter().map(|b| b.len() as u64).sum::<u64>();
        Box::pin(async { Ok(()) })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), ArchiveError>> {
        tracing::info!(frames = self.frames, "archive closed");
        Box::pin(async { Ok(()) })
    }
}
