//! The follow protocol (`docs/follow-protocol.md`): a consumer's SUBSCRIBE as the daemon decodes
//! it, and the daemon's messages as `aggregator tail` decodes them.

use aggregator::follow::protocol::{DaemonMessage, Subscription};
use bytes::{Bytes, BytesMut};

/// A SUBSCRIBE body: decoded, it encodes to bytes that decode to the same subscription and
/// encode to themselves (a window of no bounds and positions out of shard order have one
/// spelling once encoded); a refusal always says why.
pub(crate) fn subscribe(data: &[u8]) {
    match Subscription::decode(data) {
        Ok(subscription) => {
            let encoded = encode(&subscription);
            let again = Subscription::decode(&encoded[4..]).expect("re-encoded SUBSCRIBE decodes");
            assert_eq!(again, subscription);
            assert_eq!(encode(&again), encoded);
        }
        Err(refused) => assert!(!refused.to_string().is_empty()),
    }
}

fn encode(subscription: &Subscription) -> BytesMut {
    let mut encoded = BytesMut::new();
    subscription.encode(&mut encoded);
    let length = u32::from_be_bytes([encoded[0], encoded[1], encoded[2], encoded[3]]);
    assert_eq!(length as usize, encoded.len() - 4, "the length prefix");
    encoded
}

/// A daemon's message body: decoded, it encodes back to the same bytes, unless its detail text
/// was not UTF-8, and then to bytes that decode to the same message.
pub(crate) fn daemon_messages(data: &[u8]) {
    let Ok(message) = DaemonMessage::decode(Bytes::copy_from_slice(data)) else {
        return;
    };
    let mut encoded = BytesMut::new();
    message.encode(&mut encoded);
    if &encoded[4..] != data {
        let detail = match &message {
            DaemonMessage::Refused { detail, .. } | DaemonMessage::End { detail, .. } => detail,
            _ => panic!("{message:?} encodes to other bytes"),
        };
        assert!(detail.contains(char::REPLACEMENT_CHARACTER));
        let again = DaemonMessage::decode(encoded.freeze().slice(4..));
        assert_eq!(again.as_ref(), Ok(&message));
    }
}
