//! Why the archive cannot be read where a reader asks, as a type: each reader says it in its own
//! words (the follow protocol's REFUSED and END reasons, a TM output's log, the NATS sink's stop),
//! and the detail is the same text whoever reports it.
//!
//! Locating a start can fail on the position a reader brings ([`ReadError::UnknownPosition`] and
//! the variants after it); reading on can fail on the files ([`ReadError::SegmentDeleted`],
//! [`ReadError::Damaged`]); either can find the files unreadable.

use std::path::Path;

use crate::archive::format::{ArchiveError, Damage, FileDamage};
use crate::domain::position::DurableEnd;
use crate::domain::position::ShardPosition;

/// Why a reader of the archive cannot start or go on.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The next segment to read is gone (an operator deleted it): reading on would skip its frames.
    #[error(
        "segment {segment} of shard {shard} is no longer in the archive; its frames cannot be read"
    )]
    SegmentDeleted { shard: usize, segment: u64 },
    /// A durable record does not decode: the file, the offset, and why.
    #[error(transparent)]
    Damaged(FileDamage),
    /// The files could not be read (the error names the file).
    #[error(transparent)]
    Unreadable(#[from] ArchiveError),
    /// No frame is at a position: no record starts there, or the record holds no such frame.
    #[error("{at}: {why}")]
    UnknownPosition { at: ShardPosition, why: String },
    /// A position is at or beyond its shard's durable end: this archive never gave it.
    #[error("{at} is at or past shard {}'s durable end {}:{}", at.shard, end.segment, end.len)]
    PositionPastEnd { at: ShardPosition, end: DurableEnd },
    /// A position's segment is not in its shard any more (an operator deleted it).
    #[error("{at}: segment {} of shard {} is not in the archive", at.position.segment, at.shard)]
    PositionDeleted { at: ShardPosition },
    /// A position names a shard the archive does not have.
    #[error("{at}: this archive has no shard {} (its shards: {})", at.shard, listed(shards))]
    UnknownShard {
        at: ShardPosition,
        /// The shards it has.
        shards: Vec<usize>,
    },
}

/// Damaged bytes a reader passed over (`ShardCursors::passing_damage`): what `archive verify`
/// reports of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamagedRange {
    pub shard: usize,
    pub segment: u64,
    /// The bytes of the segment: from the damaged record to where reading went on (the next
    /// valid record, or the end of what could be read), and why the record did not decode.
    pub bytes: Damage,
}

impl DamagedRange {
    /// Why, as a reader tells it: the offset where the damage was found and the reason (`offset
    /// 283: CRC mismatch ...`), naming no file (the range names the shard and segment, and goes
    /// to remote clients, who must not learn the server's paths).
    pub fn says(&self) -> String {
        let reason = &self.bytes.reason;
        let offset = reason.offset_when_met_at(self.bytes.start);
        format!("offset {offset}: {reason}")
    }
}

impl std::fmt::Display for DamagedRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "shard {} segment {} bytes {}..{} damaged, passed over: {}",
            self.shard,
            self.segment,
            self.bytes.start,
            self.bytes.end,
            self.says()
        )
    }
}

/// `text` (an error's) as a client of the daemon is told it: the files of the archive directory
/// `root` named from it (`shard-01/segment-00000000000000000003.seg`), so that an answer says
/// which file, not where the server keeps the archive; the daemon's log names them whole.
pub fn within_archive(text: &str, root: &Path) -> String {
    let root = root.display().to_string();
    text.replace(&format!("{root}/"), "").replace(&root, ".")
}

/// `shards` joined by commas.
fn listed(shards: &[usize]) -> String {
    let shards: Vec<String> = shards.iter().map(usize::to_string).collect();
    shards.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::format::DamageReason;
    use crate::domain::position::Position;

    /// A CRC mismatch at offset 8 of the file at `path`.
    fn crc_mismatch(path: &Path) -> ReadError {
        ReadError::Damaged(FileDamage {
            path: path.to_path_buf(),
            offset: 8,
            reason: DamageReason::CrcMismatch {
                stored: 0x26763dac,
                computed: 0x5e92b9ee,
                len: 119,
            },
        })
    }

    /// The texts followers receive as REFUSED's and END's detail, and the logs show.
    #[test]
    fn each_error_says_what_happened_in_the_words_readers_rely_on() {
        let at = ShardPosition {
            shard: 1,
            position: Position {
                segment: 4,
                offset: 8,
                index: 2,
            },
        };
        let cases = [
            (
                ReadError::SegmentDeleted {
                    shard: 1,
                    segment: 5,
                },
                "segment 5 of shard 1 is no longer in the archive; its frames cannot be read",
            ),
            (
                ReadError::UnknownPosition {
                    at,
                    why: "no record starts at offset 8".into(),
                },
                "1/4:8:2: no record starts at offset 8",
            ),
            (
                ReadError::PositionPastEnd {
                    at,
                    end: DurableEnd { segment: 4, len: 8 },
                },
                "1/4:8:2 is at or past shard 1's durable end 4:8",
            ),
            (
                ReadError::PositionDeleted { at },
                "1/4:8:2: segment 4 of shard 1 is not in the archive",
            ),
            (
                ReadError::UnknownShard {
                    at,
                    shards: vec![0, 2],
                },
                "1/4:8:2: this archive has no shard 1 (its shards: 0, 2)",
            ),
            (
                crc_mismatch(Path::new("seg")),
                "seg: offset 8: CRC mismatch (stored 26763dac, computed 5e92b9ee) over a 119-byte \
                 body",
            ),
        ];
        for (err, text) in cases {
            assert_eq!(err.to_string(), text);
        }
    }

    #[test]
    fn a_client_is_told_the_archive_s_files_not_where_the_server_keeps_them() {
        let root = Path::new("/var/lib/aggregator/archive");
        let file = root.join("shard-01/segment-00000000000000000003.seg");
        let told = within_archive(&crc_mismatch(&file).to_string(), root);
        assert_eq!(
            told,
            "shard-01/segment-00000000000000000003.seg: offset 8: CRC mismatch (stored 26763dac, \
             computed 5e92b9ee) over a 119-byte body"
        );
        let whole = within_archive("cannot list /var/lib/aggregator/archive: gone", root);
        assert_eq!(whole, "cannot list .: gone");
    }
}
