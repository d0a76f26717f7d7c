//! The client side's codec, for `Framed`: what `uplink-sim`, the benchmark and the tests speak
//! where throughput does not matter.

use bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder, LengthDelimitedCodec};

use super::client::ClientMessage;
use super::error::ProtocolError;
use super::server::ServerMessage;
use super::MAX_SERVER_MESSAGE;

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
