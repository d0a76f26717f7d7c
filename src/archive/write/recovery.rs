//! Recovery: what a start reads back from the archive, so that every source resumes exactly once.
//!
//! Only the newest segment is read: every segment begins with a checkpoint of each source's
//! watermark and the frames stored above it, so the newest one knows everything (a segment takes
//! its name only once the one before it is durable). A crash can damage nothing but the end of
//! that segment: a torn tail is cut and logged, damage in the middle stops the start (the operator
//! runs `aggregator archive repair`), and a segment a crash left unnamed held nothing acknowledged
//! and is deleted. The newest segment is synced before anything read from it is trusted: a process
//! that died left its last appends in the page cache, where the start reads them, but a power cut
//! could still take them. The frames stored contiguously right above a source's watermark are all
//! stored, so its resume point passes them: an acknowledgement sent before a crash may have passed
//! them without its WATERMARK reaching the disk.
//!
//! The writer goes on appending to that newest segment ([`Start`]) rather than begin another with a
//! checkpoint: the segment's own checkpoint and everything after it tell the next recovery what
//! a new checkpoint would, and a segment begun at every start would leave a small one behind each
//! crash or restart (24 power cuts left 60 segments).

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files;
use super::journal::Leftover;
use super::tracked::Tracked;
use crate::archive::format::index::{SegmentIndex, SpanCache};
use crate::archive::format::{self, ArchiveError, Entry};
use crate::domain::frame::SourceKey;
use crate::domain::ledger::ResumePoint;

/// Where a shard's writer starts after recovery.
#[derive(Debug)]
pub(super) struct Start {
    /// The newest segment, durable up to `len` bytes of whole records: the writer continues it
    /// unless it is full.
    pub(super) newest: Option<Newest>,
    /// The index a new segment takes.
    pub(super) next_index: u64,
    /// The newest received time of the last segment that holds frames: where the shard's
    /// received times stood when the last run stopped (`None`: it holds none).
    pub(super) newest_received: Option<u64>,
}

/// The newest segment, as recovery left it.
#[derive(Debug)]
pub(super) struct Newest {
    pub(super) index: u64,
    pub(super) path: PathBuf,
    pub(super) len: u64,
    /// What it holds, for its index once the writer seals it.
    pub(super) contents: SegmentIndex,
}

/// Deletes what an unclean stop left unnamed, reads the newest segment (cutting a torn tail, and
/// giving back the blocks it had reserved), and returns what the archive knows of each source with
/// where the writer starts.
pub(super) fn recover(
    dir: &Path,
    spans: &SpanCache,
) -> Result<(HashMap<SourceKey, Tracked>, Start), ArchiveError> {
    // Nothing in a segment that never got its name was acknowledged.
    for (_, staged) in format::list_staged(dir)? {
        fs::remove_file(&staged).map_err(ArchiveError::io(&staged, "delete"))?;
        tracing::warn!(
            segment = %staged.display(),
            "archive: deleted a segment an unclean stop left unnamed"
        );
    }
    let Some((index, path)) = format::list_segments(dir)?.pop() else {
        let start = Start {
            newest: None,
            next_index: 1,
            newest_received: None,
        };
        return Ok((HashMap::new(), start));
    };
    let next_index = index.checked_add(1).ok_or_else(|| {
        ArchiveError::broken(format!(
            "cannot start a segment after {}: the segment index is at its limit: move the \
             archive aside",
            path.display()
        ))
    })?;
    let (sources, contents, settled) = read_newest(&path)?;
    tracing::info!(
        segment = %path.display(),
        sources = sources.len(),
        "archive: recovered resume points from the newest segment"
    );
    let newest_received = match contents.received {
        Some((_, newest)) => Some(newest),
        None => newest_before(dir, index, spans)?,
    };
    let newest = Some(Newest {
        index,
        path,
        len: settled,
        contents,
    });
    let start = Start {
        newest,
        next_index,
        newest_received,
    };
    Ok((sources, start))
}

/// The newest received time of the segment before `index` in `dir`, by its index, when there is
/// one: a newest segment without frames has just been begun.
fn newest_before(dir: &Path, index: u64, spans: &SpanCache) -> Result<Option<u64>, ArchiveError> {
    let before = format::list_segments(dir)?
        .into_iter()
        .rfind(|(earlier, _)| *earlier < index);
    let Some((earlier, path)) = before else {
        return Ok(None);
    };
    let contents = SegmentIndex::read_or_rebuild(dir, earlier, &path, spans)?;
    Ok(contents.received.map(|(_, newest)| newest))
}

/// Each source's watermark and the frames stored above it, and what the segment holds, from one
/// read of the segment, a window at a time (it may be `segment_bytes` long); and the segment's
/// length. A segment of another format version is refused (the error names it and both
/// versions).
fn read_newest(
    path: &Path,
) -> Result<(HashMap<SourceKey, Tracked>, SegmentIndex, u64), ArchiveError> {
    let mut sources: HashMap<SourceKey, Tracked> = HashMap::new();
    let mut contents = SegmentIndex::default();
    let cut = format::repair_tail(path, |offset, entry| {
        contents.add_entry(offset, &entry);
        track(&mut sources, entry)
    })?;
    if let Some(cut) = cut {
        tracing::warn!(
            segment = %path.display(),
            bytes = cut,
            "archive: truncated a torn tail left by an unclean stop"
        );
    }
    let settled = settle_newest(path)?;
    settle(&mut sources);
    Ok((sources, contents, settled))
}

/// Adds a record of the newest segment to what recovery knows of its source. Watermarks may come
/// after what they cover: [`settle`] prunes the stored frames once every record is read. Also how
/// `archive repair` reads a newest segment to tell what the next start stores from the journals.
pub(in crate::archive) fn track(sources: &mut HashMap<SourceKey, Tracked>, entry: Entry) {
    let Some(source) = entry.source() else {
        return;
    };
    let tracked = sources.entry(source).or_default();
    match entry {
        Entry::Frame(frame) => tracked.above.insert_run(frame.sequence, frame.sequence),
        Entry::Stored { first, last, .. } => tracked.above.insert_run(first, last),
        Entry::Watermark { acked, .. } => {
            tracked.watermark = tracked.watermark.max(Some(acked));
        }
        Entry::Clock(_) => {}
    }
}

/// After the newest segment's last record ([`track`]): drops the stored frames each watermark
/// covers, and moves it past those stored right above it.
pub(in crate::archive) fn settle(sources: &mut HashMap<SourceKey, Tracked>) {
    for tracked in sources.values_mut() {
        if let Some(acked) = tracked.watermark {
            tracked.above.remove_through(acked);
        }
        tracked.held_above |= !tracked.above.is_empty();
        tracked.extend_watermark();
    }
}

/// Gives back the blocks a daemon stopped without closing had reserved for the newest segment, and
/// makes the segment durable. A process that died (SIGKILL, the OOM killer) left its last appends
/// in the page cache, unsynced: read back, they would pass into resume points and acknowledgements,
/// and the emergency journals that hold the only durable copy of some of them would be deleted.
/// Synced here, before anything read from the segment is trusted, they are as durable as the rest.
/// Returns its length.
fn settle_newest(path: &Path) -> Result<u64, ArchiveError> {
    let newest = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(ArchiveError::io(path, "open"))?;
    let len = newest
        .metadata()
        .map_err(ArchiveError::io(path, "read the length of"))?
        .len();
    files::trim(&newest, path, len)?;
    newest.sync_all().map_err(ArchiveError::io(path, "sync"))?;
    Ok(len)
}

/// Every recovered source's resume point over every shard's directory, with the ledger its
/// connections will continue; each shard keeps that ledger too, to write the source's watermark as
/// its acknowledgement moves. A source found in several shards (the shard count changed between
/// runs) resumes past what all of them stored together.
pub(super) fn resume_points(
    shards: &mut [HashMap<SourceKey, Tracked>],
) -> HashMap<SourceKey, ResumePoint> {
    let mut merged: HashMap<SourceKey, Tracked> = HashMap::new();
    for (key, tracked) in shards.iter().flatten() {
        let all = merged.entry(*key).or_default();
        all.watermark = all.watermark.max(tracked.watermark);
        all.held_above |= tracked.held_above;
        for (first, last) in tracked.above.runs() {
            all.above.insert_run(first, last);
        }
    }
    let points: HashMap<SourceKey, ResumePoint> = merged
        .into_iter()
        .map(|(key, mut all)| {
            if let Some(acked) = all.watermark {
                all.above.remove_through(acked);
            }
            let held_above = all.held_above || !all.above.is_empty();
            all.extend_watermark();
            (
                key,
                ResumePoint::recovered(all.watermark, all.above, held_above),
            )
        })
        .collect();
    for (key, tracked) in shards.iter_mut().flatten() {
        tracked.ledger = points.get(key).map(|point| Arc::clone(&point.ledger));
    }
    points
}

/// What recovery read back of a shard directory: each source's state, where its writer starts,
/// and what its journals hold that its segments lost.
pub(super) struct Recovered {
    pub(super) sources: HashMap<SourceKey, Tracked>,
    pub(super) start: Start,
    pub(super) leftover: Leftover,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::write::page_cache;
    use crate::domain::frame::{Priority, SourceKind};

    fn tracked(watermark: Option<u64>, runs: &[(u64, u64)]) -> Tracked {
        let mut tracked = Tracked {
            watermark,
            ..Tracked::default()
        };
        for &(first, last) in runs {
            tracked.above.insert_run(first, last);
        }
        tracked
    }

    #[test]
    fn a_source_found_in_two_shards_resumes_past_what_both_stored() {
        let moved = (SourceKind::LiveUplink, 7);
        let stayed = (SourceKind::LiveUplink, 8);
        // Shard 0 stored source 7 up to 99 and 120-129 before the shard count changed; shard 1 has
        // stored it since, 100-109 acknowledged there, then 140.
        let mut shards = [
            HashMap::from([(moved, tracked(Some(99), &[(120, 129)]))]),
            HashMap::from([
                (moved, tracked(Some(109), &[(140, 140)])),
                (stayed, tracked(Some(5), &[])),
            ]),
        ];
        let points = resume_points(&mut shards);
        let point = &points[&moved];
        // 110-119 are missing, so the resume stops at 109, and what lies above it in either
        // shard is known to be stored.
        assert_eq!(point.after(), Some(109));
        let above: Vec<_> = point.already_stored.runs().collect();
        assert_eq!(above, vec![(120, 129), (140, 140)]);
        assert_eq!(points[&stayed].after(), Some(5));
        // Both shards write the source's watermark from the one ledger its connections keep.
        let ledgers: Vec<_> = shards
            .iter()
            .map(|shard| shard[&moved].ledger.clone())
            .collect();
        for ledger in ledgers {
            assert!(Arc::ptr_eq(&ledger.unwrap(), &point.ledger));
        }
    }

    #[test]
    fn stored_frames_right_above_the_highest_watermark_extend_it() {
        let key = (SourceKind::ArchivedReplay, 1);
        // Shard 1 stored 50-60 right above shard 0's watermark of 49.
        let mut shards = [
            HashMap::from([(key, tracked(Some(49), &[]))]),
            HashMap::from([(key, tracked(None, &[(50, 60)]))]),
        ];
        let points = resume_points(&mut shards);
        assert_eq!(points[&key].after(), Some(60));
        assert!(points[&key].already_stored.is_empty());
        assert!(
            points[&key].held_above,
            "50-60 lie above every watermark written"
        );
    }

    /// Whether frames lay above the watermark is kept through the move past them, in one shard
    /// ([`settle`]) and across shards: a source resumed past frames no watermark covered says so.
    #[test]
    fn frames_found_above_the_watermark_are_told_after_the_watermark_passes_them() {
        let (held, settled) = ((SourceKind::LiveUplink, 1), (SourceKind::LiveUplink, 2));
        let mut shard = HashMap::from([
            (held, tracked(Some(9), &[(10, 19)])),
            (settled, tracked(Some(9), &[(5, 9)])),
        ]);
        settle(&mut shard);
        let points = resume_points(&mut [shard]);
        assert_eq!(points[&held].after(), Some(19));
        assert!(points[&held].held_above);
        assert_eq!(points[&settled].after(), Some(9));
        assert!(!points[&settled].held_above, "5-9 lie under the watermark");
    }

    /// A segment whose last appends a dead process left in the page cache, unsynced: the start
    /// reads them as stored, so they must be durable before it goes on. Dirty pages stay in the
    /// page cache whatever the advice; synced ones can be dropped.
    #[cfg(target_os = "linux")]
    #[test]
    fn what_a_dead_process_left_unsynced_is_synced_before_it_counts_as_stored() {
        /// Removes the directory when dropped, an assertion failing or not.
        struct Removed(std::path::PathBuf);
        impl Drop for Removed {
            fn drop(&mut self) {
                let _ = fs::remove_dir_all(&self.0);
            }
        }

        let tmp = std::env::temp_dir();
        if page_cache::on_tmpfs(&tmp) {
            eprintln!(
                "skipped: {} is a tmpfs, whose pages stay cached",
                tmp.display()
            );
            return;
        }
        let dir = Removed(tmp.join(format!("recover-unsynced-{}", std::process::id())));
        fs::create_dir_all(&dir.0).unwrap();
        let path = dir.0.join(format::segment_name(1));
        let mut bytes = format::MAGIC.to_vec();
        let source = (SourceKind::LiveUplink, 7);
        for sequence in 0..256 {
            let payload = [0xA5; 1000];
            format::encode_frame(
                &mut bytes,
                source.0,
                Priority::Routine,
                7,
                sequence,
                0,
                &payload,
            );
        }
        // Written and never synced, as a SIGKILL leaves the appends since the last sync.
        fs::write(&path, &bytes).unwrap();

        let (sources, start) = recover(&dir.0, &SpanCache::default()).unwrap();
        assert_eq!(start.next_index, 2);
        assert_eq!(sources[&source].watermark, Some(255), "read back as stored");

        let file = fs::File::open(&path).unwrap();
        page_cache::release_cached(&file, bytes.len() as u64, &Arc::default());
        let left = page_cache::cached_pages(&file, bytes.len());
        assert_eq!(left, 0, "{left} pages still dirty after recovery");
    }
}
