//! What every message of the follow protocol shares on the wire: the versions, the message
//! types, the lengths, and a position's bytes.

use bytes::{Buf, BufMut, BytesMut};

use crate::archive::format;
use crate::domain::position::Position;
use crate::domain::shard::MAX_SHARDS;

/// The protocol version SUBSCRIBE and SUBSCRIBED carry: the newest the daemon speaks.
pub const VERSION: u8 = 5;

/// The oldest version the daemon speaks: a subscription of version 3 gets no RECEPTION.
pub const OLDEST_VERSION: u8 = 3;

/// The longest SUBSCRIBE body the daemon reads (a length above it is refused): room for 549
/// sources and a position in each of 64 shards.
pub(crate) const MAX_SUBSCRIBE_LEN: usize = 4096;

/// The longest body a client must accept: FRAMES holding a whole record of the largest size.
pub const MAX_DAEMON_MESSAGE_LEN: usize = FRAMES_HEADER_LEN + format::MAX_BODY_LEN as usize;

/// A FRAMES message's bytes before its first frame.
pub(super) const FRAMES_HEADER_LEN: usize = 40;

/// A frame's bytes in FRAMES before its payload: sequence and payload length.
pub(super) const FRAME_ENTRY_LEN: usize = 12;

/// SUBSCRIBE's bytes before its sources, and each of its positions' bytes.
pub(super) const SUBSCRIBE_FIXED_LEN: usize = 7;
pub(super) const SHARD_POSITION_LEN: usize = 21;

pub(super) const SUBSCRIBE: u8 = 0x11;
pub(super) const SUBSCRIBED: u8 = 0x91;
pub(super) const REFUSED: u8 = 0x92;
pub(super) const END: u8 = 0x94;
pub(super) const CATALOG: u8 = 0x95;
/// FRAMES: 0x96, the type that names its shard (0x93 is not used).
pub(super) const FRAMES: u8 = 0x96;
pub(super) const SKIPPED: u8 = 0x97;
pub(super) const EARLIEST: u8 = 0x98;
pub(super) const RECEPTION: u8 = 0x99;
pub(super) const RECORDED_RECEPTION: u8 = 0x9A;

/// SUBSCRIBE's start byte: the start in its low bits, and this bit for "go on at the oldest
/// segment left when the next frames were deleted" ([`OnGap::Oldest`]).
///
/// [`OnGap::Oldest`]: crate::archive::read::OnGap::Oldest
pub(super) const ON_GAP_OLDEST: u8 = 0x80;

/// Bit 6 of SUBSCRIBE's start byte: a time window (since, until) follows the positions.
pub(super) const WINDOW: u8 = 0x40;

/// Bytes of a time window: since and until, u64 each.
pub(super) const WINDOW_LEN: usize = 16;

/// SKIPPED's bytes before its sources, and each source's.
pub(super) const SKIPPED_FIXED_LEN: usize = 22;
pub(super) const SKIPPED_SOURCE_LEN: usize = 13;

// A shard is one byte on the wire.
const _: () = assert!(MAX_SHARDS <= 256);

pub(super) fn put_position(dst: &mut BytesMut, position: Position) {
    dst.put_u64(position.segment);
    dst.put_u64(position.offset);
    dst.put_u32(position.index);
}

pub(super) fn get_position(body: &mut impl Buf) -> Position {
    Position {
        segment: body.get_u64(),
        offset: body.get_u64(),
        index: body.get_u32(),
    }
}
