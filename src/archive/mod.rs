//! Where every frame is stored.
//!
//! The archive is the consumer that must receive every frame: an acknowledgement promises that a
//! frame is stored, so nothing here may drop one. Its invariants:
//! - **Acknowledged means durable.** A frame is acknowledged once its segment's sync (under
//!   `archive.sync`) or its shard's emergency journal has made it durable, never before.
//! - **Append-only.** Segments are only appended to, and roll over at a size, so a crash can
//!   damage nothing but the tail of a shard's newest segment; a start reads that one segment back.
//! - **Readers stop at the durable end.** Each shard publishes how far its files are durable
//!   ([`DurableEnd`](crate::domain::position::DurableEnd)); no reader hands out a frame past it, so
//!   a position it gave survives a crash.
//! - **Deletion is whole sealed segments, recorded first.** Retention (and `archive prune`) writes
//!   what it deletes to `RETENTION` before it unlinks, so a reader or a restart can tell a deleted
//!   frame from a missing one.
//! - **Received times are the archive clock's** ([`crate::domain::clock`]): a step of the wall
//!   clock is recorded (a CLOCK record), never written into the stamps.
//! - **Every file an earlier build wrote is read in place** (`docs/compatibility.md`): segments of
//!   format versions 1 to 6, never rewritten, since a position is a byte offset in one.
//!
//! The files of a shard's directory (shard 0 in `archive.dir`, shard K in `shard-KK/`;
//! `docs/archive-format.md` gives each byte), and who writes and reads them:
//!
//! | file | written by | read by |
//! | --- | --- | --- |
//! | `segment-N.seg` | [`write`](mod@write) (appended, synced, sealed) | [`read`], recovery, [`query`], [`tools`]; deleted by [`retention`] |
//! | `segment-N.seg.new` | [`write`](mod@write)'s disk thread, before the previous segment is durable | nobody: recovery deletes it |
//! | `segment-N.index` | [`write`](mod@write) at sealing; any reader rebuilds a missing or stale one | [`read`], [`retention`], [`query`], [`tools`]; each index's received span is kept in the archive's span cache (`format::index::SpanCache`), shared by its writers, retention and readers |
//! | `emergency-G.journal` | [`write`](mod@write)'s journal thread; deleted once the segments hold its frames | recovery, [`tools`] |
//! | `RETENTION` | [`retention`], `archive prune` | [`read`] (what was skipped), [`query`], [`tools`] |
//! | `LOCK` | held by the daemon, `archive repair` and `archive prune` | |
//!
//! Its rooms, bottom up; each imports only the rooms below it (`tests/layers.rs` checks it):
//! - [`format`](mod@format): the bytes on disk and nothing else: file names and listings, records and their
//!   codec, whole-file scans and repair, a sealed segment's index, the `RETENTION` file.
//! - [`retention`]: an archive that never fills its disk: which sealed segments to delete, and
//!   the deleting.
//! - [`write`](mod@write): how a frame becomes durable: the consumer with its sync policy, the segment
//!   writer and its disk thread, the emergency journal, recovery at a start.
//! - [`read`]: how the files are read back, up to each shard's durable end: one segment's plan
//!   for a window and its read past damage, cursors, time windows, shards merged, what a reader
//!   skipped.
//! - [`query`]: questions asked of the whole archive through the read side: completeness (by
//!   read's segment plan and damage pass), export.
//! - [`tools`]: the operators' `verify`, `inspect`, `repair`, `prune`, `export` and `upgrade` of
//!   a stopped archive.
//!
//! Errors: every room fails with one type, [`format::ArchiveError`] (in the bottom room, so all
//! rooms share it), and every variant names the file: `Damaged` (a file or record that does not
//! decode, with its offset and a typed reason, `format::DamageReason`, made text only where it is
//! printed), `Unrepaired` (damage a repair leaves in place, and the way out), `Version` (a segment
//! or journal of a format version this build does not read), `Io` (a failed step, with its
//! operation), `Transient` (a step that lost nothing and may be tried again: `is_transient`),
//! `Locked` (another process holds a shard's `LOCK`) and `Broken` (the archive cannot go on after
//! an earlier failure). Callers match the
//! variants, never an `io::ErrorKind` or a message's text; where a caller outside the archive
//! still speaks `io::Error`, `From<ArchiveError>` keeps the error inside it. The read side wraps
//! it in its [`read::ReadError`]; the write-back pace has its own `PaceError`. An export's errors
//! writing its output stay `io::Error`: they are not the archive's.

pub mod format;
pub mod query;
pub mod read;
pub mod retention;
pub mod tools;
pub mod write;
