//! The archive's disk thread: the file work that waits for the disk, done in order on one thread.
//!
//! The writer appends from the runtime thread and never waits for the disk. What does wait, the
//! `fsync`s, creating the next segment and giving a new segment its name, is sent here as a job and
//! runs after every job sent before it. The order is what keeps a restart exactly-once without
//! making the writer wait for a rollover:
//! - recovery reads the newest segment alone, and its checkpoint lists frames stored in the segment
//!   before it, so a new segment may only take its name once the segment before it is durable. The
//!   writer starts the new segment under a staging name (`….seg.new`, which recovery and the tools
//!   ignore) and goes on appending to it at once; the rollover job syncs the full segment, then the
//!   new one, and only then renames it;
//! - frames are acknowledged only after a sync, and a sync sent after a rollover runs after it, so
//!   nothing in a staged segment is acknowledged before the segment has its name. A staged segment
//!   left by a crash holds nothing acknowledged, and the next start deletes it.
//!
//! A rollover whose `fsync` fails leaves a staged segment that can never be named: every later job
//! fails with its error, so nothing more is acknowledged, and the writer stops. Naming it, though,
//! only needs a rename and a descriptor of the directory, and when the system is short of those
//! for now (out of descriptors, say: `EMFILE`) nothing is lost: the rollover waits, every job
//! after it first tries the name again and fails [transiently](ArchiveError::Transient) while it
//! cannot, so the archive consumer retries its syncs and the archive recovers once the name is
//! given. The jobs share the open files (`Arc<File>`), so a sync needs no descriptor of its own.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use super::files::{self, Segment};
use super::journal::Gate;
use super::write_back::{sync_segment, WriteBack};
use crate::archive::format::index::{self, SealedSegment, SegmentIndex, SpanCache};
use crate::archive::format::{self, ArchiveError};
use crate::domain::readers::Readers;

/// Writes a sealed segment's index beside it. Only logged when it fails: the index is a cache,
/// built again from the segment when it is missing.
fn write_index(dir: &Path, segment: u64, contents: &SegmentIndex, spans: &SpanCache) {
    spans.remember(dir, segment, contents);
    if let Err(err) = contents.write(&index::index_path(dir, segment)) {
        tracing::warn!(error = %err, "archive: cannot write a sealed segment's index; it is built again when needed");
    }
}

/// A reply the disk thread sends when a job is done.
type Reply<T> = oneshot::Sender<Result<T, ArchiveError>>;

enum Job {
    /// Creates the next segment under its staging name (the spare the writer switches to).
    Prepare { index: u64, reply: Reply<File> },
    /// Syncs the full segment, gives back its unused reservation and writes its index
    /// (`contents`), then makes the staged segment durable and names it.
    RollOver {
        full: Segment,
        contents: SegmentIndex,
        next: Arc<File>,
        index: u64,
        reply: Reply<PathBuf>,
    },
    /// Makes what was written to the segment before the job was sent durable.
    Sync { segment: Segment, reply: Reply<()> },
    /// The last sync and trim, and the spare segment deleted.
    Close { segment: Segment, reply: Reply<()> },
    /// Waits for a test to let it go.
    #[cfg(test)]
    Hold(mpsc::Receiver<()>),
}

/// The handle on the disk thread. Dropping it lets the thread finish the jobs sent and waits for it.
#[derive(Debug)]
pub(super) struct Disk {
    /// Unbounded, and bounded all the same: the writer has at most one rollover and one spare
    /// segment under way (it switches only to a spare it has received, which the thread prepares
    /// after the rollover before it), the archive consumer one sync, and the close comes last.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

/// What a shard's disk thread shares with the others and with retention.
#[derive(Debug)]
pub(super) struct DiskShared {
    /// The emergency appends its write-back makes way for.
    pub(super) gate: Arc<Gate>,
    /// The followers, for whom synced segments stay cached.
    pub(super) readers: Arc<Readers>,
    /// Where a sealed segment is announced (retention); nowhere without it.
    pub(super) sealed: Option<mpsc::Sender<SealedSegment>>,
    /// The archive's span cache, told of each segment sealed.
    pub(super) spans: SpanCache,
}

impl Disk {
    /// Starts the disk thread of shard `shard`, whose archive is in `dir` and whose segments
    /// reserve `segment_bytes`.
    pub(super) fn start(
        dir: PathBuf,
        shard: usize,
        segment_bytes: u64,
        shared: DiskShared,
    ) -> Result<Disk, ArchiveError> {
        let (jobs, queue) = mpsc::channel();
        let worker = Worker {
            dir: dir.clone(),
            shard,
            segment_bytes,
            write_back: WriteBack::default(),
            gate: shared.gate,
            readers: shared.readers,
            sealed: shared.sealed,
            spans: shared.spans,
            spare: None,
            failed: None,
            unnamed: None,
        };
        let thread = std::thread::Builder::new()
            .name("archive-disk".into())
            .spawn(move || worker.run(queue))
            .map_err(ArchiveError::io(&dir, "start the archive disk thread for"))?;
        Ok(Disk {
            jobs: Some(jobs),
            thread: Some(thread),
        })
    }

    /// Sends a job; its reply says what became of it (the reply is dropped with a job the thread
    /// cannot take, which [`answer`] reports).
    fn send<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> Job,
    ) -> oneshot::Receiver<Result<T, ArchiveError>> {
        let (reply, answer) = oneshot::channel();
        if let Some(jobs) = &self.jobs {
            // A send fails only once the thread is gone; the reply, dropped with the job, says so.
            let _ = jobs.send(job(reply));
        }
        answer
    }

    /// Starts creating segment `index` under its staging name.
    pub(super) fn prepare(&self, index: u64) -> oneshot::Receiver<Result<File, ArchiveError>> {
        self.send(|reply| Job::Prepare { index, reply })
    }

    /// Starts the rollover from the `full` segment, which holds `contents`, to the staged segment
    /// `index`, whose checkpoint is written (`next` is a handle on it). The reply is its name.
    pub(super) fn roll_over(
        &self,
        full: Segment,
        contents: SegmentIndex,
        next: Arc<File>,
        index: u64,
    ) -> oneshot::Receiver<Result<PathBuf, ArchiveError>> {
        self.send(|reply| Job::RollOver {
            full,
            contents,
            next,
            index,
            reply,
        })
    }

    /// Starts making the first `segment.len` bytes of the segment durable, after every rollover
    /// sent before.
    pub(super) fn sync(&self, segment: Segment) -> oneshot::Receiver<Result<(), ArchiveError>> {
        self.send(|reply| Job::Sync { segment, reply })
    }

    /// Starts the last sync, which also gives back the segment's unused reservation and deletes
    /// the spare segment.
    pub(super) fn close(&self, segment: Segment) -> oneshot::Receiver<Result<(), ArchiveError>> {
        self.send(|reply| Job::Close { segment, reply })
    }

    /// Holds the thread until the returned sender sends or is dropped: what a test needs to see
    /// the writer go on while a rollover waits.
    #[cfg(test)]
    pub(super) fn hold(&self) -> mpsc::Sender<()> {
        let (release, held) = mpsc::channel();
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job::Hold(held));
        }
        release
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            // The jobs sent are done before the directory lock, dropped after this, lets another
            // daemon in.
            let _ = thread.join();
        }
    }
}

/// A job's reply, with a thread that went away reported as an error.
pub(super) async fn answer<T>(
    reply: oneshot::Receiver<Result<T, ArchiveError>>,
) -> Result<T, ArchiveError> {
    reply.await.unwrap_or_else(|_| Err(thread_gone()))
}

pub(super) fn thread_gone() -> ArchiveError {
    ArchiveError::broken("the archive disk thread stopped")
}

/// The disk thread's state.
struct Worker {
    dir: PathBuf,
    shard: usize,
    segment_bytes: u64,
    write_back: WriteBack,
    gate: Arc<Gate>,
    readers: Arc<Readers>,
    sealed: Option<mpsc::Sender<SealedSegment>>,
    spans: SpanCache,
    /// The spare segment prepared and not yet rolled over to: deleted at close.
    spare: Option<u64>,
    /// Why a rollover failed; every later job fails with it.
    failed: Option<String>,
    /// A rollover whose new segment is durable and could not be named yet: its reply waits for
    /// the name, which every later job tries first.
    unnamed: Option<Unnamed>,
}

/// A durable staged segment waiting for its name, and the rollover's reply.
struct Unnamed {
    next: Arc<File>,
    index: u64,
    reply: Reply<PathBuf>,
    /// The segment before it, sealed once this one has its name.
    sealed: SealedSegment,
    /// The failure has been logged: once per rollover, not once per retry.
    told: bool,
}

impl Worker {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        while let Ok(job) = queue.recv() {
            self.handle(job);
        }
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Prepare { index, reply } => {
                let result = self.check().and_then(|()| {
                    let file = files::create_staged(&self.dir, index, self.segment_bytes)?;
                    self.spare = Some(index);
                    Ok(file)
                });
                let _ = reply.send(result);
            }
            Job::RollOver {
                full,
                contents,
                next,
                index,
                reply,
            } => {
                let result = self.check().and_then(|()| {
                    self.spare = None;
                    sync_segment(&full, &mut self.write_back, &self.gate, &self.readers)?;
                    files::trim(&full.file, &full.path, full.len)?;
                    write_index(&self.dir, full.index, &contents, &self.spans);
                    // The writer has been appending to the staged segment meanwhile.
                    let staged = files::staged_path(&self.dir, index);
                    self.write_back.run(&next, index, &staged, &self.gate)
                });
                match result {
                    Ok(()) => {
                        let sealed = SealedSegment {
                            shard: self.shard,
                            segment: full.index,
                            contents,
                        };
                        self.unnamed = Some(Unnamed {
                            next,
                            index,
                            reply,
                            sealed,
                            told: false,
                        });
                        // A transient failure keeps it for the next job; the rest is reported.
                        let _ = self.name_staged();
                    }
                    Err(err) => {
                        self.fail(index, &err);
                        let _ = reply.send(Err(err));
                    }
                }
            }
            Job::Sync { segment, reply } => {
                let _ = reply.send(self.ready().and_then(|()| {
                    sync_segment(&segment, &mut self.write_back, &self.gate, &self.readers)
                }));
            }
            Job::Close { segment, reply } => {
                let result = self.ready().and_then(|()| {
                    sync_segment(&segment, &mut self.write_back, &self.gate, &self.readers)?;
                    files::trim(&segment.file, &segment.path, segment.len)?;
                    if let Some(index) = self.spare.take() {
                        let spare = files::staged_path(&self.dir, index);
                        fs::remove_file(&spare).map_err(ArchiveError::io(&spare, "delete"))?;
                    }
                    // The segment may have been staged when the close was sent; it is named now.
                    let name = self.dir.join(format::segment_name(segment.index));
                    tracing::info!(segment = %name.display(), "archive closed");
                    Ok(())
                });
                let _ = reply.send(result);
            }
            #[cfg(test)]
            Job::Hold(held) => {
                let _ = held.recv();
            }
        }
    }

    fn check(&self) -> Result<(), ArchiveError> {
        match &self.failed {
            None => Ok(()),
            Some(why) => Err(ArchiveError::broken(why.clone())),
        }
    }

    /// Every job after a rollover comes after its new segment's name: fails unless the rollovers
    /// sent so far are done.
    fn ready(&mut self) -> Result<(), ArchiveError> {
        self.check()?;
        self.name_staged()
    }

    /// Gives the staged segment of the last rollover its name, if it waits for one, and sends the
    /// rollover's reply; a [transient](ArchiveError::Transient) failure keeps it waiting.
    fn name_staged(&mut self) -> Result<(), ArchiveError> {
        let Some(mut unnamed) = self.unnamed.take() else {
            return Ok(());
        };
        match files::publish(&self.dir, &unnamed.next, unnamed.index) {
            Ok(path) => {
                if unnamed.told {
                    tracing::info!(segment = %path.display(), "archive: the new segment is named");
                }
                let _ = unnamed.reply.send(Ok(path));
                if let Some(sealed) = &self.sealed {
                    // Retention may have stopped first, at a drain: nothing is deleted then.
                    let _ = sealed.send(unnamed.sealed);
                }
                Ok(())
            }
            Err(err) if err.is_transient() => {
                if !std::mem::replace(&mut unnamed.told, true) {
                    tracing::error!(error = %err, "archive: cannot name the new segment yet; syncs fail until it is named, and are tried again");
                }
                let retry = err.duplicate();
                self.unnamed = Some(unnamed);
                Err(retry)
            }
            Err(err) => {
                self.fail(unnamed.index, &err);
                let _ = unnamed.reply.send(Err(err.duplicate()));
                Err(err)
            }
        }
    }

    /// The rollover to segment `index` failed and lost what it covered: every later job fails.
    fn fail(&mut self, index: u64, err: &ArchiveError) {
        self.failed = Some(format!(
            "the archive could not start segment {index}: {err}"
        ));
    }
}
