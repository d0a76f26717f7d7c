//! The wire formats peers implement, below every stage that speaks them.
//!
//! [`ingest`] is the protocol of uplinks and replay feeds (`docs/ingest-protocol.md`): the
//! daemon's connections, the catalog's pre-encoded CATALOG message and `uplink-sim` all speak it.
//! [`ccsds`] and [`kiss`] are the ground segment's formats (`docs/ground-segment.md`): what
//! stations send into the links, and what the TM server sends to mission-control systems;
//! [`ax25`] is the radio frame a TNC's KISS frame holds around a packet; [`transfer_frames`] are
//! the transfer frames (TM, AOS) a station's deframer delivers with packets inside.

pub mod ax25;
pub mod ccsds;
pub mod ingest;
pub mod kiss;
pub mod transfer_frames;

/// What property tests of the formats share: a byte stream cut as a socket's reads may cut it.
#[cfg(test)]
pub(crate) mod pieces {
    use proptest::strategy::Strategy;

    /// The sizes of successive reads, taken again from the first once used up: 1 to 64 bytes.
    pub(crate) fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
        proptest::collection::vec(1usize..64, 1..16)
    }

    /// `bytes` in the successive pieces `sizes` cut (the last one shorter).
    pub(crate) fn cut<'a>(bytes: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> {
        let mut at = 0;
        sizes.iter().cycle().map_while(move |&size| {
            let piece = bytes.get(at..)?.get(..size.min(bytes.len() - at))?;
            at += piece.len();
            (!piece.is_empty()).then_some(piece)
        })
    }
}
