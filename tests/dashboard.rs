//! The web dashboard: the page and its assets as the monitor serves them, and the page in a real
//! browser. The browser test runs the `aggregator` binary and `uplink-sim` (48 uplinks, 2 replay
//! feeds, 5 % emergencies) as child processes, opens the page in headless Chromium (Debian's
//! `chromium`; `.ci/run` installs it) and reads its DOM: one row per source, emergency frames from
//! the live feed, the health badge. It keeps a screenshot as `target/dashboard.png`.
//!
//! Chromium runs with `--virtual-time-budget`: the page's timers run on a virtual clock, which
//! headless Chromium advances only while no request is waiting, so the page polls `/stats` and
//! reads the feed as it would in real time, then the DOM is dumped. Each attempt is one Chromium
//! run; attempts repeat until the page shows what is expected or the deadline passes.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use aggregator::ops::monitor::{self, MonitorState};
use common::{Archive, TestDaemon, PATIENCE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const CHROMIUM: &str = "/usr/bin/chromium";
const AGGREGATOR: &str = env!("CARGO_BIN_EXE_aggregator");
const SIM: &str = env!("CARGO_BIN_EXE_uplink-sim");
/// The simulator's fleet: `--scenario default` has 48 uplinks (ids 0..48) and 2 replays (1000, 1001).
const UPLINKS: u32 = 48;
const REPLAYS: u32 = 2;
/// How long the page may take to show everything, over all attempts.
const BROWSER_DEADLINE: Duration = Duration::from_secs(90);
/// One Chromium run, at most.
const CHROMIUM_LIMIT: Duration = Duration::from_secs(45);

// ---------------------------------------------------------------------------------------------
// The page over HTTP
// ---------------------------------------------------------------------------------------------

/// A plain HTTP/1.1 GET: (status, lowercase header lines, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, Vec<String>, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .expect("a complete response");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines.map(str::to_ascii_lowercase).collect();
    (status, headers, body.to_string())
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_with_their_types_uncached_and_self_contained() {
    let (archive, sink) = Archive::open();
    let (_daemon, state) = TestDaemon::start_with(common::test_config(), sink, |d| {
        MonitorState::new(d.stats(), d.router(), d.health())
    })
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    tokio::spawn(monitor::serve(
        listener,
        state,
        stop.clone().cancelled_owned(),
    ));

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

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The daemon as a child process on loopback port 0, its archive in `dir`; returns it with its
/// uplink, replay and monitor addresses, read from its "aggregator listening" log line.
fn start_daemon(dir: &Path) -> (Running, [SocketAddr; 3]) {
    let config = dir.join("aggregator.toml");
    let text = format!(
        "[uplink]\nlisten = \"127.0.0.1:0\"\n\
         [replay]\nlisten = \"127.0.0.1:0\"\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n\
         [log]\nformat = \"json\"\n\
         [archive]\ndir = \"{}\"\n",
        dir.join("archive").display()
    );
    std::fs::write(&config, text).unwrap();
    let mut child = Command::new(AGGREGATOR)
        .arg("--config")
        .arg(&config)
        .env_remove("RUST_LOG")
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
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .expect("the daemon logs where it listens");
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if json["fields"]["message"] == "aggregator listening" {
            let addr = |key: &str| -> SocketAddr {
                let value = json["fields"][key].as_str();
                value.and_then(|v| v.parse().ok()).unwrap_or_else(|| {
                    panic!("no {key} address in {line}");
                })
            };
            return (daemon, [addr("uplink"), addr("replay"), addr("monitor")]);
        }
    }
}

/// Runs Chromium headless on `url` with `args`, killed past [`CHROMIUM_LIMIT`].
fn chromium(profile: &Path, url: &str, args: &[&str]) -> Output {
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start chromium");
    let (mut out, mut err) = (child.stdout.take().unwrap(), child.stderr.take().unwrap());
    let mut child = Running(child);
    let readers = (
        thread::spawn(move || {
            let mut text = Vec::new();
            let _ = out.read_to_end(&mut text);
            text
        }),
        thread::spawn(move || {
            let mut text = Vec::new();
            let _ = err.read_to_end(&mut text);
            text
        }),
    );
    let deadline = Instant::now() + CHROMIUM_LIMIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().expect("wait for chromium") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "chromium ran past {CHROMIUM_LIMIT:?}"
        );
        thread::sleep(Duration::from_millis(50));
    };
    Output {
        status,
        stdout: readers.0.join().unwrap(),
        stderr: readers.1.join().unwrap(),
    }
}

/// What the dumped DOM shows.
#[derive(Debug)]
struct PageView {
    /// Each `tr[data-source]`'s key, as often as it appears.
    rows: Vec<String>,
    /// The source named by each `li[data-emergency]`.
    emergencies: Vec<String>,
    health: Option<String>,
}

impl PageView {
    fn read(dom: &str) -> PageView {
        let rows = attribute_values(dom, "<tr data-source=\"");
        let emergencies = dom
            .split("<li data-emergency=")
            .skip(1)
            .map(|item| text_of(item, "<span class=\"source\">"))
            .collect();
        let health = dom.split("<div id=\"health\"").nth(1).and_then(|tag| {
            let tag = &tag[..tag.find('>')?];
            attribute_values(tag, "data-health=\"").pop()
        });
        PageView {
            rows,
            emergencies,
            health,
        }
    }

    fn complete(&self, expected: &BTreeSet<String>, feed_served: bool) -> bool {
        let distinct: BTreeSet<String> = self.rows.iter().cloned().collect();
        self.rows.len() == expected.len()
            && distinct == *expected
            && self.health.as_deref() == Some("ready")
            && (!feed_served || !self.emergencies.is_empty())
    }
}

/// The value of every attribute that starts with `prefix` (which ends with its opening quote).
fn attribute_values(text: &str, prefix: &str) -> Vec<String> {
    text.split(prefix)
        .skip(1)
        .filter_map(|rest| rest.split('"').next().map(str::to_string))
        .collect()
}

/// The text after `opening` up to the next tag.
fn text_of(html: &str, opening: &str) -> String {
    html.split(opening)
        .nth(1)
        .and_then(|rest| rest.split('<').next())
        .unwrap_or_default()
        .to_string()
}

/// Whether the monitor answers `/feed` with something other than 404 (a plain GET is refused an
/// upgrade, but the route exists).
fn feed_served(monitor: SocketAddr) -> bool {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(monitor).expect("connect to the monitor");
    stream
        .write_all(b"GET /feed HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    !response.starts_with("HTTP/1.1 404")
}

#[test]
fn chromium_shows_every_source_emergencies_and_ready_health() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "chromium must be installed in CI (.ci/run installs Debian's chromium package)"
        );
        eprintln!("skipped: chromium not installed (apt-get install chromium)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("aggregator-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (_daemon, [uplink, replay, monitor]) = start_daemon(&dir);
    // Long enough to outlast the test; killed when it ends.
    let _sim = Running(
        Command::new(SIM)
            .args(["--uplink", &uplink.to_string()])
            .args(["--replay", &replay.to_string()])
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
    let feed = feed_served(monitor);
    let url = format!("http://{monitor}/");

    let deadline = Instant::now() + BROWSER_DEADLINE;
    let mut attempt = 0;
    let view = loop {
        attempt += 1;
        let profile = dir.join(format!("profile-{attempt}"));
        let run = chromium(
            &profile,
            &url,
            &["--dump-dom", "--virtual-time-budget=5000"],
        );
        let dom = String::from_utf8_lossy(&run.stdout);
        let view = PageView::read(&dom);
        if view.complete(&expected, feed) {
            break view;
        }
        assert!(
            Instant::now() < deadline,
            "after {attempt} attempts the page does not show every source, an emergency and \
             ready health: {view:?}\nstatus: {}\nchromium's standard error:\n{}",
            run.status,
            String::from_utf8_lossy(&run.stderr)
        );
    };
    if feed {
        for source in &view.emergencies {
            assert!(
                expected.contains(source),
                "an emergency from {source:?}, not a source the simulator runs"
            );
        }
    } else {
        // Pending: the live feed (`GET /feed`, issue 25 section 1) is not on this branch yet.
        eprintln!("pending: /feed is not served; the emergency list was not checked");
    }

    let screenshot = target_dir().join("dashboard.png");
    let _ = std::fs::remove_file(&screenshot);
    let run = chromium(
        &dir.join("profile-screenshot"),
        &url,
        &[
            &format!("--screenshot={}", screenshot.display()),
            "--window-size=1600,1000",
            "--hide-scrollbars",
            "--virtual-time-budget=60000",
        ],
    );
    let png = std::fs::read(&screenshot).unwrap_or_else(|err| {
        panic!(
            "no screenshot at {} ({err}); chromium's standard error:\n{}",
            screenshot.display(),
            String::from_utf8_lossy(&run.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    let dimension = |at: usize| u32::from_be_bytes(png[at..at + 4].try_into().unwrap());
    assert_eq!((dimension(16), dimension(20)), (1600, 1000));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Cargo's target directory (the parent of the one it gives integration tests for scratch).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR is inside the target directory")
        .to_path_buf()
}
