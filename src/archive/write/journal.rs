//! The emergency journal: a durability path for emergency frames that does not wait for routine
//! data.
//!
//! A frame is acknowledged once it is durable, and the segment's `fsync` makes everything written
//! before it durable, so an emergency written behind megabytes of routine telemetry waits for all
//! of them to reach the disk: seconds, on a disk slower than the senders. Each shard therefore
//! also appends its emergency frames, once they are written to the segment, to a small file of
//! its own (`emergency-{generation:020}.journal`, the segment format: the magic, then FRAMES
//! records), on a thread of its own that syncs each group of appends as it comes (group commit).
//! An emergency frame counts as stored when either copy is durable, whichever comes first: the
//! journal's, or the segment's sync. The segment stays the archive every reader reads; the journal
//! only carries frames across a crash that took the segment's unsynced tail: recovery appends the
//! frames of the journal that its shard's segments lack to the new segment, and then deletes it.
//!
//! The journal on its own is not enough on a disk that queues I/O in order: an emergency's sync
//! would queue behind the routine write-back of the segment's last `fsync`. So the disk thread
//! writes a segment back a piece at a time, and waits before each piece while emergency appends
//! are in flight ([`Gate`]); an emergency then waits for one piece at most. Under a cgroup's write
//! limit, which makes every write wait once the limit's time slice is used up, the pieces are
//! paced below the limit instead ([`super::pace`]), so a journal's sync does not wait for it, and
//! the journal syncs at most every [`SYNC_GAP`], so that a flood of emergencies costs the limit's
//! budget little.
//!
//! The journal never grows past what one segment sync covers: when a sync begins and the journal
//! holds more than [`ROTATE_BYTES`], the journal moves on to a new generation, and once that sync
//! ends every frame in the earlier generations is durable in a segment, so they are deleted. A
//! clean close deletes them all.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::pace::{Pace, PAGE};
use super::tracked::Tracked;
use crate::archive::format::{
    self, journal_name, list_journals, sync_dir, ArchiveError, Entry, FrameRecord, MAGIC,
};
use crate::domain::frame::SourceKey;

/// Journal bytes past which a sync's start moves the journal to a new generation.
pub(super) const ROTATE_BYTES: u64 = 1 << 20;
/// The longest the disk thread waits for emergency appends before writing back a piece anyway:
/// a flood of emergencies slows routine syncs, and never stops them.
const MOST_YIELD: Duration = Duration::from_millis(200);
/// Under a write limit, the least time from one journal sync's start to the next: appends that
/// come sooner wait and share the next sync. Each sync writes a page of records and the inode,
/// which count against the limit, and flushes the disk's cache, so this bounds what a flood of
/// emergencies costs (at most 100 syncs a second per shard) at a few milliseconds of latency, and
/// only while they come that fast (the throttled disk's measurements, 5 ms against 10:
/// `docs/bench/throttle.md`). Without a limit there is no budget to keep, and an append waits only
/// for the sync under way: a gap would hold the unpaced write-back too, which makes way for the
/// appends in flight ([`Gate`]).
const SYNC_GAP: Duration = Duration::from_millis(10);

/// Emergency appends sent to the journal and those made durable, which an unpaced disk thread
/// lets pass before each piece of routine write-back; and the pace the writes of every shard to
/// the disk share.
#[derive(Debug)]
pub(super) struct Gate {
    /// Appends sent, and appends durable (or failed).
    counts: Mutex<(u64, u64)>,
    done: Condvar,
    pace: Pace,
}

impl Gate {
    /// The gate of the archive in `dir`.
    pub(super) fn new(dir: &Path) -> Gate {
        Gate {
            counts: Mutex::default(),
            done: Condvar::new(),
            pace: Pace::of(dir),
        }
    }

    pub(super) fn pace(&self) -> &Pace {
        &self.pace
    }

    fn enter(&self) {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
    }

    fn leave(&self, appends: u64) {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).1 += appends;
        self.done.notify_all();
    }

    /// Waits until the appends sent so far are durable, or `MOST_YIELD` has passed. Appends sent
    /// meanwhile do not extend the wait: under a steady stream of emergencies, routine pieces and
    /// the journal's syncs take turns.
    pub(super) fn wait_idle(&self) {
        let deadline = Instant::now() + MOST_YIELD;
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let target = counts.0;
        while counts.1 < target {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return;
            };
            counts = match self.done.wait_timeout(counts, left) {
                Ok((guard, _)) => guard,
                Err(poisoned) => poisoned.into_inner().0,
            };
        }
    }
}

/// What recovery found in a shard's journals: the frames its segments lack, to be appended to the
/// new segment, and the journal files, to be deleted once that segment is durable.
#[derive(Debug, Default)]
pub(in crate::archive) struct Leftover {
    pub(in crate::archive) frames: Vec<FrameRecord>,
    pub(in crate::archive) files: Vec<PathBuf>,
    /// The generation the next journal takes.
    pub(in crate::archive) next_generation: u64,
}

impl Leftover {
    /// Takes `other`'s frames and files (a retired shard's, which the shard taking them stores).
    /// Those frames shard 0 already stores (a start that stored them crashed before it deleted
    /// the journal) are dropped.
    pub(super) fn absorb(&mut self, other: Leftover, sources: &mut HashMap<SourceKey, Tracked>) {
        for frame in other.frames {
            if take_missing(sources, &frame) {
                self.frames.push(frame);
            }
        }
        self.files.extend(other.files);
    }

    /// Deletes the journal files, whose frames are durable in a segment now.
    pub(super) fn delete(&self) -> Result<(), ArchiveError> {
        for path in &self.files {
            match fs::remove_file(path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => {
                    return Err(ArchiveError::io(path, "delete")(err))
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// Reads the journals in `dir` and returns the frames that the shard's segments, as recovery read
/// them into `sources`, do not hold; each is added to its source's stored frames. Every record
/// whose CRC holds is taken, whether or not its sync ended: a frame stored that was never
/// acknowledged is resent by its source and dropped as a duplicate.
pub(in crate::archive) fn recover(
    dir: &Path,
    sources: &mut HashMap<SourceKey, Tracked>,
) -> Result<Leftover, ArchiveError> {
    let mut leftover = Leftover {
        next_generation: 1,
        ..Leftover::default()
    };
    for (generation, path) in list_journals(dir)? {
        leftover.next_generation = leftover.next_generation.max(generation.saturating_add(1));
        let file = File::open(&path).map_err(ArchiveError::io(&path, "open"))?;
        let mut frames = Vec::new();
        let scanned = format::scan(&path, file, |_, entry| {
            if let Entry::Frame(frame) = entry {
                frames.push(frame);
            }
        })?;
        if !scanned.damaged.is_empty() {
            tracing::warn!(
                journal = %path.display(),
                end = %scanned.end,
                "emergency journal: damaged records skipped (an unclean stop cut its tail)"
            );
        }
        let mut missing = 0;
        for frame in frames {
            if take_missing(sources, &frame) {
                leftover.frames.push(frame);
                missing += 1;
            }
        }
        if missing > 0 {
            tracing::warn!(
                journal = %path.display(),
                frames = missing,
                "emergency journal: frames the segments lost in an unclean stop are stored again from the journal"
            );
        }
        leftover.files.push(path);
    }
    Ok(leftover)
}

/// Whether `sources` lacks `frame`; if so, it counts as stored from now on. What recovery stores
/// from a journal, and what `archive verify` counts as the journal's alone.
pub(in crate::archive) fn take_missing(
    sources: &mut HashMap<SourceKey, Tracked>,
    frame: &FrameRecord,
) -> bool {
    let tracked = sources.entry((frame.kind, frame.source_id)).or_default();
    let stored = tracked
        .watermark
        .is_some_and(|acked| frame.sequence <= acked)
        || tracked.above.contains(frame.sequence);
    if !stored {
        tracked.above.insert_run(frame.sequence, frame.sequence);
    }
    !stored
}

/// A reply the journal thread sends when an append is durable.
type Reply = oneshot::Sender<Result<(), ArchiveError>>;

enum Job {
    /// Appends records and syncs them.
    Append { records: Vec<u8>, reply: Reply },
    /// Moves on to a new generation.
    Rotate { generation: u64 },
    /// Deletes the generations below `generation`, but never the one being written.
    Retire { generation: u64 },
    /// Deletes every generation: a clean close, whose last sync made every frame durable in a
    /// segment.
    Close { reply: Reply },
    /// Ends the thread, whatever copies of the sender a sync still holds.
    Stop,
}

/// The handle on a shard's journal thread. Dropping it lets the thread finish the jobs sent.
#[derive(Debug)]
pub(super) struct Journal {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    gate: Arc<Gate>,
    generation: u64,
    /// Bytes appended to the current generation.
    bytes: u64,
}

/// Deletes journal generations below one, from a future that outlives the borrow of the sink.
#[derive(Debug, Clone)]
pub(super) struct Retirer {
    jobs: Option<mpsc::Sender<Job>>,
    generation: u64,
}

impl Retirer {
    /// Every frame in the generations below this one is durable in a segment now.
    pub(super) fn retire(self) {
        if let Some(jobs) = self.jobs {
            let _ = jobs.send(Job::Retire {
                generation: self.generation,
            });
        }
    }
}

impl Journal {
    /// Starts the journal of the shard in `dir` at generation `generation`: the file is created
    /// (and named durably) before this returns.
    pub(super) fn start(
        dir: PathBuf,
        generation: u64,
        gate: Arc<Gate>,
    ) -> Result<Journal, ArchiveError> {
        let file = create(&dir, generation)?;
        let (jobs, queue) = mpsc::channel();
        let worker = Worker {
            dir: dir.clone(),
            file: Some(file),
            generation,
            broken: None,
            gate: Arc::clone(&gate),
            last_sync: None,
        };
        let thread = std::thread::Builder::new()
            .name("archive-journal".into())
            .spawn(move || worker.run(queue))
            .map_err(ArchiveError::io(
                &dir,
                "start the emergency journal thread for",
            ))?;
        Ok(Journal {
            jobs: Some(jobs),
            thread: Some(thread),
            gate,
            generation,
            bytes: 0,
        })
    }

    /// Appends `records` and makes them durable; the future ends when they are.
    pub(super) fn append(
        &mut self,
        records: Vec<u8>,
    ) -> oneshot::Receiver<Result<(), ArchiveError>> {
        let (reply, answer) = oneshot::channel();
        self.bytes += records.len() as u64;
        if let Some(jobs) = &self.jobs {
            self.gate.enter();
            if let Err(mpsc::SendError(job)) = jobs.send(Job::Append { records, reply }) {
                self.gate.leave(1);
                drop(job);
            }
        }
        answer
    }

    /// At a sync's start: moves on to a new generation if this one is large enough, and returns
    /// what deletes the earlier ones once the sync has ended.
    pub(super) fn rotate_if_due(&mut self) -> Option<Retirer> {
        if self.bytes < ROTATE_BYTES {
            return None;
        }
        let jobs = self.jobs.as_ref()?;
        self.generation += 1;
        self.bytes = 0;
        let _ = jobs.send(Job::Rotate {
            generation: self.generation,
        });
        Some(Retirer {
            jobs: self.jobs.clone(),
            generation: self.generation,
        })
    }

    /// After the last sync: deletes every generation.
    pub(super) fn close(&mut self) -> oneshot::Receiver<Result<(), ArchiveError>> {
        let (reply, answer) = oneshot::channel();
        if let Some(jobs) = &self.jobs {
            let _ = jobs.send(Job::Close { reply });
        }
        answer
    }
}

/// An append's reply, with a journal thread that went away reported as an error.
pub(super) async fn answer(
    reply: oneshot::Receiver<Result<(), ArchiveError>>,
) -> Result<(), ArchiveError> {
    reply
        .await
        .unwrap_or_else(|_| Err(ArchiveError::broken("the emergency journal thread stopped")))
}

impl Drop for Journal {
    fn drop(&mut self) {
        if let Some(jobs) = self.jobs.take() {
            let _ = jobs.send(Job::Stop);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Creates generation `generation` in `dir` with the magic, durably named.
fn create(dir: &Path, generation: u64) -> Result<File, ArchiveError> {
    let path = dir.join(journal_name(generation));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(ArchiveError::opening(&path, "create the emergency journal"))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_data())
        .map_err(ArchiveError::io(&path, "write"))?;
    sync_dir(dir)?;
    Ok(file)
}

/// The journal thread's state.
struct Worker {
    dir: PathBuf,
    /// `None` once a rotation failed: each append tries to create the generation again, and
    /// fails while it cannot.
    file: Option<File>,
    generation: u64,
    /// Why a sync failed: the kernel may have dropped what it could not write, so nothing later
    /// appended to this journal counts as durable.
    broken: Option<String>,
    gate: Arc<Gate>,
    /// When the last sync started.
    last_sync: Option<Instant>,
}

impl Worker {
    fn run(mut self, queue: mpsc::Receiver<Job>) {
        let mut next = queue.recv().ok();
        while let Some(job) = next.take() {
            match job {
                Job::Append { records, reply } => {
                    // Group commit: every append queued behind this one, in one write and sync;
                    // under a write limit, also those that come until the gap has passed.
                    let paced = self.gate.pace().paced();
                    if let Some(due) = self.last_sync.map(|at| at + SYNC_GAP).filter(|_| paced) {
                        if let Some(wait) = due.checked_duration_since(Instant::now()) {
                            std::thread::sleep(wait);
                        }
                    }
                    let mut group = vec![(records, reply)];
                    loop {
                        match queue.try_recv() {
                            Ok(Job::Append { records, reply }) => group.push((records, reply)),
                            Ok(other) => {
                                next = Some(other);
                                break;
                            }
                            Err(_) => break,
                        }
                    }
                    self.append(group);
                }
                Job::Rotate { generation } => self.rotate(generation),
                Job::Retire { generation } => {
                    if let Err(err) = self.retire(|g| g < generation) {
                        tracing::warn!(error = %err, "emergency journal: cannot delete a generation a sync made redundant");
                    }
                }
                Job::Close { reply } => {
                    self.file = None;
                    let _ = reply.send(self.retire(|_| true));
                }
                Job::Stop => return,
            }
            if next.is_none() {
                next = queue.recv().ok();
            }
        }
    }

    fn append(&mut self, group: Vec<(Vec<u8>, Reply)>) {
        self.last_sync = Some(Instant::now());
        let appends = group.len() as u64;
        let result = self.write_and_sync(group.iter().map(|(records, _)| records.as_slice()));
        self.gate.leave(appends);
        for (_, reply) in group {
            let _ = reply.send(match &result {
                Ok(()) => Ok(()),
                Err(err) => Err(err.duplicate()),
            });
        }
    }

    fn write_and_sync<'a>(
        &mut self,
        records: impl Iterator<Item = &'a [u8]>,
    ) -> Result<(), ArchiveError> {
        if let Some(why) = &self.broken {
            return Err(ArchiveError::broken(why.clone()));
        }
        let path = self.dir.join(journal_name(self.generation));
        if self.file.is_none() {
            // Nothing was appended to it: a failed creation (out of descriptors, say) is tried
            // again, and while it fails the emergencies wait for the segment's sync.
            self.file = Some(create(&self.dir, self.generation)?);
            tracing::info!(journal = %path.display(), "emergency journal: the new generation is started");
        }
        let Some(file) = self.file.as_mut() else {
            return Err(ArchiveError::broken("the emergency journal has no file"));
        };
        let len = file
            .metadata()
            .map_err(ArchiveError::io(&path, "read the length of"))?
            .len();
        let bytes: Vec<u8> = records.flatten().copied().collect();
        if let Err(err) = file.write_all(&bytes) {
            // Cut a partial record off, so that later appends follow whole records.
            let _ = file.set_len(len);
            return Err(ArchiveError::io(&path, "append to")(err));
        }
        // The sync writes every page the append touched, and the inode with the new length.
        let end = len + bytes.len() as u64;
        self.gate
            .pace()
            .charge((end.div_ceil(PAGE) - len / PAGE + 1) * PAGE);
        file.sync_data().map_err(|err| {
            let err = ArchiveError::io(&path, "sync")(err);
            self.broken = Some(format!("an earlier sync failed ({err})"));
            err
        })
    }

    fn rotate(&mut self, generation: u64) {
        // A generation that failed its sync stays behind: the new one holds nothing yet.
        self.generation = generation;
        self.broken = None;
        match create(&self.dir, generation) {
            Ok(file) => self.file = Some(file),
            Err(err) => {
                tracing::error!(error = %err, "emergency journal: cannot start a new generation; emergencies wait for the segment's sync until an append can create it");
                self.file = None;
            }
        }
    }

    /// Deletes the generations `which` picks, except the one being written.
    fn retire(&self, which: impl Fn(u64) -> bool) -> Result<(), ArchiveError> {
        let current = self.file.as_ref().map(|_| self.generation);
        for (generation, path) in list_journals(&self.dir)? {
            if which(generation) && Some(generation) != current {
                fs::remove_file(&path).map_err(ArchiveError::io(&path, "delete"))?;
            }
        }
        Ok(())
    }
}
