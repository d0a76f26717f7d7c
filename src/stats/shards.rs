//! The counters every batch moves, kept per shard: each shard's on cache lines of its own, summed
//! when read, so that no two shards' cores bounce one set of totals between them.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::counters::PipelineStats;

/// One shard's own counters: those every batch moves, which the totals sum. Aligned to two cache
/// lines (the unit the prefetcher pairs), so that no two shards' counters share one.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(super) struct ShardCounters {
    pub(super) frames_accepted: AtomicU64,
    pub(super) duplicates_dropped: AtomicU64,
    pub(super) frames_routed: AtomicU64,
    pub(super) frames_processed: AtomicU64,
    pub(super) emergency_frames: AtomicU64,
    pub(super) bytes_processed: AtomicU64,
    pub(super) frames_archived: AtomicU64,
    pub(super) bytes_archived: AtomicU64,
    pub(super) archive_unsynced_bytes: AtomicU64,
    pub(super) archive_failing: AtomicU64,
    pub(super) lag_events: AtomicU64,
    pub(super) lagged_batches: AtomicU64,
}

impl ShardCounters {
    /// Adds this shard's counters to the totals of every shard.
    pub(super) fn add_to(&self, totals: &mut PipelineStats) {
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

    /// A reading of the counters of shard number `shard` (atomic loads).
    pub(super) fn snapshot(&self, shard: usize) -> ShardStats {
        let routed = self.frames_routed.load(Relaxed);
        let archived = self.frames_archived.load(Relaxed);
        ShardStats {
            shard,
            frames_routed: routed,
            frames_processed: self.frames_processed.load(Relaxed),
            frames_archived: archived,
            bytes_archived: self.bytes_archived.load(Relaxed),
            in_flight: routed.saturating_sub(archived),
            archive_unsynced_bytes: self.archive_unsynced_bytes.load(Relaxed),
            archive_failing: self.archive_failing.load(Relaxed),
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
