//! A clock that steps never deletes, hides or misdates a frame: the `aggregator` binary run under
//! libfaketime (Debian's `faketime`), so that its wall clock steps while `CLOCK_MONOTONIC` does
//! not, as under an NTP or GPS step; forward a year and ten, back an hour and a day, while it runs
//! and across a restart, with `[archive.retention] max_age` set (docs/guarantees.md, "Time").
//!
//! Each test is ignored in a plain `cargo test` (it needs the library); `.ci/run` installs it and
//! runs them.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::SourceKind;
use common::process::Daemon;
use common::{http_get, http_get_json, Client, TempDir, PATIENCE};
use futures_util::StreamExt;
use tokio_tungstenite::tungstenite::Message;

/// libfaketime's build for threaded programs (the plain one sometimes hands a thread the real
/// time).
const FAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

const YEAR: i64 = 365 * 86_400;
const DAY: i64 = 86_400;

/// Sources that store in both shards, and the frames each sends at a time.
const SOURCES: [u32; 4] = [1, 2, 3, 4];
const BATCH: u64 = 150;

/// The wall clock of the daemons a test starts: an offset in seconds, in a file libfaketime reads
/// at every call, so that rewriting the file steps the clock at once.
struct FakeClock {
    file: PathBuf,
}

impl FakeClock {
    fn new(dir: &Path) -> FakeClock {
        assert!(
            Path::new(FAKETIME).exists(),
            "{FAKETIME} is missing: install Debian's faketime"
        );
        let clock = FakeClock {
            file: dir.join("faketime"),
        };
        clock.set(0);
        clock
    }

    /// Steps the clock to `offset` seconds from the real time.
    fn set(&self, offset: i64) {
        std::fs::write(&self.file, format!("{offset:+}\n")).unwrap();
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("LD_PRELOAD", FAKETIME.to_string()),
            ("FAKETIME_TIMESTAMP_FILE", self.file.display().to_string()),
            ("FAKETIME_NO_CACHE", "1".into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1".into()),
        ]
    }

    /// `aggregator ARGS` under this clock: its exit status and output.
    fn tool(&self, args: &[&str]) -> std::process::Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_aggregator"));
        command.args(args).envs(self.env());
        command.output().unwrap()
    }
}

/// A daemon's directory (removed at the end), its fake clock and its config: two shards, small
/// segments (a batch fills several), retention's check every 100 ms and `retention`'s limits.
struct Station {
    dir: TempDir,
    clock: FakeClock,
    config: String,
}

impl Station {
    fn new(name: &str, retention: &str, extra: &str) -> Station {
        let dir = TempDir::new(&format!("clock-steps-{name}"));
        let config = format!(
            "[uplink]\nlisten = \"127.0.0.1:0\"\n[replay]\nlisten = \"127.0.0.1:0\"\n\
             [monitor]\nlisten = \"127.0.0.1:0\"\n[runtime]\nshards = 2\n\
             [dashboard]\nstats_interval_ms = 50\n\
             [archive]\ndir = \"{}\"\nsegment_bytes = 8192\n\
             [archive.retention]\ncheck_interval_ms = 100\n{retention}\n{extra}",
            dir.0.join("archive").display()
        );
        Station {
            clock: FakeClock::new(&dir.0),
            dir,
            config,
        }
    }

    /// Starts the daemon under the fake clock.
    fn start(&self) -> Daemon {
        Daemon::start_in_env(&self.dir.0, &self.config, &self.clock.env())
    }

    fn archive(&self) -> PathBuf {
        self.dir.0.join("archive")
    }
}

/// Stores frames `first..first + BATCH` of every source, each acknowledged.
async fn store(uplink: SocketAddr, first: u64) {
    let payloads: Vec<Vec<u8>> = (first..first + BATCH)
        .map(|seq| format!("{seq:0>64}").into_bytes())
        .collect();
    for id in SOURCES {
        Client::store(uplink, SourceKind::LiveUplink, id, first, &payloads).await;
    }
}

async fn stats(daemon: &Daemon) -> serde_json::Value {
    http_get_json(daemon.monitor, "/stats").await
}

/// Waits until `/stats` satisfies `condition`.
async fn wait_stats(daemon: &Daemon, what: &str, condition: impl Fn(&serde_json::Value) -> bool) {
    let started = Instant::now();
    loop {
        let stats = stats(daemon).await;
        if condition(&stats) {
            return;
        }
        assert!(started.elapsed() < PATIENCE, "{what}: {stats:#}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The segment files of every shard of the archive in `root`.
fn segment_files(root: &Path) -> u64 {
    let shards = [root.to_path_buf(), root.join("shard-01")];
    let count = |dir: &PathBuf| {
        aggregator::archive::format::list_segments(dir).map_or(0, |s| s.len() as u64)
    };
    shards.iter().map(count).sum()
}

/// Waits until retention has checked the archive as it is on disk now (its report counts every
/// segment file there): a check after whatever came before.
async fn retention_checked(daemon: &Daemon, root: &Path) {
    let on_disk = segment_files(root);
    wait_stats(daemon, "retention checks the segments on disk", |s| {
        s["stats"]["archive_segments"] == on_disk
    })
    .await;
}

/// Every frame the archive at `root` holds, as (source, sequence, received ns), read by the tool.
fn archived(root: &Path) -> Vec<(u32, u64, u64)> {
    let mut frames = Vec::new();
    for dir in [root.to_path_buf(), root.join("shard-01")] {
        for (_, frame) in common::stored_frames(&dir) {
            frames.push((frame.source_id, frame.sequence, frame.received_unix_ns));
        }
    }
    frames.sort_unstable();
    frames
}

/// Each source's sequences `0..until`, as `archived` lists them without their times.
fn every_sequence(until: u64) -> Vec<(u32, u64)> {
    let per_source = |id| (0..until).map(move |seq| (id, seq));
    SOURCES.into_iter().flat_map(per_source).collect()
}

fn without_times(frames: &[(u32, u64, u64)]) -> Vec<(u32, u64)> {
    frames.iter().map(|&(id, seq, _)| (id, seq)).collect()
}

/// The archive clock of `daemon` now, from its `/stats`.
async fn archive_now(daemon: &Daemon) -> u64 {
    let now = stats(daemon).await["clock"]["now"]
        .as_str()
        .unwrap()
        .to_owned();
    aggregator::domain::units::parse_time(&now, SystemTime::now()).unwrap()
}

fn stop(daemon: &mut Daemon) {
    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(PATIENCE);
    assert!(status.success(), "the drain was clean");
}

/// Runs a year (or ten) forward while the daemon stores, and back: nothing is deleted by the
/// 30-day `max_age`, nothing is stamped in the wrong year, the step is noticed, logged, counted,
/// recorded in the archive and said by `/healthz` until the clock is back.
async fn forward_step_while_running(step: i64) {
    let station = Station::new(&format!("forward-{step}"), "max_age = \"30d\"", "");
    let (clock, mut daemon) = (&station.clock, station.start());
    let started = archive_now(&daemon).await;
    store(daemon.uplink, 0).await;

    clock.set(step);
    wait_stats(&daemon, "the step is noticed", |s| s["clock"]["steps"] == 1).await;
    store(daemon.uplink, BATCH).await;
    retention_checked(&daemon, &station.archive()).await;
    let s = stats(&daemon).await;
    assert_eq!(s["stats"]["retention_deleted_segments"], 0, "{s:#}");
    assert_eq!(s["clock"]["in_doubt"], true, "{s:#}");
    let (status, _, health) = http_get(daemon.monitor, "/healthz").await;
    assert_eq!(status, 503, "{health}");
    assert!(
        health.contains("\"clock\"") && health.contains("degraded"),
        "{health}"
    );
    let newest = &s["archive"]["newest_received"];
    let in_year = format!("\"{}", &unix_ns_to_rfc3339(started)[..4]);
    assert!(newest.to_string().starts_with(&in_year), "{newest}");

    clock.set(0);
    wait_stats(&daemon, "the step back is noticed", |s| {
        s["clock"]["steps"] == 2 && s["clock"]["in_doubt"] == false
    })
    .await;
    store(daemon.uplink, 2 * BATCH).await;
    let ended = archive_now(&daemon).await;
    stop(&mut daemon);

    let frames = archived(&station.archive());
    assert_eq!(without_times(&frames), every_sequence(3 * BATCH));
    let outside = frames.iter().filter(|f| !(started..=ended).contains(&f.2));
    assert_eq!(
        outside.count(),
        0,
        "every stamp within the run, by the archive clock"
    );
    let verify = clock.tool(&["archive", "verify", station.archive().to_str().unwrap()]);
    let report = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{report}");
    assert!(report.contains(" clock_steps=2"), "{report}");
    assert!(report.contains("the wall clock stepped"), "{report}");
}

#[tokio::test]
#[ignore = "needs Debian's faketime (libfaketimeMT.so.1); .ci/run installs it"]
async fn a_year_forward_while_running_deletes_and_misdates_nothing() {
    forward_step_while_running(YEAR).await;
}

#[tokio::test]
#[ignore = "needs Debian's faketime (libfaketimeMT.so.1); .ci/run installs it"]
async fn ten_years_forward_while_running_deletes_and_misdates_nothing() {
    forward_step_while_running(10 * YEAR).await;
}

/// With a `max_age` of 3 s, a year's step forward and back again: retention deletes each segment
/// once 3 s of real time have passed since its newest frame, never sooner, and what was stored
/// during the step is deleted like the rest (no segment stamped a year ahead holds it back).
#[tokio::test]
#[ignore = "needs Debian's faketime (libfaketimeMT.so.1); .ci/run installs it"]
async fn retention_deletes_by_real_elapsed_time_across_a_step() {
    const MAX_AGE: Duration = Duration::from_secs(3);
    let station = Station::new("elapsed", "max_age = \"3s\"", "");
    let (clock, daemon) = (&station.clock, station.start());
    let sent = Instant::now();
    store(daemon.uplink, 0).await;
    clock.set(YEAR);
    store(daemon.uplink, BATCH).await;
    clock.set(0);
    store(daemon.uplink, 2 * BATCH).await;
    // Until 3 s after the first frame was sent, nothing goes; then what the three batches
    // filled goes, all but each shard's newest segment.
    let started = Instant::now();
    loop {
        let s = stats(&daemon).await;
        let deleted = s["stats"]["retention_deleted_segments"].as_u64().unwrap();
        if deleted > 0 {
            assert!(
                sent.elapsed() >= MAX_AGE,
                "deleted {:?} after the first frame",
                sent.elapsed()
            );
        }
        let left = archived(&station.archive());
        if left.iter().all(|f| f.1 >= 2 * BATCH) && deleted > 0 {
            break;
        }
        assert!(
            started.elapsed() < MAX_AGE + PATIENCE,
            "retention held back: {s:#}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The clock back an hour, and a day, while the daemon runs: a query without `to` returns every
/// frame, completeness counts every frame, a window ends by the archive clock, and the feed's
/// received times are the archive's.
async fn back_while_running(step: i64) {
    let feed = "[feed]\nmax_frames_per_sec = 1000000\n";
    let station = Station::new(&format!("back-{step}"), "", feed);
    let (clock, mut daemon) = (&station.clock, station.start());
    let started = archive_now(&daemon).await;
    let feed_url = format!("ws://{}/feed", daemon.monitor);
    let (mut feed, _) = tokio_tungstenite::connect_async(feed_url).await.unwrap();
    store(daemon.uplink, 0).await;
    clock.set(-step);
    wait_stats(&daemon, "the step is noticed", |s| s["clock"]["steps"] == 1).await;
    store(daemon.uplink, BATCH).await;
    let frames = 2 * BATCH * SOURCES.len() as u64;

    let (status, _, body) = http_get(daemon.monitor, "/archive/frames").await;
    assert_eq!(status, 200);
    let rows = common::dechunked(&body);
    assert_eq!(
        rows.lines().count() as u64,
        frames,
        "every frame, without to"
    );
    let answer = http_get_json(daemon.monitor, "/archive/completeness").await;
    for source in answer["sources"].as_array().unwrap() {
        assert_eq!(source["frames"], 2 * BATCH, "{answer:#}");
        assert_eq!(source["gaps"], serde_json::json!([]), "{answer:#}");
    }
    // A window reaching a second past now, by the archive clock: answered whole once that
    // second and the settling time have passed, not when the wall clock gets there.
    let to = unix_ns_to_rfc3339(archive_now(&daemon).await + 1_000_000_000);
    let from = unix_ns_to_rfc3339(started);
    let window = format!("/archive/frames?from={from}&to={to}");
    let (status, _, body) = http_get(daemon.monitor, &window).await;
    assert_eq!(status, 200);
    assert_eq!(common::dechunked(&body).lines().count() as u64, frames);

    // The feed said of each frame what the archive says, to the microsecond: every frame stored
    // after the step, at least (the feed is lossy, but not at this rate).
    let mut told = std::collections::BTreeMap::new();
    let after_step = |told: &std::collections::BTreeMap<(u32, u64), String>| {
        let keys = SOURCES
            .into_iter()
            .flat_map(|id| (BATCH..2 * BATCH).map(move |s| (id, s)));
        keys.into_iter().all(|key| told.contains_key(&key))
    };
    while !after_step(&told) {
        let message = tokio::time::timeout(PATIENCE, feed.next()).await.unwrap();
        let Some(Ok(Message::Text(text))) = message else {
            panic!("the feed ended: {message:?}");
        };
        let json: serde_json::Value = serde_json::from_str(&text).unwrap();
        if let Some(received) = json["received"].as_str() {
            let source = json["source"].as_str().unwrap()["live:".len()..]
                .parse()
                .unwrap();
            let key = (source, json["seq"].as_u64().unwrap());
            told.insert(key, received.to_owned());
        }
    }
    stop(&mut daemon);
    for (id, seq, at) in archived(&station.archive()) {
        let at = unix_ns_to_rfc3339(at);
        let micros = format!("{}Z", &at[..at.len() - 4]);
        if let Some(said) = told.get(&(id, seq)) {
            assert_eq!(
                said, &micros,
                "live:{id} seq {seq}: the feed's received is the archive's"
            );
        }
    }
}

#[tokio::test]
#[ignore = "needs Debian's faketime (libfaketimeMT.so.1); .ci/run installs it"]
async fn an_hour_back_while_running_hides_nothing() {
    back_while_running(3600).await;
}

#[tokio::test]
#[ignore = "needs Debian's faketime (libfaketimeMT.so.1); .ci/run installs it"]
async fn a_day_back_while_running_hides_nothing() {
    back_while_running(DAY).await;
}

/// A restart with the clock stepped back (6 s, and a day): the second run's received times fall
/// among the first's. Completeness counts every frame held, whatever the window; the start is
/// noticed, said by `/healthz`, and recorded; `max_age` deletes none of the first run's frames.
async fn restart_back(step: i64) {
    let station = Station::new(&format!("restart-back-{step}"), "max_age = \"1h\"", "");
    let (clock, mut first) = (&station.clock, station.start());
    store(first.uplink, 0).await;
    stop(&mut first);
    clock.set(-step);
    let mut second = station.start();
    wait_stats(&second, "the start behind the archive is noticed", |s| {
        s["clock"]["steps"] == 1 && s["clock"]["in_doubt"] == true
    })
    .await;
    store(second.uplink, BATCH).await;
    retention_checked(&second, &station.archive()).await;
    let s = stats(&second).await;
    assert_eq!(s["stats"]["retention_deleted_segments"], 0, "{s:#}");
    // A window from a little after the second run began to a little after the first ended: it
    // meets both runs' frames, and the sequences between are held, stamped outside it.
    let frames = archived(&station.archive());
    let second_start = (frames.iter().filter(|f| f.1 >= BATCH))
        .map(|f| f.2)
        .min()
        .unwrap();
    let first_end = (frames.iter().filter(|f| f.1 < BATCH))
        .map(|f| f.2)
        .max()
        .unwrap();
    let window = [second_start + 1, first_end - 1].map(unix_ns_to_rfc3339);
    let path = format!("/archive/completeness?from={}&to={}", window[0], window[1]);
    let answer = http_get_json(second.monitor, &path).await;
    assert_gapless(&answer);
    stop(&mut second);

    let root = station.archive();
    let gaps = clock.tool(&["archive", "gaps", root.to_str().unwrap(), "--json"]);
    let answer: serde_json::Value = serde_json::from_slice(&gaps.stdout).unwrap();
    assert_gapless(&answer);
    let clock_records = answer["clock"]
        .as_array()
        .expect("the start's CLOCK records");
    assert!(
        clock_records.iter().all(|r| r["event"] == "start"),
        "{answer:#}"
    );
    let windowed = ["--from", &window[0], "--to", &window[1], "--json"];
    let gaps = clock.tool(&[&["archive", "gaps", root.to_str().unwrap()][..], &windowed].concat());
    assert!(gaps.status.success(), "{gaps:?}");
    assert_gapless(&serde_json::from_slice(&gaps.stdout).unwrap());
    assert_eq!(without_times(&archived(&root)), every_sequence(2 * BATCH));
}

/// No source of `answer` (a completeness answer) has a gap.
fn assert_gapless(answer: &serde_json::Value) {
    let sources = answer["sources"].as_array().unwrap();
    assert_eq!(sources.len(), SOURCES.len(), "{answer:#}");
    for source in sources {
        assert_eq!(source["gaps"], serde_json::json!([]), "{answer:#}");
    }
}

#[tokio::test]
#[ignore = "needs Debian's faketime (libfaketimeMT.so.1); .ci/run installs it"]
async fn a_restart_six_seconds_back_counts_every_frame_once() {
    restart_back(6).await;
}

#[tokio::test]
#[ignore = "needs Debian's faketime (libfaketimeMT.so.1); .ci/run installs it"]
async fn a_restart_a_day_back_counts_every_frame_once() {
    restart_back(DAY).await;
}

/// A restart with the clock a year ahead (a year down, or a step: the daemon cannot tell): with
/// the default grace, a 30-day `max_age` deletes nothing of what the last run wrote, and the
/// clock is in doubt, saying so; on a copy of the same archive, with no grace (the operator's
/// word that the clock is right), it does. `archive prune --keep-age` on the stopped archive
/// refuses the same without `--force`.
#[tokio::test]
#[ignore = "needs Debian's faketime (libfaketimeMT.so.1); .ci/run installs it"]
async fn a_restart_a_year_ahead_deletes_only_on_the_operators_word() {
    let station = Station::new("restart-forward", "max_age = \"30d\"", "");
    let word = "[clock]\nstart_grace_ms = 0\n";
    let trusted = Station::new("restart-forward-trusted", "max_age = \"30d\"", word);
    let (clock, mut first) = (&station.clock, station.start());
    store(first.uplink, 0).await;
    stop(&mut first);
    let root = station.archive();
    let held = segment_files(&root);
    let copied = Command::new("cp")
        .arg("-r")
        .arg(&root)
        .arg(trusted.archive())
        .status();
    assert!(copied.unwrap().success());

    clock.set(YEAR);
    trusted.clock.set(YEAR);
    let root_arg = root.to_str().unwrap();
    let refused = clock.tool(&["archive", "prune", root_arg, "--keep-age", "30d"]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.contains("last run") && said.contains("--force"),
        "{said}"
    );
    assert_eq!(segment_files(&root), held, "nothing deleted");
    let forced = [
        "archive",
        "prune",
        root_arg,
        "--keep-age",
        "30d",
        "--force",
        "--dry-run",
    ];
    let forced = clock.tool(&forced);
    let listed = String::from_utf8_lossy(&forced.stdout);
    assert!(
        forced.status.success() && listed.contains("would delete"),
        "{forced:?}"
    );

    let mut second = station.start();
    store(second.uplink, BATCH).await;
    retention_checked(&second, &root).await;
    let s = stats(&second).await;
    assert_eq!(s["stats"]["retention_deleted_segments"], 0, "{s:#}");
    let reason = s["clock"]["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("max_age"), "in doubt for the grace: {s:#}");
    stop(&mut second);
    assert_eq!(without_times(&archived(&root)), every_sequence(2 * BATCH));

    let mut third = trusted.start();
    wait_stats(&third, "the first run's segments go", |s| {
        s["stats"]["retention_deleted_segments"].as_u64() > Some(0)
    })
    .await;
    stop(&mut third);
    let first_run = archived(&trusted.archive())
        .into_iter()
        .filter(|f| f.1 < BATCH);
    assert!(first_run.count() < (BATCH * SOURCES.len() as u64) as usize);
}
