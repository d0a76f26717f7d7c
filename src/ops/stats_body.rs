//! `GET /stats`' answer: the latest counters as JSON, with rates, each shard, link, TM output
//! and source, the archive's files and the clock. The web dashboard and operators' scripts read
//! these names.

use std::time::UNIX_EPOCH;

use serde::Serialize;

use crate::domain::clock::{self, ArchiveClock};
use crate::domain::display::unix_ns_to_rfc3339;
use crate::domain::source::SourceSnapshot;
use crate::ops::catalog::CatalogBody;
use crate::ops::health::Health;
use crate::stats::{LinkSnapshot, PipelineStats, ShardStats, Stats, TmStats};

#[derive(Serialize)]
pub(super) struct StatsBody {
    pub(super) health: Health,
    pub(super) uptime_seconds: f64,
    pub(super) stats: PipelineStats,
    pub(super) frames_in_flight: u64,
    pub(super) rates: RatesBody,
    pub(super) catalog: CatalogBody,
    /// Each shard's own counters: an unbalanced shard shows here.
    pub(super) shards: Vec<ShardStats>,
    /// Each ground-segment link (`[[links]]`): its state and counters.
    pub(super) links: Vec<LinkSnapshot>,
    /// Each TM server's and forward's counters, by name.
    pub(super) tm: Vec<TmStats>,
    /// The archive's files and retention.
    pub(super) archive: ArchiveBody,
    /// The wall clock against the archive clock, and its last step.
    pub(super) clock: ClockBody,
    pub(super) sources: Vec<SourceBody>,
}

/// `/stats`' `clock`: how far the wall clock is from the archive clock that stamps frames, the
/// steps seen, the last one, and why the clock is in doubt while it is (`crate::ops::clock`).
#[derive(Serialize)]
pub(super) struct ClockBody {
    /// The archive clock now, RFC 3339: every received time is on it.
    now: String,
    /// The wall clock minus the archive clock, in seconds.
    offset_seconds: f64,
    steps: u64,
    last_step: Option<StepBody>,
    in_doubt: bool,
    reason: Option<String>,
}

#[derive(Serialize)]
struct StepBody {
    /// `step` (while running), or `start` (a start with the clock behind the archive).
    event: &'static str,
    /// When, by the archive clock and by the wall clock, RFC 3339.
    at: String,
    wall: String,
    /// How far the wall clock moved (negative: back), in seconds.
    seconds: f64,
}

impl ClockBody {
    pub(super) fn of(stats: &Stats, s: &PipelineStats) -> ClockBody {
        let state = stats.clock();
        let step = state.last_step.map(|step| StepBody {
            event: step.kind.label(),
            at: unix_ns_to_rfc3339(step.archive_ns),
            wall: unix_ns_to_rfc3339(step.wall_ns),
            seconds: clock::seconds(step.jump_ns),
        });
        ClockBody {
            now: unix_ns_to_rfc3339(ArchiveClock::process().now()),
            offset_seconds: clock::seconds(state.offset_ns),
            steps: s.clock_steps,
            last_step: step,
            in_doubt: state.doubt.is_some(),
            reason: state.doubt,
        }
    }
}

/// `/stats`' `archive`: what the archive holds on disk, the time it spans, and what retention
/// deleted (every figure from retention's last check).
#[derive(Serialize)]
pub(super) struct ArchiveBody {
    bytes: u64,
    segments: u64,
    free_bytes: u64,
    /// RFC 3339, to the second; `null` before the first frame.
    oldest_received: Option<String>,
    newest_received: Option<String>,
    retention: RetentionBody,
}

#[derive(Serialize)]
struct RetentionBody {
    deleted_segments: u64,
    deleted_bytes: u64,
    last_deletion: Option<String>,
    /// A size limit retention cannot keep (`/healthz` says `degraded`).
    short: bool,
}

impl ArchiveBody {
    pub(super) fn of(s: &PipelineStats) -> ArchiveBody {
        let time =
            |seconds: u64| (seconds > 0).then(|| unix_ns_to_rfc3339(seconds * 1_000_000_000));
        ArchiveBody {
            bytes: s.archive_bytes,
            segments: s.archive_segments,
            free_bytes: s.archive_free_bytes,
            oldest_received: time(s.archive_oldest_frame_timestamp_seconds),
            newest_received: time(s.archive_newest_frame_timestamp_seconds),
            retention: RetentionBody {
                deleted_segments: s.retention_deleted_segments,
                deleted_bytes: s.retention_deleted_bytes,
                last_deletion: time(s.retention_last_deletion_timestamp_seconds),
                short: s.retention_short != 0,
            },
        }
    }
}

#[derive(Serialize)]
pub(super) struct RatesBody {
    pub(super) frames_per_sec: f64,
    pub(super) bytes_per_sec: f64,
}

#[derive(Serialize)]
pub(super) struct SourceBody {
    id: u32,
    kind: &'static str,
    peer: String,
    /// A ground-segment link's source: its link and APID.
    #[serde(skip_serializing_if = "Option::is_none")]
    station: Option<String>,
    connected_since_unix_ms: u64,
    frames: u64,
    emergency_frames: u64,
    bytes: u64,
    last_sequence: Option<u64>,
    last_acked: Option<u64>,
    lag: u64,
    /// The newest catalog version the source acknowledged holding.
    catalog_version: Option<u64>,
}

impl From<SourceSnapshot> for SourceBody {
    fn from(s: SourceSnapshot) -> Self {
        SourceBody {
            id: s.id,
            kind: s.kind.as_str(),
            peer: s.peer.to_string(),
            station: s.station.as_deref().map(str::to_owned),
            connected_since_unix_ms: s
                .connected_at
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            frames: s.frames,
            emergency_frames: s.emergency_frames,
            bytes: s.bytes,
            last_sequence: s.last_sequence,
            last_acked: s.last_acked,
            lag: s.lag,
            catalog_version: s.catalog_version,
        }
    }
}
