//! The passes of merge groups: the stations of one group deliver the same APID's packets, each
//! stored once from the station that delivered it first, so one APID's completeness over a pass
//! is that of its stations' sources together, with what each delivered and filled for another.

use std::collections::BTreeMap;

use super::answer::{gaps, Gap, GapCause, SourceCompleteness};
use crate::config::LinkConfig;
use crate::domain::frame::SourceKey;
use crate::domain::sequence_set::SequenceSet;

/// The sources of the stations of merge groups (`[[links]]` of one `group`), by source: the
/// group, and the APID whose count the source carries. Built from the config
/// ([`merge_groups`]): the archive does not know which links were redundant.
pub type MergeGroups = std::collections::HashMap<SourceKey, (String, u16)>;

/// The merge groups of `links`: each station's source of each APID, for the links that name a
/// `group`.
pub fn merge_groups(links: &[LinkConfig]) -> MergeGroups {
    let mut groups = MergeGroups::new();
    for link in links.iter().filter(|l| l.group.is_some()) {
        for (apid, id) in link.count_sources() {
            groups.insert((link.kind, id), (link.group_name().to_owned(), apid));
        }
    }
    groups
}

/// One APID of a merge group over the window: the packets its stations' sources hold together
/// (each stored once, from the station that delivered it first), the gaps no station filled, what
/// each station delivered, and what one filled for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub group: String,
    pub apid: u16,
    pub held: SequenceSet,
    pub gaps: Vec<Gap>,
    /// What each station delivered.
    pub stations: Vec<PassStation>,
    pub filled: Vec<Filled>,
}

/// A station of a pass: its source, and the sequences whose copy it delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassStation {
    pub station: String,
    pub source: SourceKey,
    pub held: SequenceSet,
}

/// Sequences `first..=last` that `station` delivered within the span of `other` (from the first
/// to the last sequence `other` delivered in the window): packets `other` lost, or delivered
/// later than `station`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    pub station: String,
    pub other: String,
    pub first: u64,
    pub last: u64,
}

/// The passes of `sources` that belong to merge groups, by group and APID.
pub fn passes(sources: &[SourceCompleteness], groups: &MergeGroups) -> Vec<Pass> {
    let mut members: BTreeMap<(&str, u16), Vec<&SourceCompleteness>> = BTreeMap::new();
    for source in sources {
        if let Some((group, apid)) = groups.get(&source.source) {
            members.entry((group, *apid)).or_default().push(source);
        }
    }
    members
        .into_iter()
        .map(|((group, apid), members)| {
            let (mut held, mut pruned) = (SequenceSet::default(), SequenceSet::default());
            let mut stations = Vec::new();
            for source in members {
                source.held.runs().for_each(|(a, b)| held.insert_run(a, b));
                let deleted = source
                    .gaps
                    .iter()
                    .filter(|g| g.cause == GapCause::Retention);
                deleted.for_each(|g| pruned.insert_run(g.first, g.last));
                for (station, sequences) in &source.stations {
                    stations.push(PassStation {
                        station: station.clone(),
                        source: source.source,
                        held: sequences.clone(),
                    });
                }
            }
            let gaps = gaps(&held, Some(&pruned), GapCause::SpaceLink);
            let filled = filled(&stations);
            Pass {
                group: group.to_owned(),
                apid,
                held,
                gaps,
                stations,
                filled,
            }
        })
        .collect()
}

/// The runs each station filled for another, station by station, lowest first (the passes of
/// stations, `crate::archive::query::passes`, ask it of one station's pass).
pub fn filled(stations: &[PassStation]) -> Vec<Filled> {
    let mut filled = Vec::new();
    for PassStation { station, held, .. } in stations {
        for PassStation {
            station: other,
            held: theirs,
            ..
        } in stations
        {
            let (Some(from), Some(to)) = (theirs.first(), theirs.last()) else {
                continue;
            };
            if other == station {
                continue;
            }
            let within = held.runs().filter(|&(a, b)| a <= to && b >= from);
            filled.extend(within.map(|(a, b)| Filled {
                station: station.clone(),
                other: other.clone(),
                first: a.max(from),
                last: b.min(to),
            }));
        }
    }
    filled
}

#[cfg(test)]
mod tests {
    use super::super::answer::gap;
    use super::super::gathered::{Around, Gathered};
    use super::*;
    use crate::domain::frame::SourceKind;

    /// A merged pass: Kiruna delivered 0..=49 and 80..=119 but lost 50..=79, Svalbard filled
    /// 50..=59 and 65..=79; nobody had 60..=64 nor 100..=109 (both lost on the space link).
    /// Each station has a source of its own (live:507, live:607).
    #[test]
    fn a_pass_says_which_station_delivered_what_and_what_one_filled_for_the_other() {
        let kiruna = [(0, 49), (80, 99), (110, 119)];
        let svalbard = [(50, 59), (65, 79)];
        let mut groups = MergeGroups::new();
        let mut sources = Vec::new();
        for (station, id, runs) in [
            ("Kiruna", 507, &kiruna[..]),
            ("Svalbard", 607, &svalbard[..]),
        ] {
            let mut source = Gathered::new(None);
            for &(a, b) in runs {
                (a..=b).for_each(|sequence| source.add_frame(sequence, 1000, None));
                source.add_station(station, [(a, b)]);
            }
            let key = (SourceKind::LiveUplink, id);
            sources.push(source.finish(key, Around::default(), None));
            groups.insert(key, ("pass".into(), 7));
        }
        // Alone, each station's source has gaps on the space link.
        assert_eq!(sources[1].gaps, [gap(60, 64, GapCause::SpaceLink)]);
        let passes = passes(&sources, &groups);
        assert_eq!(passes.len(), 1);
        let pass = &passes[0];
        assert_eq!((pass.group.as_str(), pass.apid), ("pass", 7));
        assert_eq!(
            pass.held,
            SequenceSet::of_runs(&[(0, 59), (65, 99), (110, 119)])
        );
        assert_eq!(
            pass.gaps,
            [
                gap(60, 64, GapCause::SpaceLink),
                gap(100, 109, GapCause::SpaceLink)
            ]
        );
        let stations: Vec<_> = (pass.stations.iter())
            .map(|s| (s.station.as_str(), s.source.1))
            .collect();
        assert_eq!(stations, [("Kiruna", 507), ("Svalbard", 607)]);
        let filled = |first, last| Filled {
            station: "Svalbard".into(),
            other: "Kiruna".into(),
            first,
            last,
        };
        assert_eq!(pass.filled, [filled(50, 59), filled(65, 79)]);
        assert!(super::passes(&sources, &MergeGroups::new()).is_empty());
    }
}
