//! The operators' tools on top of the archive (`docs/archive-tools.md`), one file each:
//! - [`verify`](verify()): every record's CRC, and per source the counts, gaps and duplicates.
//! - [`inspect`](inspect()): the records, one at a time, that a filter wants.
//! - [`repair`]: the damaged ranges of each shard's newest segment moved aside.
//! - [`prune`]: the oldest sealed segments deleted, as retention does.
//! - [`export`]: the frames of a window written to a file.
//! - [`upgrade`]: an archive an earlier build wrote, read through and its indexes made current.
//!
//! (`gaps` is [`crate::archive::query::completeness`].) Beside them, [`journals`]: the frames of
//! the emergency journals that no segment holds, which `verify` counts, `inspect` lists and the
//! replay plays.
//!
//! Every tool reads every shard of the archive (`archive::layout`): shard 0 is the directory
//! itself, so an archive written before shards reads as it always did. Each returns what it
//! found as types; the binary (`src/bin/aggregator/archive_cli/`) words them and turns them into an
//! exit status.

pub mod export;
mod inspect;
pub mod journals;
pub mod prune;
pub mod repair;
pub mod upgrade;
mod verify;

pub use inspect::{inspect, InspectSummary, Listed};
pub use verify::{
    verify, JournalCheck, MissingRun, RangeCheck, SegmentCheck, ShardCheck, SourceCheck,
    VerifyReport,
};
