//! What the benchmark measures, as data: the plan, each run's result, and the machine's CPU times.
//! The runs fill these in (`orchestrate`, `throttle`) and the report reads them (`report`), so
//! neither side imports the other.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::control::{
    CatalogSpread, Churned, DrainInfo, Fill, Followed, LatencySummary, Recovered, Watched,
};
use crate::diskstat::DiskWindow;
use crate::stream_check::StreamCheck;
use crate::targets::Goals;
use crate::Variant;

/// Followers of the archive in the consumers run.
pub const CONSUMERS: usize = 4;

/// What to measure and for how long.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub runs: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Saturating uplinks of the main runs (the probe connection comes on top).
    pub connections: usize,
    pub payloads: Vec<usize>,
    /// What the load client's payloads hold.
    pub fill: Fill,
    pub variants: Vec<Variant>,
    /// Source counts of the scale runs (64 B).
    pub scale: Vec<usize>,
    /// The variants the scale runs measure: `daemon`, `pipeline`.
    pub scale_variants: Vec<Variant>,
    pub drain: bool,
    /// Whether to measure a restart on a full newest segment of `segment_bytes`, for the main
    /// runs' sources and for the most sources of the scale runs.
    pub restart: bool,
    pub segment_bytes: u64,
    /// Sources of the churn run, if it runs.
    pub churn: Option<usize>,
    /// `dashboard.stats_interval_ms` of the daemon variants' config: the churn run reads the
    /// daemon's memory once it has had one after the last source left.
    pub stats_interval: Duration,
    /// The daemon variants' aggregator.toml, when not the defaults.
    pub daemon_config: Option<PathBuf>,
    /// The throttle run's write limit on the archive's disk, in MiB/s, if it runs.
    pub throttle: Option<f64>,
    /// Its measurement window.
    pub throttle_window: Duration,
    /// `shutdown.drain_deadline_ms` of the daemon variants' config.
    pub drain_deadline: Duration,
    /// `uplink.max_connections` of that config: the scale runs raise it when they need more.
    pub uplink_limit: usize,
    /// Whether to run the consumers run: followers of the archive during saturation.
    pub consumers: bool,
    /// Source counts of the catalog run (a catalog to each of them during saturation).
    pub catalog: Vec<usize>,
    /// `runtime.shards` of the shard sweep's rounds (`daemon` and `pipeline` at each); empty
    /// when there is no sweep.
    pub shards: Vec<usize>,
    /// `runtime.shards` of the daemon variants' config: what every run but the sweep's runs.
    pub default_shards: usize,
    /// The most bytes one measurement of the durable floor writes (less where the archive's
    /// filesystem has little room); `None`: the durable floor is not measured.
    pub durable_floor_bytes: Option<u64>,
    /// Where the sweep's plot goes.
    pub plot: Option<PathBuf>,
    /// The retention run's archive sizes; `None`: it does not run.
    pub retention: Option<RetentionPlan>,
    /// The replication run's cluster and publishers; `None`: it does not run.
    pub replication: Option<ReplicationPlan>,
    /// The scenario's targets.
    pub goals: Goals,
    /// The `aggregator` binary the daemon variants run (`--daemon`); `None`: the library.
    pub daemon: Option<PathBuf>,
}

#[cfg(test)]
impl Plan {
    /// A plan with nothing but `runs` rounds of the shard sweep over `shards` at `payloads`, 48
    /// sources, a default of 2 shards and the durable floor.
    pub fn for_tests(runs: usize, shards: Vec<usize>, payloads: Vec<usize>) -> Plan {
        Plan {
            runs,
            warmup: Duration::ZERO,
            measure: Duration::ZERO,
            connections: 48,
            payloads,
            fill: Fill::Constant,
            variants: Vec::new(),
            scale: Vec::new(),
            scale_variants: Vec::new(),
            drain: false,
            restart: false,
            segment_bytes: 0,
            churn: None,
            stats_interval: Duration::ZERO,
            daemon_config: None,
            throttle: None,
            throttle_window: Duration::ZERO,
            drain_deadline: Duration::ZERO,
            uplink_limit: 1024,
            consumers: false,
            catalog: Vec::new(),
            shards,
            default_shards: 2,
            durable_floor_bytes: Some(1 << 30),
            plot: None,
            retention: None,
            replication: None,
            goals: Goals::default(),
            daemon: None,
        }
    }
}

/// One measured window of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// `main`, `scale` or `shards` (the shard sweep).
    pub section: &'static str,
    pub variant: Variant,
    /// The `runtime.shards` a daemon variant said it ran; `None` for the floor.
    pub shards: Option<usize>,
    pub payload: usize,
    /// Uplinks the client opened (the probe comes on top).
    pub sources: usize,
    /// Sources the server had connected when the window opened (probe included).
    pub connected: u64,
    pub run: usize,
    pub window_s: f64,
    pub frames: u64,
    pub frames_per_s: f64,
    /// Payload megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
    pub cpu_ns_per_frame: f64,
    /// Server CPU use over the window, in cores (1.0 = one core busy).
    pub cpu_cores: f64,
    pub peak_rss_mib: f64,
    /// Percent of the machine's CPU time over the window that was idle, and that the host gave
    /// to other guests (`None` without `/proc/stat`).
    pub machine_idle_pct: Option<f64>,
    pub host_steal_pct: Option<f64>,
    /// The load client's CPU time over the window per frame the server processed. On loopback
    /// the sender's system time includes the kernel's receive path for what it sends, so this is
    /// what the load takes from the machine beside the server (`None` without `/proc`).
    pub client_cpu_ns_per_frame: Option<f64>,
    /// TCP segments the machine retransmitted per second over the window (`None` without `/proc`).
    pub tcp_retransmits_per_s: Option<f64>,
    /// The machine's TCP socket buffers when the window opened and when it closed, in MiB: the
    /// data the kernel holds for both ends of every connection (`None` without `/proc`).
    pub tcp_memory_start_mib: Option<f64>,
    pub tcp_memory_end_mib: Option<f64>,
    pub probe: LatencySummary,
    pub stream: LatencySummary,
    /// After the server stopped: everything it processed, and what its archive received.
    pub processed_total: u64,
    pub archived_total: Option<u64>,
    pub connection_errors: u64,
    pub first_error: Option<String>,
    /// For `watched`: what the watcher's subscribers received and missed over the whole run.
    pub watched: Option<Watched>,
}

/// The SIGTERM-under-load run of the daemon.
#[derive(Debug, Clone, Serialize)]
pub struct DrainResult {
    pub sources: usize,
    pub payload: usize,
    /// Throughput in the second before the signal.
    pub frames_per_s_before: f64,
    pub sigterm_to_exit_ms: f64,
    pub exit_code: Option<i32>,
    pub report: Option<DrainInfo>,
    /// The sink's own count and the processed counter after the drain.
    pub archived_total: Option<u64>,
    pub processed_total: u64,
    /// VmHWM of the daemon over its whole run.
    pub peak_rss_kib: u64,
}

impl DrainResult {
    /// The daemon reported a drain that stored everything it had accepted.
    pub fn clean(&self) -> bool {
        self.report.is_some_and(|r| r.completed && r.lost == 0)
    }
}

/// The restart run: recovery of an archive whose newest segment is full.
#[derive(Debug, Clone, Serialize)]
pub struct RestartResult {
    pub sources: u32,
    /// Frames in the segment (64 B payloads).
    pub frames: u64,
    pub recovered: Recovered,
}

/// The churn run: distinct sources, each connecting once, acknowledged in full, and gone; what the
/// durable daemon keeps resident for them.
#[derive(Debug, Clone, Serialize)]
pub struct ChurnResult {
    pub sources: usize,
    pub frames_per_source: u64,
    /// One frame in this many is an emergency.
    pub emergency_every: u64,
    pub payload: usize,
    /// Sources connected at once.
    pub at_once: usize,
    /// What the sources saw.
    pub client: Churned,
    /// The daemon's VmRSS before the first source connected.
    pub rss_before_kib: u64,
    /// Its VmRSS once the last source had left and a stats interval and a half had passed.
    pub rss_after_kib: u64,
    /// Its VmHWM at the end.
    pub peak_rss_kib: u64,
    /// `(rss_after - rss_before) / sources`, in bytes.
    pub resident_bytes_per_source: f64,
    pub processed_total: u64,
    pub archived_total: Option<u64>,
}

impl ChurnResult {
    /// Every source had every frame acknowledged, and none failed.
    pub fn every_frame_acknowledged(&self) -> bool {
        let sources = self.sources as u64;
        self.client.failed == 0
            && self.client.acknowledged == sources
            && self.client.frames_acknowledged == sources * self.frames_per_source
    }
}

/// A round of the consumers run: a fresh durable daemon without followers, then one with them.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumersRound {
    pub without: ConsumersWindow,
    pub with: ConsumersWindow,
}

/// One window of the consumers run.
#[derive(Debug, Clone, Serialize)]
pub struct ConsumersWindow {
    /// Frames the daemon processed per second over the window, before its SIGTERM.
    pub frames_per_s: f64,
    /// Frames its archive stored, from the first to the end of the drain.
    pub archived: Option<u64>,
    pub drain_clean: bool,
    /// Seconds from the load's end until every follower had every stored frame; `None` without
    /// followers.
    pub caught_up_s: Option<f64>,
    /// What each follower received before the daemon's END; `None` without followers.
    pub followed: Option<Followed>,
}

impl ConsumersWindow {
    /// Every follower subscribed, ended at the daemon's END, and received exactly the frames the
    /// archive stored.
    pub fn every_frame_followed(&self) -> bool {
        match (&self.followed, self.archived) {
            (None, _) => true,
            (Some(followed), Some(archived)) => {
                followed.first_error.is_none()
                    && followed.frames.len() == CONSUMERS
                    && followed.frames.iter().all(|&frames| frames == archived)
            }
            (Some(_), None) => false,
        }
    }
}

/// The retention run's archive: both variants write segments of `segment_bytes`; the one with
/// retention deletes the oldest sealed ones while the archive holds more than `max_bytes`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RetentionPlan {
    pub segment_bytes: u64,
    pub max_bytes: u64,
}

/// A round of the retention run at one payload: a fresh durable daemon without retention and one
/// with it, one after the other (which first alternates from round to round).
#[derive(Debug, Clone, Serialize)]
pub struct RetentionRound {
    pub payload: usize,
    pub run: usize,
    /// Whether the daemon with retention was measured first in this round.
    pub with_first: bool,
    pub without: RetentionWindow,
    pub with: RetentionWindow,
}

impl RetentionRound {
    /// Frames/s with retention over frames/s without.
    pub fn ratio(&self) -> f64 {
        self.with.run.frames_per_s / self.without.run.frames_per_s
    }

    /// Retention deleted segments within the window with it, and none within the one without.
    pub fn deleted_as_configured(&self) -> bool {
        self.with.deleted_segments > 0 && self.without.deleted_segments == 0
    }
}

/// One window of the retention run: the measured window, and what retention did during it, from
/// the daemon's stats (`/stats`' `archive.retention`) read when the window opened and closed.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionWindow {
    pub run: RunResult,
    /// Segments and bytes on disk retention deleted within the window.
    pub deleted_segments: u64,
    pub deleted_bytes: u64,
    /// The archive's bytes on disk when the window closed, as retention's last check found them.
    pub archive_bytes_at_end: u64,
    /// CPU time of the daemon's retention thread over the window, in cores.
    pub retention_thread_cores: f64,
    /// The archive's disk over the window (every writer of it counted); `None` where its counters
    /// cannot be read.
    pub disk: Option<DiskWindow>,
}

/// The replication run: a JetStream cluster of `nodes` nodes, R`nodes` streams; the plain
/// publisher sends `messages` messages per window, and it and the daemons' sinks keep `window`
/// publishes awaiting their PubAck.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ReplicationPlan {
    pub nodes: usize,
    pub messages: u64,
    pub window: usize,
    /// `sinks.nats.emergency_wait_ms`, where not the default.
    pub emergency_wait_ms: Option<u64>,
    /// `sinks.nats.layout` and the streams', where not the default.
    pub layout: Option<aggregator::config::StreamLayout>,
    /// The servers' delay each way, where far (`bench/src/far.rs`).
    pub far_ms: Option<u64>,
    /// Whether the page cache is filled before each window ([`crate::page_cache::Ballast`]).
    pub fill_page_cache: bool,
}

/// What topping the page cache up wrote ([`crate::page_cache::Ballast::top_up`]), and in how long.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct TopUp {
    pub bytes: u64,
    pub seconds: f64,
}

/// The replication run, measured or skipped.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationResult {
    /// `nats-server --version`, where there is one.
    pub server: Option<String>,
    /// Why it did not run here; nothing was measured then.
    pub skipped: Option<String>,
    pub rounds: Vec<ReplicationRound>,
    /// What filling the page cache wrote over the run, where it was filled.
    pub ballast: Option<TopUp>,
}

impl ReplicationResult {
    /// Every daemon's archive received every frame it processed.
    pub fn archive_complete(&self) -> bool {
        let windows = self.rounds.iter().flat_map(|r| [&r.replicated, &r.local]);
        windows
            .map(|w| (w.archived_total, w.processed_total))
            .all(|(archived, processed)| archived == Some(processed) && processed > 0)
    }

    /// Every replicated window's stream held every frame the load client saw acknowledged, once.
    pub fn stream_complete(&self) -> bool {
        let held = |c: &StreamCheck| c.holds_every_acknowledged_frame_once();
        (self.rounds.iter()).all(|r| r.replicated.stream_check.as_ref().is_some_and(held))
    }
}

/// A round of the replication run at one payload: the plain publisher, the daemon with `ack =
/// "replicated"` and with `ack = "local"`, in `order`.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicationRound {
    pub payload: usize,
    pub run: usize,
    pub order: Vec<&'static str>,
    pub plain: PlainPublisher,
    pub replicated: SinkWindow,
    pub local: SinkWindow,
}

impl ReplicationRound {
    /// Acknowledged frames/s with `ack = "replicated"` over the plain publisher's PubAcks/s.
    pub fn replicated_over_plain(&self) -> f64 {
        self.replicated.acked_frames_per_s / self.plain.acked_per_s
    }

    /// Acknowledged frames/s with `ack = "replicated"` over those with `ack = "local"`.
    pub fn replicated_over_local(&self) -> f64 {
        self.replicated.acked_frames_per_s / self.local.acked_frames_per_s
    }
}

/// The plain publisher's window: its messages into a fresh stream, from the first publish to the
/// last PubAck.
#[derive(Debug, Clone, Serialize)]
pub struct PlainPublisher {
    pub messages: u64,
    pub seconds: f64,
    pub acked_per_s: f64,
    /// From each publish to its PubAck.
    pub pub_ack_latency: LatencySummary,
    /// CPU over the window, in cores: the publisher's process, and the nats-servers together.
    pub publisher_cores: Option<f64>,
    pub nats_cores: Option<f64>,
    /// The node that led the stream.
    pub leader: Option<String>,
}

/// A daemon's window with `[sinks.nats]` on the cluster, under the saturating uplinks and the
/// emergency-only sources.
#[derive(Debug, Clone, Serialize)]
pub struct SinkWindow {
    /// `sinks.nats.ack`: `replicated` or `local`.
    pub ack: &'static str,
    /// The window, on the load client's clock.
    pub window_s: f64,
    /// Frames of the uplinks the ACKs of the window covered, and per second.
    pub frames_acked: u64,
    pub acked_frames_per_s: f64,
    /// From each uplink frame's send to the ACK that covered it, for the ACKs of the window.
    pub ack_latency: LatencySummary,
    /// The emergency-only sources beside the uplinks (not in the figures above).
    pub emergency_only: EmergencyOnly,
    /// Frames the daemon processed per second, and frames JetStream acknowledged to its sink.
    pub processed_per_s: f64,
    pub published_per_s: f64,
    /// Frames whose ACK waited for JetStream's when the window ended (`replicated` only).
    pub unreplicated_at_end: u64,
    /// The payload bytes the sink's messages in flight could hold when the window ended.
    pub room_at_end: u64,
    /// Whether the sink published through the server that led the stream when the window ended.
    pub at_leader_at_end: bool,
    /// CPU over the window, in cores: the daemon, of it the sink's thread, the nats-servers
    /// together, and the load client.
    pub daemon_cores: f64,
    pub sink_thread_cores: f64,
    /// The share of the window the sink's thread was ready and waited for a CPU.
    pub sink_runqueue_share: f64,
    pub nats_cores: Option<f64>,
    pub client_cores: Option<f64>,
    /// After the daemon stopped: what it processed and what its archive received.
    pub processed_total: u64,
    pub archived_total: Option<u64>,
    /// The node that led the stream.
    pub leader: Option<String>,
    /// The stream read back after the daemon stopped.
    pub stream_check: Option<StreamCheck>,
}

/// Everything [`run_plan`] measured.
pub struct Measured {
    pub runs: Vec<RunResult>,
    pub drain: Option<DrainResult>,
    pub restart: Vec<RestartResult>,
    pub churn: Option<ChurnResult>,
    pub throttle: Option<ThrottleResult>,
    pub consumers: Vec<ConsumersRound>,
    pub catalog: Vec<CatalogResult>,
    pub retention: Vec<RetentionRound>,
    pub replication: Option<ReplicationResult>,
    /// Each measurement of the durable floor, in the order taken.
    pub durable_floor: Vec<DurableFloor>,
}

impl Measured {
    /// The daemon's archive received every frame it processed, in every run that has one.
    pub fn daemon_archive_complete(&self) -> bool {
        let complete = |r: &RunResult| r.archived_total == Some(r.processed_total);
        let stored = |r: &&RunResult| complete(r) && r.processed_total > 0;
        let drained = |d: &DrainResult| d.archived_total == Some(d.processed_total);
        let throttled = self.throttle.as_ref().and_then(|t| t.measured.as_ref());
        let retention = self
            .retention
            .iter()
            .flat_map(|r| [&r.without.run, &r.with.run]);
        (self.runs.iter().filter(|r| r.variant == Variant::Daemon)).all(|r| stored(&r))
            && self.drain.as_ref().is_none_or(drained)
            && (self.churn.as_ref()).is_none_or(|c| c.archived_total == Some(c.processed_total))
            && throttled.is_none_or(|t| drained(&t.drain))
            && retention.into_iter().all(|r| stored(&r))
            && (self.replication.as_ref()).is_none_or(ReplicationResult::archive_complete)
    }
}

/// The durable floor: the archive's filesystem written sequentially in 1 MiB blocks and synced
/// with `fsync`, as `dd bs=1M conv=fsync` does; the durable daemon cannot store payload faster.
#[derive(Debug, Clone, Serialize)]
pub struct DurableFloor {
    /// The directory the daemon variants keep their archives in, where the file was written.
    pub dir: PathBuf,
    pub bytes: u64,
    /// From opening the file to the end of its `fsync`.
    pub seconds: f64,
    /// Megabytes (10^6 bytes) per second.
    pub mb_per_s: f64,
}

/// One spread of the catalog run.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogResult {
    /// Sources that were to receive the catalog.
    pub sources: usize,
    /// Uplinks saturating the daemon meanwhile.
    pub saturating: usize,
    pub bytes: usize,
    pub spread: CatalogSpread,
}

/// The throttle run, measured or skipped.
#[derive(Debug, Clone, Serialize)]
pub struct ThrottleResult {
    /// The write limit on the archive's disk.
    pub mib_per_s: f64,
    pub sources: usize,
    pub payload: usize,
    /// Why the disk could not be throttled here; nothing was measured then.
    pub skipped: Option<String>,
    pub measured: Option<Throttled>,
}

/// What the throttled run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Throttled {
    /// The archive's disk, `MAJ:MIN`, and the daemon's cgroup (removed since).
    pub device: String,
    pub cgroup: String,
    /// The window, on the load client's clock.
    pub window_s: f64,
    pub frames_acked: u64,
    pub acked_frames_per_s: f64,
    /// Payload the ACKs covered, in MiB/s, and that over the throttle.
    pub acked_mib_per_s: f64,
    pub acked_over_throttle: f64,
    /// What the cgroup wrote to the disk over the window, as its throttle counted it.
    pub throttled_write_mib_per_s: Option<f64>,
    /// Payload sent and not yet acknowledged when the window ended.
    pub unacked_mib_at_end: f64,
    /// From each frame's send to the ACK that covered it, for the ACKs of the window.
    pub ack_latency: LatencySummary,
    /// The emergency-only sources beside the uplinks (not in the figures above).
    pub emergency_only: EmergencyOnly,
    /// A page written and synced every 20 ms by a writer outside the daemon's cgroup, to the same
    /// disk, over the window: what the disk itself made a sync wait.
    pub disk_sync_latency: LatencySummary,
    /// The most `archive_unsynced_bytes` and frames in flight the parent read during the window.
    pub max_unsynced_bytes: u64,
    pub max_in_flight: u64,
    /// The SIGTERM at the window's end; its throughput is the daemon's processed frames.
    pub drain: DrainResult,
}

/// The throttle run's emergency-only sources over its window (issue 26): each sends only
/// emergency frames, at a steady rate, while the uplinks saturate the daemon.
#[derive(Debug, Clone, Serialize)]
pub struct EmergencyOnly {
    pub sources: usize,
    /// The frames each sends per second, and their payload bytes.
    pub frames_per_s_each: u32,
    pub payload: usize,
    /// Their source ids, the first and the last.
    pub source_ids: (u32, u32),
    /// Frames they wrote over the window, and frames the ACKs of the window covered.
    pub frames_sent: u64,
    pub frames_acked: u64,
    /// Frames written and not yet acknowledged when the window ended.
    pub unacked_at_end: u64,
    /// From each frame's write to the ACK that covered it, for the ACKs of the window, measured as
    /// the uplinks' is.
    pub ack_latency: LatencySummary,
}

/// The machine's CPU time so far: the `cpu` line of `/proc/stat`, in clock ticks over all CPUs.
///
/// On a virtual machine the host may give this machine's CPUs to other guests for a while; the
/// guest sees that time as steal. A window measured then is slower than the machine, so each
/// window records the steal and the idle time around it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuTimes {
    total: u64,
    idle: u64,
    steal: u64,
}

impl CpuTimes {
    /// `None` where `/proc/stat` is missing or not as Linux writes it.
    pub fn read() -> Option<CpuTimes> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        CpuTimes::parse(stat.lines().next()?)
    }

    /// `cpu user nice system idle iowait irq softirq steal [guest guest_nice]`; guest time is
    /// already in user and nice.
    fn parse(line: &str) -> Option<CpuTimes> {
        let mut fields = line.split_whitespace();
        if fields.next() != Some("cpu") {
            return None;
        }
        let ticks: Vec<u64> = fields
            .take(8)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .ok()?;
        let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
            return None;
        };
        Some(CpuTimes {
            total: user + nice + system + idle + iowait + irq + softirq + steal,
            idle: idle + iowait,
            steal,
        })
    }

    /// Percent of the machine's time from `self` to `later` that was idle (waiting for I/O
    /// included), and that the host gave to others (steal).
    pub fn shares_until(&self, later: &CpuTimes) -> Option<(f64, f64)> {
        let total = later.total.checked_sub(self.total).filter(|&t| t > 0)? as f64;
        let idle = later.idle.checked_sub(self.idle)? as f64;
        let steal = later.steal.checked_sub(self.steal)? as f64;
        Some((100.0 * idle / total, 100.0 * steal / total))
    }
}

/// CPU time (user and system) of process `pid` so far, in nanoseconds: `/proc/PID/stat`.
pub fn process_cpu_ns(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(process_cpu_ticks(&stat)? * 1_000_000_000 / system_constant(libc::_SC_CLK_TCK)?)
}

/// CPU time (user and system) of the threads of process `pid` whose name starts with `name`, in
/// nanoseconds: `/proc/PID/task/*/stat`. A thread that has ended is no longer counted.
pub fn threads_cpu_ns(pid: i32, name: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let ticks: u64 = tasks
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("stat")).ok())
        .filter(|stat| thread_name(stat).is_some_and(|n| n.starts_with(name)))
        .filter_map(|stat| process_cpu_ticks(&stat))
        .sum();
    Some(ticks * 1_000_000_000 / system_constant(libc::_SC_CLK_TCK)?)
}

/// Time the threads of process `pid` whose name starts with `name` have waited on a run queue for
/// a CPU, in nanoseconds: the second field of `/proc/PID/task/*/schedstat`. A thread that is
/// ready and gets no CPU (others hold the cores, or it has a lower priority) waits here.
pub fn threads_runqueue_ns(pid: i32, name: &str) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let waited = tasks
        .filter_map(|task| {
            let dir = task.ok()?.path();
            let stat = std::fs::read_to_string(dir.join("stat")).ok()?;
            thread_name(&stat).filter(|n| n.starts_with(name))?;
            let schedstat = std::fs::read_to_string(dir.join("schedstat")).ok()?;
            schedstat.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .sum();
    Some(waited)
}

/// The name in a `/proc/PID/task/TID/stat` line: between the first `(` and the last `)`.
fn thread_name(stat: &str) -> Option<&str> {
    let (_, rest) = stat.split_once('(')?;
    rest.rsplit_once(')').map(|(name, _)| name)
}

/// A positive constant of the system (`sysconf`): clock ticks per second, the page size.
fn system_constant(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf reads a constant of the system and takes no pointers.
    let value = unsafe { libc::sysconf(name) };
    u64::try_from(value).ok().filter(|&v| v > 0)
}

/// `utime + stime` of a `/proc/PID/stat` line: fields 14 and 15, counted after the command in
/// parentheses (which may itself hold spaces and parentheses).
fn process_cpu_ticks(stat: &str) -> Option<u64> {
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// TCP segments the machine retransmitted so far: `RetransSegs` of `/proc/net/snmp`.
pub fn tcp_retransmits() -> Option<u64> {
    tcp_retransmits_of(&std::fs::read_to_string("/proc/net/snmp").ok()?)
}

/// `RetransSegs` of the two `Tcp:` lines of `/proc/net/snmp`: the names, then the values.
fn tcp_retransmits_of(snmp: &str) -> Option<u64> {
    let mut tcp = snmp.lines().filter(|line| line.starts_with("Tcp:"));
    let (names, values) = (tcp.next()?, tcp.next()?);
    let (_, value) = names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(name, _)| *name == "RetransSegs")?;
    value.parse().ok()
}

/// Memory the machine's TCP sockets hold now, in bytes: `mem` (in pages) of the `TCP:` line of
/// `/proc/net/sockstat`.
pub fn tcp_memory_bytes() -> Option<u64> {
    let pages = tcp_memory_pages(&std::fs::read_to_string("/proc/net/sockstat").ok()?)?;
    Some(pages * system_constant(libc::_SC_PAGESIZE)?)
}

/// `mem` of the `TCP:` line of `/proc/net/sockstat`: `TCP: inuse N orphan N tw N alloc N mem N`.
fn tcp_memory_pages(sockstat: &str) -> Option<u64> {
    let line = sockstat.lines().find(|line| line.starts_with("TCP:"))?;
    let mut fields = line.split_whitespace().skip(1);
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if name == "mem" {
            return value.parse().ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{process_cpu_ticks, tcp_memory_pages, tcp_retransmits_of, thread_name, CpuTimes};

    #[test]
    fn tcp_memory_is_the_mem_field_of_the_tcp_line() {
        let sockstat = "sockets: used 20139\n\
                        TCP: inuse 20005 orphan 0 tw 0 alloc 20005 mem 962356\n\
                        UDP: inuse 2 mem 4\n";
        assert_eq!(tcp_memory_pages(sockstat), Some(962_356));
        assert_eq!(tcp_memory_pages("TCP: inuse 3 orphan 0\n"), None);
        assert_eq!(tcp_memory_pages("UDP: inuse 2 mem 4\n"), None);
    }

    #[test]
    fn a_process_s_cpu_time_is_counted_after_its_command() {
        // A command with a space and a parenthesis of its own; utime 1500, stime 2250.
        let stat = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 2983 0 0 0 1500 2250 0 0 20 0 \
                    3 0 912 123456 789 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0";
        assert_eq!(process_cpu_ticks(stat), Some(3750));
        assert_eq!(process_cpu_ticks("4242 (short) S 1 2"), None);
        assert_eq!(thread_name(stat), Some("tokio (rt) w"));
        assert_eq!(process_cpu_ticks("no parenthesis"), None);
    }

    #[test]
    fn retransmitted_segments_come_from_the_tcp_lines() {
        let snmp = "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
                    Tcp: RtoAlgorithm RtoMin ActiveOpens OutSegs RetransSegs InErrs\n\
                    Tcp: 1 200 10001 1217169 289022 0\n\
                    Udp: InDatagrams\nUdp: 5\n";
        assert_eq!(tcp_retransmits_of(snmp), Some(289_022));
        assert_eq!(tcp_retransmits_of("Tcp: RtoAlgorithm RetransSegs\n"), None);
        assert_eq!(tcp_retransmits_of("Udp: InDatagrams\nUdp: 5\n"), None);
    }

    #[test]
    fn the_machine_s_idle_and_steal_shares_come_from_the_cpu_line() {
        let before =
            CpuTimes::parse("cpu  3222961 12928 1323968 4669376 167785 0 402234 30739 0 0")
                .expect("a Linux cpu line");
        let after = CpuTimes::parse("cpu  3223164 12928 1324143 4669615 167785 0 402335 30856 0 0")
            .expect("a Linux cpu line");
        // 835 ticks: user 203, system 175, idle 239, softirq 101, steal 117 (guest time is in
        // user already, so the last two fields are not added).
        let (idle, steal) = before.shares_until(&after).expect("time passed");
        assert!((idle - 100.0 * 239.0 / 835.0).abs() < 1e-9, "idle {idle}");
        assert!(
            (steal - 100.0 * 117.0 / 835.0).abs() < 1e-9,
            "steal {steal}"
        );
        assert_eq!(after.shares_until(&after), None, "no time passed");
        assert_eq!(after.shares_until(&before), None, "a counter went back");
    }

    #[test]
    fn a_cpu_line_not_as_linux_writes_it_gives_nothing() {
        assert_eq!(CpuTimes::parse("cpu0 1 2 3 4 5 6 7 8"), None);
        assert_eq!(CpuTimes::parse("cpu 1 2 3 4 5 6 7"), None);
        assert_eq!(CpuTimes::parse("cpu 1 2 3 four 5 6 7 8"), None);
    }
}
