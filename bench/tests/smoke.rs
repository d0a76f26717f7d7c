//! Runs the benchmark harness's smoke scenarios, so that it cannot rot: every variant, the scale
//! runs, the drain run, the restart run, the churn run and the retention run must complete, the
//! daemon's archive must receive every frame it processed, every churn source must have every
//! frame acknowledged, and retention must delete segments in its windows.
//! The throttle run, which needs root and a cgroup v1 blkio hierarchy, must either say why it was
//! skipped or count acknowledgements, drain without loss and remove its cgroup.
//! The queries run must make its day's archive and answer every query on it. The replication run,
//! which needs `nats-server`, must either say why it was skipped or have JetStream acknowledge
//! frames of the plain publisher and of both daemons, and find each frame the replicated daemon
//! acknowledged in its stream once.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs the harness with `args` and a JSON summary, which it must write and exit 0; returns its
/// stdout and the summary.
fn bench(args: &[&str], name: &str) -> (String, serde_json::Value) {
    let json = std::env::temp_dir().join(format!(
        "aggregator-bench-{name}-{}.json",
        std::process::id()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_aggregator-bench"))
        .args(args)
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the harness starts");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "aggregator-bench {args:?} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON summary is written"))
            .expect("the JSON summary parses");
    let _ = std::fs::remove_file(&json);
    (stdout, summary)
}

#[test]
fn bench_smoke_mode_runs_and_the_daemon_archives_every_processed_frame() {
    let (stdout, summary) = bench(&["run", "smoke"], "smoke");
    assert!(
        summary["throttle"].is_null(),
        "the smoke scenario throttles nothing: {stdout}"
    );
    assert_eq!(summary["daemon_archive_complete"], true, "{stdout}");
    let runs = summary["runs"].as_array().expect("runs");
    let daemon_runs: Vec<_> = runs.iter().filter(|r| r["variant"] == "daemon").collect();
    assert!(!daemon_runs.is_empty(), "no daemon run in {stdout}");
    for run in daemon_runs {
        let processed = run["processed_total"].as_u64().expect("processed_total");
        assert!(processed > 0, "the daemon processed nothing: {run}");
        assert_eq!(
            run["archived_total"].as_u64(),
            Some(processed),
            "archive != processed: {run}"
        );
    }
    for variant in ["floor", "daemon"] {
        assert!(
            runs.iter()
                .any(|r| r["variant"] == variant && r["frames"].as_u64() > Some(0)),
            "{variant} moved no frames: {stdout}"
        );
    }
    let drain = &summary["drain"]["report"];
    assert_eq!(drain["lost"], 0, "frames lost in the drain: {stdout}");
    // One restart for the main runs' sources, one for the most sources of the scale runs.
    let restarts = summary["restart"].as_array().expect("restart runs");
    let sources: Vec<_> = restarts.iter().map(|r| r["sources"].as_u64()).collect();
    assert_eq!(sources, [Some(48), Some(300)], "{stdout}");
    for restart in restarts {
        assert!(
            restart["frames"].as_u64() > Some(0),
            "no frames in the restart run: {stdout}"
        );
        assert_eq!(
            restart["recovered"]["sources"], restart["sources"],
            "the restart did not recover every source: {stdout}"
        );
    }
    // Only that the churn run completed and acknowledged everything: its memory figures are the
    // benchmark's business, not a test's.
    let churn = &summary["churn"];
    let sources = churn["sources"].as_u64().expect("a churn run");
    let frames = sources
        * churn["frames_per_source"]
            .as_u64()
            .expect("frames per source");
    assert!(sources > 0, "{stdout}");
    assert_eq!(churn["client"]["failed"], 0, "{stdout}");
    assert_eq!(
        churn["client"]["acknowledged"].as_u64(),
        Some(sources),
        "{stdout}"
    );
    assert_eq!(
        churn["client"]["frames_acknowledged"].as_u64(),
        Some(frames),
        "{stdout}"
    );
    assert_eq!(churn["processed_total"].as_u64(), Some(frames), "{stdout}");
    assert_eq!(churn["archived_total"].as_u64(), Some(frames), "{stdout}");
}

/// Root with a blkio hierarchy throttles for real; anywhere else the run is skipped, and says why.
/// Neither the figures nor whether they meet their targets are a test's business.
#[test]
fn the_throttle_run_counts_acknowledgements_or_says_why_it_is_skipped() {
    let (stdout, summary) = bench(&["run", "throttle-smoke"], "throttle");
    let throttle = &summary["throttle"];
    assert_eq!(
        summary["runs"].as_array().map(Vec::len),
        Some(0),
        "{stdout}"
    );
    if let Some(why) = throttle["skipped"].as_str() {
        assert!(throttle["measured"].is_null(), "{stdout}");
        assert!(stdout.contains(&format!("skipped: {why}")), "{stdout}");
        return;
    }
    let measured = &throttle["measured"];
    assert!(
        measured["frames_acked"].as_u64() > Some(0),
        "no ACK: {stdout}"
    );
    let cgroup = measured["cgroup"].as_str().expect("the cgroup's path");
    assert!(!Path::new(cgroup).exists(), "{cgroup} is left behind");
    let drain = &measured["drain"];
    assert_eq!(
        drain["report"]["lost"], 0,
        "frames lost in the drain: {stdout}"
    );
    assert_eq!(summary["daemon_archive_complete"], true, "{stdout}");
}

/// Four followers of the archive during saturation: each receives exactly the frames the archive
/// stored. The ingest figures are not a test's business.
#[test]
fn the_consumers_run_counts_every_archived_frame_at_every_follower() {
    let (stdout, summary) = bench(&["run", "consumers-smoke"], "consumers");
    let rounds = summary["consumers"].as_array().expect("consumers rounds");
    assert_eq!(rounds.len(), 1, "{stdout}");
    for round in rounds {
        assert!(round["without"]["followed"].is_null(), "{stdout}");
        let with = &round["with"];
        let archived = with["archived"].as_u64().expect("the archive's count");
        assert!(archived > 0, "nothing archived: {stdout}");
        let frames: Vec<_> = with["followed"]["frames"]
            .as_array()
            .expect("the followers' counts")
            .iter()
            .map(|f| f.as_u64())
            .collect();
        assert_eq!(frames, vec![Some(archived); 4], "{stdout}");
        assert_eq!(with["drain_clean"], true, "{stdout}");
    }
}

/// The durable daemon with retention deleting, against without: in each round's window with
/// retention the daemon's stats count deleted segments, and none in the one without. The ratio is
/// not a test's business.
#[test]
fn the_retention_run_deletes_segments_in_the_window_with_retention_only() {
    let (stdout, summary) = bench(&["run", "retention-smoke"], "retention");
    assert_eq!(summary["daemon_archive_complete"], true, "{stdout}");
    let rounds = summary["retention"].as_array().expect("retention rounds");
    let payloads: Vec<_> = rounds.iter().map(|r| r["payload"].as_u64()).collect();
    assert_eq!(payloads, [Some(64), Some(1024)], "{stdout}");
    for round in rounds {
        let (with, without) = (&round["with"], &round["without"]);
        assert!(
            with["deleted_segments"].as_u64() > Some(0),
            "nothing deleted: {stdout}"
        );
        assert!(with["deleted_bytes"].as_u64() > Some(0), "{stdout}");
        assert_eq!(without["deleted_segments"], 0, "{stdout}");
        for window in [with, without] {
            assert!(
                window["run"]["frames"].as_u64() > Some(0),
                "no frames in the window: {stdout}"
            );
        }
    }
}

/// The daemon with `ack = "replicated"` and with `ack = "local"` beside a plain JetStream publisher,
/// on a cluster of three `nats-server` processes, with random payloads: the publisher's PubAcks
/// come, each daemon's ACKs cover frames and its sink publishes, and each archives every frame it
/// processed. The ratios are not a test's business. Without `nats-server` the run is skipped: the
/// harness says why and judges it a target not met, and this test says so on its standard error:
/// it has shown nothing.
#[test]
fn the_replication_run_acknowledges_through_jetstream_or_says_why_it_is_skipped() {
    let (stdout, summary) = bench(&["run", "replication-smoke"], "replication");
    let replication = &summary["replication"];
    if let Some(why) = replication["skipped"].as_str() {
        let skipped = format!("skipped: {why}");
        assert!(stdout.contains(&skipped), "{stdout}");
        let targets = summary["targets"].as_array().expect("targets");
        let judged = targets.iter().find(|t| t["measured"] == skipped.as_str());
        assert_eq!(judged.map(|t| &t["met"]), Some(&false.into()), "{stdout}");
        eprintln!("SKIPPED, not passed: the replication smoke run: {why}");
        return;
    }
    assert_eq!(summary["daemon_archive_complete"], true, "{stdout}");
    assert_eq!(summary["plan"]["fill"], "random", "{stdout}");
    assert!(stdout.contains("uplinks of random payloads"), "{stdout}");
    let rounds = replication["rounds"]
        .as_array()
        .expect("replication rounds");
    let payloads: Vec<_> = rounds.iter().map(|r| r["payload"].as_u64()).collect();
    assert_eq!(payloads, [Some(64), Some(1024)], "{stdout}");
    let messages = summary["plan"]["replication"]["messages"].as_u64();
    for round in rounds {
        let plain = &round["plain"];
        assert_eq!(
            plain["pub_ack_latency"]["count"].as_u64(),
            messages,
            "{stdout}"
        );
        for ack in ["replicated", "local"] {
            let window = &round[ack];
            assert_eq!(window["ack"], ack, "{stdout}");
            assert!(
                window["frames_acked"].as_u64() > Some(0),
                "no ACK with ack = {ack}: {stdout}"
            );
            assert!(
                window["published_per_s"].as_f64() > Some(0.0),
                "the sink published nothing with ack = {ack}: {stdout}"
            );
            // The bench made the stream before the daemon started: the sink's first look found
            // its leader.
            assert_eq!(window["at_leader_at_end"], true, "{stdout}");
        }
        // The replicated window's stream, read back, holds every frame acknowledged, once.
        let check = &round["replicated"]["stream_check"];
        assert!(check["acknowledged"].as_u64() > Some(0), "{stdout}");
        assert!(
            check["frames"].as_u64() >= check["acknowledged"].as_u64(),
            "{stdout}"
        );
        for fault in ["missing", "duplicates", "not_frames"] {
            assert_eq!(check[fault], 0, "{fault}: {stdout}");
        }
    }
    assert!(
        stdout.contains("the stream holds every acknowledged frame once"),
        "{stdout}"
    );
}

/// The queries run on a small day: it makes the archive, every range query returns frames, the
/// completeness lists every source, the passes are the station's, and ingest is measured alone and beside the asking. A
/// directory that holds something else is refused, not measured. The figures are not a test's
/// business.
#[test]
fn the_queries_run_makes_its_archive_and_answers_every_query() {
    let dir = std::env::temp_dir().join(format!("aggregator-bench-day-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let archive = dir.to_str().expect("a UTF-8 temporary directory");
    let (stdout, summary) = bench(&["run", "queries-smoke", "--archive", archive], "queries");
    let figures = &summary["figures"];
    let ranges = figures["ranges"].as_array().expect("ranges");
    assert_eq!(ranges.len(), 2, "{stdout}");
    for range in ranges {
        assert!(range["frames"].as_u64() > Some(0), "{stdout}");
        assert!(range["answer_bytes"].as_u64() > Some(0), "{stdout}");
    }
    // Its 2 sources and 1 station's, whose 16 passes of the day are found.
    assert_eq!(figures["completeness_sources"], 3, "{stdout}");
    assert_eq!(figures["passes"], 16, "{stdout}");
    for rate in ["ingest_alone", "ingest_beside"] {
        assert!(figures[rate].as_f64() > Some(0.0), "{rate}: {stdout}");
    }
    assert!(Path::new(archive).join("bench-archive.json").is_file());
    // Each round's ingest is taken out of the archive again: a second run finds the same day.
    let day = segments(&dir);
    assert!(!day.is_empty());
    bench(&["run", "queries-smoke", "--archive", archive], "queries");
    assert_eq!(segments(&dir), day);
    std::fs::remove_dir_all(&dir).unwrap();

    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "not an archive").unwrap();
    let refused = Command::new(env!("CARGO_BIN_EXE_aggregator-bench"))
        .args(["run", "queries-smoke", "--archive", archive])
        .output()
        .expect("the harness starts");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("give another --archive"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The segment files under `dir` (its shard folders too) and their lengths, sorted.
fn segments(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(segments(&path));
        } else if path.extension().is_some_and(|e| e == "seg") {
            let len = path.metadata().unwrap().len();
            found.push((path, len));
        }
    }
    found.sort();
    found
}
