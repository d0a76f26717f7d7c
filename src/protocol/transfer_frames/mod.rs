//! CCSDS transfer frames, TM (CCSDS 132.0-B) and AOS (CCSDS 732.0-B), as stations and
//! gr-satellites' deframers deliver them: fixed-length frames, each behind the attached sync
//! marker or back to back, that carry the spacecraft's space packets per virtual channel.
//! `docs/ground-segment.md` ("Transfer frames") is the spec.
//!
//! A station that sends frames has done the radio's work (sync, Viterbi, Reed-Solomon) but not
//! the packet layer's, so the daemon does that part as Yamcs does: undo the pseudo-randomiser
//! (CCSDS 131.0-B), check the frame error control field, pick the spacecraft's configured
//! virtual channels, and per channel cut the packet stream at the first header pointer.
//!
//! The one invariant the extractor keeps: a packet is handed on only if every byte of it came
//! from frames of its channel received in an unbroken run of frame counts. A jump in the count
//! (a frame lost, or dropped as bad here) drops the packet then in reassembly, and the channel
//! waits for the next first header pointer before it trusts a packet boundary again. So a packet
//! is never stored half, nor glued from the halves of two.
//!
//! Pure, no I/O: [`TransferFrameReader`] takes one frame at a time, [`TransferFrameStream`] finds
//! frames in a byte stream, and [`TransferFrameWriter`] lays packets into frames (the tests' and a
//! simulated spacecraft's side).
//!
//! Layout, bottom up: `coding.rs` is the pseudo-randomiser and the FECF's CRC; `format.rs` a
//! mission's frame format and the parsing of one frame's headers; `extract.rs` the reader, with
//! the per-channel packet extraction that keeps the invariant above; `stream.rs` finds frames on a
//! byte stream or in a datagram; `writer.rs` lays packets into frames.

mod coding;
mod extract;
mod format;
mod stream;
mod writer;

pub use coding::randomize;
pub use extract::{Extracted, TransferFrameReader};
pub use format::TransferFrameError;
pub(crate) use format::MAX_TRANSFER_FRAME;
pub use format::{TransferFrameFormat, TransferFrameKind};
pub use stream::{TransferFrameCuts, TransferFrameStream};
pub use writer::TransferFrameWriter;

#[cfg(test)]
pub(crate) mod tests;
