//! The throttle run: the durable daemon on a disk slower than its senders (issue 23).
//!
//! A source may forget a frame only once it is acknowledged, and the daemon acknowledges a frame
//! only once its archive has synced it. With a disk slower than the sockets, a daemon that takes
//! frames in at socket speed only fills the page cache: no ACK for seconds, and a SIGTERM with more
//! to sync than its deadline allows. `archive.max_unsynced_bytes` should instead slow the senders
//! to the disk, and keep the ACKs flowing at its pace.
//!
//! So the daemon's writes to its archive's disk are limited with a blkio write throttle
//! ([`WriteThrottle`]), [`PAYLOAD`]-byte frames come from the main runs' saturating uplinks, and
//! the load client counts what the ACKs cover and how long after its send each frame was covered
//! (`acks`): the acknowledged payload should come near the throttle. The parent reads the daemon's
//! unsynced bytes and frames in flight as it goes, and ends with a SIGTERM, whose drain should be
//! clean within `shutdown.drain_deadline_ms`. Without root or a cgroup v1 blkio hierarchy the run
//! is skipped, and says why.
//!
//! Beside the uplinks, a few sources send only emergency frames (`emergency`, issue 26): processed
//! at once, such a frame is still acknowledged only once the archive has synced everything written
//! before it, so on the throttled disk their ACK latency is what priority is worth to durability.
//! Their ACKs are counted apart: the acknowledged payload and the ACK latency above stay the
//! uplinks' alone.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::blkio::WriteThrottle;
use crate::child::{self, ChildProc};
use crate::control::{self, AckCounts, Counts};
use crate::emergency;
use crate::results::{EmergencyOnly, Plan, ThrottleResult, Throttled};
use crate::witness::Witness;
use crate::Variant;

/// Payload bytes per frame, as in the issue.
pub const PAYLOAD: usize = 1024;
/// How often the parent reads the daemon's counters during the window.
const POLL: Duration = Duration::from_millis(100);
/// Bytes in a MiB.
pub const MIB: f64 = 1024.0 * 1024.0;

/// Runs the durable daemon with its writes to the archive's disk limited to `mib_per_s`.
pub fn run(exe: &Path, plan: &Plan, mib_per_s: f64) -> Result<ThrottleResult, String> {
    let sources = plan.connections;
    let limit = child::child_limit(plan);
    let (server, addr) = child::start_server(exe, plan, Variant::Daemon, sources, limit)?;
    let archive = control::archive_dir(server.pid() as u32);
    let mut result = ThrottleResult {
        mib_per_s,
        sources,
        payload: PAYLOAD,
        skipped: None,
        measured: None,
    };
    match WriteThrottle::apply(server.pid(), &archive, (mib_per_s * MIB) as u64) {
        Ok(throttle) => {
            // The archive's directory is the daemon's; its parent is on the same disk.
            let disk_dir = archive.parent().unwrap_or(&archive);
            let measured = measure(exe, plan, (server, addr), (&throttle, disk_dir), mib_per_s)?;
            result.measured = Some(measured);
        }
        Err(why) => {
            eprintln!("[bench] throttle: skipped: {why}");
            result.skipped = Some(why);
        }
    }
    Ok(result)
}

/// The window and the drain, with the daemon in `throttle`'s cgroup, limited to `mib_per_s`, and
/// a [`Witness`] writing to `archive_disk_dir` meanwhile.
fn measure(
    exe: &Path,
    plan: &Plan,
    (mut server, addr): (ChildProc, SocketAddr),
    (throttle, archive_disk_dir): (&WriteThrottle, &Path),
    mib_per_s: f64,
) -> Result<Throttled, String> {
    let sources = plan.connections;
    let emergency_sources = emergency::SOURCES;
    let mut client =
        child::start_client(exe, plan, addr, sources, PAYLOAD, true, emergency_sources)?;
    child::wait_for_sources(&mut server, sources + 1 + emergency_sources)?;
    std::thread::sleep(plan.warmup);
    let witness = Witness::start(archive_disk_dir)?;
    let written_before = throttle.written_bytes();
    let client_start = client.acks("START")?;
    let start = server.counts("START")?;
    let (max_unsynced_bytes, max_in_flight) = watch(&mut server, plan.throttle_window, &start)?;
    let end = server.counts("END")?;
    let client_end = client.acks("END")?;
    let written_after = throttle.written_bytes();
    let disk_sync_latency = witness.stop();
    let (acks_start, acks_end) = (client_start.uplinks, client_end.uplinks);
    let emergency_only = client_start
        .emergency_only
        .zip(client_end.emergency_only)
        .map(|(start, end)| emergency_only(emergency_sources, &start, &end))
        .ok_or("load client: no count of the emergency-only sources' acknowledgements")?;
    let drain = child::terminate(server, client, sources, PAYLOAD, &start, &end)?;

    let window_s = acks_end.at_ns.saturating_sub(acks_start.at_ns) as f64 / 1e9;
    let frames_acked = acks_end
        .frames_acked
        .saturating_sub(acks_start.frames_acked);
    let acked_mib_per_s = (frames_acked * PAYLOAD as u64) as f64 / MIB / window_s;
    let unacked = acks_end.frames_sent.saturating_sub(acks_end.frames_acked);
    Ok(Throttled {
        device: throttle.device().to_string(),
        cgroup: throttle.cgroup().display().to_string(),
        window_s,
        frames_acked,
        acked_frames_per_s: frames_acked as f64 / window_s,
        acked_mib_per_s,
        acked_over_throttle: acked_mib_per_s / mib_per_s,
        throttled_write_mib_per_s: written_before
            .zip(written_after)
            .map(|(before, after)| after.saturating_sub(before) as f64 / MIB / window_s),
        unacked_mib_at_end: (unacked * PAYLOAD as u64) as f64 / MIB,
        ack_latency: acks_end.latency.unwrap_or_default(),
        emergency_only,
        disk_sync_latency,
        max_unsynced_bytes,
        max_in_flight,
        drain,
    })
}

/// What `sources` emergency-only sources wrote and had acknowledged between the client's counts
/// at `start` and at `end`.
pub fn emergency_only(sources: usize, start: &AckCounts, end: &AckCounts) -> EmergencyOnly {
    EmergencyOnly {
        sources,
        frames_per_s_each: emergency::FRAMES_PER_S,
        payload: emergency::PAYLOAD,
        source_ids: (
            emergency::source_id(0),
            emergency::source_id(sources.saturating_sub(1)),
        ),
        frames_sent: end.frames_sent.saturating_sub(start.frames_sent),
        frames_acked: end.frames_acked.saturating_sub(start.frames_acked),
        unacked_at_end: end.frames_sent.saturating_sub(end.frames_acked),
        ack_latency: end.latency.unwrap_or_default(),
    }
}

/// Reads the daemon's counters every [`POLL`] for `window`: the most unsynced bytes and frames in
/// flight seen, `start`'s included.
fn watch(server: &mut ChildProc, window: Duration, start: &Counts) -> Result<(u64, u64), String> {
    let end = Instant::now() + window;
    let mut most = (start.unsynced_bytes, start.in_flight);
    loop {
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(most);
        }
        std::thread::sleep(POLL.min(left));
        let counts = server.counts("COUNTS")?;
        most = (
            most.0.max(counts.unsynced_bytes),
            most.1.max(counts.in_flight),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::emergency_only;
    use crate::control::{AckCounts, LatencySummary};

    #[test]
    fn the_emergency_only_figures_are_the_window_s_and_the_backlog_at_its_end() {
        let start = AckCounts {
            at_ns: 1_000,
            frames_sent: 100,
            frames_acked: 40,
            latency: None,
            samples_dropped: 0,
        };
        let latency = LatencySummary {
            count: 3_900,
            p50_ns: 2_400_000_000,
            p99_ns: 4_600_000_000,
            max_ns: 5_000_000_000,
        };
        let end = AckCounts {
            at_ns: 10_000_001_000,
            frames_sent: 4_100,
            frames_acked: 3_940,
            latency: Some(latency),
            samples_dropped: 0,
        };
        let e = emergency_only(4, &start, &end);
        assert_eq!(
            (e.frames_sent, e.frames_acked, e.unacked_at_end),
            (4_000, 3_900, 160)
        );
        assert_eq!(e.ack_latency.p99_ns, 4_600_000_000);
        assert_eq!(e.source_ids, (0xFFFF_0001, 0xFFFF_0004));
    }
}
