//! Which stored frames a reader wants: its sources and its priority. The reader applies it as it
//! reads the records, so frames it does not want never leave the read (a follower's SUBSCRIBE
//! carries one; a TM output asks for its sources; the NATS sink for everything).

use crate::archive::segment::FrameRecord;
use crate::domain::frame::{Priority, SourceKey};

/// The frames a reader wants; the default wants every frame.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FrameFilter {
    /// Only frames of these sources; every source when empty.
    pub sources: Vec<SourceKey>,
    /// Only frames of this priority; both when `None`.
    pub priority: Option<Priority>,
}

impl FrameFilter {
    /// Whether the reader wants this frame.
    pub fn wants(&self, frame: &FrameRecord) -> bool {
        self.priority.is_none_or(|p| p == frame.priority) && self.wants_source(frame)
    }

    /// Whether the reader wants frames of this frame's source (of its priority or not).
    pub(crate) fn wants_source(&self, frame: &FrameRecord) -> bool {
        self.sources.is_empty() || self.sources.contains(&(frame.kind, frame.source_id))
    }
}
