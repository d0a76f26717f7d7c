//! Power cuts: `deploy/powercut/run.sh` runs the daemon in a qemu VM with its archive on a virtual
//! disk written through, saturates it from the host, kills the VM under load and checks from the
//! outside, after each reboot, that every acknowledged frame is in the archive exactly once. Five
//! runs: 3 cuts with `archive.sync = "interval"` must lose nothing; so must 2 cuts during the
//! upgrade of a format-3 archive; 2 cuts with retention deleting the oldest segments all through
//! the load (1 MiB segments, an 8 MiB archive) must lose nothing but what the archive's
//! `RETENTION` files say it deleted; 2 cuts in a backfill (a station's recording uploaded into a
//! link's spool, on a disk of its own: one cut as the upload is answered, one mid-import) must
//! leave the file in `done/` and each of its packets in the archive once; and 2 cuts with
//! `"never"` must find acknowledged frames lost, which shows the check can fail. They need
//! qemu-system-x86_64 and debootstrap (`deploy/powercut/setup.sh`) and root, and take minutes
//! (the backfill run about 2.5 under TCG), so they are ignored in a plain `cargo test`;
//! `.ci/run` runs them.
//!
//! The harness's only hook in the simulator, `uplink-sim --ack-log`, is checked here against an
//! in-process daemon, without a VM.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use aggregator::SourceKind;
use common::{stations, Archive, TestDaemon};

const SIM: &str = env!("CARGO_BIN_EXE_uplink-sim");
const AGGREGATOR: &str = env!("CARGO_BIN_EXE_aggregator");

/// Each (kind, id)'s WELCOME values and highest acknowledgement, from an `--ack-log` file.
#[derive(Debug, Default)]
struct AckLog {
    welcomes: BTreeMap<(String, u32), Vec<Option<u64>>>,
    acked: BTreeMap<(String, u32), u64>,
}

fn read_ack_log(path: &Path) -> AckLog {
    let text = std::fs::read_to_string(path).expect("read the ack log");
    let mut log = AckLog::default();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [what, kind, id, value] = parts[..] else {
            panic!("malformed ack log line {line:?}");
        };
        let key = (kind.to_string(), id.parse().unwrap());
        match what {
            "welcome" => log
                .welcomes
                .entry(key)
                .or_default()
                .push((value != "-").then(|| value.parse().unwrap())),
            "ack" => {
                let sequence: u64 = value.parse().unwrap();
                let acked = log.acked.entry(key).or_default();
                assert!(*acked <= sequence, "acknowledgements went back: {line}");
                *acked = sequence;
            }
            other => panic!("unknown ack log line {other:?}: {line}"),
        }
    }
    log
}

/// `uplink-sim --scenario brief` (4 uplinks x 10 frames, 1 replay x 5) against `daemon`, with
/// `--ack-log path`; panics unless it succeeded with every frame acknowledged.
async fn brief_with_ack_log(daemon: &TestDaemon, path: &Path) {
    let mut command = Command::new(SIM);
    command
        .args([
            "--scenario",
            "brief",
            "--progress",
            "off",
            "--require-all-acked",
        ])
        .arg("--uplink")
        .arg(daemon.addr(SourceKind::LiveUplink).to_string())
        .arg("--replay")
        .arg(daemon.addr(SourceKind::ArchivedReplay).to_string())
        .arg("--ack-log")
        .arg(path);
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("run uplink-sim");
    assert!(
        out.status.success(),
        "uplink-sim failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn the_ack_log_has_every_welcome_and_each_sources_last_acknowledgement() {
    let (_archive, sink) = Archive::open();
    let daemon = TestDaemon::start(common::test_config(), sink).await;
    let dir = std::env::temp_dir().join(format!("power-cut-ack-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let expected: Vec<((String, u32), u64)> = (0..4)
        .map(|id| (("live".to_string(), id), 9))
        .chain([(("replay".to_string(), 1000), 4)])
        .collect();

    let first = dir.join("first.acks");
    brief_with_ack_log(&daemon, &first).await;
    let log = read_ack_log(&first);
    for (key, last) in &expected {
        assert_eq!(log.welcomes.get(key), Some(&vec![None]), "{key:?}: {log:?}");
        assert_eq!(log.acked.get(key), Some(last), "{key:?}: {log:?}");
    }
    assert_eq!(log.welcomes.len(), expected.len(), "{log:?}");

    // The same sources again: each WELCOME resumes after what the first run had acknowledged, and
    // the log of this run says so.
    let second = dir.join("second.acks");
    brief_with_ack_log(&daemon, &second).await;
    let log = read_ack_log(&second);
    for (key, last) in &expected {
        assert_eq!(
            log.welcomes.get(key),
            Some(&vec![Some(*last)]),
            "{key:?}: {log:?}"
        );
        let frames = last + 1;
        assert_eq!(
            log.acked.get(key),
            Some(&(last + frames)),
            "{key:?}: {log:?}"
        );
    }
    daemon.shutdown().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The repository root.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `deploy/powercut/run.sh` with the binaries this test was built with, in its own work
/// directory, and returns its summary line (the last line of standard output) after checking its
/// exit status. One run at a time: a VM under TCG takes every core, and the load before each cut
/// must be the daemon's, not that of the other tests' VMs.
fn run_power_cuts(name: &str, args: &[&str]) -> String {
    static ONE_VM: Mutex<()> = Mutex::new(());
    let _one_vm = ONE_VM
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let bin = Path::new(AGGREGATOR).parent().unwrap();
    assert!(
        bin.join("uplink-sim").is_file(),
        "no uplink-sim beside {AGGREGATOR}"
    );
    let work = root().join("target/powercut").join(name);
    let out = Command::new(root().join("deploy/powercut/run.sh"))
        .arg("--bin")
        .arg(bin)
        .arg("--work")
        .arg(&work)
        .args(args)
        .output()
        .expect("run deploy/powercut/run.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "deploy/powercut/run.sh {args:?} exited with {}:\n{stdout}\n{stderr}",
        out.status
    );
    stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("run.sh printed nothing: {stderr}"))
        .to_string()
}

fn summary_field(summary: &str, name: &str) -> u64 {
    summary
        .split_whitespace()
        .find_map(|field| field.strip_prefix(&format!("{name}=")))
        .unwrap_or_else(|| panic!("no {name}= in {summary:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("{name}= is not a number in {summary:?}"))
}

/// A run's summary says every acknowledged frame of its `cuts` cuts is in the archive exactly
/// once, undamaged, and the final `verify --strict` passed.
fn assert_nothing_lost(summary: &str, cuts: u64) {
    assert!(summary.starts_with("powercut: OK"), "{summary}");
    assert_eq!(summary_field(summary, "cuts"), cuts, "{summary}");
    assert!(summary_field(summary, "acknowledged") > 0, "{summary}");
    for zero in ["missing", "duplicated", "damaged", "final_verify_exit"] {
        assert_eq!(summary_field(summary, zero), 0, "{zero}: {summary}");
    }
}

#[test]
#[ignore = "needs qemu-system-x86_64 and debootstrap (deploy/powercut/setup.sh); .ci/run runs it"]
fn power_cuts_under_load_lose_no_acknowledged_frame_with_sync_interval() {
    let summary = run_power_cuts("test-interval", &["--cuts", "3", "--sync", "interval"]);
    assert_nothing_lost(&summary, 3);
}

/// The guest's daemon starts on an archive of format version 3 (`tests/fixtures/archive-v3`, as
/// the build of 489c6c0 wrote it): the cuts come during its first run on it and after, and every
/// frame the fixture held and every frame acknowledged since is in the archive once.
#[test]
#[ignore = "needs qemu-system-x86_64 and debootstrap (deploy/powercut/setup.sh); .ci/run runs it"]
fn power_cuts_during_an_upgrade_lose_no_acknowledged_frame() {
    let fixture = root().join("tests/fixtures/archive-v3");
    let fixture = fixture.to_str().unwrap();
    let summary = run_power_cuts("test-upgrade", &["--cuts", "2", "--seed-archive", fixture]);
    assert_nothing_lost(&summary, 2);
}

#[test]
#[ignore = "needs qemu-system-x86_64 and debootstrap (deploy/powercut/setup.sh); .ci/run runs it"]
fn power_cuts_while_retention_deletes_lose_no_acknowledged_frame() {
    let summary = run_power_cuts(
        "test-retention",
        &["--cuts", "2", "--segment-mib", "1", "--retention-mib", "8"],
    );
    assert_nothing_lost(&summary, 2);
    // Retention deleted all along, acknowledged frames among what it deleted, and each cut waited
    // for a deletion and landed within 2 s of it.
    assert!(summary_field(&summary, "segments_deleted") > 0, "{summary}");
    assert!(summary_field(&summary, "excused") > 0, "{summary}");
    assert_eq!(
        summary_field(&summary, "cuts_amid_deletions"),
        2,
        "{summary}"
    );
}

#[test]
#[ignore = "needs qemu-system-x86_64 and debootstrap (deploy/powercut/setup.sh); .ci/run runs it"]
fn power_cuts_find_the_loss_with_sync_never() {
    let summary = run_power_cuts(
        "test-never",
        &["--cuts", "2", "--sync", "never", "--expect-loss"],
    );
    assert!(summary.starts_with("powercut: OK: loss found"), "{summary}");
    // Acknowledged frames missing after a reboot, or a start that refused the damage a cut left
    // in the middle of the newest segment (the page cache reaches the disk in any order).
    let refused = summary.contains(" refused_start=1 ");
    assert!(
        refused || summary_field(&summary, "missing") > 0,
        "{summary}"
    );
}

/// Packets in the recording of the backfill run: over three cycles of counts, 7 MB, so that the
/// second cut (after 30-70 % of it) leaves a stored run across a wrap.
const BACKFILL_PACKETS: u64 = 60_000;

/// A station's recording (Kiruna's, as `tests/backfill_kill.rs` imports it) uploaded through the
/// monitor into its link's spool, on a written-through disk of its own, while the load runs. The
/// first cut comes as soon as the upload is answered, the second while the file is imported;
/// after the last reboot the import finishes by itself. The file is in `done/` with its bytes,
/// nothing in `failed/`; the link's source holds every packet once; and the import that finished
/// found held at least what the cut one had counted durable.
#[test]
#[ignore = "needs qemu-system-x86_64 and debootstrap (deploy/powercut/setup.sh); .ci/run runs it"]
fn a_power_cut_mid_backfill_loses_no_packet_and_stores_none_twice() {
    let input = root().join("target/powercut/test-backfill-input");
    std::fs::create_dir_all(&input).unwrap();
    let recording = input.join("pass.lp");
    std::fs::write(&recording, stations::recording(BACKFILL_PACKETS)).unwrap();
    let link = input.join("kiruna.toml");
    std::fs::write(&link, stations::link("Kiruna", 10_000)).unwrap();
    let (recording, link) = (recording.to_str().unwrap(), link.to_str().unwrap());
    let summary = run_power_cuts(
        "test-backfill",
        &[
            "--cuts",
            "2",
            "--backfill",
            recording,
            "--backfill-link",
            link,
        ],
    );
    assert_nothing_lost(&summary, 2);
    for (name, value) in [
        ("backfill_packets", BACKFILL_PACKETS),
        ("backfill_frames", BACKFILL_PACKETS),
        ("backfill_duplicates", 0),
        ("backfill_done", 1),
        ("backfill_failed", 0),
        ("backfill_problems", 0),
    ] {
        assert_eq!(summary_field(&summary, name), value, "{name}: {summary}");
    }
    let durable = summary_field(&summary, "backfill_durable_at_cuts");
    let held = summary_field(&summary, "backfill_held_after");
    assert!(
        durable > 0,
        "the cut came before anything was stored: {summary}"
    );
    assert!(held >= durable, "{summary}");
    let stored = summary_field(&summary, "backfill_stored_after");
    assert_eq!(held + stored, BACKFILL_PACKETS, "{summary}");
}
