//! What a shard's retention has deleted, kept in `RETENTION` in the shard's directory.
//!
//! A deletion must leave nothing that a reader or a restart relies on to chance. Resume points are
//! safe by construction (recovery reads the newest segment, which is never deleted), but two
//! things are known only from the deleted segments themselves: which frames of each source they
//! held (so that `verify` can tell a frame retention deleted from one that is missing, and a
//! follower can be told how many frames of each source it skipped), and where the shard's
//! retained segments begin. Both go into this file before a segment is unlinked:
//!
//! 1. the new state (the first retained segment, each source's deleted sequences) is written to
//!    `RETENTION.new`, synced, renamed over `RETENTION`, and the directory synced;
//! 2. the segments below the first retained one, and their index files, are unlinked, and the
//!    directory is synced.
//!
//! A power cut between the two leaves segments the state says are deleted: the next start (or
//! `archive prune`) unlinks them ([`ShardState::finish_deletions`]). A cut before the rename leaves
//! the old state and every segment: nothing happened. So the archive a start finds is always one
//! the state describes. The file is small: each source's deleted sequences are a few runs (its
//! oldest frames, and the emergencies that overtook frames still retained), merged past
//! [`MOST_RUNS`].

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::damage::DamageReason;
use super::error::sync_dir;
use super::error::ArchiveError;
use super::index;
use super::index::{SegmentIndex, SourceSpan, SourceSpans};
use crate::domain::frame::{SourceKey, SourceKind};

const MAGIC: &[u8; 8] = b"TLMRET01";
/// The state file's name in a shard's directory.
pub(crate) const STATE_FILE: &str = "RETENTION";

/// A source's deleted sequences are kept as at most this many runs: past it the two oldest runs
/// merge, taking in the sequences between them. The holes near the top are frames still retained
/// (routine frames an emergency overtook into the segment before), which must stay holes until
/// they are deleted too: hundreds at a time under load. The holes that last are gaps in what the
/// source sent (a space-link loss), which only grow in number: the oldest of them merge away.
const MOST_RUNS: usize = 1024;

/// What retention deleted of one source, in one shard: its frames (counted, not read from the
/// sequences, which merging widens) and their sequences.
pub(crate) type Pruned = SourceSpan;

/// One shard's retention state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShardState {
    /// Every segment below this index is deleted; 0 before the first deletion.
    pub first_retained: u64,
    pub deleted_segments: u64,
    pub deleted_bytes: u64,
    /// When the last deletion was written, nanoseconds since the Unix epoch; 0 before one.
    pub last_deletion_ns: u64,
    /// Each source's deleted frames.
    pub pruned: SourceSpans,
}

/// A segment to delete, and what it held.
#[derive(Debug, Clone)]
pub struct Deleted {
    pub segment: u64,
    /// Its bytes on disk, the index file's included.
    pub bytes: u64,
    pub contents: SegmentIndex,
}

/// A shard's segments that retention has not deleted, by index, and the state that says so: read
/// before the listing, so that a segment retention deletes meanwhile (it writes the state, then
/// unlinks) is at worst listed and gone when opened, never missing unexplained.
#[derive(Debug, Clone, Default)]
pub struct Retained {
    pub state: ShardState,
    pub segments: Vec<(u64, PathBuf)>,
}

impl Retained {
    /// The shard directory `dir`'s retained segments.
    pub fn read(dir: &Path) -> Result<Retained, ArchiveError> {
        let state = ShardState::read(dir)?;
        let mut segments = super::names::list_segments(dir)?;
        segments.retain(|(index, _)| *index >= state.first_retained);
        Ok(Retained { state, segments })
    }
}

impl ShardState {
    /// The state in `dir`; the empty state when there is none. A damaged file is an error naming
    /// it (never a reason to delete anything).
    pub fn read(dir: &Path) -> Result<ShardState, ArchiveError> {
        let path = dir.join(STATE_FILE);
        match fs::read(&path) {
            Ok(bytes) => decode(&bytes)
                .ok_or_else(|| ArchiveError::damaged(&path, 0, DamageReason::RetentionState)),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(ShardState::default()),
            Err(err) => Err(ArchiveError::io(&path, "read")(err)),
        }
    }

    /// What a source's deleted frames are, if retention deleted any.
    pub fn pruned(&self, source: SourceKey) -> Option<&Pruned> {
        self.pruned.get(&(source.0.to_byte(), source.1))
    }

    /// Every source's deleted frames, with their kinds decoded.
    pub fn sources(&self) -> impl Iterator<Item = (SourceKey, &Pruned)> {
        self.pruned
            .iter()
            .filter_map(|(&(kind, id), pruned)| Some(((SourceKind::from_byte(kind)?, id), pruned)))
    }

    /// Deletes `segments` (the oldest of the shard in `dir`, in index order) crash-safely: the
    /// state that names them deleted first, then the files. `now_ns` dates the deletion.
    pub fn delete(
        &mut self,
        dir: &Path,
        segments: &[Deleted],
        now_ns: u64,
    ) -> Result<(), ArchiveError> {
        let Some(last) = segments.last() else {
            return Ok(());
        };
        let mut next = self.clone();
        for deleted in segments {
            next.absorb(deleted);
        }
        next.first_retained = last.segment + 1;
        next.last_deletion_ns = now_ns;
        next.write(dir)?;
        *self = next;
        self.finish_deletions(dir)
    }

    /// Unlinks the segments (and index files) below the first retained one that are still in
    /// `dir`: after [`Self::delete`]'s state was written, or left by a crash between its two
    /// steps. Returns after the directory is synced.
    pub fn finish_deletions(&self, dir: &Path) -> Result<(), ArchiveError> {
        let mut removed = false;
        for (segment, path) in super::names::list_segments(dir)? {
            if segment >= self.first_retained {
                break;
            }
            match fs::remove_file(&path) {
                Err(err) if err.kind() != io::ErrorKind::NotFound => {
                    return Err(ArchiveError::io(&path, "delete")(err));
                }
                _ => removed = true,
            }
            index::remove(dir, segment)?;
        }
        if removed {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// Adds a deleted segment's frames and bytes.
    fn absorb(&mut self, deleted: &Deleted) {
        self.deleted_segments += 1;
        self.deleted_bytes += deleted.bytes;
        for (&key, span) in &deleted.contents.sources {
            let pruned = self.pruned.entry(key).or_default();
            pruned.frames += span.frames;
            for (first, last) in span.sequences.runs() {
                pruned.sequences.insert_run(first, last);
            }
            pruned.sequences.merge_oldest_past(MOST_RUNS);
        }
    }

    /// Writes the state durably: a new file, synced, renamed over the old one, the directory
    /// synced.
    fn write(&self, dir: &Path) -> Result<(), ArchiveError> {
        let path = dir.join(STATE_FILE);
        let staged = staged(dir);
        let mut bytes = Vec::with_capacity(64 + self.pruned.len() * 48);
        self.encode(&mut bytes);
        let mut file = fs::File::create(&staged).map_err(ArchiveError::io(&staged, "create"))?;
        file.write_all(&bytes)
            .and_then(|()| file.sync_all())
            .map_err(ArchiveError::io(&staged, "write"))?;
        fs::rename(&staged, &path).map_err(ArchiveError::io(&staged, "rename"))?;
        sync_dir(dir)
    }

    /// Appends the file's bytes: [`index::encode_file`] with this state's head and sources.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let head = [
            self.first_retained,
            self.deleted_segments,
            self.deleted_bytes,
            self.last_deletion_ns,
        ];
        index::encode_file(out, MAGIC, head, &self.pruned, |_| ());
    }
}

/// The name the state is written under before it replaces the old one.
fn staged(dir: &Path) -> PathBuf {
    dir.join(format!("{STATE_FILE}.new"))
}

/// Reads the file's bytes; `None` when they are not a whole state file with a matching CRC.
pub fn decode(bytes: &[u8]) -> Option<ShardState> {
    let ([first_retained, deleted_segments, deleted_bytes, last_deletion_ns], pruned, ()) =
        index::decode_file(bytes, MAGIC, |_| Some(()))?;
    Some(ShardState {
        first_retained,
        deleted_segments,
        deleted_bytes,
        last_deletion_ns,
        pruned,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::format;

    fn contents(source: u32, sequences: std::ops::Range<u64>) -> SegmentIndex {
        let mut contents = SegmentIndex::default();
        contents.add(8, (SourceKind::LiveUplink, source), 1, sequences);
        contents
    }

    fn scratch(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("retention-state-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn segments(dir: &Path) -> Vec<u64> {
        let listed = format::list_segments(dir).unwrap();
        listed.into_iter().map(|(index, _)| index).collect()
    }

    #[test]
    fn a_deletion_writes_the_state_then_unlinks_and_reads_back() {
        let dir = scratch("delete");
        for segment in 1..=4 {
            fs::write(dir.join(format::segment_name(segment)), format::MAGIC).unwrap();
            contents(1, 0..1)
                .write(&index::index_path(&dir, segment))
                .unwrap();
        }
        let mut state = ShardState::read(&dir).unwrap();
        assert_eq!(state, ShardState::default());
        let deleted = [
            Deleted {
                segment: 1,
                bytes: 100,
                contents: contents(7, 0..10),
            },
            Deleted {
                segment: 2,
                bytes: 50,
                contents: contents(7, 12..20),
            },
        ];
        state.delete(&dir, &deleted, 99).unwrap();
        assert_eq!(segments(&dir), [3, 4]);
        assert!(!index::index_path(&dir, 1).exists());
        assert!(index::index_path(&dir, 3).exists());
        let read = ShardState::read(&dir).unwrap();
        assert_eq!(read, state);
        assert_eq!(
            (
                read.first_retained,
                read.deleted_segments,
                read.deleted_bytes
            ),
            (3, 2, 150)
        );
        assert_eq!(read.last_deletion_ns, 99);
        let pruned = read.pruned((SourceKind::LiveUplink, 7)).unwrap();
        assert_eq!(pruned.frames, 18);
        assert_eq!(
            pruned.sequences.runs().collect::<Vec<_>>(),
            [(0, 9), (12, 19)]
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A power cut after the state was renamed in and before the unlinks: the next start finds
    /// segments the state names deleted, and finishes the deletion.
    #[test]
    fn a_deletion_cut_short_is_finished_from_the_state() {
        let dir = scratch("finish");
        for segment in 5..=8 {
            fs::write(dir.join(format::segment_name(segment)), format::MAGIC).unwrap();
        }
        let state = ShardState {
            first_retained: 7,
            ..ShardState::default()
        };
        state.write(&dir).unwrap();
        let read = ShardState::read(&dir).unwrap();
        read.finish_deletions(&dir).unwrap();
        assert_eq!(segments(&dir), [7, 8]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_state_is_an_error_naming_the_file() {
        let dir = scratch("damaged");
        let mut bytes = Vec::new();
        ShardState::default().encode(&mut bytes);
        bytes[10] ^= 1;
        fs::write(dir.join(STATE_FILE), &bytes).unwrap();
        let err = ShardState::read(&dir).unwrap_err().to_string();
        assert!(
            err.contains("RETENTION") && err.contains("damaged"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn many_gaps_merge_into_a_bounded_number_of_runs() {
        let mut state = ShardState::default();
        for segment in 0..2000u64 {
            // A space-link loss between every two segments.
            let first = segment * 10;
            let deleted = Deleted {
                segment,
                bytes: 1,
                contents: contents(3, first..first + 5),
            };
            state.absorb(&deleted);
        }
        let pruned = state.pruned((SourceKind::LiveUplink, 3)).unwrap();
        assert_eq!(
            pruned.frames, 10_000,
            "counted, not read from the merged runs"
        );
        assert!(pruned.sequences.runs().count() <= MOST_RUNS);
        assert!(pruned.sequences.contains(19_994) && !pruned.sequences.contains(19_995));
        assert!(
            pruned.sequences.contains(7) && !pruned.sequences.contains(19_985),
            "the oldest merged"
        );
    }
}
