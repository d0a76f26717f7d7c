//! Why a connection ended, and what its CLOSE says of it.

use std::io;

use crate::config::Config;
use crate::protocol::ingest::{CloseReason, ProtocolError};

/// Why an accepted connection ended.
#[derive(Debug)]
pub(super) enum Ending {
    Shutdown,
    EndOfStream,
    Idle,
    Protocol(ProtocolError),
    UnexpectedHello,
    Io(io::Error),
    PipelineClosed,
}

impl Ending {
    /// A read that ends the stream: the peer closed its side (cleanly, or in the middle of a frame
    /// with `buffered` bytes of it read), or the socket failed.
    pub(super) fn of_read(read: io::Result<usize>, buffered: usize) -> Ending {
        match read {
            Ok(0) if buffered == 0 => Ending::EndOfStream,
            Ok(_) => Ending::Protocol(ProtocolError::Truncated { buffered }),
            Err(err) => Ending::Io(err),
        }
    }

    pub(super) fn close_reason(&self) -> CloseReason {
        match self {
            Ending::Shutdown | Ending::PipelineClosed => CloseReason::Shutdown,
            Ending::EndOfStream | Ending::Io(_) => CloseReason::EndOfStream,
            Ending::Idle => CloseReason::IdleTimeout,
            Ending::Protocol(err) => err.close_reason(),
            Ending::UnexpectedHello => CloseReason::UnexpectedMessage,
        }
    }

    pub(super) fn detail(&self, config: &Config) -> String {
        match self {
            Ending::Shutdown | Ending::PipelineClosed => "the daemon is shutting down".into(),
            Ending::EndOfStream => "end of stream".into(),
            Ending::Idle => format!(
                "nothing received for {} ms",
                config.connection.idle_timeout.as_millis()
            ),
            Ending::Protocol(err) => err.to_string(),
            Ending::UnexpectedHello => "a second HELLO on an open connection".into(),
            Ending::Io(err) => err.to_string(),
        }
    }
}
