//! END: why the daemon ends a subscription. An [`End`] has a variant per ending, with what it is
//! about; its reason code ([`End::reason`]) and its text (`Display`) are what END carries.

use crate::archive::read::ReadError;

/// Why the daemon ended a subscription (END's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The daemon drained: every durable frame the subscription wanted was sent.
    Shutdown = 1,
    /// The next segment to read is gone (deleted by an operator): frames would be missing.
    SegmentDeleted = 2,
    /// A durable record does not decode.
    ArchiveDamaged = 3,
    /// The archive could not be read.
    ArchiveUnreadable = 4,
    /// The consumer sent something after its SUBSCRIBE.
    UnexpectedMessage = 5,
    /// The subscription's time window ended: every frame it wanted was sent.
    Until = 6,
}

impl EndReason {
    const ALL: [EndReason; 6] = [
        EndReason::Shutdown,
        EndReason::SegmentDeleted,
        EndReason::ArchiveDamaged,
        EndReason::ArchiveUnreadable,
        EndReason::UnexpectedMessage,
        EndReason::Until,
    ];

    /// The reason of END's code, if this build knows it.
    pub(super) fn from_code(code: u8) -> Option<EndReason> {
        EndReason::ALL.into_iter().find(|r| *r as u8 == code)
    }
}

/// A reading of the archive that cannot go on, as END says it.
impl From<&ReadError> for EndReason {
    fn from(err: &ReadError) -> EndReason {
        match err {
            ReadError::SegmentDeleted { .. } | ReadError::PositionDeleted { .. } => {
                EndReason::SegmentDeleted
            }
            ReadError::Damaged(_) => EndReason::ArchiveDamaged,
            ReadError::Unreadable(_)
            | ReadError::UnknownPosition { .. }
            | ReadError::PositionPastEnd { .. }
            | ReadError::UnknownShard { .. } => EndReason::ArchiveUnreadable,
        }
    }
}

/// Why the daemon ends a subscription: END's code is [`End::reason`], its text the `Display`.
#[derive(Debug, thiserror::Error)]
pub enum End {
    /// Every shard's archive writer closed, and everything durable was sent.
    #[error("the daemon drained; every durable frame was sent")]
    Drained,
    /// The subscription's time window ended, and every frame of it was sent.
    #[error("every frame received until the window's end was sent")]
    WindowEnded,
    /// The archive cannot be read on.
    #[error("{0}")]
    Archive(ReadError),
    /// The consumer sent a byte after its SUBSCRIBE.
    #[error("a consumer sends nothing after SUBSCRIBE")]
    SentAfterSubscribe,
    /// The consumer's bytes after its SUBSCRIBE were already read with it.
    #[error("a consumer sends nothing after SUBSCRIBE; {0} bytes came")]
    BufferedAfterSubscribe(usize),
}

impl End {
    /// END's code for it.
    pub fn reason(&self) -> EndReason {
        match self {
            End::Drained => EndReason::Shutdown,
            End::WindowEnded => EndReason::Until,
            End::Archive(err) => EndReason::from(err),
            End::SentAfterSubscribe | End::BufferedAfterSubscribe(_) => {
                EndReason::UnexpectedMessage
            }
        }
    }
}
