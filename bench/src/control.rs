//! What the harness's processes tell each other, and the measurements every server variant shares.
//!
//! The parent starts each server variant and the load client as child processes of this binary, so
//! that the server's CPU time and peak RSS are its own. Children talk to the parent in lines on
//! stdout that start with [`LINE_PREFIX`] followed by one JSON [`ChildMsg`]; the parent talks to a
//! server child in plain words on its stdin (`START`, `END`, `STOP`), and to the load client
//! (`START`, `END`) when it counts acknowledgements.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedReceiver;

/// Every control line a child writes on stdout starts with this.
pub const LINE_PREFIX: &str = "BENCH ";
/// The source id of the probe connection; uplinks use 1..=N.
pub const PROBE_SOURCE_ID: u32 = 0xFFFF_0000;
/// The first source id of the throttle run's emergency-only sources (`emergency`): the ids after
/// the probe's, far above any uplink's.
pub const EMERGENCY_ONLY_SOURCE_ID: u32 = PROBE_SOURCE_ID + 1;
/// Payload bytes of a probe frame; the first 8 are its send time (Unix nanoseconds, big-endian).
pub const PROBE_PAYLOAD: usize = 64;
/// One frame in this many of the load streams is an emergency.
pub const EMERGENCY_EVERY: u64 = 100;
/// Bytes a floor connection reads at a time (the daemon's default too).
pub const READ_BUFFER: usize = 64 * 1024;
/// Largest body the floor server accept (the daemon's default too).
pub const MAX_FRAME_LENGTH: usize = 64 * 1024;
/// Latency samples kept per kind; beyond this, samples are dropped (and their frames counted).
const MAX_SAMPLES: usize = 4_000_000;

/// What the frames' payloads hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fill {
    /// Every byte 0xA5: what a server that compresses (a JetStream stream's leader compresses
    /// each large message it replicates) shrinks to almost nothing.
    #[default]
    Constant,
    /// Pseudo-random bytes, no two frames of the load client's template alike: what no
    /// compression of a message shrinks. Every uplink goes through the same template, so two
    /// sources send the same payloads, at different times. The probe and the emergency-only
    /// sources keep payloads of their own.
    Random,
    /// As `Random`, but the first 8 bytes of every 16 follow a pattern that repeats each 128
    /// bytes, as housekeeping telemetry's identifiers, spare fields and slowly moving values do:
    /// zstd's level 1 halves a message of them.
    Telemetry,
}

impl Fill {
    /// A payload of `len` bytes; [`Fill::Random`]'s and [`Fill::Telemetry`]'s differ for each
    /// `seed`.
    pub fn bytes(self, len: usize, seed: u64) -> Vec<u8> {
        match self {
            Fill::Constant => vec![0xA5; len],
            Fill::Random | Fill::Telemetry => {
                // xorshift64*, one stream for each seed.
                let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
                let mut next = move || {
                    state ^= state >> 12;
                    state ^= state << 25;
                    state ^= state >> 27;
                    (state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
                };
                let telemetry = self == Fill::Telemetry;
                (0..len)
                    .map(|i| match telemetry && i % 16 < 8 {
                        true => pattern(i),
                        false => next(),
                    })
                    .collect()
            }
        }
    }
}

/// The byte at `at` of [`Fill::Telemetry`]'s pattern (where `at % 16 < 8`).
pub fn pattern(at: usize) -> u8 {
    0x10 + ((at / 16 * 8 + at % 16) % 64) as u8
}

/// One message from a child to the parent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ChildMsg {
    /// A server child is accepting uplinks on `addr`; the durable daemons also serve followers of
    /// their archive on `follow`, and the `watched` variant its monitor on `monitor`. A daemon
    /// variant says the `runtime.shards` it was started with, so that the parent can check that
    /// the shard sweep's setting reached it.
    Listening {
        addr: SocketAddr,
        monitor: Option<SocketAddr>,
        follow: Option<SocketAddr>,
        #[serde(default)]
        shards: Option<usize>,
    },
    /// The load client finished connecting.
    Connected {
        sources: u64,
        failed: u64,
        first_error: Option<String>,
    },
    /// A server's counters, in answer to `START` and `END`.
    Counts(Box<Counts>),
    /// A server's last word, after `STOP`, SIGTERM or the end of its stdin.
    Final(Box<FinalReport>),
    /// The restart child opened its archive.
    Recovered(Recovered),
    /// The churn client's sources have all come and gone.
    Churned(Churned),
    /// The load client's acknowledgements, in answer to `START` and `END`.
    Acks(Box<ClientAcks>),
    /// The watcher's subscriptions are open.
    Watching,
    /// What the watcher's subscribers saw, in answer to `END`.
    Watched(Watched),
    /// The consumers run's followers reached the daemon's END (or failed).
    Followed(Followed),
    /// The catalog run's sources received the catalog (or failed).
    CatalogSpread(CatalogSpread),
}

/// How a catalog spread to the catalog run's sources.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CatalogSpread {
    /// Sources that received it whole.
    pub received: u64,
    /// From just before `PUT /catalog` to its answer (stored and announced).
    pub put_ms: f64,
    /// From just before the PUT to each source's last byte of it.
    pub latency: LatencySummary,
    pub first_error: Option<String>,
}

/// What the `watched` variant's `/feed` subscribers saw over a whole run.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Watched {
    /// Subscribers that took every frame.
    pub subscribers: u64,
    /// Frames they received, together.
    pub frames: u64,
    /// Frames the daemon told them (in gaps) that they missed, together.
    pub missed: u64,
    /// Frames the dashboard's emergency subscription received.
    pub emergencies: u64,
    /// `/stats` responses the dashboard read.
    pub stats_polls: u64,
}

/// What each follower of the consumers run received before the daemon's END.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Followed {
    /// Frames each follower received, in the order they subscribed.
    pub frames: Vec<u64>,
    /// The first follower that failed (refused, cut off, a connection lost), and why.
    pub first_error: Option<String>,
}

/// A server's cumulative counters at one instant.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct Counts {
    /// Nanoseconds since the server started (its own monotonic clock).
    pub at_ns: u64,
    /// Frames processed (decoded, for the floor).
    pub processed: u64,
    /// Payload bytes processed.
    pub bytes: u64,
    /// Frames the archive consumer received; `None` for the floor, which has none.
    pub archived: Option<u64>,
    /// Sources connected right now.
    pub sources: u64,
    /// User plus system CPU time of the whole server process.
    pub cpu_ns: u64,
    /// Resident memory of the server process (VmRSS), in KiB.
    pub rss_kib: u64,
    /// The daemon's `archive_unsynced_bytes` and frames accepted and not yet stored (`/stats`'s
    /// `frames_in_flight`); 0 for the floor.
    pub unsynced_bytes: u64,
    pub in_flight: u64,
    /// The durable daemon's archive as retention's last check found it (`/stats`' `archive`): its
    /// bytes on disk, and the segments and bytes retention has deleted; 0 for the others.
    pub archive_bytes: u64,
    pub deleted_segments: u64,
    pub deleted_bytes: u64,
    /// CPU time of the daemon's retention thread (`archive-retention`), in nanoseconds.
    pub retention_cpu_ns: u64,
    /// With `[sinks.nats]`: frames JetStream acknowledged to the sink as new (`nats_published`),
    /// frames whose ACK waits for JetStream's (`nats_unreplicated_frames`), the bytes its messages
    /// in flight may hold (`nats_room_bytes`), whether it publishes through the server that leads
    /// its stream (`nats_at_leader`, 1 or 0), and the sink's thread (`nats-sink`): its CPU time
    /// and its time waiting for a CPU, in nanoseconds; 0 without.
    pub nats_published: u64,
    pub nats_unreplicated: u64,
    pub nats_room_bytes: u64,
    pub nats_at_leader: u64,
    pub sink_cpu_ns: u64,
    pub sink_runqueue_ns: u64,
}

/// What the load client's sources had acknowledged at one instant: its uplinks, and apart from
/// them the emergency-only sources, where it runs any.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClientAcks {
    pub uplinks: AckCounts,
    pub emergency_only: Option<AckCounts>,
    /// At `END`: (source id, highest acknowledged sequence) of each live uplink an ACK came for,
    /// the emergency-only sources' too.
    #[serde(default)]
    pub through: Vec<(u32, u64)>,
}

/// Some of the load client's sources at one instant: what they wrote and what the daemon
/// acknowledged.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct AckCounts {
    /// Nanoseconds since the client started (its own monotonic clock).
    pub at_ns: u64,
    /// Frames the sources have written into their sockets.
    pub frames_sent: u64,
    /// Frames the daemon's ACKs cover, over every source.
    pub frames_acked: u64,
    /// At `END`: from each frame's send to the ACK that covered it, for the ACKs since `START`.
    pub latency: Option<LatencySummary>,
    pub samples_dropped: u64,
}

/// Percentiles of one kind of latency sample.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_ns: u64,
    pub p99_ns: u64,
    pub max_ns: u64,
}

impl LatencySummary {
    /// Percentiles over frames, from samples of (latency, frames that had it).
    pub fn of(mut samples: Vec<(u64, u64)>) -> LatencySummary {
        samples.retain(|&(_, frames)| frames > 0);
        let Some(&(max_ns, _)) = samples.iter().max() else {
            return LatencySummary::default();
        };
        samples.sort_unstable();
        let count: u64 = samples.iter().map(|&(_, frames)| frames).sum();
        let at = |q: f64| {
            let rank = ((count - 1) as f64 * q).round() as u64;
            let mut seen = 0;
            samples
                .iter()
                .find(|&&(_, frames)| {
                    seen += frames;
                    seen > rank
                })
                .map_or(max_ns, |&(latency, _)| latency)
        };
        LatencySummary {
            count,
            p50_ns: at(0.50),
            p99_ns: at(0.99),
            max_ns,
        }
    }
}

/// How the daemon's drain went, from its `DrainReport`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct DrainInfo {
    pub completed: bool,
    pub elapsed_ms: f64,
    pub accepted: u64,
    pub processed: u64,
    pub archived: u64,
    pub lost: u64,
    pub duplicates: u64,
}

/// What the restart child's recovery took, and what it found.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Recovered {
    /// `SegmentSink::open`, from the call to its return.
    pub open_ms: f64,
    /// VmHWM of the child once the archive is open.
    pub peak_rss_kib: u64,
    /// Sources with a resume point.
    pub sources: u64,
    /// Frames stored above the sources' watermarks.
    pub frames_above: u64,
}

/// What the churn client's sources saw: each connected once, sent its frames, half-closed and
/// waited for the daemon's CLOSE.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Churned {
    /// Sources whose CLOSE acknowledged every frame they sent.
    pub acknowledged: u64,
    /// Frames acknowledged, summed over the sources' CLOSEs.
    pub frames_acknowledged: u64,
    /// Sources that failed: connection refused or reset, a refusal, or a CLOSE other than
    /// `EndOfStream`.
    pub failed: u64,
    pub first_error: Option<String>,
    /// From the first connection to the last CLOSE.
    pub elapsed_s: f64,
}

/// Everything a server reports when it stops.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FinalReport {
    pub counts: Counts,
    /// Probe frames: client send to processed (the processor's fan-out, for the daemon).
    pub probe: LatencySummary,
    /// Emergency frames inside the load streams: decode to processed (the processor's fan-out, for
    /// the daemon).
    pub stream: LatencySummary,
    pub samples_dropped: u64,
    /// VmHWM of the server process.
    pub peak_rss_kib: u64,
    /// Connections that ended with an error other than the client going away.
    pub connection_errors: u64,
    pub first_error: Option<String>,
    /// The daemon variant only.
    pub drain: Option<DrainInfo>,
}

/// Prints one control line.
pub fn emit(msg: &ChildMsg) {
    match serde_json::to_string(msg) {
        Ok(json) => println!("{LINE_PREFIX}{json}"),
        Err(err) => eprintln!("aggregator-bench: cannot encode a control message: {err}"),
    }
}

/// Wall-clock nanoseconds since the Unix epoch: the clock the client and the server share.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// The durable daemon's archive directory in a server child of process id `pid`; the parent
/// removes it once the child has exited.
pub fn archive_dir(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("aggregator-bench-{pid}"))
}

/// The send time a probe payload carries, if it is long enough to carry one.
pub fn probe_sent_ns(payload: &[u8]) -> Option<u64> {
    let stamp: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(stamp))
}

/// Latency samples of one kind: (latency, frames that had it), [`MAX_SAMPLES`] at most.
#[derive(Debug, Default)]
pub struct Samples {
    kept: Mutex<Vec<(u64, u64)>>,
    /// Frames of the samples past the most.
    dropped: AtomicU64,
}

impl Samples {
    /// `frames` frames had a latency of `latency_ns`.
    pub fn push(&self, latency_ns: u64, frames: u64) {
        let Ok(mut kept) = self.kept.lock() else {
            return;
        };
        if kept.len() >= MAX_SAMPLES {
            self.dropped.fetch_add(frames, Relaxed);
        } else {
            kept.push((latency_ns, frames));
        }
    }

    /// Takes the samples and gives their percentiles.
    pub fn take(&self) -> LatencySummary {
        let kept = self
            .kept
            .lock()
            .map(|mut kept| std::mem::take(&mut *kept))
            .unwrap_or_default();
        LatencySummary::of(kept)
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Relaxed)
    }
}

/// Latency samples, taken only inside the measurement window (between `START` and `END`).
#[derive(Debug, Default)]
pub struct Recorder {
    on: AtomicBool,
    /// A daemon batch's emergency frames share one latency, so one sample stands for them all,
    /// and the samples' memory stays small next to the server's own.
    probe: Samples,
    stream: Samples,
}

impl Recorder {
    pub fn start(&self) {
        self.on.store(true, Relaxed);
    }

    pub fn stop(&self) {
        self.on.store(false, Relaxed);
    }

    pub fn recording(&self) -> bool {
        self.on.load(Relaxed)
    }

    /// A probe frame carrying `payload` was processed `ago` (zero: now).
    pub fn probe(&self, payload: &[u8], ago: Duration) {
        if !self.recording() {
            return;
        }
        if let Some(sent) = probe_sent_ns(payload) {
            let processed = unix_ns().saturating_sub(ago.as_nanos() as u64);
            self.probe.push(processed.saturating_sub(sent), 1);
        }
    }

    /// `frames` in-stream emergency frames were processed `latency_ns` after they were decoded.
    pub fn stream(&self, latency_ns: u64, frames: usize) {
        if self.recording() {
            self.stream.push(latency_ns, frames as u64);
        }
    }

    /// Takes the samples: (probe, stream, dropped).
    pub fn summaries(&self) -> (LatencySummary, LatencySummary, u64) {
        let dropped = self.probe.dropped() + self.stream.dropped();
        (self.probe.take(), self.stream.take(), dropped)
    }
}

/// The lines of this process's stdin, read by a plain thread (a blocking read no runtime waits
/// for), which calls `at_eof` once stdin ends.
pub fn stdin_lines(at_eof: impl FnOnce() + Send + 'static) -> UnboundedReceiver<String> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            // A reader that is gone wants no more lines, but the end of stdin still counts.
            let _ = tx.send(line);
        }
        at_eof();
    });
    rx
}

/// User plus system CPU time of this process, in nanoseconds.
pub fn process_cpu_ns() -> u64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0;
        }
        usage
    };
    let ns = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    ns(usage.ru_utime) + ns(usage.ru_stime)
}

/// Peak resident set size of this process (VmHWM), in KiB.
pub fn peak_rss_kib() -> u64 {
    memory_kib("VmHWM:")
}

/// Resident set size of this process now (VmRSS), in KiB.
pub fn rss_kib() -> u64 {
    memory_kib("VmRSS:")
}

/// One `kB` line of `/proc/self/status`, such as `VmHWM:`; 0 where it cannot be read.
fn memory_kib(field: &str) -> u64 {
    status_kib(std::path::Path::new("/proc/self/status"), field)
}

/// One `kB` line of a `/proc/PID/status` file; 0 where it cannot be read.
pub fn status_kib(path: &std::path::Path, field: &str) -> u64 {
    let status = std::fs::read_to_string(path).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Raises the soft open-file limit to the hard one (10,000 sources need 10,000 sockets); returns
/// the limit in force.
pub fn raise_nofile_limit() -> u64 {
    // SAFETY: getrlimit/setrlimit read and write the struct we pass.
    unsafe {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return raised.rlim_cur;
            }
        }
        limit.rlim_cur
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_count_every_frame_of_a_sample() {
        let plain = LatencySummary::of(vec![(5, 1), (1, 1), (3, 1)]);
        assert_eq!((plain.count, plain.p50_ns, plain.max_ns), (3, 3, 5));

        // 98 frames at 10 ns and 2 at 1000 ns: the 99th percentile is one of the slow two.
        let weighted = LatencySummary::of(vec![(1000, 2), (10, 98), (7, 0)]);
        assert_eq!(weighted.count, 100);
        assert_eq!(weighted.p50_ns, 10);
        assert_eq!(weighted.p99_ns, 1000);
        assert_eq!(weighted.max_ns, 1000);

        assert_eq!(LatencySummary::of(Vec::new()).count, 0);
    }
}
