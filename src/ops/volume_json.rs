//! The data volume of stations ([`crate::archive::query::volume`]) as JSON: the body of
//! `GET /archive/volume`, and, byte for byte, what `aggregator archive volume --json` prints.
//! `docs/http-api.md` ("GET /archive/volume") lists every field; clients are written from it.

use super::completeness_json::add_passed_over;
use super::passes_json::source_text;
use crate::archive::query::volume::{Count, Volume, VolumeRow};
use crate::domain::display::unix_ns_to_rfc3339;
use crate::domain::filter::FrameFilter;

/// The answer as JSON: the window (`null` for an open start), a row per station and source, the
/// totals per station, per group and of everything, the frames of no station per source, and
/// what the reading passed over (`damaged`, `missing_segments`, `clock`, as completeness answers
/// say them, each only when there is any).
pub fn answer_json(answer: &Volume, filter: &FrameFilter) -> serde_json::Value {
    let time = |ns: Option<u64>| ns.map(unix_ns_to_rfc3339);
    let named = |key: &str, totals: &[(String, Count)]| -> Vec<serde_json::Value> {
        (totals.iter())
            .map(|(name, count)| counted(serde_json::json!({ key: name }), *count))
            .collect()
    };
    let without_station: Vec<serde_json::Value> = (answer.without_station.iter())
        .map(|(source, count)| counted(serde_json::json!({"source": source_text(*source)}), *count))
        .collect();
    let mut json = serde_json::json!({
        "from": time(filter.since),
        "to": time(filter.until),
        "rows": answer.rows.iter().map(row_json).collect::<Vec<_>>(),
        "stations": named("station", &answer.stations),
        "groups": named("group", &answer.groups),
        "without_station": without_station,
        "total": counted(serde_json::json!({}), answer.total()),
    });
    add_passed_over(&answer.read, &mut json);
    json
}

/// One station's frames of one source.
fn row_json(row: &VolumeRow) -> serde_json::Value {
    let json = serde_json::json!({
        "station": row.station,
        "group": row.group,
        "source": source_text(row.source),
    });
    counted(json, row.count)
}

/// `json` with `frames` and `bytes` of `count`.
fn counted(mut json: serde_json::Value, count: Count) -> serde_json::Value {
    json["frames"] = count.frames.into();
    json["bytes"] = count.bytes.into();
    json
}
