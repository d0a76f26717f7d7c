//! Pipeline statistics: atomic counters written by the stages, read without a lock.
//!
//! Producers never block on telemetry about themselves: each stage adds to its counters once per
//! batch with a relaxed `fetch_add`. [`Stats::snapshot`] is the read path and is nothing but atomic
//! loads, so a reader hammering it cannot slow the pipeline. A publisher task sends a snapshot
//! through a `watch` channel every stats interval, for subscribers that want to wait for a change
//! instead of polling (the dashboard).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

macro_rules! pipeline_stats {
    ($( $(#[$doc:meta])* $field:ident ),* $(,)?) => {
        /// One consistent-enough reading of every counter (each field is one atomic load).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct PipelineStats {
            $( $(#[$doc])* pub $field: u64, )*
        }

        #[derive(Debug, Default)]
        struct Counters {
            $( $field: AtomicU64, )*
        }

        impl Stats {
            /// Reads every counter. Only atomic loads: no lock, no allocation.
            pub fn snapshot(&self) -> PipelineStats {
                PipelineStats { $( $field: self.counters.$field.load(Relaxed), )* }
            }
        }
    };
}

pipeline_stats! {
    /// Frames decoded from a socket and past the duplicate check: the daemon answers for them.
    frames_accepted,
    /// Frames admitted into the priority fan-in.
    frames_routed,
    /// Frames the processor handled.
    frames_processed,
    /// Emergency frames among them.
    emergency_frames,
    /// Payload bytes processed.
    bytes_processed,
    /// Frames the archive stored.
    frames_archived,
    /// Frames dropped because their sequence was at or below one already accepted for the source.
    duplicates_dropped,
    /// Sources registered right now.
    active_sources,
    /// Connections that completed a hello and registered.
    connections_accepted,
    /// Connections refused (limit, duplicate id, wrong kind or version, no hello).
    connections_refused,
    /// Connections closed for malformed input or a timeout.
    protocol_errors,
    /// Times the dashboard fell behind the fan-out.
    lag_events,
    /// Batches the dashboard skipped because of it.
    lagged_batches,
    /// Archive writes that failed.
    archive_errors,
}

impl PipelineStats {
    /// Frames accepted and not yet archived.
    pub fn in_flight(&self) -> u64 {
        self.frames_accepted.saturating_sub(self.frames_archived)
    }
}

/// A cheap handle to the shared counters; clone it into every stage.
#[derive(Debug, Clone, Default)]
pub struct Stats {
    counters: Arc<Counters>,
}

impl Stats {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn accepted(&self, frames: u64) {
        self.counters.frames_accepted.fetch_add(frames, Relaxed);
    }

    pub(crate) fn routed(&self, frames: u64) {
        self.counters.frames_routed.fetch_add(frames, Relaxed);
    }

    pub(crate) fn processed(&self, frames: u64, emergency: bool, bytes: u64) {
        let c = &self.counters;
        c.frames_processed.fetch_add(frames, Relaxed);
        if emergency {
            c.emergency_frames.fetch_add(frames, Relaxed);
        }
        c.bytes_processed.fetch_add(bytes, Relaxed);
    }

    pub(crate) fn archived(&self, frames: u64) {
        self.counters.frames_archived.fetch_add(frames, Relaxed);
    }

    pub(crate) fn duplicates(&self, frames: u64) {
        self.counters.duplicates_dropped.fetch_add(frames, Relaxed);
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

    pub(crate) fn protocol_error(&self) {
        self.counters.protocol_errors.fetch_add(1, Relaxed);
    }

    pub(crate) fn lagged(&self, batches: u64) {
        self.counters.lag_events.fetch_add(1, Relaxed);
        self.counters.lagged_batches.fetch_add(batches, Relaxed);
    }

    pub(crate) fn archive_error(&self) {
        self.counters.archive_errors.fetch_add(1, Relaxed);
    }
}

/// Publishes a snapshot every `interval` until `stop` is cancelled, then once more so subscribers
/// see the final figures. Subscribers get the latest value only: a slow one skips, never blocks.
pub async fn publish(
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
