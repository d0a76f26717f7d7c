//! `GET /archive/volume` and `aggregator archive volume`: two stations of merge group `pass`
//! (`common::stations`) and a source of the ingest protocol. Kiruna delivers 50 packets;
//! Svalbard, later, 30 of which 10 are copies of Kiruna's (stored once, so they count for
//! nobody); the ingest source 7 frames of no station. The answer has a row per station and
//! source, each station's and the group's total, the ingest source apart; the binary's `--json`
//! of the files, once the daemon stopped, is the same answer, and its table the same numbers;
//! `/metrics` counts the same per link, with each link's station and group.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::domain::frame::SourceKind;
use aggregator::domain::units::unix_ns;
use common::stations::{self, framed};
use common::{Client, TempDir, PATIENCE};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// Each packet of the stations: a 6-byte header and 100 bytes of data.
const PACKET: u64 = 106;

/// `aggregator archive volume DIR` with `args`.
fn volume(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "volume"])
        .arg(root)
        .args(args)
        .output()
        .unwrap()
}

#[tokio::test]
async fn frames_and_bytes_per_station_group_and_source_agree_over_http_json_and_text() {
    let dir = TempDir::new("volume");
    let root = dir.0.join("archive");
    let (daemon, monitor, stop, config_file) = stations::start(&dir.0, |_| ()).await;
    let now = unix_ns(std::time::SystemTime::now()).unwrap();
    let hour = 3_600_000_000_000;
    let (from, to) = (
        unix_ns_to_rfc3339(now - hour),
        unix_ns_to_rfc3339(now + hour),
    );
    let path = format!("/archive/volume?from={from}&to={to}");
    let stored = |frames: u64| {
        let path = path.clone();
        async move {
            let answer = common::http_get_json(monitor, &path).await;
            answer["total"]["frames"].as_u64() == Some(frames)
        }
    };
    // Kiruna 0..50; Svalbard 40..70, of which 40..50 are copies; then 7 frames of 8 bytes from
    // an ingest source.
    for (station, counts, total) in [("Kiruna", 0..50, 50), ("Svalbard", 40..70, 70)] {
        let mut wire = TcpStream::connect(daemon.links[station]).await.unwrap();
        for count in counts {
            wire.write_all(&framed(count, u64::from(count)))
                .await
                .unwrap();
        }
        common::wait_until_async("the station's packets stored", PATIENCE, || stored(total)).await;
    }
    let payloads = vec![vec![0u8; 8]; 7];
    Client::store(daemon.uplink, SourceKind::LiveUplink, 1, 0, &payloads).await;
    common::wait_until_async("the ingest frames stored", PATIENCE, || stored(77)).await;
    let answer = common::http_get_json(monitor, &path).await;
    let counted = |frames: u64, bytes: u64| json!({"frames": frames, "bytes": bytes});
    let row = |station: &str, source: &str, frames: u64| {
        json!({"station": station, "group": "pass", "source": source,
               "frames": frames, "bytes": frames * PACKET})
    };
    assert_eq!(
        answer["rows"],
        json!([
            row("Kiruna", "live:10007", 50),
            row("Svalbard", "live:20007", 20)
        ]),
        "{answer:#}"
    );
    assert_eq!(
        answer["stations"],
        json!([
            {"station": "Kiruna", "frames": 50, "bytes": 50 * PACKET},
            {"station": "Svalbard", "frames": 20, "bytes": 20 * PACKET},
        ])
    );
    assert_eq!(
        answer["groups"],
        json!([{"group": "pass", "frames": 70, "bytes": 70 * PACKET}])
    );
    assert_eq!(
        answer["without_station"],
        json!([{"source": "live:1", "frames": 7, "bytes": 56}])
    );
    assert_eq!(answer["total"], counted(77, 70 * PACKET + 56));
    assert_eq!((&answer["from"], &answer["to"]), (&json!(from), &json!(to)));
    // How much Svalbard delivered of group pass: its row alone, no frame of no station.
    let svalbard =
        common::http_get_json(monitor, &format!("{path}&station=Svalbard&group=pass")).await;
    assert_eq!(svalbard["rows"], json!([row("Svalbard", "live:20007", 20)]));
    assert_eq!(
        (&svalbard["without_station"], &svalbard["total"]),
        (&json!([]), &counted(20, 20 * PACKET))
    );
    // The counters since the start say the same of each link, and name its station and group.
    let (_, _, metrics) = common::http_get(monitor, "/metrics").await;
    for line in [
        "aggregator_link_info{link=\"Kiruna\",station=\"Kiruna\",group=\"pass\"} 1",
        "aggregator_link_info{link=\"Svalbard\",station=\"Svalbard\",group=\"pass\"} 1",
        "aggregator_link_packets_total{link=\"Kiruna\"} 50",
        "aggregator_link_packets_total{link=\"Svalbard\"} 20",
        "aggregator_link_bytes_total{link=\"Svalbard\"} 2120",
        "aggregator_link_copies_total{link=\"Svalbard\"} 10",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line}\n{metrics}");
    }
    let (status, _, body) = common::http_get(monitor, "/archive/volume?buckets=3").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown parameter \"buckets\""), "{body}");
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
    // The binary reads the files: the same answer.
    let config_arg = config_file.to_str().unwrap();
    let out = volume(
        &root,
        &[
            "--from", &from, "--to", &to, "--json", "--config", config_arg,
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, answer);
    // And as a table: rows, each station's total, the group's, then the summary line.
    let out = volume(
        &root,
        &["--from", &from, "--to", &to, "--config", config_arg],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "station   group  source      frames  bytes",
            "Kiruna    pass   live:10007      50   5300",
            "Svalbard  pass   live:20007      20   2120",
            "-         -      live:1           7     56",
            "Kiruna    all    all             50   5300",
            "Svalbard  all    all             20   2120",
            "all       pass   all             70   7420",
            "total frames=77 bytes=7476 frames_without_station=7",
        ],
        "{text}"
    );
    // A group is named by the config: without it, a usage error.
    let out = volume(&root, &["--group", "pass"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--group needs --config"));
}
