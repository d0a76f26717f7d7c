//! The daemon variants as a process of an `aggregator` binary given with `--daemon PATH`: a build
//! of any commit, so that two builds can be measured in the same scenario, interleaved.
//!
//! The binary gets a config file of its own (the `--daemon-config` file, or the defaults, with
//! loopback listeners, the monitor on, and a temporary archive directory). Its counters are read
//! from the monitor's `/stats`, its CPU time and memory from `/proc/PID`, its drain's report from
//! its log (JSON lines on stderr). What only the library shows is not measured this way: the
//! latency samples.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::control::{self, Counts, DrainInfo};
use crate::serving::Running;
use crate::Variant;

/// How the server role starts the binary.
#[derive(Debug, Clone)]
pub struct External {
    pub binary: PathBuf,
    /// The `--daemon-config` file the config starts from.
    pub config: Option<PathBuf>,
    /// `runtime.shards`, where the run sets it (the shard sweep).
    pub shards: Option<usize>,
}

/// A free loopback port, for the binary (or a `nats-server`) to listen on.
pub fn free_port() -> io::Result<SocketAddr> {
    TcpListener::bind("127.0.0.1:0")?.local_addr()
}

/// Sets `section.key` in `table`.
pub fn set(table: &mut toml::Table, section: &str, key: &str, value: toml::Value) {
    let entry = table
        .entry(section)
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    if let toml::Value::Table(section) = entry {
        section.insert(key.into(), value);
    }
}

/// Where the binary's config puts its listeners, and the config's file.
struct Ports {
    uplink: SocketAddr,
    monitor: SocketAddr,
    follow: Option<SocketAddr>,
    config: PathBuf,
}

/// Writes the binary's config: the file given, if any, with listeners on free ports, the monitor
/// on, the archive in a fresh temporary directory (or none kept, for `pipeline`), the follow
/// port for the others, and the run's keys ([`set_run_keys`]).
fn write_config(
    external: &External,
    max_connections: Option<usize>,
    variant: Variant,
) -> io::Result<Ports> {
    let mut table: toml::Table = match &external.config {
        Some(path) => toml::from_str(&std::fs::read_to_string(path)?).map_err(io::Error::other)?,
        None => toml::Table::new(),
    };
    let (uplink, replay, monitor) = (free_port()?, free_port()?, free_port()?);
    let text = |a: SocketAddr| toml::Value::String(a.to_string());
    set(&mut table, "uplink", "listen", text(uplink));
    set(&mut table, "replay", "listen", text(replay));
    set(&mut table, "monitor", "enabled", true.into());
    set(&mut table, "monitor", "listen", text(monitor));
    set_run_keys(&mut table, max_connections, external.shards);
    let dir = control::archive_dir(std::process::id());
    std::fs::create_dir_all(&dir)?;
    let archive = dir.join("archive");
    set(
        &mut table,
        "archive",
        "dir",
        archive.display().to_string().into(),
    );
    let follow = match variant {
        Variant::Pipeline => {
            set(&mut table, "archive", "kind", "count".into());
            None
        }
        _ => {
            let follow = free_port()?;
            set(&mut table, "consumer", "enabled", true.into());
            set(&mut table, "consumer", "listen", text(follow));
            Some(follow)
        }
    };
    let config = dir.join("aggregator.toml");
    std::fs::write(&config, toml::to_string(&table).map_err(io::Error::other)?)?;
    Ok(Ports {
        uplink,
        monitor,
        follow,
        config,
    })
}

/// Starts the binary for `variant`; `Running::pid` is its process.
pub async fn start(
    external: External,
    stop: CancellationToken,
    max_connections: Option<usize>,
    variant: Variant,
) -> io::Result<Running> {
    let Ports {
        uplink,
        monitor,
        follow,
        config,
    } = write_config(&external, max_connections, variant)?;
    let mut child = Command::new(&external.binary)
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let pid = child.id();
    let drained = Arc::new(Mutex::new(None));
    let log_reader = child.stderr.take().map(|stderr| {
        let drained = Arc::clone(&drained);
        std::thread::spawn(move || read_log(stderr, &drained))
    });
    wait_listening(monitor, Duration::from_secs(20))?;
    let stats = Arc::new(Mutex::new(StatsReader {
        monitor,
        last: Counts::default(),
    }));
    let reader = Arc::clone(&stats);
    let counts = move || reader.lock().map(|mut s| s.counts()).unwrap_or_default();
    let done = tokio::spawn(async move {
        stop.cancelled().await;
        let mut child = child;
        // The drain's report is the log's last line: read to the end of the log, which comes
        // with the exit, before looking for it.
        let _ = tokio::task::spawn_blocking(move || {
            terminate(&mut child);
            log_reader.map(|reader| reader.join())
        })
        .await;
        let drain: Option<DrainInfo> = drained.lock().ok().and_then(|d| *d);
        // After the exit, the drain's totals are the last counts there are.
        if let (Some(d), Ok(mut stats)) = (drain, stats.lock()) {
            stats.last.processed = d.processed;
            stats.last.archived = Some(d.archived);
        }
        drain
    });
    Ok(Running {
        addr: uplink,
        monitor: (variant == Variant::Watched).then_some(monitor),
        follow,
        counts: Box::new(counts),
        done,
        pid: Some(pid),
    })
}

/// The uplink limit the scale runs raise (in all and from one address: every source connects from
/// loopback), the shard sweep's `runtime.shards`, and the log: warnings and errors, and the
/// drain's report, unless the file says more; as JSON, to read that report.
fn set_run_keys(table: &mut toml::Table, max_connections: Option<usize>, shards: Option<usize>) {
    let int = |n: usize| toml::Value::Integer(n as i64);
    if let Some(limit) = max_connections {
        set(table, "uplink", "max_connections", int(limit));
        set(table, "uplink", "max_connections_per_address", int(limit));
    }
    if let Some(shards) = shards {
        set(table, "runtime", "shards", int(shards));
    }
    if table.get("log").and_then(|l| l.get("level")).is_none() {
        let level = "warn,aggregator::daemon=info";
        set(table, "log", "level", level.into());
    }
    set(table, "log", "format", "json".into());
}

/// Waits until something accepts on `addr`.
fn wait_listening(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match TcpStream::connect(addr) {
            Ok(_) => return Ok(()),
            Err(err) if Instant::now() >= deadline => return Err(err),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// SIGTERM, then waits for the exit.
fn terminate(child: &mut Child) {
    // SAFETY: kill(2) on the pid of our own child, not yet waited for.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
}

/// Passes the binary's log on to this process's stderr, but for the drain's report, which it keeps.
fn read_log(stderr: impl Read, drained: &Mutex<Option<DrainInfo>>) {
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { break };
        match drain_report(&line) {
            Some(report) => {
                if let Ok(mut d) = drained.lock() {
                    *d = Some(report);
                }
            }
            None => eprintln!("{line}"),
        }
    }
}

/// The drain's report, from its log line (`tracing`'s JSON: the fields under `fields`).
fn drain_report(line: &str) -> Option<DrainInfo> {
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    let fields = &json["fields"];
    let message = fields["message"].as_str()?;
    let field = |name: &str| fields[name].as_u64();
    Some(DrainInfo {
        completed: message == "drain complete",
        elapsed_ms: field("elapsed_ms")? as f64,
        accepted: field("accepted")?,
        processed: field("processed")?,
        archived: field("archived")?,
        lost: field("unacknowledged")?,
        duplicates: field("duplicates")?,
    })
}

/// The binary's counters, from its monitor; the last ones read once it has gone.
struct StatsReader {
    monitor: SocketAddr,
    last: Counts,
}

impl StatsReader {
    fn counts(&mut self) -> Counts {
        let Ok(body) = get(self.monitor, "/stats") else {
            return self.last;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&body) else {
            return self.last;
        };
        let stat = |name: &str| json["stats"][name].as_u64().unwrap_or(0);
        let archive = &json["archive"];
        let retention = |name: &str| archive["retention"][name].as_u64().unwrap_or(0);
        self.last = Counts {
            processed: stat("frames_processed"),
            bytes: stat("bytes_processed"),
            archived: Some(stat("frames_archived")),
            sources: stat("active_sources"),
            unsynced_bytes: stat("archive_unsynced_bytes"),
            in_flight: json["frames_in_flight"].as_u64().unwrap_or(0),
            archive_bytes: archive["bytes"].as_u64().unwrap_or(0),
            deleted_segments: retention("deleted_segments"),
            deleted_bytes: retention("deleted_bytes"),
            nats_published: stat("nats_published"),
            nats_unreplicated: stat("nats_unreplicated_frames"),
            nats_room_bytes: stat("nats_room_bytes"),
            nats_at_leader: stat("nats_at_leader"),
            ..Counts::default()
        };
        self.last
    }
}

/// The body of `GET path` on `addr`, over HTTP/1.0 (the connection closes after it).
fn get(addr: SocketAddr, path: &str) -> io::Result<String> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    match response.split_once("\r\n\r\n") {
        Some((_, body)) => Ok(body.to_string()),
        None => Err(io::Error::other("no HTTP body")),
    }
}

/// The resident set (`VmRSS`) or peak (`VmHWM`) of process `pid`, in KiB; 0 where unreadable.
pub fn memory_kib(pid: u32, field: &str) -> u64 {
    control::status_kib(Path::new(&format!("/proc/{pid}/status")), field)
}
