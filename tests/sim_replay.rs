//! `uplink-sim --replay-archive DIR`: an archive built record by record is streamed into an
//! in-process daemon, whose recording archive shows what arrived.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;

use std::time::{Duration, Instant};

use aggregator::archive::format::{self, encode_frame, encode_watermark, MAGIC};
use aggregator::sim::{self, Pace, Progress, ProgressStyle, SessionOptions, SimPlan};
use aggregator::{Priority, SourceKind};
use common::{test_config, Archive, Stored, TempDir, TestDaemon};

const SIM: &str = env!("CARGO_BIN_EXE_uplink-sim");
const T0: u64 = 1_700_000_000_000_000_000;

/// (archived kind, id, sequence, priority, payload, received ns) in archive order.
type Archived = (SourceKind, u32, u64, Priority, Vec<u8>, u64);

/// Writes `frames` into segments of at most `per_segment` records, each segment ending with a
/// watermark record (which replay ignores).
fn write_archive(dir: &Path, frames: &[Archived], per_segment: usize) {
    for (i, chunk) in frames.chunks(per_segment).enumerate() {
        let mut bytes = MAGIC.to_vec();
        for (kind, id, seq, priority, payload, received) in chunk {
            encode_frame(&mut bytes, *kind, *priority, *id, *seq, *received, payload);
        }
        encode_watermark(&mut bytes, SourceKind::LiveUplink, 1, 0);
        fs::write(dir.join(format::segment_name(i as u64 + 1)), bytes).unwrap();
    }
}

/// Three sources as a daemon would archive them: live 1 with an emergency frame processed ahead
/// of the routine frames before it and a gap in its sequences, live 2 interleaved with it, and a
/// replay feed 1000, each frame with its own payload.
fn sample_archive() -> Vec<Archived> {
    use Priority::{Emergency, Routine};
    use SourceKind::{ArchivedReplay, LiveUplink};
    let mut frames = Vec::new();
    let mut t = T0;
    let mut add = |kind, id, seq, priority| {
        t += 1_000_000;
        let payload = format!("{kind:?}/{id}/{seq}").into_bytes();
        frames.push((kind, id, seq, priority, payload, t));
    };
    add(LiveUplink, 1, 0, Routine);
    add(LiveUplink, 1, 4, Emergency); // processed before 1..=3
    for seq in 1..4 {
        add(LiveUplink, 1, seq, Routine);
        add(LiveUplink, 2, seq * 10, Routine);
    }
    for seq in [5, 6, 9, 10, 11] {
        add(LiveUplink, 1, seq, Routine);
    }
    add(LiveUplink, 2, 40, Emergency);
    for seq in 0..20 {
        add(ArchivedReplay, 1000, seq, Routine);
    }
    frames
}

/// Per source id: (sequence, priority, payload), sorted by sequence.
fn by_source(
    frames: impl Iterator<Item = (u32, u64, Priority, Vec<u8>)>,
) -> BTreeMap<u32, Vec<(u64, Priority, Vec<u8>)>> {
    let mut map: BTreeMap<u32, Vec<_>> = BTreeMap::new();
    for (id, seq, priority, payload) in frames {
        map.entry(id).or_default().push((seq, priority, payload));
    }
    for frames in map.values_mut() {
        frames.sort_by_key(|f| f.0);
    }
    map
}

fn check_arrived(records: &[Stored], archived: &[Archived]) {
    assert!(
        records.iter().all(|r| r.kind == SourceKind::ArchivedReplay),
        "every frame arrives as a replay feed"
    );
    let expected = by_source(
        archived
            .iter()
            .map(|(_, id, seq, p, payload, _)| (*id, *seq, *p, payload.clone())),
    );
    let got = by_source(
        records
            .iter()
            .map(|r| (r.source_id, r.sequence, r.priority, r.payload.to_vec())),
    );
    assert_eq!(
        got, expected,
        "same frames, priorities and payloads, each once"
    );
    // The daemon saw each source's routine frames in increasing sequence order (emergencies may
    // overtake them, as they did in the original run).
    for id in expected.keys() {
        let routine: Vec<u64> = records
            .iter()
            .filter(|r| r.source_id == *id && r.priority == Priority::Routine)
            .map(|r| r.sequence)
            .collect();
        assert!(
            routine.windows(2).all(|w| w[0] < w[1]),
            "source {id}: {routine:?}"
        );
    }
}

/// Runs `uplink-sim --replay-archive DIR --require-all-acked` into `daemon`'s replay listener,
/// with `extra` arguments; its exit status, stdout and stderr.
async fn replay_archive(
    daemon: &TestDaemon,
    dir: &Path,
    extra: &[&str],
) -> (Option<i32>, String, String) {
    let mut command = Command::new(SIM);
    command
        .args(["--replay-archive", dir.to_str().unwrap()])
        .args([
            "--replay",
            &daemon.replay.to_string(),
            "--uplink",
            "127.0.0.1:9",
        ])
        .args(["--progress", "off", "--require-all-acked"])
        .args(extra);
    let output = tokio::task::spawn_blocking(move || command.output().expect("run uplink-sim"))
        .await
        .unwrap();
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulator_replays_an_archive_as_replay_feeds_in_sequence_order() {
    let dir = TempDir::new("replay-binary");
    let archived = sample_archive();
    write_archive(&dir.0, &archived, 7);
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(test_config(), sink).await;
    let (code, stdout, stderr) = replay_archive(&daemon, &dir.0, &["--batch", "4"]).await;
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("replaying 34 frames of 3 sources from 5 segments"),
        "{stderr}"
    );
    let total = stdout
        .lines()
        .find(|l| l.starts_with("sim total:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(total.contains("sources=3 completed=3"), "{total}");
    assert!(total.contains("acked=34 unacked=0"), "{total}");
    daemon.shutdown().await;
    check_arrived(&archive.records(), &archived);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replay_at_a_speed_factor_keeps_the_recorded_gaps_scaled() {
    let dir = TempDir::new("replay-paced");
    // One source, 5 frames 100 ms apart as received: 400 ms recorded, 200 ms at factor 2.
    let archived: Vec<Archived> = (0..5)
        .map(|seq| {
            (
                SourceKind::LiveUplink,
                7,
                seq,
                Priority::Routine,
                vec![seq as u8; 3],
                T0 + seq * 100_000_000,
            )
        })
        .collect();
    write_archive(&dir.0, &archived, 100);
    let loaded = sim::replay::load_archive(&dir.0, Pace::Recorded(2.0)).unwrap();
    assert_eq!(loaded.frames(), 5);
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(test_config(), sink).await;
    let plan = SimPlan {
        uplink: vec![daemon.uplink.to_string()],
        replay: vec![daemon.replay.to_string()],
        sources: loaded.specs(64),
        session: SessionOptions::default(),
        tls: None,
    };
    let started = Instant::now();
    let report = sim::run(
        plan,
        Progress::new(ProgressStyle::Off, Duration::from_secs(1), 1),
    )
    .await;
    let elapsed = started.elapsed();
    assert!(report.is_success(true), "{report}");
    assert!(
        elapsed >= Duration::from_millis(200),
        "the last frame is due 200 ms after the first: {elapsed:?}"
    );
    daemon.shutdown().await;
    check_arrived(&archive.records(), &archived);
}

/// A flipped byte in the first record of the first segment: the replay skips that record, names
/// its byte range, sends every other frame, and exits with status 3.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_record_is_skipped_and_every_valid_frame_replayed() {
    let dir = TempDir::new("replay-corrupt");
    let archived = sample_archive();
    write_archive(&dir.0, &archived, 7);
    let path = dir.0.join(format::segment_name(1));
    let mut bytes = fs::read(&path).unwrap();
    bytes[8 + 8 + 23] ^= 0xff; // the first frame's payload, with valid records after it
    fs::write(&path, bytes).unwrap();
    let first_len = 8 + 23 + archived[0].4.len();
    let (archive, sink) = Archive::open();
    let daemon = TestDaemon::start(test_config(), sink).await;
    let (code, stdout, stderr) = replay_archive(&daemon, &dir.0, &[]).await;
    assert_eq!(code, Some(3), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let warning = format!(
        "skipping damaged {}: bytes 8..{} ({first_len} bytes): CRC mismatch",
        path.display(),
        8 + first_len
    );
    assert!(stderr.contains(&warning), "{warning:?} in:\n{stderr}");
    assert!(stderr.contains("replaying 33 frames"), "{stderr}");
    daemon.shutdown().await;
    check_arrived(&archive.records(), &archived[1..]);
}
