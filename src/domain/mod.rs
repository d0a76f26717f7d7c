//! The domain types every stage shares, and that import no stage.
//!
//! A frame is born in a connection, travels in a [`batch::Batch`] through the pipeline, is stored
//! by the archive and read back by followers and sinks; each of those stages names the frame, its
//! [`source::Source`], its ledger's spans and resume points, the sequences already stored and the
//! followers' positions in the same words, so those words live here, below all of them.

pub mod batch;
pub mod catalog;
pub mod clock;
pub mod display;
pub mod filter;
pub mod frame;
pub mod handover;
pub mod ledger;
pub mod position;
pub mod readers;
pub mod reception;
pub mod replication;
pub mod sequence_set;
pub mod shard;
pub mod source;
pub mod transfer_frame_counts;
pub mod units;
