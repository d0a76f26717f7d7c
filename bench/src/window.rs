//! One measured window of a server variant under the load client: the unit every run of the
//! main, scale and shard-sweep sections repeats.

use std::path::Path;
use std::time::Duration;

use crate::child::{
    child_limit, start_client, start_server_sharded, start_watcher, wait_for_sources,
};
use crate::control::Counts;
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
        section,
        variant,
        payload,
        sources,
        run,
        shards,
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
    let machine_before = CpuTimes::read();
    let (client_before, retransmits_before) = (process_cpu_ns(client.pid()), tcp_retransmits());
    let tcp_memory_before = tcp_memory_bytes();
    let disk_before = disk.and_then(DiskCounters::read);
    let start = server.counts("START")?;
    std::thread::sleep(plan.measure);
    let end = server.counts("END")?;
    let disk_after = disk.and_then(DiskCounters::read);
    let (client_after, retransmits_after) = (process_cpu_ns(client.pid()), tcp_retransmits());
    let tcp_memory_after = tcp_memory_bytes();
    let machine_after = CpuTimes::read();
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

    let window_s = (end.at_ns.saturating_sub(start.at_ns)) as f64 / 1e9;
    let frames = end.processed.saturating_sub(start.processed);
    let bytes = end.bytes.saturating_sub(start.bytes);
    let cpu = end.cpu_ns.saturating_sub(start.cpu_ns) as f64;
    let shares = machine_before
        .zip(machine_after)
        .and_then(|(before, after)| before.shares_until(&after));
    let result = RunResult {
        section,
        variant,
        shards: listening.shards,
        payload,
        sources,
        connected: start.sources,
        run,
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
        client_cpu_ns_per_frame: client_before
            .zip(client_after)
            .filter(|_| frames > 0)
            .map(|(before, after)| after.saturating_sub(before) as f64 / frames as f64),
        tcp_retransmits_per_s: retransmits_before
            .zip(retransmits_after)
            .map(|(before, after)| after.saturating_sub(before) as f64 / window_s),
        tcp_memory_start_mib: tcp_memory_before.map(|bytes| bytes as f64 / throttle::MIB),
        tcp_memory_end_mib: tcp_memory_after.map(|bytes| bytes as f64 / throttle::MIB),
        probe: last.probe,
        stream: last.stream,
        processed_total: last.counts.processed,
        archived_total: last.counts.archived,
        connection_errors: last.connection_errors,
        first_error: last.first_error,
        watched,
    };
    let disk = match (disk, disk_before, disk_after) {
        (Some(device), Some(before), Some(after)) => {
            Some(DiskWindow::between(device, &before, &after, window_s))
        }
        _ => None,
    };
    Ok(Measurement {
        result,
        start,
        end,
        disk,
    })
}
