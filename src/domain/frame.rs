//! The domain types every stage shares.
//!
//! A [`Frame`] is what a consumer sees: one telemetry record with its origin, priority and per-source
//! sequence. Frames travel through the pipeline in batches ([`super::batch`]); [`Priority`] decides
//! a frame's lane, and [`SourceKind`] which listener its source connects to.

use std::fmt;
use std::str::FromStr;

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
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Priority::Routine => 0,
            Priority::Emergency => 1,
        }
    }

    /// Parses the wire byte; `None` for anything undefined.
    pub(crate) fn from_byte(byte: u8) -> Option<Self> {
        match byte {
            0 => Some(Priority::Routine),
            1 => Some(Priority::Emergency),
            _ => None,
        }
    }

    /// A short lower-case label for logs and metrics.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Priority::Routine => "routine",
            Priority::Emergency => "emergency",
        }
    }
}

/// Where a source's frames come from; each kind has its own listener. Ordered (live first) so
/// that answers listing sources can sort them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
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
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SourceKind::LiveUplink => "live_uplink",
            SourceKind::ArchivedReplay => "archived_replay",
        }
    }

    /// `live` or `replay`: the short names the tools and the HTTP API print and accept.
    pub fn label(self) -> &'static str {
        match self {
            SourceKind::LiveUplink => "live",
            SourceKind::ArchivedReplay => "replay",
        }
    }
}

/// Why a kind, a priority or a source named in text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("unknown source kind {0:?} (expected live or replay)")]
    Kind(String),
    #[error("unknown priority {0:?} (expected emergency or routine)")]
    Priority(String),
    #[error("{0:?} is not KIND:ID (for example live:7)")]
    Source(String),
    #[error("{text:?}: the id {id:?} is not a number from 0 to {max}", max = u32::MAX)]
    SourceId { text: String, id: String },
}

impl fmt::Display for SourceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Every name a kind is taken by in text (`KIND:ID`, `kind`): its label, its wire name, and
/// `uplink`.
pub const KIND_NAMES: [(&str, SourceKind); 5] = [
    ("live", SourceKind::LiveUplink),
    ("live_uplink", SourceKind::LiveUplink),
    ("uplink", SourceKind::LiveUplink),
    ("replay", SourceKind::ArchivedReplay),
    ("archived_replay", SourceKind::ArchivedReplay),
];

/// One of [`KIND_NAMES`].
impl FromStr for SourceKind {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let named = KIND_NAMES.iter().find(|(name, _)| *name == text);
        named
            .map(|(_, kind)| *kind)
            .ok_or_else(|| ParseError::Kind(text.into()))
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `emergency` or `routine`.
impl FromStr for Priority {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        match text {
            "emergency" => Ok(Priority::Emergency),
            "routine" => Ok(Priority::Routine),
            other => Err(ParseError::Priority(other.into())),
        }
    }
}

/// Parses a source as `KIND:ID`, for example `live:7` or `replay:2`.
pub fn parse_source(text: &str) -> Result<SourceKey, ParseError> {
    let (kind, id) = text
        .split_once(':')
        .ok_or_else(|| ParseError::Source(text.into()))?;
    let id = id.parse().map_err(|_| ParseError::SourceId {
        text: text.into(),
        id: id.into(),
    })?;
    Ok((kind.parse()?, id))
}

/// Sources are told apart by kind and id: a replay of source 7 may run while source 7 is live.
pub type SourceKey = (SourceKind, u32);

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

/// Any priority and any source kind, for the property tests of the formats that carry them.
#[cfg(test)]
pub(crate) mod arbitrary {
    use proptest::strategy::Strategy;

    use super::{Priority, SourceKind};

    pub(crate) fn priority() -> impl Strategy<Value = Priority> {
        proptest::sample::select(&[Priority::Routine, Priority::Emergency][..])
    }

    pub(crate) fn source_kind() -> impl Strategy<Value = SourceKind> {
        proptest::sample::select(&[SourceKind::LiveUplink, SourceKind::ArchivedReplay][..])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name the queries and the tools take a kind by is where their users read of it.
    #[test]
    fn every_name_of_a_kind_is_in_the_docs() {
        let http = include_str!("../../docs/http-api.md");
        let tools = include_str!("../../docs/archive-tools.md");
        for (name, kind) in KIND_NAMES {
            assert_eq!(name.parse::<SourceKind>(), Ok(kind));
            assert_eq!(parse_source(&format!("{name}:7")), Ok((kind, 7)));
            let quoted = format!("`{name}`");
            for (doc, text) in [("http-api.md", http), ("archive-tools.md", tools)] {
                let named = text.contains(&quoted) || text.contains(&format!("`{name}:"));
                assert!(named, "docs/{doc} does not name the kind {quoted}");
            }
        }
        assert!("Live".parse::<SourceKind>().is_err());
    }
}
