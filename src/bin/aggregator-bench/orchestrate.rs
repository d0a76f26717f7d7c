//! The parent process: starts each server variant and the load client as children of this binary,
//! drives the measurement window, and collects one [`RunResult`] per run; and the drain, restart
//! and churn runs, and the throttle run's children (`throttle`).

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::control::{
    self, AckCounts, ChildMsg, Churned, Counts, DrainInfo, FinalReport, LatencySummary, Recovered,
    LINE_PREFIX,
};
use crate::report::CpuTimes;
use crate::throttle::{self, ThrottleResult};
use crate::{churn, restart, Variant};

/// What to measure and for how long.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub runs: usize,
    pub warmup: Duration,
    pub measure: Duration,
    /// Saturating uplinks of the main runs (the probe connection comes on top).
    pub connections: usize,
    pub payloads: Vec<usize>,
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
}

/// One measured window of one variant.
#[derive(Debug, Clone, Serialize)]
pub struct RunResult {
    /// `main` or `scale`.
    pub section: &'static str,
    pub variant: Variant,
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
    pub probe: LatencySummary,
    pub stream: LatencySummary,
    /// After the server stopped: everything it processed, and what its archive received.
    pub processed_total: u64,
    pub archived_total: Option<u64>,
    pub connection_errors: u64,
    pub first_error: Option<String>,
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

/// A child process of this binary, with its control lines parsed by a reader thread.
pub struct ChildProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    msgs: mpsc::Receiver<ChildMsg>,
}

impl ChildProc {
    fn spawn(exe: &Path, args: &[String], name: String) -> Result<ChildProc, String> {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, msgs) = mpsc::channel();
        let reader_name = name.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix(LINE_PREFIX) {
                    Some(json) => match serde_json::from_str::<ChildMsg>(json) {
                        Ok(msg) => {
                            if tx.send(msg).is_err() {
                                break;
                            }
                        }
                        Err(err) => eprintln!("[{reader_name}] bad control line ({err}): {json}"),
                    },
                    None => eprintln!("[{reader_name}] {line}"),
                }
            }
        });
        let stdin = child.stdin.take();
        Ok(ChildProc {
            name,
            child,
            stdin,
            msgs,
        })
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: cannot send {command}: {e}", self.name))
    }

    fn recv(&self, timeout: Duration) -> Result<ChildMsg, String> {
        self.msgs.recv_timeout(timeout).map_err(|e| match e {
            mpsc::RecvTimeoutError::Timeout => {
                format!("{}: no answer within {timeout:?}", self.name)
            }
            mpsc::RecvTimeoutError::Disconnected => {
                format!("{}: exited without answering", self.name)
            }
        })
    }

    /// Sends `command` and takes the answer `pick` finds in the next message.
    fn ask<T>(
        &mut self,
        command: &str,
        what: &str,
        pick: impl FnOnce(ChildMsg) -> Result<T, ChildMsg>,
    ) -> Result<T, String> {
        self.send(command)?;
        pick(self.recv(Duration::from_secs(10))?)
            .map_err(|other| format!("{}: expected {what}, got {other:?}", self.name))
    }

    /// A server's counters, in answer to `command`.
    pub fn counts(&mut self, command: &str) -> Result<Counts, String> {
        self.ask(command, "counts", |msg| match msg {
            ChildMsg::Counts(counts) => Ok(counts),
            other => Err(other),
        })
    }

    /// The load client's acknowledgements, in answer to `command` (`START` or `END`).
    pub fn acks(&mut self, command: &str) -> Result<AckCounts, String> {
        self.ask(command, "acknowledgements", |msg| match msg {
            ChildMsg::Acks(acks) => Ok(acks),
            other => Err(other),
        })
    }

    fn final_report(&self, timeout: Duration) -> Result<FinalReport, String> {
        match self.recv(timeout)? {
            ChildMsg::Final(report) => Ok(*report),
            other => Err(format!(
                "{}: expected its final report, got {other:?}",
                self.name
            )),
        }
    }

    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the exit, polling every millisecond; kills the child after `timeout`.
    fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(1))
                }
                Ok(None) => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return Err(format!(
                        "{}: still running after {timeout:?}; killed",
                        self.name
                    ));
                }
                Err(err) => return Err(format!("{}: wait failed: {err}", self.name)),
            }
        }
    }
}

impl Drop for ChildProc {
    /// Stops the child if it still runs, and removes the archive a daemon server child kept.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(control::archive_dir(self.child.id()));
    }
}

/// Everything [`run_plan`] measured.
pub struct Measured {
    pub runs: Vec<RunResult>,
    pub drain: Option<DrainResult>,
    pub restart: Vec<RestartResult>,
    pub churn: Option<ChurnResult>,
    pub throttle: Option<ThrottleResult>,
}

/// Runs the whole plan: main runs, scale runs, the drain run, the restart run, the churn run, then
/// the throttle run.
pub fn run_plan(plan: &Plan) -> Result<Measured, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
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
                    &exe,
                    plan,
                    "main",
                    variant,
                    payload,
                    plan.connections,
                    run,
                )?);
            }
        }
    }
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
                results.push(measure(&exe, plan, "scale", variant, 64, sources, run)?);
            }
        }
    }
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
    Ok(Measured {
        runs: results,
        drain,
        restart: restarts,
        churn,
        throttle,
    })
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

/// How long a child of a measured run may live: a safety net, well past its window.
pub fn child_limit(plan: &Plan) -> Duration {
    plan.warmup + plan.measure.max(plan.throttle_window) + Duration::from_secs(180)
}

/// Starts a server child for `sources` sources at once, which exits by itself after `limit`.
pub fn start_server(
    exe: &Path,
    plan: &Plan,
    variant: Variant,
    sources: usize,
    limit: Duration,
) -> Result<(ChildProc, SocketAddr), String> {
    let mut args = vec![
        "--role".to_string(),
        "server".into(),
        "--variant".into(),
        variant.name().into(),
        "--limit-secs".into(),
        limit.as_secs().to_string(),
    ];
    // The uplink limit (1024 connections by default) is raised only for the larger scale runs.
    if sources + 1 > plan.uplink_limit {
        args.extend(["--max-connections".into(), (sources + 64).to_string()]);
    }
    if let Some(path) = plan.daemon_config.as_ref().filter(|_| variant.is_daemon()) {
        args.extend(["--daemon-config".into(), path.display().to_string()]);
    }
    let server = ChildProc::spawn(exe, &args, format!("{} server", variant.name()))?;
    match server.recv(Duration::from_secs(20))? {
        ChildMsg::Listening { addr } => Ok((server, addr)),
        other => Err(format!("server: expected its address, got {other:?}")),
    }
}

/// Starts the load client; with `acks`, it reads the daemon's ACKs and answers `START` and `END`.
pub fn start_client(
    exe: &Path,
    plan: &Plan,
    addr: SocketAddr,
    sources: usize,
    payload: usize,
    acks: bool,
) -> Result<ChildProc, String> {
    let mut args = [
        "--role",
        "client",
        "--addr",
        &addr.to_string(),
        "--connections",
        &sources.to_string(),
        "--payload",
        &payload.to_string(),
        "--limit-secs",
        &child_limit(plan).as_secs().to_string(),
    ]
    .map(String::from)
    .to_vec();
    if acks {
        args.push("--acks".into());
    }
    let client = ChildProc::spawn(exe, &args, "load client".into())?;
    match client.recv(Duration::from_secs(120))? {
        ChildMsg::Connected {
            failed,
            first_error,
            ..
        } if failed > 0 => Err(format!(
            "load client: {failed} connections failed; first: {}",
            first_error.unwrap_or_default()
        )),
        ChildMsg::Connected { .. } => Ok(client),
        other => Err(format!("load client: expected Connected, got {other:?}")),
    }
}

/// Waits until the server has every source connected (the client only knows it has written its
/// HELLOs), so that a scale run measures with all of them in.
pub fn wait_for_sources(server: &mut ChildProc, expected: usize) -> Result<(), String> {
    let what = format!("{expected} sources to connect");
    wait_until(server, &what, |c| c.sources >= expected as u64)
}

/// Polls the server's counters until `done` holds of them; after 30 s, warns and goes on.
fn wait_until(
    server: &mut ChildProc,
    what: &str,
    done: impl Fn(&Counts) -> bool,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let counts = server.counts("COUNTS")?;
        if done(&counts) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            eprintln!(
                "[bench] warning: waited 30 s for {what}, and the server has {} sources connected; measuring anyway",
                counts.sources
            );
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn measure(
    exe: &Path,
    plan: &Plan,
    section: &'static str,
    variant: Variant,
    payload: usize,
    sources: usize,
    run: usize,
) -> Result<RunResult, String> {
    let (mut server, addr) = start_server(exe, plan, variant, sources, child_limit(plan))?;
    let mut client = start_client(exe, plan, addr, sources, payload, false)?;
    wait_for_sources(&mut server, sources + 1)?;
    std::thread::sleep(plan.warmup);
    let machine_before = CpuTimes::read();
    let start = server.counts("START")?;
    std::thread::sleep(plan.measure);
    let end = server.counts("END")?;
    let machine_after = CpuTimes::read();
    client.close_stdin();
    client.wait(Duration::from_secs(10))?;
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
    Ok(RunResult {
        section,
        variant,
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
        probe: last.probe,
        stream: last.stream,
        processed_total: last.counts.processed,
        archived_total: last.counts.archived,
        connection_errors: last.connection_errors,
        first_error: last.first_error,
    })
}

fn drain(exe: &Path, plan: &Plan, payload: usize, sources: usize) -> Result<DrainResult, String> {
    let limit = child_limit(plan);
    let (mut server, addr) = start_server(exe, plan, Variant::Daemon, sources, limit)?;
    let client = start_client(exe, plan, addr, sources, payload, false)?;
    wait_for_sources(&mut server, sources + 1)?;
    std::thread::sleep(plan.warmup);
    let start = server.counts("START")?;
    std::thread::sleep(plan.measure.min(Duration::from_secs(1)));
    let end = server.counts("END")?;
    terminate(server, client, sources, payload, &start, &end)
}

/// SIGTERM to a daemon under load, and its drain, while the client goes on sending until the
/// daemon has exited. The window (`start`, `end`) gives the throughput before the signal.
pub fn terminate(
    mut server: ChildProc,
    mut client: ChildProc,
    sources: usize,
    payload: usize,
    start: &Counts,
    end: &Counts,
) -> Result<DrainResult, String> {
    // SAFETY: kill(2) on the pid of our own, still running, child process.
    if unsafe { libc::kill(server.pid(), libc::SIGTERM) } != 0 {
        return Err(format!(
            "cannot signal the daemon: {}",
            std::io::Error::last_os_error()
        ));
    }
    let signalled = Instant::now();
    let status = server.wait(Duration::from_secs(30))?;
    let sigterm_to_exit_ms = signalled.elapsed().as_secs_f64() * 1e3;
    let last = server.final_report(Duration::from_secs(5))?;
    client.close_stdin();
    client.wait(Duration::from_secs(10))?;
    let window_s = (end.at_ns.saturating_sub(start.at_ns)) as f64 / 1e9;
    Ok(DrainResult {
        sources,
        payload,
        frames_per_s_before: end.processed.saturating_sub(start.processed) as f64 / window_s,
        sigterm_to_exit_ms,
        exit_code: status.code(),
        report: last.drain,
        archived_total: last.counts.archived,
        processed_total: last.counts.processed,
        peak_rss_kib: last.peak_rss_kib,
    })
}

/// Where to write the JSON summary, checked before the long run starts.
pub fn check_writable(path: &PathBuf) -> Result<(), String> {
    std::fs::write(path, b"{}\n").map_err(|e| format!("cannot write {}: {e}", path.display()))
}
