//! The web dashboard: the page and its assets as the monitor serves them, and the page in a real
//! browser. The browser test runs the `aggregator` binary and `uplink-sim` (48 uplinks, 2 replay
//! feeds, 5 % emergencies) as child processes, opens the page in headless Chromium (Debian's
//! `chromium`; `.ci/run` installs it) and reads its DOM: one row per source, emergency frames from
//! the live feed, the health badge. It keeps a screenshot as `target/dashboard.png`, then restarts
//! the daemon and watches the page notice and reconnect by itself. Another test fills the disk
//! under an in-process daemon and checks the badge says degraded, with the reason, and that the
//! source's row turns red while its lag grows, then clears once the disk has room
//! (`target/dashboard-degraded.png`). A third answers the page's `/stats` polls with the longest
//! figures a daemon shows (two weeks up, terabytes archived, links, a NATS sink, eight shards) and
//! checks at 1024 to 1920 px that no tile's text is wider than its box or reaches out of its tile
//! (`target/dashboard-tiles-WIDTH.png`); its daemon keeps no archive files, so the completeness
//! panel is hidden and the passes panel says why it has nothing to show. A fourth stores frames of four sources, one of which skips sequences, in a real
//! archive, and reads the completeness panel: a bar per source, missing marks on the one that
//! skipped, the time axis (`target/dashboard-timeline-1280.png`, `-1920.png`). A fifth stores
//! three passes of two stations of a merge group, one filling the other's gap, and reads the
//! passes panel: a row per station, a bar per pass coloured by how much it misses, and the report
//! a click on a bar shows (`target/dashboard-passes.png`, `dashboard-passes-report.png`).
//!
//! Chromium is driven over the DevTools protocol through a pipe, so the page runs in real time
//! and every wait is on what the DOM shows, with a deadline.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use aggregator::archive::write::ArchiveSink;
use aggregator::SourceKind;
use base64::Engine as _;
use common::process::Daemon;
use common::{stations, Archive, Client, TestDaemon, PATIENCE};
use serde_json::json;
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";
const AGGREGATOR: &str = env!("CARGO_BIN_EXE_aggregator");
const SIM: &str = env!("CARGO_BIN_EXE_uplink-sim");
/// The simulator's fleet: `--scenario default` has 48 uplinks (ids 0..48) and 2 replays (1000, 1001).
const UPLINKS: u32 = 48;
const REPLAYS: u32 = 2;
/// How long the page may take to show what a test waits for.
const BROWSER_DEADLINE: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------------------
// The page over HTTP
// ---------------------------------------------------------------------------------------------

use common::http_get as get;

/// An in-process daemon storing into `sink`, with its monitor served beside it as the binary does.
async fn start_monitored(
    sink: Box<dyn ArchiveSink>,
) -> (TestDaemon, SocketAddr, CancellationToken) {
    common::start_monitored(common::test_config(), sink).await
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types_uncached_and_self_contained() {
    let (archive, sink) = Archive::open();
    let (_daemon, addr, stop) = start_monitored(sink).await;

    let (status, headers, page) = get(addr, "/").await;
    assert_eq!(status, 200);
    assert!(headers.contains(&"content-type: text/html; charset=utf-8".into()));
    assert!(headers.contains(&"cache-control: no-cache".into()));
    let policy = headers
        .iter()
        .find_map(|h| h.strip_prefix("content-security-policy: "))
        .expect("a content security policy");
    assert!(policy.contains("default-src 'self'"), "{policy}");
    for marker in [
        r#"data-health="#,
        r#"<table id="sources""#,
        r#"<ol id="emergencies""#,
    ] {
        assert!(page.contains(marker), "no {marker} in the page");
    }

    // Every asset the page names is served, with its type; none comes from elsewhere.
    let assets = [
        ("dashboard.css", "text/css; charset=utf-8"),
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("passes.js", "text/javascript; charset=utf-8"),
    ];
    let mut bodies = vec![page.clone()];
    for (asset, content_type) in assets {
        assert!(
            page.contains(&format!("=\"{asset}\"")),
            "the page does not load {asset}"
        );
        let (status, headers, body) = get(addr, &format!("/{asset}")).await;
        assert_eq!(status, 200, "/{asset}");
        assert!(
            headers.contains(&format!("content-type: {content_type}")),
            "/{asset}: {headers:?}"
        );
        assert!(headers.contains(&"cache-control: no-cache".into()));
        assert!(!body.is_empty());
        bodies.push(body);
    }
    for body in &bodies {
        for external in ["http://", "https://", "src=\"//", "href=\"//", "@import"] {
            assert!(!body.contains(external), "{external} in a dashboard file");
        }
    }
    let (status, _, _) = get(addr, "/dashboard.json").await;
    assert_eq!(status, 404);
    stop.cancel();
    drop(archive);
}

// ---------------------------------------------------------------------------------------------
// The page in Chromium
// ---------------------------------------------------------------------------------------------

/// A child process killed (and reaped) when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// How long Chromium may take to start and answer its first command. In full test runs on the
/// two-core CI machine it once took more than [`PATIENCE`] while alive (the pipe stayed open).
const CHROMIUM_START: Duration = Duration::from_secs(60);

/// The daemon's shards, each shown with its share.
const SHARDS: usize = 2;

/// The daemon as a child process with its archive in `dir` and its listeners at `ports`
/// (uplink, replay, monitor; 0 for any), once it listens.
fn start_daemon(dir: &Path, [uplink, replay, monitor]: [u16; 3]) -> Daemon {
    let text = format!(
        "[uplink]\nlisten = \"127.0.0.1:{uplink}\"\n\
         [replay]\nlisten = \"127.0.0.1:{replay}\"\n\
         [monitor]\nlisten = \"127.0.0.1:{monitor}\"\n\
         [archive]\ndir = \"{}\"\n\
         [runtime]\nshards = {SHARDS}\n",
        dir.join("archive").display()
    );
    Daemon::start_in(dir, &text)
}

/// What the page shows, read through its DOM.
#[derive(Debug, Clone, serde::Deserialize)]
struct PageView {
    /// Each `tr[data-source]`'s key, as often as it appears.
    rows: Vec<String>,
    /// Whether every row shows a rate (the page has polled at least twice).
    rates: bool,
    /// The source named by each `li[data-emergency]`, newest first.
    emergencies: Vec<String>,
    /// The newest emergency entry's times (its `title`), to tell a new one from an old one.
    newest: Option<String>,
    health: String,
    /// What the page says beside the badge.
    reason: String,
    /// The rows shown red, for a growing lag.
    lagging: Vec<String>,
    /// The daemon's uptime in seconds, as the page shows it.
    uptime: f64,
    /// The live feed's connection, as the page reports it.
    feed: String,
    /// The catalog tile's line: who holds the newest version.
    catalog: String,
    /// Each shard's share of the frames archived, in per cent, as the shards tile shows it.
    shards: Vec<f64>,
    /// The archive tile: its size on disk, and its segments and the time span they hold.
    archive: (String, String),
}

const READ_PAGE: &str = r#"({
    rows: [...document.querySelectorAll("tr[data-source]")].map((row) => row.dataset.source),
    rates: [...document.querySelectorAll("tr[data-source] td.rate")]
        .every((cell) => /^[0-9]/.test(cell.textContent)),
    emergencies: [...document.querySelectorAll("li[data-emergency] .source")]
        .map((cell) => cell.textContent),
    newest: document.querySelector("li[data-emergency]")?.title ?? null,
    health: document.querySelector("[data-health]").dataset.health,
    reason: document.getElementById("health-reason").textContent,
    lagging: [...document.querySelectorAll("tr.lagging")].map((row) => row.dataset.source),
    uptime: document.getElementById("uptime").textContent.split(":")
        .reduce((seconds, part) => seconds * 60 + Number(part), 0),
    feed: document.getElementById("feed-status").dataset.state,
    catalog: document.getElementById("catalog-holders").textContent,
    shards: [...document.querySelectorAll("li[data-shard] .detail")]
        .map((cell) => parseFloat(cell.textContent)),
    archive: [document.getElementById("archive-disk").textContent,
        document.getElementById("archive-span").textContent],
})"#;

impl PageView {
    fn shows_every_source(&self, expected: &BTreeSet<String>) -> bool {
        let distinct: BTreeSet<String> = self.rows.iter().cloned().collect();
        self.rows.len() == expected.len() && distinct == *expected
    }
}

/// Headless Chromium driven over the DevTools protocol through a pipe (`--remote-debugging-pipe`):
/// JSON messages, each ended by a NUL byte; Chromium reads commands on its descriptor 3 and
/// writes answers and events on its descriptor 4. The page runs in real time.
struct Browser {
    commands: std::fs::File,
    answers: mpsc::Receiver<serde_json::Value>,
    next_id: u64,
    /// The page's session: commands that name it go to the page.
    session: String,
    _chromium: Running,
}

/// A pipe whose two ends are above descriptor 4, close-on-exec: so that moving them to 3 and 4
/// in the child never overwrites one with the other.
fn pipe() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two descriptors for pipe2 to fill.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    let [read, write] = fds.map(|fd| {
        // SAFETY: `fd` was just opened and is ours; the duplicate replaces it.
        unsafe {
            let high = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 5);
            assert!(high >= 5, "fcntl(F_DUPFD_CLOEXEC)");
            libc::close(fd);
            OwnedFd::from_raw_fd(high)
        }
    });
    (read, write)
}

impl Browser {
    /// The page at `url`, in a browser of its own (its profile in `profile`), with `script`, when
    /// given, run in the page before its own scripts.
    fn open_with(url: &str, profile: &Path, script: Option<&str>) -> Browser {
        let (their_commands, commands) = pipe();
        let (answers_in, their_answers) = pipe();
        let mut command = Command::new(CHROMIUM);
        command
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                "--remote-debugging-pipe",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let (read, write) = (their_commands.as_raw_fd(), their_answers.as_raw_fd());
        // SAFETY: between fork and exec the child only calls dup2, which is async-signal-safe, on
        // descriptors that stay open in the parent until spawn returns. The copies at 3 and 4 are
        // not close-on-exec, so Chromium inherits them.
        unsafe {
            command.pre_exec(move || {
                if libc::dup2(read, 3) < 0 || libc::dup2(write, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let chromium = Running(command.spawn().expect("start chromium"));
        drop((their_commands, their_answers));
        let (tx, answers) = mpsc::channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(std::fs::File::from(answers_in));
            loop {
                let mut message = Vec::new();
                match reader.read_until(0, &mut message) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if message.last() == Some(&0) {
                    message.pop();
                }
                let Ok(json) = serde_json::from_slice(&message) else {
                    continue;
                };
                if tx.send(json).is_err() {
                    return;
                }
            }
        });
        let mut browser = Browser {
            commands: std::fs::File::from(commands),
            answers,
            next_id: 0,
            session: String::new(),
            _chromium: chromium,
        };
        let target = browser.call(None, "Target.createTarget", json!({ "url": "about:blank" }));
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.resize(1600, 1000);
        if let Some(source) = script {
            // Scripts for new documents are run only with the page domain enabled.
            browser.page("Page.enable", json!({}));
            browser.page(
                "Page.addScriptToEvaluateOnNewDocument",
                json!({ "source": source }),
            );
        }
        browser.page("Page.navigate", json!({ "url": url }));
        browser
    }

    /// The page at `url`, in a browser of its own (its profile in `profile`).
    fn open(url: &str, profile: &Path) -> Browser {
        Browser::open_with(url, profile, None)
    }

    /// Sets the page's viewport, in CSS pixels.
    fn resize(&mut self, width: u32, height: u32) {
        self.page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": width, "height": height, "deviceScaleFactor": 1, "mobile": false }),
        );
    }

    /// The value of `expression` in the page, as JSON (`null` while it throws).
    fn evaluate(&mut self, expression: &str) -> serde_json::Value {
        let result = self.page(
            "Runtime.evaluate",
            json!({ "expression": expression, "returnByValue": true }),
        );
        result["result"]["value"].clone()
    }

    /// Evaluates `expression` until `shown` holds of its value, at most [`BROWSER_DEADLINE`].
    fn wait_until(
        &mut self,
        what: &str,
        expression: &str,
        shown: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + BROWSER_DEADLINE;
        loop {
            let value = self.evaluate(expression);
            if shown(&value) {
                return value;
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show {what} within {BROWSER_DEADLINE:?}; it shows {value}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Sends a command (to the page's session, or to the browser) and returns its result.
    fn call(
        &mut self,
        session: Option<&str>,
        method: &str,
        params: serde_json::Value,
    ) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut message = json!({ "id": id, "method": method, "params": params });
        if let Some(session) = session {
            message["sessionId"] = json!(session);
        }
        let mut bytes = serde_json::to_vec(&message).unwrap();
        bytes.push(0);
        self.commands
            .write_all(&bytes)
            .expect("send a command to chromium");
        // Its first answer waits for Chromium to start: seconds on a loaded two-core machine.
        let patience = if id == 1 { CHROMIUM_START } else { PATIENCE };
        let deadline = Instant::now() + patience;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let answer = self
                .answers
                .recv_timeout(left)
                .unwrap_or_else(|err| panic!("no answer from chromium to {method} ({err})"));
            if answer["id"] == id {
                assert!(answer.get("error").is_none(), "{method}: {answer}");
                return answer["result"].clone();
            }
        }
    }

    fn page(&mut self, method: &str, params: serde_json::Value) -> serde_json::Value {
        let session = self.session.clone();
        self.call(Some(&session), method, params)
    }

    fn read(&mut self) -> Option<PageView> {
        let result = self.page(
            "Runtime.evaluate",
            json!({ "expression": READ_PAGE, "returnByValue": true }),
        );
        // Before the page has loaded, the expression throws: no view yet.
        serde_json::from_value(result["result"]["value"].clone()).ok()
    }

    /// Reads the page until `shown` holds, at most [`BROWSER_DEADLINE`].
    fn wait_for(&mut self, what: &str, shown: impl Fn(&PageView) -> bool) -> PageView {
        let deadline = Instant::now() + BROWSER_DEADLINE;
        loop {
            let view = self.read();
            if let Some(view) = view.as_ref().filter(|view| shown(view)) {
                return view.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the page did not show {what} within {BROWSER_DEADLINE:?}; it shows {view:?}"
            );
            thread::sleep(Duration::from_millis(100));
        }
    }

    /// Clicks the element `selector` finds, as a person would.
    fn click(&mut self, selector: &str) {
        let expression = format!("document.querySelector({}).click()", json!(selector));
        let result = self.page("Runtime.evaluate", json!({ "expression": expression }));
        assert!(
            result.get("exceptionDetails").is_none(),
            "{selector}: {result}"
        );
    }

    /// Saves the page as a PNG.
    fn screenshot(&mut self, path: &Path) -> Vec<u8> {
        let shot = self.page("Page.captureScreenshot", json!({ "format": "png" }));
        let png = base64::engine::general_purpose::STANDARD
            .decode(shot["data"].as_str().expect("screenshot data"))
            .expect("base64 screenshot data");
        std::fs::write(path, &png).expect("write the screenshot");
        png
    }
}

/// Cargo's target directory (the parent of the one it gives integration tests for scratch).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .to_path_buf()
}

/// Fails the test, saying how to install it, where Chromium is not installed.
fn require_chromium() {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is not installed (Debian package chromium; .ci/run installs it)"
    );
}

#[test]
#[ignore = "needs chromium (Debian package chromium); .ci/run runs it"]
fn chromium_shows_sources_emergencies_and_health_and_reconnects_after_a_restart() {
    require_chromium();
    let dir = common::TempDir::new("dashboard");
    let mut daemon = start_daemon(&dir.0, [0; 3]);
    let ports = [daemon.uplink, daemon.replay, daemon.monitor].map(|addr| addr.port());
    let [uplink, replay, monitor] = ports;
    // Long enough to outlast the test (killed when it ends); its sources reconnect after the
    // restart.
    let _sim = Running(
        Command::new(SIM)
            .args(["--uplink", &format!("127.0.0.1:{uplink}")])
            .args(["--replay", &format!("127.0.0.1:{replay}")])
            .args(["--scenario", "default", "--duration", "300"])
            .args(["--progress", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start uplink-sim"),
    );
    let expected: BTreeSet<String> = (0..UPLINKS)
        .map(|id| format!("live:{id}"))
        .chain((1000..1000 + REPLAYS).map(|id| format!("replay:{id}")))
        .collect();
    let monitor: SocketAddr = ([127, 0, 0, 1], monitor).into();

    let mut browser = Browser::open(&format!("http://{monitor}/"), &dir.0.join("profile"));
    let view = browser.wait_for("every source, their rates, ready and an emergency", |v| {
        v.shows_every_source(&expected)
            && v.rates
            && v.health == "ready"
            && !v.emergencies.is_empty()
    });
    // The sources are dealt over both shards, and the page shows each one's share.
    let sharded = browser.wait_for("both shards storing", |v| {
        v.shards.len() == SHARDS && v.shards.iter().all(|&share| share > 0.0)
    });
    assert!(
        (99.0..=101.0).contains(&sharded.shards.iter().sum::<f64>()),
        "{:?}",
        sharded.shards
    );
    // The archive's size on disk, its segments and the span of time they hold.
    let archive = browser.wait_for("the archive's size and time span", |v| {
        v.archive.1.contains(" segment") && v.archive.1.ends_with(" UTC")
    });
    assert!(archive.archive.0.ends_with("MiB"), "{:?}", archive.archive);
    for source in &view.emergencies {
        assert!(
            expected.contains(source),
            "an emergency from {source:?}, not a source the simulator runs"
        );
    }
    // A catalog published while the page is open: every source acknowledges it.
    let tle = dir.0.join("tle.txt");
    std::fs::write(&tle, "ISS (ZARYA)\n1 25544U 98067A\n2 25544  51.6416\n").unwrap();
    let pushed = Command::new(AGGREGATOR)
        .args(["catalog", "push"])
        .arg(&tle)
        .args(["--addr", &monitor.to_string()])
        .output()
        .expect("run aggregator catalog push");
    assert!(pushed.status.success(), "{pushed:?}");
    browser.wait_for("the catalog held by every source", |v| {
        v.catalog == format!("held by {} of {} sources", expected.len(), expected.len())
    });
    // A few seconds of the plot in the picture.
    browser.wait_for("a few seconds of the daemon", |v| v.uptime >= 8.0);
    let png = browser.screenshot(&target_dir().join("dashboard.png"));
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((dimension(16), dimension(20)), (1600, 1000));

    // Two clicks on the id column: by id, largest first.
    browser.click(r#"th[data-key="id"]"#);
    browser.click(r#"th[data-key="id"]"#);
    let by_id: Vec<String> = (1000..1000 + REPLAYS)
        .rev()
        .map(|id| format!("replay:{id}"))
        .chain((0..UPLINKS).rev().map(|id| format!("live:{id}")))
        .collect();
    browser.wait_for("the rows by id, largest first", |v| v.rows == by_id);

    // The daemon restarts: the page says so, then shows the new one, with no reload.
    daemon.signal(libc::SIGTERM);
    daemon.wait_exit(PATIENCE);
    let down = browser.wait_for("the daemon unreachable", |v| v.health == "unreachable");
    // On the same ports, where the page and the sources left it.
    let _daemon = start_daemon(&dir.0, ports);
    browser.wait_for("every source and a live feed again", |v| {
        v.shows_every_source(&expected)
            && v.health == "ready"
            && v.feed == "live"
            && v.newest != down.newest
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (Debian package chromium); .ci/run runs it"]
async fn chromium_shows_a_full_disk_as_degraded_and_a_growing_lag_in_red() {
    require_chromium();
    let dir = common::TempDir::new("dashboard-degraded");
    let (archive, sink) = Archive::open();
    let (daemon, monitor, stop) = start_monitored(sink).await;
    // One source at about 100 frames/s, the pace of a live uplink.
    let uplink = daemon.uplink;
    let source = tokio::spawn(async move {
        let mut client = Client::source(uplink, SourceKind::LiveUplink, 5).await;
        for first in (0..).step_by(10) {
            client.send_routine(first..first + 10).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });

    let held = archive.clone();
    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::open(&format!("http://{monitor}/"), &dir.0.join("profile"));
        browser.wait_for("ready health and the source's row", |v| {
            v.health == "ready" && v.rows == ["live:5"]
        });
        // Every write fails from now on: the archive holds what it has, the pipeline backs up and
        // the lag grows, for the ten seconds or so until the pipeline is full. The page is up by
        // now, however long the browser took to start, so it sees the lag grow.
        held.fill_disk();
        let degraded = browser.wait_for("degraded health and the source's row red", |v| {
            v.health == "degraded" && v.lagging == ["live:5"]
        });
        assert!(
            degraded.reason.contains("archive cannot store frames"),
            "{degraded:?}"
        );
        browser.screenshot(&target_dir().join("dashboard-degraded.png"));
        held.free_disk();
        browser.wait_for("ready health and no red row", |v| {
            v.health == "ready" && v.rows == ["live:5"] && v.lagging.is_empty()
        });
    })
    .await
    .expect("the browser's side of the test");
    source.abort();
    stop.cancel();
}

// ---------------------------------------------------------------------------------------------
// The tiles at every width, with long figures
// ---------------------------------------------------------------------------------------------

/// `/stats` as a daemon long in service would answer it: two weeks up, a 1.7 TiB archive, 123.4
/// GiB archived this run, a NATS sink, four ground links and eight shards. Every figure is as
/// long as it gets in practice.
fn long_stats() -> serde_json::Value {
    let shards: Vec<_> = (0..8)
        .map(|shard| {
            json!({
                "shard": shard, "frames_routed": 0, "frames_processed": 0,
                "frames_archived": 123_456_789 + shard * 7_654_321, "bytes_archived": 0,
                "in_flight": 1_234_567 + shard, "archive_unsynced_bytes": 0, "archive_failing": 0,
            })
        })
        .collect();
    let links: Vec<_> = [
        ("svalbard-x-band", "connected"),
        ("kiruna-s-band", "backoff"),
        ("hartebeesthoek-uhf", "connected"),
        ("mcmurdo-relay", "connecting"),
    ]
    .iter()
    .map(|(name, state)| {
        let station = if *state == "connected" {
            "receiving"
        } else {
            "disconnected"
        };
        let mut link = json!({
            "name": name, "transport": "tcp", "state": state, "station_state": station,
            "last_seen": "2026-11-26T17:20:01.123456789Z", "connections": 3,
            "packets": 123_456_789, "bytes": 0, "copies": 98_765, "gaps": 0, "unmatched": 0,
            "bad_input": 0, "skipped_bytes": 0, "last_error": null,
        });
        // A station's recordings going in through its spool, one of them failed.
        let backfill = json!({
            "importing": 1, "files_done": 12, "files_failed": 1, "bytes": 0, "packets": 0,
            "stored": 123_456_789, "held": 98_765, "unplaced": 0, "damaged_ranges": 0,
            "spool_unreadable": false,
        });
        if name.starts_with("kiruna") {
            link["backfill"] = backfill;
        }
        // A link of transfer frames shows their quality too, the longest line of the tile.
        if name.starts_with("svalbard") {
            let frames = json!({
                "frames_good": 987_654_321, "frames_bad_fecf": 12_345, "frames_dropped": 678,
                "vc_gaps": 4_321, "packets_extracted": 123_456_789, "packets_dropped_incomplete": 9,
            });
            link.as_object_mut()
                .unwrap()
                .extend(frames.as_object().unwrap().clone());
        }
        link
    })
    .collect();
    let sources: Vec<_> = (0..4)
        .map(|id| {
            json!({
                "id": id, "kind": "live_uplink", "peer": format!("10.1.2.{id}:40123"),
                "connected_since_unix_ms": 0, "frames": 123_456_789, "emergency_frames": 1234,
                "bytes": 0, "last_sequence": 123_456_789, "last_acked": 123_456_780, "lag": 3,
                "catalog_version": 12345,
            })
        })
        .collect();
    json!({
        "health": "ready",
        // 14 d 6:56:07
        "uptime_seconds": 1_234_567.0,
        "stats": {
            "bytes_archived": 132_499_999_999_u64, "frames_archived": 9_876_543_210_u64,
            "archive_unsynced_bytes": 3_670_016, "archive_failing": 0, "archive_errors": 0,
            "retention_short": 0, "nats_degraded": 0, "nats_sink": 1, "nats_connected": 0,
            "nats_lag_frames": 1_234_567, "nats_lag_seconds": 1234,
            "nats_cursor_segment": 123_456, "nats_cursor_offset": 67_108_864,
            "nats_cursor_index": 12, "nats_published": 9_876_543_210_u64,
            "nats_republished": 12345, "nats_errors": 12,
        },
        "frames_in_flight": 1_234_567,
        "rates": { "frames_per_sec": 123_456.7, "bytes_per_sec": 0 },
        "catalog": {
            "version": 12345, "content_type": "text/plain", "bytes": 1,
            "published_unix_ms": 0, "sources": 250, "holding_latest": 249,
        },
        "shards": shards,
        "links": links,
        "tm": [],
        "archive": {
            "bytes": 1_913_295_207_874_u64, "segments": 123_456, "free_bytes": 987_654_321_098_u64,
            "oldest_received": "2026-11-10T10:00:00.000000000Z",
            "newest_received": "2026-11-24T13:30:00.000000000Z",
            "retention": {
                "deleted_segments": 12345, "deleted_bytes": 1_234_567_890_123_u64,
                "last_deletion": "2026-11-24T13:29:00.000000000Z", "short": false,
            },
        },
        "clock": {
            "now": "2026-11-24T13:30:00.000000000Z", "offset_seconds": -315_576_000.123,
            "steps": 12345,
            "last_step": {
                "event": "step", "at": "2026-11-24T13:29:59.000000000Z",
                "wall": "2016-11-24T13:29:59.000000000Z", "seconds": -315_576_000.123,
            },
            "in_doubt": false, "reason": null,
        },
        "sources": sources,
    })
}

/// Answers the page's `/stats` polls with `stats` (its uptime counting on) instead of asking the
/// daemon: run in the page before its own script.
fn answer_stats_with(stats: &serde_json::Value) -> String {
    format!(
        r#"(() => {{
            const stats = {stats};
            const opened = performance.now();
            const fetchFromDaemon = window.fetch.bind(window);
            window.fetch = (resource, options) => {{
                if (String(resource) !== "stats") return fetchFromDaemon(resource, options);
                const uptime = stats.uptime_seconds + (performance.now() - opened) / 1000;
                const body = JSON.stringify({{ ...stats, uptime_seconds: uptime }});
                return Promise.resolve(new Response(body, {{ headers: {{ "content-type": "application/json" }} }}));
            }};
        }})()"#
    )
}

/// Every shown tile's elements whose text is wider than their box, or that reach out of their
/// tile: a line each.
const OVERFLOWING: &str = r#"(() => {
    const overflowing = [];
    for (const tile of document.querySelectorAll(".tile")) {
        if (tile.offsetParent === null) continue;
        const box = tile.getBoundingClientRect();
        const title = tile.querySelector("h2").firstChild.textContent.trim();
        for (const element of [tile, ...tile.querySelectorAll("*")]) {
            const name = `${title}: ${element.id || element.className || element.tagName}`;
            const text = JSON.stringify(element.textContent.slice(0, 40));
            if (element.clientWidth > 0 && element.scrollWidth > element.clientWidth) {
                overflowing.push(`${name} ${text} is ${element.scrollWidth} px wide in ${element.clientWidth}`);
            }
            for (const rect of element.getClientRects()) {
                if (rect.left < box.left - 0.5 || rect.right > box.right + 0.5) {
                    overflowing.push(`${name} ${text} runs out of its tile`);
                }
            }
        }
    }
    return overflowing;
})()"#;

/// The figures the tiles show, and whether the completeness panel is shown.
const TILES: &str = r##"({
    uptime: document.getElementById("uptime").textContent,
    disk: document.getElementById("archive-disk").textContent,
    archived: document.getElementById("archive-bytes").textContent,
    links: document.querySelectorAll("#links li").length,
    stations: [...document.querySelectorAll("#links li")].map((li) => li.textContent.split(" · ")[0]),
    seen: document.querySelector("#links li")?.textContent.split(" · ")[1],
    backfill: [...document.querySelectorAll("#links li")].map((li) => li.textContent.split(" · ")
        .find((part) => part.startsWith("backfill")) ?? null),
    shards: document.querySelectorAll("#shards li").length,
    nats: !document.getElementById("nats-tile").hidden,
    timeline: !document.getElementById("timeline-panel").hidden,
    passes: document.getElementById("passes-empty").hidden ? null
        : document.getElementById("passes-empty").textContent,
})"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (Debian package chromium); .ci/run runs it"]
async fn chromium_fits_long_figures_in_every_tile_from_1280_to_1920_px() {
    require_chromium();
    let dir = common::TempDir::new("dashboard-tiles");
    // A daemon without archive files: its completeness answers 404, and the panel is hidden; its
    // passes too, and that panel says so.
    let (_archive, sink) = Archive::open();
    let (_daemon, monitor, stop) = start_monitored(sink).await;
    tokio::task::spawn_blocking(move || {
        let script = answer_stats_with(&long_stats());
        let url = format!("http://{monitor}/");
        let mut browser = Browser::open_with(&url, &dir.0.join("profile"), Some(&script));
        let tiles = browser.wait_until("the long figures", TILES, |tiles| {
            tiles["uptime"]
                .as_str()
                .is_some_and(|t| t.starts_with("14 d "))
                && tiles["links"] == 4
                && tiles["shards"] == 8
        });
        assert_eq!(
            (&tiles["disk"], &tiles["archived"], &tiles["nats"]),
            (&json!("1.7 TiB"), &json!("123.4 GiB"), &json!(true)),
            "{tiles}"
        );
        // Each station's state, the link's while disconnected, and when it last sent.
        assert_eq!(
            tiles["stations"],
            json!([
                "svalbard-x-band: receiving",
                "kiruna-s-band: disconnected (backoff)",
                "hartebeesthoek-uhf: receiving",
                "mcmurdo-relay: disconnected (connecting)"
            ])
        );
        assert_eq!(tiles["seen"], json!("seen 17:20:01"));
        let backfill = "backfill importing, 12 done, 1 failed, 123,456,789 stored, 98,765 held";
        assert_eq!(tiles["backfill"], json!([null, backfill, null, null]));
        browser.wait_until(
            "the completeness panel hidden (no archive files)",
            TILES,
            |t| t["timeline"] == false,
        );
        // The passes panel says why it has nothing to show.
        browser.wait_until("the passes panel's message", TILES, |t| {
            t["passes"]
                == "No passes to show: this daemon keeps no archive files (archive.kind = \"count\")."
        });
        // The widths of wall screens and laptops, and a narrow one (one column of panels).
        for width in [1280, 1400, 1600, 1920, 1024] {
            browser.resize(width, 1000);
            // The figures are fitted at the resize and at each poll: a second at most.
            let fits = browser.wait_until(
                &format!("every tile's text inside it at {width} px"),
                OVERFLOWING,
                |o| o.as_array().is_some_and(Vec::is_empty),
            );
            assert_eq!(fits, json!([]));
            browser.screenshot(&target_dir().join(format!("dashboard-tiles-{width}.png")));
        }
    })
    .await
    .expect("the browser's side of the test");
    stop.cancel();
}

// ---------------------------------------------------------------------------------------------
// The archive completeness panel
// ---------------------------------------------------------------------------------------------

/// The completeness panel: per lane (`kind:id`), whether it has a bar with held frames and how
/// many missing marks; the axis's labels; the window's hint.
const TIMELINE: &str = r##"({
    shown: !document.getElementById("timeline-panel").hidden,
    lanes: Object.fromEntries([...document.querySelectorAll("#lanes .lane")].map((lane) => [
        lane.dataset.source,
        { held: lane.querySelectorAll("svg rect.held").length, missing: lane.querySelectorAll("svg rect.missing").length,
          summary: lane.querySelector(".summary").textContent },
    ])),
    axis: [...document.querySelectorAll("#axis .tick")].map((tick) => tick.textContent),
    hint: document.getElementById("timeline-hint").textContent,
})"##;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (Debian package chromium); .ci/run runs it"]
async fn chromium_shows_each_sources_archive_completeness_with_missing_sequences_marked() {
    require_chromium();
    let dir = common::TempDir::new("dashboard-timeline");
    let config = common::archive_config(&dir.0.join("archive"));
    let opened = aggregator::archive::write::open(&config.archive, 1).expect("open the archive");
    let build = |config| aggregator::Daemon::new(config, opened);
    let (daemon, state) =
        TestDaemon::start_built(config, build, aggregator::Daemon::monitor_state).await;
    let (monitor, stop) = common::serve_monitor(state).await;
    // Three uplinks and a replay, 20 frames a second each for a few seconds; live 3 skips
    // 60..=99 half way.
    let sources = [
        (SourceKind::LiveUplink, 1),
        (SourceKind::LiveUplink, 2),
        (SourceKind::LiveUplink, 3),
        (SourceKind::ArchivedReplay, 7),
    ];
    let mut clients = Vec::new();
    for (kind, id) in sources {
        clients.push(Client::source(daemon.addr(kind), kind, id).await);
    }
    for second in 0..6_u64 {
        for (client, (_, id)) in clients.iter_mut().zip(sources) {
            let sequences =
                (second * 20..second * 20 + 20).filter(|&s| id != 3 || !(60..100).contains(&s));
            client.send_routine(sequences).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    for client in &mut clients {
        client.finish_sending().await;
        client.read_to_close().await;
    }

    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::open(&format!("http://{monitor}/"), &dir.0.join("profile"));
        browser.resize(1280, 1000);
        let expected = ["live:1", "live:2", "live:3", "replay:7"];
        let shown = browser.wait_until("a lane per source", TIMELINE, |t| {
            t["shown"] == true
                && t["lanes"].as_object().is_some_and(|lanes| {
                    lanes.keys().eq(expected.iter().copied())
                        && lanes.values().all(|lane| lane["held"].as_u64() > Some(0))
                })
        });
        let lanes = &shown["lanes"];
        for source in expected {
            let marks = lanes[source]["missing"].as_u64().unwrap();
            assert_eq!(
                marks > 0,
                source == "live:3",
                "{source}'s missing marks: {shown}"
            );
        }
        assert_eq!(
            lanes["live:3"]["summary"], "80 frames · 40 missing",
            "{shown}"
        );
        assert_eq!(lanes["live:1"]["summary"], "120 frames", "{shown}");
        // The axis: the window's start and end, and round times between, as HH:MM (UTC).
        let axis: Vec<&str> = shown["axis"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|l| l.as_str())
            .collect();
        assert!(axis.len() >= 3, "{axis:?}");
        for label in &axis {
            let hhmm = label.len() == 5 && label.as_bytes()[2] == b':';
            assert!(
                hhmm && label.replace(':', "").bytes().all(|b| b.is_ascii_digit()),
                "{axis:?}"
            );
        }
        assert_eq!(shown["hint"], "last 1 h, in steps of 15 s");
        browser.screenshot(&target_dir().join("dashboard-timeline-1280.png"));

        // Another window, at another width.
        browser.click(r#".windows button[data-window="15m"]"#);
        browser.resize(1920, 1000);
        let narrower = browser.wait_until("the last 15 minutes", TIMELINE, |t| {
            t["hint"] == "last 15 min, in steps of 5 s"
                && t["lanes"]["live:3"]["missing"].as_u64() > Some(0)
        });
        assert_eq!(narrower["lanes"].as_object().unwrap().len(), 4);
        browser.screenshot(&target_dir().join("dashboard-timeline-1920.png"));
    })
    .await
    .expect("the browser's side of the test");
    assert!(daemon.shutdown().await.is_clean());
    stop.cancel();
}

// ---------------------------------------------------------------------------------------------
// The passes panel
// ---------------------------------------------------------------------------------------------

/// The passes panel: each row's station, its bars (state, label, pressed) and summary; the
/// report's heading and fields (by `data-field`); the hint and the message in place of rows.
const PASSES: &str = r##"({
    rows: [...document.querySelectorAll("#pass-rows .pass-row")].map((row) => ({
        station: row.dataset.station,
        bars: [...row.querySelectorAll(".pass")].map((bar) => ({
            state: bar.dataset.state, label: bar.getAttribute("aria-label"),
            pressed: bar.getAttribute("aria-pressed") })),
        summary: row.querySelector(".summary").textContent,
    })),
    heading: document.querySelector("#pass-report h3")?.textContent ?? null,
    report: Object.fromEntries([...document.querySelectorAll("#pass-report dd")]
        .map((dd) => [dd.dataset.field, dd.textContent])),
    hint: document.getElementById("passes-hint").textContent,
    message: document.getElementById("passes-empty").hidden ? null
        : document.getElementById("passes-empty").textContent,
})"##;

/// The spacecraft's count 0 reached the earth at `t0_ms`. Kiruna loses 50..=79 (Svalbard,
/// later, delivers 45..=84: 50..=79 are new to the group) and 100..=109 (nobody has them), 10
/// of 120: some missing. An hour on, its second pass loses 130..=149, 20 of 40: much missing.
/// Returns the stations' connections, once every packet is stored.
async fn send_passes(
    daemon: &TestDaemon,
    monitor: SocketAddr,
    t0_ms: u64,
) -> Vec<tokio::net::TcpStream> {
    let mut wires = Vec::new();
    for station in ["Kiruna", "Svalbard"] {
        let wire = tokio::net::TcpStream::connect(daemon.links[station]).await;
        wires.push(wire.expect("connect to the station's link"));
    }
    let kiruna_first: Vec<u16> = (0..50).chain(80..100).chain(110..120).collect();
    let kiruna_second: Vec<u16> = (120..130).chain(150..160).collect();
    let sends = [
        (0, kiruna_first, 0, 80),
        (1, (45..85).collect(), 0, 110),
        (0, kiruna_second, 3600, 130),
    ];
    for (station, counts, offset, total) in sends {
        for count in counts {
            let earth_ms = t0_ms + (offset + u64::from(count)) * 1000;
            let packet = stations::framed_at(count, earth_ms);
            tokio::io::AsyncWriteExt::write_all(&mut wires[station], &packet)
                .await
                .unwrap();
        }
        common::wait_until_async("the station's packets stored", PATIENCE, || async move {
            let answer = common::http_get_json(monitor, "/archive/passes?from=-24h").await;
            let passes = answer["passes"].as_array().cloned().unwrap_or_default();
            let frames = passes.iter().filter_map(|p| p["frames"].as_u64());
            frames.sum::<u64>() == total
        })
        .await;
    }
    wires
}

/// `second`s after `t0_ms` on the earth, as the report shows it.
fn shown_time(t0_ms: u64, second: u64) -> String {
    let time = aggregator::domain::display::unix_ns_to_rfc3339((t0_ms + second * 1000) * 1_000_000);
    format!("{} {} UTC", &time[..10], &time[11..19])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs chromium (Debian package chromium); .ci/run runs it"]
async fn chromium_shows_each_stations_passes_coloured_by_completeness_with_their_reports() {
    require_chromium();
    let dir = common::TempDir::new("dashboard-passes");
    let (daemon, monitor, stop, _) = stations::start(&dir.0, |_| ()).await;
    // Three hours ago: every pass is in the page's last 24 h.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
    let t0_ms = u64::try_from(now.unwrap().as_millis()).unwrap() - 3 * 3_600_000;
    let wires = send_passes(&daemon, monitor, t0_ms).await;
    tokio::task::spawn_blocking(move || {
        let mut browser = Browser::open(&format!("http://{monitor}/"), &dir.0.join("profile"));
        browser.resize(1600, 1000);
        check_pass_rows(&mut browser);
        browser.screenshot(&target_dir().join("dashboard-passes.png"));
        check_pass_reports(&mut browser, t0_ms);
        browser.screenshot(&target_dir().join("dashboard-passes-report.png"));
    })
    .await
    .expect("the browser's side of the test");
    drop(wires);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
}

/// A row per station, Kiruna's first, its bars by AOS: the first pass some missing, the second
/// much; Svalbard's complete. No report before a click.
fn check_pass_rows(browser: &mut Browser) {
    let shown = browser.wait_until("a row per station with its passes", PASSES, |p| {
        p["rows"].as_array().is_some_and(|rows| rows.len() == 2)
    });
    let rows = &shown["rows"];
    let states = |row: &serde_json::Value| -> Vec<serde_json::Value> {
        let bars = row["bars"].as_array().cloned().unwrap_or_default();
        bars.iter().map(|bar| bar["state"].clone()).collect()
    };
    assert_eq!(
        (&rows[0]["station"], &rows[1]["station"]),
        (&json!("Kiruna"), &json!("Svalbard")),
        "{shown}"
    );
    assert_eq!(states(&rows[0]), [json!("some"), json!("much")], "{shown}");
    assert_eq!(states(&rows[1]), [json!("complete")], "{shown}");
    assert_eq!(rows[0]["summary"], "2 passes · 100 frames · 30 missing");
    assert_eq!(rows[1]["summary"], "1 pass · 30 frames", "{shown}");
    // Each bar says in words what its colour says.
    let label = rows[0]["bars"][0]["label"].as_str().unwrap_or_default();
    assert!(
        label.starts_with("Kiruna, group pass: AOS ")
            && label.ends_with("80 frames, 10 missing: some missing"),
        "{label}"
    );
    let hint = "last 24 h · 3 passes · a silence over 10 min ends a pass";
    assert_eq!(shown["hint"], hint, "{shown}");
    assert_eq!(shown["heading"], json!(null), "{shown}");
}

/// A click on each pass shows its report: Kiruna's first (what Svalbard filled for it, what
/// nobody had), Svalbard's (what it filled for Kiruna), Kiruna's second (half missing).
fn check_pass_reports(browser: &mut Browser, t0_ms: u64) {
    let earth = |second| shown_time(t0_ms, second);
    browser.click(r#"#pass-rows .pass-row[data-station="Kiruna"] .pass"#);
    let kiruna = browser.wait_until("Kiruna's first pass's report", PASSES, |p| {
        p["report"]["station"] == "Kiruna"
    });
    assert_eq!(kiruna["heading"], "Kiruna · group pass some missing");
    assert_eq!(kiruna["rows"][0]["bars"][0]["pressed"], "true", "{kiruna}");
    let expected = json!({
        "station": "Kiruna", "receives": "pass", "aos": earth(0), "los": earth(119),
        "duration": "1 min 59 s (earth-receive time)", "frames": "80",
        "filled-by": "30 by Svalbard", "filled-for": "none", "missing": "10 (8.3 %)",
        "bytes": "8.3 KiB", "clipped": "at its end (may go on)",
    });
    for (field, value) in expected.as_object().into_iter().flatten() {
        assert_eq!(&kiruna["report"][field], value, "{field}: {kiruna}");
    }
    // Three hours from the earth to the archive, the median and the most.
    let latency = kiruna["report"]["latency"].as_str().unwrap_or_default();
    assert!(latency.starts_with("p50 3 h · max 3 h"), "{latency}");

    browser.click(r#"#pass-rows .pass-row[data-station="Svalbard"] .pass"#);
    let svalbard = browser.wait_until("Svalbard's pass's report", PASSES, |p| {
        p["report"]["station"] == "Svalbard"
    });
    let expected = json!({
        "aos": earth(50), "los": earth(79), "frames": "30", "filled-by": "none",
        "filled-for": "30 for Kiruna", "missing": "none",
    });
    for (field, value) in expected.as_object().into_iter().flatten() {
        assert_eq!(&svalbard["report"][field], value, "{field}: {svalbard}");
    }
    assert_eq!(svalbard["rows"][0]["bars"][0]["pressed"], "false");

    browser.click(r#"#pass-rows .pass-row[data-station="Kiruna"] .pass[data-state="much"]"#);
    let second = browser.wait_until("Kiruna's second pass's report", PASSES, |p| {
        p["report"]["aos"] == json!(earth(3720))
    });
    assert_eq!(second["report"]["missing"], "20 (50 %)", "{second}");
    assert_eq!(second["report"]["frames"], "20", "{second}");
}
