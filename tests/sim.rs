//! `uplink-sim` against the real `aggregator` binary, over loopback TCP.
//!
//! Both programs run as child processes, as an operator runs them. Every wait is on something
//! observable (a log line, a process exit) with a deadline, never a sleep.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use aggregator::protocol::ingest::{ClientMessage, Hello, ServerMessage, VERSION};
use aggregator::SourceKind;
use bytes::BytesMut;

mod common;

use common::process::Daemon;
use common::{free_port, hello_bytes, Client, Tmpfs};

const AGGREGATOR: &str = env!("CARGO_BIN_EXE_aggregator");
const SIM: &str = env!("CARGO_BIN_EXE_uplink-sim");
const DEADLINE: Duration = Duration::from_secs(30);

/// The value of `key=` in a `key=value ...` line.
fn field(line: &str, key: &str) -> Option<String> {
    let pattern = format!("{key}=");
    line.split_whitespace()
        .find_map(|token| token.strip_prefix(&pattern))
        .map(|v| v.trim_matches('"').to_string())
}

fn number(line: &str, key: &str) -> u64 {
    field(line, key)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no numeric {key}= in {line:?}"))
}

/// The daemons' ports come from below the kernel's ephemeral range: an outgoing connection (a
/// test's client, the simulator's) is never handed one before its daemon binds it.
#[test]
fn free_ports_are_outside_the_ephemeral_range() {
    let low = common::ephemeral_low().expect("the kernel's ephemeral range");
    let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
    assert!(ports.iter().all(|p| (20_000..low).contains(p)), "{ports:?}");
    let distinct: std::collections::HashSet<_> = ports.iter().collect();
    assert_eq!(distinct.len(), ports.len());
}

/// A daemon configuration with free ports, written to a temporary file.
struct Setup {
    uplink: u16,
    replay: u16,
    /// Holds the config, `aggregator.toml`.
    dir: PathBuf,
    config: PathBuf,
    /// The daemon's archive: shared by a restarted daemon, never by two tests.
    archive: PathBuf,
}

impl Setup {
    fn new(uplink_limit: usize) -> Setup {
        Setup::with_archive(uplink_limit, None, "")
    }

    /// A setup whose archive is `archive` (a fresh temporary directory when `None`), with `extra`
    /// lines in the config's `[archive]` section.
    fn with_archive(uplink_limit: usize, archive: Option<PathBuf>, extra: &str) -> Setup {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let (uplink, replay) = (free_port(), free_port());
        let name = format!(
            "uplink-sim-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(&name);
        std::fs::create_dir_all(&dir).expect("create the config's directory");
        let config = dir.join("aggregator.toml");
        let archive =
            archive.unwrap_or_else(|| std::env::temp_dir().join(format!("{name}-archive")));
        let text = format!(
            "[uplink]\nlisten = \"127.0.0.1:{uplink}\"\nmax_connections = {uplink_limit}\n\
             max_connections_per_address = {uplink_limit}\n\n\
             [replay]\nlisten = \"127.0.0.1:{replay}\"\nmax_connections = 64\n\n\
             [dashboard]\nstats_interval_ms = 50\n\n\
             [monitor]\nenabled = false\n\n\
             [archive]\ndir = \"{}\"\n{extra}",
            archive.display()
        );
        std::fs::write(&config, text).expect("write the test config");
        Setup {
            uplink,
            replay,
            dir,
            config,
            archive,
        }
    }

    /// The daemon on this config, once it listens, its pipeline's debug lines logged too.
    fn start(&self) -> Daemon {
        let filter = "info,aggregator::pipeline::processor=debug".to_string();
        Daemon::start_on(&self.dir, "text", &[("RUST_LOG", filter)])
    }

    /// Starts the simulator's default scenario at 2,000 frames/s per source for 3 s, requiring
    /// every frame acknowledged: the load the restart tests interrupt.
    fn sim_under_load(&self) -> SimRun {
        self.spawn_sim(&[
            "--scenario",
            "default",
            "--rate",
            "2000",
            "--duration",
            "3",
            "--require-all-acked",
        ])
    }

    /// Starts the simulator against this daemon.
    fn spawn_sim(&self, args: &[&str]) -> SimRun {
        self.spawn_sim_at(self.uplink, args)
    }

    /// Runs the simulator against this daemon and waits for it.
    fn sim(&self, args: &[&str]) -> SimResult {
        self.sim_at(self.uplink, args)
    }

    /// Runs the simulator with its uplinks pointed at `uplink_port`.
    fn sim_at(&self, uplink_port: u16, args: &[&str]) -> SimResult {
        self.spawn_sim_at(uplink_port, args).wait()
    }

    /// Starts the simulator with its uplinks pointed at `uplink_port`.
    fn spawn_sim_at(&self, uplink_port: u16, args: &[&str]) -> SimRun {
        let uplink = format!("127.0.0.1:{uplink_port}");
        let replay = format!("127.0.0.1:{}", self.replay);
        let mut all = vec![
            "--uplink",
            &uplink,
            "--replay",
            &replay,
            "--progress",
            "off",
        ];
        all.extend_from_slice(args);
        SimRun::spawn(&all)
    }
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_dir_all(&self.archive);
    }
}

/// Waits until the dashboard has seen a good number of frames accepted: mid-stream.
fn wait_until_mid_stream(daemon: &Daemon) {
    daemon.wait_for(|l| {
        l.contains("stats: accepted=")
            && field(l, "accepted").and_then(|v| v.parse::<u64>().ok()) > Some(5_000)
    });
}

/// Sends SIGTERM, waits for the exit, and returns the drain summary line.
fn terminate(daemon: &mut Daemon) -> (ExitStatus, String) {
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(DEADLINE);
    let drain = daemon.wait_for(|l| l.contains("drain complete") || l.contains("drain incomplete"));
    (status, drain)
}

fn wait_child(child: &mut Child) -> ExitStatus {
    let until = Instant::now() + DEADLINE;
    loop {
        if let Some(status) = child.try_wait().expect("wait for child") {
            return status;
        }
        assert!(Instant::now() < until, "child process did not exit in time");
        thread::sleep(Duration::from_millis(10));
    }
}

/// A running simulator (or the demo).
struct SimRun {
    child: Child,
    output: mpsc::Receiver<(String, String)>,
}

/// A finished simulator: exit status, standard output and error.
struct SimResult {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl SimRun {
    fn spawn(args: &[&str]) -> SimRun {
        let mut sim = Command::new(SIM);
        sim.args(args);
        SimRun::start(sim)
    }

    /// Starts `command` (the simulator, or a script that runs it), its output collected.
    fn start(mut command: Command) -> SimRun {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the process");
        let (mut out, mut err) = (
            child.stdout.take().expect("stdout"),
            child.stderr.take().expect("stderr"),
        );
        let (tx, output) = mpsc::channel();
        thread::spawn(move || {
            let (mut o, mut e) = (String::new(), String::new());
            let err_reader = thread::spawn(move || {
                let _ = err.read_to_string(&mut e);
                e
            });
            let _ = out.read_to_string(&mut o);
            let e = err_reader.join().unwrap_or_default();
            let _ = tx.send((o, e));
        });
        SimRun { child, output }
    }

    fn wait(mut self) -> SimResult {
        let status = wait_child(&mut self.child);
        let (stdout, stderr) = self
            .output
            .recv_timeout(DEADLINE)
            .expect("simulator output");
        SimResult {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for SimRun {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SimResult {
    fn total(&self) -> &str {
        self.stdout
            .lines()
            .find(|l| l.starts_with("sim total:"))
            .unwrap_or_else(|| {
                panic!(
                    "no summary; stdout:\n{}\nstderr:\n{}",
                    self.stdout, self.stderr
                )
            })
    }
}

/// A raw client that completes a handshake and keeps its connection open.
fn hold_connection(port: u16, kind: SourceKind, source_id: u32) -> TcpStream {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(DEADLINE))
        .expect("read timeout");
    let mut out = BytesMut::new();
    ClientMessage::Hello(Hello {
        version: VERSION,
        kind,
        source_id,
    })
    .encode(&mut out);
    stream.write_all(&out).expect("send HELLO");
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).expect("read the answer");
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).expect("read the answer");
    let answer = ServerMessage::decode(bytes::Bytes::from(body)).expect("decode the answer");
    assert!(
        matches!(answer, ServerMessage::Welcome { .. }),
        "holder not welcomed: {answer:?}"
    );
    stream
}

/// Per source id, the (priority, first_seq) of each processed batch, in processing order.
fn processing_order(log: &[String]) -> HashMap<u32, Vec<(String, u64)>> {
    let mut order: HashMap<u32, Vec<(String, u64)>> = HashMap::new();
    for line in log
        .iter()
        .filter(|l| l.contains("aggregator::pipeline::processor") && l.contains("processed"))
    {
        let (Some(id), Some(priority), Some(first)) = (
            field(line, "source_id"),
            field(line, "priority"),
            first_sequence(line),
        ) else {
            continue;
        };
        order
            .entry(id.parse().expect("source id"))
            .or_default()
            .push((priority, first));
    }
    order
}

/// The `first_seq=N` of a processor's debug line.
fn first_sequence(line: &str) -> Option<u64> {
    Some(field(line, "first_seq")?.parse().expect("sequence"))
}

#[test]
fn brief_scenario_acknowledges_all_45_frames_and_processes_emergencies_first() {
    let setup = Setup::new(1024);
    let mut daemon = setup.start();
    let sim = setup.sim(&["--scenario", "brief", "--require-all-acked"]);
    assert!(
        sim.status.success(),
        "sim failed:\n{}\n{}",
        sim.stdout,
        sim.stderr
    );
    let total = sim.total();
    assert_eq!(number(total, "sent"), 45);
    assert_eq!(number(total, "acked"), 45);
    assert_eq!(number(total, "emergency_acked"), 8);
    assert_eq!(number(total, "completed"), 5);

    let (status, drain) = terminate(&mut daemon);
    // Read after the exit, so every line the daemon wrote is in.
    let log = daemon.log.lock().unwrap().clone();
    assert!(status.success(), "daemon exit: {status}");
    for key in ["accepted", "processed", "archived"] {
        assert_eq!(number(&drain, key), 45, "{key} in {drain:?}");
    }
    assert_eq!(number(&drain, "unacknowledged"), 0);

    let order = processing_order(&log);
    for id in 0..4u32 {
        let batches = order
            .get(&id)
            .unwrap_or_else(|| panic!("source {id} never processed"));
        let first_routine = batches.iter().position(|(p, _)| p == "routine");
        let last_emergency = batches.iter().rposition(|(p, _)| p == "emergency");
        assert!(
            matches!((last_emergency, first_routine), (Some(e), Some(r)) if e < r),
            "source {id}: emergency batches must come before routine ones: {batches:?}"
        );
    }
    assert!(order
        .get(&1000)
        .is_some_and(|b| b.iter().all(|(p, _)| p == "routine")));
}

#[test]
fn fifty_sources_every_frame_acknowledged_and_counted_on_both_sides() {
    let setup = Setup::new(1024);
    let mut daemon = setup.start();
    let sim = setup.sim(&[
        "--scenario",
        "default",
        "--duration",
        "2",
        "--require-all-acked",
    ]);
    assert!(
        sim.status.success(),
        "sim failed:\n{}\n{}",
        sim.stdout,
        sim.stderr
    );
    let total = sim.total();
    assert_eq!(number(total, "completed"), 50);
    let sent = number(total, "sent");
    assert!(
        sent > 5_000,
        "a realistic rate for 2 s sends thousands of frames: {total}"
    );
    assert_eq!(number(total, "acked"), sent);
    assert_eq!(number(total, "resent"), 0);

    let (status, drain) = terminate(&mut daemon);
    assert!(status.success(), "daemon exit: {status}");
    for key in ["accepted", "processed", "archived"] {
        assert_eq!(number(&drain, key), sent, "{key} in {drain:?}");
    }
}

#[test]
fn a_daemon_restart_under_load_loses_nothing() {
    let setup = Setup::new(1024);
    let mut first = setup.start();
    let sim = setup.sim_under_load();
    wait_until_mid_stream(&first);
    let (status, drain_first) = terminate(&mut first);
    assert!(status.success(), "first daemon: {status}: {drain_first}");
    let mut second = setup.start();

    let sim = sim.wait();
    assert!(
        sim.status.success(),
        "sim failed:\n{}\n{}",
        sim.stdout,
        sim.stderr
    );
    let total = sim.total().to_string();
    let sent = number(&total, "sent");
    assert_eq!(number(&total, "acked"), sent);
    assert!(
        number(&total, "connections") > 50,
        "every source reconnected: {total}"
    );
    assert!(field(&total, "resent").is_some());

    let (status, drain_second) = terminate(&mut second);
    assert!(status.success(), "second daemon: {status}: {drain_second}");
    let processed = number(&drain_first, "processed") + number(&drain_second, "processed");
    let accepted = number(&drain_first, "accepted") + number(&drain_second, "accepted");
    assert!(
        processed >= sent,
        "every frame processed at least once: {processed} < {sent}"
    );
    // A frame is accepted again by the second daemon only if the first accepted it without the
    // simulator learning so (the connection broke before the final acknowledgement arrived): such
    // a frame was resent, so the difference is bounded by the resent count.
    let resent = number(&total, "resent");
    eprintln!("restart: sent={sent} accepted={accepted} processed={processed} resent={resent}");
    assert!(
        accepted >= sent && accepted - sent <= resent,
        "accepted {accepted}, sent {sent}, resent {resent}"
    );
    assert_eq!(
        number(&drain_first, "unacknowledged") + number(&drain_second, "unacknowledged"),
        0
    );
}

#[test]
fn refusals_are_reported_with_their_reason_and_end_the_run() {
    // Two uplink connections at most: two holders fill it for the last case.
    let setup = Setup::new(2);
    let _daemon = setup.start();
    let one = ["--uplinks", "1", "--replays", "0", "--frames", "5"];

    // Wrong kind: a live uplink pointed at the replay listener.
    let sim = setup.sim_at(setup.replay, &one);
    assert!(!sim.status.success());
    assert!(sim.stderr.contains("WrongKind"), "stderr: {}", sim.stderr);
    assert!(
        sim.stdout.contains("refused: WrongKind"),
        "stdout: {}",
        sim.stdout
    );

    // Duplicate id: uplink 0 is already connected.
    let holder = hold_connection(setup.uplink, SourceKind::LiveUplink, 0);
    let sim = setup.sim(&one);
    assert!(!sim.status.success());
    assert!(
        sim.stderr.contains("DuplicateSource"),
        "stderr: {}",
        sim.stderr
    );

    // Over the limit: two connections are open.
    let second = hold_connection(setup.uplink, SourceKind::LiveUplink, 1);
    let mut args = vec!["--uplinks", "1", "--replays", "0", "--frames", "5"];
    args.extend_from_slice(&["--give-up-after", "5"]);
    let sim = setup.sim(&args);
    assert!(!sim.status.success());
    assert!(
        sim.stderr.contains("TooManyConnections"),
        "stderr: {}",
        sim.stderr
    );
    drop((holder, second));
}

/// With no daemon listening the simulator gives up within seconds, naming each address once
/// (not three times for each of its sources), whatever `--give-up-after` says: that is the
/// patience of reconnecting after a first connection, here longer than the wait for the exit.
#[test]
fn with_no_daemon_listening_the_simulator_says_so_once_per_address_and_fails() {
    // Ports that were free a moment ago: nothing listens there.
    let addresses = [free_port(), free_port()].map(|port| format!("127.0.0.1:{port}"));
    let mut sim = Command::new(SIM);
    sim.args(["--uplink", &addresses[0], "--replay", &addresses[1]])
        .args(["--progress", "off", "--give-up-after", "60"])
        // Standard error is to hold nothing but the addresses: no log a RUST_LOG would add.
        .env_remove("RUST_LOG");
    let sim = SimRun::start(sim).wait();
    assert_eq!(sim.status.code(), Some(1), "{}", sim.stderr);
    let messages = addresses.map(|address| {
        format!("uplink-sim: cannot connect to {address}: is the aggregator running?")
    });
    for line in sim.stderr.lines() {
        assert!(
            messages.iter().any(|m| line.starts_with(m.as_str())),
            "only the addresses, each once: {}",
            sim.stderr
        );
    }
    for message in &messages {
        assert_eq!(
            sim.stderr.matches(message.as_str()).count(),
            1,
            "{}",
            sim.stderr
        );
    }
    assert_eq!(sim.stdout, "", "nothing was sent: no summary");
}

/// With no daemon the simulator says so before it shows any progress, and well before the 3 s a
/// source that has never connected keeps trying (it once showed 3 s of progress ending `sources
/// 50/50 done, 0 connected` first). With one of its two addresses listening, no source starts.
#[test]
fn with_no_daemon_listening_the_simulator_fails_before_showing_progress() {
    let listening = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listening = listening.local_addr().unwrap().to_string();
    let nothing = format!("127.0.0.1:{}", free_port());
    for (uplink, replay) in [(&nothing, &nothing), (&listening, &nothing)] {
        let mut sim = Command::new(SIM);
        sim.args(["--uplink", uplink, "--replay", replay])
            .args(["--progress", "lines", "--progress-ms", "10"])
            .env_remove("RUST_LOG");
        let started = Instant::now();
        let sim = SimRun::start(sim).wait();
        let took = started.elapsed();
        assert_eq!(sim.status.code(), Some(1), "{}", sim.stderr);
        assert_eq!(sim.stdout, "", "no progress, no summary");
        assert_eq!(
            sim.stderr.lines().collect::<Vec<_>>(),
            [format!(
                "uplink-sim: cannot connect to {nothing}: is the aggregator running? \
                 (Connection refused (os error 111))"
            )],
        );
        assert!(took < Duration::from_secs(3), "took {took:?}");
    }
}

/// `--give-up-after` is how long a source that has been connected keeps reconnecting: after its
/// daemon dies it gives up then, with the last error, not as a run that never found a daemon.
#[test]
fn after_a_first_connection_a_source_gives_up_after_give_up_after() {
    let setup = Setup::new(16);
    let mut daemon = setup.start();
    let sim = setup.spawn_sim(&[
        "--uplinks",
        "1",
        "--replays",
        "0",
        "--rate",
        "100",
        "--duration",
        "60",
        "--give-up-after",
        "1",
    ]);
    daemon.wait_for(|l| l.contains("source registered"));
    daemon.kill();
    let sim = sim.wait();
    assert_eq!(sim.status.code(), Some(1), "{}", sim.stderr);
    let address = format!("127.0.0.1:{}", setup.uplink);
    assert!(
        sim.stderr.contains(&format!(
            "failed: no connection for 1000 ms; last error: cannot connect to {address}: "
        )),
        "{}",
        sim.stderr
    );
    assert!(
        !sim.stderr.contains("is the aggregator running?"),
        "{}",
        sim.stderr
    );
}

/// `deploy/demo.sh` on the binaries under test, in a scratch copy of what it reads: it listens
/// where `DEMO_*_PORT` say, names the dashboard's URL, publishes its catalog while the first
/// scenario's sources stream (every source of both scenarios holds it; it once came after the
/// brief scenario had ended), keeps and verifies its archive, ends with its verdict, and of the
/// processor's per-batch debug lines shows only a few emergency batches, each followed by the
/// routine batch of its source, sent before it, that it overtook; its CCSDS station's packets are
/// stored and served by the TM server.
#[test]
fn the_demo_keeps_its_archive_shows_a_few_overtakes_and_ends_with_its_verdict() {
    let scratch = common::TempDir::new("demo");
    let clone = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    for file in ["deploy/demo.sh", "config/aggregator.toml"] {
        let to = scratch.0.join(file);
        std::fs::create_dir_all(to.parent().expect("a folder")).expect("scratch folder");
        std::fs::copy(clone.join(file), &to).expect("copy into the scratch clone");
    }
    let ports = [free_port(), free_port(), free_port()];
    let [station, tm] = [free_port(), free_port()];
    let mut demo = Command::new("bash");
    // Standard error into standard output, so that the order of the lines is the terminal's.
    demo.args(["-c", "exec \"$0\" 2>&1"])
        .arg(scratch.0.join("deploy/demo.sh"))
        .env(
            "DEMO_BIN_DIR",
            std::path::Path::new(AGGREGATOR).parent().expect("bin dir"),
        )
        .env_remove("DEMO_SCENARIOS")
        .env("DEMO_UPLINK_PORT", ports[0].to_string())
        .env("DEMO_REPLAY_PORT", ports[1].to_string())
        .env("DEMO_MONITOR_PORT", ports[2].to_string())
        .env("DEMO_STATION_PORT", station.to_string())
        .env("DEMO_TM_PORT", tm.to_string())
        // The only debug lines are to be the demo's picks: no simulator log a RUST_LOG would add.
        .env_remove("RUST_LOG");
    let demo = SimRun::start(demo).wait();
    let output = demo.stdout;
    assert!(demo.status.success(), "{output}");
    let verdict = output.lines().last().unwrap_or_default();
    assert!(verdict.starts_with("demo: OK: "), "{output}");
    let [uplink, replay, monitor] = ports;
    assert!(
        output.contains(&format!(
            "uplink=127.0.0.1:{uplink} replay=127.0.0.1:{replay} monitor=127.0.0.1:{monitor}"
        )),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "dashboard, live while the simulator runs: http://127.0.0.1:{monitor}/"
        )),
        "{output}"
    );
    // The catalog published mid-run, acknowledged by every source of both scenarios.
    assert!(output.contains("(while the sources stream)"), "{output}");
    assert!(output.contains("catalog version 1 published"), "{output}");
    for held in [
        "uplink-sim  default: catalog: version 1 held by 50 of 50 sources",
        "uplink-sim  brief: catalog: version 1 held by 5 of 5 sources",
    ] {
        assert!(output.contains(held), "{held:?} in {output}");
    }

    let archive = scratch.0.join("demo-run/archive");
    assert!(
        output.contains(&format!(
            "demo: aggregator archive verify {}",
            archive.display()
        )),
        "{output}"
    );
    // The station's packets are in the archive beside the uplinks' frames, and the TM server
    // served each of them to the reader.
    let (valid, verified) = verify(&archive);
    assert!(valid, "{verified}");
    assert_eq!(
        number(&verified, "frames"),
        number(verdict, "sent") + number(verdict, "station_packets"),
        "{verified}"
    );
    assert_eq!(number(verdict, "station_packets"), 4000, "{verdict}");
    assert_eq!(number(verdict, "served"), 4000, "{verdict}");

    let debug: Vec<&str> = output.lines().filter(|l| l.contains(" DEBUG ")).collect();
    assert!(
        (2..=6).contains(&debug.len()) && debug.len() % 2 == 0,
        "a few pairs of lines: {output}"
    );
    for pair in debug.chunks(2) {
        let (emergency, routine) = (pair[0], pair[1]);
        assert_eq!(
            field(emergency, "source_id"),
            field(routine, "source_id"),
            "{pair:?}"
        );
        assert_eq!(field(emergency, "priority").as_deref(), Some("emergency"));
        assert_eq!(field(routine, "priority").as_deref(), Some("routine"));
        assert!(
            matches!(
                (first_sequence(routine), first_sequence(emergency)),
                (Some(r), Some(e)) if r < e
            ),
            "{pair:?}"
        );
    }
}

/// `aggregator archive verify DIR`: (exit success, the "verify total" line).
fn verify(archive: &std::path::Path) -> (bool, String) {
    let out = Command::new(AGGREGATOR)
        .args(["archive", "verify"])
        .arg(archive)
        .output()
        .expect("run aggregator archive verify");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let total = stdout
        .lines()
        .find(|l| l.starts_with("verify total:"))
        .unwrap_or_else(|| panic!("no verify total line:\n{stdout}"))
        .to_string();
    (out.status.success(), total)
}

/// An archive's frames per source, sorted by sequence: (sequence, priority, payload).
type ArchivedFrames = HashMap<(SourceKind, u32), Vec<(u64, aggregator::Priority, bytes::Bytes)>>;

/// Every frame record in an archive, per source, sorted by sequence.
fn archived_frames(archive: &std::path::Path) -> ArchivedFrames {
    use aggregator::archive::format::{self, Entry};
    let mut frames: HashMap<_, Vec<_>> = HashMap::new();
    let shards = aggregator::archive::format::list_shard_segments(archive).expect("list segments");
    for (_, path) in shards.into_iter().flat_map(|shard| shard.segments) {
        let scan = format::read_segment(&path).expect("read segment");
        for (_, entry) in scan.entries {
            if let Entry::Frame(f) = entry {
                frames
                    .entry((f.kind, f.source_id))
                    .or_default()
                    .push((f.sequence, f.priority, f.payload));
            }
        }
    }
    for list in frames.values_mut() {
        list.sort_by_key(|(sequence, _, _)| *sequence);
    }
    frames
}

#[test]
fn sigkill_under_load_then_restart_stores_every_acknowledged_frame_exactly_once() {
    let setup = Setup::new(1024);
    let mut first = setup.start();
    let sim = setup.sim_under_load();
    wait_until_mid_stream(&first);
    first.kill();
    let mut second = setup.start();
    second.wait_for(|l| l.contains("recovered resume points"));

    let sim = sim.wait();
    assert!(
        sim.status.success(),
        "sim failed:\n{}\n{}",
        sim.stdout,
        sim.stderr
    );
    let total = sim.total().to_string();
    let sent = number(&total, "sent");
    assert_eq!(number(&total, "acked"), sent, "{total}");
    let (status, drain) = terminate(&mut second);
    assert!(status.success(), "second daemon: {status}: {drain}");

    // Every frame the simulator saw acknowledged is in the archive, exactly once.
    let (valid, verified) = verify(&setup.archive);
    assert!(valid, "archive verify failed: {verified}");
    assert_eq!(number(&verified, "frames"), sent, "{verified} / {total}");
    assert_eq!(number(&verified, "duplicates"), 0, "{verified}");
    assert_eq!(number(&verified, "missing"), 0, "{verified}");
}

/// After a SIGKILL every source resumes after every frame it saw acknowledged. The daemon writes a
/// source's WATERMARK with its next frames, so a source that has gone quiet since its last ACK has
/// frames stored above the watermark on disk; recovery passes the frames stored contiguously above
/// it. (It once resumed such a source up to 1,280 frames below its last ACK: nothing was lost, but
/// a source that trusts WELCOME resent what was stored.)
#[tokio::test]
async fn after_a_kill_every_source_resumes_after_every_frame_it_saw_acknowledged() {
    let setup = Setup::new(1024);
    let mut first = setup.start();
    let sim = setup.sim(&["--scenario", "brief", "--require-all-acked"]);
    assert!(sim.status.success(), "sim failed:\n{}", sim.stderr);
    first.kill();

    let _second = setup.start();
    // The brief scenario: uplinks 0..=3 sent frames 0..=9 (0 and 1 emergencies), replay 1000 sent
    // frames 0..=4; the simulator saw them all acknowledged.
    let sources = [0, 1, 2, 3].map(|id| (SourceKind::LiveUplink, id, 9));
    let replay = (SourceKind::ArchivedReplay, 1000, 4);
    for (kind, id, last) in sources.into_iter().chain([replay]) {
        let port = match kind {
            SourceKind::LiveUplink => setup.uplink,
            SourceKind::ArchivedReplay => setup.replay,
        };
        let mut client = Client::connect(std::net::SocketAddr::from(([127, 0, 0, 1], port))).await;
        client.send_raw(&hello_bytes(VERSION, kind, id)).await;
        assert_eq!(client.expect_welcome().await, Some(last), "{kind:?} {id}");
    }
}

/// A source whose first frame is not sequence 0 and whose frames the archive holds without a
/// WATERMARK (a kill right after they were stored) resumes below them: nothing contiguous from 0
/// is known stored. It may come back and resend nothing but those frames: each is dropped as a
/// duplicate and acknowledged, so no batch of the source reaches the archive. The archive reads
/// the acknowledgement from the source's ledger all the same, and the clean stop records it: the
/// next start resumes the source after those frames, instead of asking for them once more.
#[tokio::test]
async fn a_source_that_resends_only_stored_frames_resumes_after_them_next_time() {
    let setup = Setup::new(1024);
    let uplink = std::net::SocketAddr::from(([127, 0, 0, 1], setup.uplink));
    // Welcomed as live uplink 1: the connection and its resume point.
    let connect = || async {
        let mut client = Client::connect(uplink).await;
        client
            .send_raw(&hello_bytes(VERSION, SourceKind::LiveUplink, 1))
            .await;
        let resume_after = client.expect_welcome().await;
        (client, resume_after)
    };

    let mut first = setup.start();
    let (mut client, _) = connect().await;
    client.send_routine(5..=9).await;
    client.finish_sending().await;
    assert_eq!(client.read_to_close().await.final_ack, Some(9));
    first.kill();

    let mut second = setup.start();
    let (mut client, resume_after) = connect().await;
    assert_eq!(resume_after, None);
    client.send_routine(5..=9).await;
    client.finish_sending().await;
    assert_eq!(client.read_to_close().await.final_ack, Some(9));
    let (status, drain) = terminate(&mut second);
    assert!(status.success(), "{status}: {drain}");
    assert_eq!(number(&drain, "accepted"), 0, "{drain}");
    assert_eq!(number(&drain, "duplicates"), 5, "{drain}");

    let _third = setup.start();
    let (mut client, resume_after) = connect().await;
    assert_eq!(resume_after, Some(9));
    client.send_routine([10]).await;
    client.finish_sending().await;
    assert_eq!(client.read_to_close().await.final_ack, Some(10));
}

#[test]
fn a_torn_last_record_is_cut_on_start_and_reported() {
    let setup = Setup::new(16);
    let mut daemon = setup.start();
    let sim = setup.sim(&["--scenario", "brief", "--require-all-acked"]);
    assert!(sim.status.success(), "{}\n{}", sim.stdout, sim.stderr);
    let (status, _) = terminate(&mut daemon);
    assert!(status.success());

    let segments = aggregator::archive::format::list_segments(&setup.archive).unwrap();
    let (_, last) = segments.last().expect("a segment");
    let len = std::fs::metadata(last).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(last).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);
    assert!(
        !verify(&setup.archive).0,
        "verify must notice the torn record"
    );

    let mut restarted = setup.start();
    let report = restarted.wait_for(|l| l.contains("truncated a torn tail"));
    assert!(report.contains(&last.display().to_string()), "{report}");
    let (status, _) = terminate(&mut restarted);
    assert!(status.success());
    let (valid, verified) = verify(&setup.archive);
    assert!(valid, "{verified}");
}

#[test]
fn an_archive_replayed_into_a_second_daemon_gives_the_same_frames_in_the_same_order() {
    let a = Setup::new(16);
    let mut daemon_a = a.start();
    let sim = a.sim(&[
        "--uplinks",
        "4",
        "--replays",
        "0",
        "--frames",
        "300",
        "--rate",
        "max",
        "--emergency-share",
        "0.1",
        "--require-all-acked",
    ]);
    assert!(sim.status.success(), "{}\n{}", sim.stdout, sim.stderr);
    assert!(terminate(&mut daemon_a).0.success());

    let b = Setup::new(16);
    let mut daemon_b = b.start();
    let archive_a = a.archive.display().to_string();
    let sim = b.sim(&["--replay-archive", &archive_a, "--require-all-acked"]);
    assert!(sim.status.success(), "{}\n{}", sim.stdout, sim.stderr);
    assert!(terminate(&mut daemon_b).0.success());

    let frames_a = archived_frames(&a.archive);
    let frames_b = archived_frames(&b.archive);
    assert_eq!(frames_a.len(), 4);
    for ((kind, id), frames) in &frames_a {
        assert_eq!(*kind, SourceKind::LiveUplink);
        assert_eq!(frames.len(), 300);
        let replayed = frames_b
            .get(&(SourceKind::ArchivedReplay, *id))
            .unwrap_or_else(|| panic!("source {id} missing from the replayed archive"));
        assert_eq!(replayed, frames, "source {id}");
    }
    assert_eq!(frames_b.len(), frames_a.len());
}

#[test]
fn an_archive_directory_that_cannot_be_created_stops_the_daemon_with_its_path() {
    let setup = Setup::new(16);
    std::fs::write(&setup.archive, b"a file where the directory should be").unwrap();
    let out = Command::new(AGGREGATOR)
        .arg("--config")
        .arg(&setup.config)
        .output()
        .expect("run the aggregator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("cannot create the archive directory")
            && stderr.contains(&setup.archive.display().to_string()),
        "{stderr}"
    );
    let _ = std::fs::remove_file(&setup.archive);
}

#[test]
fn a_second_daemon_on_the_same_archive_is_refused() {
    let setup = Setup::new(16);
    let _first = setup.start();
    let other = Setup::new(16);
    let text = std::fs::read_to_string(&other.config).unwrap().replace(
        &other.archive.display().to_string(),
        &setup.archive.display().to_string(),
    );
    std::fs::write(&other.config, text).unwrap();
    let out = Command::new(AGGREGATOR)
        .arg("--config")
        .arg(&other.config)
        .output()
        .expect("run the aggregator");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("in use by another aggregator process"),
        "{stderr}"
    );
}

/// The archive's disk fills under load (a 4 MiB tmpfs), and an operator grows it: writes fail
/// with `ENOSPC`, the daemon holds those frames and acknowledges nothing past them, and once
/// space returns it writes them, by itself, without a restart. Every frame the simulator sent is
/// acknowledged, and the archive holds each exactly once. (It once lost hundreds: a failed group
/// was dropped, and the frames stored after it moved the acknowledgement over it.) One shard,
/// whatever the cores: each shard reserves its segment and the next (2 MiB here) as it starts, so
/// two filled the disk before the first frame and the start failed now and then.
#[test]
#[ignore = "needs root (mounts a tmpfs); .ci/run runs it"]
fn a_full_disk_loses_nothing_and_the_daemon_recovers_when_space_returns() {
    let disk = Tmpfs::mount("aggregator-disk-full", "4m");
    let archive = disk.dir.join("archive");
    let extra = "segment_bytes = 1048576\n\n[runtime]\nshards = 1\n";
    let setup = Setup::with_archive(1024, Some(archive.clone()), extra);
    let mut daemon = setup.start();
    let sim = setup.spawn_sim(&[
        "--scenario",
        "default",
        "--rate",
        "2000",
        "--duration",
        "2",
        "--give-up-after",
        "60",
        "--require-all-acked",
    ]);
    daemon.wait_for(|l| l.contains("archive write failed"));
    disk.resize("256m");
    daemon.wait_for(|l| l.contains("archive recovered"));

    let sim = sim.wait();
    assert!(sim.status.success(), "sim failed:\n{}", sim.stderr);
    let total = sim.total().to_string();
    let sent = number(&total, "sent");
    assert_eq!(number(&total, "acked"), sent, "{total}");
    let (status, drain) = terminate(&mut daemon);
    assert!(status.success(), "{status}: {drain}");
    let (valid, verified) = verify(&archive);
    assert!(valid, "archive verify failed: {verified}");
    assert_eq!(number(&verified, "frames"), sent, "{verified} / {total}");
    assert_eq!(number(&verified, "duplicates"), 0, "{verified}");
    assert_eq!(number(&verified, "missing"), 0, "{verified}");
}

/// A slow source (a frame every 500 ms) against a daemon whose idle timeout is 300 ms: with a keep-alive
/// every 100 ms it keeps one connection for the whole run; with none before 10 s, the daemon closes
/// it as idle between frames and it has to reconnect. Either way every frame is acknowledged.
#[test]
fn uplink_sim_pings_to_keep_a_slow_source_connected() {
    let setup = Setup::with_archive(1024, None, "\n[connection]\nidle_timeout_ms = 300\n");
    let _daemon = setup.start();
    let connections = |keepalive_ms: &str| {
        let sim = setup.sim(&[
            "--uplinks",
            "1",
            "--replays",
            "0",
            "--rate",
            "2",
            "--batch",
            "1",
            "--duration",
            "2",
            "--keepalive-ms",
            keepalive_ms,
            "--require-all-acked",
        ]);
        assert!(sim.status.success(), "{}", sim.stderr);
        number(sim.total(), "connections")
    };
    assert_eq!(connections("100"), 1, "kept alive between frames");
    assert!(connections("10000") > 1, "closed as idle between frames");
}
