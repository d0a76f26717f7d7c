//! The summary of a scenario's runs (medians, ratios, the scenario's targets judged) and its
//! report: Markdown tables on stdout.

use std::fmt::Write as _;

use crate::control::LatencySummary;
use crate::diskstat::DiskWindow;
use crate::results::{
    CatalogResult, ChurnResult, ConsumersRound, DrainResult, EmergencyOnly, Measured, Plan,
    RetentionRound, RunResult, ThrottleResult, Throttled, CONSUMERS,
};
use crate::summary::{distinct, Aggregate, Machine, Ratio, Stat, Summary};
use crate::targets::{self, at_least, Goals, Target};
use crate::{replication_report, shard_report, Variant};
/// Host steal above this share of a window is pointed out under the table.
const STEAL_NOTED_PCT: f64 = 5.0;

/// The variants the targets are computed on: the default daemon, and the pipeline alone.
const JUDGED: [Variant; 2] = [Variant::Daemon, Variant::Pipeline];

pub fn summarize(command: String, machine: Machine, plan: &Plan, measured: Measured) -> Summary {
    let daemon_archive_complete = measured.daemon_archive_complete();
    let Measured {
        runs,
        drain,
        restart,
        churn,
        throttle,
        consumers,
        catalog,
        retention,
        replication,
        durable_floor,
    } = measured;
    let aggregates = aggregate_runs(&runs);
    let ratios = ratios(plan, &aggregates);
    let mut targets = targets(
        plan,
        &aggregates,
        &ratios,
        drain.as_ref(),
        churn.as_ref(),
        throttle.as_ref(),
        daemon_archive_complete,
    );
    targets.extend(consumer_targets(&plan.goals, &consumers));
    targets.extend(retention_targets(&plan.goals, &retention));
    targets.extend(replication_report::targets(
        &plan.goals,
        replication.as_ref(),
    ));
    let durable_floor_mb_per_s = Stat::of(durable_floor.iter().map(|d| d.mb_per_s));
    targets.extend(shard_report::targets(
        plan,
        machine.nproc,
        &aggregates,
        &runs,
        &durable_floor_mb_per_s,
    ));
    Summary {
        command,
        machine,
        plan: plan.clone(),
        aggregates,
        ratios,
        drain,
        restart,
        churn,
        throttle,
        consumers,
        catalog,
        retention,
        replication,
        durable_floor,
        durable_floor_mb_per_s,
        targets,
        daemon_archive_complete,
        runs,
    }
}

/// The runs' aggregates, one per section, variant, payload, sources and shards, in the runs'
/// order.
fn aggregate_runs(runs: &[RunResult]) -> Vec<Aggregate> {
    let key = |r: &RunResult| (r.section, r.variant, r.payload, r.sources, r.shards);
    let mut aggregates: Vec<Aggregate> = Vec::new();
    for r in runs {
        let seen = |a: &Aggregate| (a.section, a.variant, a.payload, a.sources, a.shards);
        if aggregates.iter().any(|a| seen(a) == key(r)) {
            continue;
        }
        let group: Vec<&RunResult> = runs.iter().filter(|x| key(x) == key(r)).collect();
        aggregates.push(aggregate(r, &group));
    }
    aggregates
}

/// The aggregate of `group`, the runs of `first`'s section, variant, payload, sources and
/// shards.
fn aggregate(first: &RunResult, group: &[&RunResult]) -> Aggregate {
    let stat = |f: &dyn Fn(&RunResult) -> f64| Stat::of(group.iter().map(|r| f(r)));
    let us = 1e-3;
    Aggregate {
        section: first.section,
        variant: first.variant,
        shards: first.shards,
        payload: first.payload,
        sources: first.sources,
        runs: group.len(),
        frames_per_s: stat(&|r| r.frames_per_s),
        mb_per_s: stat(&|r| r.mb_per_s),
        cpu_ns_per_frame: stat(&|r| r.cpu_ns_per_frame),
        cpu_cores: stat(&|r| r.cpu_cores),
        peak_rss_mib: stat(&|r| r.peak_rss_mib),
        machine_idle_pct: stat(&|r| r.machine_idle_pct.unwrap_or(f64::NAN)),
        host_steal_pct: stat(&|r| r.host_steal_pct.unwrap_or(f64::NAN)),
        client_cpu_ns_per_frame: stat(&|r| r.client_cpu_ns_per_frame.unwrap_or(f64::NAN)),
        tcp_retransmits_per_s: stat(&|r| r.tcp_retransmits_per_s.unwrap_or(f64::NAN)),
        tcp_memory_start_mib: stat(&|r| r.tcp_memory_start_mib.unwrap_or(f64::NAN)),
        tcp_memory_end_mib: stat(&|r| r.tcp_memory_end_mib.unwrap_or(f64::NAN)),
        probe_p50_us: stat(&|r| nonzero(r.probe.count, r.probe.p50_ns as f64 * us)),
        probe_p99_us: stat(&|r| nonzero(r.probe.count, r.probe.p99_ns as f64 * us)),
        probe_max_us: stat(&|r| nonzero(r.probe.count, r.probe.max_ns as f64 * us)),
        stream_p50_us: stat(&|r| nonzero(r.stream.count, r.stream.p50_ns as f64 * us)),
        stream_p99_us: stat(&|r| nonzero(r.stream.count, r.stream.p99_ns as f64 * us)),
        stream_max_us: stat(&|r| nonzero(r.stream.count, r.stream.max_ns as f64 * us)),
        archived_over_processed: stat(&|r| match r.archived_total {
            Some(a) if r.processed_total > 0 => a as f64 / r.processed_total as f64,
            _ => f64::NAN,
        }),
        archive_equals_processed: if group.iter().all(|r| r.archived_total.is_none()) {
            None
        } else {
            Some(
                group
                    .iter()
                    .all(|r| r.archived_total == Some(r.processed_total) && r.processed_total > 0),
            )
        },
    }
}

/// Each judged variant's frames/s over the floor's, per payload.
fn ratios(plan: &Plan, aggregates: &[Aggregate]) -> Vec<Ratio> {
    let find = |variant: Variant, payload: usize| {
        aggregates
            .iter()
            .find(|a| a.section == "main" && a.variant == variant && a.payload == payload)
    };
    plan.payloads
        .iter()
        .flat_map(|&payload| JUDGED.map(|variant| (payload, variant)))
        .filter_map(|(payload, variant)| {
            let own = find(variant, payload)?.frames_per_s.median;
            let over = |v| Some(own / find(v, payload)?.frames_per_s.median);
            Some(Ratio {
                payload,
                variant,
                over_floor: over(Variant::Floor),
            })
        })
        .collect()
}

fn nonzero(count: u64, value: f64) -> f64 {
    if count == 0 {
        f64::NAN
    } else {
        value
    }
}

/// On the disk throttled to `mib` MiB/s, the emergency-only sources' ACK p99 against the
/// scenario's `emergency_only_ack_p99_ms`. Not met when no ACK came in the window at all.
fn emergency_only_target(goals: &Goals, mib: f64, e: &EmergencyOnly) -> Option<Target> {
    let goal = goals.bound("emergency_only_ack_p99_ms")?;
    let p99_ms = e.ack_latency.p99_ns as f64 / 1e6;
    let acked = e.ack_latency.count > 0;
    Some(Target {
        name: format!(
            "throttled disk ({mib} MiB/s): emergency-only sources' ACK p99 ({} sources)",
            e.sources
        ),
        target: format!("<= {goal} ms"),
        measured: match acked {
            true => format!("{p99_ms:.2} ms ({:.2}x the target)", p99_ms / goal),
            false => format!("no ACK in the window ({} frames sent)", e.frames_sent),
        },
        met: acked && p99_ms <= goal,
    })
}

/// Followers of the archive never hold ingest back, and miss nothing.
fn consumer_targets(goals: &Goals, consumers: &[ConsumersRound]) -> Vec<Target> {
    if consumers.is_empty() {
        return Vec::new();
    }
    let ratio = Stat::of(
        consumers
            .iter()
            .map(|r| r.with.frames_per_s / r.without.frames_per_s),
    );
    let complete = consumers
        .iter()
        .filter(|r| r.with.every_frame_followed())
        .count();
    let name = format!("ingest with {CONSUMERS} followers from the start / without");
    let mut out =
        Vec::from_iter(goals.judge("followers_ingest_over_without", name, ratio.median, "x"));
    out.push(at_least(
        "rounds in which every follower received every archived frame".into(),
        1.0,
        complete as f64 / consumers.len() as f64,
        "",
    ));
    out
}

/// Ingest keeps its pace while retention deletes, at each payload; and retention deleted segments
/// in every window with it and none in a window without.
fn retention_targets(goals: &Goals, rounds: &[RetentionRound]) -> Vec<Target> {
    if rounds.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    for payload in distinct(rounds.iter().map(|r| r.payload)) {
        let ratios: Vec<f64> = rounds
            .iter()
            .filter(|r| r.payload == payload)
            .map(RetentionRound::ratio)
            .collect();
        let name = format!(
            "{payload} B ingest with retention deleting / without (median of {} rounds)",
            ratios.len()
        );
        let median = Stat::of(ratios).median;
        out.extend(goals.judge("retention_ingest_over_without", name, median, "x"));
    }
    let deleted = Stat::of(rounds.iter().map(|r| r.with.deleted_segments as f64));
    let as_configured = rounds.iter().filter(|r| r.deleted_as_configured()).count();
    out.push(Target {
        name: "retention deleted segments in every window with it, none without".into(),
        target: "every round".into(),
        measured: format!(
            "{as_configured} of {} rounds; {} segments deleted per window with retention",
            rounds.len(),
            deleted.show(1.0, 0)
        ),
        met: as_configured == rounds.len(),
    });
    out
}

fn targets(
    plan: &Plan,
    aggregates: &[Aggregate],
    ratios: &[Ratio],
    drain: Option<&DrainResult>,
    churn: Option<&ChurnResult>,
    throttle: Option<&ThrottleResult>,
    archive_complete: bool,
) -> Vec<Target> {
    let mut judged = Judged {
        goals: &plan.goals,
        out: Vec::new(),
    };
    let throttled = throttle.and_then(|t| Some((t.mib_per_s, t.measured.as_ref()?)));
    throughput_targets(&mut judged, plan, aggregates, ratios);
    if let Some((mib, t)) = throttled {
        let name = format!("throttled disk ({mib} MiB/s): acknowledged payload / throttle");
        let key = "throttled_acked_over_limit";
        judged.judge(key, name, Some(t.acked_over_throttle), "x");
    }
    latency_and_memory_targets(&mut judged, plan, aggregates);
    if let Some(c) = churn {
        // What a source that has gone, every frame acknowledged, leaves behind.
        judged.judge(
            "churn_bytes_per_source",
            format!(
                "resident memory per source gone (churn, {} sources), daemon",
                c.sources
            ),
            Some(c.resident_bytes_per_source),
            " B",
        );
    }
    let mut out = judged.out;
    out.extend(
        drain
            .map(|d| drain_targets(&plan.goals, d))
            .into_iter()
            .flatten(),
    );
    if let Some((mib, t)) = throttled {
        out.extend(throttled_targets(plan, mib, t));
    }
    out.push(Target {
        name: "daemon archive received every processed frame".into(),
        target: "archived == processed in every run".into(),
        measured: if archive_complete {
            "yes".into()
        } else {
            "NO".into()
        },
        met: archive_complete,
    });
    out
}

/// The targets judged so far, by the scenario's goals.
struct Judged<'a> {
    goals: &'a Goals,
    out: Vec<Target>,
}

impl Judged<'_> {
    /// Judges `value` (none: not measured) by the goal `key`, if the scenario sets one.
    fn judge(&mut self, key: &str, name: String, value: Option<f64>, unit: &str) {
        let goals = self.goals;
        self.out
            .extend(value.and_then(|v| goals.judge(key, name, v, unit)));
    }
}

/// Throughput over the floor, per payload, and with the most sources over the main runs'.
fn throughput_targets(
    judged: &mut Judged,
    plan: &Plan,
    aggregates: &[Aggregate],
    ratios: &[Ratio],
) {
    for r in ratios {
        let (p, v) = (r.payload, r.variant.name());
        let key = format!("throughput_over_floor_{p}b");
        judged.judge(
            &key,
            format!("{p} B throughput, {v}/floor"),
            r.over_floor,
            "x",
        );
    }
    let most = plan.scale.iter().copied().max().unwrap_or(usize::MAX);
    let at_most_sources = |a: &&Aggregate| a.section == "scale" && a.sources == most;
    for a in aggregates.iter().filter(at_most_sources) {
        // The scale runs' own windows with the main runs' sources, measured in the same rounds.
        let at_48 = aggregates.iter().find(|m| {
            m.section == "scale" && m.variant == a.variant && m.sources == plan.connections
        });
        judged.judge(
            "scale_throughput_over_main",
            format!(
                "throughput with {} sources / with {} ({}, {} shards)",
                a.sources,
                plan.connections,
                a.variant.name(),
                a.shards.unwrap_or(plan.default_shards)
            ),
            at_48.map(|m| a.frames_per_s.median / m.frames_per_s.median),
            "x",
        );
    }
}

/// The probe's and the in-stream emergencies' p99 and the peak RSS of the main runs, and the
/// peak RSS with the most sources.
fn latency_and_memory_targets(judged: &mut Judged, plan: &Plan, aggregates: &[Aggregate]) {
    for a in aggregates
        .iter()
        .filter(|a| a.section == "main" && JUDGED.contains(&a.variant))
    {
        let (p, v) = (a.payload, a.variant.name());
        judged.judge(
            "probe_p99_ms",
            format!("{p} B probe p99 latency, {v}"),
            Some(a.probe_p99_us.median / 1e3),
            " ms",
        );
        judged.judge(
            "stream_emergency_p99_ms",
            format!("{p} B in-stream emergency p99 (decode to processed), {v}"),
            Some(a.stream_p99_us.median / 1e3),
            " ms",
        );
        judged.judge(
            "peak_rss_mib_main",
            format!("{p} B peak RSS, {} sources, {v}", a.sources),
            Some(a.peak_rss_mib.median),
            " MiB",
        );
    }
    let most = plan.scale.iter().copied().max().unwrap_or(usize::MAX);
    for a in aggregates
        .iter()
        .filter(|a| a.section == "scale" && a.sources == most)
    {
        judged.judge(
            "peak_rss_mib_scale",
            format!("peak RSS, {} sources, {}", a.sources, a.variant.name()),
            Some(a.peak_rss_mib.median),
            " MiB",
        );
    }
}

/// SIGTERM under load: how long the exit took, and that nothing accepted was lost.
fn drain_targets(goals: &Goals, d: &DrainResult) -> Vec<Target> {
    let mut judged = Judged {
        goals,
        out: Vec::new(),
    };
    judged.judge(
        "drain_exit_ms",
        "SIGTERM under load: time to exit".into(),
        Some(d.sigterm_to_exit_ms),
        " ms",
    );
    let mut out = judged.out;
    out.push(Target {
        name: "SIGTERM under load: accepted frames lost".into(),
        target: "0".into(),
        measured: drain_outcome(d),
        met: d.clean(),
    });
    out
}

/// On a disk throttled to `mib` MiB/s: the emergency-only sources, and the drain in time.
fn throttled_targets(plan: &Plan, mib: f64, t: &Throttled) -> Vec<Target> {
    let mut out: Vec<Target> = emergency_only_target(&plan.goals, mib, &t.emergency_only)
        .into_iter()
        .collect();
    let deadline_ms = plan.drain_deadline.as_secs_f64() * 1e3;
    let d = &t.drain;
    out.push(Target {
        name: format!("throttled disk ({mib} MiB/s): SIGTERM drain clean in time"),
        target: format!("nothing lost, exit 0 within {deadline_ms:.0} ms"),
        measured: format!(
            "exit {} after {:.0} ms; lost {}",
            d.exit_code.map_or("by a signal".into(), |c| c.to_string()),
            d.sigterm_to_exit_ms,
            drain_outcome(d)
        ),
        met: d.clean() && d.exit_code == Some(0) && d.sigterm_to_exit_ms <= deadline_ms,
    });
    out
}

/// What a drain lost, and what it accepted and archived.
fn drain_outcome(d: &DrainResult) -> String {
    match d.report {
        Some(r) => format!(
            "{} (accepted {}, archived {}, drain completed: {})",
            r.lost, r.accepted, r.archived, r.completed
        ),
        None => "no drain report".into(),
    }
}

/// The report for a terminal, in Markdown so that it can go into BENCHMARKS.md as it is.
pub fn render(s: &Summary) -> String {
    let mut o = String::new();
    let m = &s.machine;
    let _ = writeln!(o, "\n# aggregator-bench\n");
    let _ = writeln!(o, "command: `{}`  ", s.command);
    let _ = writeln!(
        o,
        "machine: {} cores, {}; load average before {} / after {}; new pages into the page cache before: {}  ",
        m.nproc,
        m.cpu_model,
        m.loadavg_before,
        m.loadavg_after,
        m.new_page_mb_per_s
            .map_or("not measured".into(), |rate| format!("{rate:.0} MB/s")),
    );
    if s.aggregates.iter().any(|a| a.section == "main") {
        render_main(&mut o, s);
    }
    render_scale(&mut o, s);
    if s.aggregates
        .iter()
        .any(|a| a.section == crate::sweep::SECTION)
    {
        shard_report::render(&mut o, s);
    }
    if let Some(d) = &s.drain {
        let _ = writeln!(
            o,
            "\nDrain (daemon, {} B, {} saturating sources, SIGTERM after the window):\n",
            d.payload, d.sources
        );
        render_drain(&mut o, d);
    }
    if !s.restart.is_empty() {
        render_restart(&mut o, s);
    }
    if let Some(c) = &s.churn {
        render_churn(&mut o, c);
    }
    if let Some(t) = &s.throttle {
        render_throttle(&mut o, t, &s.plan);
    }
    if !s.catalog.is_empty() {
        render_catalog(&mut o, &s.catalog);
    }
    if !s.consumers.is_empty() {
        render_consumers(&mut o, &s.consumers, &s.plan);
    }
    if !s.retention.is_empty() {
        render_retention(&mut o, &s.retention, &s.plan, s.machine.nproc);
    }
    if let Some(r) = &s.replication {
        replication_report::render(&mut o, r, &s.plan, s.machine.nproc);
    }
    let _ = writeln!(
        o,
        "\nTargets (the scenario's, and the checks every run makes):\n"
    );
    o.push_str(&targets::table(&s.targets));
    let errors: u64 = s.runs.iter().map(|r| r.connection_errors).sum();
    if errors > 0 {
        let first = s
            .runs
            .iter()
            .find_map(|r| r.first_error.clone())
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "\nserver-side connection errors: {errors} (first: {first})"
        );
    }
    o
}

/// The scale runs: every source saturating, with the main runs' sources again for the ratio.
fn render_scale(o: &mut String, s: &Summary) {
    let scale: Vec<_> = s
        .aggregates
        .iter()
        .filter(|a| a.section == "scale")
        .collect();
    if scale.is_empty() {
        return;
    }
    let _ = writeln!(o, "\nScale (64 B, every source saturating; the main runs' {} sources again, in the same rounds, for the ratio to them):\n", s.plan.connections);
    let _ = writeln!(o, "| variant | sources | connected at window start (fewest of the runs) | M frames/s | server CPU ns/frame | client CPU ns/frame | peak RSS MiB | probe p99 | in-stream p99 | archived / processed | machine idle % | host steal % | TCP retransmits/s | TCP memory MiB, window start → end |");
    let _ = writeln!(
        o,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for a in scale {
        let connected = s
            .runs
            .iter()
            .filter(|r| r.section == "scale" && r.variant == a.variant && r.sources == a.sources)
            .map(|r| r.connected)
            .min()
            .unwrap_or(0);
        let _ = writeln!(
            o,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} → {} |",
            a.variant.name(),
            a.sources,
            connected,
            a.frames_per_s.show(1e-6, 2),
            a.cpu_ns_per_frame.show(1.0, 0),
            a.client_cpu_ns_per_frame.show(1.0, 0),
            a.peak_rss_mib.show(1.0, 1),
            a.probe_p99_us.show(1.0, 0),
            a.stream_p99_us.show(1.0, 0),
            if a.archive_equals_processed == Some(true) {
                "equal"
            } else {
                "NOT equal"
            },
            a.machine_idle_pct.show(1.0, 0),
            a.host_steal_pct.show(1.0, 1),
            a.tcp_retransmits_per_s.show(1.0, 0),
            a.tcp_memory_start_mib.show(1.0, 0),
            a.tcp_memory_end_mib.show(1.0, 0),
        );
    }
    let _ = writeln!(o, "\nClient CPU: the load client's CPU time over the window per frame processed; on loopback it includes the kernel's receive path for what the client sends. TCP retransmits: the machine's (`/proc/net/snmp`), per second of the window. TCP memory: what the machine's TCP sockets held when the window opened and when it closed (`/proc/net/sockstat`), both ends of every connection: the server's receive queues and the client's send queues.");
}

/// The restart runs: recovery of an archive whose newest segment is full.
fn render_restart(o: &mut String, s: &Summary) {
    let _ = writeln!(
        o,
        "\nRestart (durable archive whose newest segment is full: {:.1} MiB of 64 B frames):\n",
        s.plan.segment_bytes as f64 / (1024.0 * 1024.0),
    );
    let _ = writeln!(o, "| sources | frames in the segment | recovery ms (`SegmentSink::open`) | peak RSS MiB | sources recovered | frames above watermarks |");
    let _ = writeln!(o, "|---|---|---|---|---|---|");
    for r in &s.restart {
        let _ = writeln!(
            o,
            "| {} | {} | {:.1} | {:.1} | {} | {} |",
            r.sources,
            r.frames,
            r.recovered.open_ms,
            r.recovered.peak_rss_kib as f64 / 1024.0,
            r.recovered.sources,
            r.recovered.frames_above
        );
    }
}

/// The main runs: the plan, the table of every variant and payload, and the ratios.
fn render_main(o: &mut String, s: &Summary) {
    let _ = writeln!(
        o,
        "plan: {} run(s), warm-up {:.1} s + window {:.1} s per variant, {} saturating uplinks + 1 probe (1 emergency frame/ms), 1 frame in 100 emergency\n",
        s.plan.runs,
        s.plan.warmup.as_secs_f64(),
        s.plan.measure.as_secs_f64(),
        s.plan.connections
    );
    let _ = writeln!(
        o,
        "Medians over runs, (min–max) when they differ. Latencies in µs.\n"
    );
    let _ = writeln!(
        o,
        "| payload | variant | M frames/s | MB/s | server CPU ns/frame | CPU cores | peak RSS MiB | probe p50 | probe p99 | probe max | in-stream p50 | in-stream p99 | in-stream max | archived / processed | machine idle % | host steal % |"
    );
    let _ = writeln!(
        o,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for a in s.aggregates.iter().filter(|a| a.section == "main") {
        let archive = match a.archive_equals_processed {
            None => "n/a (no archive)".to_string(),
            Some(true) => "equal, every run".to_string(),
            Some(false) => format!("{} (not equal)", a.archived_over_processed.show(1.0, 4)),
        };
        let _ = writeln!(
            o,
            "| {} B | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.payload,
            a.variant.name(),
            a.frames_per_s.show(1e-6, 2),
            a.mb_per_s.show(1.0, 0),
            a.cpu_ns_per_frame.show(1.0, 0),
            a.cpu_cores.show(1.0, 2),
            a.peak_rss_mib.show(1.0, 1),
            a.probe_p50_us.show(1.0, 0),
            a.probe_p99_us.show(1.0, 0),
            a.probe_max_us.show(1.0, 0),
            a.stream_p50_us.show(1.0, 0),
            a.stream_p99_us.show(1.0, 0),
            a.stream_max_us.show(1.0, 0),
            archive,
            a.machine_idle_pct.show(1.0, 0),
            a.host_steal_pct.show(1.0, 1),
        );
    }
    let _ = writeln!(o, "\nProbe: client send to processed (for the daemon: `Batch::processed_at`, the instant the processor took the batch), wall clock shared by the two processes. In-stream: emergency frames of the saturating streams, decode to processed (daemon: `Batch::decoded_at` to `Batch::processed_at`; floor: none). Machine idle and host steal: shares of the machine's CPU time over the window (`/proc/stat`, every CPU); steal is time the hypervisor gave to other guests.\n");
    let stolen: Vec<f64> = s.runs.iter().filter_map(|r| r.host_steal_pct).collect();
    let high = stolen.iter().filter(|&&x| x > STEAL_NOTED_PCT).count();
    if high > 0 {
        let most = stolen.iter().copied().fold(0.0, f64::max);
        let _ = writeln!(
            o,
            "**Host steal above {STEAL_NOTED_PCT} % in {high} of {} windows (up to {most:.1} %)**: those windows measured a slower machine than the others.\n",
            stolen.len()
        );
    }
    let _ = writeln!(o, "| payload | variant | / floor |");
    let _ = writeln!(o, "|---|---|---|");
    let show = |x: Option<f64>| x.map_or("n/a".into(), |v| format!("{v:.3}x"));
    for r in &s.ratios {
        let _ = writeln!(
            o,
            "| {} B | {} | {} |",
            r.payload,
            r.variant.name(),
            show(r.over_floor)
        );
    }
    shard_report::render_durable_floor(o, s);
}

/// The drain's table: the throughput before the SIGTERM, and how the drain went.
fn render_drain(o: &mut String, d: &DrainResult) {
    let _ = writeln!(o, "| M frames/s before | SIGTERM to exit ms | drain ms (daemon) | accepted | processed | archived | lost | completed | exit code |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    match d.report {
        Some(r) => {
            let _ = writeln!(
                o,
                "| {:.2} | {:.1} | {:.1} | {} | {} | {} | {} | {} | {} |",
                d.frames_per_s_before / 1e6,
                d.sigterm_to_exit_ms,
                r.elapsed_ms,
                r.accepted,
                r.processed,
                r.archived,
                r.lost,
                r.completed,
                d.exit_code.map_or("signal".into(), |c| c.to_string())
            );
        }
        None => {
            let _ = writeln!(
                o,
                "| {:.2} | {:.1} | no report | | | | | | |",
                d.frames_per_s_before / 1e6,
                d.sigterm_to_exit_ms
            );
        }
    }
}

/// The throttle run: what the ACKs covered against the throttle, their latency, the daemon's
/// memory and backlog, and the drain; or why it was skipped.
fn render_throttle(o: &mut String, t: &ThrottleResult, plan: &Plan) {
    let _ = write!(
        o,
        "\nThrottled disk (durable daemon; its writes to the archive's disk limited to {} MiB/s by a cgroup v1 blkio throttle; {} uplinks saturating with {} B frames",
        t.mib_per_s, t.sources, t.payload
    );
    let Some(m) = &t.measured else {
        let why = t.skipped.as_deref().unwrap_or("not measured");
        let _ = writeln!(o, "):\n\n**skipped: {why}**");
        return;
    };
    let _ = writeln!(
        o,
        "; disk {}, window {:.1} s, then SIGTERM; drain deadline {} ms):\n",
        m.device,
        m.window_s,
        plan.drain_deadline.as_millis()
    );
    render_throttled(o, m);
    let _ = writeln!(o, "\nACK latency: from the end of the `write` that put a frame into its socket to the client's receipt of the ACK covering it. Written through the throttle: what the daemon's cgroup wrote to the disk over the window, as its throttle counted it; writes the kernel's flusher threads made for it are not charged to it in cgroup v1. Unsynced and in flight: the most read every 100 ms.\n");
    render_emergency_only(o, &m.emergency_only, &m.disk_sync_latency);
    render_drain(o, &m.drain);
}

fn render_throttled(o: &mut String, m: &Throttled) {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let ms = |ns: u64| ns as f64 / 1e6;
    let _ = writeln!(o, "| frames acked/s | acked payload MiB/s | / throttle | written through the throttle MiB/s | ACK latency p50 ms | p99 ms | max ms | sent, not acked at the end, MiB | most unsynced MiB | most frames in flight | peak RSS MiB |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        o,
        "| {:.0} | {:.1} | {:.2}x | {} | {:.0} | {:.0} | {:.0} | {:.1} | {:.1} | {} | {:.1} |",
        m.acked_frames_per_s,
        m.acked_mib_per_s,
        m.acked_over_throttle,
        m.throttled_write_mib_per_s
            .map_or("n/a".into(), |w| format!("{w:.1}")),
        ms(m.ack_latency.p50_ns),
        ms(m.ack_latency.p99_ns),
        ms(m.ack_latency.max_ns),
        m.unacked_mib_at_end,
        mib(m.max_unsynced_bytes),
        m.max_in_flight,
        m.drain.peak_rss_kib as f64 / 1024.0,
    );
}

/// The emergency-only sources beside the uplinks: what they sent and their ACK latency.
fn render_emergency_only(o: &mut String, e: &EmergencyOnly, disk: &LatencySummary) {
    let ms = |ns: u64| ns as f64 / 1e6;
    let _ = writeln!(
        o,
        "Emergency-only sources ({} more sources, ids {:#x} to {:#x}, each sending only emergency frames of {} B, {} a second, beside the uplinks; ACK latency as above, over the ACKs of the window):\n",
        e.sources, e.source_ids.0, e.source_ids.1, e.payload, e.frames_per_s_each
    );
    let _ = writeln!(o, "| frames sent in the window | frames acked | sent, not acked at the end | ACK latency p50 ms | p99 ms | max ms | the disk's own sync p99 ms | max ms |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        o,
        "| {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} |\n",
        e.frames_sent,
        e.frames_acked,
        e.unacked_at_end,
        ms(e.ack_latency.p50_ns),
        ms(e.ack_latency.p99_ns),
        ms(e.ack_latency.max_ns),
        ms(disk.p99_ns),
        ms(disk.max_ns),
    );
    let _ = writeln!(o, "The disk's own sync: a 4 KiB write and `fdatasync` every 20 ms to the same disk, by the bench outside the daemon's cgroup, over {} writes of the window: no durable write, an emergency's included, returns sooner than the disk lets it.\n", disk.count);
}

fn render_consumers(o: &mut String, rounds: &[ConsumersRound], plan: &Plan) {
    let _ = writeln!(
        o,
        "\nConsumers (durable daemon, {} saturating uplinks of {} B; each round a fresh daemon without followers, then one with {} following the archive from its start; counts to the END after the SIGTERM):\n",
        plan.connections,
        crate::consumers::PAYLOAD,
        CONSUMERS
    );
    let _ = writeln!(o, "| round | ingest frames/s without | with followers | with / without | frames archived | each follower received | caught up s after the load | drains clean |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    for (i, r) in rounds.iter().enumerate() {
        let received = r.with.followed.as_ref().map_or("n/a".into(), |f| {
            let counts: Vec<String> = f.frames.iter().map(u64::to_string).collect();
            match &f.first_error {
                None => counts.join(", "),
                Some(err) => format!("{} (failed: {err})", counts.join(", ")),
            }
        });
        let _ = writeln!(
            o,
            "| {} | {:.0} | {:.0} | {:.2}x | {} | {} | {} | {} |",
            i + 1,
            r.without.frames_per_s,
            r.with.frames_per_s,
            r.with.frames_per_s / r.without.frames_per_s,
            r.with.archived.map_or("n/a".into(), |a| a.to_string()),
            received,
            r.with
                .caught_up_s
                .map_or("n/a".into(), |s| format!("{s:.1}")),
            r.without.drain_clean && r.with.drain_clean,
        );
    }
}

/// The retention run: each round's pair of windows, their ratio and what retention deleted; then
/// where the machine's CPU went in each window.
fn render_retention(o: &mut String, rounds: &[RetentionRound], plan: &Plan, nproc: usize) {
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    let (segment, max) = plan
        .retention
        .map_or((0.0, 0.0), |r| (mib(r.segment_bytes), mib(r.max_bytes)));
    let _ = writeln!(
        o,
        "\nRetention (durable daemon, {} saturating uplinks; segments of {segment:.0} MiB in both variants; with retention: `[archive.retention] max_bytes` = {max:.0} MiB; each round a fresh daemon of each, the first alternating; deleted: the daemon's `archive.retention` stats at the window's ends; archive: its bytes on disk at the window's end, from retention's last check):\n",
        plan.connections
    );
    let _ = writeln!(o, "| payload | round | first | M frames/s without | with | with / without | MB/s without | with | segments deleted | MiB deleted | archive MiB without | with |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|---|---|");
    for r in rounds {
        let (a, b) = (&r.without, &r.with);
        let _ = writeln!(
            o,
            "| {} B | {} | {} | {:.3} | {:.3} | {:.3}x | {:.0} | {:.0} | {} | {:.0} | {:.0} | {:.0} |",
            r.payload,
            r.run,
            if r.with_first { "with" } else { "without" },
            a.run.frames_per_s / 1e6,
            b.run.frames_per_s / 1e6,
            r.ratio(),
            a.run.mb_per_s,
            b.run.mb_per_s,
            b.deleted_segments,
            mib(b.deleted_bytes),
            mib(a.archive_bytes_at_end),
            mib(b.archive_bytes_at_end),
        );
    }
    let _ = writeln!(o);
    for payload in distinct(rounds.iter().map(|r| r.payload)) {
        let of_payload: Vec<&RetentionRound> =
            rounds.iter().filter(|r| r.payload == payload).collect();
        let ratio = Stat::of(of_payload.iter().map(|r| r.ratio()));
        let deleted = Stat::of(of_payload.iter().map(|r| r.with.deleted_segments as f64));
        let per_s = Stat::of(
            of_payload
                .iter()
                .map(|r| r.with.deleted_segments as f64 / r.with.run.window_s),
        );
        let cpu_per_frame = Stat::of(
            of_payload
                .iter()
                .map(|r| r.with.run.cpu_ns_per_frame / r.without.run.cpu_ns_per_frame),
        );
        let _ = writeln!(
            o,
            "{payload} B: with / without {}x over {} rounds; the daemon's CPU per frame, with / without, {}x; {} segments deleted per window ({} a second)  ",
            ratio.show(1.0, 3),
            of_payload.len(),
            cpu_per_frame.show(1.0, 3),
            deleted.show(1.0, 0),
            per_s.show(1.0, 1),
        );
    }
    render_retention_cpu(o, rounds, nproc);
    render_retention_disk(o, rounds);
}

/// What the disk under the archives did in each window of the retention run.
fn render_retention_disk(o: &mut String, rounds: &[RetentionRound]) {
    let Some(device) = rounds
        .iter()
        .find_map(|r| r.with.disk.as_ref().or(r.without.disk.as_ref()))
        .map(|d| d.device.clone())
    else {
        return;
    };
    let _ = writeln!(
        o,
        "\nThe disk under the archives ({device}, `/sys/dev/block/{device}/stat`) in the same windows, every writer of it counted: written and discarded MiB/s, milliseconds of discards per second (summed over the requests), flushes per second and their mean time, and the share of the window it was busy:\n"
    );
    let _ = writeln!(o, "| payload | round | written without | with | discarded without | with | discard ms/s without | with | flushes/s without | with | flush ms without | with | busy % without | with |");
    let _ = writeln!(
        o,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let show = |d: Option<&DiskWindow>, f: fn(&DiskWindow) -> f64, digits: usize| {
        d.map_or("n/a".into(), |d| format!("{:.digits$}", f(d)))
    };
    for r in rounds {
        let (a, b) = (r.without.disk.as_ref(), r.with.disk.as_ref());
        let _ = writeln!(
            o,
            "| {} B | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.payload,
            r.run,
            show(a, |d| d.written_mib_per_s, 0),
            show(b, |d| d.written_mib_per_s, 0),
            show(a, |d| d.discarded_mib_per_s, 0),
            show(b, |d| d.discarded_mib_per_s, 0),
            show(a, |d| d.discard_ms_per_s, 0),
            show(b, |d| d.discard_ms_per_s, 0),
            show(a, |d| d.flushes_per_s, 0),
            show(b, |d| d.flushes_per_s, 0),
            show(a, |d| d.flush_ms_mean, 2),
            show(b, |d| d.flush_ms_mean, 2),
            show(a, |d| d.busy_pct, 0),
            show(b, |d| d.busy_pct, 0),
        );
    }
}

/// Where the machine's CPU went in each window of the retention run, in cores.
fn render_retention_cpu(o: &mut String, rounds: &[RetentionRound], nproc: usize) {
    let _ = writeln!(
        o,
        "\nThe same windows' CPU, in cores of the machine's {nproc}: the daemon's, its retention thread's (deleting and checking), the load client's, and the rest of the machine's busy time (other processes and the kernel's own threads):\n"
    );
    let _ = writeln!(o, "| payload | round | daemon without | with | of it retention | daemon CPU ns/frame without | with | load client without | with | rest of the machine without | with | idle % without | with | host steal % without | with |");
    let _ = writeln!(
        o,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let show = |x: Option<f64>, digits: usize| x.map_or("n/a".into(), |v| format!("{v:.digits$}"));
    for r in rounds {
        let (a, b) = (&r.without.run, &r.with.run);
        let _ = writeln!(
            o,
            "| {} B | {} | {:.2} | {:.2} | {:.3} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.payload,
            r.run,
            a.cpu_cores,
            b.cpu_cores,
            r.with.retention_thread_cores,
            a.cpu_ns_per_frame,
            b.cpu_ns_per_frame,
            show(client_cores(a), 2),
            show(client_cores(b), 2),
            show(rest_cores(a, nproc), 2),
            show(rest_cores(b, nproc), 2),
            show(a.machine_idle_pct, 0),
            show(b.machine_idle_pct, 0),
            show(a.host_steal_pct, 1),
            show(b.host_steal_pct, 1),
        );
    }
}

/// The load client's CPU over a window, in cores.
fn client_cores(r: &RunResult) -> Option<f64> {
    r.client_cpu_ns_per_frame
        .map(|ns| ns * r.frames_per_s / 1e9)
}

/// The machine's busy CPU over a window outside the server and the load client, in cores: other
/// processes, and kernel threads.
fn rest_cores(r: &RunResult, nproc: usize) -> Option<f64> {
    let busy = nproc as f64 * (100.0 - r.machine_idle_pct? - r.host_steal_pct?) / 100.0;
    Some(busy - r.cpu_cores - client_cores(r)?)
}

fn render_catalog(o: &mut String, spreads: &[CatalogResult]) {
    let _ = writeln!(
        o,
        "\nCatalog (durable daemon; a new catalog published with PUT /catalog to sources that send nothing, while the main runs' uplinks saturate it; from just before the PUT to each source's last byte of it):\n"
    );
    let _ = writeln!(o, "| sources | saturating uplinks | catalog | PUT answered ms | p50 ms | p99 ms | last ms | received |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|");
    let ms = |ns: u64| ns as f64 / 1e6;
    for c in spreads {
        let l = &c.spread.latency;
        let received = match &c.spread.first_error {
            None => c.spread.received.to_string(),
            Some(err) => format!("{} (first failure: {err})", c.spread.received),
        };
        let _ = writeln!(
            o,
            "| {} | {} | {} KiB | {:.1} | {:.1} | {:.1} | {:.1} | {} |",
            c.sources,
            c.saturating,
            c.bytes / 1024,
            c.spread.put_ms,
            ms(l.p50_ns),
            ms(l.p99_ns),
            ms(l.max_ns),
            received
        );
    }
}

fn render_churn(o: &mut String, c: &ChurnResult) {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let _ = writeln!(
        o,
        "\nChurn (durable daemon; distinct sources, {} at a time, each connecting once: {} frames of {} B, 1 in {} emergency, then half-closing and waiting for the CLOSE that acknowledges them; RSS after: once the last had left and a stats interval and a half had passed):\n",
        c.at_once, c.frames_per_source, c.payload, c.emergency_every
    );
    let _ = writeln!(o, "| sources | acknowledged in full | failed | seconds | RSS before MiB | peak RSS MiB | RSS after MiB | resident bytes per source gone | archived / processed |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|");
    let _ = writeln!(
        o,
        "| {} | {} ({} frames) | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {} |",
        c.sources,
        c.client.acknowledged,
        c.client.frames_acknowledged,
        c.client.failed,
        c.client.elapsed_s,
        mib(c.rss_before_kib),
        mib(c.peak_rss_kib),
        mib(c.rss_after_kib),
        c.resident_bytes_per_source,
        match c.archived_total {
            Some(a) if a == c.processed_total => format!("equal ({a})"),
            a => format!("NOT equal ({} / {})", a.unwrap_or(0), c.processed_total),
        }
    );
    if let Some(err) = &c.client.first_error {
        let _ = writeln!(o, "\nfirst failure of a churn source: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::LatencySummary;

    fn emergency_only(count: u64, p99_ms: u64) -> EmergencyOnly {
        EmergencyOnly {
            sources: 4,
            frames_per_s_each: 100,
            payload: 64,
            source_ids: (0xFFFF_0001, 0xFFFF_0004),
            frames_sent: 4_000,
            frames_acked: count,
            unacked_at_end: 0,
            ack_latency: LatencySummary {
                count,
                p50_ns: p99_ms * 500_000,
                p99_ns: p99_ms * 1_000_000,
                max_ns: p99_ms * 2_000_000,
            },
        }
    }

    #[test]
    fn the_emergency_only_target_is_met_at_50_ms_and_not_without_acks() {
        let goals: Goals =
            toml::from_str("emergency_only_ack_p99_ms = { at_most = 50.0 }").expect("goals parse");
        let target = |e| emergency_only_target(&goals, 50.0, &e).expect("a goal is set");
        let met = target(emergency_only(4_000, 50));
        assert!(met.met, "{met:?}");
        assert_eq!(met.target, "<= 50 ms");

        let missed = target(emergency_only(4_000, 4_600));
        assert!(!missed.met, "{missed:?}");
        assert_eq!(missed.measured, "4600.00 ms (92.00x the target)");

        // No ACK in the window: a p99 of 0 is no latency measured, not a target met.
        let none = target(emergency_only(0, 0));
        assert!(!none.met, "{none:?}");
        assert!(none.measured.starts_with("no ACK"), "{none:?}");
    }
}
