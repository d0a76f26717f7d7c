//! Why a body the daemon sent is not a message of this protocol: what a consumer gets from
//! [`DaemonMessage::decode`](super::DaemonMessage::decode).

use crate::domain::shard::MAX_SHARDS;

/// Why a body the daemon sent is not a message of this protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("an empty message")]
    Empty,
    #[error("{what} of {len} bytes, expected {expected}")]
    Length {
        what: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("{what} of {len} bytes, expected at least {least}")]
    Short {
        what: &'static str,
        len: usize,
        least: usize,
    },
    #[error("FRAMES with undefined source kind {0}")]
    UndefinedKind(u8),
    #[error("SKIPPED with undefined source kind {0}")]
    SourceKind(u8),
    #[error("FRAMES with undefined priority {0}")]
    UndefinedPriority(u8),
    #[error("FRAMES of shard {0}; shards are below {MAX_SHARDS}")]
    Shard(usize),
    #[error("FRAMES of {count} frames ends in frame {index}")]
    EndsInFrame { count: u32, index: u32 },
    #[error("FRAMES frame {index}: a payload of {len} bytes, {left} left")]
    Payload { index: u32, len: usize, left: usize },
    #[error("FRAMES of {count} frames with {left} bytes left over")]
    LeftOver { count: u32, left: usize },
    /// REFUSED or END with a reason code this build does not know.
    #[error("{what} with unknown reason {code}: {detail}")]
    UnknownReason {
        what: &'static str,
        code: u8,
        detail: String,
    },
    #[error("unknown message type {0:#04x}")]
    Type(u8),
    #[error("RECEPTION: {0}")]
    Reception(String),
    #[error("RECEPTION of {reception} frames before FRAMES of {frames}")]
    ReceptionCount { reception: usize, frames: usize },
}
