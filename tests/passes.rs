//! `GET /archive/passes` and `aggregator archive passes`: two stations of one merge group give
//! their earth-receive times in a length-prefixed header; Kiruna loses a stretch of a pass that
//! Svalbard fills, and comes back an hour later for a second pass. The answer has the three passes
//! with AOS and LOS on the stations' times, what Svalbard filled for Kiruna and what nobody had;
//! the binary's `--json` of the files, once the daemon stopped, is the same answer. A source of
//! the ingest protocol beside them is in no pass, only counted. What a window's reading passed
//! over (a damaged record) is said as `archive gaps` says it.

mod common;

use std::process::Command;

use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::domain::frame::{Priority, SourceKind};
use aggregator::domain::units::unix_ns;
use common::stations::{self, framed, T0_MS};
use common::{TempDir, PATIENCE};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// The earth time of `second` after T0, as the answer prints it.
fn earth(second: u64) -> String {
    unix_ns_to_rfc3339((T0_MS + second * 1000) * 1_000_000)
}

/// A group reads its first packet of an APID one cycle up.
const UP: u64 = 16_384;

#[tokio::test]
async fn two_stations_of_a_group_give_passes_with_what_one_filled_for_the_other() {
    let dir = TempDir::new("passes");
    let root = dir.0.join("archive");
    // Small segments: most frames are in sealed ones, whose indexes say which sources a station
    // delivered.
    let small = |config: &mut aggregator::Config| config.archive.segment_bytes = 4096;
    let (daemon, monitor, stop, config_file) = stations::start(&dir.0, small).await;
    // One window for the daemon and the binary, an hour either side of the frames' arrival.
    let now = unix_ns(std::time::SystemTime::now()).unwrap();
    let hour = 3_600_000_000_000;
    let (from, to) = (
        unix_ns_to_rfc3339(now - hour),
        unix_ns_to_rfc3339(now + hour),
    );
    let path = format!("/archive/passes?from={from}&to={to}");
    let stored = |frames: u64| {
        let path = path.clone();
        async move {
            let answer = common::http_get_json(monitor, &path).await;
            let passes = answer["passes"].as_array().cloned().unwrap_or_default();
            passes
                .iter()
                .map(|p| p["frames"].as_u64().unwrap())
                .sum::<u64>()
                == frames
        }
    };
    // Kiruna loses 50..=79 and 100..=109 of its first pass; Svalbard, later, delivers 45..=84:
    // 50..=79 are new to the group, the rest copies. An hour on, Kiruna's second pass.
    let kiruna: Vec<u16> = (0..50).chain(80..100).chain(110..120).collect();
    let second_pass: Vec<u16> = (120..140).collect();
    let svalbard: Vec<u16> = (45..85).collect();
    let mut wires = std::collections::HashMap::new();
    for station in ["Kiruna", "Svalbard"] {
        let wire = TcpStream::connect(daemon.links[station]).await.unwrap();
        wires.insert(station, wire);
    }
    for (station, counts, offset, total) in [
        ("Kiruna", kiruna, 0, 80),
        ("Svalbard", svalbard, 0, 110),
        ("Kiruna", second_pass, 3600, 130),
    ] {
        let wire = wires.get_mut(station).unwrap();
        for count in counts {
            wire.write_all(&framed(count, offset + u64::from(count)))
                .await
                .unwrap();
        }
        common::wait_until_async("the station's packets stored", PATIENCE, || stored(total)).await;
    }
    // A source of the ingest protocol beside them: in no pass, counted apart (from the indexes).
    let routine = (0..25).map(|sequence| (Priority::Routine, sequence));
    daemon.send(SourceKind::LiveUplink, 3, routine).await;
    let answer = common::http_get_json(monitor, &path).await;
    let passes = answer["passes"].as_array().unwrap();
    let summary: Vec<_> = (passes.iter())
        .map(|p| {
            json!([
                p["station"],
                p["group"],
                p["aos"],
                p["los"],
                p["frames"],
                p["filled"],
                p["missing"]
            ])
        })
        .collect();
    assert_eq!(
        summary,
        [
            json!(["Kiruna", "pass", earth(0), earth(119), 80, 30, 10]),
            json!(["Svalbard", "pass", earth(50), earth(79), 30, 0, 0]),
            json!(["Kiruna", "pass", earth(3720), earth(3739), 20, 0, 0]),
        ],
        "{answer:#}"
    );
    let first = &passes[0];
    assert_eq!(first["time"], "earth_received");
    assert_eq!(
        (&first["earth_time"], &first["bytes"]),
        (&json!(80), &json!(80 * 106))
    );
    assert_eq!(
        (&first["clipped_at_from"], &first["clipped_at_to"]),
        (&json!(false), &json!(false))
    );
    assert_eq!(first["links"], json!(["Kiruna"]));
    let source = &first["sources"][0];
    assert_eq!(
        (&source["source"], &source["apid"]),
        (&json!("live:10007"), &json!(7))
    );
    assert_eq!(
        source["filled"],
        json!([{"station": "Svalbard", "first": UP + 50, "last": UP + 79}])
    );
    assert_eq!(
        source["gaps"],
        json!([{"first": UP + 100, "last": UP + 109, "frames": 10, "cause": "space_link"}])
    );
    // From the earth time (a fixed day) to the daemon's received time: the median no more than
    // the most.
    let latency = &first["latency"];
    assert!(
        latency["p50_seconds"].as_f64() <= latency["max_seconds"].as_f64(),
        "{latency}"
    );
    assert_eq!(answer["frames_without_station"], 25);
    // One station, one group: only theirs.
    let only = common::http_get_json(monitor, &format!("{path}&station=Svalbard")).await;
    assert_eq!(only["passes"].as_array().map(Vec::len), Some(1));
    let none = common::http_get_json(monitor, &format!("{path}&group=other")).await;
    assert_eq!(none["passes"], json!([]));
    let (status, _, body) = common::http_get(monitor, "/archive/passes?buckets=3").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unknown parameter \"buckets\""), "{body}");
    drop(wires);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
    // The binary reads the files: the same answer.
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "passes"])
        .arg(&root)
        .args(["--from", &from, "--to", &to, "--json", "--config"])
        .arg(&config_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, answer);
    // And as text: a line per pass, then its source's, its fills and its gaps.
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "passes"])
        .arg(&root)
        .args([
            "--from",
            &from,
            "--to",
            &to,
            "--station",
            "Kiruna",
            "--config",
        ])
        .arg(&config_file)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let first = format!(
        "pass Kiruna group pass: aos={} los={} (earth_received) frames=80 bytes=8480 filled=30 \
         missing=10 playback=0 earth_time=80",
        earth(0),
        earth(119)
    );
    assert!(lines[0].starts_with(&first), "{text}");
    let filled = format!("  filled {}..{} by Svalbard", UP + 50, UP + 79);
    assert!(lines.contains(&filled.as_str()), "{text}");
    assert_eq!(
        lines.last(),
        Some(&"total passes=2 frames_without_station=25")
    );
    // A group is named by the config: without it, a usage error.
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "passes"])
        .arg(&root)
        .args(["--group", "pass"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--group needs --config"));
    // Without --to the window ends at the command's start: a --from after it is a usage error.
    for command in ["passes", "volume"] {
        let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
            .args(["archive", command])
            .arg(&root)
            .args(["--from", "2100-01-01T00:00:00Z"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {err}");
        assert!(
            err.contains("--from is after the command's start"),
            "{command}: {err}"
        );
    }
}

/// `aggregator archive ARGS` on `root`: its parsed `--json` answer.
fn archive_json(args: &[&str], root: &std::path::Path, rest: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .arg("archive")
        .args(args)
        .arg(root)
        .args(rest)
        .output()
        .unwrap();
    // 1: damaged records were passed over.
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{err}");
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Passes read only the blocks of the stations' sources, but say of the window what `archive
/// gaps` says: a damaged record in the block a window's end cuts, which holds no station's frame,
/// is passed over in both answers alike.
#[tokio::test]
async fn passes_say_what_the_window_passed_over_as_gaps_does() {
    let dir = TempDir::new("passes-passed-over");
    let root = dir.0.join("archive");
    let small = |config: &mut aggregator::Config| config.archive.segment_bytes = 4096;
    let (daemon, _, stop, config_file) = stations::start(&dir.0, small).await;
    let mut kiruna = TcpStream::connect(daemon.links["Kiruna"]).await.unwrap();
    for count in 0..20 {
        kiruna
            .write_all(&framed(count, u64::from(count)))
            .await
            .unwrap();
    }
    daemon.wait_archived(20).await;
    drop(kiruna);
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
    // The second run: an ingest source alone, a read at a time, over several segments.
    let (daemon, _, stop, _) = stations::start(&dir.0, small).await;
    for read in 0..6 {
        let routine = (read * 100..read * 100 + 100).map(|sequence| (Priority::Routine, sequence));
        daemon.send(SourceKind::LiveUplink, 3, routine).await;
    }
    stop.cancel();
    assert!(daemon.shutdown().await.is_clean());
    let (segment, at, to) = cut_in_a_sealed_segment(&root);
    // A flipped byte in its first record's first payload: a damaged record the window's end
    // block holds, which the outline reads and the stations' reading passes by.
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes[at + 8 + 19 + 12] ^= 0xFF;
    std::fs::write(&segment, bytes).unwrap();

    let now = unix_ns(std::time::SystemTime::now()).unwrap();
    let from = unix_ns_to_rfc3339(now - 3_600_000_000_000);
    let config = config_file.to_str().unwrap();
    let window = ["--from", &from, "--to", &to, "--json", "--config", config];
    let gaps = archive_json(&["gaps"], &root, &window);
    let passes = archive_json(&["passes"], &root, &window);
    assert_eq!(
        passes["passes"].as_array().map(Vec::len),
        Some(1),
        "{passes}"
    );
    let damaged = gaps["damaged"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{gaps}");
    assert_eq!(passes["damaged"], gaps["damaged"]);
}

/// A sealed segment of `root` that holds no station's frame and frames received at more than one
/// time: its path, the
/// offset of its first frame record, and the time of that record's frames (a window's end that
/// cuts the segment).
fn cut_in_a_sealed_segment(root: &std::path::Path) -> (std::path::PathBuf, usize, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "inspect"])
        .arg(root)
        .output()
        .unwrap();
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut records: std::collections::BTreeMap<String, Vec<(usize, String)>> = Default::default();
    let mut stations = std::collections::BTreeSet::new();
    for line in listing.lines().filter(|l| l.contains(" frame ")) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if line.contains(" station=") {
            stations.insert(fields[0].to_string());
        }
        let received = fields
            .iter()
            .find_map(|f| f.strip_prefix("received="))
            .unwrap();
        let at = fields[1].parse().unwrap();
        let times = records.entry(fields[0].to_string()).or_default();
        if times.last().is_none_or(|(_, t)| t != received) {
            times.push((at, received.to_string()));
        }
    }
    let cut = records.iter().find(|(file, times)| {
        let sealed = root.join(file).with_extension("index").is_file();
        sealed && times.len() > 1 && !stations.contains(*file)
    });
    let (file, times) = cut.unwrap_or_else(|| panic!("no sealed segment to cut: {listing}"));
    (root.join(file), times[0].0, times[0].1.clone())
}
