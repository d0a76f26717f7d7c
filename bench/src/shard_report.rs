//! The shard sweep and the durable floor in the report: the table of throughput against shards,
//! the durable floor beside the floor, the plot, and the sweep's targets.
//!
//! The targets judge the daemon as shipped: `runtime.shards` at its config's value (by default
//! one shard per core), taken from the sweep where it swept that count, else from the main runs,
//! which run the config unchanged.

use std::fmt::Write as _;

use crate::plot::{Chart, Guide, Point, Series};
use crate::results::{Plan, RunResult};
use crate::summary::{Aggregate, Stat, Summary};
use crate::sweep::{SECTION, SWEPT};
use crate::targets::{at_least, Target};
use crate::Variant;

/// The least tolerance of "within noise" on the 2-core machines: the spread of the 1-shard
/// windows widens it.
const LEAST_NOISE: f64 = 0.05;
/// Beyond this spread of the 1-shard windows, "within noise" would accept anything: the row says
/// so and is not met.
const MOST_NOISE: f64 = 0.5;

/// `x` to two decimals, as the targets show their goals.
fn cents(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

/// `variant` at `payload` with the daemon's configured shard count, and the floor beside it: from
/// the sweep when it ran that count, else from the main runs.
fn judged<'a>(
    plan: &Plan,
    aggregates: &'a [Aggregate],
    variant: Variant,
    payload: usize,
) -> Option<(&'a Aggregate, Option<&'a Aggregate>)> {
    let find = |section: &str, variant: Variant, shards: Option<usize>| {
        aggregates.iter().find(|a| {
            a.section == section
                && a.variant == variant
                && a.payload == payload
                && a.sources == plan.connections
                && (shards.is_none() || a.shards == shards)
        })
    };
    let swept = find(SECTION, variant, Some(plan.default_shards))
        .map(|a| (a, find(SECTION, Variant::Floor, None)));
    swept.or_else(|| find("main", variant, None).map(|a| (a, find("main", Variant::Floor, None))))
}

/// The sweep's targets that this run measured.
pub fn targets(
    plan: &Plan,
    nproc: usize,
    aggregates: &[Aggregate],
    runs: &[RunResult],
    durable_floor: &Stat,
) -> Vec<Target> {
    let goals = &plan.goals;
    let mut out = Vec::new();
    for &payload in &plan.payloads {
        let pipeline = judged(plan, aggregates, Variant::Pipeline, payload);
        if let Some((p, Some(floor))) = pipeline {
            out.extend(goals.judge(
                "sweep_pipeline_over_floor",
                format!(
                    "{payload} B throughput, pipeline/floor, {} shards",
                    p.shards.unwrap_or(plan.default_shards)
                ),
                p.frames_per_s.median / floor.frames_per_s.median,
                "x",
            ));
        }
        let daemon = judged(plan, aggregates, Variant::Daemon, payload);
        if let Some((d, _)) = daemon.filter(|_| durable_floor.median.is_finite()) {
            out.extend(goals.judge(
                "sweep_durable_over_durable_floor",
                format!(
                    "{payload} B durable daemon, payload archived / durable floor, {} shards",
                    d.shards.unwrap_or(plan.default_shards)
                ),
                d.mb_per_s.median / durable_floor.median,
                "x",
            ));
        }
    }
    if nproc <= 2 && plan.shards.contains(&1) && plan.shards.contains(&2) {
        for &payload in &plan.payloads {
            for variant in SWEPT {
                out.extend(two_core_targets(plan, runs, variant, payload));
            }
        }
    }
    out
}

/// On a 2-core machine: 2 shards lose nothing against 1 (the median of the rounds' ratios within
/// noise), and spend no more CPU per frame.
fn two_core_targets(
    plan: &Plan,
    runs: &[RunResult],
    variant: Variant,
    payload: usize,
) -> Vec<Target> {
    let at = |shards: usize| {
        runs.iter()
            .filter(move |r| {
                r.section == SECTION
                    && r.variant == variant
                    && r.payload == payload
                    && r.shards == Some(shards)
            })
            .collect::<Vec<_>>()
    };
    let (one, two) = (at(1), at(2));
    if one.is_empty() || two.is_empty() {
        return Vec::new();
    }
    // Each round's 2-shard window over the same round's 1-shard window.
    let ratio = |f: fn(&RunResult) -> f64| {
        Stat::of(two.iter().filter_map(|b| {
            let a = one.iter().find(|a| a.run == b.run)?;
            Some(f(b) / f(a))
        }))
    };
    let noise = |f: fn(&RunResult) -> f64| {
        let s = Stat::of(one.iter().map(|r| f(r)));
        let spread = (s.max - s.min) / s.median;
        match spread.is_finite() {
            true => cents(spread.max(LEAST_NOISE)),
            false => LEAST_NOISE,
        }
    };
    let fps: fn(&RunResult) -> f64 = |r| r.frames_per_s;
    let cpu: fn(&RunResult) -> f64 = |r| r.cpu_ns_per_frame;
    let (v, n) = (variant.name(), plan.connections);
    let name = format!("{payload} B {v}, {n} sources: 2 shards / 1, same rounds (2-core machine)");
    let mut out = vec![match noise(fps) {
        too if too > MOST_NOISE => too_noisy(name, ">=", 1.0 - MOST_NOISE, too),
        noise => at_least(name, cents(1.0 - noise), ratio(fps).median, "x"),
    }];
    let cpu_ratio = ratio(cpu).median;
    if cpu_ratio.is_finite() {
        let name = format!(
            "{payload} B {v}, {n} sources: CPU per frame at 2 shards / at 1 (2-core machine)"
        );
        out.push(match noise(cpu) {
            too if too > MOST_NOISE => too_noisy(name, "<=", 1.0 + MOST_NOISE, too),
            noise => {
                let goal = cents(1.0 + noise);
                Target {
                    name,
                    target: format!("<= {goal}x"),
                    measured: format!("{cpu_ratio:.2}x"),
                    met: cpu_ratio <= goal,
                }
            }
        })
    }
    out
}

/// A row that cannot be judged: the 1-shard windows spread by `noise` (over [`MOST_NOISE`]).
fn too_noisy(name: String, sense: &str, bound: f64, noise: f64) -> Target {
    Target {
        name,
        target: format!("{sense} 1 within the noise (at most {bound}x)"),
        measured: format!(
            "not judged: the 1-shard windows spread {:.0} %; measure again on a quieter machine",
            noise * 100.0
        ),
        met: false,
    }
}

/// The durable floor's line under the main runs' table, with the durable daemon against it.
pub fn render_durable_floor(o: &mut String, s: &Summary) {
    let floor = &s.durable_floor_mb_per_s;
    if floor.median.is_nan() {
        return;
    }
    let _ = write!(o, "\nDurable floor: {}", durable_floor_text(s));
    let daemon: Vec<String> = s
        .aggregates
        .iter()
        .filter(|a| a.section == "main" && a.variant == Variant::Daemon)
        .map(|a| {
            format!(
                "{:.0} MB/s at {} B ({:.2}x)",
                a.mb_per_s.median,
                a.payload,
                a.mb_per_s.median / floor.median
            )
        })
        .collect();
    if !daemon.is_empty() {
        let _ = write!(
            o,
            ". The durable daemon archived payload at {}",
            daemon.join(", ")
        );
    }
    let _ = writeln!(o, ".");
}

/// `X MB/s (min-max)` and how it was measured.
fn durable_floor_text(s: &Summary) -> String {
    let floor = &s.durable_floor_mb_per_s;
    let (bytes, dir) = s.durable_floor.first().map_or((0, String::new()), |d| {
        (d.bytes, d.dir.display().to_string())
    });
    format!(
        "{} MB/s, sequential writes of 1 MiB blocks with one `fsync` at the end ({} MiB each time, {} time(s)) in {dir}, where the daemon variants keep their archives",
        floor.show(1.0, 0),
        bytes / (1024 * 1024),
        s.durable_floor.len(),
    )
}

/// The sweep's section: how it ran, the floors, the table, and where the plot went.
pub fn render(o: &mut String, s: &Summary) {
    let plan = &s.plan;
    let _ = writeln!(
        o,
        "\nShards (issue 26): `runtime.shards` of the durable daemon and the pipeline set to {:?}, {} saturating uplinks + the probe, {} interleaved round(s) of every count with the floor in each; the daemon's config runs {} shards; the load client has a thread per core ({} cores). Medians over rounds, (min–max) when they differ.\n",
        plan.shards, plan.connections, plan.runs, plan.default_shards, s.machine.nproc
    );
    let rows = sweep_rows(s);
    for floor in rows.iter().filter(|a| a.variant == Variant::Floor) {
        let _ = writeln!(
            o,
            "Floor, {} B: {} M frames/s, {} MB/s of payload.  ",
            floor.payload,
            floor.frames_per_s.show(1e-6, 2),
            floor.mb_per_s.show(1.0, 0)
        );
    }
    if s.durable_floor_mb_per_s.median.is_finite() {
        let _ = writeln!(o, "Durable floor: {}.", durable_floor_text(s));
    }
    let _ = writeln!(o, "\n| payload | variant | shards | M frames/s | x floor | payload MB/s | x durable floor | server cores | server CPU ns/frame | archived / processed |");
    let _ = writeln!(o, "|---|---|---|---|---|---|---|---|---|---|");
    let floor_of = |payload| {
        rows.iter()
            .find(|a| a.variant == Variant::Floor && a.payload == payload)
            .map(|a| a.frames_per_s.median)
    };
    let ratio = |x: f64, of: Option<f64>| match of {
        Some(of) if of > 0.0 && x.is_finite() => format!("{:.3}x", x / of),
        _ => "n/a".into(),
    };
    for a in rows.iter().filter(|a| a.variant != Variant::Floor) {
        let durable = match a.variant {
            Variant::Daemon => Some(s.durable_floor_mb_per_s.median).filter(|m| m.is_finite()),
            _ => None,
        };
        let _ = writeln!(
            o,
            "| {} B | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.payload,
            a.variant.name(),
            a.shards.map_or("?".into(), |n| n.to_string()),
            a.frames_per_s.show(1e-6, 2),
            ratio(a.frames_per_s.median, floor_of(a.payload)),
            a.mb_per_s.show(1.0, 0),
            ratio(a.mb_per_s.median, durable),
            a.cpu_cores.show(1.0, 2),
            a.cpu_ns_per_frame.show(1.0, 0),
            match a.archive_equals_processed {
                Some(true) => "equal",
                Some(false) => "NOT equal",
                None => "n/a",
            },
        );
    }
    if let Some(path) = &plan.plot {
        let _ = writeln!(o, "\nPlot of frames/s against shards: `{}`", path.display());
    }
}

/// The sweep's aggregates: by payload, the floor first, then each variant by shard count.
fn sweep_rows(s: &Summary) -> Vec<&Aggregate> {
    let mut rows: Vec<&Aggregate> = s
        .aggregates
        .iter()
        .filter(|a| a.section == SECTION)
        .collect();
    let order = |v: Variant| SWEPT.iter().position(|&x| x == v).map_or(0, |i| i + 1);
    rows.sort_by_key(|a| (a.payload, order(a.variant), a.shards));
    rows
}

/// The plot: frames/s against shards, a line per variant and payload, the floors as guides.
pub fn chart(s: &Summary) -> Chart {
    const COLORS: [&str; 6] = [
        "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b",
    ];
    let rows = sweep_rows(s);
    let mut series = Vec::new();
    let mut guides = Vec::new();
    for (i, &payload) in s.plan.payloads.iter().enumerate() {
        for variant in SWEPT {
            let points: Vec<Point> = rows
                .iter()
                .filter(|a| a.variant == variant && a.payload == payload)
                .filter_map(|a| {
                    Some(Point {
                        x: a.shards? as f64,
                        y: a.frames_per_s.median,
                        low: a.frames_per_s.min,
                        high: a.frames_per_s.max,
                    })
                })
                .collect();
            if points.is_empty() {
                continue;
            }
            let durable = variant == Variant::Daemon;
            series.push(Series {
                label: match durable {
                    true => format!("daemon (durable), {payload} B"),
                    false => format!("pipeline (no disk), {payload} B"),
                },
                color: COLORS[(2 * i + usize::from(!durable)) % COLORS.len()],
                dashed: durable,
                points,
            });
        }
        let floor = rows
            .iter()
            .find(|a| a.variant == Variant::Floor && a.payload == payload);
        if let Some(floor) = floor {
            guides.push(Guide {
                label: format!("floor, {payload} B"),
                y: floor.frames_per_s.median,
            });
        }
    }
    Chart {
        title: format!(
            "aggregator-bench: frames/s against runtime.shards ({} cores, {} sources)",
            s.machine.nproc, s.plan.connections
        ),
        x_label: "runtime.shards".into(),
        y_label: "frames/s (median of the rounds; bars: min-max)".into(),
        series,
        guides,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sweep's window of `variant` at 64 B with `shards`, in round `run`.
    fn window(variant: Variant, shards: usize, run: usize, fps: f64, cpu_ns: f64) -> RunResult {
        RunResult {
            section: SECTION,
            variant,
            shards: Some(shards),
            payload: 64,
            sources: 48,
            connected: 49,
            run,
            window_s: 1.0,
            frames: fps as u64,
            frames_per_s: fps,
            mb_per_s: fps * 64.0 / 1e6,
            cpu_ns_per_frame: cpu_ns,
            cpu_cores: fps * cpu_ns / 1e9,
            peak_rss_mib: 10.0,
            machine_idle_pct: None,
            host_steal_pct: None,
            client_cpu_ns_per_frame: None,
            tcp_retransmits_per_s: None,
            tcp_memory_start_mib: None,
            tcp_memory_end_mib: None,
            probe: Default::default(),
            stream: Default::default(),
            processed_total: fps as u64,
            archived_total: Some(fps as u64),
            connection_errors: 0,
            first_error: None,
            watched: None,
        }
    }

    #[test]
    fn two_shards_are_judged_against_one_in_the_same_rounds_within_their_noise() {
        let plan = Plan::for_tests(2, vec![1, 2], vec![64]);
        let p = Variant::Pipeline;
        // 1 shard: 10 M then 9 M frames/s (10 % spread, the noise); 2 shards: 9.5 M, 8.1 M.
        let runs = vec![
            window(p, 1, 1, 10e6, 100.0),
            window(p, 2, 1, 9.5e6, 104.0),
            window(p, 1, 2, 9e6, 100.0),
            window(p, 2, 2, 8.1e6, 120.0),
        ];
        let targets = two_core_targets(&plan, &runs, p, 64);
        assert_eq!(targets.len(), 2, "{targets:?}");
        // Ratios 0.95 and 0.9, median 0.925, against 1 - 0.11 (the spread, (10 - 9) / 9.5).
        assert_eq!(targets[0].target, ">= 0.89x");
        assert!(targets[0].measured.starts_with("0.93x"), "{targets:?}");
        assert!(targets[0].met);
        // CPU per frame: 1.04 and 1.2, median 1.12, against 1 + 0.05 (no spread at 1 shard).
        assert_eq!(targets[1].target, "<= 1.05x");
        assert_eq!(targets[1].measured, "1.12x");
        assert!(!targets[1].met);
        // Only on machines with at most two cores.
        let none = Stat::of([]);
        assert!(targets_of(&plan, 16, &runs, &none).is_empty());
        assert_eq!(targets_of(&plan, 2, &runs, &none).len(), 2);
        // 1 shard at 2 M and 9 M frames/s: "within noise" would accept anything.
        let noisy = vec![
            window(p, 1, 1, 2e6, 100.0),
            window(p, 2, 1, 9.5e6, 104.0),
            window(p, 1, 2, 9e6, 100.0),
            window(p, 2, 2, 8.1e6, 120.0),
        ];
        let targets = two_core_targets(&plan, &noisy, p, 64);
        assert!(!targets[0].met, "{targets:?}");
        assert!(targets[0].measured.starts_with("not judged"), "{targets:?}");
    }

    /// [`targets`] with no aggregates: only the 2-core rows, of the pipeline's windows.
    fn targets_of(plan: &Plan, nproc: usize, runs: &[RunResult], floor: &Stat) -> Vec<Target> {
        targets(plan, nproc, &[], runs, floor)
    }
}
