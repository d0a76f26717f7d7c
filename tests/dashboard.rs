//! The web dashboard: the page and its assets as the monitor serves them, and the page in a real
//! browser. The browser test runs the `aggregator` binary and `uplink-sim` (48 uplinks, 2 replay
//! feeds, 5 % emergencies) as child processes, opens the page in headless Chromium (Debian's
//! `chromium`; `.ci/run` installs it) and reads its DOM: one row per source, emergency frames from
//! the live feed, the health badge. It keeps a screenshot as `target/dashboard.png`, then restarts
//! the daemon and watches the page notice and reconnect by itself. Another test fills the disk
//! under an in-process daemon and checks the badge says degraded, with the reason, and that the
//! source's row turns red while its lag grows, then clears once the disk has room
//! (`target/dashboard-degraded.png`).
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

use aggregator::archive::ArchiveSink;
use aggregator::SourceKind;
use base64::Engine as _;
use common::{Archive, Client, TestDaemon, PATIENCE};
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

impl Running {
    /// SIGTERM, then the exit, within [`PATIENCE`].
    fn terminate(mut self) {
        let pid = libc::pid_t::try_from(self.0.id()).unwrap();
        // SAFETY: signalling our own child process by its pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let deadline = Instant::now() + PATIENCE;
        while self.0.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the daemon did not exit");
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon's config: its listeners at `ports` (uplink, replay, monitor; 0 for any), its archive
/// in `dir`.
/// How long Chromium may take to start and answer its first command. In full test runs on the
/// two-core CI machine it once took more than [`PATIENCE`] while alive (the pipe stayed open).
const CHROMIUM_START: Duration = Duration::from_secs(60);

/// The daemon's shards, each shown with its share.
const SHARDS: usize = 2;

fn write_config(dir: &Path, [uplink, replay, monitor]: [u16; 3]) -> PathBuf {
    let config = dir.join("aggregator.toml");
    let text = format!(
        "[uplink]\nlisten = \"127.0.0.1:{uplink}\"\n\
         [replay]\nlisten = \"127.0.0.1:{replay}\"\n\
         [monitor]\nlisten = \"127.0.0.1:{monitor}\"\n\
         [archive]\ndir = \"{}\"\n\
         [runtime]\nshards = {SHARDS}\n",
        dir.join("archive").display()
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// The daemon as a child process on `config`, once it listens, with the ports it listens on
/// (uplink, replay, monitor), read from its log line that says so.
fn start_daemon(config: &Path) -> (Running, [u16; 3]) {
    let mut child = Command::new(AGGREGATOR)
        .arg("--config")
        .arg(config)
        .env_remove("RUST_LOG")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the aggregator");
    let stderr = child.stderr.take().unwrap();
    let daemon = Running(child);
    // Read standard error to its end, so the daemon never blocks on a full pipe.
    let (tx, lines) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + PATIENCE;
    let mut log = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines.recv_timeout(left).unwrap_or_else(|err| {
            panic!(
                "the daemon did not say it listens ({err}); its log:\n{}",
                log.join("\n")
            )
        });
        if line.contains("aggregator listening") {
            let port = |key: &str| -> u16 {
                line.split_whitespace()
                    .find_map(|field| field.strip_prefix(&format!("{key}=")))
                    .and_then(|addr| addr.parse::<SocketAddr>().ok())
                    .unwrap_or_else(|| panic!("no {key} address in {line}"))
                    .port()
            };
            return (daemon, [port("uplink"), port("replay"), port("monitor")]);
        }
        log.push(line);
    }
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
    fn open(url: &str, profile: &Path) -> Browser {
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
        let target = browser.call(None, "Target.createTarget", json!({ "url": url }));
        let attached = browser.call(
            None,
            "Target.attachToTarget",
            json!({ "targetId": target["targetId"], "flatten": true }),
        );
        browser.session = attached["sessionId"].as_str().unwrap().to_string();
        browser.page(
            "Emulation.setDeviceMetricsOverride",
            json!({ "width": 1600, "height": 1000, "deviceScaleFactor": 1, "mobile": false }),
        );
        browser
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
    let (daemon, ports) = start_daemon(&write_config(&dir.0, [0; 3]));
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
        v.archive.1.contains(" segments · ") && v.archive.1.ends_with(" UTC")
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
    daemon.terminate();
    let down = browser.wait_for("the daemon unreachable", |v| v.health == "unreachable");
    // On the same ports, where the page and the sources left it.
    let _daemon = start_daemon(&write_config(&dir.0, ports));
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
