//! Data volume over a window: the frames and bytes each station delivered of each source, with
//! the source's merge group, summed per station and per group; and the frames of no station (the
//! ingest protocol's sources) per source. What answers "how much did Svalbard deliver of sat-a
//! last week" (`aggregator archive volume`, `GET /archive/volume`).
//!
//! Why every frame is read from its block: a sealed segment's index holds each source's frames
//! and which sequences each station delivered, but not their bytes, so the index cannot answer
//! alone. The reading is the passes' ([`completeness::with_frames`]): the same window, the same
//! damage passed over and named, the same station of each frame (its reception metadata).
//!
//! Rules an operator can rely on (`docs/archive-tools.md`, "volume"):
//! - The window is of received times, as every archive query's; bytes are the stored payloads'.
//! - In a merge group each packet is stored once, from the station that delivered it first: a
//!   copy another station delivered later is in no file and counts for nobody here (the link's
//!   `aggregator_link_copies_total` counts it).
//! - `station` and `group` pick rows; frames of no station belong to neither, so they are listed
//!   only when neither is asked.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use super::completeness::{self, Completeness, MergeGroups, SeenFrame};
use crate::archive::format::ArchiveError;
use crate::archive::read::{self, DurableEnds};
use crate::domain::filter::FrameFilter;
use crate::domain::frame::SourceKey;

/// Frames and the bytes of their payloads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Count {
    pub frames: u64,
    pub bytes: u64,
}

impl Count {
    /// Adds one frame of `bytes`.
    fn add_frame(&mut self, bytes: u64) {
        self.frames += 1;
        self.bytes += bytes;
    }

    /// Adds `other`'s frames and bytes.
    fn add(&mut self, other: Count) {
        self.frames += other.frames;
        self.bytes += other.bytes;
    }
}

/// What one station delivered of one source over the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub station: String,
    /// The source's merge group, `None` when it is in none.
    pub group: Option<String>,
    pub source: SourceKey,
    pub count: Count,
}

/// Which rows are asked for, besides the window and the sources.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VolumeQuery {
    /// Only this station's rows.
    pub station: Option<String>,
    /// Only the rows of this merge group.
    pub group: Option<String>,
}

/// The volume of a window, and what could not be read of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// By station, then group (none first), then source.
    pub rows: Vec<VolumeRow>,
    /// The rows summed per station, by name.
    pub stations: Vec<(String, Count)>,
    /// The rows of a group summed per group, by name.
    pub groups: Vec<(String, Count)>,
    /// The frames of no station, per source (empty when a station or a group is asked).
    pub without_station: Vec<(SourceKey, Count)>,
    /// The window's completeness: its `damaged`, `missing` and `clock` say what was passed over.
    pub read: Completeness,
}

impl Volume {
    /// Every row and every frame of no station together.
    pub fn total(&self) -> Count {
        let mut total = Count::default();
        self.rows.iter().for_each(|r| total.add(r.count));
        self.without_station.iter().for_each(|(_, c)| total.add(*c));
        total
    }

    /// The frames of no station, of every source.
    pub fn frames_without_station(&self) -> u64 {
        self.without_station.iter().map(|(_, c)| c.frames).sum()
    }
}

/// The volume of the archive's files as they are now (a stopped archive, or one read beside its
/// daemon). Blocking.
pub fn of_files(
    root: &Path,
    filter: &FrameFilter,
    groups: &MergeGroups,
    query: &VolumeQuery,
) -> Result<Volume, ArchiveError> {
    volume(root, &read::stopped_ends(root)?, filter, groups, query)
}

/// The volume of the frames `filter` wants (its window of received times, its sources) in the
/// archive at `root` up to `ends`, the sources grouped by `groups`. Blocking.
pub fn volume(
    root: &Path,
    ends: &DurableEnds,
    filter: &FrameFilter,
    groups: &MergeGroups,
    query: &VolumeQuery,
) -> Result<Volume, ArchiveError> {
    // Counted as they are read: what is kept is a count per station, group and source.
    let mut counts = Counts::default();
    let read = completeness::with_frames(root, ends, filter, &mut |frame| {
        counts.add(&frame, groups);
    })?;
    Ok(of_counts(read, counts, query))
}

/// The frames and bytes of each station, group and source, and of each source of no station.
#[derive(Default)]
struct Counts<'g> {
    by_station: BTreeMap<(Arc<str>, Option<&'g str>, SourceKey), Count>,
    without_station: BTreeMap<SourceKey, Count>,
}

impl<'g> Counts<'g> {
    fn add(&mut self, frame: &SeenFrame, groups: &'g MergeGroups) {
        let Some(reception) = &frame.reception else {
            (self.without_station.entry(frame.source))
                .or_default()
                .add_frame(frame.bytes);
            return;
        };
        let group = groups.get(&frame.source).map(|(group, _)| group.as_str());
        let key = (Arc::clone(&reception.delivery.station), group, frame.source);
        self.by_station
            .entry(key)
            .or_default()
            .add_frame(frame.bytes);
    }
}

/// The volume of `counts`, read with `read`'s completeness.
fn of_counts(read: Completeness, counts: Counts, query: &VolumeQuery) -> Volume {
    let Counts {
        by_station,
        without_station,
    } = counts;
    let rows: Vec<VolumeRow> = (by_station.into_iter())
        .filter(|((station, group, _), _)| query.wants(station, *group))
        .map(|((station, group, source), count)| VolumeRow {
            station: station.to_string(),
            group: group.map(str::to_owned),
            source,
            count,
        })
        .collect();
    let asked_of_stations = query.station.is_some() || query.group.is_some();
    Volume {
        stations: totals(rows.iter().map(|r| (Some(r.station.as_str()), r.count))),
        groups: totals(rows.iter().map(|r| (r.group.as_deref(), r.count))),
        rows,
        without_station: match asked_of_stations {
            true => Vec::new(),
            false => without_station.into_iter().collect(),
        },
        read,
    }
}

/// The counts summed per name, by name; those of no name left out.
fn totals<'a>(counts: impl Iterator<Item = (Option<&'a str>, Count)>) -> Vec<(String, Count)> {
    let mut totals: BTreeMap<&str, Count> = BTreeMap::new();
    for (name, count) in counts {
        if let Some(name) = name {
            totals.entry(name).or_default().add(count);
        }
    }
    (totals.into_iter())
        .map(|(name, count)| (name.to_owned(), count))
        .collect()
}

impl VolumeQuery {
    /// Whether the row of `station` for a source of `group` is asked for.
    fn wants(&self, station: &str, group: Option<&str>) -> bool {
        let station_wanted = self.station.as_deref().is_none_or(|s| s == station);
        let group_wanted = self.group.as_deref().is_none_or(|g| Some(g) == group);
        station_wanted && group_wanted
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::frame::SourceKind;
    use crate::domain::reception::{Delivery, Reception};

    const KIRUNA_A: SourceKey = (SourceKind::LiveUplink, 10_007);
    const SVALBARD_A: SourceKey = (SourceKind::LiveUplink, 20_007);
    const SVALBARD_B: SourceKey = (SourceKind::LiveUplink, 20_100);
    const INGEST: SourceKey = (SourceKind::ArchivedReplay, 3);

    /// A frame of `source` of `bytes`, delivered by `station` (none: the ingest protocol's).
    fn frame(source: SourceKey, station: Option<&str>, bytes: u64) -> SeenFrame {
        let reception = station.map(|station| Reception {
            delivery: Arc::new(Delivery::live(station, station)),
            received: Default::default(),
        });
        SeenFrame {
            source,
            sequence: 0,
            received_ns: 0,
            bytes,
            reception,
        }
    }

    /// Kiruna and Svalbard deliver sat-a (group `sat-a`: live:10007, live:20007); Svalbard also
    /// a source of no group (live:20100); a replay feed has no station.
    fn frames() -> (Vec<SeenFrame>, MergeGroups) {
        let mut frames = Vec::new();
        for (source, station, n, bytes) in [
            (KIRUNA_A, Some("Kiruna"), 80, 106),
            (SVALBARD_A, Some("Svalbard"), 30, 106),
            (SVALBARD_B, Some("Svalbard"), 5, 10),
            (INGEST, None, 7, 64),
        ] {
            (0..n).for_each(|_| frames.push(frame(source, station, bytes)));
        }
        let mut groups = MergeGroups::new();
        groups.insert(KIRUNA_A, ("sat-a".into(), 7));
        groups.insert(SVALBARD_A, ("sat-a".into(), 7));
        (frames, groups)
    }

    fn count(frames: u64, bytes: u64) -> Count {
        Count { frames, bytes }
    }

    fn ask(station: Option<&str>, group: Option<&str>) -> Volume {
        let (frames, groups) = frames();
        let query = VolumeQuery {
            station: station.map(str::to_owned),
            group: group.map(str::to_owned),
        };
        let mut counts = Counts::default();
        frames.iter().for_each(|frame| counts.add(frame, &groups));
        of_counts(Completeness::default(), counts, &query)
    }

    #[test]
    fn rows_are_summed_per_station_and_per_group_and_frames_of_no_station_apart() {
        let volume = ask(None, None);
        let rows: Vec<_> = (volume.rows.iter())
            .map(|r| (r.station.as_str(), r.group.as_deref(), r.source, r.count))
            .collect();
        assert_eq!(
            rows,
            [
                ("Kiruna", Some("sat-a"), KIRUNA_A, count(80, 8480)),
                ("Svalbard", None, SVALBARD_B, count(5, 50)),
                ("Svalbard", Some("sat-a"), SVALBARD_A, count(30, 3180)),
            ]
        );
        assert_eq!(
            volume.stations,
            [
                ("Kiruna".to_owned(), count(80, 8480)),
                ("Svalbard".to_owned(), count(35, 3230)),
            ]
        );
        assert_eq!(volume.groups, [("sat-a".to_owned(), count(110, 11_660))]);
        assert_eq!(volume.without_station, [(INGEST, count(7, 448))]);
        assert_eq!(volume.frames_without_station(), 7);
        assert_eq!(volume.total(), count(122, 11_660 + 50 + 448));
    }

    #[test]
    fn how_much_svalbard_delivered_of_sat_a() {
        let volume = ask(Some("Svalbard"), Some("sat-a"));
        assert_eq!(volume.rows.len(), 1);
        assert_eq!(volume.rows[0].source, SVALBARD_A);
        assert_eq!(volume.stations, [("Svalbard".to_owned(), count(30, 3180))]);
        assert_eq!(volume.groups, [("sat-a".to_owned(), count(30, 3180))]);
        assert!(volume.without_station.is_empty(), "of no station");
        assert_eq!(volume.total(), count(30, 3180));
        // A station alone: each of its sources, the group's total of its rows only.
        let svalbard = ask(Some("Svalbard"), None);
        assert_eq!(svalbard.rows.len(), 2);
        assert_eq!(svalbard.groups, [("sat-a".to_owned(), count(30, 3180))]);
        // A group alone: every station's rows of it, no source of no group.
        let group = ask(None, Some("sat-a"));
        assert_eq!(group.stations.len(), 2);
        assert_eq!(group.total(), count(110, 11_660));
        assert_eq!(ask(Some("Matera"), None).rows, []);
    }
}
