//! The domain types every stage shares.
//!
//! A [`Frame`] is what a consumer sees: one telemetry record with its origin, priority and per-source
//! sequence. Frames travel through the pipeline in batches ([`super::batch`]); [`Priority`] decides
//! a frame's lane, and [`SourceKind`] which listener its source connects to.

use bytes::Bytes;

/// How urgently a frame must be processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Priority {
    /// Standard telemetry.
    Routine,
    /// SAFE_MODE, ABORT and other commands that overtake queued routine telemetry.
    Emergency,
}

impl Priority {
    /// The wire byte (see `docs/ingest-protocol.md`).
    pub fn to_byte(self) -> u8 {
        match self {
            Priority::Routine => 0,
            Priority::Emergency => 1,
        }
    }

    /// Parses the wire byte; `None` for anything undefined.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Priority::Routine),
            1 => Some(Priority::Emergency),
            _ => None,
        }
    }

    /// A short lower-case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Emergency => "emergency",
        }
    }
}

/// Where a source's frames come from; each kind has its own listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    /// A satellite uplink relayed live by a ground station.
    LiveUplink,
    /// A recorded feed played back for mission replay.
    ArchivedReplay,
}

impl SourceKind {
    /// The wire byte (see `docs/ingest-protocol.md`).
    pub fn to_byte(self) -> u8 {
        match self {
            SourceKind::LiveUplink => 0,
            SourceKind::ArchivedReplay => 1,
        }
    }

    /// Parses the wire byte; `None` for anything undefined.
    pub fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(SourceKind::LiveUplink),
            1 => Some(SourceKind::ArchivedReplay),
            _ => None,
        }
    }

    /// A short lower-case label for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::LiveUplink => "live_uplink",
            SourceKind::ArchivedReplay => "archived_replay",
        }
    }
}

/// One telemetry frame as downstream consumers receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The id the source announced in its hello.
    pub source_id: u32,
    /// Which listener the source connected to.
    pub source_kind: SourceKind,
    /// Decides which fan-in lane the frame takes.
    pub priority: Priority,
    /// Strictly increasing per source; acknowledgements are expressed in it.
    pub sequence: u64,
    /// The opaque telemetry, a slice of the read buffer it arrived in.
    pub payload: Bytes,
}
