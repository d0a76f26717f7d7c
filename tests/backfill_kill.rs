//! A backfill survives SIGKILL (issue 70, item 4): the daemon, a real `aggregator` process, is
//! killed in the middle of importing a station's recording from its link's spool, and started
//! again on the same directory. Nothing is lost, nothing is stored twice, and the import resumes.
//!
//! Why it holds, and so what the test looks at: the import waits until the archive holds each
//! chunk before it reads the next, and a file moves to `done/` only once all of it is held, so a
//! kill leaves the file in the spool with part of it in the archive. The next start reads the
//! file again from its start; the group's holdings (what the first run stored) place its counts
//! in the same cycle, and what is held already is counted `held`, not stored. The recording is
//! longer than several 14-bit cycles and the kill comes once the first run stored more than two
//! of them, so that the second run meets a held run that spans wraps.
//!
//! Checked three ways: the second run's counters (`stored + held` is the whole file), the
//! archive's completeness (one run, every packet, and as many frames as sequences: a duplicate
//! would add a frame), and `aggregator archive verify` after a clean stop (no duplicates).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::backfill::{spooled, upload};
use common::process::Daemon;
use common::stations::{self, CYCLE};
use common::{http_get_json_blocking, wait_until_blocking, PATIENCE};
use serde_json::{json, Value};

/// Packets in the recording: a dozen cycles of counts, about two seconds of import in a debug
/// build, of which the kill comes in the first half.
const PACKETS: u64 = 200_000;
/// The first run is killed once it stored more than this (two cycles and some).
const KILL_AFTER: u64 = 2 * CYCLE + 4_096;
/// Kiruna's source of APID 7 (`apid_base = 10000`).
const SOURCE: u32 = 10_007;
/// How long the whole import may take, in a run that is not killed.
const IMPORT_PATIENCE: Duration = Duration::from_secs(60);

/// One shard, small segments, Kiruna's link (length-prefixed, earth times) with its spool.
fn config(dir: &Path) -> String {
    format!(
        "[uplink]\nlisten = \"127.0.0.1:0\"\n[replay]\nlisten = \"127.0.0.1:0\"\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n[runtime]\nshards = 1\n\
         [shutdown]\ndrain_deadline_ms = 3000\n\
         [archive]\ndir = \"{archive}\"\nsegment_bytes = 1048576\n\
         {link}spool_dir = \"{spool}\"\n",
        archive = dir.join("archive").display(),
        link = stations::link("Kiruna", 10_000),
        spool = dir.join("spool").display(),
    )
}

/// Kiruna's `backfill` object on `/stats`.
fn backfill(daemon: &Daemon) -> Value {
    let (status, stats) = http_get_json_blocking(daemon.monitor.port(), "/stats").unwrap();
    assert_eq!(status, 200, "{stats}");
    let links = stats["links"].as_array().cloned().unwrap_or_default();
    let kiruna = links.into_iter().find(|l| l["name"] == "Kiruna");
    kiruna
        .map(|l| l["backfill"].clone())
        .expect("Kiruna on /stats")
}

fn count(backfill: &Value, key: &str) -> u64 {
    backfill[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} in {backfill}"))
}

/// Runs `aggregator archive verify` on `archive`; its exit status and standard output.
fn verify(archive: &Path) -> (Option<i32>, String) {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "verify"])
        .arg(archive)
        .output()
        .expect("run aggregator archive verify");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    (output.status.code(), format!("{stdout}\nstderr:\n{stderr}"))
}

#[test]
fn a_sigkill_mid_import_loses_nothing_stores_nothing_twice_and_resumes() {
    let (dir, spool) = spooled("backfill-kill");
    let text = config(&dir.0);
    let mut daemon = Daemon::start_in(&dir.0, &text);
    upload(&spool, "pass.lp", &stations::recording(PACKETS));

    // Caught mid-way: more than two cycles stored, the file not done.
    let started = Instant::now();
    let mut caught = None;
    wait_until_blocking("the import stored two cycles", IMPORT_PATIENCE, || {
        let now = backfill(&daemon);
        let done = count(&now, "files_done") > 0;
        if count(&now, "stored") > KILL_AFTER && !done {
            daemon.kill();
            caught = Some(now);
            return true;
        }
        done
    });
    let first = caught.unwrap_or_else(|| {
        panic!(
            "the import ended in {:?} before it could be killed mid-way: make the file bigger",
            started.elapsed()
        )
    });
    let stored_first = count(&first, "stored");
    assert!(stored_first < PACKETS, "{first}");
    assert!(
        spool.join("pass.lp").is_file(),
        "a killed import leaves the file in the spool"
    );

    // The next start reads it again and finishes it.
    let mut daemon = Daemon::start_in(&dir.0, &text);
    wait_until_blocking("the file imported", IMPORT_PATIENCE, || {
        count(&backfill(&daemon), "files_done") == 1
    });
    let second = backfill(&daemon);
    assert_eq!(
        [
            &second["files_failed"],
            &second["packets"],
            &second["unplaced"]
        ],
        [&json!(0), &json!(PACKETS), &json!(0)],
        "{second}"
    );
    let (stored, held) = (count(&second, "stored"), count(&second, "held"));
    assert_eq!(stored + held, PACKETS, "{second}");
    assert!(
        held >= stored_first,
        "what the first run stored is held now: {first} then {second}"
    );
    assert!(spool.join("done/pass.lp").is_file());
    assert!(!spool.join("pass.lp").exists());

    // Every packet once: one run from the first count (read one cycle up) to the last, and as
    // many frames as sequences.
    let path = format!("/archive/completeness?source=live:{SOURCE}");
    let (status, answer) = http_get_json_blocking(daemon.monitor.port(), &path).unwrap();
    assert_eq!(status, 200, "{answer}");
    let source = &answer["sources"][0];
    assert_eq!(
        source["held"],
        json!([[CYCLE, CYCLE + PACKETS - 1]]),
        "{answer}"
    );
    assert_eq!(source["frames"], json!(PACKETS), "{answer}");

    daemon.signal(libc::SIGTERM);
    let (status, _) = daemon.wait_exit(PATIENCE);
    assert!(status.success(), "{status}");
    let (code, report) = verify(&dir.0.join("archive"));
    assert_eq!(code, Some(0), "{report}");
    let line = format!("source live {SOURCE}: frames={PACKETS} ");
    assert!(report.contains(&line), "{line} in:\n{report}");
    let total = (report.lines())
        .find(|l| l.starts_with("verify total:"))
        .unwrap_or_else(|| panic!("no total in:\n{report}"));
    assert!(total.contains(" duplicates=0 "), "{total}");
}
