//! The passes of stations ([`crate::archive::query::passes`]) as JSON: the body of
//! `GET /archive/passes`, and, byte for byte, what `aggregator archive passes --json` prints.
//! `docs/http-api.md` ("GET /archive/passes") lists every field; clients are written from it.

use super::completeness_json::{add_passed_over, gaps_json, runs_json};
use crate::archive::query::passes::{PassSource, Passes, Receives, StationPass};
use crate::domain::clock;
use crate::domain::display::unix_ns_to_rfc3339;
use crate::domain::filter::FrameFilter;
use crate::domain::frame::SourceKey;

/// The answer as JSON: the window (`null` for an open start), the gap, each pass, the frames of
/// no station, and what the reading passed over (`damaged`, `missing_segments`, `clock`, as
/// completeness answers say them, each only when there is any).
pub fn answer_json(answer: &Passes, filter: &FrameFilter, gap_ns: u64) -> serde_json::Value {
    let time = |ns: Option<u64>| ns.map(unix_ns_to_rfc3339);
    let mut json = serde_json::json!({
        "from": time(filter.since),
        "to": time(filter.until),
        "pass_gap_seconds": seconds(gap_ns),
        "passes": answer.passes.iter().map(pass_json).collect::<Vec<_>>(),
        "frames_without_station": answer.without_station,
    });
    add_passed_over(&answer.read, &mut json);
    json
}

/// One pass.
fn pass_json(p: &StationPass) -> serde_json::Value {
    let (group, source) = match &p.receives {
        Receives::Group(group) => (Some(group.clone()), None),
        Receives::Source(source) => (None, Some(source_text(*source))),
    };
    let latency = p.latency.map(|l| {
        serde_json::json!({
            "p50_seconds": clock::seconds(l.p50_ns),
            "max_seconds": clock::seconds(l.max_ns),
        })
    });
    serde_json::json!({
        "station": p.station,
        "links": p.links,
        "group": group,
        "source": source,
        "time": p.time_basis.label(),
        "aos": unix_ns_to_rfc3339(p.aos_ns),
        "los": unix_ns_to_rfc3339(p.los_ns),
        "duration_seconds": seconds(p.los_ns.saturating_sub(p.aos_ns)),
        "first_received": unix_ns_to_rfc3339(p.first_received_ns),
        "last_received": unix_ns_to_rfc3339(p.last_received_ns),
        "clipped_at_from": p.clipped.at_from,
        "clipped_at_to": p.clipped.at_to,
        "frames": p.frames,
        "bytes": p.bytes,
        "filled": p.filled(),
        "missing": p.missing(),
        "realtime": p.frames - p.playback,
        "playback": p.playback,
        "earth_time": p.earth_time,
        "latency": latency,
        "sources": p.sources.iter().map(source_json).collect::<Vec<_>>(),
    })
}

/// One source of a pass.
fn source_json(s: &PassSource) -> serde_json::Value {
    let filled: Vec<serde_json::Value> = (s.filled.iter())
        .map(|f| serde_json::json!({"station": f.station, "first": f.first, "last": f.last}))
        .collect();
    serde_json::json!({
        "source": source_text(s.source),
        "apid": s.apid,
        "frames": s.held.len(),
        "first": s.held.first(),
        "last": s.held.last(),
        "held": runs_json(&s.held),
        "filled": filled,
        "gaps": gaps_json(&s.gaps),
    })
}

/// `KIND:ID`.
pub(crate) fn source_text((kind, id): SourceKey) -> String {
    format!("{}:{id}", kind.label())
}

/// Nanoseconds as seconds.
fn seconds(ns: u64) -> f64 {
    clock::seconds(i64::try_from(ns).unwrap_or(i64::MAX))
}
