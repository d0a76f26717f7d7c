//! The archive's on-disk format: segment files of length-prefixed, checksummed records
//! (`docs/archive-format.md` describes it byte by byte).
//!
//! Why it is shaped this way:
//! - **Append-only segments.** The archive only ever appends, so a crash can damage nothing but the
//!   end of the newest segment. Segments roll over at a size limit, so recovery reads one bounded
//!   file and old segments can be copied or deleted whole. A name carries a zero-padded index
//!   (`segment-00000000000000000001.seg`), so the lexical order of the names is their write order.
//! - **A magic per file** (`TLMSEG06`): a tool pointed at the wrong file fails at byte 0 instead of
//!   reading nonsense, and the trailing digits are the format version. This version is written,
//!   and every version a build wrote is read ([`READ_VERSIONS`]: each lacks the record types
//!   added after it, `record::versions_of`); a file of another (`TLMSEGnn`) is refused with an
//!   error naming the versions, never taken for damage.
//! - **Length, then CRC, then body.** The length lets a reader skip a record without knowing its
//!   type; the CRC-32 of the body tells a complete record from a torn or damaged one. The length is
//!   outside the CRC, so a damaged length is caught by the body's CRC not matching, or by no record
//!   being readable after it (see below).
//! - **Self-describing records.** A frame record carries everything the pipeline's `Frame` does plus
//!   the receive time, so the archive can be verified, inspected and replayed without the daemon.
//! - **A batch per record.** The daemon writes each batch (frames of one source and priority from one
//!   socket read) as one FRAMES record: one CRC over the whole batch instead of one per frame, and 12
//!   bytes of fields per frame instead of 31: with small payloads a record per frame cost the writer
//!   more than the frame cost the whole pipeline. Readers see frames either way.
//!   WATERMARK and STORED RUN records carry the acknowledgement state, so recovery needs only the
//!   newest segment: when a segment is opened, its writer first checkpoints every source's state in
//!   it. A STORED RUN covers a run of sequences: a checkpoint holds a few per source where one
//!   record per frame cost the writer milliseconds per segment.
//! - **Big-endian integers**, like the wire protocols (`docs/ingest-protocol.md`).
//!
//! Torn or corrupt: a crash leaves at most an incomplete write at the end of the newest segment (a
//! record cut short, or, on some file systems, zero-filled or stale blocks). A reader cannot tell a
//! damaged last record from a torn one, and truncating either loses nothing that was ever complete.
//! So a bad record after which nothing valid can be found is [`ScanEnd::Torn`], and
//! [`repair_tail`] cuts it; a bad record followed by a valid one, a record whose CRC matches but
//! whose contents are impossible, or a bad magic is [`ScanEnd::Corrupt`]: damage in the middle,
//! which is reported and never "repaired" by deleting good data.
//!
//! A scan does not stop at damage: every record has a length and a CRC, so after a bad record it
//! searches forward for the next offset where a valid record starts and goes on from there. A
//! flipped byte in an old segment costs the record it is in, not the rest of the segment, and
//! every damaged byte range is reported ([`Damage`]), with why as a [`DamageReason`] that is made
//! text only where it is printed.
//!
//! Nothing read from disk is trusted: every error names the file and the byte offset.
//!
//! This room holds the bytes on disk and nothing else: the file names and how a directory is
//! listed (`names`, `layout`), the records and their codec (`record`, `decode`), whole-file
//! scans, repair of a torn tail and ranged reads (`scan`), frames as records outside a segment
//! (`records`), a sealed segment's [`index`] and the
//! [`retention_file`] (`RETENTION`). Every other room of the archive reads and writes through it.
//! Every decoder here reads bytes one way, through `input`'s checked cursor, so that short or
//! damaged bytes are an error and never a panic.

mod damage;
mod decode;
mod error;
pub mod index;
mod input;
mod layout;
mod names;
mod record;
mod records;
pub mod retention_file;
mod scan;
#[cfg(test)]
mod tests;

pub use damage::{DamageReason, DeliveryName, FrameFault, Kept};
pub(crate) use error::sync_dir;
pub use error::{ArchiveError, FileDamage};
pub use layout::{list_shard_segments, shard_dir, ShardSegments};
pub(crate) use layout::{list_shards, lock_shards};
pub(crate) use names::{
    journal_name, list_journals, list_staged, lock_directory, segment_index, staged_name,
};
pub use names::{list_segments, segment_name};
pub use record::*;
pub use records::{decode_frame_records, decode_message_records, encode_frame_records};
pub use records::{NotFrameRecords, RecordsLen};
pub use scan::*;
