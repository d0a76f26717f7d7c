//! REFUSED: why the daemon refuses a subscription. A [`Refusal`] has a variant per refusal, with
//! what it is about; its reason code ([`Refusal::reason`]) and its text (`Display`) are what
//! REFUSED carries, so callers match variants and the consumer reads the same bytes as ever.

use std::io;
use std::time::Duration;

use super::wire::{OLDEST_VERSION, SUBSCRIBE_FIXED_LEN, VERSION};
use crate::archive::read::ReadError;
use crate::domain::shard::MAX_SHARDS;
use crate::net::Refused;

/// Why the daemon refused a subscription (REFUSED's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    UnsupportedVersion = 1,
    MalformedSubscribe = 2,
    UnknownPosition = 3,
    PositionPastEnd = 4,
    SegmentDeleted = 5,
    TooManyConnections = 6,
    ShuttingDown = 7,
    NoArchive = 8,
    HandshakeTimeout = 9,
    ArchiveUnreadable = 10,
}

impl RefuseReason {
    const ALL: [RefuseReason; 10] = [
        RefuseReason::UnsupportedVersion,
        RefuseReason::MalformedSubscribe,
        RefuseReason::UnknownPosition,
        RefuseReason::PositionPastEnd,
        RefuseReason::SegmentDeleted,
        RefuseReason::TooManyConnections,
        RefuseReason::ShuttingDown,
        RefuseReason::NoArchive,
        RefuseReason::HandshakeTimeout,
        RefuseReason::ArchiveUnreadable,
    ];

    /// The reason of REFUSED's code, if this build knows it.
    pub(super) fn from_code(code: u8) -> Option<RefuseReason> {
        RefuseReason::ALL.into_iter().find(|r| *r as u8 == code)
    }
}

/// A start the archive cannot find, as REFUSED says it.
impl From<&ReadError> for RefuseReason {
    fn from(err: &ReadError) -> RefuseReason {
        match err {
            ReadError::UnknownPosition { .. } | ReadError::UnknownShard { .. } => {
                RefuseReason::UnknownPosition
            }
            ReadError::PositionPastEnd { .. } => RefuseReason::PositionPastEnd,
            ReadError::PositionDeleted { .. } | ReadError::SegmentDeleted { .. } => {
                RefuseReason::SegmentDeleted
            }
            ReadError::Damaged(_) | ReadError::Unreadable(_) => RefuseReason::ArchiveUnreadable,
        }
    }
}

/// Why a SUBSCRIBE body is refused: a version the daemon does not speak, or bytes that are no
/// SUBSCRIBE of it (`MalformedSubscribe`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// The first message is another type than SUBSCRIBE (`None`: an empty message).
    #[error("expected SUBSCRIBE (0x11), got {}", message_type(*.0))]
    NotSubscribe(Option<u8>),
    #[error("SUBSCRIBE of 1 byte, without a version")]
    NoVersion,
    #[error(
        "SUBSCRIBE of protocol version {0}; this daemon speaks versions {OLDEST_VERSION} to {VERSION}"
    )]
    UnsupportedVersion(u8),
    #[error("SUBSCRIBE of {0} bytes, shorter than {SUBSCRIBE_FIXED_LEN}")]
    Short(usize),
    /// The length does not match the counts of sources and positions, and the window bit.
    #[error(
        "SUBSCRIBE of {len} bytes for {sources} sources and {positions} positions{}; expected {expected}",
        if *.window { " and a time window" } else { "" }
    )]
    Length {
        len: usize,
        sources: usize,
        positions: usize,
        window: bool,
        expected: usize,
    },
    /// Positions with a start other than "after the positions" (2).
    #[error("{positions} positions with start {start}: positions go with start 2 only")]
    PositionsWithoutAfter { positions: usize, start: u8 },
    #[error("a position of shard {0}; shards are below {MAX_SHARDS}")]
    Shard(usize),
    #[error("two positions of shard {0}")]
    TwoPositions(usize),
    #[error("a time window from {since} to {until} ns: since is after until")]
    Window { since: u64, until: u64 },
    #[error("undefined start {0}")]
    Start(u8),
    #[error("undefined priority filter {0}")]
    Priority(u8),
    #[error("undefined source kind {0}")]
    SourceKind(u8),
}

/// What a first message that is not a SUBSCRIBE was.
fn message_type(got: Option<u8>) -> String {
    got.map_or("an empty message".into(), |t| format!("type {t:#04x}"))
}

impl SubscribeError {
    /// REFUSED's code for it.
    pub fn reason(&self) -> RefuseReason {
        match self {
            SubscribeError::UnsupportedVersion(_) => RefuseReason::UnsupportedVersion,
            SubscribeError::NotSubscribe(_)
            | SubscribeError::NoVersion
            | SubscribeError::Short(_)
            | SubscribeError::Length { .. }
            | SubscribeError::PositionsWithoutAfter { .. }
            | SubscribeError::Shard(_)
            | SubscribeError::TwoPositions(_)
            | SubscribeError::Window { .. }
            | SubscribeError::Start(_)
            | SubscribeError::Priority(_)
            | SubscribeError::SourceKind(_) => RefuseReason::MalformedSubscribe,
        }
    }
}

/// Why the daemon refuses a subscription: REFUSED's code is [`Refusal::reason`], its text the
/// refusal's `Display`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// The SUBSCRIBE's bytes.
    #[error(transparent)]
    Subscribe(#[from] SubscribeError),
    /// The SUBSCRIBE could not be read (longer than the daemon reads, or the socket failed).
    #[error("{0}")]
    Unreadable(io::Error),
    /// The listener's connection limits.
    #[error("the follow listener: {0}")]
    TooManyConnections(Refused),
    /// No SUBSCRIBE came within this time.
    #[error("no SUBSCRIBE within {} ms", .0.as_millis())]
    HandshakeTimeout(Duration),
    #[error("the daemon is draining; subscribe again later")]
    ShuttingDown,
    #[error("this daemon keeps no archive files (archive.kind = \"count\")")]
    NoArchive,
    /// The archive cannot find the subscription's start, or cannot be read.
    #[error("{0}")]
    Archive(ReadError),
}

impl Refusal {
    /// REFUSED's code for it.
    pub fn reason(&self) -> RefuseReason {
        match self {
            Refusal::Subscribe(err) => err.reason(),
            Refusal::Unreadable(_) => RefuseReason::MalformedSubscribe,
            Refusal::TooManyConnections(_) => RefuseReason::TooManyConnections,
            Refusal::HandshakeTimeout(_) => RefuseReason::HandshakeTimeout,
            Refusal::ShuttingDown => RefuseReason::ShuttingDown,
            Refusal::NoArchive => RefuseReason::NoArchive,
            Refusal::Archive(err) => RefuseReason::from(err),
        }
    }
}
