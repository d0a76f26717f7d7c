//! `[archive]`: the consumer that must receive every frame, and when what it wrote is stored.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound, UNBOUNDED};
use super::de::millis;
use super::error::Invalid;

/// The smallest `archive.segment_bytes` accepted.
const MIN_SEGMENT_BYTES: u64 = 4096;

/// The archive: the consumer that must receive every frame.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    pub kind: ArchiveKind,
    /// Directory of the segment files (created if missing); relative to the working directory.
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// When written frames count as stored and may be acknowledged.
    pub sync: SyncMode,
    /// With `sync = "interval"`: the longest a written frame waits for its `fsync`.
    #[serde(rename = "sync_interval_ms", deserialize_with = "millis")]
    pub sync_interval: Duration,
    /// Payload bytes written and not yet made durable, at most: past it the archive waits for its
    /// sync before writing more, so that the pipeline, and through it the senders, slow to what
    /// the disk makes durable rather than filling the page cache (`sync = "never"` has no bound).
    pub max_unsynced_bytes: u64,
}

/// Which archive the daemon keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// Append every frame to CRC-checked segment files (`docs/archive-format.md`).
    Segments,
    /// Keep only the count: no durability (tests, benchmarks of the pipeline alone).
    Count,
}

/// The `archive.sync` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// `fsync` after every group of batches the archive writes.
    Batch,
    /// `fsync` every `sync_interval_ms`.
    Interval,
    /// Never `fsync`: stored means handed to the operating system.
    Never,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            kind: ArchiveKind::Segments,
            dir: PathBuf::from("archive"),
            segment_bytes: 64 * 1024 * 1024,
            sync: SyncMode::Interval,
            sync_interval: Duration::from_millis(20),
            max_unsynced_bytes: 32 * 1024 * 1024,
        }
    }
}

impl ArchiveConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        bounds::check(&[
            Bound::millis("archive.sync_interval_ms", self.sync_interval),
            Bound::bytes(
                "archive.segment_bytes",
                self.segment_bytes,
                MIN_SEGMENT_BYTES..=UNBOUNDED,
            ),
            Bound::bytes(
                "archive.max_unsynced_bytes",
                self.max_unsynced_bytes,
                1..=UNBOUNDED,
            )
            .least_because("0 would let nothing be written"),
        ])
    }
}
