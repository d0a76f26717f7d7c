//! The passes of stations, found in the archive's data: for each station (the link's `station`,
//! or its name) and what it receives (its merge group when the link has a `group`, else each of
//! its sources), the runs of frames with no silence longer than a gap (`archive.pass_gap_ms`),
//! each with its AOS and LOS, what the station delivered, what another station of its group
//! filled, the sequences still missing, and how late its frames reached the archive.
//!
//! Why from the archive and not from the links' counters: the archive survives restarts and
//! holds backfilled recordings, and it knows which station's copy of each packet was stored.
//! The reading is completeness' ([`completeness::with_frames`]), every frame of a station's
//! source read from its block (an index has no frame's own time): so the sequences held, the gaps
//! with their causes and the damage passed over are the same as `archive gaps` says of the window,
//! and who filled what for whom is the merge groups' rule ([`completeness::filled`]), asked of one
//! station's pass. Which sources a station delivered comes first, from the indexes
//! (`SegmentIndex::stations`): the ingest protocol's sources, most of a busy archive, are never
//! read frame by frame, only the blocks that hold a station's frames are.
//!
//! Rules an operator can rely on (`docs/archive-tools.md`, "passes"):
//! - A pass's time is each frame's earth-receive time where the station gave it, else its
//!   received time ([`TimeBasis`] says which); AOS and LOS are its first and last. Each station
//!   is judged on its own clock: a station whose clock disagrees with another's only shifts its
//!   own passes, and fills are by sequence, not by time.
//! - Only frames received in the window count; a pass the window may have cut is flagged
//!   ([`Clipped`]), never stretched.
//! - A station sending one frame a minute is one pass as long as it goes on: a pass ends only at a
//!   silence longer than the gap, so the newest pass stays clipped at the window's end until then.
//! - A frame of no station (the ingest protocol's sources) is in no pass, and counted apart.
//! - In a merge group each packet is stored once, from the station that delivered it first:
//!   what a station delivered second is in no file, so a pass's frames are those it delivered
//!   first. Transfer frames with a bad CRC, or dropped, are never stored: their counts are the
//!   link's (`/stats`), and what they lost shows here as gaps on the space link.
//!
//! Its rooms: the split and the clipping (`split.rs`), one pass's report (`report.rs`).

mod report;
mod split;

use std::collections::BTreeMap;
use std::path::Path;

use super::completeness::{self, Completeness, MergeGroups, SeenFrame};
use crate::archive::format::ArchiveError;
use crate::archive::read::{self, DamagedRange, DurableEnds};
use crate::domain::filter::FrameFilter;
use crate::domain::frame::SourceKey;
use crate::domain::sequence_set::SequenceSet;

pub use report::{Latency, PassSource, StationPass, TimeBasis};
pub use split::Clipped;

/// What a station receives: a merge group (its sources of every APID together), or one source.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Receives {
    Group(String),
    Source(SourceKey),
}

/// What passes are asked for, besides the window: the gap that ends a pass and which passes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassQuery {
    /// A silence longer than this, in nanoseconds, ends a pass.
    pub gap_ns: u64,
    /// Only this station's passes.
    pub station: Option<String>,
    /// Only the passes of this merge group.
    pub group: Option<String>,
}

/// The passes of a window, and what could not be read of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Passes {
    /// By AOS, then station, then what it receives.
    pub passes: Vec<StationPass>,
    /// Frames of the window that no station delivered (the ingest protocol's sources), of the
    /// sources asked for: in no pass.
    pub without_station: u64,
    /// The window's completeness: its `damaged`, `missing` and `clock` say what was passed over.
    pub read: Completeness,
}

/// The passes of the archive's files as they are now (a stopped archive, or one read beside its
/// daemon). Blocking.
pub fn of_files(
    root: &Path,
    filter: &FrameFilter,
    groups: &MergeGroups,
    query: &PassQuery,
) -> Result<Passes, ArchiveError> {
    passes(root, &read::stopped_ends(root)?, filter, groups, query)
}

/// The passes of the frames `filter` wants (its window of received times, its sources) in the
/// archive at `root` up to `ends`, the stations' sources grouped by `groups`. Of the sources no
/// station delivered (the ingest protocol's) only the indexes are read. Blocking.
pub fn passes(
    root: &Path,
    ends: &DurableEnds,
    filter: &FrameFilter,
    groups: &MergeGroups,
    query: &PassQuery,
) -> Result<Passes, ArchiveError> {
    // The window's completeness from the indexes first (what a day's costs tens of
    // milliseconds): which sources a station delivered, and how many frames the others have.
    // Then only the blocks that hold a station's source are read, frame by frame.
    let outline = completeness::completeness(root, ends, filter, None)?;
    let (delivered, others): (Vec<_>, Vec<_>) =
        (outline.sources.iter()).partition(|source| !source.stations.is_empty());
    let without_station = (others.iter())
        .map(|source| source.frames - source.outside_window)
        .sum::<u64>();
    if delivered.is_empty() {
        return Ok(Passes {
            passes: Vec::new(),
            without_station,
            read: outline,
        });
    }
    let narrowed = FrameFilter {
        sources: delivered.iter().map(|source| source.source).collect(),
        ..filter.clone()
    };
    // Only the frames of the stations and groups asked for are kept.
    let mut stations = Stations::default();
    let each = &mut |frame| stations.add(frame, groups, query);
    let mut read = completeness::with_frames(root, ends, &narrowed, each)?;
    // What the reading passed over is the window's, as `archive gaps` says of it: the outline's,
    // with the damage found in the blocks read for the stations.
    read.clock = outline.clock;
    read.missing = outline.missing;
    for damage in outline.damaged {
        let at = |d: &DamagedRange| (d.shard, d.segment, d.bytes.start);
        if !read.damaged.iter().any(|d| at(d) == at(&damage)) {
            read.damaged.push(damage);
        }
    }
    let mut answer = of_frames(read, stations, filter, groups, query);
    answer.without_station += without_station;
    Ok(answer)
}

/// The frames asked for of each station, by what it receives, and how many frames had no
/// station.
#[derive(Default)]
struct Stations {
    by_station: BTreeMap<(String, Receives), Vec<SeenFrame>>,
    without_station: u64,
}

impl Stations {
    /// Keeps `frame` if `query` asks for its station and what it receives.
    fn add(&mut self, frame: SeenFrame, groups: &MergeGroups, query: &PassQuery) {
        let Some(reception) = &frame.reception else {
            self.without_station += 1;
            return;
        };
        let station = &*reception.delivery.station;
        let receives = match groups.get(&frame.source) {
            Some((group, _)) => Receives::Group(group.clone()),
            None => Receives::Source(frame.source),
        };
        if query.wants(station, &receives) {
            let key = (station.to_owned(), receives);
            self.by_station.entry(key).or_default().push(frame);
        }
    }
}

/// The passes of the `stations`' frames, read with `read`'s completeness.
fn of_frames(
    read: Completeness,
    stations: Stations,
    filter: &FrameFilter,
    groups: &MergeGroups,
    query: &PassQuery,
) -> Passes {
    let Stations {
        by_station,
        without_station,
    } = stations;
    let context = report::Context {
        read: &read,
        group_passes: completeness::passes(&read.sources, groups),
        groups,
        window: (filter.since, filter.until),
        gap_ns: query.gap_ns,
    };
    let mut passes = Vec::new();
    for ((station, receives), mut frames) in by_station {
        for range in split::split(&mut frames, report::pass_time, query.gap_ns) {
            passes.push(context.pass(&station, &receives, &frames[range]));
        }
    }
    passes.sort_by(|a, b| {
        (a.aos_ns, &a.station, &a.receives).cmp(&(b.aos_ns, &b.station, &b.receives))
    });
    Passes {
        passes,
        without_station,
        read,
    }
}

impl PassQuery {
    /// Whether the passes of `station` receiving `receives` are asked for.
    fn wants(&self, station: &str, receives: &Receives) -> bool {
        let station_wanted = self.station.as_deref().is_none_or(|s| s == station);
        let group_wanted = match (&self.group, receives) {
            (None, _) => true,
            (Some(wanted), Receives::Group(group)) => wanted == group,
            (Some(_), Receives::Source(_)) => false,
        };
        station_wanted && group_wanted
    }
}

/// The sequences of `frames`.
fn sequences<'a>(frames: impl IntoIterator<Item = &'a SeenFrame>) -> SequenceSet {
    let mut held = SequenceSet::default();
    frames
        .into_iter()
        .for_each(|f| held.insert_run(f.sequence, f.sequence));
    held
}

#[cfg(test)]
mod tests;
