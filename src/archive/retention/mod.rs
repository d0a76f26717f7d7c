//! Retention: an archive that never fills its disk (`[archive.retention]`).
//!
//! The daemon runs for months and its archive only grew: a full disk stops ingest (by design: the
//! senders are slowed, nothing is lost), which is still an outage. Retention deletes whole sealed
//! segments, oldest first, as Kafka's `retention.ms`/`retention.bytes` and JetStream's `max_age`/
//! `max_bytes` delete theirs: by age, by the archive's size, or by the free space left on its
//! file system ([`plan`]). What it never deletes is what something relies on:
//!
//! - a shard's open or staged segment, and the newest named segment of every shard directory:
//!   recovery reads the newest segment alone, and its checkpoint carries every source's resume
//!   point, so a source's resume point, the dropping of its resent frames and a link's extended
//!   count survive the deletion of every segment that held its frames;
//! - the emergency journals (they are not segments);
//! - with `protect = ["nats"]`, what the NATS sink has not published, unless a size limit forces
//!   it (the sink then moves on to the oldest frame left and counts what it skipped).
//!
//! A deletion is crash-safe (the `RETENTION` file, [`ShardState`](crate::archive::format::retention_file::ShardState)): what it deletes is written down first, then unlinked.
//! Followers whose next frames are deleted are told (`docs/follow-protocol.md`).
//!
//! Retention runs on a thread of its own: unlinking a large file and syncing a directory wait for
//! the disk, and the writer never waits for retention. It checks the limits each time a disk thread
//! seals a segment (announced over a channel) and every `check_interval_ms` besides, for
//! `max_age` when nothing arrives and for other writers of the file system. Each check also
//! reports the archive's size, segments and the span of time it holds to the stats. Without limits
//! it only reports.

pub mod ages;
pub(crate) mod catalogue;
pub mod plan;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::archive::format::index::{OpenSpan, SealedSegment, SpanCache};
use crate::archive::format::ArchiveError;
use crate::config::RetentionConfig;
use crate::domain::clock::{self, ArchiveClock};
use crate::stats::{ArchiveFiles, Stats};
use ages::Ages;
pub use ages::ShardStart;
use catalogue::Catalogue;
use plan::{Shortfall, Usage};

/// What the archive's writers hand retention: where the archive is, the disk threads'
/// announcements of sealed segments, and each open segment's span of received times.
#[derive(Debug)]
pub struct SealedFeed {
    pub root: PathBuf,
    pub(crate) sealed: mpsc::Receiver<SealedSegment>,
    /// Each active shard's open segment, by shard.
    pub open: Vec<(usize, Arc<OpenSpan>)>,
    /// What each shard held when the archive was opened, and where its writer began.
    pub start: Vec<ShardStart>,
    /// The archive's span cache, which retention fills at its start and prunes as it deletes.
    pub spans: SpanCache,
}

/// How far a reader named in `retention.protect` (the NATS sink) has read each shard: the segment
/// of its saved position. Segments from there on are kept from `max_age`. Before the reader has
/// said where it is, every segment is.
#[derive(Debug, Default)]
pub struct ReadMarks(Mutex<Option<HashMap<usize, u64>>>);

impl ReadMarks {
    /// The reader's saved position in `shard` is in segment `segment`.
    pub fn set(&self, shard: usize, segment: u64) {
        let mut marks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        marks
            .get_or_insert_with(HashMap::new)
            .insert(shard, segment);
    }

    /// The reader has said where it is in every shard it has read ([`Self::set`] for each); a shard
    /// it has not read stays protected.
    pub fn reported(&self) {
        let mut marks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        marks.get_or_insert_with(HashMap::new);
    }

    /// Whether the reader has yet to read segment `segment` of `shard`.
    fn protects(&self, shard: usize, segment: u64) -> bool {
        let marks = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        marks
            .as_ref()
            .is_none_or(|marks| marks.get(&shard).is_none_or(|&mark| segment >= mark))
    }
}

/// The retention thread; it ends once every shard's disk thread has.
#[derive(Debug)]
pub struct Retention {
    thread: Option<JoinHandle<()>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
}

/// The retention thread's state.
struct Retainer {
    feed: SealedFeed,
    limits: RetentionConfig,
    ages: Ages,
    stats: Stats,
    marks: Option<Arc<ReadMarks>>,
    stop: Arc<std::sync::atomic::AtomicBool>,
    /// The limit it could not keep at the last check, logged when it starts and ends.
    short: Option<Shortfall>,
    /// When a failed check was last logged: once a minute at most.
    failed_at: Option<Instant>,
    /// Its last deletions failed (a full file system refuses the state written before them, a
    /// disk error): it cannot keep its limits either, and says so as for a shortfall.
    failing: bool,
}

impl Retention {
    /// Starts retention on the archive `feed` describes, with `limits` (none: it only reports to
    /// `stats`), keeping from `max_age` what `marks` protect, and counting the time before the
    /// start after `grace` (`clock.start_grace_ms`, [`ages`]).
    pub fn start(
        feed: SealedFeed,
        limits: RetentionConfig,
        grace: Duration,
        stats: Stats,
        marks: Option<Arc<ReadMarks>>,
    ) -> Retention {
        let stop = Arc::default();
        let retainer = Retainer {
            ages: Ages::new(ArchiveClock::process(), &feed.start, grace),
            feed,
            limits,
            stats,
            marks,
            stop: Arc::clone(&stop),
            short: None,
            failed_at: None,
            failing: false,
        };
        let thread = std::thread::Builder::new()
            .name("archive-retention".into())
            .spawn(move || retainer.run())
            .inspect_err(|err| {
                tracing::error!(error = %err, "cannot start the archive's retention thread: nothing is deleted")
            })
            .ok();
        Retention { thread, stop }
    }

    /// Waits for the thread, which ends once the archive has closed; a first look at the archive
    /// still under way is cut short.
    pub fn finish(mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Retainer {
    fn run(mut self) {
        let root = self.feed.root.clone();
        let stop = Arc::clone(&self.stop);
        let stopped = move || stop.load(std::sync::atomic::Ordering::Relaxed);
        let started = Instant::now();
        let interval = self.limits.check_interval;
        // A load that fails (a damaged state, a read error, descriptors short) is tried again at
        // each check; meanwhile nothing is deleted, and a bounded archive says it is short.
        let mut catalogue = loop {
            let loaded = Catalogue::load_until(&root, self.feed.spans.clone(), &stopped);
            match loaded.and_then(|c| c.finish_deletions().map(|()| c)) {
                Ok(catalogue) => break catalogue,
                Err(err) => {
                    self.failed(&err);
                    let short = self.limits.is_bounded();
                    self.stats.archive_files(&ArchiveFiles {
                        short,
                        ..ArchiveFiles::default()
                    });
                }
            }
            let waited = self.feed.sealed.recv_timeout(interval);
            if stopped() || matches!(waited, Err(mpsc::RecvTimeoutError::Disconnected)) {
                return;
            }
        };
        // Segments written before indexes existed are each read once, here: it can take a while.
        tracing::info!(
            segments = catalogue.segments(),
            took_ms = started.elapsed().as_millis() as u64,
            bounded = self.limits.is_bounded(),
            "archive retention: read the archive's segment indexes"
        );
        loop {
            self.check(&mut catalogue);
            match self.feed.sealed.recv_timeout(interval) {
                Ok(sealed) => {
                    catalogue.seal(&sealed);
                    for sealed in self.feed.sealed.try_iter() {
                        catalogue.seal(&sealed);
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        tracing::debug!("archive retention stopped");
    }

    /// Deletes what the limits ask, then reports the archive to the stats.
    fn check(&mut self, catalogue: &mut Catalogue) {
        let now = self.ages.now(clock::wall_now_ns());
        let mut usage = Usage {
            bytes: catalogue.bytes().unwrap_or_else(|err| {
                self.failed(&err);
                0
            }),
            free: catalogue::free_space(&catalogue.root).ok(),
        };
        if self.limits.is_bounded() {
            usage = self.delete(catalogue, usage, now);
        }
        let states = catalogue.shards.iter().map(|files| &files.state);
        let spans = self.feed.open.iter().filter_map(|(_, span)| span.get());
        let received = spans
            .chain(catalogue.received())
            .reduce(|(a, b), (c, d)| (a.min(c), b.max(d)));
        let mut report = ArchiveFiles {
            bytes: usage.bytes,
            segments: catalogue.segments(),
            free_bytes: usage.free.map_or(0, |(free, _)| free),
            filesystem_bytes: usage.free.map_or(0, |(_, size)| size),
            received,
            short: self.short.is_some() || self.failing,
            ..ArchiveFiles::default()
        };
        for state in states {
            report.deleted_segments += state.deleted_segments;
            report.deleted_bytes += state.deleted_bytes;
            report.last_deletion_ns = report.last_deletion_ns.max(state.last_deletion_ns);
        }
        self.stats.archive_files(&report);
    }

    /// Deletes what the plan for `usage` says; returns the usage after it.
    fn delete(&mut self, catalogue: &mut Catalogue, usage: Usage, now: u64) -> Usage {
        let marks = self.marks.clone();
        let protects = |shard, segment| marks.as_ref().is_some_and(|m| m.protects(shard, segment));
        let mut queues = catalogue.candidates(protects);
        self.ages
            .apply(&mut queues, &catalogue.shard_numbers(), now);
        let plan = plan::plan(&queues, usage, &self.limits, now);
        self.note_shortfall(plan.short);
        if plan.delete.is_empty() {
            self.failing = false;
            return usage;
        }
        let started = Instant::now();
        let deleted = catalogue.delete(&plan, now);
        if self.failing != deleted.is_err() {
            match deleted.is_err() {
                true => tracing::error!(
                    "archive retention cannot delete what its limits ask; /healthz says degraded"
                ),
                false => tracing::info!("archive retention deletes again"),
            }
            self.failing = deleted.is_err();
        }
        match deleted {
            Ok((segments, bytes)) => {
                tracing::info!(
                    segments,
                    bytes,
                    archive_bytes = usage.bytes.saturating_sub(bytes),
                    took_us = started.elapsed().as_micros() as u64,
                    "archive retention: deleted the oldest sealed segments"
                );
                Usage {
                    bytes: usage.bytes.saturating_sub(bytes),
                    free: catalogue::free_space(&catalogue.root).ok(),
                }
            }
            Err(err) => {
                self.failed(&err);
                usage
            }
        }
    }

    /// Logs a limit that cannot be kept when it starts, and when it is kept again.
    fn note_shortfall(&mut self, short: Option<Shortfall>) {
        match (&self.short, &short) {
            (None, Some(now)) => tracing::error!(
                "archive retention cannot keep its limits: {now}; /healthz says degraded"
            ),
            (Some(_), None) => tracing::info!("archive retention keeps its limits again"),
            _ => {}
        }
        self.short = short;
    }

    /// A check that could not read or delete: logged once a minute at most, tried again at the
    /// next check.
    fn failed(&mut self, err: &ArchiveError) {
        let now = Instant::now();
        if self
            .failed_at
            .is_none_or(|at| now.duration_since(at).as_secs() >= 60)
        {
            tracing::error!(error = %err, "archive retention: a check failed; it is tried again");
            self.failed_at = Some(now);
        }
    }
}
