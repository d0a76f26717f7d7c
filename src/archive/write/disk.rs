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

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::journal::Gate;
use super::pace::PAGE;
use crate::archive::format::index::{self, SealedSegment, SegmentIndex, SpanCache};
use crate::archive::format::{self, sync_dir, ArchiveError};

/// A segment file, and how many bytes of whole records it holds.
#[derive(Debug)]
pub(super) struct Segment {
    /// Shared with the disk thread's jobs: a sync never needs a descriptor of its own.
    pub(super) file: Arc<File>,
    /// Where the file is now: the staging name until its rollover has named it.
    pub(super) path: PathBuf,
    pub(super) index: u64,
    /// Bytes of whole records written so far: where a failed write is cut back to.
    pub(super) len: u64,
}

/// The path a segment is created under, until the segment before it is durable.
pub(super) fn staged_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format::staged_name(index))
}

/// Creates segment `index` under its staging name, with `bytes` of disk reserved.
pub(super) fn create_staged(dir: &Path, index: u64, bytes: u64) -> Result<File, ArchiveError> {
    let path = staged_path(dir, index);
    // A staged file holds nothing yet, whatever an earlier attempt left there.
    match fs::remove_file(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            return Err(ArchiveError::opening(&path, "delete")(err))
        }
        _ => {}
    }
    // Appends only: a write cut back after an error leaves no hole before the next one.
    let file = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(ArchiveError::opening(&path, "create segment"))?;
    preallocate(&file, bytes);
    Ok(file)
}

/// Opens a segment to go on appending to it, with `bytes` of disk reserved from its start.
pub(super) fn open_appending(path: &Path, bytes: u64) -> Result<File, ArchiveError> {
    let file = OpenOptions::new()
        .append(true)
        .open(path)
        .map_err(ArchiveError::opening(path, "open segment"))?;
    preallocate(&file, bytes);
    Ok(file)
}

/// Makes a staged segment durable and gives it its name: from here on, recovery reads it. Called
/// again after a [transient](ArchiveError::Transient) failure, it does not rename twice.
pub(super) fn publish(dir: &Path, file: &File, index: u64) -> Result<PathBuf, ArchiveError> {
    let staged = staged_path(dir, index);
    let path = dir.join(format::segment_name(index));
    file.sync_data()
        .map_err(ArchiveError::io(&staged, "sync segment"))?;
    match fs::rename(&staged, &path) {
        // An earlier attempt named it, and failed after.
        Err(err) if err.kind() == io::ErrorKind::NotFound && path.exists() => {}
        Err(err) => return Err(ArchiveError::opening(&staged, "name segment")(err)),
        Ok(()) => {}
    }
    // The name must survive a crash too.
    sync_dir(dir)?;
    Ok(path)
}

/// Reserves the disk blocks of a whole segment before the first append.
///
/// Appends are written from the runtime thread while an `fsync` of the same file runs on the disk
/// thread. On ext4 with delayed allocation, a write into blocks not yet allocated takes the
/// inode's allocation lock, which the sync's writeback holds while it allocates: the runtime thread,
/// and with it every connection, then waits for the disk, emergencies included. Into reserved
/// blocks a write only copies into the page cache. The size is kept (`FALLOC_FL_KEEP_SIZE`), so readers still see only whole records, and
/// [`trim`] gives back what a segment did not use. Only advice: on a file system without
/// `fallocate` the appends still work, with the stalls.
fn preallocate(file: &File, bytes: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(bytes).unwrap_or(libc::off_t::MAX);
        // SAFETY: fallocate reads no memory; `file` keeps the descriptor open for the call.
        unsafe { libc::fallocate(file.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, 0, len) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, bytes);
}

/// Gives back the blocks [`preallocate`] reserved beyond the segment's `len` bytes of records (a
/// truncation to the current size frees the blocks past it).
pub(super) fn trim(file: &File, path: &Path, len: u64) -> Result<(), ArchiveError> {
    file.set_len(len)
        .map_err(ArchiveError::io(path, "trim segment"))
}

/// The followers of the archive reading its files right now, counted by the [`ReaderHold`]s they
/// keep while they follow: while there is one, synced segments stay in the page cache.
#[derive(Debug, Default)]
pub struct Readers(AtomicUsize);

/// A follower's place among the [`Readers`], for as long as it is kept.
#[derive(Debug)]
pub(crate) struct ReaderHold(Arc<Readers>);

impl Readers {
    /// Counts a follower until the hold is dropped.
    pub(crate) fn hold(self: &Arc<Self>) -> ReaderHold {
        self.0.fetch_add(1, Relaxed);
        ReaderHold(Arc::clone(self))
    }

    fn any(&self) -> bool {
        self.0.load(Relaxed) > 0
    }
}

impl Drop for ReaderHold {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Relaxed);
    }
}

/// Drops the first `len` bytes of a segment, synced by now, from the page cache, unless a follower
/// reads the archive (`readers`).
///
/// Without followers the daemon never reads a segment back while it runs (recovery and the archive
/// tools read from the disk), so cached pages of synced segments only push other programs' pages
/// out until the kernel reclaims them, and every page a write takes is a fresh page: on a virtual
/// machine whose free memory goes back to the host (a balloon driver) a first touch of a page
/// costs several times the copy into it. Dropped pages go back to the free lists, where the next
/// writes find them. A follower, though, reads what was written a moment ago: dropped, it would
/// read it from the disk the writer needs (with four followers the writer lost a quarter to a
/// third of its pace). Only advice: a failure changes nothing that matters, so it is not reported.
pub(super) fn release_cached(file: &File, len: u64, readers: &Readers) {
    if readers.any() {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let len = libc::off_t::try_from(len).unwrap_or(libc::off_t::MAX);
        // SAFETY: posix_fadvise reads no memory; `file` keeps the descriptor open for the call.
        unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, len, libc::POSIX_FADV_DONTNEED) };
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, len);
}

/// How long one piece of a segment's write-back should take: what an emergency append waits
/// behind at most, on a disk that serves a writer's I/O in order.
const PIECE_TIME: Duration = Duration::from_millis(10);
/// The pieces' bounds, whatever the disk's pace.
const MIN_PIECE: u64 = 256 << 10;
const MAX_PIECE: u64 = 64 << 20;
/// Passes over what the writer appended meanwhile, at most, before the `fdatasync`: more when
/// paced, whose `fdatasync` would write what is left in one burst past the pace.
const PASSES: usize = 2;
const PACED_PASSES: usize = 4;

/// How far the disk thread has written a segment back, and the size of the next piece.
#[derive(Debug)]
struct WriteBack {
    /// The segment, and the bytes of it already written back.
    done: (u64, u64),
    piece: u64,
}

impl Default for WriteBack {
    fn default() -> Self {
        WriteBack {
            done: (0, 0),
            piece: 1 << 20,
        }
    }
}

impl WriteBack {
    /// Writes back what the segment holds beyond the last call, a piece at a time: paced below
    /// the process's write limit where it has one ([`super::pace`]), else each piece after the
    /// emergency appends in flight ([`Gate`]). The sync that follows then has little left to
    /// write. Sized to take about [`PIECE_TIME`] at the pace the last piece went, and to fit the
    /// pace.
    #[cfg(target_os = "linux")]
    fn run(
        &mut self,
        (file, index, path): (&File, u64, &Path),
        gate: &Gate,
    ) -> Result<(), ArchiveError> {
        use std::os::fd::AsRawFd;
        let mut at = match self.done {
            (done_index, done) if done_index == index => done,
            _ => 0,
        };
        // Paced below a write limit, pieces are small enough to leave room in the limit's slices.
        let paced = gate.pace().largest_piece();
        let largest = paced.unwrap_or(MAX_PIECE);
        // The writer goes on appending: what it appended since the sync began, and while the
        // pieces were written, is written back too, or the sync's `fdatasync` would write it in
        // one go, past the pace. A few passes at most: a writer as fast as the disk (`sync =
        // never` has no bound on what is unsynced) must not keep a rollover from ending.
        let passes = if paced.is_some() {
            PACED_PASSES
        } else {
            PASSES
        };
        for _ in 0..passes {
            let end = file.metadata().map_or(0, |m| m.len());
            if end.saturating_sub(at) <= self.piece.min(largest) {
                break;
            }
            while at < end {
                // Paced, the throttle holds no piece that a journal write could queue behind.
                if paced.is_none() {
                    gate.wait_idle();
                }
                let mut len = self.piece.min(largest).min(end - at);
                // A piece ends on a page boundary, but the last: a page cut in two is written
                // twice.
                let stop = (at + len) / PAGE * PAGE;
                if at + len < end && stop > at {
                    len = stop - at;
                }
                gate.pace().take(len);
                let started = Instant::now();
                let flags = libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER;
                // SAFETY: sync_file_range reads no memory; `file` keeps the descriptor open.
                let written = unsafe {
                    libc::sync_file_range(
                        file.as_raw_fd(),
                        at as libc::off64_t,
                        len as libc::off64_t,
                        flags,
                    )
                };
                if written != 0 {
                    let err = io::Error::last_os_error();
                    return Err(ArchiveError::io(path, "write back segment")(err));
                }
                // A piece the kernel had already written back says nothing of the disk's pace; the
                // others move the size by at most a factor of two.
                let took = started.elapsed();
                if took >= PIECE_TIME / 10 {
                    let pace = len as f64 / took.as_secs_f64();
                    let fits = (pace * PIECE_TIME.as_secs_f64()) as u64;
                    self.piece = fits
                        .clamp(self.piece / 2, self.piece.saturating_mul(2))
                        .clamp(MIN_PIECE, MAX_PIECE);
                }
                at += len;
                self.done = (index, at);
            }
        }
        // The `fdatasync` that follows writes what is left: counted against the pace, and not
        // written back again by the next call.
        let end = file.metadata().map_or(at, |m| m.len()).max(at);
        gate.pace().charge(end - at);
        self.done = (index, end);
        Ok(())
    }

    #[cfg(not(target_os = "linux"))]
    fn run(&mut self, _: (&File, u64, &Path), _: &Gate) -> Result<(), ArchiveError> {
        Ok(())
    }
}

/// Writes a sealed segment's index beside it. Only logged when it fails: the index is a cache,
/// built again from the segment when it is missing.
fn write_index(dir: &Path, segment: u64, contents: &SegmentIndex, spans: &SpanCache) {
    spans.remember(dir, segment, contents);
    if let Err(err) = contents.write(&index::index_path(dir, segment)) {
        tracing::warn!(error = %err, "archive: cannot write a sealed segment's index; it is built again when needed");
    }
}

/// Makes the first `len` bytes of the segment durable, then drops them from the page cache.
fn sync_segment(
    segment: &Segment,
    write_back: &mut WriteBack,
    (gate, readers): (&Gate, &Readers),
) -> Result<(), ArchiveError> {
    write_back.run((&segment.file, segment.index, &segment.path), gate)?;
    segment
        .file
        .sync_data()
        .map_err(ArchiveError::io(&segment.path, "sync segment"))?;
    release_cached(&segment.file, segment.len, readers);
    Ok(())
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
                    let file = create_staged(&self.dir, index, self.segment_bytes)?;
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
                    sync_segment(&full, &mut self.write_back, (&self.gate, &self.readers))?;
                    trim(&full.file, &full.path, full.len)?;
                    write_index(&self.dir, full.index, &contents, &self.spans);
                    // The writer has been appending to the staged segment meanwhile.
                    let staged = staged_path(&self.dir, index);
                    self.write_back.run((&next, index, &staged), &self.gate)
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
                    sync_segment(&segment, &mut self.write_back, (&self.gate, &self.readers))
                }));
            }
            Job::Close { segment, reply } => {
                let result = self.ready().and_then(|()| {
                    sync_segment(&segment, &mut self.write_back, (&self.gate, &self.readers))?;
                    trim(&segment.file, &segment.path, segment.len)?;
                    if let Some(index) = self.spare.take() {
                        let spare = staged_path(&self.dir, index);
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
        match publish(&self.dir, &unnamed.next, unnamed.index) {
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

/// How many of the pages of `file`'s first `len` bytes are in the page cache: `mincore` over a
/// mapping, which faults nothing in. For the tests of what the disk thread leaves cached.
#[cfg(test)]
pub(super) fn cached_pages(file: &File, len: usize) -> usize {
    use std::os::fd::AsRawFd;
    // SAFETY: a fresh read-only shared mapping of `len` bytes of an open file, only passed to
    // mincore with a vector of one byte per page, and unmapped before returning.
    unsafe {
        let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
        let map = libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        );
        assert_ne!(
            map,
            libc::MAP_FAILED,
            "mmap: {}",
            io::Error::last_os_error()
        );
        let mut resident = vec![0u8; len.div_ceil(page)];
        let answered = libc::mincore(map, len, resident.as_mut_ptr());
        libc::munmap(map, len);
        assert_eq!(answered, 0, "mincore: {}", io::Error::last_os_error());
        resident.iter().filter(|&&page| page & 1 == 1).count()
    }
}

/// Whether `dir` is on a tmpfs, whose pages the page-cache advice cannot drop. For the tests of
/// what is left cached.
#[cfg(all(test, target_os = "linux"))]
pub(super) fn on_tmpfs(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct it is given; `path` is NUL-terminated.
    unsafe {
        let mut stat: libc::statfs = std::mem::zeroed();
        libc::statfs(path.as_ptr(), &mut stat) == 0 && stat.f_type == libc::TMPFS_MAGIC
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::io::Write;

    use super::*;

    /// Removes the file when dropped, an assertion failing or not.
    struct Removed(PathBuf);

    impl Drop for Removed {
        fn drop(&mut self) {
            let _ = fs::remove_file(&self.0);
        }
    }

    #[test]
    fn synced_pages_stay_cached_while_a_follower_reads_and_go_without_one() {
        let dir = std::env::temp_dir();
        if on_tmpfs(&dir) {
            eprintln!(
                "skipped: {} is a tmpfs, whose pages stay cached",
                dir.display()
            );
            return;
        }
        let path = Removed(dir.join(format!("cached-{}", std::process::id())));
        let path = &path.0;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .unwrap();
        let len = 64 * 4096;
        file.write_all(&vec![7u8; len]).unwrap();
        file.sync_data().unwrap();
        let readers = Arc::new(Readers::default());
        let all = cached_pages(&file, len);
        assert!(all > 0, "written pages are cached");

        let following = readers.hold();
        release_cached(&file, len as u64, &readers);
        assert_eq!(cached_pages(&file, len), all, "a follower keeps them");

        drop(following);
        release_cached(&file, len as u64, &readers);
        let left = cached_pages(&file, len);
        assert!(
            left < all,
            "without followers they are dropped ({left} of {all} left)"
        );
    }
}
