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

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::blkio::WriteThrottle;
use crate::child::{self, ChildProc};
use crate::control::{self, Counts};
use crate::results::{Plan, ThrottleResult, Throttled};
use crate::Variant;

/// Payload bytes per frame, as in the issue.
pub const PAYLOAD: usize = 1024;
/// How often the parent reads the daemon's counters during the window.
const POLL: Duration = Duration::from_millis(100);
const MIB: f64 = 1024.0 * 1024.0;

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
            let measured = measure(exe, plan, (server, addr), &throttle, mib_per_s)?;
            result.measured = Some(measured);
        }
        Err(why) => {
            eprintln!("[bench] throttle: skipped: {why}");
            result.skipped = Some(why);
        }
    }
    Ok(result)
}

/// The window and the drain, with the daemon in `throttle`'s cgroup, limited to `mib_per_s`.
fn measure(
    exe: &Path,
    plan: &Plan,
    (mut server, addr): (ChildProc, SocketAddr),
    throttle: &WriteThrottle,
    mib_per_s: f64,
) -> Result<Throttled, String> {
    let sources = plan.connections;
    let mut client = child::start_client(exe, plan, addr, sources, PAYLOAD, true)?;
    child::wait_for_sources(&mut server, sources + 1)?;
    std::thread::sleep(plan.warmup);
    let written_before = throttle.written_bytes();
    let acks_start = client.acks("START")?;
    let start = server.counts("START")?;
    let (max_unsynced_bytes, max_in_flight) = watch(&mut server, plan.throttle_window, &start)?;
    let end = server.counts("END")?;
    let acks_end = client.acks("END")?;
    let written_after = throttle.written_bytes();
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
        max_unsynced_bytes,
        max_in_flight,
        drain,
    })
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
