//! Pipeline statistics: atomic counters written by the stages, read without a lock.
//!
//! Producers never block on telemetry about themselves: each stage adds to its counters once per
//! batch with a relaxed `fetch_add`. The counters every batch moves are kept per shard, each shard's
//! on cache lines of its own, and summed when read: one set of totals written by every shard would
//! bounce its cache lines between the cores on every batch. [`Stats::snapshot`] is the read path
//! and is nothing but atomic loads, so a reader hammering it cannot slow the pipeline. A publisher task sends a snapshot
//! through a `watch` channel every stats interval, for subscribers that want to wait for a change
//! instead of polling (the dashboard).

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::clock::ClockEvent;
use crate::domain::frame_quality::FrameQuality;

/// How an exporter should present a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MetricKind {
    /// Only ever increases.
    Counter,
    /// Goes up and down.
    Gauge,
}

/// One field of a snapshot, described for exporters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StatField {
    pub name: &'static str,
    pub kind: MetricKind,
    pub help: &'static str,
    pub value: u64,
}

macro_rules! pipeline_stats {
    ($( $kind:ident $field:ident: $help:literal ),* $(,)?) => {
        /// One reading of every counter (each field is an atomic load, and one per shard for
        /// the counters kept per shard).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
        pub struct PipelineStats {
            $( #[doc = $help] pub $field: u64, )*
        }

        #[derive(Debug, Default)]
        struct Counters {
            $( $field: AtomicU64, )*
        }

        impl Stats {
            /// Reads every counter. Only atomic loads: no lock, no allocation.
            pub fn snapshot(&self) -> PipelineStats {
                let mut totals = PipelineStats { $( $field: self.counters.$field.load(Relaxed), )* };
                for shard in self.shards.iter() {
                    shard.add_to(&mut totals);
                }
                totals
            }
        }

        impl PipelineStats {
            /// Every field with its kind and description, in declaration order.
            pub(crate) fn fields(&self) -> Vec<StatField> {
                vec![$( StatField {
                    name: stringify!($field),
                    kind: MetricKind::$kind,
                    help: $help,
                    value: self.$field,
                }, )*]
            }
        }
    };
}

pipeline_stats! {
    Counter frames_accepted: "Frames read whole off a socket and not duplicates: the daemon answers for them.",
    Counter frames_routed: "Frames admitted into the priority fan-in.",
    Counter frames_processed: "Frames the processor handled.",
    Counter emergency_frames: "Emergency frames the processor handled.",
    Counter bytes_processed: "Payload bytes the processor handled.",
    Counter frames_archived: "Frames the archive stored.",
    Counter bytes_archived: "Payload bytes the archive stored.",
    Counter duplicates_dropped: "Frames dropped because their sequence was at or below one already accepted for the source.",
    Gauge active_sources: "Sources registered right now.",
    Counter connections_accepted: "Connections that completed a hello and registered.",
    Counter connections_refused: "Connections refused: limit, duplicate id, wrong kind or version, unauthorized, shutting down.",
    Counter connections_refused_descriptors: "Connections on any listener closed at once because the open-file limit was near: its last descriptors are kept for the archive.",
    Counter connections_unauthorized: "HELLOs refused as Unauthorized: the peer's certificate does not cover the source (also counted in connections_refused).",
    Counter tls_handshakes_failed: "Connections closed before a HELLO because their TLS handshake failed: plaintext, no or an untrusted or expired certificate.",
    Counter protocol_errors: "Connections closed for malformed input or a timeout.",
    Counter lag_events: "Times a lossy subscriber (the dashboard, a /feed client) fell behind in one shard's lane and began to miss batches.",
    Counter lagged_batches: "Batches dropped for lossy subscribers whose queue was full.",
    Gauge feed_subscribers: "/feed WebSocket subscribers connected right now.",
    Counter feed_frames_sent: "Frames sent to /feed subscribers.",
    Counter feed_frames_skipped: "Frames /feed subscribers missed because they fell behind (each told in a gap message).",
    Counter archive_errors: "Archive writes and syncs that failed, each attempt counted.",
    Gauge archive_failing: "Shards whose archive is failing: each from its first failed write until every frame that write held is stored (for good after a failed sync). 0 when all store.",
    Gauge archive_unsynced_bytes: "Payload bytes written to the archive and not yet durable: at most archive.max_unsynced_bytes and one group per shard.",
    Counter frames_abandoned: "Accepted frames a drain gave up on because the archive could not store them: never acknowledged, their sources still hold them.",
    Gauge archive_bytes: "Bytes the archive's files hold on disk (every file of its directory and shard directories, reserved blocks included).",
    Gauge archive_segments: "Segments in the archive, every shard's.",
    Gauge archive_free_bytes: "Bytes free for the daemon on the archive's file system.",
    Gauge archive_oldest_frame_timestamp_seconds: "Unix time the oldest frame the archive retains was received; 0 before the first.",
    Gauge archive_newest_frame_timestamp_seconds: "Unix time the newest frame the archive holds was received; 0 before the first.",
    Counter retention_deleted_segments: "Sealed segments retention deleted ([archive.retention]), over the archive's life.",
    Counter retention_deleted_bytes: "Bytes on disk of the segments retention deleted, over the archive's life.",
    Gauge retention_last_deletion_timestamp_seconds: "Unix time of retention's last deletion; 0 before the first.",
    Gauge retention_short: "1 while retention cannot keep archive.retention.max_bytes or min_free_*: every segment left is one it never deletes; else 0.",
    Gauge nats_sink: "1 when [sinks.nats] publishes this daemon's archive into NATS JetStream, else 0.",
    Gauge nats_connected: "1 while the NATS sink is connected to a server ([sinks.nats]), else 0.",
    Gauge nats_degraded: "1 while the NATS sink is disconnected or further behind than sinks.nats.max_lag_ms, else 0.",
    Gauge nats_cursor_segment: "The NATS sink's durable cursor: the segment of the last frame JetStream acknowledged in order.",
    Gauge nats_cursor_offset: "The NATS sink's durable cursor: that frame's record offset.",
    Gauge nats_cursor_index: "The NATS sink's durable cursor: that frame's index in its record.",
    Gauge nats_lag_frames: "Frames archived since the daemon started that JetStream has not yet acknowledged, less those the sink skipped because retention deleted them (a backlog from before the start shows in nats_lag_seconds).",
    Gauge nats_lag_seconds: "Whole seconds since the oldest frame JetStream has not yet acknowledged was received; 0 when the sink is caught up.",
    Counter nats_published: "Frames JetStream acknowledged as new messages.",
    Counter nats_republished: "Frames published again (after a failure or a restart) that JetStream acknowledged as duplicates and dropped.",
    Counter nats_errors: "Failures of the NATS sink: publishes, acknowledgements or stream set-up that failed and were retried.",
    Counter clock_steps: "Steps of the wall clock past clock.step_threshold_ms the daemon noticed: while running (received times did not move), and a start with the clock behind the archive's newest frame.",
    Gauge clock_in_doubt: "1 while the clock is in doubt (/healthz says degraded): the wall clock and the archive clock disagree by more than clock.step_threshold_ms, or the daemon started with its clock behind the archive's newest frame (until the clock passes it, at most clock.start_grace_ms); else 0.",
    Gauge clock_last_step_timestamp_seconds: "Unix time, by the archive clock, of the last step of the wall clock; 0 before the first.",
    Counter nats_skipped_frames: "Frames the NATS sink never published because retention deleted them first ([archive.retention] max_bytes or min_free_*, or max_age without protect = [\"nats\"]).",
}

impl PipelineStats {
    /// Frames accepted and not yet stored: those decoded from the connections' reads and waiting to
    /// be admitted (within `connection.read_budget`), those in the pipeline (at most its bound),
    /// those written and waiting for their sync (at most `archive.max_unsynced_bytes`), and during
    /// a disk outage those the archive holds to write again.
    pub fn in_flight(&self) -> u64 {
        self.frames_accepted.saturating_sub(self.frames_archived)
    }
}

/// Frames and payload bytes processed per second between two snapshots `seconds` apart; `None`
/// when no time passed.
pub(crate) fn processing_rates(
    earlier: &PipelineStats,
    later: &PipelineStats,
    seconds: f64,
) -> Option<(f64, f64)> {
    let per_sec = |new: u64, old: u64| new.saturating_sub(old) as f64 / seconds;
    (seconds > 0.0).then(|| {
        (
            per_sec(later.frames_processed, earlier.frames_processed),
            per_sec(later.bytes_processed, earlier.bytes_processed),
        )
    })
}

/// A cheap handle to the shared counters; clone it into every stage. A stage of one shard holds
/// [`Stats::shard`]'s handle, which counts into that shard's own counters.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    counters: Arc<Counters>,
    shards: Arc<[ShardCounters]>,
    /// The shard whose stage holds this handle.
    shard: Option<usize>,
    /// Each ground-segment link's counters, in the order of `[[links]]`.
    links: Arc<Mutex<Vec<Arc<LinkCounters>>>>,
    /// Each TM server's and forward's own counters, by name (`[[tm_servers]]`, `[[tm_forwards]]`).
    tm: Arc<[Arc<TmCounters>]>,
    /// The clock's signed figures, which the counters cannot hold (`/stats`' `clock`).
    clock: Arc<Mutex<ClockState>>,
}

/// What the daemon knows of its clock, as its watcher last saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClockState {
    /// The wall clock minus the archive clock, in nanoseconds.
    pub offset_ns: i64,
    /// The last step of the wall clock, or a start whose clock was behind the archive.
    pub last_step: Option<ClockEvent>,
    /// Why the clock is in doubt, while it is.
    pub doubt: Option<String>,
}

/// One shard's own counters: those every batch moves, which the totals sum. Aligned to two cache
/// lines (the unit the prefetcher pairs), so that no two shards' counters share one.
#[derive(Debug, Default)]
#[repr(align(128))]
struct ShardCounters {
    frames_accepted: AtomicU64,
    duplicates_dropped: AtomicU64,
    frames_routed: AtomicU64,
    frames_processed: AtomicU64,
    emergency_frames: AtomicU64,
    bytes_processed: AtomicU64,
    frames_archived: AtomicU64,
    bytes_archived: AtomicU64,
    archive_unsynced_bytes: AtomicU64,
    archive_failing: AtomicU64,
    lag_events: AtomicU64,
    lagged_batches: AtomicU64,
}

impl ShardCounters {
    /// Adds this shard's counters to the totals of every shard.
    fn add_to(&self, totals: &mut PipelineStats) {
        let pairs = [
            (&mut totals.frames_accepted, &self.frames_accepted),
            (&mut totals.duplicates_dropped, &self.duplicates_dropped),
            (&mut totals.frames_routed, &self.frames_routed),
            (&mut totals.frames_processed, &self.frames_processed),
            (&mut totals.emergency_frames, &self.emergency_frames),
            (&mut totals.bytes_processed, &self.bytes_processed),
            (&mut totals.frames_archived, &self.frames_archived),
            (&mut totals.bytes_archived, &self.bytes_archived),
            (
                &mut totals.archive_unsynced_bytes,
                &self.archive_unsynced_bytes,
            ),
            (&mut totals.archive_failing, &self.archive_failing),
            (&mut totals.lag_events, &self.lag_events),
            (&mut totals.lagged_batches, &self.lagged_batches),
        ];
        for (total, counter) in pairs {
            *total = total.wrapping_add(counter.load(Relaxed));
        }
    }
}

/// One reading of a shard's counters, for an operator looking for an unbalanced shard.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ShardStats {
    pub shard: usize,
    /// Frames admitted into the shard's fan-in.
    pub frames_routed: u64,
    pub frames_processed: u64,
    pub frames_archived: u64,
    pub bytes_archived: u64,
    /// Admitted and not yet stored: in the shard's pipeline, or written and waiting for a sync.
    pub in_flight: u64,
    pub archive_unsynced_bytes: u64,
    /// 1 while the shard's archive is failing.
    pub archive_failing: u64,
}

impl Stats {
    /// Counters for a daemon of one shard.
    pub fn new() -> Self {
        Self::sharded(1)
    }

    /// Counters for a daemon of `shards` shards.
    pub(crate) fn sharded(shards: usize) -> Self {
        Stats {
            counters: Arc::default(),
            shards: (0..shards).map(|_| ShardCounters::default()).collect(),
            shard: None,
            links: Arc::default(),
            tm: Arc::default(),
            clock: Arc::default(),
        }
    }

    /// The same counters, with a set of TM counters for each name in `names`: the outputs are
    /// known from the config before anything runs, so the set is fixed and read without a lock.
    pub(crate) fn with_tm_outputs(self, names: impl IntoIterator<Item = String>) -> Self {
        let tm = names
            .into_iter()
            .map(|name| {
                Arc::new(TmCounters {
                    name,
                    ..TmCounters::default()
                })
            })
            .collect();
        Stats { tm, ..self }
    }

    /// The counters of the TM output `name`; counters of its own, shown nowhere, for a name the
    /// set was not built with (a daemon started without its config's names).
    pub(crate) fn tm_output(&self, name: &str) -> TmOutput {
        let known = self.tm.iter().find(|c| c.name == name);
        TmOutput(known.map_or_else(Arc::default, Arc::clone))
    }

    /// Every TM output's counters (atomic loads).
    pub fn tm_snapshots(&self) -> Vec<TmStats> {
        self.tm
            .iter()
            .map(|c| TmStats {
                name: c.name.clone(),
                connections: c.connections.load(Relaxed),
                packets_sent: c.packets_sent.load(Relaxed),
                bytes_sent: c.bytes_sent.load(Relaxed),
                frames_not_packets: c.frames_not_packets.load(Relaxed),
                frames_skipped: c.frames_skipped.load(Relaxed),
                connections_refused: c.connections_refused.load(Relaxed),
                send_errors: c.send_errors.load(Relaxed),
            })
            .collect()
    }

    /// The handle of shard `shard`'s stages: what they count goes to the shard's counters, which
    /// the totals sum.
    pub(crate) fn shard(&self, shard: usize) -> Stats {
        Stats {
            shard: (shard < self.shards.len()).then_some(shard),
            ..self.clone()
        }
    }

    /// Every shard's counters (atomic loads).
    pub fn shard_snapshots(&self) -> Vec<ShardStats> {
        self.shards
            .iter()
            .enumerate()
            .map(|(shard, c)| {
                let routed = c.frames_routed.load(Relaxed);
                let archived = c.frames_archived.load(Relaxed);
                ShardStats {
                    shard,
                    frames_routed: routed,
                    frames_processed: c.frames_processed.load(Relaxed),
                    frames_archived: archived,
                    bytes_archived: c.bytes_archived.load(Relaxed),
                    in_flight: routed.saturating_sub(archived),
                    archive_unsynced_bytes: c.archive_unsynced_bytes.load(Relaxed),
                    archive_failing: c.archive_failing.load(Relaxed),
                }
            })
            .collect()
    }

    fn own(&self) -> Option<&ShardCounters> {
        self.shards.get(self.shard?)
    }

    /// Sources registered right now (one atomic load).
    pub fn active_sources(&self) -> u64 {
        self.counters.active_sources.load(Relaxed)
    }

    /// The counter a kept-per-shard field moves through this handle: the shard's own when this
    /// handle is a shard's (the totals sum them), else the total.
    fn counter(
        &self,
        total: impl Fn(&Counters) -> &AtomicU64,
        of_shard: impl Fn(&ShardCounters) -> &AtomicU64,
    ) -> &AtomicU64 {
        match self.own() {
            Some(own) => of_shard(own),
            None => total(&self.counters),
        }
    }

    /// Adds `n` to a counter that every batch moves ([`Stats::counter`]).
    fn count(
        &self,
        total: impl Fn(&Counters) -> &AtomicU64,
        of_shard: impl Fn(&ShardCounters) -> &AtomicU64,
        n: u64,
    ) {
        self.counter(total, of_shard).fetch_add(n, Relaxed);
    }

    pub(crate) fn accepted(&self, frames: u64) {
        self.count(|c| &c.frames_accepted, |c| &c.frames_accepted, frames);
    }

    pub(crate) fn routed(&self, frames: u64) {
        self.count(|c| &c.frames_routed, |c| &c.frames_routed, frames);
    }

    pub(crate) fn processed(&self, frames: u64, emergency: bool, bytes: u64) {
        self.count(|c| &c.frames_processed, |c| &c.frames_processed, frames);
        if emergency {
            self.count(|c| &c.emergency_frames, |c| &c.emergency_frames, frames);
        }
        self.count(|c| &c.bytes_processed, |c| &c.bytes_processed, bytes);
    }

    pub(crate) fn archived(&self, frames: u64) {
        self.count(|c| &c.frames_archived, |c| &c.frames_archived, frames);
    }

    pub(crate) fn archived_bytes(&self, bytes: u64) {
        self.count(|c| &c.bytes_archived, |c| &c.bytes_archived, bytes);
    }

    pub(crate) fn duplicates(&self, frames: u64) {
        self.count(|c| &c.duplicates_dropped, |c| &c.duplicates_dropped, frames);
    }

    pub(crate) fn source_registered(&self) {
        self.counters.active_sources.fetch_add(1, Relaxed);
        self.counters.connections_accepted.fetch_add(1, Relaxed);
    }

    pub(crate) fn source_deregistered(&self) {
        self.counters.active_sources.fetch_sub(1, Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.counters.connections_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_refused_for_descriptors(&self) {
        self.counters
            .connections_refused_descriptors
            .fetch_add(1, Relaxed);
    }

    pub(crate) fn unauthorized(&self) {
        self.counters.connections_unauthorized.fetch_add(1, Relaxed);
    }

    pub(crate) fn tls_handshake_failed(&self) {
        self.counters.tls_handshakes_failed.fetch_add(1, Relaxed);
    }

    pub(crate) fn protocol_error(&self) {
        self.counters.protocol_errors.fetch_add(1, Relaxed);
    }

    /// A batch did not fit a lossy subscriber's queue; `new_gap` when the one before it did.
    pub(crate) fn dropped_for_subscriber(&self, new_gap: bool) {
        if new_gap {
            self.count(|c| &c.lag_events, |c| &c.lag_events, 1);
        }
        self.count(|c| &c.lagged_batches, |c| &c.lagged_batches, 1);
    }

    pub(crate) fn feed_subscribed(&self) {
        self.counters.feed_subscribers.fetch_add(1, Relaxed);
    }

    pub(crate) fn feed_unsubscribed(&self) {
        self.counters.feed_subscribers.fetch_sub(1, Relaxed);
    }

    pub(crate) fn feed_sent(&self, frames: u64) {
        self.counters.feed_frames_sent.fetch_add(frames, Relaxed);
    }

    pub(crate) fn feed_skipped(&self, frames: u64) {
        self.counters.feed_frames_skipped.fetch_add(frames, Relaxed);
    }

    pub(crate) fn archive_error(&self) {
        self.counters.archive_errors.fetch_add(1, Relaxed);
        self.archive_failing(1);
    }

    /// Every frame a failed write held is stored.
    pub(crate) fn archive_recovered(&self) {
        self.archive_failing(0);
    }

    /// Sets the shard's failing flag; the total counts the shards that fail.
    fn archive_failing(&self, failing: u64) {
        self.gauge(|c| &c.archive_failing, |c| &c.archive_failing, failing);
    }

    pub(crate) fn archive_unsynced_bytes(&self, bytes: u64) {
        self.gauge(
            |c| &c.archive_unsynced_bytes,
            |c| &c.archive_unsynced_bytes,
            bytes,
        );
    }

    /// Sets a gauge of the shard to `value` (the total is the sum over shards); without a shard,
    /// sets the total ([`Stats::counter`]).
    fn gauge(
        &self,
        total: impl Fn(&Counters) -> &AtomicU64,
        of_shard: impl Fn(&ShardCounters) -> &AtomicU64,
        value: u64,
    ) {
        self.counter(total, of_shard).store(value, Relaxed);
    }

    pub(crate) fn abandoned(&self, frames: u64) {
        self.counters.frames_abandoned.fetch_add(frames, Relaxed);
    }

    /// The NATS sink runs.
    pub(crate) fn nats_sink_started(&self) {
        self.counters.nats_sink.store(1, Relaxed);
    }

    /// JetStream acknowledged a frame; `duplicate` when it already held it.
    pub(crate) fn nats_acked(&self, duplicate: bool) {
        let counter = match duplicate {
            true => &self.counters.nats_republished,
            false => &self.counters.nats_published,
        };
        counter.fetch_add(1, Relaxed);
    }

    pub(crate) fn nats_error(&self) {
        self.counters.nats_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn nats_skipped(&self, frames: u64) {
        self.counters.nats_skipped_frames.fetch_add(frames, Relaxed);
    }

    /// Everything up to `position` is acknowledged.
    pub(crate) fn nats_cursor(&self, position: crate::domain::position::Position) {
        let c = &self.counters;
        c.nats_cursor_segment.store(position.segment, Relaxed);
        c.nats_cursor_offset.store(position.offset, Relaxed);
        c.nats_cursor_index
            .store(u64::from(position.index), Relaxed);
    }

    /// The archive's files and retention, as retention's last check found them.
    pub(crate) fn archive_files(&self, files: &ArchiveFiles) {
        let c = &self.counters;
        let seconds = |ns: Option<u64>| ns.map_or(0, |ns| ns / 1_000_000_000);
        c.archive_bytes.store(files.bytes, Relaxed);
        c.archive_segments.store(files.segments, Relaxed);
        c.archive_free_bytes.store(files.free_bytes, Relaxed);
        let (oldest, newest) = files.received.unzip();
        c.archive_oldest_frame_timestamp_seconds
            .store(seconds(oldest), Relaxed);
        c.archive_newest_frame_timestamp_seconds
            .store(seconds(newest), Relaxed);
        c.retention_deleted_segments
            .store(files.deleted_segments, Relaxed);
        c.retention_deleted_bytes
            .store(files.deleted_bytes, Relaxed);
        let last = (files.last_deletion_ns > 0).then_some(files.last_deletion_ns);
        c.retention_last_deletion_timestamp_seconds
            .store(seconds(last), Relaxed);
        c.retention_short.store(u64::from(files.short), Relaxed);
    }

    /// A step of the wall clock: counted, and the last one kept.
    pub(crate) fn clock_step(&self, step: &ClockEvent) {
        self.counters.clock_steps.fetch_add(1, Relaxed);
        self.counters
            .clock_last_step_timestamp_seconds
            .store(step.archive_ns / 1_000_000_000, Relaxed);
        self.clock_state().last_step = Some(*step);
    }

    /// The offset of the wall clock from the archive clock, and why the clock is in doubt, if it
    /// is (`/healthz` says degraded while it is).
    pub(crate) fn clock_reading(&self, offset_ns: i64, doubt: Option<String>) {
        let in_doubt = u64::from(doubt.is_some());
        self.counters.clock_in_doubt.store(in_doubt, Relaxed);
        let mut state = self.clock_state();
        state.offset_ns = offset_ns;
        state.doubt = doubt;
    }

    /// What the daemon knows of its clock now.
    pub fn clock(&self) -> ClockState {
        self.clock_state().clone()
    }

    fn clock_state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.clock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The NATS sink's connection and lag, as its watcher last saw them.
    pub(crate) fn nats_state(
        &self,
        connected: bool,
        degraded: bool,
        lag_frames: u64,
        lag: Duration,
    ) {
        let c = &self.counters;
        c.nats_connected.store(u64::from(connected), Relaxed);
        c.nats_degraded.store(u64::from(degraded), Relaxed);
        c.nats_lag_frames.store(lag_frames, Relaxed);
        c.nats_lag_seconds.store(lag.as_secs(), Relaxed);
    }
}

/// What retention found of the archive's files at its last check ([`Stats::archive_files`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ArchiveFiles {
    pub bytes: u64,
    pub segments: u64,
    pub free_bytes: u64,
    /// The oldest and newest received time of a frame held (nanoseconds since the epoch).
    pub received: Option<(u64, u64)>,
    /// Retention's deletions, over the archive's life.
    pub deleted_segments: u64,
    pub deleted_bytes: u64,
    pub last_deletion_ns: u64,
    /// A size limit cannot be kept.
    pub short: bool,
}

/// One TM output's counters; its tasks count into them through a [`TmOutput`].
#[derive(Debug, Default)]
struct TmCounters {
    name: String,
    connections: AtomicU64,
    packets_sent: AtomicU64,
    bytes_sent: AtomicU64,
    frames_not_packets: AtomicU64,
    frames_skipped: AtomicU64,
    connections_refused: AtomicU64,
    send_errors: AtomicU64,
}

/// One reading of a TM output's counters (`[[tm_servers]]`, `[[tm_forwards]]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TmStats {
    pub name: String,
    /// Connections open now (a server's).
    pub connections: u64,
    /// Space packets written to connections or sent as datagrams.
    pub packets_sent: u64,
    /// Bytes of them, the framing included.
    pub bytes_sent: u64,
    /// Frames of the served kinds, sources and APIDs skipped for not being one whole space packet
    /// (each connection counts its own).
    pub frames_not_packets: u64,
    /// Frames of its sources it skipped because retention deleted them before it read them
    /// (with `from_oldest_on_gap`; each connection counts its own).
    pub frames_skipped: u64,
    /// Connections closed at once: the server was at its `max_connections`.
    pub connections_refused: u64,
    /// Datagrams that could not be sent (a forward's; a refusal from an ICMP among them).
    pub send_errors: u64,
}

/// A TM output's handle to its counters.
#[derive(Debug, Clone)]
pub(crate) struct TmOutput(Arc<TmCounters>);

impl TmOutput {
    pub(crate) fn connection_opened(&self) {
        self.0.connections.fetch_add(1, Relaxed);
    }

    pub(crate) fn connection_closed(&self) {
        self.0.connections.fetch_sub(1, Relaxed);
    }

    pub(crate) fn sent(&self, packets: u64, bytes: u64) {
        self.0.packets_sent.fetch_add(packets, Relaxed);
        self.0.bytes_sent.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn not_packets(&self, frames: u64) {
        self.0.frames_not_packets.fetch_add(frames, Relaxed);
    }

    pub(crate) fn skipped(&self, frames: u64) {
        self.0.frames_skipped.fetch_add(frames, Relaxed);
    }

    pub(crate) fn refused(&self) {
        self.0.connections_refused.fetch_add(1, Relaxed);
    }

    pub(crate) fn send_error(&self) {
        self.0.send_errors.fetch_add(1, Relaxed);
    }
}

/// Publishes a snapshot every `interval` until `stop` is cancelled, then once more so subscribers
/// see the final figures. Subscribers get the latest value only: a slow one skips, never blocks.
pub(crate) async fn publish(
    stats: Stats,
    tx: watch::Sender<PipelineStats>,
    interval: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = stop.cancelled() => break,
        }
        let now = stats.snapshot();
        tx.send_if_modified(|old| std::mem::replace(old, now) != now);
    }
    tx.send_replace(stats.snapshot());
}

/// Where a ground-segment link stands with its station.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkState {
    /// Waiting for a station to connect (tcp-listen) or to send (udp).
    Listening,
    /// Dialling the station (tcp-connect).
    Connecting,
    /// A station is connected (tcp), or datagrams arrive (udp).
    Connected,
    /// Waiting before dialling again after a failure (tcp-connect).
    Backoff,
    /// Stopped by the drain.
    Stopped,
}

/// One link's counters: bumped by its connection once per read, read by the monitor.
#[derive(Debug)]
pub struct LinkCounters {
    pub name: String,
    pub transport: &'static str,
    state: AtomicU8,
    connections: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    copies: AtomicU64,
    gaps: AtomicU64,
    unmatched: AtomicU64,
    bad_input: AtomicU64,
    skipped_bytes: AtomicU64,
    trailing_bytes: AtomicU64,
    ax25_frames: AtomicU64,
    other_port_frames: AtomicU64,
    /// With a frame framing: added to once per read, under a lock so that a snapshot reads one
    /// read's counts together (a frame counted good and its packets extracted).
    frames: Option<Mutex<FrameQuality>>,
    last_error: Mutex<Option<String>>,
}

/// One reading of a link's counters (`/stats`' `links`, `/metrics`' `aggregator_link_*`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LinkSnapshot {
    pub name: String,
    pub transport: &'static str,
    pub state: LinkState,
    /// Connections made (accepted or dialled) since the start.
    pub connections: u64,
    /// Packets stored: new ones, not copies.
    pub packets: u64,
    pub bytes: u64,
    /// Packets another link of the group (or this one) had delivered already: dropped.
    pub copies: u64,
    /// Packets missing from the link's own sequence counts, per APID.
    pub gaps: u64,
    /// Packets no rule maps to a source: dropped (`unmatched = "refuse"`) or stored as
    /// `default_source` (`unmatched = "default"`); and packets dropped because their source
    /// could not be registered (taken by another connection).
    pub unmatched: u64,
    /// Packets or connections refused as malformed: a bad version or length, a broken escape.
    pub bad_input: u64,
    /// Bytes passed over looking for a sync marker.
    pub skipped_bytes: u64,
    /// Bytes after the packet in a KISS data frame (a decoder's newline, padding): not stored.
    pub trailing_bytes: u64,
    /// AX.25 UI frames read (`kiss_payload = "ax25"`), whatever became of their packets.
    pub ax25_frames: u64,
    /// KISS data frames of a port other than `kiss_port`: passed over.
    pub other_port_frames: u64,
    /// With `framing = "tm-frames"` or `"aos-frames"`: the frames' quality, flattened into
    /// the link's object on `/stats`.
    #[serde(flatten)]
    pub frames: Option<FrameQuality>,
    /// Why the last connection ended or the last dial failed.
    pub last_error: Option<String>,
}

impl LinkState {
    const ALL: [LinkState; 5] = [
        LinkState::Listening,
        LinkState::Connecting,
        LinkState::Connected,
        LinkState::Backoff,
        LinkState::Stopped,
    ];
}

impl LinkCounters {
    pub(crate) fn set_state(&self, state: LinkState) {
        let index = LinkState::ALL.iter().position(|&s| s == state).unwrap_or(0);
        self.state.store(index as u8, Relaxed);
    }

    pub(crate) fn connected(&self) {
        self.connections.fetch_add(1, Relaxed);
        self.set_state(LinkState::Connected);
    }

    pub(crate) fn stored(&self, packets: u64, bytes: u64) {
        self.packets.fetch_add(packets, Relaxed);
        self.bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn copies(&self, packets: u64) {
        self.copies.fetch_add(packets, Relaxed);
    }

    pub(crate) fn gaps(&self, packets: u64) {
        self.gaps.fetch_add(packets, Relaxed);
    }

    pub(crate) fn unmatched(&self, packets: u64) {
        self.unmatched.fetch_add(packets, Relaxed);
    }

    pub(crate) fn bad_input(&self) {
        self.bad_input.fetch_add(1, Relaxed);
    }

    pub(crate) fn skipped(&self, bytes: u64) {
        self.skipped_bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn trailing(&self, bytes: u64) {
        self.trailing_bytes.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn ax25_frame(&self) {
        self.ax25_frames.fetch_add(1, Relaxed);
    }

    pub(crate) fn other_port(&self) {
        self.other_port_frames.fetch_add(1, Relaxed);
    }

    /// Adds a read's frame counts (a link without frames keeps none); bad packets inside
    /// frames are the link's bad input.
    pub(crate) fn frames(&self, read: &FrameQuality) {
        self.bad_input.fetch_add(read.bad_packets, Relaxed);
        if let Some(frames) = &self.frames {
            let mut frames = frames.lock().unwrap_or_else(PoisonError::into_inner);
            frames.add(read);
        }
    }

    pub(crate) fn failed(&self, why: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(why);
    }

    pub fn snapshot(&self) -> LinkSnapshot {
        let state = LinkState::ALL
            .get(self.state.load(Relaxed) as usize)
            .copied()
            .unwrap_or(LinkState::Listening);
        LinkSnapshot {
            name: self.name.clone(),
            transport: self.transport,
            state,
            connections: self.connections.load(Relaxed),
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            copies: self.copies.load(Relaxed),
            gaps: self.gaps.load(Relaxed),
            unmatched: self.unmatched.load(Relaxed),
            bad_input: self.bad_input.load(Relaxed),
            skipped_bytes: self.skipped_bytes.load(Relaxed),
            trailing_bytes: self.trailing_bytes.load(Relaxed),
            ax25_frames: self.ax25_frames.load(Relaxed),
            other_port_frames: self.other_port_frames.load(Relaxed),
            frames: self.frames.as_ref().map(|frames| {
                let frames = frames.lock().unwrap_or_else(PoisonError::into_inner);
                frames.clone()
            }),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone(),
        }
    }
}

impl Stats {
    /// Counters for a new link, listed from now on; with `frames`, its frame quality too.
    pub(crate) fn add_link(
        &self,
        name: &str,
        transport: &'static str,
        frames: bool,
    ) -> Arc<LinkCounters> {
        let link = Arc::new(LinkCounters {
            name: name.to_owned(),
            transport,
            state: AtomicU8::new(0),
            connections: AtomicU64::new(0),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            copies: AtomicU64::new(0),
            gaps: AtomicU64::new(0),
            unmatched: AtomicU64::new(0),
            bad_input: AtomicU64::new(0),
            skipped_bytes: AtomicU64::new(0),
            trailing_bytes: AtomicU64::new(0),
            ax25_frames: AtomicU64::new(0),
            other_port_frames: AtomicU64::new(0),
            frames: frames.then(Mutex::default),
            last_error: Mutex::new(None),
        });
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.push(Arc::clone(&link));
        link
    }

    /// Every link's counters.
    pub fn links(&self) -> Vec<LinkSnapshot> {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.iter().map(|link| link.snapshot()).collect()
    }
}
