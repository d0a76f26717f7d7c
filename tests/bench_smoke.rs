//! Runs the benchmark harness in its smoke mode, so that it cannot rot: every variant, the scale
//! runs, the drain run, the restart run and the churn run must complete, the daemon's archive must
//! receive every frame it processed, and every churn source must have every frame acknowledged.

use std::process::Command;

#[test]
fn bench_smoke_mode_runs_and_the_daemon_archives_every_processed_frame() {
    let json = std::env::temp_dir().join(format!(
        "aggregator-bench-smoke-{}.json",
        std::process::id()
    ));
    let output = Command::new(env!("CARGO_BIN_EXE_aggregator-bench"))
        .arg("--smoke")
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the harness starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "aggregator-bench --smoke failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON summary is written"))
            .expect("the JSON summary parses");
    let _ = std::fs::remove_file(&json);
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
    for variant in ["floor", "reference", "daemon"] {
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
