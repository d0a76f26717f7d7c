//! `[archive]`: the consumer that must receive every frame, and when what it wrote is stored.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound, UNBOUNDED};
use super::de::{millis, optional_bytes, optional_duration};
use super::error::{Invalid, Problem};

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
    /// Which sealed segments are deleted, and when (`[archive.retention]`): none by default.
    pub retention: RetentionConfig,
    /// The longest silence inside one pass (`aggregator archive passes`, `GET /archive/passes`):
    /// a station's frames further apart than this belong to two passes.
    #[serde(rename = "pass_gap_ms", deserialize_with = "millis")]
    pub pass_gap: Duration,
}

/// The default `archive.pass_gap_ms`: ten minutes. A low-orbit pass lasts about ten minutes and
/// the next one over the same station comes some ninety minutes later; a fade inside a pass
/// lasts seconds to a few minutes.
pub const DEFAULT_PASS_GAP: Duration = Duration::from_secs(600);

/// The largest `archive.pass_gap_ms`: a day. A longer silence is no pass.
const MAX_PASS_GAP_MS: u64 = 86_400_000;

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
            retention: RetentionConfig::default(),
            pass_gap: DEFAULT_PASS_GAP,
        }
    }
}

impl ArchiveConfig {
    /// The section's own rules; `shards` is `runtime.shards`, for the least `retention.max_bytes`.
    pub(super) fn validate(&self, shards: usize) -> Result<(), Invalid> {
        self.retention.validate(self.segment_bytes, shards)?;
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
            Bound::millis("archive.pass_gap_ms", self.pass_gap)
                .within(1000..=MAX_PASS_GAP_MS)
                .least_because("a fade of a second would end a pass")
                .most_because("a pass is minutes long: a day of silence ends one"),
        ])
    }
}

/// `[archive.retention]`: a bounded archive. Whole sealed segments are deleted, oldest first, when
/// they are older than `max_age`, or while the archive holds more than `max_bytes`, or while its
/// file system has less free than `min_free_bytes` / `min_free_ratio` (`docs/archive-format.md`,
/// "Retention"). Any subset may be set; none keeps every segment.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// A sealed segment whose newest frame was received longer ago than this is deleted.
    #[serde(deserialize_with = "optional_duration")]
    pub max_age: Option<Duration>,
    /// The archive's bytes on disk at most: every file in the archive directory and its shard
    /// directories, counted by the blocks allocated to it (reserved space included).
    #[serde(deserialize_with = "optional_bytes")]
    pub max_bytes: Option<u64>,
    /// Bytes the archive's file system keeps free for unprivileged writers, at least.
    #[serde(deserialize_with = "optional_bytes")]
    pub min_free_bytes: Option<u64>,
    /// The share of the archive's file system kept free, at least (0 to 1, exclusive).
    pub min_free_ratio: Option<f64>,
    /// Readers whose unread segments `max_age` does not delete (only `"nats"`, the NATS sink);
    /// `max_bytes` and `min_free_*` still do, and the reader moves on past them.
    pub protect: Vec<Protected>,
    /// How often retention checks the limits besides at every segment roll: `max_age` when
    /// nothing arrives, and the free space another writer of the file system takes.
    #[serde(rename = "check_interval_ms", deserialize_with = "millis")]
    pub check_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_age: None,
            max_bytes: None,
            min_free_bytes: None,
            min_free_ratio: None,
            protect: Vec::new(),
            check_interval: Duration::from_secs(1),
        }
    }
}

/// A reader of the archive that `retention.protect` can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protected {
    /// The NATS sink (`[sinks.nats]`).
    Nats,
}

/// The longest `retention.max_age`: a hundred years is a typo for "keep everything".
const MOST_AGE: Duration = Duration::from_secs(100 * 365 * 86_400);

impl RetentionConfig {
    /// Whether any limit is set: without one, nothing is ever deleted.
    pub fn is_bounded(&self) -> bool {
        self.max_age.is_some()
            || self.max_bytes.is_some()
            || self.min_free_bytes.is_some()
            || self.min_free_ratio.is_some()
    }

    fn validate(&self, segment_bytes: u64, shards: usize) -> Result<(), Invalid> {
        if let Some(age) = self.max_age {
            if age < Duration::from_secs(1) {
                let rule = "must be at least 1 s";
                return Err(Invalid::new(
                    "archive.retention.max_age",
                    Problem::Rule(rule),
                ));
            }
            if age > MOST_AGE {
                let rule = "must be at most 100 years; leave it out to keep every segment";
                return Err(Invalid::new(
                    "archive.retention.max_age",
                    Problem::Rule(rule),
                ));
            }
        }
        if let Some(ratio) = self.min_free_ratio {
            if !(ratio > 0.0 && ratio < 1.0) {
                let rule =
                    "must be above 0 and below 1 (0.1 keeps a tenth of the file system free)";
                return Err(Invalid::new(
                    "archive.retention.min_free_ratio",
                    Problem::Rule(rule),
                ));
            }
        }
        // Each shard keeps its open segment and a staged next one, each reserving a segment.
        let least = segment_bytes.saturating_mul(2 * shards.max(1) as u64);
        bounds::check(&[
            Bound::bytes(
                "archive.retention.max_bytes",
                self.max_bytes.unwrap_or(least),
                least..=UNBOUNDED,
            )
            .least_because(
                "two segments per shard (archive.segment_bytes x 2 x runtime.shards): each shard's \
                 open segment and the next one it has ready are never deleted",
            ),
            Bound::bytes(
                "archive.retention.min_free_bytes",
                self.min_free_bytes.unwrap_or(1),
                1..=UNBOUNDED,
            ),
            Bound::millis("archive.retention.check_interval_ms", self.check_interval),
        ])
    }
}
