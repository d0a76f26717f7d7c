//! Why a message could not be framed or decoded.

use super::{MAX_SEQUENCE, VERSION};

/// Why a message could not be framed or decoded. Each variant names the cause for the log line and
/// for the detail text sent back to the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("length prefix {length} exceeds the maximum frame length {max}")]
    FrameTooLarge { length: usize, max: usize },
    #[error("connection closed in the middle of a frame ({buffered} bytes buffered)")]
    Truncated { buffered: usize },
    #[error("empty message (length prefix 0)")]
    Empty,
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    #[error("{message} body of {length} bytes, expected {expected}")]
    BadLength {
        message: &'static str,
        length: usize,
        expected: &'static str,
    },
    #[error("invalid priority byte 0x{0:02x}")]
    InvalidPriority(u8),
    #[error("invalid source kind byte 0x{0:02x}")]
    InvalidSourceKind(u8),
    #[error("unknown {what} code {code}")]
    UnknownCode { what: &'static str, code: u8 },
    #[error("invalid option flag 0x{0:02x}")]
    InvalidFlag(u8),
    #[error("sequence {0} is reserved (sequences end at {MAX_SEQUENCE})")]
    ReservedSequence(u64),
    #[error("CATALOG content type is not ASCII")]
    ContentTypeNotAscii,
    /// A HELLO of another version, whatever its length and fields: read no further than its
    /// version, so that a later version's sender is told to fall back.
    #[error("HELLO of protocol version {0}; this daemon speaks version {VERSION} only")]
    OtherVersion(u8),
}
