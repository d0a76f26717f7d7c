//! Pipeline statistics: atomic counters written by the stages, read without a lock.
//!
//! Producers never block on telemetry about themselves: each stage adds to its counters once per
//! batch with a relaxed `fetch_add`. The counters every batch moves are kept per shard, each shard's
//! on cache lines of its own, and summed when read: one set of totals written by every shard would
//! bounce its cache lines between the cores on every batch. [`Stats::snapshot`] is the read path
//! and is nothing but atomic loads, so a reader hammering it cannot slow the pipeline. A publisher task sends a snapshot
//! through a `watch` channel every stats interval, for subscribers that want to wait for a change
//! instead of polling (the dashboard).
//!
//! Layout: `counters.rs` declares the daemon-wide counters (each with its kind and help text, for
//! `/metrics`); `shards.rs` the ones every batch moves, kept per shard; `links.rs` and `tm.rs` those
//! of each ground-segment link and each TM output. This file holds the handle, [`Stats`], with
//! every stage's counting method, and the publisher.

mod backfill;
mod counters;
mod links;
mod pass;
mod shards;
mod tm;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::domain::clock::ClockEvent;

use counters::Counters;
use shards::ShardCounters;
use tm::TmCounters;

pub(crate) use backfill::BackfillProgress;
pub use backfill::{BackfillSnapshot, FileReport, FileState};
pub use counters::PipelineStats;
pub(crate) use counters::{processing_rates, MetricKind, ProcessingRates};
pub(crate) use links::LinkCounters;
pub use links::LinkSnapshot;
pub use links::LinkState;
pub use links::StationState;
pub use links::{LinkNames, StationBounds};
pub use pass::PassSnapshot;
pub use shards::ShardStats;
pub(crate) use tm::TmOutput;
pub use tm::TmStats;

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
        let tm = names.into_iter().map(TmCounters::named).collect();
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
        self.tm.iter().map(|c| c.snapshot()).collect()
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
        let shards = self.shards.iter().enumerate();
        shards.map(|(shard, c)| c.snapshot(shard)).collect()
    }

    /// Reads every counter. Only atomic loads: no lock, no allocation.
    pub fn snapshot(&self) -> PipelineStats {
        let mut totals = self.counters.load();
        for shard in self.shards.iter() {
            shard.add_to(&mut totals);
        }
        totals
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
    /// The NATS sink started; `replicated`: with `ack = "replicated"`.
    pub(crate) fn nats_sink_started(&self, replicated: bool) {
        self.counters.nats_sink.store(1, Relaxed);
        (self.counters.nats_ack_replicated).store(u64::from(replicated), Relaxed);
    }

    /// Frames another daemon published past (`sinks::fleet`, `sinks::series`).
    pub(crate) fn nats_held_elsewhere(&self, frames: u64) {
        self.counters.nats_held_elsewhere.fetch_add(frames, Relaxed);
    }

    /// Frames whose acknowledgement waits for JetStream's (`ack = "replicated"`).
    pub(crate) fn nats_unreplicated(&self, frames: u64) {
        self.counters
            .nats_unreplicated_frames
            .store(frames, Relaxed);
    }

    /// The most bytes of records the NATS sink's last message from the files could carry.
    pub(crate) fn nats_message_bytes(&self, bytes: usize) {
        (self.counters.nats_message_bytes).store(bytes as u64, Relaxed);
    }

    /// The most payload bytes the NATS sink's messages in flight may hold now.
    pub(crate) fn nats_room_bytes(&self, bytes: usize) {
        (self.counters.nats_room_bytes).store(bytes as u64, Relaxed);
    }

    /// Whether the NATS sink publishes through the server that leads its stream.
    pub(crate) fn nats_at_leader(&self, at_leader: bool) {
        (self.counters.nats_at_leader).store(u64::from(at_leader), Relaxed);
    }

    /// JetStream acknowledged frames; `duplicate` when it already held them.
    pub(crate) fn nats_acked(&self, frames: u64, duplicate: bool) {
        let counter = match duplicate {
            true => &self.counters.nats_republished,
            false => &self.counters.nats_published,
        };
        counter.fetch_add(frames, Relaxed);
    }

    /// JetStream acknowledged emergencies published from the archive's journal (`sinks::urgent`).
    pub(crate) fn nats_acked_from_journal(&self, frames: u64) {
        self.nats_acked(frames, false);
        (self.counters.nats_published_from_journal).fetch_add(frames, Relaxed);
    }

    /// The NATS sink handed its client a message of `records` bytes of frame records in a body
    /// of `body` bytes (`sinks::pack`).
    pub(crate) fn nats_bytes(&self, records: usize, body: usize) {
        (self.counters.nats_record_bytes).fetch_add(records as u64, Relaxed);
        (self.counters.nats_body_bytes).fetch_add(body as u64, Relaxed);
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
        c.archive_filesystem_bytes
            .store(files.filesystem_bytes, Relaxed);
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

    /// A reader of the archive met `records` damaged records.
    pub(crate) fn archive_damage_found(&self, records: u64) {
        (self.counters.archive_damage_found).fetch_add(records, Relaxed);
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
    /// The size of its file system.
    pub filesystem_bytes: u64,
    /// The oldest and newest received time of a frame held (nanoseconds since the epoch).
    pub received: Option<(u64, u64)>,
    /// Retention's deletions, over the archive's life.
    pub deleted_segments: u64,
    pub deleted_bytes: u64,
    pub last_deletion_ns: u64,
    /// A size limit cannot be kept.
    pub short: bool,
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

impl Stats {
    /// Counters for a new link (`names`: its name, station and group), listed from now on;
    /// with `frames`, its frame quality too; `bounds` say when its station is quiet and when its
    /// pass ends.
    pub(crate) fn add_link(
        &self,
        names: LinkNames<'_>,
        transport: &'static str,
        frames: bool,
        bounds: StationBounds,
    ) -> Arc<LinkCounters> {
        let link = Arc::new(LinkCounters::new(names, transport, frames, bounds));
        let mut links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.push(Arc::clone(&link));
        link
    }

    /// Starts link `name`'s `last_seen` at `at_ns`, what the archive holds of it from before the
    /// start, unless it was heard since.
    /// What became of `file` of link `link`'s spool, if the daemon imported it since its start.
    pub(crate) fn spool_file(&self, link: &str, file: &str) -> Option<FileReport> {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        let link = links.iter().find(|counters| counters.name == link)?;
        link.backfill().file(file)
    }

    pub(crate) fn link_heard_before(&self, name: &str, at_ns: u64) {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        for link in links.iter().filter(|link| link.name == name) {
            link.heard_before(at_ns);
        }
    }

    /// Every link's counters.
    pub fn links(&self) -> Vec<LinkSnapshot> {
        let links = self.links.lock().unwrap_or_else(PoisonError::into_inner);
        links.iter().map(|link| link.snapshot()).collect()
    }
}
