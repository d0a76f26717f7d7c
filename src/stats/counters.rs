//! The daemon-wide counters, declared once: each field's name, kind and help text make the
//! atomics the stages add to, the [`PipelineStats`] a reading fills, and the list exporters
//! describe (`/metrics` names each `aggregator_<field>`, with `_total` for a counter).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

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

        /// The totals: every counter, for those kept per shard the part no shard holds.
        #[derive(Debug, Default)]
        pub(super) struct Counters {
            $( pub(super) $field: AtomicU64, )*
        }

        impl Counters {
            /// Reads every counter. Only atomic loads: no lock, no allocation.
            pub(super) fn load(&self) -> PipelineStats {
                PipelineStats { $( $field: self.$field.load(Relaxed), )* }
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
    Gauge archive_filesystem_bytes: "Size of the archive's file system in bytes (0 before retention's first check, or when it could not be read).",
    Gauge archive_oldest_frame_timestamp_seconds: "Unix time the oldest frame the archive retains was received; 0 before the first.",
    Gauge archive_newest_frame_timestamp_seconds: "Unix time the newest frame the archive holds was received; 0 before the first.",
    Counter retention_deleted_segments: "Sealed segments retention deleted ([archive.retention]), over the archive's life.",
    Counter retention_deleted_bytes: "Bytes on disk of the segments retention deleted, over the archive's life.",
    Gauge retention_last_deletion_timestamp_seconds: "Unix time of retention's last deletion; 0 before the first.",
    Gauge retention_short: "1 while retention cannot keep archive.retention.max_bytes or min_free_*: every segment left is one it never deletes, or its deletions fail; else 0.",
    Gauge nats_sink: "1 when [sinks.nats] publishes this daemon's archive into NATS JetStream, else 0.",
    Gauge nats_connected: "1 while the NATS sink is connected to a server ([sinks.nats]), else 0.",
    Gauge nats_degraded: "1 while the NATS sink is disconnected or further behind than sinks.nats.max_lag_ms, else 0.",
    Gauge nats_cursor_segment: "The NATS sink's durable cursor: the segment of the last frame JetStream acknowledged in order.",
    Gauge nats_cursor_offset: "The NATS sink's durable cursor: that frame's record offset.",
    Gauge nats_cursor_index: "The NATS sink's durable cursor: that frame's index in its record.",
    Gauge nats_lag_frames: "Frames archived since the daemon started that JetStream has not yet acknowledged, less those the sink skipped because retention deleted them (a backlog from before the start shows in nats_lag_seconds).",
    Gauge nats_ack_replicated: "1 when sinks.nats.ack = \"replicated\": a frame is acknowledged to its sender once JetStream acknowledged it; else 0.",
    Gauge nats_unreplicated_frames: "With sinks.nats.ack = \"replicated\": frames written to the archive whose acknowledgement waits for JetStream's; routine frames wait past what the sink publishes in sinks.nats.emergency_wait_ms, at most sinks.nats.max_unreplicated_frames.",
    Gauge nats_lag_seconds: "Whole seconds since the oldest frame JetStream has not yet acknowledged was received; 0 when the sink is caught up.",
    Counter nats_published: "Frames JetStream acknowledged as new.",
    Counter nats_republished: "Frames to publish again (after a failure or a restart) that the stream held already: dropped by JetStream as duplicates (layout frame/1) or left out by the sink (records/1).",
    Counter nats_held_elsewhere: "Frames not published because another daemon published their source past them (a source that failed over; in layout frame/1, frames an earlier run archived).",
    Counter nats_errors: "Failures of the NATS sink: publishes, acknowledgements or stream set-up that failed and were retried.",
    Counter clock_steps: "Steps of the wall clock past clock.step_threshold_ms the daemon noticed: while running (received times did not move), and a start with the clock behind the archive's newest frame.",
    Gauge clock_in_doubt: "1 while the clock is in doubt (/healthz says degraded): the wall clock and the archive clock disagree by more than clock.step_threshold_ms, or the daemon started with its clock behind the archive's newest frame (until the clock passes it, at most clock.start_grace_ms); else 0.",
    Gauge clock_last_step_timestamp_seconds: "Unix time, by the archive clock, of the last step of the wall clock; 0 before the first.",
    Counter archive_damage_found: "Damaged records the daemon's readers of the archive met (followers, TM outputs, the NATS sink, /archive queries), each time one was met: `aggregator archive verify` names them.",
    Counter nats_skipped_frames: "Frames the NATS sink never published because retention deleted them first ([archive.retention] max_bytes or min_free_*, or max_age without protect = [\"nats\"]).",
    Counter nats_published_from_journal: "Of nats_published, emergency frames published from the archive's emergency journal ahead of its segment files (sinks.nats.ack = \"replicated\", layouts records/1 and records/2).",
    Counter nats_record_bytes: "Bytes of frame records in the messages the NATS sink handed to its client (layouts records/1 and records/2; a message published again counts again).",
    Counter nats_body_bytes: "Bytes of those messages' bodies: fewer than nats_record_bytes where layout records/2 compressed them (zstd).",
    Gauge nats_message_bytes: "Layouts records/1 and records/2: the most bytes of frame records a message the NATS sink reads from the archive's files may carry now (looked at every 200 ms while connected): 262144 (less under a smaller max_payload), less while emergencies' PubAcks come late (sinks.nats.ack = \"replicated\"); 0 before the sink found its stream of that layout.",
    Gauge nats_room_bytes: "Layouts records/1 and records/2: the most payload bytes the NATS sink's messages waiting for their PubAck may hold now (looked at every 200 ms while connected): 524288 for each whole 10 ms of the fastest PubAck of the last 5 to 10 s, at least once (servers near), at most 8 times (servers far apart); 0 before the sink found its stream of that layout.",
    Gauge nats_at_leader: "1 while the NATS sink has a connection to the server that leads its stream to publish through (looked at 5 s after each look; the sink takes a new one up at its next message, in layout frame/1 once every message in flight is acknowledged), else 0: the leader is not among sinks.nats.url or does not answer, or the stream's information cannot be had.",
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

/// Frames and payload bytes processed per second.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProcessingRates {
    pub frames_per_sec: f64,
    pub bytes_per_sec: f64,
}

/// The processing rates between two snapshots `seconds` apart; `None` when no time passed.
pub(crate) fn processing_rates(
    earlier: &PipelineStats,
    later: &PipelineStats,
    seconds: f64,
) -> Option<ProcessingRates> {
    let per_sec = |new: u64, old: u64| new.saturating_sub(old) as f64 / seconds;
    (seconds > 0.0).then(|| ProcessingRates {
        frames_per_sec: per_sec(later.frames_processed, earlier.frames_processed),
        bytes_per_sec: per_sec(later.bytes_processed, earlier.bytes_processed),
    })
}
