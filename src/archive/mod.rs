//! Where every frame is stored.
//!
//! The archive is the consumer that must receive every frame: an acknowledgement promises that a
//! frame is stored, so nothing here may drop one. Its rooms, bottom up; each imports only the
//! rooms below it (`tests/layers.rs` checks it):
//! - [`format`]: the bytes on disk and nothing else: file names and listings, records and their
//!   codec, whole-file scans and repair, a sealed segment's index, the `RETENTION` file.
//! - [`retention`]: an archive that never fills its disk: which sealed segments to delete, and
//!   the deleting.
//! - [`write`]: how a frame becomes durable: the consumer with its sync policy, the segment
//!   writer and its disk thread, the emergency journal, recovery at a start.
//! - [`read`]: how the files are read back, up to each shard's durable end: cursors, time
//!   windows, shards merged, what a reader skipped.
//! - [`query`]: questions asked of the whole archive through the read side: completeness, export.
//! - [`tools`]: the operators' `verify`, `inspect`, `repair`, `prune` and `export` of a stopped
//!   archive.

pub mod format;
pub mod query;
pub mod read;
pub mod retention;
pub mod tools;
pub mod write;
