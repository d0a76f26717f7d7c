//! What moves through the daemon, and where it merges.
//!
//! Frames travel in batches (one source, one priority, one socket read) through the two-lane
//! priority fan-in into the processor, which fans every batch out to the archive's queue and to
//! lossy subscribers. Every capacity is counted in frames, so batching never raises the memory
//! bound, and every queue gives capacity back only when its stage is done with the batch: that is
//! what carries backpressure from the disk to the sockets.

pub mod fan_in;
pub(crate) mod fan_out;
pub mod processor;
pub mod queue;
pub mod shard;
