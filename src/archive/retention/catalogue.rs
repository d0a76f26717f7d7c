//! The archive's segments as retention sees them: for each shard directory its state, its sealed
//! segments (what may be deleted) with their size and received times, and its newest segment
//! (never deleted: recovery reads it, and with it every source's resume point).
//!
//! Built once from the files ([`Catalogue::load`], which also finishes a deletion a crash cut
//! short), then kept current from the disk threads' announcements ([`Catalogue::seal`]) and the
//! deletions it makes, so that a check of the limits reads indexes only once per segment. Sizes
//! are the blocks a file holds on disk, what `du` counts and what fills a file system: reserved
//! blocks included.

use std::collections::{BTreeMap, VecDeque};
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::plan::{Candidate, Plan};
use crate::archive::format::index::{self, SealedSegment, SegmentIndex, SpanCache};
use crate::archive::format::retention_file::{Deleted, Retained, ShardState};
use crate::archive::format::{self, ArchiveError};

/// A sealed segment retention may delete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SealedEntry {
    pub segment: u64,
    /// The segment's and its index file's bytes on disk.
    pub bytes: u64,
    pub frames: u64,
    /// Its oldest and newest received time; `None` without frames.
    pub received: Option<(u64, u64)>,
}

/// One shard directory.
#[derive(Debug)]
pub(crate) struct ShardFiles {
    pub shard: usize,
    pub dir: PathBuf,
    pub state: ShardState,
    /// Its sealed segments, oldest first.
    pub sealed: VecDeque<SealedEntry>,
    /// Its newest segment, which is never deleted; `None` while it has none.
    pub newest: Option<u64>,
}

/// Every shard directory of one archive.
#[derive(Debug)]
pub(crate) struct Catalogue {
    pub root: PathBuf,
    pub shards: Vec<ShardFiles>,
    /// The spans of the indexes it reads: the daemon's, shared with its readers.
    spans: SpanCache,
}

/// The blocks a file holds on disk, in bytes.
pub(crate) fn allocated(metadata: &fs::Metadata) -> u64 {
    metadata.blocks().saturating_mul(512)
}

impl Catalogue {
    /// Reads every shard directory of the archive at `root`, and the index of every segment but
    /// each shard's newest (rebuilding those missing or stale). Segments its state names deleted
    /// (a deletion a crash cut short) are left out: [`Self::finish_deletions`] unlinks them.
    pub fn load(root: &Path) -> Result<Catalogue, ArchiveError> {
        Catalogue::load_until(root, SpanCache::default(), &|| false)
    }

    /// Unlinks what each shard's state names deleted and is still there.
    pub fn finish_deletions(&self) -> Result<(), ArchiveError> {
        self.shards
            .iter()
            .try_for_each(|files| files.state.finish_deletions(&files.dir))
    }

    /// [`Self::load`] into `spans`, given up with an error once `stopped` says so (an archive
    /// written before indexes has every segment read once: the daemon's exit does not wait for
    /// that).
    pub fn load_until(
        root: &Path,
        spans: SpanCache,
        stopped: &dyn Fn() -> bool,
    ) -> Result<Catalogue, ArchiveError> {
        let mut shards = Vec::new();
        for (shard, dir) in format::list_shards(root)? {
            let Retained {
                state,
                mut segments,
            } = Retained::read(&dir)?;
            let newest = segments.pop().map(|(index, _)| index);
            let sealed = segments
                .iter()
                .map(|(index, path)| {
                    if stopped() {
                        return Err(ArchiveError::broken("stopped before the archive was read"));
                    }
                    let contents = SegmentIndex::read_or_rebuild(&dir, *index, path, &spans)?;
                    Ok(SealedEntry::of(&dir, *index, &contents))
                })
                .collect::<Result<_, ArchiveError>>()?;
            shards.push(ShardFiles {
                shard,
                dir,
                state,
                sealed,
                newest,
            });
        }
        Ok(Catalogue {
            root: root.to_path_buf(),
            shards,
            spans,
        })
    }

    /// A disk thread sealed a segment: it may be deleted from now on, and the one after it is the
    /// shard's newest. A segment already known (listed at load) is not added twice.
    pub fn seal(&mut self, sealed: &SealedSegment) {
        let Some(files) = self.shards.iter_mut().find(|f| f.shard == sealed.shard) else {
            return;
        };
        let known = files
            .sealed
            .back()
            .map_or(files.state.first_retained, |e| e.segment + 1);
        if sealed.segment >= known {
            let entry = SealedEntry::of(&files.dir, sealed.segment, &sealed.contents);
            files.sealed.push_back(entry);
        }
        files.newest = files.newest.max(Some(sealed.segment + 1));
    }

    /// Bytes on disk of every file in every shard directory (segments, staged segments, journals,
    /// index files, retention's state, the lock): sealed segments at the size they were sealed
    /// with, the rest read now.
    pub fn bytes(&self) -> Result<u64, ArchiveError> {
        let mut total = 0;
        for files in &self.shards {
            let known: BTreeMap<u64, u64> =
                files.sealed.iter().map(|e| (e.segment, e.bytes)).collect();
            let entries = fs::read_dir(&files.dir).map_err(ArchiveError::io(&files.dir, "list"))?;
            for entry in entries.flatten() {
                let path = entry.path();
                let sealed = format::segment_index(&path).and_then(|i| known.get(&i));
                total += match sealed {
                    Some(&bytes) => bytes,
                    // A sealed segment's index file is counted with it.
                    None if index::indexed_segment(&path)
                        .is_some_and(|i| known.contains_key(&i)) =>
                    {
                        0
                    }
                    None => match entry.metadata() {
                        Ok(metadata) if metadata.is_file() => allocated(&metadata),
                        _ => 0,
                    },
                };
            }
        }
        Ok(total)
    }

    /// Each shard's sealed segments as the plan takes them; `protected(shard, segment)` says
    /// which a protected reader has not read yet.
    pub fn candidates(&self, protected: impl Fn(usize, u64) -> bool) -> Vec<VecDeque<Candidate>> {
        let candidate = |shard, entry: &SealedEntry| Candidate {
            segment: entry.segment,
            bytes: entry.bytes,
            newest: entry.received.map_or(0, |(_, newest)| newest),
            protected: protected(shard, entry.segment),
        };
        let queue = |files: &ShardFiles| {
            files
                .sealed
                .iter()
                .map(|e| candidate(files.shard, e))
                .collect()
        };
        self.shards.iter().map(queue).collect()
    }

    /// The spans of the indexes it read.
    pub fn spans(&self) -> &SpanCache {
        &self.spans
    }

    /// The shard of each queue of [`Self::candidates`].
    pub fn shard_numbers(&self) -> Vec<usize> {
        self.shards.iter().map(|files| files.shard).collect()
    }

    /// Deletes what `plan` says (its queues are [`Self::candidates`]'), shard by shard, each
    /// crash-safely ([`ShardState::delete`]); returns the segments and bytes deleted.
    pub fn delete(&mut self, plan: &Plan, now_ns: u64) -> Result<(u64, u64), ArchiveError> {
        let mut counts: BTreeMap<usize, usize> = BTreeMap::new();
        for &(queue, _) in &plan.delete {
            *counts.entry(queue).or_default() += 1;
        }
        let (mut segments, mut bytes) = (0, 0);
        for (queue, count) in counts {
            let files = &mut self.shards[queue];
            let deleted = (files.sealed.iter().take(count))
                .map(|entry| entry.deleted(&files.dir, &self.spans))
                .collect::<Result<Vec<_>, ArchiveError>>()?;
            let done = files.state.delete(&files.dir, &deleted, now_ns);
            // Once the state names them deleted they are, whether or not their unlinking failed
            // (the shard's next deletion unlinks them): never counted, nor candidates, again.
            let named = (deleted.last()).is_some_and(|d| files.state.first_retained > d.segment);
            if named {
                for gone in &deleted {
                    self.spans.forget(&files.dir, gone.segment);
                }
                files.sealed.drain(..count);
                segments += deleted.len() as u64;
                bytes += deleted.iter().map(|d| d.bytes).sum::<u64>();
            }
            done?;
        }
        Ok((segments, bytes))
    }

    /// The oldest and newest received time among the sealed segments.
    pub fn received(&self) -> Option<(u64, u64)> {
        let spans = self
            .shards
            .iter()
            .flat_map(|f| f.sealed.iter().filter_map(|e| e.received));
        spans.reduce(|(a, b), (c, d)| (a.min(c), b.max(d)))
    }

    /// Segments in the archive: the sealed ones and each shard's newest.
    pub fn segments(&self) -> u64 {
        let per_shard = |f: &ShardFiles| f.sealed.len() as u64 + u64::from(f.newest.is_some());
        self.shards.iter().map(per_shard).sum()
    }
}

impl SealedEntry {
    fn of(dir: &Path, segment: u64, contents: &SegmentIndex) -> SealedEntry {
        let size = |path: PathBuf| fs::metadata(path).map_or(0, |m| allocated(&m));
        let path = dir.join(format::segment_name(segment));
        SealedEntry {
            segment,
            bytes: size(path) + size(index::index_path(dir, segment)),
            frames: contents.frames,
            received: contents.received,
        }
    }

    /// What deleting it takes away: its contents, read from its index (or the segment).
    fn deleted(&self, dir: &Path, spans: &SpanCache) -> Result<Deleted, ArchiveError> {
        let path = dir.join(format::segment_name(self.segment));
        let contents = match path.exists() {
            true => SegmentIndex::read_or_rebuild(dir, self.segment, &path, spans)?,
            // Someone deleted it already: what it held is no longer known.
            false => SegmentIndex::default(),
        };
        Ok(Deleted {
            segment: self.segment,
            bytes: self.bytes,
            contents,
        })
    }
}

/// Free bytes for an unprivileged writer on the file system of `dir`, and its size.
pub(crate) fn free_space(dir: &Path) -> Result<(u64, u64), ArchiveError> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|err| io::Error::new(io::ErrorKind::InvalidInput, err))
        .map_err(ArchiveError::io(dir, "read the free space of"))?;
    // SAFETY: statvfs writes into the zeroed struct it is given; `path` is NUL-terminated.
    let stat = unsafe {
        let mut stat: libc::statvfs = std::mem::zeroed();
        if libc::statvfs(path.as_ptr(), &mut stat) != 0 {
            let err = io::Error::last_os_error();
            return Err(ArchiveError::io(dir, "read the free space of")(err));
        }
        stat
    };
    let unit = stat.f_frsize as u64;
    Ok((
        (stat.f_bavail as u64).saturating_mul(unit),
        (stat.f_blocks as u64).saturating_mul(unit),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::read::test_archives::archive;

    /// A deletion whose state is written but whose unlinking fails is done all the same: the
    /// segment is no candidate, and not counted, again.
    #[test]
    fn a_deletion_named_in_the_state_is_counted_once() {
        let (root, _) = archive("retention-unlink");
        let mut catalogue = Catalogue::load_until(&root, SpanCache::default(), &|| false).unwrap();
        let dir = format::shard_dir(&root, 0);
        let (oldest, oldest_index) = (
            dir.join(format::segment_name(0)),
            index::index_path(&dir, 0),
        );
        // A directory that is not empty cannot be unlinked as a file: the index's unlinking,
        // after the segment's, fails.
        let _ = fs::remove_file(&oldest_index);
        fs::create_dir_all(oldest_index.join("held")).unwrap();
        let plan = |segment| Plan {
            delete: vec![(0, segment)],
            short: None,
        };
        assert!(catalogue.delete(&plan(0), 1).is_err());
        let shard = &catalogue.shards[0];
        assert_eq!(shard.sealed.front().map(|e| e.segment), Some(1));
        assert_eq!(shard.state.deleted_segments, 1);
        assert!(!oldest.exists());
        fs::remove_dir_all(&oldest_index).unwrap();
        assert_eq!(catalogue.delete(&plan(1), 2).unwrap().0, 1);
        assert_eq!(catalogue.shards[0].state.deleted_segments, 2);
        fs::remove_dir_all(&root).unwrap();
    }
}
