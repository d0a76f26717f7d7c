//! The NATS sink against a real `nats-server` with JetStream (Debian's `nats-server` package;
//! `.ci/run` installs it): two `aggregator` daemons, each with its own site, archive and
//! `uplink-sim`, publish into one stream, and a consumer here finds every `(site, kind, source,
//! seq)` of both archives exactly once, also across a SIGKILL of one daemon and a stop of
//! `nats-server`, during which ingest goes on. And the sink on an archive of several shards,
//! built shard by shard (`common::ShardedArchive`): every shard published once, with a cursor
//! per shard that a restarted sink resumes from.

mod common;
mod nats_stream;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use aggregator::archive::format;
use aggregator::archive::tools;
use aggregator::config::SyncMode;
use aggregator::domain::position::Position;
use aggregator::sinks::nats::NatsSink;
use aggregator::{Priority, SourceKind, Stats};

const AGGREGATOR: &str = env!("CARGO_BIN_EXE_aggregator");
const SIM: &str = env!("CARGO_BIN_EXE_uplink-sim");
use nats_stream::{stream_contents, Contents, STREAM};
/// The longest any one wait may take: generous, the machine is shared.
const PATIENCE: Duration = Duration::from_secs(60);

/// The `nats-server` binary; fails the test, saying how to install it, where there is none.
fn nats_server() -> PathBuf {
    ["/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .iter()
        .map(PathBuf::from)
        .find(|path| path.is_file())
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .map(|dir| dir.join("nats-server"))
                .find(|path| path.is_file())
        })
        .expect("nats-server is not installed (Debian package nats-server; .ci/run installs it)")
}

/// Polls `done` every 20 ms until it holds; fails the test with `what` after [`PATIENCE`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

fn wait_child(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child") {
            return status;
        }
        assert!(Instant::now() < deadline, "a child process did not exit");
        thread::sleep(Duration::from_millis(10));
    }
}

fn signal(child: &Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: signalling our own child process by its pid.
    assert_eq!(
        unsafe { libc::kill(pid, signal) },
        0,
        "kill({pid}, {signal})"
    );
}

/// A temporary directory, removed at the end of the test.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "aggregator-nats-test-{}-{}-{name}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).expect("create a temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `nats-server -js` on a loopback port, its store in a directory that outlives a restart.
struct NatsServer {
    binary: PathBuf,
    port: u16,
    store: PathBuf,
    child: Option<Child>,
}

impl NatsServer {
    fn start(binary: PathBuf, store: &Path) -> NatsServer {
        let mut server = NatsServer {
            binary,
            port: common::free_port(),
            store: store.to_owned(),
            child: None,
        };
        server.restart();
        server
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server (again, on the same port and store) and waits until it accepts.
    fn restart(&mut self) {
        let child = Command::new(&self.binary)
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        wait_until("nats-server to accept connections", || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
        });
    }

    /// Stops the server by its pid (SIGTERM) and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            signal(&child, libc::SIGTERM);
            wait_child(&mut child);
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An `aggregator` child with `[sinks.nats]`, its standard error kept for a failure's message.
struct Daemon {
    config: PathBuf,
    archive: PathBuf,
    uplink: u16,
    replay: u16,
    monitor: u16,
    child: Option<Child>,
    log: Arc<Mutex<Vec<String>>>,
}

impl Daemon {
    fn start(dir: &Path, site: &str, nats: &str) -> Daemon {
        Daemon::start_with(dir, site, nats, "")
    }

    /// A daemon whose `[archive]` section ends with `archive` (keys, then tables of its own, such
    /// as `[archive.retention]`).
    fn start_with(dir: &Path, site: &str, nats: &str, archive_keys: &str) -> Daemon {
        Daemon::start_keyed(dir, site, nats, "", archive_keys)
    }

    /// A daemon with more keys of `[sinks.nats]` (`sink_keys`, one per line) and of `[archive]`.
    fn start_keyed(
        dir: &Path,
        site: &str,
        nats: &str,
        sink_keys: &str,
        archive_keys: &str,
    ) -> Daemon {
        let (uplink, replay, monitor) = (
            common::free_port(),
            common::free_port(),
            common::free_port(),
        );
        let archive_dir = dir.join("archive");
        let config = dir.join("aggregator.toml");
        let text = format!(
            "[uplink]\nlisten = \"127.0.0.1:{uplink}\"\n\
             [replay]\nlisten = \"127.0.0.1:{replay}\"\n\
             [monitor]\nlisten = \"127.0.0.1:{monitor}\"\n\
             [dashboard]\nstats_interval_ms = 50\n\
             [sinks.nats]\nurl = \"{nats}\"\nstream = \"{STREAM}\"\nsite = \"{site}\"\n\
             max_lag_ms = 2000\n{sink_keys}\n\
             [archive]\ndir = \"{}\"\n{archive_keys}",
            archive_dir.display()
        );
        std::fs::write(&config, text).expect("write the daemon's config");
        let mut daemon = Daemon {
            config,
            archive: archive_dir,
            uplink,
            replay,
            monitor,
            child: None,
            log: Arc::default(),
        };
        daemon.restart();
        daemon
    }

    /// Starts the binary (again, on the same archive) and waits until it listens.
    fn restart(&mut self) {
        let mut child = Command::new(AGGREGATOR)
            .arg("--config")
            .arg(&self.config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the aggregator");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tx, lines) = mpsc::channel();
        let log = Arc::clone(&self.log);
        thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log.lock().expect("log lock").push(line.clone());
                let _ = tx.send(line);
            }
        });
        self.child = Some(child);
        let deadline = Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains("aggregator listening") => return,
                Ok(_) => {}
                Err(err) => panic!("the daemon did not start ({err}):\n{}", self.log()),
            }
        }
    }

    fn log(&self) -> String {
        self.log.lock().expect("log lock").join("\n")
    }

    /// SIGKILL: no drain, no last save of the sink's cursor.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the daemon");
            wait_child(&mut child);
        }
    }

    /// SIGTERM, and the exit status after the drain.
    fn terminate(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("a running daemon");
        signal(&child, libc::SIGTERM);
        wait_child(&mut child)
    }

    /// `GET path` on the monitor: the status code and the JSON body.
    fn get(&self, path: &str) -> (u16, serde_json::Value) {
        let mut stream =
            TcpStream::connect(("127.0.0.1", self.monitor)).expect("reach the monitor");
        write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").expect("send a request");
        let mut response = String::new();
        stream
            .read_to_string(&mut response)
            .expect("read the response");
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .unwrap_or_else(|| panic!("no status in {response:?}"));
        let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
        let json = serde_json::from_str(body).unwrap_or_else(|err| panic!("{err}: {body:?}"));
        (status, json)
    }

    /// A counter from `/stats`.
    fn stat(&self, name: &str) -> u64 {
        let (_, body) = self.get("/stats");
        body["stats"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats.{name} in {body}"))
    }

    /// Starts an `uplink-sim` of 4 uplinks and a replay feed, each at `rate` frames/s for
    /// `seconds`, that must see every frame acknowledged (it waits through a daemon restart).
    fn sim(&self, rate: u32, seconds: u32) -> Sim {
        let child = Command::new(SIM)
            .args(["--scenario", "default", "--uplinks", "4", "--replays", "1"])
            .args([
                "--rate",
                &rate.to_string(),
                "--duration",
                &seconds.to_string(),
            ])
            .args(["--require-all-acked", "--progress", "off"])
            .arg("--uplink")
            .arg(format!("127.0.0.1:{}", self.uplink))
            .arg("--replay")
            .arg(format!("127.0.0.1:{}", self.replay))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start uplink-sim");
        Sim { child }
    }

    /// Every `(kind, source, seq)` the archive holds, checked to hold each once and no gap.
    fn archived(&self) -> BTreeSet<(String, u32, u64)> {
        let report = tools::verify(&self.archive).expect("verify the archive");
        assert!(report.is_valid() && report.is_exactly_once(), "{report:?}");
        let mut frames = BTreeSet::new();
        for source in &report.sources {
            let (Some(first), Some(last)) = (source.first, source.last) else {
                continue;
            };
            let kind = match source.kind {
                SourceKind::LiveUplink => "live",
                SourceKind::ArchivedReplay => "replay",
            };
            frames.extend((first..=last).map(|seq| (kind.to_string(), source.id, seq)));
        }
        frames
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct Sim {
    child: Child,
}

impl Sim {
    /// Waits for the simulator; every frame it sent was acknowledged. Returns how many it sent.
    fn wait(mut self) -> u64 {
        let (mut out, mut err) = (String::new(), String::new());
        let stdout = self.child.stdout.take().expect("stdout");
        let stderr = self.child.stderr.take().expect("stderr");
        let err_reader = thread::spawn(move || {
            let mut stderr = stderr;
            let _ = stderr.read_to_string(&mut err);
            err
        });
        let mut stdout = stdout;
        let _ = stdout.read_to_string(&mut out);
        let err = err_reader.join().unwrap_or_default();
        let status = wait_child(&mut self.child);
        assert!(
            status.success(),
            "uplink-sim failed: {status}\n{out}\n{err}"
        );
        let total = out
            .lines()
            .find(|l| l.starts_with("sim total:"))
            .unwrap_or_else(|| panic!("no summary:\n{out}"));
        let number = |key: &str| -> u64 {
            total
                .split_whitespace()
                .find_map(|t| t.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key}= in {total}"))
        };
        assert_eq!(number("acked"), number("sent"), "{total}");
        number("sent")
    }
}

/// Each daemon's archive is in the stream under its site, every frame once.
fn assert_exactly_once(contents: &Contents, daemons: &[(&str, &Daemon)]) {
    assert_eq!(
        contents.len(),
        daemons.len(),
        "sites in the stream: {:?}",
        contents.keys()
    );
    for (site, daemon) in daemons {
        let archived = daemon.archived();
        let published = &contents[*site];
        let twice: Vec<_> = published.iter().filter(|(_, n)| **n != 1).collect();
        assert!(
            twice.is_empty(),
            "{site}: published more than once: {twice:?}"
        );
        let keys: BTreeSet<_> = published.keys().cloned().collect();
        let missing: Vec<_> = archived.difference(&keys).take(10).collect();
        let extra: Vec<_> = keys.difference(&archived).take(10).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{site}: {} archived, {} published; missing {missing:?}, not archived {extra:?}",
            archived.len(),
            keys.len()
        );
    }
}

#[test]
#[ignore = "needs nats-server (Debian package nats-server); .ci/run runs it"]
fn two_daemons_publish_every_frame_exactly_once_into_one_stream() {
    let binary = nats_server();
    let store = TempDir::new("store");
    let nats = NatsServer::start(binary, &store.0);
    let (north_dir, south_dir) = (TempDir::new("north"), TempDir::new("south"));
    let mut north = Daemon::start(&north_dir.0, "north", &nats.url());
    let mut south = Daemon::start(&south_dir.0, "south", &nats.url());
    let (north_sim, south_sim) = (north.sim(500, 2), south.sim(500, 2));
    let sent = north_sim.wait() + south_sim.wait();

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let contents = runtime.block_on(stream_contents(&nats.url(), Some(sent)));
    for daemon in [&north, &south] {
        wait_until("the sink's lag to reach 0", || {
            daemon.stat("nats_lag_frames") == 0
        });
        assert_eq!(
            (daemon.stat("nats_sink"), daemon.stat("nats_connected")),
            (1, 1)
        );
        let (status, health) = daemon.get("/healthz");
        assert_eq!(
            (status, health["status"].as_str()),
            (200, Some("ready")),
            "{health}"
        );
    }
    // A PubAck lost to a timeout is counted when the frame's republish is acknowledged as a
    // duplicate; nothing is counted new twice.
    let published = north.stat("nats_published") + south.stat("nats_published");
    let republished = north.stat("nats_republished") + south.stat("nats_republished");
    assert!(
        published <= sent && published + republished >= sent,
        "{published} new and {republished} republished of {sent}"
    );
    assert!(north.terminate().success(), "{}", north.log());
    assert!(south.terminate().success(), "{}", south.log());
    assert_exactly_once(&contents, &[("north", &north), ("south", &south)]);
    let cursor =
        std::fs::read_to_string(north.archive.join("sinks/nats.cursor")).expect("a cursor");
    assert!(
        cursor
            .trim()
            .parse::<aggregator::domain::position::Position>()
            .is_ok(),
        "{cursor:?}"
    );
}

#[test]
#[ignore = "needs nats-server (Debian package nats-server); .ci/run runs it"]
fn sigkill_and_a_nats_outage_still_publish_exactly_once_and_ingest_goes_on() {
    let binary = nats_server();
    let store = TempDir::new("store");
    let mut nats = NatsServer::start(binary, &store.0);
    let (north_dir, south_dir) = (TempDir::new("north"), TempDir::new("south"));
    let mut north = Daemon::start(&north_dir.0, "north", &nats.url());
    let mut south = Daemon::start(&south_dir.0, "south", &nats.url());
    let (north_sim, south_sim) = (north.sim(300, 14), south.sim(300, 14));

    // North is killed once it has published, and started again on its archive.
    wait_until("north to publish", || north.stat("nats_published") > 1_000);
    north.kill();
    north.restart();

    // NATS stops for five seconds: both daemons go on storing (their simulators' frames are
    // acknowledged), and say degraded.
    wait_until("south to publish", || south.stat("nats_published") > 2_000);
    nats.stop();
    let stopped = Instant::now();
    let archived_at_stop = [north.stat("frames_archived"), south.stat("frames_archived")];
    wait_until("the daemons to see NATS gone", || {
        [&north, &south].iter().all(|d| d.get("/healthz").0 == 503)
    });
    let (_, health) = south.get("/healthz");
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["nats"]["connected"], false, "{health}");
    let mut samples = Vec::new();
    while stopped.elapsed() < Duration::from_secs(5) {
        samples.push([north.stat("frames_archived"), south.stat("frames_archived")]);
        thread::sleep(Duration::from_millis(500));
    }
    for (daemon, at_stop) in [0, 1].into_iter().zip(archived_at_stop) {
        let during: Vec<u64> = samples.iter().map(|s| s[daemon]).collect();
        assert!(
            during.windows(2).all(|w| w[1] > w[0]) && during.last() > Some(&at_stop),
            "daemon {daemon}: frames_archived during the outage {at_stop} then {during:?}: ingest paused"
        );
    }
    nats.restart();

    let sent = north_sim.wait() + south_sim.wait();
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let contents = runtime.block_on(stream_contents(&nats.url(), Some(sent)));
    wait_until("both daemons ready again", || {
        [&north, &south].iter().all(|d| d.get("/healthz").0 == 200)
    });
    assert!(north.terminate().success(), "{}", north.log());
    assert!(south.terminate().success(), "{}", south.log());
    assert_exactly_once(&contents, &[("north", &north), ("south", &south)]);
}

/// What a machine lost during a NATS outage took with it: the simulator's sources run against a
/// daemon with `sinks.nats.ack = ack`; NATS stops, the daemon stores on, then is SIGKILLed and its
/// archive deleted; NATS comes back. Returns the frames the simulator saw acknowledged and those
/// of them the stream does not hold.
fn acknowledged_and_lost_with_the_machine(ack: &str) -> (u64, u64) {
    let store = TempDir::new("store");
    let mut nats = NatsServer::start(nats_server(), &store.0);
    let dir = TempDir::new("lost");
    let sink_keys = format!("ack = \"{ack}\"");
    let mut daemon = Daemon::start_keyed(&dir.0, "lost", &nats.url(), &sink_keys, "");
    let acks = dir.0.join("acks.log");
    let sim = Command::new(SIM)
        .args(["--scenario", "default", "--uplinks", "4", "--replays", "1"])
        .args(["--rate", "500", "--duration", "30", "--give-up-after", "1"])
        .args(["--progress", "off", "--ack-log"])
        .arg(&acks)
        .arg("--uplink")
        .arg(format!("127.0.0.1:{}", daemon.uplink))
        .arg("--replay")
        .arg(format!("127.0.0.1:{}", daemon.replay))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start uplink-sim");
    let mut sim = Sim { child: sim };
    wait_until("the daemon to publish", || {
        daemon.stat("nats_published") > 1_000
    });
    nats.stop();
    let archived = daemon.stat("frames_archived");
    wait_until("frames stored during the outage", || {
        daemon.stat("frames_archived") > archived + 1_000
    });
    if ack == "replicated" {
        let (status, health) = daemon.get("/healthz");
        assert_eq!(status, 503, "{health}");
        let waiting = health["nats"]["acks_wait_for_jetstream"].as_u64();
        assert!(waiting > Some(0), "{health}");
    }
    // The machine is lost: the daemon and its disk.
    daemon.kill();
    std::fs::remove_dir_all(&daemon.archive).expect("delete the archive");
    wait_child(&mut sim.child);
    nats.restart();

    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let contents = runtime.block_on(stream_contents(&nats.url(), None));
    let held = contents.get("lost").cloned().unwrap_or_default();
    let log = std::fs::read_to_string(&acks).expect("the ack log");
    let mut last_ack = std::collections::BTreeMap::new();
    for line in log.lines() {
        if let ["ack", kind, id, seq] = line.split_whitespace().collect::<Vec<_>>()[..] {
            let id: u32 = id.parse().expect("a source id");
            let seq: u64 = seq.parse().expect("a sequence");
            let last = last_ack.entry((kind.to_string(), id)).or_insert(seq);
            *last = (*last).max(seq);
        }
    }
    let (mut acknowledged, mut lost) = (0, 0);
    for ((kind, id), last) in last_ack {
        for seq in 0..=last {
            acknowledged += 1;
            match held.get(&(kind.clone(), id, seq)) {
                Some(1) => {}
                Some(n) => panic!("{kind} {id} {seq} is in the stream {n} times"),
                None => lost += 1,
            }
        }
    }
    eprintln!("ack = {ack}: {acknowledged} frames acknowledged, {lost} of them not in the stream");
    (acknowledged, lost)
}

#[test]
#[ignore = "needs nats-server (Debian package nats-server); .ci/run runs it"]
fn a_replicated_acknowledgement_outlives_the_machine() {
    let (acknowledged, lost) = acknowledged_and_lost_with_the_machine("replicated");
    assert!(acknowledged > 1_000, "{acknowledged} acknowledged");
    assert_eq!(lost, 0, "of {acknowledged} acknowledged frames");
}

/// The control: the same loss with `ack = "local"` loses what was acknowledged during the outage.
#[test]
#[ignore = "needs nats-server (Debian package nats-server); .ci/run runs it"]
fn a_local_acknowledgement_is_lost_with_the_machine() {
    let (acknowledged, lost) = acknowledged_and_lost_with_the_machine("local");
    assert!(lost > 0, "none of {acknowledged} acknowledged frames lost");
}

/// Sends frames `range` of shard `shard`'s two sources (live `10 * shard + 1`, replay
/// `10 * shard + 2`) and returns their `(kind, source, seq)`.
async fn send_to_shard(
    archive: &common::ShardedArchive,
    shard: usize,
    range: std::ops::Range<u64>,
) -> BTreeSet<(String, u32, u64)> {
    let id = 10 * shard as u32;
    let mut sent = BTreeSet::new();
    for (kind, token, source) in [
        (SourceKind::LiveUplink, "live", id + 1),
        (SourceKind::ArchivedReplay, "replay", id + 2),
    ] {
        let frames = range.clone().map(|seq| (Priority::Routine, seq));
        archive.send(shard, kind, source, frames).await;
        sent.extend(range.clone().map(|seq| (token.to_string(), source, seq)));
    }
    sent
}

/// Waits until the sink counted `published` new messages (without republishing any).
async fn wait_published(stats: &Stats, published: u64) {
    common::wait_until(&format!("{published} messages published"), PATIENCE, || {
        let snapshot = stats.snapshot();
        assert_eq!(snapshot.nats_republished, 0, "a frame published twice");
        snapshot.nats_published == published
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs nats-server (Debian package nats-server); .ci/run runs it"]
async fn every_shard_is_published_exactly_once_with_a_cursor_of_its_own() {
    let binary = nats_server();
    let store = TempDir::new("store");
    let nats = NatsServer::start(binary, &store.0);
    let root = TempDir::new("sharded");
    let mut config = common::test_config();
    config.archive.dir = root.0.clone();
    config.archive.sync = SyncMode::Interval;
    let mut archive = common::ShardedArchive::start(&root.0, &[0, 2, 4], &config).await;
    let mut sent = BTreeSet::new();
    for shard in [0, 2, 4] {
        sent.extend(send_to_shard(&archive, shard, 0..300).await);
    }
    // Shard 4 retires: its files are complete, its watch closed.
    archive.stop_shard(4).await;
    let nats_config = toml::from_str::<aggregator::Config>(&format!(
        "[sinks.nats]\nurl = \"{}\"\nstream = \"{STREAM}\"\nsite = \"sharded\"\n",
        nats.url()
    ))
    .expect("a NATS sink config")
    .sinks
    .nats
    .expect("[sinks.nats]");

    // The first run publishes everything stored, then is cut off: its cursors are saved.
    let first = Stats::new();
    let sink = NatsSink::start(
        nats_config.clone(),
        root.0.clone(),
        archive.durable_ends(),
        first.clone(),
        None,
        None,
    );
    wait_published(&first, sent.len() as u64).await;
    sink.finish(tokio::time::Instant::now()).await;
    for (shard, name) in [
        (0, "nats.cursor"),
        (2, "nats-shard-02.cursor"),
        (4, "nats-shard-04.cursor"),
    ] {
        let text = std::fs::read_to_string(root.0.join("sinks").join(name))
            .unwrap_or_else(|err| panic!("shard {shard}'s cursor {name}: {err}"));
        let cursor: Position = text.trim().parse().expect("a position");
        let segments =
            aggregator::archive::format::list_segments(&format::shard_dir(&root.0, shard));
        let newest = segments
            .expect("the shard's segments")
            .last()
            .map(|(index, _)| *index);
        assert!(Some(cursor.segment) <= newest, "shard {shard}: {cursor}");
    }

    // More frames in the running shards; a second run resumes from each shard's cursor and
    // publishes only those, then ends when every shard is closed and published.
    let mut more = BTreeSet::new();
    for shard in [0, 2] {
        more.extend(send_to_shard(&archive, shard, 300..500).await);
    }
    let second = Stats::new();
    let sink = NatsSink::start(
        nats_config,
        root.0.clone(),
        archive.durable_ends(),
        second.clone(),
        None,
        None,
    );
    archive.stop().await;
    wait_published(&second, more.len() as u64).await;
    sink.finish(tokio::time::Instant::now() + PATIENCE).await;

    sent.extend(more);
    let contents = stream_contents(&nats.url(), Some(sent.len() as u64)).await;
    let published = &contents["sharded"];
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    let keys: BTreeSet<_> = published.keys().cloned().collect();
    assert_eq!(keys, sent);
}

/// A `nats-server`, and a daemon of one shard publishing into it whose segments are
/// `segment_bytes` long and whose retention protects the sink and has `limit` (a TOML key):
/// the server's store, the server, the daemon's directory and the daemon.
fn bounded_under_nats(
    name: &str,
    segment_bytes: u64,
    limit: &str,
) -> (TempDir, NatsServer, TempDir, Daemon) {
    let store = TempDir::new("store");
    let nats = NatsServer::start(nats_server(), &store.0);
    let dir = TempDir::new(name);
    let archive = format!(
        "segment_bytes = {segment_bytes}\n[archive.retention]\n{limit}\nprotect = [\"nats\"]\n\
         check_interval_ms = 50\n[runtime]\nshards = 1\n"
    );
    let daemon = Daemon::start_with(&dir.0, "north", &nats.url(), &archive);
    (store, nats, dir, daemon)
}

/// The frames of `contents`' only site, checked to be there once each.
fn published_once(contents: &Contents) -> u64 {
    let published = contents.values().next().expect("a site in the stream");
    let twice: Vec<_> = published.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "published more than once: {twice:?}");
    published.len() as u64
}

/// NATS stopped long enough for retention to overtake the sink: `max_bytes` deletes segments the
/// sink has not published, though it is protected. Once NATS is back, the sink goes on at the
/// oldest frame left: it counts the frames it skipped, says so at error level, and is degraded
/// until it has caught up. What the stream holds and what the sink counted skipped are every
/// frame archived, once.
#[test]
#[ignore = "needs nats-server (Debian package nats-server); .ci/run runs it"]
fn retention_overtaking_a_stopped_nats_is_counted_and_the_sink_goes_on() {
    let limit = "max_bytes = \"8MiB\"";
    let (_store, mut nats, _dir, mut daemon) = bounded_under_nats("retention", 1 << 20, limit);
    let first = daemon.sim(200, 1).wait();
    wait_until("the sink to publish the first frames", || {
        daemon.stat("nats_published") == first
    });

    nats.stop();
    // 5 sources at 4,000 frames/s of 64 bytes for 10 s: several times the archive's bound.
    let more = daemon.sim(4000, 10).wait();
    wait_until("retention to delete unpublished segments", || {
        daemon.stat("retention_deleted_segments") > 3
    });
    assert_eq!(daemon.stat("nats_skipped_frames"), 0, "nothing read yet");

    nats.restart();
    wait_until("the sink to skip ahead", || {
        daemon.stat("nats_skipped_frames") > 0
    });
    wait_until("the sink to catch up", || {
        daemon.stat("nats_lag_seconds") == 0 && daemon.get("/healthz").0 == 200
    });
    let skipped = daemon.stat("nats_skipped_frames");
    let line = daemon.log();
    assert!(
        line.contains("ERROR") && line.contains("the NATS sink skipped frames retention deleted"),
        "{line}"
    );
    assert!(daemon.terminate().success(), "{}", daemon.log());

    let archived = first + more;
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let contents = runtime.block_on(stream_contents(&nats.url(), Some(archived - skipped)));
    assert_eq!(
        published_once(&contents) + skipped,
        archived,
        "published or skipped, once"
    );
}

/// With `protect = ["nats"]` and only `max_age`, segments NATS has not published outlive their
/// age while it is away, and once it is back every frame is published: none skipped.
#[test]
#[ignore = "needs nats-server (Debian package nats-server); .ci/run runs it"]
fn protected_segments_outlive_max_age_until_the_sink_has_published_them() {
    let limit = "max_age = \"1s\"";
    let (_store, mut nats, _dir, mut daemon) = bounded_under_nats("protect", 64 << 10, limit);
    let first = daemon.sim(500, 1).wait();
    wait_until("the sink to publish", || {
        daemon.stat("nats_published") == first
    });
    // Published and older than a second: deleted.
    wait_until("retention to delete what was published", || {
        daemon.stat("retention_deleted_segments") > 0
    });

    nats.stop();
    let more = daemon.sim(500, 1).wait();
    let sent_at = Instant::now();
    let deleted = daemon.stat("retention_deleted_segments");
    // Every unpublished segment is past its age, and retention has looked at it many times.
    wait_until("the unpublished frames to pass max_age", || {
        sent_at.elapsed() > Duration::from_secs(2)
    });
    assert_eq!(
        daemon.stat("retention_deleted_segments"),
        deleted,
        "protected"
    );

    nats.restart();
    wait_until("the sink to publish the rest", || {
        daemon.stat("nats_published") == first + more
    });
    assert_eq!(daemon.stat("nats_skipped_frames"), 0);
    assert!(daemon.terminate().success(), "{}", daemon.log());
}
