//! Passes of frames made by hand: the split, the clock each pass is on, a window's cut, and what
//! one station of a merge group filled for another.

use std::sync::Arc;

use super::*;
use crate::archive::query::completeness::SourceCompleteness;
use crate::domain::frame::SourceKind;
use crate::domain::reception::{Delivery, Received, Reception};

const SECOND: u64 = 1_000_000_000;
const T0: u64 = 1_800_000_000 * SECOND;

fn frame(
    station: &str,
    source: u32,
    sequence: u64,
    received: u64,
    earth: Option<u64>,
) -> SeenFrame {
    let delivery = Arc::new(Delivery::live(&format!("{station}-link"), station));
    SeenFrame {
        source: (SourceKind::LiveUplink, source),
        sequence,
        received_ns: received,
        bytes: 100,
        reception: Some(Reception {
            delivery,
            received: Received {
                earth_unix_ns: earth,
                ..Received::default()
            },
        }),
    }
}

/// The completeness the frames make: their sequences by source and station.
fn read_of(frames: &[SeenFrame]) -> Completeness {
    let mut sources: BTreeMap<SourceKey, SourceCompleteness> = BTreeMap::new();
    for f in frames {
        let source = sources
            .entry(f.source)
            .or_insert_with(|| SourceCompleteness {
                source: f.source,
                frames: 0,
                outside_window: 0,
                held: SequenceSet::default(),
                gaps: Vec::new(),
                timeline: None,
                stations: BTreeMap::new(),
            });
        source.frames += 1;
        source.held.insert_run(f.sequence, f.sequence);
        let station = f.reception.as_ref().unwrap().delivery.station.to_string();
        let held = source.stations.entry(station).or_default();
        held.insert_run(f.sequence, f.sequence);
    }
    Completeness {
        sources: sources.into_values().collect(),
        ..Completeness::default()
    }
}

fn query(gap_s: u64) -> PassQuery {
    PassQuery {
        gap_ns: gap_s * SECOND,
        station: None,
        group: None,
    }
}

/// Without earth-receive times a station is split on the received time, and says so; a pass
/// with some is `mixed`; the window's end clips the newest pass.
#[test]
fn without_earth_time_passes_are_on_the_received_time_and_say_so() {
    let mut frames: Vec<SeenFrame> = (0..10)
        .map(|i| frame("Kiruna", 7, i, T0 + i * SECOND, None))
        .collect();
    // An hour later, a pass of which one frame has its earth time.
    frames.extend((10..20).map(|i| {
        let received = T0 + 3600 * SECOND + i * SECOND;
        frame(
            "Kiruna",
            7,
            i,
            received,
            (i == 15).then_some(received - SECOND),
        )
    }));
    // A source of the ingest protocol: no station, in no pass.
    frames.push(SeenFrame {
        reception: None,
        ..frame("x", 9, 0, T0, None)
    });
    let filter = FrameFilter {
        since: Some(T0 - 3600 * SECOND),
        until: Some(T0 + 3620 * SECOND),
        ..FrameFilter::default()
    };
    let read = read_of(&frames[..20]);
    let (groups, asked) = (MergeGroups::new(), query(600));
    let stations = stations_of(frames, &groups, &asked);
    let answer = of_frames(read, stations, &filter, &groups, &asked);
    assert_eq!(answer.without_station, 1);
    let passes = &answer.passes;
    assert_eq!(passes.len(), 2, "{passes:#?}");
    assert_eq!(passes[0].time_basis, TimeBasis::Received);
    assert_eq!((passes[0].aos_ns, passes[0].los_ns), (T0, T0 + 9 * SECOND));
    assert_eq!(passes[0].latency, None);
    assert_eq!(passes[0].clipped, Clipped::default());
    assert_eq!(passes[1].time_basis, TimeBasis::Mixed);
    assert_eq!(passes[1].earth_time, 1);
    let latency = Latency {
        p50_ns: SECOND as i64,
        max_ns: SECOND as i64,
    };
    assert_eq!(passes[1].latency, Some(latency));
    assert!(passes[1].clipped.at_to && !passes[1].clipped.at_from);
    assert_eq!(
        passes[1].receives,
        Receives::Source((SourceKind::LiveUplink, 7))
    );
    assert_eq!((passes[1].frames, passes[1].bytes), (10, 1000));
}

/// Two stations of one group: Kiruna's pass lost 50..=79, which Svalbard delivered (its clock 30
/// s behind); 100..=109 nobody has. Each pass is on its station's earth time, and Kiruna's says
/// what Svalbard filled and what is still missing.
#[test]
fn a_station_s_pass_says_what_another_of_its_group_filled() {
    let at = |s: u64| T0 + s * SECOND;
    let late = 2 * SECOND;
    let kiruna = (0..50).chain(80..100).chain(110..120);
    let mut frames: Vec<SeenFrame> = kiruna
        .map(|i| frame("Kiruna", 10_007, i, at(i) + late, Some(at(i))))
        .collect();
    frames.extend((50..80).map(|i| {
        frame(
            "Svalbard",
            20_007,
            i,
            at(i) + late,
            Some(at(i) - 30 * SECOND),
        )
    }));
    let mut groups = MergeGroups::new();
    groups.insert((SourceKind::LiveUplink, 10_007), ("pass".into(), 7));
    groups.insert((SourceKind::LiveUplink, 20_007), ("pass".into(), 7));
    let read = read_of(&frames);
    let asked = query(60);
    let stations = stations_of(frames, &groups, &asked);
    let answer = of_frames(read, stations, &FrameFilter::default(), &groups, &asked);
    let passes = &answer.passes;
    assert_eq!(passes.len(), 2, "{passes:#?}");
    let (kiruna, svalbard) = (&passes[0], &passes[1]);
    assert_eq!(kiruna.station, "Kiruna");
    assert_eq!(kiruna.receives, Receives::Group("pass".into()));
    assert_eq!((kiruna.aos_ns, kiruna.los_ns), (at(0), at(119)));
    assert_eq!(kiruna.time_basis, TimeBasis::EarthReceived);
    assert_eq!(kiruna.latency.map(|l| l.max_ns), Some(late as i64));
    assert_eq!(
        (kiruna.frames, kiruna.filled(), kiruna.missing()),
        (80, 30, 10)
    );
    let source = &kiruna.sources[0];
    assert_eq!(source.apid, Some(7));
    let filled: Vec<_> = (source.filled.iter())
        .map(|f| (f.station.as_str(), f.first, f.last))
        .collect();
    assert_eq!(filled, [("Svalbard", 50, 79)]);
    assert_eq!((source.gaps[0].first, source.gaps[0].last), (100, 109));
    // Svalbard's clock is 30 s behind: its pass is on it, and nobody filled for it.
    assert_eq!((svalbard.aos_ns, svalbard.los_ns), (at(20), at(49)));
    assert_eq!(
        (svalbard.frames, svalbard.filled(), svalbard.missing()),
        (30, 0, 0)
    );
    // Asked for one station, or another group: only those.
    let only = |station: Option<&str>, group: Option<&str>| PassQuery {
        station: station.map(Into::into),
        group: group.map(Into::into),
        ..query(60)
    };
    let wants = |q: &PassQuery, station: &str| q.wants(station, &Receives::Group("pass".into()));
    assert!(wants(&only(Some("Kiruna"), None), "Kiruna"));
    assert!(!wants(&only(Some("Kiruna"), None), "Svalbard"));
    assert!(!wants(&only(None, Some("other")), "Kiruna"));
    assert!(wants(&only(None, Some("pass")), "Kiruna"));
}

/// `frames` kept as a reading keeps them for `query`.
fn stations_of(frames: Vec<SeenFrame>, groups: &MergeGroups, query: &PassQuery) -> Stations {
    let mut stations = Stations::default();
    frames
        .into_iter()
        .for_each(|f| stations.add(f, groups, query));
    stations
}
