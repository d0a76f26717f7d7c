//! The children of a measured run: this same binary as a server variant or as the load client,
//! each driven over its stdin and reporting on its stdout, and how the parent starts, waits for and
//! stops them.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::control::{self, ChildMsg, ClientAcks, Counts, Fill, FinalReport, Watched, LINE_PREFIX};
use crate::results::{DrainResult, Plan};
use crate::Variant;

/// A child process of this binary, with its control lines parsed by a reader thread.
pub struct ChildProc {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    msgs: mpsc::Receiver<ChildMsg>,
}

impl ChildProc {
    pub fn spawn(exe: &Path, args: &[String], name: String) -> Result<ChildProc, String> {
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

    pub fn send(&mut self, command: &str) -> Result<(), String> {
        let stdin = self.stdin.as_mut().ok_or("stdin already closed")?;
        writeln!(stdin, "{command}")
            .and_then(|()| stdin.flush())
            .map_err(|e| format!("{}: cannot send {command}: {e}", self.name))
    }

    pub fn recv(&self, timeout: Duration) -> Result<ChildMsg, String> {
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
    pub fn ask<T>(
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
            ChildMsg::Counts(counts) => Ok(*counts),
            other => Err(other),
        })
    }

    /// The load client's acknowledgements, in answer to `command` (`START` or `END`).
    pub fn acks(&mut self, command: &str) -> Result<ClientAcks, String> {
        self.ask(command, "acknowledgements", |msg| match msg {
            ChildMsg::Acks(acks) => Ok(*acks),
            other => Err(other),
        })
    }

    /// The watcher's tally, in answer to `END`; the watcher then exits.
    pub fn watched(&mut self) -> Result<Watched, String> {
        self.send("END")?;
        let watched = match self.recv(Duration::from_secs(20))? {
            ChildMsg::Watched(watched) => watched,
            other => return Err(format!("watcher: expected its tally, got {other:?}")),
        };
        self.close_stdin();
        self.wait(Duration::from_secs(10))?;
        Ok(watched)
    }

    pub fn final_report(&self, timeout: Duration) -> Result<FinalReport, String> {
        match self.recv(timeout)? {
            ChildMsg::Final(report) => Ok(*report),
            other => Err(format!(
                "{}: expected its final report, got {other:?}",
                self.name
            )),
        }
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Waits for the exit, polling every millisecond; kills the child after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
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
    start_server_listening(exe, plan, variant, sources, limit)
        .map(|(server, listening)| (server, listening.addr))
}

/// Where a started server listens.
pub struct Listening {
    /// Its uplinks.
    pub addr: SocketAddr,
    /// Its monitor (`watched` only).
    pub monitor: Option<SocketAddr>,
    /// Where followers of its archive subscribe (the durable daemons).
    pub follow: Option<SocketAddr>,
    /// The `runtime.shards` a daemon variant was started with; `None` for the floor.
    pub shards: Option<usize>,
}

/// [`start_server`], with every address the server listens on.
pub fn start_server_listening(
    exe: &Path,
    plan: &Plan,
    variant: Variant,
    sources: usize,
    limit: Duration,
) -> Result<(ChildProc, Listening), String> {
    start_server_sharded(exe, plan, variant, sources, limit, None)
}

/// [`start_server_listening`], a daemon variant with `runtime.shards` set to `shards` when given
/// (the shard sweep) instead of its config's; the server must say it runs that many.
pub fn start_server_sharded(
    exe: &Path,
    plan: &Plan,
    variant: Variant,
    sources: usize,
    limit: Duration,
    shards: Option<usize>,
) -> Result<(ChildProc, Listening), String> {
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
    if let Some(path) = plan.daemon.as_ref().filter(|_| variant.is_daemon()) {
        args.extend(["--daemon".into(), path.display().to_string()]);
    }
    let shards = shards.filter(|_| variant.is_daemon());
    if let Some(shards) = shards {
        args.extend(["--runtime-shards".into(), shards.to_string()]);
    }
    let name = match shards {
        Some(n) => format!("{} server, {n} shards", variant.name()),
        None => format!("{} server", variant.name()),
    };
    let server = ChildProc::spawn(exe, &args, name)?;
    let listening = match server.recv(Duration::from_secs(20))? {
        ChildMsg::Listening {
            addr,
            monitor,
            follow,
            shards,
        } => Listening {
            addr,
            monitor,
            follow,
            shards,
        },
        other => return Err(format!("server: expected its address, got {other:?}")),
    };
    if shards.is_some() && listening.shards != shards {
        return Err(format!(
            "{} server: started with runtime.shards = {}, it says it runs {:?}",
            variant.name(),
            shards.unwrap_or_default(),
            listening.shards
        ));
    }
    Ok((server, listening))
}

/// Starts the `watched` variant's watcher on the daemon's `monitor`, once its subscriptions are open.
pub fn start_watcher(exe: &Path, plan: &Plan, monitor: SocketAddr) -> Result<ChildProc, String> {
    let args = [
        "--role",
        "watch",
        "--addr",
        &monitor.to_string(),
        "--limit-secs",
        &child_limit(plan).as_secs().to_string(),
    ]
    .map(String::from);
    let watcher = ChildProc::spawn(exe, &args, "watcher".into())?;
    match watcher.recv(Duration::from_secs(20))? {
        ChildMsg::Watching => Ok(watcher),
        other => Err(format!("watcher: expected Watching, got {other:?}")),
    }
}

/// Starts the load client; with `acks`, it reads the daemon's ACKs and answers `START` and `END`.
/// It runs `emergency_only` emergency-only sources beside its uplinks (the throttle run's).
pub fn start_client(
    exe: &Path,
    plan: &Plan,
    addr: SocketAddr,
    sources: usize,
    payload: usize,
    acks: bool,
    emergency_only: usize,
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
    match plan.fill {
        Fill::Constant => {}
        Fill::Random => args.extend(["--fill".into(), "random".into()]),
        Fill::Telemetry => args.extend(["--fill".into(), "telemetry".into()]),
    }
    if emergency_only > 0 {
        args.extend(["--emergency-only".into(), emergency_only.to_string()]);
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
pub fn wait_until(
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
