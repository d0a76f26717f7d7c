//! What the daemon sends: WELCOME, REFUSED, ACK, PONG, CATALOG and CLOSE, with the reasons a
//! refusal and a close carry, encoded and decoded.

use std::fmt;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::ProtocolError;
use super::{ACK, CATALOG, CLOSE, LENGTH_PREFIX, PONG, REFUSED, WELCOME};

/// Why the daemon refused a hello. The connection is closed after the refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    UnsupportedVersion,
    WrongKind,
    DuplicateSource,
    TooManyConnections,
    ShuttingDown,
    HelloExpected,
    HandshakeTimeout,
    /// The peer's client certificate does not cover the source its HELLO names.
    Unauthorized,
}

/// Why the daemon is closing an accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The daemon is draining; the final acknowledgement says what was accepted.
    Shutdown,
    /// The source closed its sending side; everything it sent was handled.
    EndOfStream,
    /// Nothing arrived within the idle timeout.
    IdleTimeout,
    FrameTooLarge,
    /// Unknown type, wrong body length or an undefined field value.
    MalformedMessage,
    /// A second hello.
    UnexpectedMessage,
    /// The source closed its side in the middle of a frame.
    TruncatedFrame,
    /// The connection gave up waiting for the archive to store what it accepted (the disk is
    /// full or failing, or the drain deadline passed): frames above `final_ack` were not stored.
    StorageUnavailable,
}

/// What the daemon sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// The hello was accepted. `resume_after` is the highest sequence of this source the daemon has
    /// already stored: frames at or below it are dropped as duplicates, so a source resumes above it.
    Welcome {
        version: u8,
        resume_after: Option<u64>,
    },
    Refused {
        reason: RefuseReason,
        detail: String,
    },
    /// Every frame of this source with a sequence up to `sequence` was processed and handed to every
    /// consumer that must not lose frames.
    Ack { sequence: u64 },
    /// The answer to a PING, with its token.
    Pong(u64),
    /// The latest catalog: sent after WELCOME and whenever a new one is
    /// published.
    Catalog {
        version: u64,
        content_type: String,
        body: Bytes,
    },
    /// The last message on an accepted connection. `final_ack` repeats the highest acknowledged
    /// sequence: frames above it were not accepted and must be sent again.
    Close {
        reason: CloseReason,
        final_ack: Option<u64>,
        detail: String,
    },
}

macro_rules! wire_codes {
    ($ty:ident, $what:literal, { $($variant:ident = $code:literal),* $(,)? }) => {
        impl $ty {
            /// The wire byte (see `docs/ingest-protocol.md`).
            pub(crate) fn code(self) -> u8 {
                match self { $($ty::$variant => $code),* }
            }

            /// Parses the wire byte.
            pub(crate) fn from_code(code: u8) -> Result<Self, ProtocolError> {
                match code {
                    $($code => Ok($ty::$variant),)*
                    _ => Err(ProtocolError::UnknownCode { what: $what, code }),
                }
            }
        }

        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Debug::fmt(self, f)
            }
        }
    };
}

wire_codes!(RefuseReason, "refusal", {
    UnsupportedVersion = 1,
    WrongKind = 2,
    DuplicateSource = 3,
    TooManyConnections = 4,
    ShuttingDown = 5,
    HelloExpected = 6,
    HandshakeTimeout = 7,
    Unauthorized = 8,
});

wire_codes!(CloseReason, "close", {
    Shutdown = 1,
    EndOfStream = 2,
    IdleTimeout = 3,
    FrameTooLarge = 4,
    MalformedMessage = 5,
    UnexpectedMessage = 6,
    TruncatedFrame = 7,
    StorageUnavailable = 8,
});

impl ProtocolError {
    /// The close reason that tells a peer about this error.
    pub(crate) fn close_reason(&self) -> CloseReason {
        match self {
            ProtocolError::FrameTooLarge { .. } => CloseReason::FrameTooLarge,
            ProtocolError::Truncated { .. } => CloseReason::TruncatedFrame,
            _ => CloseReason::MalformedMessage,
        }
    }
}

fn expect_len(
    message: &'static str,
    body: &Bytes,
    ok: bool,
    expected: &'static str,
) -> Result<(), ProtocolError> {
    if ok {
        Ok(())
    } else {
        Err(ProtocolError::BadLength {
            message,
            length: body.len(),
            expected,
        })
    }
}

fn put_option(dst: &mut BytesMut, value: Option<u64>) {
    dst.put_u8(u8::from(value.is_some()));
    dst.put_u64(value.unwrap_or(0));
}

fn get_option(body: &mut Bytes) -> Result<Option<u64>, ProtocolError> {
    let flag = body.get_u8();
    let value = body.get_u64();
    match flag {
        0 => Ok(None),
        1 => Ok(Some(value)),
        other => Err(ProtocolError::InvalidFlag(other)),
    }
}

impl ServerMessage {
    /// Appends the message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            ServerMessage::Welcome {
                version,
                resume_after,
            } => {
                dst.put_u32(11);
                dst.put_u8(WELCOME);
                dst.put_u8(*version);
                put_option(dst, *resume_after);
            }
            ServerMessage::Refused { reason, detail } => {
                dst.put_u32((2 + detail.len()) as u32);
                dst.put_u8(REFUSED);
                dst.put_u8(reason.code());
                dst.put_slice(detail.as_bytes());
            }
            ServerMessage::Ack { sequence } => {
                dst.put_u32(9);
                dst.put_u8(ACK);
                dst.put_u64(*sequence);
            }
            ServerMessage::Pong(token) => {
                dst.put_u32(9);
                dst.put_u8(PONG);
                dst.put_u64(*token);
            }
            ServerMessage::Catalog {
                version,
                content_type,
                body,
            } => {
                dst.reserve(LENGTH_PREFIX + 10 + content_type.len() + body.len());
                dst.put_u32((10 + content_type.len() + body.len()) as u32);
                dst.put_u8(CATALOG);
                dst.put_u64(*version);
                dst.put_u8(content_type.len() as u8);
                dst.put_slice(content_type.as_bytes());
                dst.put_slice(body);
            }
            ServerMessage::Close {
                reason,
                final_ack,
                detail,
            } => {
                dst.put_u32((11 + detail.len()) as u32);
                dst.put_u8(CLOSE);
                dst.put_u8(reason.code());
                put_option(dst, *final_ack);
                dst.put_slice(detail.as_bytes());
            }
        }
    }

    /// Decodes one body (the bytes after the length prefix).
    pub fn decode(mut body: Bytes) -> Result<Self, ProtocolError> {
        let Some(&kind) = body.first() else {
            return Err(ProtocolError::Empty);
        };
        let len = body.len();
        body.advance(1);
        match kind {
            WELCOME => {
                expect_len("WELCOME", &body, len == 11, "exactly 11")?;
                let version = body.get_u8();
                Ok(ServerMessage::Welcome {
                    version,
                    resume_after: get_option(&mut body)?,
                })
            }
            REFUSED => {
                expect_len("REFUSED", &body, len >= 2, "at least 2")?;
                let reason = RefuseReason::from_code(body.get_u8())?;
                Ok(ServerMessage::Refused {
                    reason,
                    detail: String::from_utf8_lossy(&body).into_owned(),
                })
            }
            ACK => {
                expect_len("ACK", &body, len == 9, "exactly 9")?;
                Ok(ServerMessage::Ack {
                    sequence: body.get_u64(),
                })
            }
            PONG => {
                expect_len("PONG", &body, len == 9, "exactly 9")?;
                Ok(ServerMessage::Pong(body.get_u64()))
            }
            CATALOG => {
                expect_len("CATALOG", &body, len >= 10, "at least 10")?;
                let version = body.get_u64();
                let type_len = usize::from(body.get_u8());
                expect_len(
                    "CATALOG",
                    &body,
                    body.len() >= type_len,
                    "room for its content type",
                )?;
                let content_type = body.split_to(type_len);
                // ASCII, as the spec says: read lossily, a longer text would not fit its length
                // byte again.
                if !content_type.is_ascii() {
                    return Err(ProtocolError::ContentTypeNotAscii);
                }
                let content_type = String::from_utf8_lossy(&content_type).into_owned();
                Ok(ServerMessage::Catalog {
                    version,
                    content_type,
                    body,
                })
            }
            CLOSE => {
                expect_len("CLOSE", &body, len >= 11, "at least 11")?;
                let reason = CloseReason::from_code(body.get_u8())?;
                let final_ack = get_option(&mut body)?;
                Ok(ServerMessage::Close {
                    reason,
                    final_ack,
                    detail: String::from_utf8_lossy(&body).into_owned(),
                })
            }
            other => Err(ProtocolError::UnknownType(other)),
        }
    }
}
