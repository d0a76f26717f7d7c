//! A scenario: one file in `bench/scenarios/`, holding what to run and the targets to judge it by.
//! Every run is off unless the file asks for it, so a file says all that it measures.

use std::path::{Path, PathBuf};
use std::time::Duration;

use aggregator::config::StreamLayout;
use serde::Deserialize;

use crate::control::Fill;
use crate::results::{Plan, ReplicationPlan, RetentionPlan};
use crate::targets::Goals;
use crate::Variant;

/// Where the shipped scenarios are.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// One line: what it measures.
    pub description: String,
    /// Rounds of each measurement; the report gives medians with min-max.
    #[serde(default = "one")]
    pub runs: usize,
    /// Warm-up before each window, and the window, in seconds.
    #[serde(default = "warmup")]
    pub warmup_s: f64,
    #[serde(default = "window")]
    pub window_s: f64,
    /// Saturating uplinks of the main runs (the probe comes on top).
    #[serde(default = "connections")]
    pub connections: usize,
    /// Payload sizes of the main runs and the sweep, bytes.
    #[serde(default)]
    pub payloads: Vec<usize>,
    /// What the load client's payloads hold (and the replication run's plain publisher's):
    /// `constant` (the default) or `random`.
    #[serde(default)]
    pub fill: Fill,
    /// Variants of the main runs.
    #[serde(default)]
    pub variants: Vec<Variant>,
    /// Source counts of the scale runs (64 B), and their variants.
    #[serde(default)]
    pub scale: Vec<usize>,
    #[serde(default = "scale_variants")]
    pub scale_variants: Vec<Variant>,
    /// SIGTERM under load.
    #[serde(default)]
    pub drain: bool,
    /// Recovery of a full newest segment.
    #[serde(default)]
    pub restart: bool,
    /// Sources of the churn run: each sends 1,000 frames, is acknowledged and leaves.
    pub churn: Option<usize>,
    /// The throttle run: the archive's disk limited to this many MiB/s (root, cgroup v1 blkio).
    pub throttle_mib_per_s: Option<f64>,
    #[serde(default = "throttle_window")]
    pub throttle_window_s: f64,
    /// Followers of the archive during saturation, against none.
    #[serde(default)]
    pub consumers: bool,
    /// Source counts a new catalog is spread to during saturation.
    #[serde(default)]
    pub catalog: Vec<usize>,
    /// `runtime.shards` counts of the shard sweep.
    #[serde(default)]
    pub shards: Vec<usize>,
    /// The retention run: the durable daemon at each payload with `[archive.retention]` deleting
    /// continuously, against the same archive without retention, in interleaved rounds.
    pub retention: Option<RetentionScenario>,
    /// The replication run: a plain JetStream publisher, and the daemon with `[sinks.nats]` `ack
    /// = "replicated"` and `"local"`, on a cluster of `nats-server` processes, at each payload.
    pub replication: Option<ReplicationScenario>,
    /// The queries run: asking an archive of a day (`query-bench`). A scenario with it runs
    /// nothing else.
    pub queries: Option<QueriesScenario>,
    /// The most MiB one measurement of the durable floor writes.
    #[serde(default = "durable_floor_mib")]
    pub durable_floor_mib: u64,
    /// Bounds on the figures, by what they measure ([`crate::targets::MEASURES`]).
    #[serde(default)]
    pub targets: Goals,
}

/// The retention run's archive: small segments and a small `max_bytes`, so that retention deletes
/// segments all through the window. `max_bytes` is given in segments per shard, so that the
/// scenario holds on any machine: the daemon refuses less than two per shard (each shard's open
/// segment and its staged next one), and its shards are one per core by default.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionScenario {
    /// `archive.segment_bytes` of both variants, in MiB.
    pub segment_mib: u64,
    /// `archive.retention.max_bytes` of the variant with retention: this many segments for each
    /// of the daemon's `runtime.shards`.
    pub max_segments_per_shard: u64,
}

/// The replication run's cluster and publishers (`replication`).
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicationScenario {
    /// Messages the plain publisher sends per window.
    pub messages: u64,
    /// Publishes awaiting their PubAck, the plain publisher's and the sink's (`sinks.nats.window`).
    #[serde(default = "sink_window")]
    pub window: usize,
    /// `nats-server` nodes of the cluster, and the streams' replicas.
    #[serde(default = "three")]
    pub nodes: usize,
    /// The sinks' `sinks.nats.emergency_wait_ms`, where not the daemon's default.
    pub emergency_wait_ms: Option<u64>,
    /// The sinks' `sinks.nats.layout` and the streams', where not the daemon's default.
    pub layout: Option<StreamLayout>,
    /// Servers this many ms apart each way, from each other and from the daemons and the plain
    /// publisher (a delaying proxy in front of each node's ports, `bench/src/far.rs`); none: loopback.
    pub far_ms: Option<u64>,
    /// Whether to fill the page cache before each window (`bench/src/page_cache.rs`), as on a
    /// machine that has run a while.
    #[serde(default)]
    pub fill_page_cache: bool,
}

/// The queries run: `bench/random-archive.py` makes the archive of a day (when the directory
/// holds none), then `query-bench` asks it and measures the daemon's ingest beside the asking.
#[derive(Debug, Clone, Copy, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct QueriesScenario {
    /// The archive's size in MiB, its frames' payload in bytes, its shards and its live
    /// sources, received round robin over 2026-11-24.
    pub archive_mib: u64,
    #[serde(default = "kib")]
    pub payload: usize,
    #[serde(default = "two")]
    pub shards: usize,
    #[serde(default = "fifty")]
    pub sources: u32,
    /// Ground stations with passes beside the sources (`random-archive.py --stations`), whose
    /// passes of the day are asked for.
    #[serde(default)]
    pub stations: u32,
    /// Range queries measured, each of a quarter of an hour of one source.
    pub queries: u64,
    /// Rounds of ingest alone and beside queries and exports, and each round's seconds.
    pub rounds: usize,
    pub ingest_s: u64,
    /// The niceness the exports beside ingest run at, and their I/O scheduling class
    /// (`ionice -c`: 3 is idle; 2, best effort, the default).
    #[serde(default)]
    pub export_nice: i32,
    #[serde(default = "best_effort")]
    pub export_ionice: u8,
}

fn sink_window() -> usize {
    256
}
fn three() -> usize {
    3
}
fn best_effort() -> u8 {
    2
}
fn kib() -> usize {
    1024
}
fn two() -> usize {
    2
}
fn fifty() -> u32 {
    50
}
fn one() -> usize {
    1
}
fn warmup() -> f64 {
    1.0
}
fn window() -> f64 {
    3.0
}
fn connections() -> usize {
    48
}
fn scale_variants() -> Vec<Variant> {
    vec![Variant::Daemon, Variant::Pipeline]
}
fn throttle_window() -> f64 {
    10.0
}
fn durable_floor_mib() -> u64 {
    1024
}

impl Scenario {
    /// `name` from `bench/scenarios/`, or a path to a file of one's own.
    pub fn load(name: &str) -> Result<Scenario, String> {
        let path = match name.ends_with(".toml") {
            true => PathBuf::from(name),
            false => dir().join(format!("{name}.toml")),
        };
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let scenario: Scenario =
            toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        scenario
            .check()
            .map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(scenario)
    }

    fn check(&self) -> Result<(), String> {
        self.targets.check()?;
        if let Some(v) = self.scale_variants.iter().find(|v| !v.is_daemon()) {
            return Err(format!("scale_variants: {} has no scale run", v.name()));
        }
        if let Some(mib) = self
            .throttle_mib_per_s
            .filter(|m| !(*m > 0.0 && m.is_finite()))
        {
            return Err(format!("throttle_mib_per_s = {mib}: give a limit above 0"));
        }
        if let Some(r) = self.retention.filter(|r| r.segment_mib == 0) {
            return Err(format!(
                "retention.segment_mib = {}: give a size above 0",
                r.segment_mib
            ));
        }
        if let Some(r) = self.retention.filter(|r| r.max_segments_per_shard < 2) {
            return Err(format!(
                "retention.max_segments_per_shard = {}: the daemon keeps two per shard at least",
                r.max_segments_per_shard
            ));
        }
        if let Some(r) = &self.replication {
            if r.messages == 0 || r.window == 0 || !(1..=5).contains(&r.nodes) {
                return Err("replication: give messages and window above 0, nodes 1 to 5".into());
            }
            if self.payloads.is_empty() {
                return Err("replication: give the payloads to measure".into());
            }
        }
        if let Some(q) = &self.queries {
            let others = !self.payloads.is_empty()
                || !self.scale.is_empty()
                || !self.shards.is_empty()
                || !self.catalog.is_empty()
                || self.churn.is_some()
                || self.retention.is_some()
                || self.replication.is_some()
                || self.throttle_mib_per_s.is_some()
                || self.consumers
                || self.drain
                || self.restart;
            if others {
                return Err("a scenario with [queries] runs nothing else".into());
            }
            if q.archive_mib == 0 || q.queries == 0 || q.shards == 0 || q.sources == 0 {
                return Err(
                    "queries: give archive_mib, queries, shards and sources above 0".into(),
                );
            }
        }
        let most = aggregator::domain::shard::MAX_SHARDS;
        if let Some(n) = self.shards.iter().find(|&&n| n == 0 || n > most) {
            return Err(format!("shards: {n}: give counts from 1 to {most}"));
        }
        Ok(())
    }

    /// The plan for the daemon variants' `config` (from `config_path`, else the defaults).
    pub fn plan(
        self,
        config: &aggregator::Config,
        config_path: Option<PathBuf>,
        plot: Option<PathBuf>,
    ) -> Plan {
        let secs = |x: f64| Duration::from_secs_f64(x.max(0.05));
        let durable = self.variants.contains(&Variant::Daemon) || !self.shards.is_empty();
        Plan {
            runs: self.runs.max(1),
            warmup: secs(self.warmup_s),
            measure: secs(self.window_s),
            connections: self.connections.max(1),
            payloads: self.payloads,
            fill: self.fill,
            variants: self.variants,
            scale: self.scale,
            scale_variants: self.scale_variants,
            drain: self.drain,
            restart: self.restart,
            segment_bytes: config.archive.segment_bytes,
            churn: self.churn,
            stats_interval: config.dashboard.stats_interval,
            daemon_config: config_path,
            throttle: self.throttle_mib_per_s,
            throttle_window: secs(self.throttle_window_s),
            drain_deadline: config.shutdown.drain_deadline,
            uplink_limit: config.uplink.max_connections,
            consumers: self.consumers,
            catalog: self.catalog,
            plot: plot.filter(|_| !self.shards.is_empty()),
            retention: self.retention.map(|r| RetentionPlan {
                segment_bytes: r.segment_mib << 20,
                max_bytes: (r.segment_mib << 20)
                    * r.max_segments_per_shard
                    * config.runtime.shards as u64,
            }),
            replication: self.replication.map(|r| ReplicationPlan {
                nodes: r.nodes,
                messages: r.messages,
                window: r.window,
                emergency_wait_ms: r.emergency_wait_ms,
                layout: r.layout,
                far_ms: r.far_ms,
                fill_page_cache: r.fill_page_cache,
            }),
            shards: self.shards,
            default_shards: config.runtime.shards,
            durable_floor_bytes: durable.then_some(self.durable_floor_mib.max(1) << 20),
            goals: self.targets,
            daemon: None,
        }
    }
}

/// Every shipped scenario: its name and description.
pub fn list() -> Result<Vec<(String, String)>, String> {
    let dir = dir();
    let entries =
        std::fs::read_dir(&dir).map_err(|e| format!("cannot list {}: {e}", dir.display()))?;
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|n| n.strip_suffix(".toml").map(String::from))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| Ok((Scenario::load(&name)?.description, name)))
        .map(|r| r.map(|(d, n)| (n, d)))
        .collect()
}
