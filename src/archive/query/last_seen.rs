//! When each ground-segment link was last heard, found in the archive: what a station's
//! `last_seen` starts from after the daemon's restart, so that a station silent since before it
//! still says when it was heard (`docs/ground-segment.md`, "Stations alive or not").
//!
//! Why this shape: the newest frame a link delivered is, per shard, in the newest segment that
//! holds one of its frames. A sealed segment's index names the stations whose copies it holds
//! (without times), so only segments that name a wanted link's station are read, newest first,
//! and a shard's walk stops once each link is found in it; the newest segment has no index yet
//! and is read up to its durable end. A link the archive holds nothing of costs a look at every
//! sealed segment's index (small), and one whose station's other links are busy the segments that
//! name that station down to the link's own newest; the drain stops the walk. Times are received times on the archive clock, as `last_seen` is; a link is
//! known by the link name its frames' reception records (a station may have several links).

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::archive::format::index::SegmentIndex;
use crate::archive::format::{self, ArchiveError};
use crate::archive::format::{Entry, FrameRecord};
use crate::archive::read::{DurableEnds, Piece, SegmentFile, ShardWalk};

/// How many bytes of records are read at a time.
const READ_BUDGET: usize = 1 << 20;

/// A link to look for: its name and its station's name (the index knows stations).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WantedLink {
    pub link: String,
    pub station: String,
}

/// The received time (nanoseconds since the Unix epoch) of the newest frame each of `links`
/// delivered that the archive at `root` holds up to `durable`, by link name; a link none of whose
/// frames it holds is absent. Damaged records are passed over; a segment retention deletes
/// meanwhile is gone past. Stops between two segments once `stop` says so (the drain), with what
/// it found. Blocking.
pub fn links_last_seen(
    root: &Path,
    durable: &DurableEnds,
    links: &[WantedLink],
    stop: &dyn Fn() -> bool,
) -> Result<HashMap<String, u64>, ArchiveError> {
    let mut seen: HashMap<String, u64> = HashMap::new();
    for walk in durable.walk(root)? {
        for (link, at) in shard_last_seen(&walk, links, stop)? {
            let newest = seen.entry(link).or_default();
            *newest = (*newest).max(at);
        }
    }
    Ok(seen)
}

/// One shard's answer: its segments newest first, until every link is found.
fn shard_last_seen(
    walk: &ShardWalk,
    links: &[WantedLink],
    stop: &dyn Fn() -> bool,
) -> Result<HashMap<String, u64>, ArchiveError> {
    let mut found = HashMap::new();
    for (index, path) in walk.segments.iter().rev() {
        let missing: Vec<&WantedLink> = (links.iter())
            .filter(|l| !found.contains_key(&l.link))
            .collect();
        if missing.is_empty() || stop() {
            break;
        }
        let wanted: HashSet<&str> = missing.iter().map(|l| l.link.as_str()).collect();
        let read = |index: u64, path: &Path, found: &mut HashMap<String, u64>| {
            let to = match index < walk.end.segment {
                true if !names_one(&walk.dir, index, path, &missing) => return Ok(()),
                true => segment_len(path)?,
                false => walk.end.len,
            };
            let segment = SegmentFile::open(walk.shard, index, path)?;
            newest_frames(&segment, to, &wanted, found)
        };
        match read(*index, path, &mut found) {
            // Retention may delete a segment between the listing and its reading.
            Err(err) if err.is_gone() => continue,
            done => done?,
        }
    }
    Ok(found)
}

/// Whether sealed segment `index`'s index names the station of one of `links`; a segment without
/// a current index may, so it is read.
fn names_one(dir: &Path, index: u64, path: &Path, links: &[&WantedLink]) -> bool {
    let Ok(len) = segment_len(path) else {
        return true;
    };
    let Some(contents) = SegmentIndex::read_current(dir, index, len) else {
        return true;
    };
    let mut stations = contents.stations.values().flat_map(|by| by.keys());
    stations.any(|station| links.iter().any(|l| l.station == *station))
}

pub(super) fn segment_len(path: &Path) -> Result<u64, ArchiveError> {
    let meta = std::fs::metadata(path).map_err(ArchiveError::io(path, "stat"))?;
    Ok(meta.len())
}

/// Raises `found` to the received time of each frame of `segment` (up to `to`) that a link of
/// `wanted` delivered live: a backfill's, received when it was imported, is not the station's.
fn newest_frames(
    segment: &SegmentFile,
    to: u64,
    wanted: &HashSet<&str>,
    found: &mut HashMap<String, u64>,
) -> Result<(), ArchiveError> {
    each_frame(segment, to, |frame| {
        let Some(reception) = &frame.reception else {
            return;
        };
        if reception.delivery.recording.is_some() {
            return;
        }
        let link = &*reception.delivery.link;
        if wanted.contains(link) {
            let newest = found.entry(link.to_owned()).or_default();
            *newest = (*newest).max(frame.received_unix_ns);
        }
    })
}

/// Calls `each` with every frame of `segment` up to `to`, in file order; damaged records are
/// passed over.
pub(super) fn each_frame(
    segment: &SegmentFile,
    to: u64,
    mut each: impl FnMut(FrameRecord),
) -> Result<(), ArchiveError> {
    let mut from = format::MAGIC.len() as u64;
    while from < to {
        let records = match segment.read(from, to, READ_BUDGET, Some(to))? {
            Piece::Records(records) => records,
            Piece::Damaged(range) => {
                from = range.bytes.end;
                continue;
            }
        };
        from = records.next;
        for (_, entry) in records.entries {
            if let Entry::Frame(frame) = entry {
                each(frame);
            }
        }
    }
    Ok(())
}
