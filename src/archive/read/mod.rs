//! The archive's read side: where a reading starts ([`Start`]), which frames it wants
//! ([`FrameFilter`](crate::domain::filter::FrameFilter), received times included, which the segments' indexes find), a cursor per shard that reads the segment files up to each shard's durable
//! end (`ShardCursors`), the runs of frames it hands back ([`FrameRun`]), why it cannot go on
//! ([`ReadError`]) or what it skipped when it goes on past deleted segments ([`OnGap`],
//! [`Skipped`]), and where readers run (`spawn_low_priority`, `LowPriorityRuntime`, `ReaderTasks`).
//! Below the cursors, one segment as any reader reads it (`segment.rs`: what of a sealed one a
//! window needs, by its index, and a read that passes over damaged records), which completeness
//! (`crate::archive::query`) drives too.
//!
//! Why beside the writer and not in one of its readers: the follow server, the TM outputs and the
//! NATS sink all read the same files in the same way, and only the archive knows its format, its
//! layout and what a missing segment means. As vector-buffers' disk buffer keeps `reader.rs`
//! beside `writer.rs`, the reading lives here once, typed in the archive's words, and each reader
//! says the outcome in its own: the follow protocol puts runs and reasons on the wire, a TM output
//! takes the packets out of the runs, the sink publishes frames.
//!
//! How it reads: each shard's writer publishes how far its files are durable
//! ([`DurableEnd`](crate::domain::position::DurableEnd), a `watch`); a reader reads the records up to it, a bounded
//! chunk at a time, and then waits for it to move. History and live are the same loop, so the
//! switch from one to the other can neither lose nor repeat a frame, and a reader only ever hands
//! out durable frames: a position it gives survives a crash. Reads block on the disk and run
//! through `spawn_blocking`; a reader reads files, never the pipeline's memory, so a slow reader
//! is only further behind in the files, and ingest, the writer and the drain never wait for it.

mod cursor;
mod error;
mod filter;
mod gap;
mod run;
mod segment;
mod shards;
mod start;
mod stopped;
mod tasks;
#[cfg(test)]
pub(crate) mod test_archives;
mod walk;
mod window;
#[cfg(test)]
mod window_tests;

pub use error::{within_archive, DamagedRange, ReadError};
pub use gap::{OnGap, Skipped};
pub use run::{ArchivedFrame, FrameRun};
pub(crate) use segment::{Piece, SegmentFile, Wanted};
pub use shards::DurableEnds;
pub(crate) use shards::ShardCursors;
pub use start::{Start, StartError};
pub(crate) use stopped::stopped_ends;
pub(crate) use tasks::{spawn_low_priority, spawn_reader, LowPriorityRuntime, ReaderTasks};
pub(crate) use walk::ShardWalk;
pub use window::Earliest;
