//! One measured window of a server variant under the load client: the unit every run of the
//! main, scale and shard-sweep sections repeats.

use std::path::Path;
use std::time::Duration;

use crate::child::{
    child_limit, start_client, start_server_sharded, start_watcher, wait_for_sources,
};
use crate::control::{Counts, FinalReport, Watched};
use crate::diskstat::{DiskCounters, DiskWindow};
use crate::results::{
    process_cpu_ns, tcp_memory_bytes, tcp_retransmits, CpuTimes, Plan, RunResult,
};
use crate::{throttle, Variant};

/// One measured window: which server, at which payload and source count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub section: &'static str,
    pub variant: Variant,
    pub payload: usize,
    pub sources: usize,
    pub run: usize,
    /// `runtime.shards` for a daemon variant, instead of its config's (the shard sweep).
    pub shards: Option<usize>,
}

/// A measured window, the server's counters when it opened and when it closed, and what the disk
/// asked for did meanwhile.
pub struct Measurement {
    pub result: RunResult,
    pub start: Counts,
    pub end: Counts,
    pub disk: Option<DiskWindow>,
}

/// Starts the server and the load client of `window`, measures it, and stops them.
pub fn measure(exe: &Path, plan: &Plan, window: Window) -> Result<RunResult, String> {
    measure_counted(exe, plan, window, None).map(|m| m.result)
}

/// [`measure`], with the server's counters at the window's ends, and the I/O of `disk` (`MAJ:MIN`)
/// over the window.
pub fn measure_counted(
    exe: &Path,
    plan: &Plan,
    window: Window,
    disk: Option<&str>,
) -> Result<Measurement, String> {
    let Window {
        variant,
        payload,
        sources,
        shards,
        ..
    } = window;
    let (mut server, listening) =
        start_server_sharded(exe, plan, variant, sources, child_limit(plan), shards)?;
    let addr = listening.addr;
    let mut watcher = match listening.monitor {
        Some(monitor) => Some(start_watcher(exe, plan, monitor)?),
        None => None,
    };
    let mut client = start_client(exe, plan, addr, sources, payload, false, 0)?;
    wait_for_sources(&mut server, sources + 1)?;
    std::thread::sleep(plan.warmup);
    let before = Sample::read(client.pid(), disk);
    let start = server.counts("START")?;
    std::thread::sleep(plan.measure);
    let end = server.counts("END")?;
    let after = Sample::read(client.pid(), disk);
    client.close_stdin();
    client.wait(Duration::from_secs(10))?;
    let watched = match watcher.as_mut() {
        Some(watcher) => Some(watcher.watched()?),
        None => None,
    };
    server.send("STOP")?;
    let last = server.final_report(Duration::from_secs(30))?;
    server.close_stdin();
    server.wait(Duration::from_secs(10))?;

    // The shards the server runs, as it said.
    let window = Window {
        shards: listening.shards,
        ..window
    };
    let result = run_result(window, [&start, &end], [&before, &after], last, watched);
    let disk = match (disk, before.disk, after.disk) {
        (Some(device), Some(before), Some(after)) => Some(DiskWindow::between(
            device,
            &before,
            &after,
            result.window_s,
        )),
        _ => None,
    };
    Ok(Measurement {
        result,
        start,
        end,
        disk,
    })
}

/// What the machine, the load client and the disk asked for had counted at one end of a window.
struct Sample {
    machine: Option<CpuTimes>,
    client_cpu_ns: Option<u64>,
    retransmits: Option<u64>,
    tcp_memory: Option<u64>,
    disk: Option<DiskCounters>,
}

impl Sample {
    fn read(client: i32, disk: Option<&str>) -> Sample {
        Sample {
            machine: CpuTimes::read(),
            client_cpu_ns: process_cpu_ns(client),
            retransmits: tcp_retransmits(),
            tcp_memory: tcp_memory_bytes(),
            disk: disk.and_then(DiskCounters::read),
        }
    }
}

/// The run of `window` (with the shards the server ran), from the server's counts and the samples at its two ends, and the
/// server's final report.
fn run_result(
    window: Window,
    [start, end]: [&Counts; 2],
    [before, after]: [&Sample; 2],
    last: FinalReport,
    watched: Option<Watched>,
) -> RunResult {
    let window_s = (end.at_ns.saturating_sub(start.at_ns)) as f64 / 1e9;
    let frames = end.processed.saturating_sub(start.processed);
    let bytes = end.bytes.saturating_sub(start.bytes);
    let cpu = end.cpu_ns.saturating_sub(start.cpu_ns) as f64;
    let shares = (before.machine.as_ref())
        .zip(after.machine.as_ref())
        .and_then(|(before, after)| before.shares_until(after));
    let change = |before: Option<u64>, after: Option<u64>| {
        before.zip(after).map(|(b, a)| a.saturating_sub(b) as f64)
    };
    RunResult {
        section: window.section,
        variant: window.variant,
        shards: window.shards,
        payload: window.payload,
        sources: window.sources,
        connected: start.sources,
        run: window.run,
        window_s,
        frames,
        frames_per_s: frames as f64 / window_s,
        mb_per_s: bytes as f64 / window_s / 1e6,
        cpu_ns_per_frame: if frames > 0 {
            cpu / frames as f64
        } else {
            f64::NAN
        },
        cpu_cores: cpu / 1e9 / window_s,
        peak_rss_mib: last.peak_rss_kib as f64 / 1024.0,
        machine_idle_pct: shares.map(|(idle, _)| idle),
        host_steal_pct: shares.map(|(_, steal)| steal),
        client_cpu_ns_per_frame: change(before.client_cpu_ns, after.client_cpu_ns)
            .filter(|_| frames > 0)
            .map(|ns| ns / frames as f64),
        tcp_retransmits_per_s: change(before.retransmits, after.retransmits).map(|n| n / window_s),
        tcp_memory_start_mib: before.tcp_memory.map(|bytes| bytes as f64 / throttle::MIB),
        tcp_memory_end_mib: after.tcp_memory.map(|bytes| bytes as f64 / throttle::MIB),
        probe: last.probe,
        stream: last.stream,
        processed_total: last.counts.processed,
        archived_total: last.counts.archived,
        connection_errors: last.connection_errors,
        first_error: last.first_error,
        watched,
    }
}
