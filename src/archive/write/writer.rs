//! The durable archive: every frame appended to CRC-checked segment files (`docs/archive-format.md`).
//!
//! [`SegmentSink`] is the [`ArchiveSink`] the daemon runs with by default. The archive consumer
//! hands it groups of batches; it encodes them into one buffer and writes it with one system call,
//! on the runtime thread: the write only copies into the page cache, into disk blocks reserved
//! when the segment was created, which costs less than handing each group to another thread and
//! waking the runtime when it is done. What waits for the disk, the `fsync`s and the rollover to a new segment, runs
//! in order on the archive's disk thread ([`disk`]), as Redis does with its append-only file, and
//! the writer does not wait for it: when a segment is full it switches to the next one, created
//! beforehand, and goes on appending while the disk thread makes the full one durable.
//!
//! What the archive must remember besides the frames is what makes a restart exactly-once: for
//! each source, the highest acknowledged sequence (a WATERMARK record, written as acknowledgements
//! move and once more at a clean close) and the frames stored above it (emergencies overtake
//! routine frames, so "stored" is not a prefix of the sequence). A new segment starts with a
//! checkpoint of both, so recovery reads the newest segment alone.
//!
//! [`SegmentSink::open`] is the recovery: it cuts a torn tail left by a crash (and says so),
//! deletes a segment a crash left unnamed, rebuilds each source's resume point from the newest
//! segment, and starts a new segment.
//!
//! The sink publishes its [`DurableEnd`] as syncs complete (with `archive.sync = never`, as writes
//! do): the end of what a sync covered, which the disk thread made durable after every rollover
//! before it, so every earlier segment is complete and named by then.
//!
//! What goes into the buffer before a write, and what a written buffer's records say the open
//! segment holds, is `writer/encode.rs`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio::sync::watch;

use super::disk::{self, Disk, DiskShared};
use super::files::{self, Segment};
use super::journal::{self, Gate, Journal};
use super::recovery::{self, Newest, Recovered, Start};
use super::sink::{ArchiveSink, BoxFuture, JournalAppend};
use super::tracked::Tracked;
use crate::archive::format::index::{OpenSpan, SealedSegment, SegmentIndex, SpanCache};
use crate::archive::format::{self, ArchiveError, FrameRecord, FramesHead};
use crate::config::{ArchiveConfig, SyncMode};
use crate::domain::batch::Batch;
use crate::domain::clock::{self, ArchiveClock, ClockEvent, ClockEventKind, ClockSteps};
use crate::domain::frame::SourceKey;
use crate::domain::ledger::ResumePoint;
use crate::domain::position::DurableEnd;
use crate::domain::readers::Readers;

/// The watermarks a write carries, applied to what the archive remembers once it is written:
/// a failed write must leave the archive's memory as it was, or a later checkpoint would list
/// frames that never reached the disk.
type Raised = Vec<(SourceKey, u64)>;

/// Appends frames to segment files in `archive.dir`.
#[derive(Debug)]
pub struct SegmentSink {
    /// Dropped first: its disk thread finishes the jobs sent before the lock goes.
    writer: Writer,
    /// The durable end, for followers; dropped with the sink, which tells them the archive closed.
    durable: watch::Sender<DurableEnd>,
    /// `archive.sync = never`: a write counts as stored at once, so it moves the durable end.
    durable_when_written: bool,
    /// The emergency journal; none with `archive.sync = never`, where nothing waits for a sync.
    journal: Option<Journal>,
    /// A sync failed: the kernel may have dropped what it covered, so the journals may hold the
    /// only durable copy of emergencies acknowledged from them. They are kept, and the close
    /// writes nothing (a WATERMARK over a dropped frame would make recovery skip its journal copy).
    poisoned: Arc<AtomicBool>,
    /// Held open for the sink's life: its exclusive lock keeps a second daemon out of the directory.
    _lock: File,
}

/// The open segment and what the archive remembers, with the appends and the switch to the next
/// segment; the rest of the file work goes to the disk thread.
#[derive(Debug)]
struct Writer {
    dir: PathBuf,
    segment_bytes: u64,
    /// `None` after an error that left the file in an unknown state.
    segment: Option<Segment>,
    disk: Disk,
    /// The next segment, while the disk thread creates it.
    preparing: Option<oneshot::Receiver<Result<File, ArchiveError>>>,
    /// The next segment, created and waiting for this one to fill.
    spare: Option<File>,
    /// The last rollover, until the disk thread has given the segment its name.
    rolling: Option<oneshot::Receiver<Result<PathBuf, ArchiveError>>>,
    /// Whether the open segment holds a group yet: each takes at least one, however large.
    appended: bool,
    /// When the next segment may be asked for again, after the disk thread failed to create it.
    prepare_again: Option<Instant>,
    sources: HashMap<SourceKey, Tracked>,
    /// What the open segment holds, for its index once it is sealed.
    contents: SegmentIndex,
    /// The received times the open segment holds, shared with retention, which reports them.
    span: Arc<OpenSpan>,
    /// The clock frames are stamped with, and the steps of the wall clock the daemon noticed,
    /// each recorded at the next write after it (up to `steps_written`).
    clock: ArchiveClock,
    steps: Arc<ClockSteps>,
    steps_written: u64,
    buf: Vec<u8>,
    /// Where each batch of the last group encoded starts in the open segment: the time index
    /// places it by its own record, so that a station's frames get blocks of their own.
    offsets: Vec<u64>,
}

/// What a shard's sink shares with the others and with retention: the disk's emergency gate, the
/// followers reading the files (which keep synced segments cached), where sealed segments are
/// announced, the received times its open segment holds, and the steps of the wall clock.
#[derive(Debug, Clone)]
pub(super) struct Shared {
    pub(super) gate: Arc<Gate>,
    pub(super) readers: Arc<Readers>,
    pub(super) sealed: Option<mpsc::Sender<SealedSegment>>,
    pub(super) span: Arc<OpenSpan>,
    /// The archive's span cache, into which each sealed segment's index goes.
    pub(super) spans: SpanCache,
    pub(super) steps: Arc<ClockSteps>,
    /// The archive clock when the archive was opened: every shard's start record's time.
    pub(super) started: u64,
}

/// The bytes a group takes in a segment: its FRAMES records and a WATERMARK per batch at most. (A
/// batch over the 17 MiB limit of a record takes one more record header per part.)
fn group_len(batches: &[Arc<Batch>]) -> u64 {
    let per_batch = 2 * format::RECORD_HEADER_LEN + format::MARK_BODY_LEN;
    batches
        .iter()
        .map(|batch| {
            let (fixed, entry) = match batch.reception() {
                Some(_) => (
                    format::RECEIVED_BODY_MAX_FIXED,
                    format::RECEIVED_ENTRY_MAX_FIXED,
                ),
                None => (format::FRAMES_BODY_FIXED, format::FRAMES_ENTRY_FIXED),
            };
            (per_batch + fixed + entry * batch.len()) as u64 + batch.payload_bytes()
        })
        .sum()
}

impl SegmentSink {
    /// The index of the segment it appends to; `None` before its first.
    pub(super) fn segment_index(&self) -> Option<u64> {
        self.writer.segment.as_ref().map(|s| s.index)
    }

    /// Opens (creating if needed) the archive directory, recovers from the newest segment, and
    /// goes on appending to it (or starts a new segment with a checkpoint). Returns the resume point of every source the archive
    /// knows. Errors name the path and the cause; a corrupt newest segment is an error (run
    /// `aggregator archive repair DIR --quarantine` moves the damage aside), a torn tail is cut
    /// and logged. One shard's archive: [`open_shards`](super::open::open_shards) opens them all.
    pub fn open(
        config: &ArchiveConfig,
    ) -> Result<(SegmentSink, HashMap<SourceKey, ResumePoint>), ArchiveError> {
        let dir = config.dir.clone();
        create_dir(&dir)?;
        let lock = format::lock_directory(&dir)?;
        let spans = SpanCache::default();
        let (mut sources, start) = recovery::recover(&dir, &spans)?;
        let leftover = journal::recover(&dir, &mut sources)?;
        let mut shards = [sources];
        let resume = recovery::resume_points(&mut shards);
        let [sources] = shards;
        let shared = Shared {
            gate: Arc::new(Gate::new(&dir)),
            readers: Arc::default(),
            sealed: None,
            span: Arc::default(),
            spans,
            steps: Arc::default(),
            started: ArchiveClock::process().now(),
        };
        let shard = ShardDir {
            dir,
            shard: 0,
            lock,
        };
        let recovered = Recovered {
            sources,
            start,
            leftover,
        };
        let sink = SegmentSink::start(config, shard, recovered, shared)?;
        Ok((sink, resume))
    }

    /// Starts the sink of a recovered directory: the frames its journals held that its segments
    /// lost appended to its newest segment (or to a new one with a checkpoint), then the journals
    /// deleted and a new one started.
    /// Every shard's disk thread makes way for every shard's emergency appends (`shared.gate`):
    /// they share the disk; and keeps its synced segments cached while the archive has readers.
    pub(super) fn start(
        config: &ArchiveConfig,
        ShardDir { dir, shard, lock }: ShardDir,
        recovered: Recovered,
        shared: Shared,
    ) -> Result<SegmentSink, ArchiveError> {
        let Recovered {
            sources,
            start,
            leftover,
        } = recovered;
        let Shared {
            gate,
            readers,
            sealed,
            span,
            spans,
            steps,
            started,
        } = shared;
        let disk_shared = DiskShared {
            gate: Arc::clone(&gate),
            readers,
            sealed,
            spans,
        };
        let mut writer = Writer {
            disk: Disk::start(dir.clone(), shard, config.segment_bytes, disk_shared)?,
            dir,
            segment_bytes: config.segment_bytes,
            segment: None,
            preparing: None,
            spare: None,
            rolling: None,
            appended: false,
            prepare_again: None,
            sources,
            contents: SegmentIndex::default(),
            span,
            clock: ArchiveClock::process(),
            steps_written: steps.newest(),
            steps,
            buf: Vec::with_capacity(1 << 20),
            offsets: Vec::new(),
        };
        writer.start(start, started, &leftover.frames)?;
        leftover.delete()?;
        let journal = match config.sync {
            SyncMode::Never => None,
            _ => Some(Journal::start(
                writer.dir.clone(),
                leftover.next_generation,
                gate,
            )?),
        };
        let (durable, _) = watch::channel(writer.end()?);
        Ok(SegmentSink {
            writer,
            durable,
            durable_when_written: config.sync == SyncMode::Never,
            journal,
            poisoned: Arc::new(AtomicBool::new(false)),
            _lock: lock,
        })
    }
}

/// A shard's directory as its sink opens it: the shard, and the lock held on the directory.
pub(super) struct ShardDir {
    pub(super) dir: PathBuf,
    pub(super) shard: usize,
    pub(super) lock: File,
}

pub(super) fn create_dir(dir: &Path) -> Result<(), ArchiveError> {
    fs::create_dir_all(dir).map_err(ArchiveError::io(dir, "create the archive directory"))
}

impl Writer {
    /// Opens the segment the archive writes first, with the `journaled` frames recovery found
    /// missing made durable in it, and has the disk thread create the one after it: the newest
    /// segment, continued, unless it is full; else a new one with a
    /// checkpoint. Blocking: called once, at start.
    /// A segment an earlier build wrote (an earlier format version) is not continued: a new one
    /// begins, logged, so that every file holds the records of its own version. Either way the
    /// start's CLOCK record follows the journaled frames.
    fn start(
        &mut self,
        start: Start,
        started: u64,
        journaled: &[FrameRecord],
    ) -> Result<(), ArchiveError> {
        let event = self.start_event(started, start.newest_received);
        let version = match &start.newest {
            Some(newest) => Some(format::file_version(&newest.path)?),
            None => None,
        };
        let continued = version == Some(format::FORMAT_VERSION);
        if let Some(earlier) = version.filter(|v| *v < format::FORMAT_VERSION) {
            tracing::info!(
                dir = %self.dir.display(),
                version = earlier,
                "archive: the newest segment is of an earlier format version, read in place; \
                 a segment of the current one begins after it"
            );
        }
        let index = match start.newest {
            Some(newest) if newest.len < self.segment_bytes && continued => {
                self.resume(newest, journaled, &event)?
            }
            _ => self.begin(start.next_index, journaled, &event)?,
        };
        self.preparing = Some(self.disk.prepare(index + 1));
        Ok(())
    }

    /// The CLOCK record of this start, at `started` (the archive clock when the archive was
    /// opened, the same in every shard): its received times jump there from `newest`, the newest
    /// the shard held (0 without one).
    fn start_event(&self, started: u64, newest: Option<u64>) -> ClockEvent {
        ClockEvent {
            kind: ClockEventKind::Start,
            archive_ns: started,
            wall_ns: clock::wall_now_ns(),
            jump_ns: newest.map_or(0, |newest| clock::signed_diff(newest, started)),
        }
    }

    /// Goes on appending to the newest segment, which recovery made durable, after the
    /// `journaled` frames and the start's CLOCK record; returns its index.
    fn resume(
        &mut self,
        newest: Newest,
        journaled: &[FrameRecord],
        event: &ClockEvent,
    ) -> Result<u64, ArchiveError> {
        let Newest {
            index,
            path,
            len,
            contents,
        } = newest;
        let file = files::open_appending(&path, self.segment_bytes)?;
        self.contents = contents;
        self.buf.clear();
        self.encode_journaled(len, journaled);
        self.encode_clock(len, event);
        self.span.add(self.contents.received);
        if !self.buf.is_empty() {
            (&file)
                .write_all(&self.buf)
                .and_then(|()| file.sync_data())
                .map_err(ArchiveError::io(&path, "write"))?;
        }
        self.segment = Some(Segment {
            file: Arc::new(file),
            path,
            index,
            len: len + self.buf.len() as u64,
        });
        // It holds groups already: a group that does not fit goes into the next segment.
        self.appended = true;
        Ok(index)
    }

    /// Creates segment `index` with its checkpoint, the `journaled` frames and the start's CLOCK
    /// record, makes it durable and names it; returns its index.
    fn begin(
        &mut self,
        index: u64,
        journaled: &[FrameRecord],
        event: &ClockEvent,
    ) -> Result<u64, ArchiveError> {
        let mut file = files::create_staged(&self.dir, index, self.segment_bytes)?;
        let raised = self.checkpoint();
        self.contents = SegmentIndex::default();
        self.encode_journaled(0, journaled);
        self.encode_clock(0, event);
        self.span.add(self.contents.received);
        file.write_all(&self.buf).map_err(ArchiveError::io(
            &files::staged_path(&self.dir, index),
            "write",
        ))?;
        self.commit(&raised);
        let path = files::publish(&self.dir, &file, index)?;
        self.segment = Some(Segment {
            file: Arc::new(file),
            path,
            index,
            len: self.buf.len() as u64,
        });
        Ok(index)
    }

    /// Takes what the disk thread has reported since the last append: the next segment created,
    /// or the last rollover done. A failed rollover is returned once and leaves the archive
    /// unusable.
    fn take_reports(&mut self) -> Result<(), ArchiveError> {
        self.take_spare();
        let Some(rolling) = &mut self.rolling else {
            return Ok(());
        };
        let named = match rolling.try_recv() {
            Err(TryRecvError::Empty) => return Ok(()),
            Ok(named) => named,
            Err(TryRecvError::Closed) => Err(disk::thread_gone()),
        };
        self.rolling = None;
        match named {
            Ok(path) => {
                if let Some(segment) = &mut self.segment {
                    segment.path = path;
                }
                Ok(())
            }
            Err(err) => {
                self.segment = None;
                Err(err)
            }
        }
    }

    /// Takes the next segment if the disk thread has created it. A failure to create it is not a
    /// failure to write: the open segment takes the writes meanwhile, and it is asked for again a
    /// second later.
    fn take_spare(&mut self) {
        let Some(preparing) = &mut self.preparing else {
            return;
        };
        let created = match preparing.try_recv() {
            Err(TryRecvError::Empty) => return,
            Ok(created) => created,
            Err(TryRecvError::Closed) => Err(disk::thread_gone()),
        };
        self.preparing = None;
        match created {
            Ok(file) => self.spare = Some(file),
            Err(err) => {
                tracing::error!(
                    error = %err,
                    "archive: cannot create the next segment; the open one grows past its size until it can"
                );
                self.prepare_again = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    /// Encodes and appends a group, after switching to the next segment if this one is full.
    fn append(&mut self, batches: &[Arc<Batch>]) -> Result<(), ArchiveError> {
        self.take_reports()?;
        let Some(segment) = self.segment.as_ref() else {
            return Err(self.unusable());
        };
        // A group that would pass the segment's size goes into the next segment: past its size the
        // segment has no reserved blocks, and a write there can wait for the disk. One rollover at
        // a time, and a segment takes at least one group; until the next segment is ready, this
        // one grows past its size.
        let full = segment.len + group_len(batches) > self.segment_bytes;
        if full && self.appended && self.rolling.is_none() {
            let index = segment.index + 1;
            match self.spare.take() {
                Some(next) => self.switch(next, index)?,
                None if self.preparing.is_none()
                    && self.prepare_again.is_none_or(|at| Instant::now() >= at) =>
                {
                    self.prepare_again = None;
                    self.preparing = Some(self.disk.prepare(index));
                }
                None => {}
            }
        }
        // The group's records start where the open segment (perhaps a new one) ends now.
        let at = self.segment.as_ref().map_or(0, |segment| segment.len);
        let (raised, steps) = self.encode(batches, at);
        self.write_buf()?;
        self.commit_steps(steps);
        debug_assert_eq!(self.offsets.len(), batches.len());
        for (batch, &offset) in batches.iter().zip(&self.offsets) {
            let source = &batch.source;
            let key = (source.kind, source.id);
            let sequences = || batch.payloads().map(|(sequence, _)| sequence);
            if let Some(tracked) = self.sources.get_mut(&key) {
                tracked.above.extend(sequences());
            }
            let received = self.clock.at(batch.decoded_at);
            match batch.reception() {
                Some((delivery, _)) => {
                    let station = &delivery.station;
                    self.contents
                        .add_delivered(offset, key, received, station, sequences);
                }
                None => self.contents.add(offset, key, received, sequences()),
            }
            self.span.add(Some((received, received)));
        }
        self.commit(&raised);
        self.appended = true;
        Ok(())
    }

    /// Appends the buffer's records to the open segment with one system call.
    fn write_buf(&mut self) -> Result<(), ArchiveError> {
        let Some(segment) = self.segment.as_mut() else {
            return Err(self.unusable());
        };
        if let Err(err) = (&*segment.file).write_all(&self.buf) {
            let err = ArchiveError::io(&segment.path, "append to segment")(err);
            // Cut a partial record off, so that later appends follow whole records.
            if segment.file.set_len(segment.len).is_err() {
                self.segment = None;
            }
            return Err(err);
        }
        segment.len += self.buf.len() as u64;
        Ok(())
    }

    /// Appends a WATERMARK for every source acknowledged past its last one: at close, after the
    /// last sync moved the acknowledgements, so that the next start's checkpoint does not list
    /// the frames of that sync as stored above the watermarks. The close's sync makes them
    /// durable; without them (a crash first) those frames are listed as before, which is also
    /// exactly-once.
    fn mark_acknowledged(&mut self) -> Result<(), ArchiveError> {
        self.buf.clear();
        let at = self.segment.as_ref().map_or(0, |segment| segment.len);
        let steps = self.encode_steps(at);
        let mut raised = Raised::new();
        for (&(kind, id), tracked) in &self.sources {
            if let Some(acked) = tracked.moved() {
                format::encode_watermark(&mut self.buf, kind, id, acked);
                raised.push(((kind, id), acked));
            }
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        self.write_buf()?;
        self.commit(&raised);
        self.commit_steps(steps);
        Ok(())
    }

    /// Starts appending to `next`, the staged segment `index`, after its checkpoint, and sends the
    /// full segment to the disk thread: it makes that one durable, then names the new one. The
    /// checkpoint comes before any frame is encoded for the new segment, since encoding adds to
    /// what it lists.
    fn switch(&mut self, mut next: File, index: u64) -> Result<(), ArchiveError> {
        let staged = files::staged_path(&self.dir, index);
        let raised = self.checkpoint();
        next.write_all(&self.buf)
            .map_err(ArchiveError::io(&staged, "write"))?;
        self.commit(&raised);
        let next = Arc::new(next);
        let new = Segment {
            file: Arc::clone(&next),
            path: staged,
            index,
            len: self.buf.len() as u64,
        };
        if let Some(full) = self.segment.replace(new) {
            let contents = SegmentIndex {
                len: full.len,
                ..std::mem::take(&mut self.contents)
            };
            self.rolling = Some(self.disk.roll_over(full, contents, next, index));
        }
        self.span.reset();
        self.appended = false;
        self.preparing = Some(self.disk.prepare(index + 1));
        Ok(())
    }

    /// The open segment, shared with a job of the disk thread's.
    fn current(&self) -> Result<Segment, ArchiveError> {
        let Some(segment) = &self.segment else {
            return Err(self.unusable());
        };
        Ok(Segment {
            file: Arc::clone(&segment.file),
            path: segment.path.clone(),
            index: segment.index,
            len: segment.len,
        })
    }

    /// The end of what is written to the open segment.
    fn end(&self) -> Result<DurableEnd, ArchiveError> {
        match &self.segment {
            Some(segment) => Ok(DurableEnd::of(segment)),
            None => Err(self.unusable()),
        }
    }

    fn unusable(&self) -> ArchiveError {
        ArchiveError::broken(format!(
            "the archive in {} is unusable after an earlier error",
            self.dir.display()
        ))
    }
}

/// Appends the batch's FRAMES record(s) to `out`, received at `received_unix_ns`.
fn encode_batch(out: &mut Vec<u8>, batch: &Batch, received_unix_ns: u64) {
    let source = &batch.source;
    match batch.reception() {
        None => format::encode_frames(
            out,
            source.kind,
            batch.priority,
            source.id,
            received_unix_ns,
            batch.payloads(),
        ),
        Some((delivery, received)) => {
            let head = FramesHead {
                kind: source.kind,
                priority: batch.priority,
                source_id: source.id,
                received_unix_ns,
            };
            let frames = batch.payloads().zip(received);
            let frames = frames.map(|((sequence, payload), &r)| (sequence, payload, r));
            format::encode_received_frames(out, head, delivery, frames);
        }
    }
}

impl DurableEnd {
    fn of(segment: &Segment) -> DurableEnd {
        DurableEnd {
            segment: segment.index,
            len: segment.len,
        }
    }
}

/// Moves the durable end forward to `end` (a sync that ended late never moves it back).
fn publish(durable: &watch::Sender<DurableEnd>, end: DurableEnd) {
    durable.send_if_modified(|current| {
        let later = end > *current;
        if later {
            *current = end;
        }
        later
    });
}

impl ArchiveSink for SegmentSink {
    fn write<'a>(
        &'a mut self,
        batches: &'a [Arc<Batch>],
    ) -> BoxFuture<'a, Result<(), ArchiveError>> {
        let written = self.writer.append(batches);
        if written.is_ok() && self.durable_when_written {
            if let Ok(end) = self.writer.end() {
                publish(&self.durable, end);
            }
        }
        Box::pin(async move { written })
    }

    fn journal(&mut self, batches: &[Arc<Batch>]) -> Option<JournalAppend> {
        let journal = self.journal.as_mut()?;
        let (mut records, mut each) = (Vec::new(), Vec::with_capacity(batches.len()));
        for batch in batches {
            let received = self.writer.clock.at(batch.decoded_at);
            let start = records.len();
            encode_batch(&mut records, batch, received);
            each.push(Bytes::copy_from_slice(&records[start..]));
        }
        let reply = journal.append(records);
        Some(JournalAppend {
            records: each,
            durable: Box::pin(journal::answer(reply)),
        })
    }

    fn sync(&mut self) -> BoxFuture<'static, Result<(), ArchiveError>> {
        // Covers what was written before the sync began; the writer goes on appending meanwhile.
        let synced = self
            .writer
            .current()
            .map(|segment| (DurableEnd::of(&segment), self.writer.disk.sync(segment)));
        // Everything journaled so far was written before: once the sync ends, it is in a segment.
        let retirer = self.journal.as_mut().and_then(Journal::rotate_if_due);
        let durable = self.durable.clone();
        let poisoned = Arc::clone(&self.poisoned);
        Box::pin(async move {
            let (end, reply) = synced?;
            if let Err(err) = disk::answer(reply).await {
                // One that lost nothing is tried again; the journals are kept until it works.
                if !err.is_transient() {
                    poisoned.store(true, Ordering::Relaxed);
                }
                return Err(err);
            }
            publish(&durable, end);
            if let Some(retirer) = retirer.filter(|_| !poisoned.load(Ordering::Relaxed)) {
                retirer.retire();
            }
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), ArchiveError>> {
        if self.poisoned.load(Ordering::Relaxed) {
            let why =
                "an earlier sync failed: the close writes nothing, and the next start recovers";
            return Box::pin(async move { Err(ArchiveError::broken(why)) });
        }
        let closed = self
            .writer
            .mark_acknowledged()
            .and_then(|()| self.writer.current())
            .map(|segment| (DurableEnd::of(&segment), self.writer.disk.close(segment)));
        Box::pin(async move {
            let (end, reply) = closed?;
            disk::answer(reply).await?;
            publish(&self.durable, end);
            if let Some(journal) = &mut self.journal {
                journal::answer(journal.close()).await?;
            }
            Ok(())
        })
    }

    fn durable_end(&self) -> Option<watch::Receiver<DurableEnd>> {
        Some(self.durable.subscribe())
    }
}

mod encode;

#[cfg(test)]
mod tests;
