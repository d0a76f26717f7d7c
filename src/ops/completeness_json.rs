//! A completeness answer ([`crate::archive::query::completeness`]) as JSON: the body of
//! `GET /archive/completeness`, and, byte for byte, what `aggregator archive gaps --json` prints.

use crate::archive::query::completeness::{
    passes, ClockRecord, Completeness, Gap, MergeGroups, Pass, SourceCompleteness,
};
use crate::domain::clock;
use crate::domain::display::unix_ns_to_rfc3339;
use crate::domain::filter::FrameFilter;
use crate::domain::frame::SourceKey;
use crate::domain::sequence_set::SequenceSet;
use crate::follow::client::damaged_json;

/// The answer as JSON, as `GET /archive/completeness` and `aggregator archive gaps --json` give
/// it: the window (`null` for an open end) and each source's frames, runs held and gaps, and with
/// a timeline its buckets, each `[frames, missing]`.
pub(crate) fn to_json(sources: &[SourceCompleteness], filter: &FrameFilter) -> serde_json::Value {
    let time = |ns: Option<u64>| ns.map(unix_ns_to_rfc3339);
    let sources: Vec<serde_json::Value> = sources
        .iter()
        .map(|s| {
            let mut source = serde_json::json!({
                "kind": s.source.0.label(),
                "source": s.source.1,
                "frames": s.frames,
                "first": s.held.first(),
                "last": s.held.last(),
                "held": runs_json(&s.held),
                "gaps": gaps_json(&s.gaps),
            });
            if s.outside_window > 0 {
                source["outside_window"] = s.outside_window.into();
            }
            if let Some(timeline) = &s.timeline {
                let buckets: Vec<[u64; 2]> =
                    timeline.iter().map(|b| [b.frames, b.missing]).collect();
                source["timeline"] = serde_json::json!(buckets);
            }
            if !s.stations.is_empty() {
                source["stations"] = (s.stations.iter())
                    .map(|(station, held)| station_json(station, None, held))
                    .collect();
            }
            source
        })
        .collect();
    serde_json::json!({
        "from": time(filter.since),
        "to": time(filter.until),
        "sources": sources,
    })
}

/// A station's runs: `{"station": NAME, ["source": "KIND:ID",] "frames": N, "held": [[first,
/// last], ...]}`.
fn station_json(station: &str, source: Option<SourceKey>, held: &SequenceSet) -> serde_json::Value {
    let mut json =
        serde_json::json!({"station": station, "frames": held.len(), "held": runs_json(held)});
    if let Some((kind, id)) = source {
        json["source"] = format!("{}:{id}", kind.label()).into();
    }
    json
}

pub(crate) fn runs_json(held: &SequenceSet) -> serde_json::Value {
    held.runs()
        .map(|(a, b)| [a, b])
        .collect::<Vec<[u64; 2]>>()
        .into()
}

pub(crate) fn gaps_json(gaps: &[Gap]) -> serde_json::Value {
    (gaps.iter())
        .map(|g| {
            serde_json::json!({
                "first": g.first,
                "last": g.last,
                "frames": g.last - g.first + 1,
                "cause": g.cause.label(),
            })
        })
        .collect()
}

/// [`to_json`] of the answer's sources, with the passes of `groups` under `passes` when there
/// are any, and what could not be read under `damaged` and `missing_segments` when anything.
pub fn answer_json(
    answer: &Completeness,
    filter: &FrameFilter,
    groups: &MergeGroups,
) -> serde_json::Value {
    let mut json = to_json(&answer.sources, filter);
    let passes = passes(&answer.sources, groups);
    if !passes.is_empty() {
        json["passes"] = passes_json(&passes);
    }
    add_passed_over(answer, &mut json);
    json
}

/// Adds what the reading of `answer` passed over to `json`: `damaged`, `missing_segments` and
/// `clock`, each only when there is any (the passes of stations say it alike).
pub(crate) fn add_passed_over(answer: &Completeness, json: &mut serde_json::Value) {
    if !answer.damaged.is_empty() {
        json["damaged"] = answer.damaged.iter().map(damaged_json).collect();
    }
    if !answer.missing.is_empty() {
        json["missing_segments"] = (answer.missing.iter())
            .map(|(shard, segment)| serde_json::json!({"shard": shard, "segment": segment}))
            .collect();
    }
    if !answer.clock.is_empty() {
        json["clock"] = answer.clock.iter().map(clock_json).collect();
    }
}

/// The passes as JSON, the `passes` of `GET /archive/completeness` and of `aggregator archive
/// gaps --json --config FILE`.
fn passes_json(passes: &[Pass]) -> serde_json::Value {
    (passes.iter())
        .map(|p| {
            let stations: Vec<serde_json::Value> = (p.stations.iter())
                .map(|s| station_json(&s.station, Some(s.source), &s.held))
                .collect();
            let filled: Vec<serde_json::Value> = (p.filled.iter())
                .map(|f| serde_json::json!({"station": f.station, "for": f.other, "first": f.first, "last": f.last}))
                .collect();
            serde_json::json!({
                "group": p.group,
                "apid": p.apid,
                "frames": p.held.len(),
                "held": runs_json(&p.held),
                "gaps": gaps_json(&p.gaps),
                "stations": stations,
                "filled": filled,
            })
        })
        .collect()
}

/// A CLOCK record: `{"shard":S,"segment":N,"offset":O,"event":"start"|"step","at":T,"wall":T,
/// "jump_seconds":F}`.
fn clock_json(record: &ClockRecord) -> serde_json::Value {
    let e = &record.event;
    serde_json::json!({
        "shard": record.shard,
        "segment": record.segment,
        "offset": record.offset,
        "event": e.kind.label(),
        "at": unix_ns_to_rfc3339(e.archive_ns),
        "wall": unix_ns_to_rfc3339(e.wall_ns),
        "jump_seconds": clock::seconds(e.jump_ns),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::archive::query::completeness::GapCause;
    use crate::domain::frame::SourceKind;

    /// Kiruna's source (live:507) and Svalbard's (live:607), stations of one merge group: what
    /// each delivered, and what Svalbard filled for Kiruna.
    fn station_source(station: &str, id: u32, runs: &[(u64, u64)]) -> SourceCompleteness {
        let held = SequenceSet::of_runs(runs);
        SourceCompleteness {
            source: (SourceKind::LiveUplink, id),
            frames: held.len(),
            outside_window: 0,
            held: held.clone(),
            gaps: Vec::new(),
            timeline: None,
            stations: BTreeMap::from([(station.to_string(), held)]),
        }
    }

    #[test]
    fn a_pass_is_named_with_its_stations_and_what_one_filled_for_another() {
        let mut kiruna = station_source("Kiruna", 507, &[(0, 49), (80, 99)]);
        kiruna.gaps.push(Gap {
            first: 50,
            last: 79,
            cause: GapCause::SpaceLink,
        });
        let svalbard = station_source("Svalbard", 607, &[(50, 59), (65, 79)]);
        let mut groups = MergeGroups::new();
        for source in [&kiruna, &svalbard] {
            groups.insert(source.source, ("pass".into(), 7));
        }
        let answer = Completeness {
            sources: vec![kiruna, svalbard],
            ..Completeness::default()
        };
        let json = answer_json(&answer, &FrameFilter::default(), &groups);
        assert_eq!(json["sources"][0]["stations"][0]["station"], "Kiruna");
        assert_eq!(
            json["sources"][0]["gaps"],
            serde_json::json!([{"first": 50, "last": 79, "frames": 30, "cause": "space_link"}])
        );
        let stations = &json["passes"][0]["stations"];
        assert_eq!(stations[1]["source"], "live:607");
        assert_eq!(stations[1]["held"], serde_json::json!([[50, 59], [65, 79]]));
        assert_eq!(
            json["passes"][0]["filled"][0],
            serde_json::json!({"station": "Svalbard", "for": "Kiruna", "first": 50, "last": 59})
        );
        // Without the config's groups, no passes.
        let alone = answer_json(&answer, &FrameFilter::default(), &MergeGroups::new());
        assert!(alone.get("passes").is_none());
        assert!(alone.get("damaged").is_none() && alone.get("missing_segments").is_none());
        assert_eq!(alone["from"], serde_json::Value::Null);
    }
}
