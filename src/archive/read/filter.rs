//! Which stored frames a reader wants: its sources, its priority and the times they were received
//! in. The reader applies it as it reads the records, so frames it does not want never leave the
//! read (a follower's SUBSCRIBE carries one; a TM output asks for its sources; the NATS sink for
//! everything); the received times also tell it which parts of the files to read at all
//! ([`super::window`]).

use crate::archive::format::FrameRecord;
use crate::domain::frame::{Priority, SourceKey};

/// The frames a reader wants; the default wants every frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameFilter {
    /// Only frames of these sources; every source when empty.
    pub sources: Vec<SourceKey>,
    /// Only frames of this priority; both when `None`.
    pub priority: Option<Priority>,
    /// Only frames received at or after this time (nanoseconds since the Unix epoch).
    pub since: Option<u64>,
    /// Only frames received at or before this time; the reading ends once no more can come.
    pub until: Option<u64>,
}

impl FrameFilter {
    /// Whether the reader wants this frame.
    pub fn wants(&self, frame: &FrameRecord) -> bool {
        self.priority.is_none_or(|p| p == frame.priority)
            && self.wants_source(frame)
            && self.received().contains(&frame.received_unix_ns)
    }

    /// Whether the reader wants frames of this frame's source (of its priority or not).
    pub(crate) fn wants_source(&self, frame: &FrameRecord) -> bool {
        self.sources.is_empty() || self.sources.contains(&(frame.kind, frame.source_id))
    }

    /// The received times it wants: every time unless it says otherwise.
    pub fn received(&self) -> std::ops::RangeInclusive<u64> {
        self.since.unwrap_or(0)..=self.until.unwrap_or(u64::MAX)
    }

    /// Whether it wants only some received times.
    pub fn has_window(&self) -> bool {
        self.since.is_some() || self.until.is_some()
    }
}
