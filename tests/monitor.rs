//! The monitoring endpoint over loopback: `/stats`, `/metrics` and `/healthz` agree with the
//! pipeline's own counters while frames flow, health turns to draining as soon as the drain starts
//! and stays there until the daemon is done, and the metrics text passes Prometheus' own parser.

mod common;

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use aggregator::ops::metrics::render_metrics;
use aggregator::{Health, SourceKind};
use common::{wait_until, Archive, Client, TestDaemon, PATIENCE};
use tokio_util::sync::CancellationToken;

/// A daemon with the endpoint served beside it, as the binary does.
async fn start(gated: bool) -> (TestDaemon, Archive, SocketAddr, CancellationToken) {
    let (archive, sink) = if gated {
        Archive::gated()
    } else {
        Archive::open()
    };
    let (daemon, addr, stop) = common::start_monitored(common::test_config(), sink).await;
    (daemon, archive, addr, stop)
}

/// A plain HTTP/1.1 GET: (status, body).
async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let (status, _, body) = common::http_get(addr, path).await;
    (status, body)
}

fn metric(text: &str, series: &str) -> u64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in:\n{text}"))
}

#[tokio::test]
async fn stats_metrics_and_health_match_the_pipeline_counters() {
    let (daemon, archive, addr, stop) = start(false).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 42).await;
    client
        .send_frames((0..500).map(|seq| {
            let priority = if seq % 50 == 0 {
                aggregator::Priority::Emergency
            } else {
                aggregator::Priority::Routine
            };
            (priority, seq)
        }))
        .await;
    wait_until("all 500 frames archived", PATIENCE, || archive.len() == 500).await;
    let stats = daemon.stats.snapshot();

    let (status, body) = get(addr, "/stats").await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(json["health"], "ready");
    assert_eq!(json["stats"]["frames_processed"], stats.frames_processed);
    assert_eq!(json["stats"]["frames_processed"], 500);
    assert_eq!(json["stats"]["emergency_frames"], 10);
    assert_eq!(json["stats"]["frames_archived"], 500);
    assert!(stats.bytes_processed > 0);
    assert_eq!(json["stats"]["bytes_archived"], stats.bytes_processed);
    assert_eq!(json["frames_in_flight"], 0);
    assert!(json["rates"]["frames_per_sec"].is_number());
    let sources = json["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 1);
    assert_eq!(sources[0]["id"], 42);
    assert_eq!(sources[0]["kind"], "live_uplink");
    assert_eq!(sources[0]["frames"], 500);
    assert_eq!(sources[0]["emergency_frames"], 10);
    assert_eq!(sources[0]["last_sequence"], 499);
    assert_eq!(sources[0]["lag"], 0);
    assert!(sources[0]["peer"]
        .as_str()
        .unwrap()
        .starts_with("127.0.0.1:"));

    let (status, text) = get(addr, "/metrics").await;
    assert_eq!(status, 200);
    assert_eq!(metric(&text, "aggregator_frames_processed_total"), 500);
    assert_eq!(metric(&text, "aggregator_emergency_frames_total"), 10);
    assert_eq!(metric(&text, "aggregator_active_sources"), 1);
    assert_eq!(
        metric(
            &text,
            "aggregator_source_frames_total{source=\"42\",kind=\"live_uplink\"}"
        ),
        500
    );
    assert_eq!(metric(&text, "aggregator_health{state=\"ready\"}"), 1);
    assert!(text.contains("# TYPE aggregator_frames_processed_total counter"));
    assert!(text.contains("# TYPE aggregator_active_sources gauge"));

    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(
        (status, body.as_str()),
        (200, r#"{"status":"ready","warnings":[]}"#)
    );

    client.finish_sending().await;
    client.read_to_close().await;
    daemon.shutdown().await;
    stop.cancel();
}

#[tokio::test]
async fn health_reports_draining_from_the_signal_until_the_drain_ends() {
    let (mut daemon, archive, addr, stop) = start(true).await;
    let mut client = Client::source(daemon.uplink, SourceKind::LiveUplink, 1).await;
    client.send_routine(0..100).await;
    wait_until("the archive is holding a batch", PATIENCE, || {
        archive.is_blocked()
    })
    .await;
    assert_eq!(get(addr, "/healthz").await.0, 200);

    // The drain cannot finish while the archive holds frames: health must say so meanwhile.
    daemon.begin_shutdown();
    let (status, body) = get(addr, "/healthz").await;
    assert_eq!(
        (status, body.as_str()),
        (503, r#"{"status":"draining","warnings":[]}"#)
    );
    let (_, body) = get(addr, "/stats").await;
    assert!(body.contains(r#""health":"draining""#), "{body}");

    archive.open_gate();
    let report = daemon.join().await;
    assert!(report.is_clean(), "{report:?}");
    assert_eq!(report.archived, 100);
    stop.cancel();
}

#[test]
#[ignore = "needs promtool (Debian package prometheus); .ci/run runs it"]
fn metrics_text_passes_promtool() {
    let promtool = which("promtool")
        .expect("promtool is not installed (Debian package prometheus; .ci/run installs it)");
    let stats = aggregator::PipelineStats {
        frames_processed: 10,
        active_sources: 2,
        ..Default::default()
    };
    let peer: SocketAddr = "127.0.0.1:5000".parse().unwrap();
    let sources: Vec<_> = [
        (SourceKind::LiveUplink, 1),
        (SourceKind::ArchivedReplay, 1000),
    ]
    .into_iter()
    .map(|(kind, id)| {
        let ledger = std::sync::Arc::new(aggregator::domain::ledger::Ledger::new(Some(3)));
        aggregator::domain::source::Source::new(id, kind, peer, ledger).snapshot()
    })
    .collect();
    let text = render_metrics(&stats, Health::Draining, &sources);

    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool rejected:\n{report}\n{text}");
    // promtool also lints (naming, HELP text); it prints nothing when the text is clean.
    assert!(
        report.trim().is_empty(),
        "promtool lint findings:\n{report}"
    );
}

fn which(tool: &str) -> Result<std::path::PathBuf, ()> {
    std::env::var_os("PATH")
        .and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(tool))
                .find(|path| path.is_file())
        })
        .ok_or(())
}
