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

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::sync::oneshot::{self, error::TryRecvError};
use tokio::sync::watch;

use super::disk::{self, Disk, DiskShared, Readers, Segment};
use super::index::{OpenSpan, SealedSegment, SegmentIndex};
use super::journal::{self, Gate, Journal, Leftover};
use super::layout::{self, shard_dir};
use super::recovery::{self, Newest, Start};
use super::retention::ShardStart;
use super::segment::{self, with_path, FrameRecord, FramesHead, MAGIC};
use super::tracked::Tracked;
use super::{Archive, ArchiveSink, ArchiveTime, BoxFuture, DurableEnd, SealedFeed};
use crate::config::{ArchiveConfig, SyncMode};
use crate::domain::batch::Batch;
use crate::domain::clock::{self, ArchiveClock, ClockEvent, ClockEventKind, ClockSteps};
use crate::domain::frame::SourceKey;
use crate::domain::ledger::ResumePoint;

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
    preparing: Option<oneshot::Receiver<io::Result<File>>>,
    /// The next segment, created and waiting for this one to fill.
    spare: Option<File>,
    /// The last rollover, until the disk thread has given the segment its name.
    rolling: Option<oneshot::Receiver<io::Result<PathBuf>>>,
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
    pub(super) steps: Arc<ClockSteps>,
    /// The archive clock when the archive was opened: every shard's start record's time.
    pub(super) started: u64,
}

/// The CLOCK records of steps a write carries, with their offsets, and the number of the newest
/// step: what the open segment holds and the writer has recorded once the write is done.
#[derive(Debug, Default)]
struct Steps {
    written: Vec<(u64, ClockEvent)>,
    newest: u64,
}

/// The bytes a group takes in a segment: its FRAMES records and a WATERMARK per batch at most. (A
/// batch over the 17 MiB limit of a record takes one more record header per part.)
fn group_len(batches: &[Arc<Batch>]) -> u64 {
    let per_batch = 2 * segment::RECORD_HEADER_LEN + segment::MARK_BODY_LEN;
    batches
        .iter()
        .map(|batch| {
            let (fixed, entry) = match batch.reception() {
                Some(_) => (
                    segment::RECEIVED_BODY_MAX_FIXED,
                    segment::RECEIVED_ENTRY_MAX_FIXED,
                ),
                None => (segment::FRAMES_BODY_FIXED, segment::FRAMES_ENTRY_FIXED),
            };
            (per_batch + fixed + entry * batch.len()) as u64 + batch.payload_bytes()
        })
        .sum()
}

impl SegmentSink {
    /// Opens (creating if needed) the archive directory, recovers from the newest segment, and
    /// goes on appending to it (or starts a new segment with a checkpoint). Returns the resume point of every source the archive
    /// knows. Errors name the path and the cause; a corrupt newest segment is an error (run
    /// `aggregator archive repair DIR --quarantine` moves the damage aside), a torn tail is cut
    /// and logged. One shard's archive: [`open_shards`] opens them all.
    pub fn open(
        config: &ArchiveConfig,
    ) -> io::Result<(SegmentSink, HashMap<SourceKey, ResumePoint>)> {
        let dir = config.dir.clone();
        create_dir(&dir)?;
        let lock = segment::lock_directory(&dir)?;
        let (mut sources, start) = recovery::recover(&dir)?;
        let leftover = journal::recover(&dir, &mut sources)?;
        let mut shards = [sources];
        let resume = recovery::resume_points(&mut shards);
        let [sources] = shards;
        let shared = Shared {
            gate: Arc::new(Gate::new(&dir)),
            readers: Arc::default(),
            sealed: None,
            span: Arc::default(),
            steps: Arc::default(),
            started: ArchiveClock::process().now(),
        };
        let sink = SegmentSink::start(config, (dir, 0, lock), (sources, start), leftover, shared)?;
        Ok((sink, resume))
    }

    /// Starts the sink of a recovered directory: the frames its journals held that its segments
    /// lost appended to its newest segment (or to a new one with a checkpoint), then the journals
    /// deleted and a new one started.
    /// Every shard's disk thread makes way for every shard's emergency appends (`shared.gate`):
    /// they share the disk; and keeps its synced segments cached while the archive has readers.
    fn start(
        config: &ArchiveConfig,
        (dir, shard, lock): (PathBuf, usize, File),
        (sources, start): (HashMap<SourceKey, Tracked>, Start),
        leftover: Leftover,
        shared: Shared,
    ) -> io::Result<SegmentSink> {
        let Shared {
            gate,
            readers,
            sealed,
            span,
            steps,
            started,
        } = shared;
        let disk_shared = DiskShared {
            gate: Arc::clone(&gate),
            readers,
            sealed,
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
        };
        writer.start((start, started), &leftover.frames)?;
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

fn create_dir(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)
        .map_err(|err| with_path(err, dir, "cannot create the archive directory"))
}

/// Opens the archive of `shards` shards in `config.dir` ([`super::layout`]): locks it, recovers
/// every shard directory in parallel (also those of shards beyond `shards`, left by a daemon that
/// ran more, whose frames still count), merges each source's resume point over all of them, and
/// starts a sink for each of the first `shards`. The others are retired: read, never written.
pub(crate) fn open_shards(config: &ArchiveConfig, shards: usize) -> io::Result<Archive> {
    let root = config.dir.clone();
    create_dir(&root)?;
    // Taken before any shard is touched: recovery deletes files a crash left unnamed.
    let root_lock = segment::lock_directory(&root)?;
    let dirs = shard_dirs(&root, shards)?;
    let (mut sources, mut starts): (Vec<_>, Vec<_>) = recover_all(&dirs)?.into_iter().unzip();
    // The frames a retired shard's journal holds that its segments lost are stored by shard 0.
    let retired: Vec<Leftover> = starts[shards..]
        .iter_mut()
        .map(|(_, leftover)| std::mem::take(leftover))
        .collect();
    for leftover in retired {
        starts[0].1.absorb(leftover, &mut sources[0]);
    }
    let resume = recovery::resume_points(&mut sources);
    // Where each shard's received times stood when the last run stopped.
    let mut shard_starts: Vec<ShardStart> = (dirs.iter().zip(&starts))
        .map(|((shard, _), (start, _))| ShardStart::before(*shard, start.newest_received))
        .collect();
    let (sealed, sealed_rx) = mpsc::channel();
    let shared = Shared {
        gate: Arc::new(Gate::new(&root)),
        readers: Arc::new(Readers::default()),
        sealed: Some(sealed),
        span: Arc::default(),
        steps: Arc::default(),
        started: ArchiveClock::process().now(),
    };
    let mut archive = Archive {
        sinks: Vec::with_capacity(shards),
        retired: Vec::new(),
        resume,
        readers: Some(Arc::clone(&shared.readers)),
        files: Some(SealedFeed {
            root: root.clone(),
            sealed: sealed_rx,
            open: Vec::new(),
            start: Vec::new(),
        }),
        clock: ArchiveTime {
            steps: Arc::clone(&shared.steps),
            newest_at_start: shard_starts.iter().filter_map(|s| s.newest).max(),
        },
    };
    let mut lock = Some(root_lock);
    for (((shard, dir), sources), (start, leftover)) in dirs.into_iter().zip(sources).zip(starts) {
        if shard >= shards {
            archive.retired.push((shard, retired_end(&dir)?));
            continue;
        }
        let lock = match lock.take() {
            Some(root_lock) => root_lock,
            None => segment::lock_directory(&dir)?,
        };
        let span = Arc::new(OpenSpan::default());
        if let Some(files) = &mut archive.files {
            files.open.push((shard, Arc::clone(&span)));
        }
        let sink = SegmentSink::start(
            config,
            (dir, shard, lock),
            (sources, start),
            leftover,
            Shared {
                span,
                ..shared.clone()
            },
        )?;
        shard_starts[shard].began_in = sink.writer.segment.as_ref().map(|s| s.index);
        archive.sinks.push(Box::new(sink));
    }
    if let Some(files) = &mut archive.files {
        files.start = shard_starts;
    }
    Ok(archive)
}

/// The shard directories of the archive at `root` for `shards` shards, created, then those beyond
/// them a daemon that ran more left, by shard.
fn shard_dirs(root: &Path, shards: usize) -> io::Result<Vec<(usize, PathBuf)>> {
    let mut dirs: Vec<(usize, PathBuf)> = (0..shards).map(|k| (k, shard_dir(root, k))).collect();
    for (shard, dir) in layout::list_shards(root)? {
        if shard >= shards {
            dirs.push((shard, dir));
        }
    }
    for (_, dir) in &dirs[..shards] {
        create_dir(dir)?;
    }
    Ok(dirs)
}

/// A shard directory recovered: its sources, where its writer starts, and what its journals hold
/// that its segments lost.
type Recovered = (HashMap<SourceKey, Tracked>, (Start, Leftover));

/// Recovers each shard directory of `dirs`, in parallel.
fn recover_all(dirs: &[(usize, PathBuf)]) -> io::Result<Vec<Recovered>> {
    std::thread::scope(|scope| {
        let reading: Vec<_> = dirs
            .iter()
            .map(|(_, dir)| {
                scope.spawn(|| {
                    let (mut sources, start) = recovery::recover(dir)?;
                    let leftover = journal::recover(dir, &mut sources)?;
                    Ok((sources, (start, leftover)))
                })
            })
            .collect();
        reading
            .into_iter()
            .map(|thread| {
                thread
                    .join()
                    .unwrap_or_else(|_| Err(io::Error::other("recovery panicked")))
            })
            .collect()
    })
}

/// The durable end of a retired shard: all of its files, which nothing writes any more. The
/// receiver's sender is gone, which tells followers so.
fn retired_end(dir: &Path) -> io::Result<watch::Receiver<DurableEnd>> {
    let end = match segment::list_segments(dir)?.pop() {
        Some((index, path)) => DurableEnd {
            segment: index,
            len: fs::metadata(&path)
                .map_err(|err| with_path(err, &path, "cannot read the length of"))?
                .len(),
        },
        None => DurableEnd { segment: 0, len: 0 },
    };
    Ok(watch::channel(end).1)
}

impl Writer {
    /// Opens the segment the archive writes first, with the `journaled` frames recovery found
    /// missing made durable in it, and has the disk thread create the one after it: the newest
    /// segment, continued, unless it is full; else a new one with a
    /// checkpoint. Blocking: called once, at start.
    /// A segment an earlier build wrote (format version 4) is not continued: a new one begins,
    /// so that every file holds the records of its own version. Either way the start's CLOCK
    /// record follows the journaled frames.
    fn start(
        &mut self,
        (start, started): (Start, u64),
        journaled: &[FrameRecord],
    ) -> io::Result<()> {
        let event = self.start_event(started, start.newest_received);
        let continued = match &start.newest {
            Some(newest) => segment::file_version(&newest.path)? == segment::FORMAT_VERSION,
            None => false,
        };
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

    /// Appends a CLOCK record of `event` to the buffer, written at offset `at` of the open
    /// segment, and notes it in what the open segment holds.
    fn encode_clock(&mut self, at: u64, event: &ClockEvent) {
        self.contents.add_clock(at + self.buf.len() as u64, *event);
        segment::encode_clock(&mut self.buf, event);
    }

    /// Appends a CLOCK record for each step noticed since the last write, to the buffer written
    /// at offset `at`; returns them, for [`Self::commit_steps`] once the buffer is written (a
    /// failed write leaves them to the next). One atomic load when there is none.
    fn encode_steps(&mut self, at: u64) -> Steps {
        if self.steps.newest() == self.steps_written {
            return Steps::default();
        }
        let (events, newest) = self.steps.after(self.steps_written);
        let mut written = Vec::with_capacity(events.len());
        for event in events {
            written.push((at + self.buf.len() as u64, event));
            segment::encode_clock(&mut self.buf, &event);
        }
        Steps { written, newest }
    }

    /// What a written buffer's CLOCK records say is now what the open segment holds.
    fn commit_steps(&mut self, steps: Steps) {
        if steps.written.is_empty() {
            return;
        }
        for (offset, event) in steps.written {
            self.contents.add_clock(offset, event);
        }
        self.steps_written = steps.newest;
    }

    /// Goes on appending to the newest segment, which recovery made durable, after the
    /// `journaled` frames and the start's CLOCK record; returns its index.
    fn resume(
        &mut self,
        newest: Newest,
        journaled: &[FrameRecord],
        event: &ClockEvent,
    ) -> io::Result<u64> {
        let Newest {
            index,
            path,
            len,
            contents,
        } = newest;
        let file = disk::open_appending(&path, self.segment_bytes)?;
        self.contents = contents;
        self.buf.clear();
        self.encode_journaled(len, journaled);
        self.encode_clock(len, event);
        self.span.add(self.contents.received);
        if !self.buf.is_empty() {
            (&file)
                .write_all(&self.buf)
                .and_then(|()| file.sync_data())
                .map_err(|err| with_path(err, &path, "cannot write"))?;
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
    ) -> io::Result<u64> {
        let mut file = disk::create_staged(&self.dir, index, self.segment_bytes)?;
        let raised = self.checkpoint();
        self.contents = SegmentIndex::default();
        self.encode_journaled(0, journaled);
        self.encode_clock(0, event);
        self.span.add(self.contents.received);
        file.write_all(&self.buf)
            .map_err(|err| with_path(err, &disk::staged_path(&self.dir, index), "cannot write"))?;
        self.commit(&raised);
        let path = disk::publish(&self.dir, &file, index)?;
        self.segment = Some(Segment {
            file: Arc::new(file),
            path,
            index,
            len: self.buf.len() as u64,
        });
        Ok(index)
    }

    /// Appends the frames recovery read from the journals to the buffer, which is written at
    /// offset `at` of the open segment, and counts them in what the open segment holds.
    fn encode_journaled(&mut self, at: u64, journaled: &[FrameRecord]) {
        for frame in journaled {
            self.contents.add_frame(at + self.buf.len() as u64, frame);
            frame.encode(&mut self.buf);
        }
    }

    /// Encodes the magic and a checkpoint into the buffer: each source's watermark, fresh from its
    /// acknowledgements, and the sequences stored above it.
    fn checkpoint(&mut self) -> Raised {
        self.buf.clear();
        self.buf.extend_from_slice(MAGIC);
        let mut raised = Raised::new();
        for (&(kind, id), tracked) in &self.sources {
            let moved = tracked.moved();
            if let Some(acked) = moved {
                raised.push(((kind, id), acked));
            }
            let watermark = moved.or(tracked.watermark);
            if let Some(acked) = watermark {
                segment::encode_watermark(&mut self.buf, kind, id, acked);
            }
            // Nothing lies above a watermark of u64::MAX (an older daemon's, read from disk).
            let Some(above) = watermark.map_or(Some(0), |acked| acked.checked_add(1)) else {
                continue;
            };
            for (first, last) in tracked.above.runs().filter(|&(_, last)| last >= above) {
                segment::encode_stored(&mut self.buf, kind, id, first.max(above), last);
            }
        }
        raised
    }

    /// What a written record's watermarks say is now what the archive remembers.
    fn commit(&mut self, raised: &Raised) {
        for &(key, acked) in raised {
            if let Some(tracked) = self.sources.get_mut(&key) {
                tracked.raise_watermark(acked);
            }
        }
    }

    /// Takes what the disk thread has reported since the last append: the next segment created,
    /// or the last rollover done. A failed rollover is returned once and leaves the archive
    /// unusable.
    fn take_reports(&mut self) -> io::Result<()> {
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
    fn append(&mut self, batches: &[Arc<Batch>]) -> io::Result<()> {
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
        for batch in batches {
            let source = &batch.source;
            let key = (source.kind, source.id);
            let sequences = || batch.payloads().map(|(sequence, _)| sequence);
            if let Some(tracked) = self.sources.get_mut(&key) {
                tracked.above.extend(sequences());
            }
            let received = self.clock.at(batch.decoded_at);
            self.contents.add(at, (key, received), sequences());
            if let Some((delivery, _)) = batch.reception() {
                self.contents
                    .add_station(key, &delivery.station, sequences());
            }
            self.span.add(Some((received, received)));
        }
        self.commit(&raised);
        self.appended = true;
        Ok(())
    }

    /// Appends the buffer's records to the open segment with one system call.
    fn write_buf(&mut self) -> io::Result<()> {
        let Some(segment) = self.segment.as_mut() else {
            return Err(self.unusable());
        };
        if let Err(err) = (&*segment.file).write_all(&self.buf) {
            let err = with_path(err, &segment.path, "cannot append to segment");
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
    fn mark_acknowledged(&mut self) -> io::Result<()> {
        self.buf.clear();
        let at = self.segment.as_ref().map_or(0, |segment| segment.len);
        let steps = self.encode_steps(at);
        let mut raised = Raised::new();
        for (&(kind, id), tracked) in &self.sources {
            if let Some(acked) = tracked.moved() {
                segment::encode_watermark(&mut self.buf, kind, id, acked);
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
    fn switch(&mut self, mut next: File, index: u64) -> io::Result<()> {
        let staged = disk::staged_path(&self.dir, index);
        let raised = self.checkpoint();
        next.write_all(&self.buf)
            .map_err(|err| with_path(err, &staged, "cannot write"))?;
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

    /// Encodes a group, written at offset `at` of the open segment: a CLOCK record for each step
    /// of the wall clock noticed since the last group, a FRAMES record per batch, then a
    /// WATERMARK for each source whose acknowledgement moved since the last one
    /// (acknowledgements only ever cover frames already synced). Returns the watermarks and the
    /// steps, for [`Self::commit`] and [`Self::commit_steps`] once the group is written.
    fn encode(&mut self, batches: &[Arc<Batch>], at: u64) -> (Raised, Steps) {
        self.buf.clear();
        let steps = self.encode_steps(at);
        let mut raised = Raised::new();
        for batch in batches {
            let source = &batch.source;
            let key = (source.kind, source.id);
            let tracked = self.sources.entry(key).or_default();
            tracked.seen(source.ledger());
            if let Some(acked) = tracked.moved() {
                raised.push((key, acked));
            }
            encode_batch(&mut self.buf, batch, self.clock.at(batch.decoded_at));
        }
        // One WATERMARK per source, however many of its batches the group holds.
        raised.sort_unstable_by_key(|&((kind, id), _)| (kind.to_byte(), id));
        raised.dedup_by_key(|&mut ((kind, id), _)| (kind.to_byte(), id));
        for &((kind, id), acked) in &raised {
            segment::encode_watermark(&mut self.buf, kind, id, acked);
        }
        (raised, steps)
    }

    /// The open segment, shared with a job of the disk thread's.
    fn current(&self) -> io::Result<Segment> {
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
    fn end(&self) -> io::Result<DurableEnd> {
        match &self.segment {
            Some(segment) => Ok(DurableEnd::of(segment)),
            None => Err(self.unusable()),
        }
    }

    fn unusable(&self) -> io::Error {
        io::Error::other(format!(
            "the archive in {} is unusable after an earlier error",
            self.dir.display()
        ))
    }
}

/// Appends the batch's FRAMES record(s) to `out`, received at `received_unix_ns`.
fn encode_batch(out: &mut Vec<u8>, batch: &Batch, received_unix_ns: u64) {
    let source = &batch.source;
    match batch.reception() {
        None => segment::encode_frames(
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
            segment::encode_received_frames(out, head, delivery, frames);
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
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>> {
        let written = self.writer.append(batches);
        if written.is_ok() && self.durable_when_written {
            if let Ok(end) = self.writer.end() {
                publish(&self.durable, end);
            }
        }
        Box::pin(async move { written })
    }

    fn journal(&mut self, batches: &[Arc<Batch>]) -> Option<BoxFuture<'static, io::Result<()>>> {
        let journal = self.journal.as_mut()?;
        let mut records = Vec::new();
        for batch in batches {
            let received = self.writer.clock.at(batch.decoded_at);
            encode_batch(&mut records, batch, received);
        }
        let reply = journal.append(records);
        Some(Box::pin(journal::answer(reply)))
    }

    fn sync(&mut self) -> BoxFuture<'static, io::Result<()>> {
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
                if !super::is_transient(&err) {
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

    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        if self.poisoned.load(Ordering::Relaxed) {
            let why =
                "an earlier sync failed: the close writes nothing, and the next start recovers";
            return Box::pin(async move { Err(io::Error::other(why)) });
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

#[cfg(test)]
mod tests {
    use super::segment::Entry;
    use super::*;
    use crate::config::{ArchiveKind, SyncMode};
    use crate::domain::frame::{Priority, SourceKind};
    use crate::domain::ledger::{Ledger, Run};
    use crate::domain::source::Source;
    use bytes::Bytes;
    use std::fs::OpenOptions;
    use std::path::Path;
    use std::time::Duration;

    /// A batch of `count` one-byte frames of `source`, sequences from `first` on.
    fn batch(source: &Arc<Source>, first: u64, count: u64) -> Arc<Batch> {
        batch_of(Priority::Routine, source, first, count)
    }

    /// [`batch`] with frames of `priority`.
    fn batch_of(priority: Priority, source: &Arc<Source>, first: u64, count: u64) -> Arc<Batch> {
        let now = std::time::Instant::now();
        let mut batch = Batch::new(Arc::clone(source), priority, now, count as usize);
        for (i, sequence) in (first..first + count).enumerate() {
            batch.push(sequence, i..i + 1);
        }
        batch.attach(Bytes::from(vec![0xa5; count as usize]));
        Arc::new(batch)
    }

    /// Live uplink `id`, as a connection registers it.
    fn uplink(id: u32) -> Arc<Source> {
        let peer = "127.0.0.1:1".parse().unwrap();
        let ledger = Arc::new(Ledger::new(None));
        Arc::new(Source::new(id, SourceKind::LiveUplink, peer, ledger))
    }

    /// Frames 0 to `count - 1` of `source` through the archive consumer's steps: admitted, written,
    /// synced, and so acknowledged.
    async fn store_and_acknowledge(sink: &mut SegmentSink, source: &Arc<Source>, count: u64) {
        source.record(&[Run {
            priority: Priority::Routine,
            frames: count,
            last_sequence: count - 1,
        }]);
        let batch = batch(source, 0, count);
        sink.write(std::slice::from_ref(&batch)).await.unwrap();
        sink.sync().await.unwrap();
        source.stored(batch.span().unwrap());
    }

    /// Opens the archive as a restart does (its checkpoint written to a new segment) and returns
    /// live uplink `id`'s resume point.
    fn restart_and_resume(config: &ArchiveConfig, id: u32) -> ResumePoint {
        let (sink, mut resume) = SegmentSink::open(config).unwrap();
        drop(sink);
        resume.remove(&(SourceKind::LiveUplink, id)).unwrap()
    }

    /// The records of the segment at `path`, without their offsets.
    fn entries(path: &Path) -> Vec<Entry> {
        segment::read_segment(path)
            .unwrap()
            .entries
            .into_iter()
            .map(|(_, entry)| entry)
            .collect()
    }

    /// An empty archive directory `durable-{name}-{pid}` under the temporary directory, and the
    /// config of an archive there with segments of `segment_bytes`.
    fn fresh_archive(name: &str, segment_bytes: u64) -> (PathBuf, ArchiveConfig) {
        let dir = std::env::temp_dir().join(format!("durable-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let config = ArchiveConfig {
            kind: ArchiveKind::Segments,
            dir: dir.clone(),
            segment_bytes,
            sync: SyncMode::Interval,
            sync_interval: Duration::from_millis(20),
            ..ArchiveConfig::default()
        };
        (dir, config)
    }

    /// Pages of the file at `path` that are in the page cache.
    fn cached_pages(path: &Path) -> usize {
        let file = File::open(path).unwrap();
        let len = file.metadata().unwrap().len() as usize;
        disk::cached_pages(&file, len)
    }

    /// The archive never reads a segment back, so a sync leaves none of what it covered cached.
    /// (Needs a disk-backed temporary directory: tmpfs keeps files only in the page cache.)
    #[tokio::test]
    async fn a_sync_drops_what_it_covered_from_the_page_cache() {
        let (dir, config) = fresh_archive("cache", 64 << 20);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let source = uplink(1);
        let batches: Vec<_> = (0..64).map(|i| batch(&source, i * 4096, 4096)).collect();
        sink.write(&batches).await.unwrap();
        let (_, path) = segment::list_segments(&dir).unwrap().pop().unwrap();
        let written = cached_pages(&path);
        assert!(
            written >= 64,
            "written and not yet synced: {written} pages cached"
        );

        sink.sync().await.unwrap();
        let left = cached_pages(&path);
        assert!(
            left <= 1,
            "{left} of {written} pages still cached after the sync"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// Bytes of disk the file at `path` holds.
    fn allocated(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        fs::metadata(path).unwrap().blocks() * 512
    }

    /// A segment holds its whole size of disk from the start, so that appends never wait for a
    /// sync's block allocation, and gives back what it did not use when the archive closes, or at
    /// the next start after a stop without a close.
    #[tokio::test]
    async fn a_segment_reserves_its_size_and_gives_back_the_rest() {
        let (dir, config) = fresh_archive("reserve", 4 << 20);
        let source = uplink(1);
        let page_rounded = |path: &Path| fs::metadata(path).unwrap().len().next_multiple_of(4096);

        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        sink.write(&[batch(&source, 0, 10)]).await.unwrap();
        let (_, first) = segment::list_segments(&dir).unwrap().pop().unwrap();
        assert!(allocated(&first) >= 4 << 20, "{} bytes", allocated(&first));
        sink.close().await.unwrap();
        assert!(
            allocated(&first) <= page_rounded(&first),
            "{} bytes",
            allocated(&first)
        );
        assert!(staged(&dir).is_empty(), "the spare is deleted at close");
        drop(sink);

        // Started again, the archive goes on in that segment, which reserves its size again.
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        sink.write(&[batch(&source, 10, 10)]).await.unwrap();
        let (_, second) = segment::list_segments(&dir).unwrap().pop().unwrap();
        assert_eq!(first, second, "the start went on in the newest segment");
        assert!(
            allocated(&second) >= 4 << 20,
            "{} bytes",
            allocated(&second)
        );
        // Stopped without a close: the next start trims it before it reserves again, and a close
        // gives back the rest.
        drop(sink);
        let (mut sink, resume) = SegmentSink::open(&config).unwrap();
        sink.close().await.unwrap();
        assert!(
            allocated(&second) <= page_rounded(&second),
            "{} bytes",
            allocated(&second)
        );
        let point = &resume[&(SourceKind::LiveUplink, 1)];
        assert_eq!(
            point.after(),
            Some(19),
            "frames 0..=19 are all stored: {point:?}"
        );
        drop(sink);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A start after an unclean stop (a sink dropped without its close, as a crash leaves it) goes
    /// on in the newest segment: repeated crashes do not pile up segments, the spare each left
    /// behind is deleted, and every frame synced before each crash is found.
    #[tokio::test]
    async fn unclean_stops_do_not_multiply_segments() {
        let (dir, config) = fresh_archive("unclean", 1 << 20);
        let source = uplink(1);
        for run in 0..5 {
            let (mut sink, _) = SegmentSink::open(&config).unwrap();
            sink.write(&[batch(&source, run * 10, 10)]).await.unwrap();
            // Also waits for the spare segment, which the crash leaves behind.
            sink.sync().await.unwrap();
            drop(sink);
            assert_eq!(named_indexes(&dir), [1], "after {} crashes", run + 1);
            assert_eq!(staged(&dir).len(), 1, "the spare, segment 2");
        }
        let point = restart_and_resume(&config, 1);
        assert_eq!(point.after(), Some(49), "{point:?}");
        assert_eq!(named_indexes(&dir), [1]);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A source whose stored frames were acknowledged while it sent nothing more: the next
    /// checkpoint carries its new watermark and does not list those frames again.
    #[tokio::test]
    async fn a_checkpoint_takes_the_acknowledgement_of_a_source_gone_quiet() {
        let (dir, config) = fresh_archive("checkpoint", 4096);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let quiet = uplink(1);
        let busy = uplink(2);

        // Synced and acknowledged; the quiet source sends nothing more.
        store_and_acknowledge(&mut sink, &quiet, 10).await;
        assert_eq!(quiet.last_acked(), Some(9));
        // The busy source alone fills the segment and starts the next one. Each sync runs after
        // the jobs sent before it, the next segment's creation and any rollover among them.
        for first in (0..400).step_by(40) {
            sink.write(&[batch(&busy, first, 40)]).await.unwrap();
            sink.sync().await.unwrap();
        }
        let segments = segment::list_segments(&dir).unwrap();
        assert!(segments.len() >= 2, "rolled over: {segments:?}");
        for (_, path) in &segments {
            let len = fs::metadata(path).unwrap().len();
            assert!(
                len <= 4096,
                "{}: {len} bytes, past the reservation",
                path.display()
            );
        }
        let (_, newest) = segments.last().unwrap();
        let checkpoint: Vec<Entry> = entries(newest)
            .into_iter()
            .filter(|entry| entry.source() == Some((SourceKind::LiveUplink, 1)))
            .collect();
        assert_eq!(
            checkpoint,
            vec![Entry::Watermark {
                kind: SourceKind::LiveUplink,
                source_id: 1,
                acked: 9
            }],
            "the watermark, and no STORED RUN for frames it covers"
        );
        drop(sink);
        let _ = fs::remove_dir_all(&dir);
    }

    /// Every start records a CLOCK record, with the jump of received times from the newest the
    /// shard held; a step of the wall clock the daemon noticed is recorded before the frames
    /// written after it, once, and the frames keep the archive clock's times.
    #[tokio::test]
    async fn starts_and_steps_are_recorded_where_they_happened() {
        let (dir, config) = fresh_archive("clock", 1 << 20);
        let source = uplink(1);
        let archive = open_shards(&config, 1).unwrap();
        let steps = Arc::clone(&archive.clock.steps);
        let mut sink = archive.sinks.into_iter().next().unwrap();
        sink.write(&[batch(&source, 0, 2)]).await.unwrap();
        let step = ClockEvent {
            kind: ClockEventKind::Step,
            archive_ns: ArchiveClock::process().now(),
            wall_ns: 1,
            jump_ns: -3_600_000_000_000,
        };
        steps.push(step);
        sink.write(&[batch(&source, 2, 2)]).await.unwrap();
        sink.write(&[batch(&source, 4, 2)]).await.unwrap();
        sink.sync().await.unwrap();
        sink.close().await.unwrap();
        drop(sink);
        let (_, resume) = SegmentSink::open(&config).unwrap();
        drop(resume);

        let (_, newest) = segment::list_segments(&dir).unwrap().pop().unwrap();
        let kinds: Vec<String> = (entries(&newest).into_iter())
            .filter(|e| !matches!(e, Entry::Watermark { .. } | Entry::Stored { .. }))
            .map(|e| match e {
                Entry::Clock(event) => {
                    format!("{}{:+}", event.kind.label(), event.jump_ns.signum())
                }
                Entry::Frame(frame) => frame.sequence.to_string(),
                other => format!("{other:?}"),
            })
            .collect();
        // The first start found nothing (jump 0), the second jumps forward from frame 5.
        let want = ["start+0", "0", "1", "step-1", "2", "3", "4", "5", "start+1"];
        assert_eq!(kinds, want);
        let frames = entries(&newest).into_iter().filter_map(|e| match e {
            Entry::Frame(frame) => Some(frame.received_unix_ns),
            _ => None,
        });
        let before = frames.clone().take(2).max().unwrap();
        assert!(
            frames.skip(2).all(|at| at >= before),
            "no received time moved back"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    /// A clean stop records the acknowledgements of its last sync: the next start resumes the
    /// source after them, and neither its resume point nor the segment lists those frames as
    /// stored above the watermark.
    #[tokio::test]
    async fn a_close_records_the_last_acknowledgements() {
        let (dir, config) = fresh_archive("close", 1 << 20);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let source = uplink(1);
        // The archive consumer's last sync, then the acknowledgement it allows, then the close.
        store_and_acknowledge(&mut sink, &source, 10).await;
        sink.close().await.unwrap();
        drop(sink);

        let point = restart_and_resume(&config, 1);
        assert_eq!(point.after(), Some(9), "{point:?}");
        assert!(point.already_stored.is_empty(), "{point:?}");
        let (_, newest) = segment::list_segments(&dir).unwrap().pop().unwrap();
        let (starts, records): (Vec<Entry>, Vec<Entry>) = entries(&newest)
            .into_iter()
            .filter(|entry| !matches!(entry, Entry::Frame(_)))
            .partition(|entry| matches!(entry, Entry::Clock(_)));
        assert_eq!(
            records,
            vec![Entry::Watermark {
                kind: SourceKind::LiveUplink,
                source_id: 1,
                acked: 9
            }]
        );
        assert_eq!(starts.len(), 2, "a CLOCK record for each start: {starts:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// A source recovered with frames stored above its watermark resends only those: they are
    /// dropped as duplicates and acknowledged, and no batch of it reaches the archive. The archive
    /// reads that acknowledgement from the source's ledger, which recovery made and the source's
    /// connection continues, and records it at the close: the next start resumes the source after
    /// those frames.
    #[tokio::test]
    async fn a_source_that_resends_only_stored_frames_has_its_acknowledgement_recorded() {
        let (dir, config) = fresh_archive("resumed", 1 << 20);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        // Stored, then a crash before the acknowledgement. The source's first frame is 5.
        let before = uplink(1);
        sink.write(&[batch(&before, 5, 5)]).await.unwrap();
        sink.sync().await.unwrap();
        drop(sink);

        let (mut sink, resume) = SegmentSink::open(&config).unwrap();
        let point = &resume[&(SourceKind::LiveUplink, 1)];
        assert_eq!(point.after(), None, "{point:?}");
        assert_eq!(point.already_stored.runs().collect::<Vec<_>>(), [(5, 9)]);
        // The source connects and resends frames 5..=9: all duplicates of stored frames.
        let peer = "127.0.0.1:1".parse().unwrap();
        let ledger = Arc::clone(&point.ledger);
        let after = Source::new(1, SourceKind::LiveUplink, peer, ledger);
        after.record(&[Run {
            priority: Priority::Routine,
            frames: 0,
            last_sequence: 9,
        }]);
        assert_eq!(after.last_acked(), Some(9));
        sink.close().await.unwrap();
        drop(sink);

        let point = restart_and_resume(&config, 1);
        assert_eq!(point.after(), Some(9), "{point:?}");
        assert!(point.already_stored.is_empty(), "{point:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// After a crash, a source that went quiet once its last frames were acknowledged resumes
    /// after them: the frames stored right above the last WATERMARK on disk are all stored, so
    /// the recovered resume point passes them even though their WATERMARK was never written.
    #[tokio::test]
    async fn recovery_passes_frames_stored_contiguously_above_the_watermark() {
        let (dir, config) = fresh_archive("contiguous", 1 << 20);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let source = uplink(1);
        store_and_acknowledge(&mut sink, &source, 10).await;
        // 10..=19 stored and acknowledged, 25..=29 stored (an emergency that overtook 20..=24),
        // then a crash: no WATERMARK for 19 reached the disk.
        for (first, count) in [(10, 10), (25, 5)] {
            sink.write(&[batch(&source, first, count)]).await.unwrap();
        }
        sink.sync().await.unwrap();
        drop(sink);

        let point = restart_and_resume(&config, 1);
        assert_eq!(point.after(), Some(19), "{point:?}");
        assert_eq!(point.already_stored.runs().collect::<Vec<_>>(), [(25, 29)]);
        let _ = fs::remove_dir_all(&dir);
    }

    /// The journal files in `dir`, by file name.
    fn journals(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".journal"))
            .collect();
        names.sort();
        names
    }

    /// How many times the segments in `dir` hold frame `sequence` of live uplink `id`.
    fn copies(dir: &Path, id: u32, sequence: u64) -> usize {
        segment::list_segments(dir)
            .unwrap()
            .iter()
            .flat_map(|(_, path)| entries(path))
            .filter(|entry| {
                matches!(entry, Entry::Frame(frame)
                    if frame.source_id == id && frame.sequence == sequence)
            })
            .count()
    }

    /// A crash that takes the segment's unsynced tail keeps an emergency its journal made
    /// durable: the next start stores it in the new segment, once, and its source resumes after
    /// it; an emergency that both copies kept is not stored again. The journals are deleted once
    /// the new segment holds their frames, and a second start stores nothing more.
    #[tokio::test]
    async fn a_journaled_emergency_survives_the_loss_of_the_segments_tail() {
        let (dir, config) = fresh_archive("journal", 1 << 20);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let (kept, lost) = (uplink(1), uplink(2));
        // Source 1: routine 0..=9 and emergency 10, synced and journaled.
        let both = [
            batch(&kept, 0, 10),
            batch_of(Priority::Emergency, &kept, 10, 1),
        ];
        sink.write(&both).await.unwrap();
        sink.journal(&both[1..]).unwrap().await.unwrap();
        sink.sync().await.unwrap();
        let (_, newest) = segment::list_segments(&dir).unwrap().pop().unwrap();
        let synced = fs::metadata(&newest).unwrap().len();
        // Source 2: emergency 0, journaled; the crash takes it from the segment.
        let emergency = [batch_of(Priority::Emergency, &lost, 0, 1)];
        sink.write(&emergency).await.unwrap();
        sink.journal(&emergency).unwrap().await.unwrap();
        drop(sink);
        OpenOptions::new()
            .write(true)
            .open(&newest)
            .unwrap()
            .set_len(synced)
            .unwrap();
        assert_eq!(copies(&dir, 2, 0), 0, "the crash took it from the segment");

        let (sink, resume) = SegmentSink::open(&config).unwrap();
        assert_eq!(resume[&(SourceKind::LiveUplink, 1)].after(), Some(10));
        assert_eq!(resume[&(SourceKind::LiveUplink, 2)].after(), Some(0));
        assert_eq!(copies(&dir, 1, 10), 1, "kept by both, stored once");
        assert_eq!(copies(&dir, 2, 0), 1, "stored again from the journal");
        assert_eq!(
            journals(&dir),
            ["emergency-00000000000000000002.journal"],
            "the journal it recovered from is deleted; a new one is started"
        );
        drop(sink);

        let (sink, resume) = SegmentSink::open(&config).unwrap();
        assert_eq!(resume[&(SourceKind::LiveUplink, 2)].after(), Some(0));
        assert_eq!(copies(&dir, 2, 0), 1, "a second start stores nothing more");
        drop(sink);
        let _ = fs::remove_dir_all(&dir);
    }

    /// A sync that moved the journal to a new generation holds a way to retire the old ones
    /// until it ends; dropping the sink meanwhile (a drain deadline drops the archive's task)
    /// still ends its journal thread.
    #[tokio::test]
    async fn a_sink_dropped_during_a_rotating_sync_stops() {
        let (dir, config) = fresh_archive("rotating", 64 << 20);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let source = uplink(1);
        // More than a generation's worth of journal records.
        let emergencies = [batch_of(Priority::Emergency, &source, 0, 100_000)];
        sink.write(&emergencies).await.unwrap();
        sink.journal(&emergencies).unwrap().await.unwrap();
        let pending = sink.sync();
        let (dropped, done) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            drop(sink);
            let _ = dropped.send(());
        });
        let stopped = done.recv_timeout(Duration::from_secs(30));
        drop(pending);
        assert!(stopped.is_ok(), "dropping the sink hung");
        let _ = fs::remove_dir_all(&dir);
    }

    /// The indexes of the named segments in `dir`.
    fn named_indexes(dir: &Path) -> Vec<u64> {
        segment::list_segments(dir)
            .unwrap()
            .into_iter()
            .map(|(index, _)| index)
            .collect()
    }

    /// The staged segments in `dir`, by file name.
    fn staged(dir: &Path) -> Vec<String> {
        segment::list_staged(dir)
            .unwrap()
            .iter()
            .map(|(_, path)| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    /// When a segment fills, the writer goes on into the next one at once, while the disk thread
    /// is busy; the new segment gets its name, and becomes what recovery reads, only when the disk
    /// thread has made the full one durable, and a sync sent meanwhile waits for that.
    #[tokio::test]
    async fn a_full_segment_does_not_stop_the_writer_and_the_next_is_named_after_it() {
        let (dir, config) = fresh_archive("rollover", 4096);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        let source = uplink(1);
        // Fills segment 1; the sync also waits for the spare, segment 2, to be created.
        sink.write(&[batch(&source, 0, 400)]).await.unwrap();
        sink.sync().await.unwrap();
        assert_eq!(
            staged(&dir),
            [disk::staged_path(&dir, 2)
                .file_name()
                .unwrap()
                .to_string_lossy()]
        );

        let release = sink.writer.disk.hold();
        // The disk thread is held: these writes would never end if they waited for it.
        for first in (400..4000).step_by(400) {
            let written = tokio::time::timeout(
                Duration::from_secs(10),
                sink.write(&[batch(&source, first, 400)]),
            )
            .await;
            assert!(
                matches!(written, Ok(Ok(()))),
                "a write waited for the disk thread"
            );
        }
        let sync = sink.sync();
        let names = named_indexes(&dir);
        assert_eq!(names, [1], "segment 2 is written to but not named yet");
        assert_eq!(staged(&dir).len(), 1, "{:?}", staged(&dir));

        release.send(()).unwrap();
        sync.await.unwrap();
        let names = named_indexes(&dir);
        assert_eq!(names, [1, 2]);
        // Segment 1 gave back its reservation when it was made durable.
        let first = dir.join(segment::segment_name(1));
        assert!(allocated(&first) < 4 << 20, "{} bytes", allocated(&first));

        sink.close().await.unwrap();
        assert!(staged(&dir).is_empty(), "the spare is deleted at close");
        drop(sink);
        let (_, resume) = SegmentSink::open(&config).unwrap();
        let point = &resume[&(SourceKind::LiveUplink, 1)];
        assert_eq!(point.after(), Some(3999), "every frame written is found");
        assert!(point.already_stored.is_empty(), "{point:?}");
        let _ = fs::remove_dir_all(&dir);
    }

    /// A crash between a switch and its rollover leaves the new segment unnamed: nothing in it was
    /// acknowledged, so the next start deletes it and recovers from the newest named segment.
    #[tokio::test]
    async fn a_segment_a_crash_left_unnamed_is_deleted_and_not_read() {
        let (dir, config) = fresh_archive("unnamed", 64 << 10);
        let source = uplink(1);
        let (mut sink, _) = SegmentSink::open(&config).unwrap();
        sink.write(&[batch(&source, 0, 10)]).await.unwrap();
        sink.close().await.unwrap();
        drop(sink);
        // What a crash in the middle of the rollover to segment 2 leaves: a staged segment 2 with
        // a checkpoint and frames that recovery must not believe.
        let named = dir.join(segment::segment_name(1));
        let mut unnamed = fs::read(&named).unwrap();
        unnamed.extend_from_slice(&fs::read(&named).unwrap()[MAGIC.len()..]);
        fs::write(disk::staged_path(&dir, 2), &unnamed).unwrap();

        let (sink, resume) = SegmentSink::open(&config).unwrap();
        let point = &resume[&(SourceKind::LiveUplink, 1)];
        assert_eq!(point.after(), Some(9), "{point:?}");
        let names = named_indexes(&dir);
        assert_eq!(names, [1], "the archive goes on in segment 1");
        let frames = entries(&named)
            .iter()
            .filter(|entry| matches!(entry, Entry::Frame(_)))
            .count();
        assert_eq!(frames, 10, "nothing of the unnamed segment is in it");
        drop(sink);
        let _ = fs::remove_dir_all(&dir);
    }
}
