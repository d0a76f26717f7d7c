//! Targets as data: a scenario's `[targets]` table gives a bound to some of the figures the report
//! computes, each keyed by what it measures. A figure without a bound is reported and not judged.
//!
//! ```toml
//! [targets]
//! throughput_over_floor_64b = { at_least = 0.5 }
//! probe_p99_ms = { at_most = 1.0 }
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Every figure a target may bound, with what it is.
pub const MEASURES: [(&str, &str); 26] = [
    (
        "throughput_over_floor_64b",
        "64 B frames/s of daemon and pipeline over the floor's, main runs",
    ),
    (
        "throughput_over_floor_1024b",
        "1024 B frames/s of daemon and pipeline over the floor's, main runs",
    ),
    (
        "scale_throughput_over_main",
        "frames/s with the most scale sources over those with the main runs' sources",
    ),
    ("probe_p99_ms", "the 1 ms probe's p99, send to processed"),
    (
        "stream_emergency_p99_ms",
        "emergency frames of the saturating streams, decode to processed, p99",
    ),
    ("peak_rss_mib_main", "peak RSS of the main runs, MiB"),
    (
        "peak_rss_mib_scale",
        "peak RSS with the most scale sources, MiB",
    ),
    (
        "churn_bytes_per_source",
        "resident memory per source that has left, every frame acknowledged",
    ),
    ("drain_exit_ms", "SIGTERM under load to exit"),
    (
        "throttled_acked_over_limit",
        "acknowledged payload over the throttled disk's write limit",
    ),
    (
        "emergency_only_ack_p99_ms",
        "emergency-only sources' ACK p99 on the throttled disk",
    ),
    (
        "followers_ingest_over_without",
        "ingest with followers of the archive over ingest without",
    ),
    (
        "retention_ingest_over_without",
        "ingest with retention deleting over ingest without, median of the rounds' ratios, per payload",
    ),
    (
        "replicated_over_plain",
        "acknowledged frames/s with sinks.nats ack = \"replicated\" over a plain publisher's PubAcks/s, same stream replicas and window, median of the rounds' ratios, per payload",
    ),
    (
        "replicated_over_plain_64b",
        "the same, at 64 B",
    ),
    (
        "replicated_over_local",
        "acknowledged frames/s with sinks.nats ack = \"replicated\" over those with ack = \"local\", median of the rounds' ratios, per payload",
    ),
    (
        "replicated_frames_per_s_64b",
        "acknowledged frames/s with sinks.nats ack = \"replicated\" at 64 B, median of the rounds",
    ),
    (
        "replicated_payload_mb_per_s_1024b",
        "acknowledged payload MB/s with sinks.nats ack = \"replicated\" at 1 KiB, median of the rounds",
    ),
    (
        "replicated_emergency_ack_p99_ms_64b",
        "emergency-only sources' ACK p99 with sinks.nats ack = \"replicated\" at 64 B, median of the rounds",
    ),
    (
        "sweep_pipeline_over_floor",
        "pipeline frames/s over the floor's at the configured shard count",
    ),
    (
        "sweep_durable_over_durable_floor",
        "durable daemon's archived MB/s over the durable floor's",
    ),
    (
        "query_first_frame_ms",
        "a quarter of an hour of one source, archive evicted: first frame, slowest query",
    ),
    (
        "query_read_over_allowance",
        "bytes the daemon read for a range query over 2 x its answer + the indexes, largest",
    ),
    (
        "completeness_day_ms",
        "completeness of every source over the day, archive evicted",
    ),
    (
        "passes_day_ms",
        "passes of every station over the day, archive evicted",
    ),
    (
        "ingest_beside_queries_over_alone",
        "ingest beside range queries and a Parquet export over ingest alone, medians",
    ),
];

/// A bound on one figure.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Goal {
    pub at_least: Option<f64>,
    pub at_most: Option<f64>,
}

/// A scenario's targets, by measure.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Goals(BTreeMap<String, Goal>);

/// One judged figure.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

impl Goals {
    /// `Err` names a key no figure answers to, or a goal with no bound or both.
    pub fn check(&self) -> Result<(), String> {
        for (key, goal) in &self.0 {
            if !MEASURES.iter().any(|(m, _)| m == key) {
                return Err(format!("targets: no measure is called {key:?}"));
            }
            if goal.at_least.is_some() == goal.at_most.is_some() {
                return Err(format!("targets.{key}: give at_least or at_most"));
            }
        }
        Ok(())
    }

    /// `value` judged against the goal for `key`, shown as `name`; `None` where the scenario
    /// sets none or the value is not a number.
    pub fn judge(&self, key: &str, name: String, value: f64, unit: &str) -> Option<Target> {
        let goal = self.0.get(key)?;
        if !value.is_finite() {
            return None;
        }
        Some(match (goal.at_least, goal.at_most) {
            (Some(least), _) => at_least(name, least, value, unit),
            (None, Some(most)) => Target {
                name,
                target: format!("<= {most}{unit}"),
                measured: format!("{value:.2}{unit} ({:.2}x the target)", value / most),
                met: value <= most,
            },
            (None, None) => return None,
        })
    }

    /// The bound for `key`, where the scenario sets one.
    pub fn bound(&self, key: &str) -> Option<f64> {
        self.0.get(key).and_then(|g| g.at_least.or(g.at_most))
    }
}

/// A target met when `value` is at least `goal`.
pub fn at_least(name: String, goal: f64, value: f64, unit: &str) -> Target {
    Target {
        name,
        target: format!(">= {goal}{unit}"),
        measured: format!("{value:.2}{unit} ({:+.0}%)", (value / goal - 1.0) * 100.0),
        met: value >= goal,
    }
}

/// `targets` as a Markdown table.
pub fn table(targets: &[Target]) -> String {
    let mut out = String::from("| target | goal | measured | met |\n|---|---|---|---|\n");
    for t in targets {
        let met = if t.met { "yes" } else { "**no**" };
        out += &format!("| {} | {} | {} | {met} |\n", t.name, t.target, t.measured);
    }
    out
}
