//! What a scenario found, as data: medians with min-max over the runs, the machine, and the
//! summary `--json` writes. The report computes it (`report`) and renders it (`report`,
//! `shard_report`).

use serde::Serialize;

use crate::results::{
    CatalogResult, ChurnResult, ConsumersRound, DrainResult, DurableFloor, Plan, ReplicationResult,
    RestartResult, RetentionRound, RunResult, ThrottleResult,
};
use crate::targets::Target;
use crate::Variant;

/// Median and range of one metric over the runs.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Stat {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Stat {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Stat {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Stat {
                median: f64::NAN,
                min: f64::NAN,
                max: f64::NAN,
            };
        }
        v.sort_by(f64::total_cmp);
        let n = v.len();
        let median = if n % 2 == 1 {
            v[n / 2]
        } else {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        };
        Stat {
            median,
            min: v[0],
            max: v[n - 1],
        }
    }

    /// `median (min–max)` with `scale` applied and `digits` decimals.
    pub fn show(&self, scale: f64, digits: usize) -> String {
        if self.median.is_nan() {
            return "n/a".into();
        }
        let (m, lo, hi) = (self.median * scale, self.min * scale, self.max * scale);
        if (self.max - self.min).abs() < f64::EPSILON {
            format!("{m:.digits$}")
        } else {
            format!("{m:.digits$} ({lo:.digits$}–{hi:.digits$})")
        }
    }
}

/// One variant at one payload and source count, over its runs.
#[derive(Debug, Clone, Serialize)]
pub struct Aggregate {
    pub section: &'static str,
    pub variant: Variant,
    /// The `runtime.shards` the daemon variants ran; `None` for the floor.
    pub shards: Option<usize>,
    pub payload: usize,
    pub sources: usize,
    pub runs: usize,
    pub frames_per_s: Stat,
    pub mb_per_s: Stat,
    pub cpu_ns_per_frame: Stat,
    pub cpu_cores: Stat,
    pub peak_rss_mib: Stat,
    pub machine_idle_pct: Stat,
    pub host_steal_pct: Stat,
    pub client_cpu_ns_per_frame: Stat,
    pub tcp_retransmits_per_s: Stat,
    pub tcp_memory_start_mib: Stat,
    pub tcp_memory_end_mib: Stat,
    pub probe_p50_us: Stat,
    pub probe_p99_us: Stat,
    pub probe_max_us: Stat,
    pub stream_p50_us: Stat,
    pub stream_p99_us: Stat,
    pub stream_max_us: Stat,
    /// Archive received / processed (after the server stopped), per run.
    pub archived_over_processed: Stat,
    /// Every run's archive received exactly what was processed (`None` without an archive).
    pub archive_equals_processed: Option<bool>,
}

/// Everything the run found; `--json` writes this.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub command: String,
    pub machine: Machine,
    pub plan: Plan,
    pub aggregates: Vec<Aggregate>,
    pub ratios: Vec<Ratio>,
    pub drain: Option<DrainResult>,
    pub restart: Vec<RestartResult>,
    pub churn: Option<ChurnResult>,
    pub throttle: Option<ThrottleResult>,
    pub consumers: Vec<ConsumersRound>,
    pub catalog: Vec<CatalogResult>,
    /// The retention run's rounds, one per round and payload.
    pub retention: Vec<RetentionRound>,
    /// The replication run, measured or skipped; `None`: the scenario has none.
    pub replication: Option<ReplicationResult>,
    /// Each measurement of the durable floor, and their median with min-max, in MB/s.
    pub durable_floor: Vec<DurableFloor>,
    pub durable_floor_mb_per_s: Stat,
    pub targets: Vec<Target>,
    /// The daemon's archive received every processed frame in every run.
    pub daemon_archive_complete: bool,
    pub runs: Vec<RunResult>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub loadavg_before: String,
    pub loadavg_after: String,
    /// MB/s writing to a new file before the run ([`crate::page_cache::probe`]).
    pub new_page_mb_per_s: Option<f64>,
}

impl Machine {
    pub fn read(loadavg_before: String, new_page_mb_per_s: Option<f64>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu_model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|rest| rest.trim_start_matches([' ', '\t', ':']).trim().to_string())
            .unwrap_or_else(|| "unknown".into());
        Machine {
            nproc: std::thread::available_parallelism().map_or(0, |n| n.get()),
            cpu_model,
            loadavg_before,
            loadavg_after: loadavg(),
            new_page_mb_per_s,
        }
    }
}

pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A daemon variant's throughput over the floor's at one payload (medians).
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    pub payload: usize,
    pub variant: Variant,
    pub over_floor: Option<f64>,
}

/// The payloads of a run's rounds, each once, in the order they ran.
pub fn distinct(payloads: impl IntoIterator<Item = usize>) -> Vec<usize> {
    let mut seen: Vec<usize> = Vec::new();
    for payload in payloads {
        if !seen.contains(&payload) {
            seen.push(payload);
        }
    }
    seen
}
