//! The parent process: starts each server variant and the load client as children of this binary,
//! drives the measurement window, and collects one [`RunResult`] per run; and the drain, restart
//! and churn runs, and the throttle run's children (`throttle`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::child::{
    child_limit, start_client, start_server, terminate, wait_for_sources, wait_until, ChildProc,
};
use crate::control::ChildMsg;
use crate::results::{ChurnResult, DrainResult, Measured, Plan, RestartResult, RunResult};
use crate::window::{measure, Window};
use crate::{catalog, churn, consumers, replication, restart, retention, sweep, throttle, Variant};

/// Runs the whole plan: the durable floor, main runs, scale runs, the shard sweep, the drain run,
/// the restart run, the churn run, the throttle run, the consumers run, the catalog run, the
/// retention run, then the replication run.
pub fn run_plan(plan: &Plan) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let mut durable_floor = Vec::new();
    // Beside the main runs' durable daemon; the sweep measures it in each of its rounds.
    if let Some(most) = plan
        .durable_floor_bytes
        .filter(|_| plan.variants.contains(&Variant::Daemon) && !plan.payloads.is_empty())
    {
        eprintln!("[bench] durable floor: sequential writes with fsync beside the archives");
        durable_floor.push(sweep::measure_durable_floor(most)?);
    }
    let mut results = main_runs(&exe, plan)?;
    results.extend(scale_runs(&exe, plan)?);
    let swept = sweep::run(&exe, plan)?;
    results.extend(swept.runs);
    durable_floor.extend(swept.durable_floor);
    let drain = if plan.drain {
        eprintln!("[bench] drain: SIGTERM to the daemon under full load");
        Some(drain(&exe, plan, 64, plan.connections)?)
    } else {
        None
    };
    let mut restarts = Vec::new();
    if plan.restart {
        let mut counts = vec![plan.connections];
        counts.extend(plan.scale.iter().max().filter(|&&n| n != plan.connections));
        for sources in counts {
            eprintln!("[bench] restart: recovery from a full newest segment, {sources} sources");
            restarts.push(restart(&exe, plan, sources)?);
        }
    }
    let churn = match plan.churn {
        Some(sources) => {
            eprintln!("[bench] churn: {sources} sources, each connecting once, then gone");
            Some(churn(&exe, plan, sources)?)
        }
        None => None,
    };
    let throttle = match plan.throttle {
        Some(mib_per_s) => {
            eprintln!("[bench] throttle: the daemon's archive disk limited to {mib_per_s} MiB/s");
            Some(throttle::run(&exe, plan, mib_per_s)?)
        }
        None => None,
    };
    let consumers = match plan.consumers {
        true => consumers::run(&exe, plan)?,
        false => Vec::new(),
    };
    let catalog = catalog::run(&exe, plan)?;
    let retention = retention::run(&exe, plan)?;
    let replication = replication::run(&exe, plan)?;
    Ok(Measured {
        runs: results,
        drain,
        restart: restarts,
        churn,
        throttle,
        consumers,
        catalog,
        retention,
        replication,
        durable_floor,
    })
}

/// The main runs: each payload, `runs` rounds of every variant, with the plan's sources.
fn main_runs(exe: &Path, plan: &Plan) -> Result<Vec<RunResult>, String> {
    let mut results = Vec::new();
    for &payload in &plan.payloads {
        for run in 1..=plan.runs {
            for &variant in &plan.variants {
                eprintln!(
                    "[bench] {} {payload} B, {} sources, run {run}/{}",
                    variant.name(),
                    plan.connections,
                    plan.runs
                );
                results.push(measure(
                    exe,
                    plan,
                    Window {
                        section: "main",
                        variant,
                        payload,
                        sources: plan.connections,
                        run,
                        shards: None,
                    },
                )?);
            }
        }
    }
    Ok(results)
}

/// The scale runs: 64 B, every source saturating, each of the plan's source counts.
fn scale_runs(exe: &Path, plan: &Plan) -> Result<Vec<RunResult>, String> {
    let mut results = Vec::new();
    // The main runs' source count too, in the same rounds: the ratio to it is then not moved by
    // how the machine's speed drifted between the main runs and these.
    let scale_counts: Vec<usize> = if plan.scale.is_empty() {
        Vec::new()
    } else {
        std::iter::once(plan.connections)
            .chain(
                plan.scale
                    .iter()
                    .copied()
                    .filter(|&n| n != plan.connections),
            )
            .collect()
    };
    for run in 1..=plan.runs {
        for &variant in &plan.scale_variants {
            for &sources in &scale_counts {
                eprintln!(
                    "[bench] scale: {} 64 B, {sources} sources, run {run}/{}",
                    variant.name(),
                    plan.runs
                );
                let window = Window {
                    section: "scale",
                    variant,
                    payload: 64,
                    sources,
                    run,
                    shards: None,
                };
                results.push(measure(exe, plan, window)?);
            }
        }
    }
    Ok(results)
}

/// The churn run: the durable daemon, and a client whose `sources` sources each connect once, are
/// acknowledged in full and leave. The daemon's memory is read before the first source, and once
/// the last has gone and the daemon has had its stats interval.
fn churn(exe: &Path, plan: &Plan, sources: usize) -> Result<ChurnResult, String> {
    // A safety net: the sources' own pace decides the run's length.
    let limit = Duration::from_secs(120) + Duration::from_millis(10) * sources as u32;
    let (mut server, addr) = start_server(exe, plan, Variant::Daemon, churn::AT_ONCE, limit)?;
    let before = server.counts("COUNTS")?;
    let args = [
        "--role",
        "churn",
        "--addr",
        &addr.to_string(),
        "--churn",
        &sources.to_string(),
        "--limit-secs",
        &limit.as_secs().to_string(),
    ]
    .map(String::from);
    let mut client = ChildProc::spawn(exe, &args, "churn client".into())?;
    let seen = match client.recv(limit)? {
        ChildMsg::Churned(seen) => seen,
        other => return Err(format!("churn client: expected its report, got {other:?}")),
    };
    client.wait(Duration::from_secs(10))?;
    wait_until(&mut server, "every source to leave", |c| c.sources == 0)?;
    std::thread::sleep(plan.stats_interval.mul_f64(1.5));
    let after = server.counts("COUNTS")?;
    server.send("STOP")?;
    let last = server.final_report(Duration::from_secs(30))?;
    server.close_stdin();
    server.wait(Duration::from_secs(10))?;
    let grown = after.rss_kib as f64 - before.rss_kib as f64;
    Ok(ChurnResult {
        sources,
        frames_per_source: churn::FRAMES,
        emergency_every: churn::EMERGENCY_EVERY,
        payload: churn::PAYLOAD,
        at_once: churn::AT_ONCE,
        client: seen,
        rss_before_kib: before.rss_kib,
        rss_after_kib: after.rss_kib,
        peak_rss_kib: last.peak_rss_kib,
        resident_bytes_per_source: grown * 1024.0 / sources.max(1) as f64,
        processed_total: last.counts.processed,
        archived_total: last.counts.archived,
    })
}

/// Writes a full segment for `sources` sources into a fresh archive directory and has a child
/// recover it; the directory is removed afterwards.
fn restart(exe: &Path, plan: &Plan, sources: usize) -> Result<RestartResult, String> {
    let dir = std::env::temp_dir().join(format!("aggregator-bench-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let sources = u32::try_from(sources).map_err(|_| "too many sources".to_string())?;
    let written = std::fs::create_dir_all(&dir)
        .and_then(|()| restart::write_full_segment(&dir, plan.segment_bytes, sources));
    let recovered = written
        .map_err(|e| {
            format!(
                "cannot write the restart run's segment in {}: {e}",
                dir.display()
            )
        })
        .and_then(|frames| {
            let args = vec![
                "--role".to_string(),
                "recover".to_string(),
                "--archive-dir".to_string(),
                dir.display().to_string(),
            ];
            let mut child = ChildProc::spawn(exe, &args, "restart".into())?;
            let found = match child.recv(Duration::from_secs(120))? {
                ChildMsg::Recovered(recovered) => recovered,
                other => return Err(format!("restart: expected its recovery, got {other:?}")),
            };
            child.wait(Duration::from_secs(30))?;
            Ok((frames, found))
        });
    let _ = std::fs::remove_dir_all(&dir);
    let (frames, recovered) = recovered?;
    if recovered.sources != u64::from(sources) {
        return Err(format!(
            "restart: recovered {} sources of the {sources} in the segment",
            recovered.sources
        ));
    }
    Ok(RestartResult {
        sources,
        frames,
        recovered,
    })
}

fn drain(exe: &Path, plan: &Plan, payload: usize, sources: usize) -> Result<DrainResult, String> {
    let limit = child_limit(plan);
    let (mut server, addr) = start_server(exe, plan, Variant::Daemon, sources, limit)?;
    let client = start_client(exe, plan, addr, sources, payload, false, 0)?;
    wait_for_sources(&mut server, sources + 1)?;
    std::thread::sleep(plan.warmup);
    let start = server.counts("START")?;
    std::thread::sleep(plan.measure.min(Duration::from_secs(1)));
    let end = server.counts("END")?;
    terminate(server, client, sources, payload, &start, &end)
}

/// Where to write the JSON summary, checked before the long run starts.
pub fn check_writable(path: &PathBuf) -> Result<(), String> {
    std::fs::write(path, b"{}\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}
