//! The wire protocol, shared by the daemon, `uplink-sim` and the benchmark's load client.
//!
//! Every message is a big-endian `u32` length followed by that many body bytes: the default format
//! of `tokio_util`'s `LengthDelimitedCodec`, so any client can use that codec. The body starts with a
//! type byte. `docs/ingest-protocol.md` specifies every byte; this module is the only code that knows them.
//!
//! The daemon's ingest path does not decode message by message through the codec: [`walk_messages`]
//! visits every complete message of a read buffer in one pass, so a socket read of hundreds of
//! frames costs one buffer split.

use std::fmt;
use std::ops::ControlFlow;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use crate::domain::frame::{Priority, SourceKind};

/// The protocol version HELLO and WELCOME carry; a HELLO of another is refused.
pub const VERSION: u8 = 2;
/// The largest catalog body a daemon may be configured to send (`catalog.max_bytes`).
pub(crate) const MAX_CATALOG_BYTES: usize = 16 << 20;
/// The longest message a daemon sends: a CATALOG with the largest body and content type.
pub(crate) const MAX_SERVER_MESSAGE: usize = 10 + 255 + MAX_CATALOG_BYTES;
/// Bytes of the length prefix in front of every message.
pub const LENGTH_PREFIX: usize = 4;
/// Bytes of a DATA body before its payload: type, priority, sequence.
pub const DATA_HEADER: usize = 1 + 1 + 8;
/// The highest sequence a frame may carry: `u64::MAX` is refused, so that "every frame up to N"
/// and "nothing yet" fit in one 64-bit value wherever the daemon keeps an acknowledgement.
pub(crate) const MAX_SEQUENCE: u64 = u64::MAX - 1;

const HELLO: u8 = 0x01;
const DATA: u8 = 0x02;
const PING: u8 = 0x03;
const CATALOG_ACK: u8 = 0x04;
const WELCOME: u8 = 0x81;
const REFUSED: u8 = 0x82;
const ACK: u8 = 0x83;
const CLOSE: u8 = 0x84;
const PONG: u8 = 0x85;
const CATALOG: u8 = 0x86;

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
}

/// The first message of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the source speaks: [`VERSION`], or the HELLO is refused.
    pub version: u8,
    /// Must match the listener the source connected to.
    pub kind: SourceKind,
    /// Unique among connected sources.
    pub source_id: u32,
}

/// One telemetry frame as it crosses the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Data {
    pub priority: Priority,
    pub sequence: u64,
    pub payload: Bytes,
}

/// What a source sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Hello(Hello),
    Data(Data),
    /// A keep-alive: the daemon answers PONG with the same token, and a source that sends one
    /// is not idle.
    Ping(u64),
    /// The source holds this catalog version.
    CatalogAck(u64),
}

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

/// Appends one DATA message, length prefix included, without building a [`Data`] first: the
/// simulator's and the load client's encoding path.
pub fn encode_data(dst: &mut BytesMut, priority: Priority, sequence: u64, payload: &[u8]) {
    dst.reserve(LENGTH_PREFIX + DATA_HEADER + payload.len());
    dst.put_u32((DATA_HEADER + payload.len()) as u32);
    dst.put_u8(DATA);
    dst.put_u8(priority.to_byte());
    dst.put_u64(sequence);
    dst.put_slice(payload);
}

impl ClientMessage {
    /// Appends the message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        match self {
            ClientMessage::Hello(hello) => {
                dst.put_u32(7);
                dst.put_u8(HELLO);
                dst.put_u8(hello.version);
                dst.put_u8(hello.kind.to_byte());
                dst.put_u32(hello.source_id);
            }
            ClientMessage::Data(data) => {
                encode_data(dst, data.priority, data.sequence, &data.payload)
            }
            ClientMessage::Ping(token) => {
                dst.put_u32(9);
                dst.put_u8(PING);
                dst.put_u64(*token);
            }
            ClientMessage::CatalogAck(version) => {
                dst.put_u32(9);
                dst.put_u8(CATALOG_ACK);
                dst.put_u64(*version);
            }
        }
    }

    /// Decodes the fixed fields of one body (the bytes after the length prefix) without touching
    /// the payload, which for DATA is `body[DATA_HEADER..]`: the ingest path's decoder, which keeps
    /// payloads where they are in the read buffer.
    pub fn view(body: &[u8]) -> Result<MessageView, ProtocolError> {
        match *body {
            [] => Err(ProtocolError::Empty),
            [DATA, priority, ref rest @ ..] if rest.len() >= 8 => {
                let priority = Priority::from_byte(priority)
                    .ok_or(ProtocolError::InvalidPriority(priority))?;
                let mut sequence = [0; 8];
                sequence.copy_from_slice(&rest[..8]);
                let sequence = u64::from_be_bytes(sequence);
                if sequence > MAX_SEQUENCE {
                    return Err(ProtocolError::ReservedSequence(sequence));
                }
                Ok(MessageView::Data { priority, sequence })
            }
            [DATA, ..] => Err(ProtocolError::BadLength {
                message: "DATA",
                length: body.len(),
                expected: "at least 10",
            }),
            [HELLO, version, kind, a, b, c, d] => Ok(MessageView::Hello(Hello {
                version,
                kind: SourceKind::from_byte(kind).ok_or(ProtocolError::InvalidSourceKind(kind))?,
                source_id: u32::from_be_bytes([a, b, c, d]),
            })),
            [HELLO, ..] => Err(ProtocolError::BadLength {
                message: "HELLO",
                length: body.len(),
                expected: "exactly 7",
            }),
            [PING, a, b, c, d, e, f, g, h] => Ok(MessageView::Ping(u64::from_be_bytes([
                a, b, c, d, e, f, g, h,
            ]))),
            [PING, ..] => Err(ProtocolError::BadLength {
                message: "PING",
                length: body.len(),
                expected: "exactly 9",
            }),
            [CATALOG_ACK, a, b, c, d, e, f, g, h] => {
                Ok(MessageView::CatalogAck(u64::from_be_bytes([
                    a, b, c, d, e, f, g, h,
                ])))
            }
            [CATALOG_ACK, ..] => Err(ProtocolError::BadLength {
                message: "CATALOG_ACK",
                length: body.len(),
                expected: "exactly 9",
            }),
            [other, ..] => Err(ProtocolError::UnknownType(other)),
        }
    }

    /// Decodes one body (the bytes after the length prefix); a DATA payload shares `body`.
    pub fn decode(body: Bytes) -> Result<Self, ProtocolError> {
        Ok(match Self::view(&body)? {
            MessageView::Hello(hello) => ClientMessage::Hello(hello),
            MessageView::Data { priority, sequence } => ClientMessage::Data(Data {
                priority,
                sequence,
                payload: body.slice(DATA_HEADER..),
            }),
            MessageView::Ping(token) => ClientMessage::Ping(token),
            MessageView::CatalogAck(version) => ClientMessage::CatalogAck(version),
        })
    }
}

/// A client message's fixed fields; see [`ClientMessage::view`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageView {
    Hello(Hello),
    Data { priority: Priority, sequence: u64 },
    Ping(u64),
    CatalogAck(u64),
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

/// Where [`walk_messages`] stopped.
#[derive(Debug)]
pub struct Walk {
    /// Offset just past the last message visited.
    pub end: usize,
    /// Set when the next message announces a length over the maximum: the stream cannot be
    /// resynchronised past it, so the connection must end once the visited messages are handled.
    pub oversize: Option<ProtocolError>,
}

/// Visits the complete messages at the front of `buf` in one pass over their length prefixes:
/// `visit(body_offset, body)` for each, until a partial message, an oversize length, or `visit`
/// breaks. The caller cuts `buf[..end]` off once, so the ingest path pays one buffer split per
/// socket read, not one per message.
pub fn walk_messages(
    buf: &[u8],
    max_frame_length: usize,
    mut visit: impl FnMut(usize, &[u8]) -> ControlFlow<()>,
) -> Walk {
    let mut end = 0;
    while let Some(prefix) = buf.get(end..end + LENGTH_PREFIX) {
        let length = u32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]) as usize;
        if length > max_frame_length {
            return Walk {
                end,
                oversize: Some(ProtocolError::FrameTooLarge {
                    length,
                    max: max_frame_length,
                }),
            };
        }
        let body_start = end + LENGTH_PREFIX;
        let Some(body) = buf.get(body_start..body_start + length) else {
            break;
        };
        end = body_start + length;
        if visit(body_start, body).is_break() {
            break;
        }
    }
    Walk {
        end,
        oversize: None,
    }
}

fn length_codec(max_frame_length: usize) -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(max_frame_length)
        .new_codec()
}

fn invalid_data(err: ProtocolError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, err)
}

/// A `tokio_util` codec for the client side: encodes [`ClientMessage`]s, decodes
/// [`ServerMessage`]s. Use it with `Framed` for anything that is not a throughput path.
#[derive(Debug)]
pub struct ClientCodec {
    inner: LengthDelimitedCodec,
}

impl Default for ClientCodec {
    /// Reads messages up to [`MAX_SERVER_MESSAGE`] bytes: whatever a daemon may send.
    fn default() -> Self {
        ClientCodec {
            inner: length_codec(MAX_SERVER_MESSAGE),
        }
    }
}

impl Decoder for ClientCodec {
    type Item = ServerMessage;
    type Error = std::io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<ServerMessage>, std::io::Error> {
        match self.inner.decode(src)? {
            Some(body) => ServerMessage::decode(body.freeze())
                .map(Some)
                .map_err(invalid_data),
            None => Ok(None),
        }
    }
}

impl Encoder<ClientMessage> for ClientCodec {
    type Error = std::io::Error;

    fn encode(&mut self, item: ClientMessage, dst: &mut BytesMut) -> Result<(), std::io::Error> {
        item.encode(dst);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::any;
    use proptest::strategy::Strategy;

    use super::*;
    use crate::domain::frame::arbitrary;
    use crate::protocol::pieces;

    fn body_of(encoded: BytesMut) -> Bytes {
        let mut bytes = encoded.freeze();
        let length = bytes.get_u32() as usize;
        assert_eq!(length, bytes.len());
        bytes
    }

    #[test]
    fn client_messages_round_trip() {
        for message in [
            ClientMessage::Hello(Hello {
                version: VERSION,
                kind: SourceKind::ArchivedReplay,
                source_id: 0xDEAD_BEEF,
            }),
            ClientMessage::Data(Data {
                priority: Priority::Emergency,
                sequence: MAX_SEQUENCE,
                payload: Bytes::from_static(b"SAFE_MODE"),
            }),
            ClientMessage::Ping(0x0102_0304_0506_0708),
            ClientMessage::CatalogAck(7),
        ] {
            let mut buf = BytesMut::new();
            message.encode(&mut buf);
            assert_eq!(ClientMessage::decode(body_of(buf)), Ok(message));
        }
    }

    #[test]
    fn server_messages_round_trip() {
        for message in [
            ServerMessage::Welcome {
                version: VERSION,
                resume_after: Some(41),
            },
            ServerMessage::Refused {
                reason: RefuseReason::DuplicateSource,
                detail: "source 7 is already connected".into(),
            },
            ServerMessage::Ack { sequence: 9 },
            ServerMessage::Pong(u64::MAX),
            ServerMessage::Catalog {
                version: 3,
                content_type: "text/plain".into(),
                body: Bytes::from_static(b"1 25544U 98067A"),
            },
            ServerMessage::Close {
                reason: CloseReason::Shutdown,
                final_ack: None,
                detail: "draining".into(),
            },
        ] {
            let mut buf = BytesMut::new();
            message.encode(&mut buf);
            assert_eq!(ServerMessage::decode(body_of(buf)), Ok(message));
        }
    }

    #[test]
    fn data_layout_is_the_documented_one() {
        let mut buf = BytesMut::new();
        encode_data(&mut buf, Priority::Emergency, 0x0102, b"ab");
        assert_eq!(
            &buf[..],
            &[0, 0, 0, 12, 0x02, 0x01, 0, 0, 0, 0, 0, 0, 0x01, 0x02, b'a', b'b']
        );
    }

    #[test]
    fn bad_bodies_name_their_cause() {
        let decode = |bytes: &'static [u8]| ClientMessage::decode(Bytes::from_static(bytes));
        assert_eq!(decode(&[]), Err(ProtocolError::Empty));
        assert_eq!(decode(&[0x7f]), Err(ProtocolError::UnknownType(0x7f)));
        assert_eq!(
            decode(&[DATA, 9, 0, 0, 0, 0, 0, 0, 0, 1]),
            Err(ProtocolError::InvalidPriority(9))
        );
        assert!(matches!(
            decode(&[DATA, 0, 0]),
            Err(ProtocolError::BadLength { .. })
        ));
        assert_eq!(
            decode(&[HELLO, 1, 5, 0, 0, 0, 1]),
            Err(ProtocolError::InvalidSourceKind(5))
        );
    }

    #[test]
    fn walk_keeps_partial_tail_and_stops_at_oversize() {
        let count = |buf: &[u8]| {
            let mut visited = 0;
            let walk = walk_messages(buf, 64, |_, _| {
                visited += 1;
                ControlFlow::Continue(())
            });
            (visited, walk)
        };
        let mut buf = BytesMut::new();
        encode_data(&mut buf, Priority::Routine, 1, b"x");
        encode_data(&mut buf, Priority::Routine, 2, b"y");
        buf.put_slice(&[0, 0, 0, 20, DATA]);
        let (visited, walk) = count(&buf);
        assert!(walk.oversize.is_none());
        assert_eq!(visited, 2);
        assert_eq!(
            buf.len() - walk.end,
            5,
            "partial message stays in the buffer"
        );

        let mut buf = BytesMut::new();
        encode_data(&mut buf, Priority::Routine, 1, b"x");
        buf.put_u32(1_000_000);
        let (visited, walk) = count(&buf);
        assert_eq!(visited, 1);
        assert_eq!(
            walk.oversize,
            Some(ProtocolError::FrameTooLarge {
                length: 1_000_000,
                max: 64
            })
        );
    }

    /// A CATALOG whose content type is not ASCII is refused, as the spec says it is ASCII. Found
    /// by fuzzing: read lossily, 86 bytes of `EC` became 258 bytes of replacement characters,
    /// which its one length byte cannot say again.
    #[test]
    fn a_catalog_content_type_that_is_not_ascii_is_refused() {
        let mut body = BytesMut::new();
        body.put_u8(0x86);
        body.put_u64(1);
        body.put_u8(86);
        body.put_slice(&[0xEC; 86]);
        body.put_slice(b"TLE");
        assert_eq!(
            ServerMessage::decode(body.freeze()),
            Err(ProtocolError::ContentTypeNotAscii)
        );
    }

    /// The example of `docs/ingest-protocol.md`, byte for byte.
    #[test]
    fn the_documented_example_is_what_the_code_writes() {
        let mut out = BytesMut::new();
        ClientMessage::Hello(Hello {
            version: VERSION,
            kind: SourceKind::LiveUplink,
            source_id: 7,
        })
        .encode(&mut out);
        encode_data(&mut out, Priority::Emergency, 0, b"ab");
        ServerMessage::Catalog {
            version: 3,
            content_type: "text/plain".into(),
            body: Bytes::from_static(b"TLE"),
        }
        .encode(&mut out);
        ClientMessage::CatalogAck(3).encode(&mut out);
        let documented = "00000007 01 02 00 00000007 \
                          0000000c 02 01 0000000000000000 6162 \
                          00000017 86 0000000000000003 0a 746578742f706c61696e 544c45 \
                          00000009 04 0000000000000003";
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, documented.split_whitespace().collect::<String>());
    }

    fn client_message() -> impl Strategy<Value = ClientMessage> {
        let hello = (any::<u8>(), arbitrary::source_kind(), any::<u32>());
        let payload = proptest::collection::vec(any::<u8>(), 0..64);
        let data = (arbitrary::priority(), 0..=MAX_SEQUENCE, payload);
        proptest::prop_oneof![
            hello.prop_map(|(version, kind, source_id)| ClientMessage::Hello(Hello {
                version,
                kind,
                source_id
            })),
            data.prop_map(|(priority, sequence, payload)| ClientMessage::Data(Data {
                priority,
                sequence,
                payload: payload.into(),
            })),
            any::<u64>().prop_map(ClientMessage::Ping),
            any::<u64>().prop_map(ClientMessage::CatalogAck),
        ]
    }

    fn server_message() -> impl Strategy<Value = ServerMessage> {
        let refuse = any::<u8>().prop_filter_map("a refusal", |c| RefuseReason::from_code(c).ok());
        let close = any::<u8>().prop_filter_map("a close", |c| CloseReason::from_code(c).ok());
        let resume = proptest::option::of(any::<u64>());
        let body = proptest::collection::vec(any::<u8>(), 0..64);
        // Up to 60 characters of up to 4 bytes: within the content type's length byte.
        let catalog = (any::<u64>(), "[ -~]{0,60}", body);
        proptest::prop_oneof![
            (any::<u8>(), resume.clone()).prop_map(|(version, resume_after)| {
                ServerMessage::Welcome {
                    version,
                    resume_after,
                }
            }),
            (refuse, "\\PC{0,40}")
                .prop_map(|(reason, detail)| ServerMessage::Refused { reason, detail }),
            any::<u64>().prop_map(|sequence| ServerMessage::Ack { sequence }),
            any::<u64>().prop_map(ServerMessage::Pong),
            catalog.prop_map(|(version, content_type, body)| ServerMessage::Catalog {
                version,
                content_type,
                body: body.into(),
            }),
            (close, resume, "\\PC{0,40}").prop_map(|(reason, final_ack, detail)| {
                ServerMessage::Close {
                    reason,
                    final_ack,
                    detail,
                }
            }),
        ]
    }

    /// A body whose type byte is mostly one the protocol defines, and whose rest is anything.
    fn any_body() -> impl Strategy<Value = Vec<u8>> {
        let types = vec![
            HELLO,
            DATA,
            PING,
            CATALOG_ACK,
            WELCOME,
            REFUSED,
            ACK,
            CLOSE,
            PONG,
            CATALOG,
        ];
        let kind = proptest::prop_oneof![proptest::sample::select(types), any::<u8>()];
        let rest = proptest::collection::vec(any::<u8>(), 0..24);
        (kind, rest).prop_map(|(kind, rest)| [vec![kind], rest].concat())
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(128))]

        /// Whatever a source sends, cut into whatever reads, the daemon's walk over its read
        /// buffer decodes the same messages, and keeps nothing once the last is whole.
        #[test]
        fn client_messages_decode_as_sent_across_any_reads(
            messages in proptest::collection::vec(client_message(), 0..16),
            sizes in pieces::read_sizes(),
        ) {
            let mut wire = BytesMut::new();
            messages.iter().for_each(|message| message.encode(&mut wire));
            let (mut buf, mut decoded) = (BytesMut::new(), Vec::new());
            for piece in pieces::cut(&wire, &sizes) {
                buf.extend_from_slice(piece);
                let walk = walk_messages(&buf, DATA_HEADER + 64, |_, body| {
                    decoded.push(ClientMessage::decode(Bytes::copy_from_slice(body)));
                    ControlFlow::Continue(())
                });
                proptest::prop_assert!(walk.oversize.is_none());
                buf.advance(walk.end);
            }
            proptest::prop_assert!(buf.is_empty());
            proptest::prop_assert_eq!(decoded, messages.into_iter().map(Ok).collect::<Vec<_>>());
        }

        /// Whatever the daemon sends, cut into whatever reads, a client's codec decodes the same
        /// messages and keeps nothing once the last is whole.
        #[test]
        fn server_messages_decode_as_sent_across_any_reads(
            messages in proptest::collection::vec(server_message(), 0..16),
            sizes in pieces::read_sizes(),
        ) {
            let mut wire = BytesMut::new();
            messages.iter().for_each(|message| message.encode(&mut wire));
            let (mut codec, mut buf, mut decoded) = (ClientCodec::default(), BytesMut::new(), Vec::new());
            for piece in pieces::cut(&wire, &sizes) {
                buf.extend_from_slice(piece);
                while let Some(message) = codec.decode(&mut buf).unwrap() {
                    decoded.push(message);
                }
            }
            proptest::prop_assert!(buf.is_empty());
            proptest::prop_assert_eq!(decoded, messages);
        }

        /// Any body decodes or names its fault, never panics; a client message the daemon
        /// accepts is exactly what its encoding writes, so no two encodings mean one message.
        #[test]
        fn any_body_decodes_or_names_its_fault(body in any_body()) {
            if let Ok(message) = ClientMessage::decode(Bytes::from(body.clone())) {
                let mut encoded = BytesMut::new();
                message.encode(&mut encoded);
                proptest::prop_assert_eq!(&body_of(encoded)[..], &body[..]);
            }
            let _ = ServerMessage::decode(Bytes::from(body));
        }

        /// A client's codec over any length-prefixed bodies, in any reads, yields what the body
        /// decoder makes of each, up to the first it refuses as invalid data.
        #[test]
        fn a_client_codec_over_any_bodies_stops_at_the_first_bad_one(
            bodies in proptest::collection::vec(any_body(), 0..8),
            sizes in pieces::read_sizes(),
        ) {
            let mut wire = BytesMut::new();
            for body in &bodies {
                wire.put_u32(body.len() as u32);
                wire.put_slice(body);
            }
            let mut expected = Vec::new();
            for body in bodies {
                match ServerMessage::decode(Bytes::from(body)) {
                    Ok(message) => expected.push(Ok(message)),
                    Err(err) => {
                        expected.push(Err(err));
                        break;
                    }
                }
            }
            let (mut codec, mut buf, mut decoded) = (ClientCodec::default(), BytesMut::new(), Vec::new());
            'read: for piece in pieces::cut(&wire, &sizes) {
                buf.extend_from_slice(piece);
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(message)) => decoded.push(Ok(message)),
                        Ok(None) => break,
                        Err(err) => {
                            proptest::prop_assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
                            let err = err.into_inner().and_then(|e| e.downcast::<ProtocolError>().ok());
                            decoded.push(Err(*err.expect("a protocol error")));
                            break 'read;
                        }
                    }
                }
            }
            proptest::prop_assert_eq!(decoded, expected);
        }
    }
}
