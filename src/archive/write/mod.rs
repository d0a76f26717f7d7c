//! The write side: how a frame becomes durable. The [`ArchiveConsumer`] takes the processor's
//! batches and applies the sync policy, the bound on what is written and not yet durable, and the
//! handling of failed writes; an [`ArchiveSink`] stores them. The durable sink, [`SegmentSink`]
//! (`writer`), appends records to a shard's newest segment and hands the file work to a disk
//! thread of its own (`disk`: syncs and roll-over, in order), which makes a segment durable a
//! piece at a time (`write_back`, paced below a cgroup's limit by `pace`) and releases its pages
//! once no reader needs them (`page_cache`); `files` are a segment file's steps; emergency frames
//! also go to a journal synced on its own (`journal`); `tracked` is what the writer remembers of
//! each source between records, and `recovery` reads it back from the newest segment at a start.
//!
//! The write side publishes, per shard, how far its files are durable
//! ([`DurableEnd`](crate::domain::position::DurableEnd)): the one thing readers take from it.

mod consumer;
mod disk;
mod files;
pub(crate) mod journal;
mod open;
mod pace;
mod page_cache;
pub(crate) mod recovery;
mod sink;
pub(crate) mod tracked;
mod write_back;
mod writer;

pub(crate) use consumer::{ArchiveConsumer, ArchiveSettings};
pub use open::open;
pub(crate) use sink::SyncPolicy;
pub use sink::{Archive, ArchiveSink, ArchiveTime, BoxFuture, CountingSink, JournalAppend};
pub use writer::SegmentSink;
