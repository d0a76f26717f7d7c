//! `uplink-sim` with sources that know several daemons, against real `aggregator` binaries on
//! loopback: a daemon killed under load is left for the next one of the list, and a resume point
//! below what was acknowledged (a daemon that does not hold what another one, or it before it lost
//! its archive, acknowledged) is counted, not failed.
//!
//! Every wait is on something observable (a progress line of the simulator, a process exit) with
//! a deadline, never a sleep.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use aggregator::sim::{self, Pace};
use common::process::{Daemon, Program};
use common::{free_port, TempDir, PATIENCE};

const SIM: &str = env!("CARGO_BIN_EXE_uplink-sim");

/// The simulator: 2 uplinks and 1 replay feed at 200 frames/s each for 3 s, every frame required
/// acknowledged, a progress line every 20 ms, every acknowledgement in `ack_log`, and its failovers
/// logged.
fn sim(uplink: &str, replay: &str, ack_log: &Path) -> Program {
    let mut command = Command::new(SIM);
    command
        .args(["--uplink", uplink, "--replay", replay])
        .args(["--scenario", "brief", "--uplinks", "2", "--replays", "1"])
        .args(["--rate", "200", "--duration", "3", "--require-all-acked"])
        .args(["--progress", "lines", "--progress-ms", "20", "--ack-log"])
        .arg(ack_log)
        .env("RUST_LOG", "warn,aggregator::sim=info")
        .env("NO_COLOR", "1");
    Program::spawn("uplink-sim", command, PATIENCE)
}

/// Reads the simulator's progress lines until one shows at least `frames` acknowledged.
fn wait_acked(sim: &mut Program, frames: u64) {
    loop {
        let line = sim.next_line(&format!("{frames} frames acknowledged"));
        let mut words = line.split_whitespace();
        let acked = words.find(|w| *w == "acked").and_then(|_| words.next());
        if acked.and_then(|n| n.parse::<u64>().ok()) >= Some(frames) {
            return;
        }
    }
}

/// Waits for the simulator's exit; its `sim total:` line, its whole standard output and its
/// standard error. Fails the test unless it succeeded.
fn finish(sim: Program) -> (String, String, String) {
    let (status, lines, stderr) = sim.finish();
    let stdout = lines.join("\n");
    assert!(status.success(), "{status}\n{stdout}\n{stderr}");
    let total = lines.iter().find(|l| l.starts_with("sim total:"));
    let total = total.unwrap_or_else(|| panic!("no summary:\n{stdout}"));
    (total.clone(), stdout, stderr)
}

/// The value of `key=` in the `sim total:` line.
fn number(total: &str, key: &str) -> u64 {
    let value = total
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {key}= in {total}"))
}

/// A source of the ack log: its kind (`live`, `replay`) and id.
type Source = (String, u32);

/// What an `--ack-log` says of each source.
#[derive(Debug, Default)]
struct AckLog {
    /// Its highest acknowledgement, by daemon (the fifth field, "" without one).
    acked_by: BTreeMap<Source, BTreeMap<String, u64>>,
    /// Its highest acknowledgement.
    acked: BTreeMap<Source, u64>,
    /// Frames acknowledged above the resume point of a later WELCOME, each counted at that
    /// WELCOME (sequences are consecutive from 0 here).
    behind: u64,
}

fn read_ack_log(path: &Path) -> AckLog {
    let mut log = AckLog::default();
    for line in std::fs::read_to_string(path)
        .expect("read the ack log")
        .lines()
    {
        let fields: Vec<&str> = line.split(' ').collect();
        let (what, kind, id, value) = (fields[0], fields[1], fields[2], fields[3]);
        let daemon = fields.get(4).copied().unwrap_or_default().to_string();
        let source = (kind.to_string(), id.parse().expect("a source id"));
        let acked = log.acked.get(&source).copied();
        match what {
            "welcome" => {
                let resume = value.parse::<u64>().ok();
                let held = resume.map_or(0, |r| r + 1);
                log.behind += acked.map_or(0, |a| (a + 1).saturating_sub(held));
            }
            "ack" => {
                let sequence: u64 = value.parse().expect("a sequence");
                let by = log.acked_by.entry(source.clone()).or_default();
                let highest = by.entry(daemon).or_default();
                *highest = (*highest).max(sequence);
                log.acked.insert(source, acked.unwrap_or(0).max(sequence));
            }
            other => panic!("unknown ack log line {other:?}: {line}"),
        }
    }
    log
}

/// Each source's sequences stored in the archive at `dir`.
fn stored(dir: &Path) -> BTreeMap<Source, Vec<u64>> {
    let loaded = sim::replay::load_archive(dir, Pace::Max).expect("read the archive");
    let kind = |id: u32| if id >= 1000 { "replay" } else { "live" };
    let sources = loaded.sources.into_iter().map(|(id, recording)| {
        let sequences = recording.frames.iter().map(|f| f.sequence).collect();
        ((kind(id).to_string(), id), sequences)
    });
    sources.collect()
}

/// Two daemons, A and B, both known to every source (A first). A is killed with SIGKILL once the
/// simulator has seen frames acknowledged; every source moves to B, which stores everything A
/// had not acknowledged, and the run ends with every frame acknowledged. B's WELCOME says it holds
/// nothing of a source that A acknowledged frames of: those are counted.
#[test]
fn a_source_fails_over_to_the_next_daemon_when_the_first_is_killed() {
    let mut a = Daemon::start("failover-a");
    let mut b = Daemon::start("failover-b");
    let (a_uplink, a_replay) = (a.uplink.to_string(), a.replay.to_string());
    let uplink = format!("{a_uplink},{}", b.uplink);
    let replay = format!("{a_replay},{}", b.replay);
    let scratch = TempDir::new("sim-failover");
    let ack_log = scratch.0.join("acks");
    let mut run = sim(&uplink, &replay, &ack_log);
    wait_acked(&mut run, 50);
    a.signal(libc::SIGKILL);
    a.wait_exit(PATIENCE);

    let (total, stdout, stderr) = finish(run);
    assert_eq!(number(&total, "unacked"), 0, "{total}");
    assert!(
        number(&total, "failovers") >= 3,
        "every source moved: {total}"
    );
    assert!(stdout.contains("\nfailovers: "), "{stdout}");
    assert!(
        stderr.contains("failing over to the next daemon")
            && stderr.contains(&format!("to={}", b.uplink)),
        "{stderr}"
    );
    let log = read_ack_log(&ack_log);
    assert!(log.behind > 0, "A acknowledged frames B does not hold");
    assert_eq!(number(&total, "acked_not_held"), log.behind, "{total}");
    assert!(stdout.contains(&format!(
        "note: {} frames acknowledged by a daemon",
        log.behind
    )));

    b.signal(libc::SIGTERM);
    b.wait_exit(PATIENCE);
    let (in_a, in_b) = (
        stored(&a.dir.join("archive")),
        stored(&b.dir.join("archive")),
    );
    assert_eq!(log.acked.len(), 3, "{:?}", log.acked);
    for (source, &last) in &log.acked {
        let by_a = log.acked_by[source]
            .get(&a_uplink)
            .or(log.acked_by[source].get(&a_replay));
        let after_a = by_a.map_or(0, |a| a + 1);
        let expected: Vec<u64> = (after_a..=last).collect();
        assert_eq!(
            in_b.get(source),
            Some(&expected),
            "B holds {source:?} after A"
        );
        let before: Vec<u64> = (0..after_a).collect();
        let held_by_a = in_a.get(source).map_or(&[][..], |s| &s[..after_a as usize]);
        assert_eq!(
            held_by_a, before,
            "A holds what it acknowledged of {source:?}"
        );
    }
}

/// One daemon, killed once the simulator has seen frames acknowledged, and started again on the
/// same ports without its archive: its WELCOME says it holds nothing. The frames it acknowledged
/// before are counted and warned about, the run goes on with what the sources still hold and
/// succeeds, and no source moved anywhere.
#[test]
fn a_resume_point_below_the_acknowledgement_is_counted_not_failed() {
    let dir = TempDir::new("sim-failover-restart");
    let archive = dir.0.join("archive");
    let (uplink, replay) = (free_port(), free_port());
    let config = format!(
        "[uplink]\nlisten = \"127.0.0.1:{uplink}\"\n[replay]\nlisten = \"127.0.0.1:{replay}\"\n\
         [monitor]\nlisten = \"127.0.0.1:0\"\n[archive]\ndir = \"{}\"\n",
        archive.display()
    );
    let mut daemon = Daemon::start_in(&dir.0, &config);
    let ack_log = dir.0.join("acks");
    let addresses = [uplink, replay].map(|port| format!("127.0.0.1:{port}"));
    let mut run = sim(&addresses[0], &addresses[1], &ack_log);
    wait_acked(&mut run, 50);
    daemon.signal(libc::SIGKILL);
    daemon.wait_exit(PATIENCE);
    std::fs::remove_dir_all(&archive).expect("delete the archive");
    let _restarted = Daemon::start_in(&dir.0, &config);

    let (total, stdout, stderr) = finish(run);
    let log = read_ack_log(&ack_log);
    assert!(log.behind > 0, "{:?}", log.acked);
    assert_eq!(number(&total, "acked_not_held"), log.behind, "{total}");
    assert_eq!(number(&total, "failovers"), 0, "{total}");
    assert_eq!(number(&total, "unacked"), 0, "{total}");
    assert!(
        stdout.contains("(acknowledged, not held any more)"),
        "{stdout}"
    );
    assert!(
        stderr.contains("resume point is below frames already acknowledged"),
        "{stderr}"
    );
    assert!(
        log.acked_by
            .values()
            .all(|by| by.keys().all(String::is_empty)),
        "one daemon: the ack log keeps its four fields"
    );
}
