//! Where a reader starts in every shard: the oldest frame kept, the frames to come, or right
//! after positions the archive handed out earlier. The text forms are what `aggregator tail
//! --from` takes and prints.

use crate::domain::position::{PositionError, Positions};

/// Where a reading of the archive starts, in every shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// The oldest frame the archive still holds.
    Oldest,
    /// The first frame that becomes durable after the reading starts.
    Now,
    /// In each shard, the frame right after its position, which the daemon gave earlier; the
    /// oldest frame in a shard without one.
    After(Positions),
}

impl std::fmt::Display for Start {
    /// `start`, `now` or the position, as `aggregator tail --from` takes them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::Oldest => f.write_str("start"),
            Start::Now => f.write_str("now"),
            Start::After(positions) => write!(f, "{positions}"),
        }
    }
}

/// Why text is not a [`Start`]: neither `start`, `now` nor positions.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}; or start (the oldest frame) or now (only frames to come)")]
pub struct StartError(#[from] PositionError);

impl std::str::FromStr for Start {
    type Err = StartError;

    fn from_str(text: &str) -> Result<Start, StartError> {
        match text {
            "start" => Ok(Start::Oldest),
            "now" => Ok(Start::Now),
            positions => Ok(Start::After(positions.parse()?)),
        }
    }
}
