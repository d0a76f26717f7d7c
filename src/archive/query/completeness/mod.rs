//! What the archive holds of each source over a time window, and what it is missing: the runs of
//! sequences held, and each gap between them with its cause, retention's deletions or sequences
//! that never arrived (the source skipped them, or a link lost them).
//!
//! Why from the indexes: an operator asks this about a day or a pass, and a day of a busy station
//! is gigabytes. A sealed segment's index (`crate::archive::format::index`) holds each source's sequences
//! and the received times of its blocks, so a segment wholly inside the window is answered from
//! its index alone, one wholly outside is passed over, and only the blocks of the few segments the
//! window's ends cut through (and each shard's newest segment, which has no index yet) are read.
//! Retention's state (`crate::archive::format::retention_file`) says which sequences it deleted.
//!
//! A timeline ([`Timeline`]) divides the window into equal buckets and says, per source, how many
//! frames were received in each and how many sequences are missing after it, for a picture of the
//! window (the dashboard's bars). It reads nothing more: a frame read from its block counts in the
//! bucket of its received time; the frames of a segment answered from its index are spread evenly
//! over the segment's received span (the index has the span and each source's count, not each
//! frame's time); a gap counts in the bucket of the frame held before it, which for an indexed
//! segment is the segment's newest time. Under load a segment spans seconds, so the bars are
//! exact to a few seconds; at low rates the newest segment, unsealed, is read frame by frame.
//!
//! Its rooms, bottom up: [`Timeline`] and its buckets (`timeline.rs`); the answer's types
//! (`answer.rs`); what one source's frames gave (`gathered.rs`); the passes of merge groups
//! (`passes.rs`); the reading of the shards' segments, from their indexes or their blocks
//! (`reading.rs`), which with [`with_frames`] reads every frame of the window from its block
//! instead and hands the frames on, for the passes of stations (`crate::archive::query::passes`,
//! which need each frame's own times). The answer is typed: `ops::completeness_json` words it as JSON for
//! HTTP and `aggregator archive gaps --json`, the binary as text.

mod answer;
mod gathered;
mod passes;
mod reading;
mod timeline;

#[cfg(test)]
mod tests;

pub use answer::{ClockRecord, Completeness, Gap, GapCause, SeenFrame, SourceCompleteness};
pub use passes::{filled, merge_groups, passes, Filled, MergeGroups, Pass, PassStation};
pub use reading::{completeness, held_together, of_files, with_frames};
pub use timeline::{Bucket, Timeline};
