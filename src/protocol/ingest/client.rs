//! What a source sends: HELLO, DATA, PING and CATALOG_ACK, encoded and decoded.

use bytes::{BufMut, Bytes, BytesMut};

use super::error::ProtocolError;
use super::{CATALOG_ACK, DATA, DATA_HEADER, HELLO, LENGTH_PREFIX, MAX_SEQUENCE, PING, VERSION};
use crate::domain::frame::{Priority, SourceKind};

/// The first message of every connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    /// The protocol version the source speaks: [`VERSION`](super::VERSION), or the HELLO is
    /// refused.
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

    /// Whether `body` (the bytes after the length prefix) is of a HELLO, well formed or not.
    pub fn is_hello(body: &[u8]) -> bool {
        body.first() == Some(&HELLO)
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
            // A well-formed HELLO of any version decodes: its version is the handshake's to refuse.
            [HELLO, version, kind, a, b, c, d]
                if version == VERSION || SourceKind::from_byte(kind).is_some() =>
            {
                Ok(MessageView::Hello(Hello {
                    version,
                    kind: SourceKind::from_byte(kind)
                        .ok_or(ProtocolError::InvalidSourceKind(kind))?,
                    source_id: u32::from_be_bytes([a, b, c, d]),
                }))
            }
            // Of another version, it may be longer or name another kind: named by its version.
            [HELLO, version, ..] if version != VERSION => Err(ProtocolError::OtherVersion(version)),
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
