//! The ingest protocol (`docs/ingest-protocol.md`): what a source sends, as the daemon walks a
//! read buffer, and what the daemon sends, as a client's codec decodes it.

use std::ops::ControlFlow;

use aggregator::protocol::ingest::{walk_messages, ClientCodec, ClientMessage, ServerMessage};
use bytes::{Bytes, BytesMut};
use tokio_util::codec::Decoder;

/// A small frame limit, so that oversize lengths are reached as often as good ones.
const MAX_FRAME: usize = 4096;

/// A source's bytes through `walk_messages` and the decoder: every message visited lies within the
/// buffer, decodes the same with or without its payload, and encodes back to its own bytes; the
/// walk stops only at an oversize length or where the next message is incomplete.
pub(crate) fn client_messages(data: &[u8]) {
    let walk = walk_messages(data, MAX_FRAME, |at, body| {
        assert_eq!(&data[at..at + body.len()], body);
        let view = ClientMessage::view(body);
        match ClientMessage::decode(Bytes::copy_from_slice(body)) {
            Ok(message) => {
                assert!(view.is_ok());
                let mut encoded = BytesMut::new();
                message.encode(&mut encoded);
                assert_eq!(&encoded[..], &data[at - 4..at + body.len()]);
            }
            Err(err) => assert_eq!(view.err(), Some(err)),
        }
        ControlFlow::Continue(())
    });
    assert!(walk.end <= data.len());
    let rest = &data[walk.end..];
    if walk.oversize.is_none() && rest.len() >= 4 {
        let length = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        assert!(
            length > rest.len() - 4,
            "the walk stopped before a whole message"
        );
    }
}

/// The daemon's bytes through the client's codec: each message decoded encodes to the bytes it
/// came from, unless a text field was not UTF-8 (decoded lossily), and then to bytes that decode
/// to the same message.
pub(crate) fn server_messages(data: &[u8]) {
    let mut codec = ClientCodec::default();
    let mut buf = BytesMut::from(data);
    loop {
        let before = buf.clone();
        let message = match codec.decode(&mut buf) {
            Ok(Some(message)) => message,
            Ok(None) | Err(_) => break,
        };
        let original = &before[..before.len() - buf.len()];
        let mut encoded = BytesMut::new();
        message.encode(&mut encoded);
        if &encoded[..] != original {
            assert!(loose(&message), "{message:?} encodes to other bytes");
            let again = codec.decode(&mut encoded).ok().flatten();
            assert_eq!(again.as_ref(), Some(&message));
        }
    }
}

/// Whether a message has more than one spelling: text that lossy UTF-8 decoding changed, or an
/// absent option, whose value bytes are not read.
fn loose(message: &ServerMessage) -> bool {
    let text = match message {
        ServerMessage::Welcome { resume_after, .. } => return resume_after.is_none(),
        ServerMessage::Close {
            final_ack: None, ..
        } => return true,
        ServerMessage::Refused { detail, .. } | ServerMessage::Close { detail, .. } => detail,
        _ => return false,
    };
    text.contains(char::REPLACEMENT_CHARACTER)
}
