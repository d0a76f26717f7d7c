//! The wire protocol, shared by the daemon, `uplink-sim` and the benchmark's load client.
//!
//! Every message is a big-endian `u32` length followed by that many body bytes: the default format
//! of `tokio_util`'s `LengthDelimitedCodec`, so any client can use that codec. The body starts with a
//! type byte. `docs/ingest-protocol.md` specifies every byte; this module is the only code that knows them.
//!
//! The daemon's ingest path does not decode message by message through the codec: [`walk_messages`]
//! visits every complete message of a read buffer in one pass, so a socket read of hundreds of
//! frames costs one buffer split.
//!
//! Layout: this file holds the numbers every message shares (the version, the limits, the type
//! bytes); `error.rs` why a message is refused; `client.rs` what a source sends and `server.rs` what
//! the daemon sends, each with its encoding and decoding; `walk.rs` the ingest path's pass over a
//! read buffer; `codec.rs` the client side's `tokio_util` codec.

mod client;
mod codec;
mod error;
mod server;
mod walk;

pub use client::{encode_data, ClientMessage, Data, Hello, MessageView};
pub use codec::ClientCodec;
pub use error::ProtocolError;
pub use server::{CloseReason, RefuseReason, ServerMessage};
pub use walk::walk_messages;
pub use walk::Walk;

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

#[cfg(test)]
mod tests;
