//! `aggregator archive verify`, `inspect` and `repair` on archives built record by record with the
//! segment encoder: no daemon involved, except the archive's own recovery (`SegmentSink::open`)
//! after a repair.

mod common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use aggregator::archive::format::{
    self, encode_frame, encode_frames, encode_stored, encode_watermark, Entry, MAGIC,
};
use aggregator::archive::write::SegmentSink;
use aggregator::config::{ArchiveKind, SyncMode};
use aggregator::domain::clock::{ClockEvent, ClockEventKind};
use aggregator::protocol::ccsds::PrimaryHeader;
use aggregator::{Config, Priority, SourceKind};
use common::TempDir;

const T0: u64 = 1_700_000_000_000_000_000;

/// A segment under construction, remembering where each record starts.
struct SegmentBuilder {
    bytes: Vec<u8>,
    offsets: Vec<u64>,
}

impl SegmentBuilder {
    fn new() -> Self {
        SegmentBuilder {
            bytes: MAGIC.to_vec(),
            offsets: Vec::new(),
        }
    }

    fn frame(&mut self, kind: SourceKind, id: u32, seq: u64, priority: Priority) -> &mut Self {
        self.offsets.push(self.bytes.len() as u64);
        let payload = format!("{id}:{seq}");
        encode_frame(
            &mut self.bytes,
            kind,
            priority,
            id,
            seq,
            T0 + seq * 1_000_000,
            payload.as_bytes(),
        );
        self
    }

    /// One FRAMES record, as the daemon writes a batch: every frame received at the first one's
    /// time. Each frame's offset is the record's.
    fn frames(&mut self, kind: SourceKind, id: u32, seqs: std::ops::Range<u64>) -> &mut Self {
        let at = self.bytes.len() as u64;
        self.offsets.extend(seqs.clone().map(|_| at));
        let payloads: Vec<_> = seqs.clone().map(|seq| format!("{id}:{seq}")).collect();
        encode_frames(
            &mut self.bytes,
            kind,
            Routine,
            id,
            T0 + seqs.start * 1_000_000,
            seqs.zip(&payloads).map(|(seq, p)| (seq, p.as_bytes())),
        );
        self
    }

    /// A frame whose payload is a space packet of `apid` with the 14-bit `count`, as a
    /// ground-segment link stores it.
    fn packet(&mut self, id: u32, seq: u64, apid: u16, count: u16) -> &mut Self {
        self.offsets.push(self.bytes.len() as u64);
        let data = format!("{id}:{seq}");
        let mut payload = PrimaryHeader::telemetry(apid, count, data.len())
            .encode()
            .to_vec();
        payload.extend_from_slice(data.as_bytes());
        encode_frame(&mut self.bytes, Live, Routine, id, seq, T0, &payload);
        self
    }

    fn watermark(&mut self, kind: SourceKind, id: u32, acked: u64) -> &mut Self {
        self.offsets.push(self.bytes.len() as u64);
        encode_watermark(&mut self.bytes, kind, id, acked);
        self
    }

    fn stored(&mut self, kind: SourceKind, id: u32, first: u64, last: u64) -> &mut Self {
        self.offsets.push(self.bytes.len() as u64);
        encode_stored(&mut self.bytes, kind, id, first, last);
        self
    }

    /// A CLOCK record: a daemon's start, whose received times jump `jump_ns` from the newest
    /// the shard held.
    fn clock(&mut self, jump_ns: i64) -> &mut Self {
        self.offsets.push(self.bytes.len() as u64);
        let event = ClockEvent {
            kind: ClockEventKind::Start,
            archive_ns: T0,
            wall_ns: T0,
            jump_ns,
        };
        Entry::Clock(event).encode(&mut self.bytes);
        self
    }

    fn write(&self, dir: &Path, index: u64) -> PathBuf {
        let path = dir.join(format::segment_name(index));
        fs::write(&path, &self.bytes).unwrap();
        path
    }
}

use Priority::{Emergency, Routine};
use SourceKind::{ArchivedReplay as Replay, LiveUplink as Live};

/// Two segments: live 1 with 0..=9 (emergency 0 and 5, stored out of order), live 2 with a gap
/// (4..=6 missing) and a duplicate (2 twice), replay 1000 with 0..=4 in one FRAMES record.
fn good_archive(dir: &Path) -> (PathBuf, PathBuf, SegmentBuilder) {
    let mut first = SegmentBuilder::new();
    first.frame(Live, 1, 0, Emergency);
    first.frame(Live, 1, 5, Emergency);
    for seq in 1..5 {
        first.frame(Live, 1, seq, Routine);
    }
    for seq in [0, 1, 2, 2, 3] {
        first.frame(Live, 2, seq, Routine);
    }
    first.watermark(Live, 1, 5);
    let a = first.write(dir, 1);
    let mut second = SegmentBuilder::new();
    second.watermark(Live, 1, 5);
    second.stored(Live, 2, 3, 3);
    for seq in 6..10 {
        second.frame(Live, 1, seq, Routine);
    }
    for seq in [7, 8] {
        second.frame(Live, 2, seq, Routine);
    }
    second.frames(Replay, 1000, 0..5);
    second.watermark(Live, 1, 9);
    let b = second.write(dir, 2);
    // Not a segment: ignored.
    fs::write(dir.join("README"), b"not a segment").unwrap();
    (a, b, second)
}

fn aggregator(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(args)
        .output()
        .expect("run the aggregator binary")
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn line<'a>(stdout: &'a str, prefix: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no line starting with {prefix:?} in:\n{stdout}"))
}

fn verify(dir: &Path, extra: &[&str]) -> (Option<i32>, String, String) {
    let mut args = vec!["archive", "verify", dir.to_str().unwrap()];
    args.extend_from_slice(extra);
    let out = aggregator(&args);
    let (stdout, stderr) = text(&out);
    (out.status.code(), stdout, stderr)
}

#[test]
fn verify_passes_a_good_archive_and_reports_counts_gaps_and_duplicates() {
    let dir = TempDir::new("archive-tools-good");
    good_archive(&dir.0);
    let (code, stdout, stderr) = verify(&dir.0, &[]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        line(&stdout, "source live 1:"),
        "source live 1: frames=10 emergency=2 first=0 last=9 missing=0 duplicates=0 watermark=9"
    );
    assert_eq!(
        line(&stdout, "source live 2:"),
        "source live 2: frames=7 emergency=0 first=0 last=8 missing=3 duplicates=1 gaps=[4..=6] duplicated=[2]"
    );
    assert_eq!(
        line(&stdout, "source replay 1000:"),
        "source replay 1000: frames=5 emergency=0 first=0 last=4 missing=0 duplicates=0"
    );
    // Segment 2: two marks, six FRAME records, one FRAMES record of five, one mark.
    assert!(
        stdout.contains(&format!(
            "{}: {} bytes, 10 records, 11 frames, clean",
            format::segment_name(2),
            fs::metadata(dir.0.join(format::segment_name(2)))
                .unwrap()
                .len()
        )),
        "{stdout}"
    );
    let total = line(&stdout, "verify total:");
    for field in [
        "segments=2",
        "sources=3",
        "frames=22",
        "emergency=2",
        "missing=3",
        "duplicates=1",
        "problems=0",
        "valid=true",
    ] {
        assert!(total.contains(field), "{field} in {total}");
    }
    // --strict also fails on the gap and the duplicate.
    let (code, _, _) = verify(&dir.0, &["--strict"]);
    assert_eq!(code, Some(1));
}

/// A link's source whose sequence is its APID's count: after the spacecraft restarted its
/// counter its packets are numbered in the next 14-bit cycle, and the counts jumped over are no
/// frames the archive lost: `count_jumps`, not `missing`, and `--strict` passes. A link's source
/// numbered by arrival (its packets' counts are not its sequences) keeps a gap as `missing`.
#[test]
fn verify_reports_a_link_sources_count_jump_not_missing() {
    let dir = TempDir::new("archive-tools-count-jump");
    let mut first = SegmentBuilder::new();
    for seq in (0..10).chain(16_384..16_390) {
        first.packet(10_005, seq, 5, (seq % 16_384) as u16);
    }
    first.write(&dir.0, 1);
    let (code, stdout, stderr) = verify(&dir.0, &["--strict"]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(
        line(&stdout, "source live 10005:"),
        "source live 10005: frames=16 emergency=0 first=0 last=16389 missing=0 duplicates=0 count_jumps=[10..=16383]"
    );

    let mut second = SegmentBuilder::new();
    for seq in [0, 1, 5] {
        second.packet(7_000, seq, 7, 0);
    }
    second.write(&dir.0, 2);
    let (code, stdout, _) = verify(&dir.0, &[]);
    assert_eq!(code, Some(0));
    assert_eq!(
        line(&stdout, "source live 7000:"),
        "source live 7000: frames=3 emergency=0 first=0 last=5 missing=3 duplicates=0 gaps=[2..=4]"
    );
    let total = line(&stdout, "verify total:");
    assert!(
        total.contains(" missing=3 duplicates=0 count_jumps=1 "),
        "{total}"
    );
}

#[test]
fn a_corrupted_byte_mid_segment_fails_verify_naming_file_and_offset() {
    let dir = TempDir::new("archive-tools-corrupt");
    let (_, second_path, second) = good_archive(&dir.0);
    // A payload byte of the 4th record of segment 2 (a frame), with valid records after it.
    let offset = second.offsets[3];
    let mut bytes = fs::read(&second_path).unwrap();
    bytes[offset as usize + 8 + 23] ^= 0xff;
    fs::write(&second_path, &bytes).unwrap();
    let (code, stdout, stderr) = verify(&dir.0, &[]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let name = second_path.display().to_string();
    let expected = format!("{name}: corrupt at offset {offset}");
    assert!(stderr.contains(&expected), "{expected:?} in:\n{stderr}");
    assert!(stdout.contains("problems=1"), "{stdout}");
    assert!(stdout.contains("valid=false"), "{stdout}");
    // Corruption is never repaired by cutting.
    let err = format::repair_tail(&second_path, |_, _| {}).unwrap_err();
    assert!(
        err.to_string().contains(&format!("offset {offset}")),
        "{err}"
    );
}

#[test]
fn a_torn_tail_fails_verify_until_repair_tail_cuts_it() {
    let dir = TempDir::new("archive-tools-torn");
    let (_, second_path, second) = good_archive(&dir.0);
    let full = fs::metadata(&second_path).unwrap().len();
    let last = *second.offsets.last().unwrap();
    let file = fs::OpenOptions::new()
        .write(true)
        .open(&second_path)
        .unwrap();
    file.set_len(full - 3).unwrap();
    drop(file);
    let (code, stdout, stderr) = verify(&dir.0, &[]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let expected = format!("{}: torn at offset {last}", second_path.display());
    assert!(stderr.contains(&expected), "{expected:?} in:\n{stderr}");

    assert_eq!(
        format::repair_tail(&second_path, |_, _| {}).unwrap(),
        Some(full - 3 - last)
    );
    let (code, stdout, stderr) = verify(&dir.0, &[]);
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    // The cut record was the last watermark (9); the one before it remains.
    assert!(
        line(&stdout, "source live 1:").ends_with("watermark=5"),
        "{stdout}"
    );
}

#[test]
fn verify_of_a_missing_directory_is_a_usage_error() {
    let dir = TempDir::new("archive-tools-missing");
    let (code, _, stderr) = verify(&dir.0.join("nope"), &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("nope"), "{stderr}");
    let out = aggregator(&["archive", "verify"]);
    assert_eq!(out.status.code(), Some(2), "a missing DIR is a usage error");
    let out = aggregator(&["archive", "inspect", ".", "--kind", "satellite"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "an unknown kind is a usage error"
    );
}

fn inspect(dir: &Path, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["archive", "inspect", dir.to_str().unwrap()];
    args.extend_from_slice(filters);
    let out = aggregator(&args);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout.lines().map(str::to_string).collect()
}

/// (kind word, source id, sequence) of a listed frame line.
fn frame_key(line: &str) -> (String, u32, u64) {
    let words: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(words[2], "frame", "{line}");
    let seq = words[6].strip_prefix("seq=").unwrap().parse().unwrap();
    (words[3].to_string(), words[4].parse().unwrap(), seq)
}

#[test]
fn inspect_lists_records_and_filters_them() {
    let dir = TempDir::new("archive-tools-inspect");
    good_archive(&dir.0);
    let all = inspect(&dir.0, &[]);
    assert_eq!(
        all.len(),
        22 + 4,
        "every frame, watermark and stored record"
    );
    let first = &all[0];
    assert!(
        first.starts_with(&format!("{} {:>10} frame", format::segment_name(1), 8)),
        "{first}"
    );
    for field in [
        "live",
        "emergency",
        "seq=0",
        "received=2023-11-14T22:13:20.000000000Z",
        "len=3",
        "payload=313a30",
    ] {
        assert!(first.contains(field), "{field} in {first}");
    }
    assert!(all
        .iter()
        .any(|l| l.contains("watermark") && l.contains("acked=9")));
    assert!(all
        .iter()
        .any(|l| l.contains("stored") && l.contains("seq=3")));

    let emergencies = inspect(&dir.0, &["--priority", "emergency"]);
    let keys: Vec<_> = emergencies.iter().map(|l| frame_key(l)).collect();
    assert_eq!(
        keys,
        vec![("live".into(), 1, 0), ("live".into(), 1, 5)],
        "priority filter hides routine frames and marks"
    );

    let range = inspect(
        &dir.0,
        &[
            "--source", "2", "--kind", "live", "--from", "2", "--to", "7",
        ],
    );
    let described: Vec<String> = range
        .iter()
        .map(|l| l.split_whitespace().skip(2).take(1).collect::<String>())
        .collect();
    assert_eq!(
        described,
        vec!["frame", "frame", "frame", "stored", "frame"],
        "{range:#?}"
    );

    let replay = inspect(&dir.0, &["--kind", "replay", "--limit", "2"]);
    let keys: Vec<_> = replay.iter().map(|l| frame_key(l)).collect();
    assert_eq!(
        keys,
        vec![("replay".into(), 1000, 0), ("replay".into(), 1000, 1)]
    );
}

/// A CLOCK record has no source: `--source` and `--kind` neither list one nor count it against
/// `--limit`; without them, every CLOCK record is listed.
#[test]
fn inspect_of_a_source_lists_no_clock_record() {
    let dir = TempDir::new("archive-tools-inspect-clock");
    let mut segment = SegmentBuilder::new();
    segment.clock(0).frame(Live, 1, 0, Routine);
    segment.clock(-6_000_000_000).frame(Live, 1, 1, Routine);
    segment.frames(Live, 1, 2..6).frame(Live, 2, 0, Routine);
    segment.write(&dir.0, 1);
    let clocks = |lines: &[String]| lines.iter().filter(|l| l.contains(" clock ")).count();
    assert_eq!(clocks(&inspect(&dir.0, &[])), 2);
    for filters in [
        &["--source", "1", "--limit", "5"][..],
        &["--kind", "live", "--limit", "5"],
    ] {
        let lines = inspect(&dir.0, filters);
        let keys: Vec<_> = lines.iter().map(|l| frame_key(l)).collect();
        let expected: Vec<_> = (0..5).map(|seq| ("live".to_string(), 1, seq)).collect();
        assert_eq!(keys, expected, "{filters:?}: {lines:#?}");
    }
}

#[test]
fn the_daemon_command_line_is_unchanged() {
    let out = aggregator(&["--check-config", "--config", "config/aggregator.toml"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
}

/// The exit statuses a paragraph opening at "Exit status:" names: its words that are one digit.
fn exit_statuses(text: &str) -> Vec<u8> {
    let at = text
        .find("Exit status:")
        .expect("an \"Exit status:\" paragraph");
    let paragraph = text[at..].split("\n\n").next().unwrap();
    let mut statuses: Vec<u8> = paragraph
        .split_whitespace()
        .map(|word| word.trim_matches(|c: char| !c.is_ascii_alphanumeric()))
        .filter_map(|word| word.parse().ok())
        .collect();
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

/// Each archive tool's `--help` names the exit statuses docs/archive-tools.md gives it (`gaps`'
/// said "0 (gaps or none); 2 ..." though it exits 1 when it passed something over).
#[test]
fn each_tools_help_names_the_exit_statuses_its_docs_name() {
    let docs = fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/archive-tools.md"
    ))
    .expect("read docs/archive-tools.md");
    for tool in [
        "verify", "prune", "gaps", "passes", "volume", "inspect", "export", "repair",
    ] {
        let heading = format!("\n## `aggregator archive {tool} ");
        let section = docs.split(&heading).nth(1).expect("the tool's section");
        let section = section.split("\n## ").next().unwrap();
        let out = aggregator(&["archive", tool, "--help"]);
        let (help, err) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{err}");
        assert_eq!(
            exit_statuses(&help),
            exit_statuses(section),
            "archive {tool} --help:\n{help}"
        );
    }
}

/// Where a damaged record was: its segment, and the byte range it took there.
struct Damaged {
    path: PathBuf,
    start: u64,
    end: u64,
}

/// Two segments as the daemon writes them, a FRAMES record per batch: live 3 with 0..60 in batches
/// of ten, live 4 with 0..20 in batches of five between them, a checkpoint and watermarks. Returns
/// the segments' middle live 3 records (10..20 and 40..50), each with a payload byte flipped when
/// `flip` names its segment (1 or 2).
fn batched_archive(dir: &Path, flip: u64) -> [Damaged; 2] {
    [1, 2].map(|index| {
        let (three, four) = ((index - 1) * 30, (index - 1) * 10);
        let mut segment = SegmentBuilder::new();
        if index > 1 {
            segment.watermark(Live, 3, three - 1);
        }
        segment
            .frames(Live, 3, three..three + 10)
            .frames(Live, 4, four..four + 5);
        let start = segment.bytes.len() as u64;
        segment.frames(Live, 3, three + 10..three + 20);
        let end = segment.bytes.len() as u64;
        segment
            .frames(Live, 4, four + 5..four + 10)
            .frames(Live, 3, three + 20..three + 30)
            .watermark(Live, 3, three + 29);
        if index == flip {
            // The second byte of the record's first payload: its body no longer matches its CRC.
            segment.bytes[start as usize + 8 + 19 + 12 + 1] ^= 0xff;
        }
        Damaged {
            path: segment.write(dir, index),
            start,
            end,
        }
    })
}

#[test]
fn a_flipped_byte_in_an_older_segment_costs_only_its_record() {
    let dir = TempDir::new("archive-tools-resync");
    let [first, _] = batched_archive(&dir.0, 1);
    let (code, stdout, stderr) = verify(&dir.0, &[]);
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let name = first.path.display();
    let (start, end) = (first.start, first.end);
    let damaged = line(&stdout, "damaged ");
    assert!(
        damaged.starts_with(&format!(
            "damaged {name}: bytes {start}..{end} ({} bytes): CRC mismatch",
            end - start
        )),
        "{damaged}"
    );
    assert!(
        damaged.ends_with("; missing across it: live 3 seq 10..=19"),
        "{damaged}"
    );
    // Every valid record counts, those after the damage too: the record's ten frames are missing,
    // not the twenty up to the next segment.
    for expected in [
        "source live 3: frames=50 emergency=0 first=0 last=59 missing=10 duplicates=0 watermark=59 gaps=[10..=19]",
        "source live 4: frames=20 emergency=0 first=0 last=19 missing=0 duplicates=0",
    ] {
        let source = &expected[..expected.find(':').unwrap()];
        assert_eq!(line(&stdout, source), expected);
    }
    let segment_line = line(&stdout, &format!("segment {name}:"));
    assert!(
        segment_line.contains(" 5 records, 30 frames, corrupt at offset"),
        "{segment_line}"
    );
    let total = line(&stdout, "verify total:");
    let damaged_bytes = format!("damaged_bytes={}", end - start);
    for field in [
        "frames=70",
        "missing=10",
        "problems=1",
        "damaged=1",
        &damaged_bytes,
    ] {
        assert!(total.contains(field), "{field} in {total}");
    }
    let expected = format!("{name}: corrupt at offset {start}: CRC mismatch");
    assert!(stderr.contains(&expected), "{expected:?} in:\n{stderr}");
}

#[test]
fn inspect_lists_the_records_after_a_damaged_range() {
    let dir = TempDir::new("archive-tools-inspect-resync");
    let [first, _] = batched_archive(&dir.0, 1);
    let out = aggregator(&[
        "archive",
        "inspect",
        dir.0.to_str().unwrap(),
        "--source",
        "3",
        "--from",
        "18",
        "--to",
        "21",
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    let keys: Vec<_> = stdout
        .lines()
        .filter(|l| l.contains(" frame "))
        .map(frame_key)
        .collect();
    assert_eq!(keys, vec![("live".into(), 3, 20), ("live".into(), 3, 21)]);
    let expected = format!(
        "damaged {}: bytes {}..{}",
        first.path.display(),
        first.start,
        first.end
    );
    assert!(stderr.contains(&expected), "{expected:?} in:\n{stderr}");
}

/// A config whose archive is `dir`, in small segments.
fn archive_config(dir: &Path) -> aggregator::config::ArchiveConfig {
    let mut archive = Config::default().archive;
    archive.kind = ArchiveKind::Segments;
    archive.dir = dir.to_path_buf();
    archive.segment_bytes = 1 << 20;
    archive.sync = SyncMode::Never;
    archive
}

#[test]
fn repair_quarantines_the_damaged_bytes_of_the_newest_segment_and_the_daemon_starts() {
    let dir = TempDir::new("archive-tools-repair");
    let [_, newest] = batched_archive(&dir.0, 2);
    let damaged = fs::read(&newest.path).unwrap();
    let (start, end) = (newest.start as usize, newest.end as usize);
    let err = SegmentSink::open(&archive_config(&dir.0)).unwrap_err();
    let way_out = format!("aggregator archive repair {}", dir.0.display());
    assert!(err.to_string().contains(&way_out), "{err}");
    assert!(err.to_string().contains("--quarantine"), "{err}");

    let quarantined = dir
        .0
        .join("quarantine")
        .join(format!("{}.at-{start}.damaged", format::segment_name(2)));
    let repair = |extra: &[&str]| {
        let mut args = vec!["archive", "repair", dir.0.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = aggregator(&args);
        let (stdout, stderr) = text(&out);
        (out.status.code(), stdout, stderr)
    };
    // A dry run says what it would move, and moves nothing.
    let (code, stdout, stderr) = repair(&[]);
    assert_eq!(code, Some(1), "{stdout}\n{stderr}");
    let would = format!(
        "would move bytes {start}..{end} to {}",
        quarantined.display()
    );
    assert!(stdout.contains(&would), "{would:?} in:\n{stdout}");
    assert_eq!(fs::read(&newest.path).unwrap(), damaged);
    assert!(!dir.0.join("quarantine").exists());

    let (code, stdout, stderr) = repair(&["--quarantine"]);
    assert_eq!(code, Some(0), "{stdout}\n{stderr}");
    assert_eq!(fs::read(&quarantined).unwrap(), &damaged[start..end]);
    let kept = [&damaged[..start], &damaged[end..]].concat();
    assert_eq!(fs::read(&newest.path).unwrap(), kept);

    // The daemon's recovery now starts, with every valid record of the newest segment read.
    let (sink, resume) = SegmentSink::open(&archive_config(&dir.0)).unwrap();
    let (code, _, stderr) = repair(&["--quarantine"]);
    assert_eq!(code, Some(2), "never under a running daemon: {stderr}");
    assert!(
        stderr.contains("in use by another aggregator process"),
        "{stderr}"
    );
    drop(sink);
    assert_eq!(resume[&(Live, 3)].after(), Some(59));
    let stored_four: Vec<_> = (10..20)
        .filter(|&seq| resume[&(Live, 4)].already_stored.contains(seq))
        .collect();
    assert_eq!(stored_four, (10..20).collect::<Vec<_>>());
    // Nothing is left to repair in what the daemon now reads.
    let (code, stdout, _) = repair(&[]);
    assert_eq!(code, Some(0), "{stdout}");
    assert!(stdout.contains("clean, nothing to repair"), "{stdout}");
}

/// What a crash leaves before the next start: live 1's emergencies 5 and 6 were acknowledged from
/// the emergency journal, and the crash took them from the segment's unsynced tail; emergency 3
/// is in both. Returns the journal's path and the offsets of its three records.
fn journaled_archive(dir: &Path) -> (PathBuf, Vec<u64>) {
    let mut segment = SegmentBuilder::new();
    segment.frame(Live, 1, 3, Emergency);
    for seq in [0, 1, 2, 4, 7] {
        segment.frame(Live, 1, seq, Routine);
    }
    segment.write(dir, 1);
    let mut journal = SegmentBuilder::new();
    for seq in [3, 5, 6] {
        journal.frame(Live, 1, seq, Emergency);
    }
    let journal_path = dir.join("emergency-00000000000000000001.journal");
    fs::write(&journal_path, &journal.bytes).unwrap();
    (journal_path, journal.offsets)
}

/// `verify --strict` counts the frames only the journal holds present, once (emergency 3 is in
/// both the segment and the journal), and says how many the next start stores from the journal:
/// 5 and 6 are in no segment (past live 1's last there, so not even a gap).
#[test]
fn verify_counts_frames_only_an_emergency_journal_holds_once() {
    let dir = TempDir::new("verify-journal");
    let (journal_path, _) = journaled_archive(&dir.0);

    let (status, stdout, stderr) = verify(&dir.0, &["--strict"]);
    assert_eq!(status, Some(0), "{stdout}{stderr}");
    assert_eq!(
        line(&stdout, "source live 1:"),
        "source live 1: frames=8 emergency=3 first=0 last=7 missing=0 duplicates=0 journaled=2"
    );
    assert_eq!(
        line(&stdout, "journal "),
        format!(
            "journal {}: 3 frames, 2 in no segment (the next start stores them), clean",
            journal_path.display()
        )
    );
    let total = line(&stdout, "verify total:");
    assert!(
        total.contains(" frames=8 emergency=3 journaled=2 pruned=0 missing=0 duplicates=0 "),
        "{total}"
    );
}

/// An emergency journal of format version 3 or 4 (the earlier versions that had journals) is
/// read as today's: `verify` counts the frames only it holds, and the daemon's start opens on it.
#[test]
fn an_emergency_journal_an_earlier_build_wrote_is_read() {
    for version in ["TLMSEG03", "TLMSEG04"] {
        let dir = TempDir::new(&format!("journal-{version}"));
        let (journal_path, _) = journaled_archive(&dir.0);
        let mut bytes = fs::read(&journal_path).unwrap();
        bytes[..8].copy_from_slice(version.as_bytes());
        fs::write(&journal_path, bytes).unwrap();
        let (status, stdout, stderr) = verify(&dir.0, &["--strict"]);
        assert_eq!(status, Some(0), "{version}: {stdout}{stderr}");
        let source = line(&stdout, "source live 1:");
        assert!(source.ends_with(" journaled=2"), "{version}: {source}");
        let sink = SegmentSink::open(&archive_config(&dir.0));
        assert!(sink.is_ok(), "{version}: {:?}", sink.err());
    }
}

/// `inspect` lists the frames only the journal holds after the segment's, each naming the journal
/// and its record's offset, and filters them as it filters the segment's; emergency 3, which the
/// segment holds too, is listed once. Before, it listed segments only.
#[test]
fn inspect_lists_the_frames_only_an_emergency_journal_holds() {
    let dir = TempDir::new("inspect-journal");
    let (_, offsets) = journaled_archive(&dir.0);
    let journal = "emergency-00000000000000000001.journal";

    let all = inspect(&dir.0, &[]);
    let keys: Vec<_> = all.iter().map(|l| frame_key(l)).collect();
    let live_one = |seqs: &[u64]| seqs.iter().map(|&s| ("live".into(), 1, s)).collect();
    let expected: Vec<_> = live_one(&[3, 0, 1, 2, 4, 7, 5, 6]);
    assert_eq!(keys, expected, "{all:#?}");
    let segment_name = format::segment_name(1);
    assert!(
        all[..6].iter().all(|l| l.starts_with(&segment_name)),
        "{all:#?}"
    );
    assert_eq!(
        all[6],
        format!(
            "{journal} {:>10} frame     live            1 emergency seq=5 \
             received=2023-11-14T22:13:20.005000000Z len=3 payload=313a35",
            offsets[1]
        )
    );
    assert!(
        all[7].starts_with(&format!("{journal} {:>10} frame", offsets[2])),
        "{}",
        all[7]
    );

    let from_six = inspect(&dir.0, &["--from", "6"]);
    let keys: Vec<_> = from_six.iter().map(|l| frame_key(l)).collect();
    assert_eq!(keys, live_one(&[7, 6]), "{from_six:#?}");
    assert!(from_six[1].starts_with(journal), "{from_six:#?}");
    let routine = inspect(&dir.0, &["--priority", "routine"]);
    assert!(
        !routine.iter().any(|l| l.starts_with(journal)),
        "{routine:#?}"
    );
    let limited = inspect(&dir.0, &["--priority", "emergency", "--limit", "2"]);
    let keys: Vec<_> = limited.iter().map(|l| frame_key(l)).collect();
    assert_eq!(keys, live_one(&[3, 5]), "{limited:#?}");
}

/// `repair`, dry run and `--quarantine`, says how many frames each shard's journals hold that the
/// next start stores, and in total, and leaves the journals as they are: shard 0's journal holds
/// 2 (5 and 6), shard 2's 1 (live 2's emergency 4; its 2 is at the segment's watermark). The
/// start itself then stores exactly those. Before, it said nothing of the journals.
#[test]
fn repair_says_what_the_next_start_stores_from_the_journals_and_leaves_them() {
    let dir = TempDir::new("repair-journal");
    let (journal_zero, _) = journaled_archive(&dir.0);
    let shard_two = dir.0.join("shard-02");
    fs::create_dir_all(&shard_two).unwrap();
    let mut segment = SegmentBuilder::new();
    segment.frames(Live, 2, 0..3).watermark(Live, 2, 2);
    segment.write(&shard_two, 1);
    let mut journal = SegmentBuilder::new();
    journal
        .frame(Live, 2, 2, Emergency)
        .frame(Live, 2, 4, Emergency);
    let journal_two = shard_two.join("emergency-00000000000000000003.journal");
    fs::write(&journal_two, &journal.bytes).unwrap();
    let journals = [&journal_zero, &journal_two].map(|path| fs::read(path).unwrap());

    let lines = [
        format!(
            "journals {}: the next start stores 2 frames from 1 journal",
            dir.0.display()
        ),
        format!(
            "journals {}: the next start stores 1 frame from 1 journal",
            shard_two.display()
        ),
        "journals total: the next start stores 3 frames from 2 journals; \
         repair leaves the journals as they are"
            .to_string(),
    ];
    for extra in [&[][..], &["--quarantine"]] {
        let mut args = vec!["archive", "repair", dir.0.to_str().unwrap()];
        args.extend_from_slice(extra);
        let out = aggregator(&args);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {stdout}{stderr}");
        let printed: Vec<_> = stdout
            .lines()
            .filter(|l| l.starts_with("journals "))
            .collect();
        assert_eq!(printed, lines, "{extra:?}: {stdout}");
        assert!(stdout.contains("clean, nothing to repair"), "{stdout}");
        let after = [&journal_zero, &journal_two].map(|path| fs::read(path).unwrap());
        assert_eq!(after, journals, "{extra:?} leaves the journals as they are");
    }
}

/// The replay plays the frames only the journal holds, in sequence order with the segment's
/// frames of their source, and emergency 3, which both hold, once: 5 and 6 are in no segment.
#[test]
fn the_replay_plays_the_frames_only_an_emergency_journal_holds_in_order() {
    let dir = TempDir::new("replay-journal");
    journaled_archive(&dir.0);
    let loaded = aggregator::sim::replay::load_archive(&dir.0, aggregator::sim::Pace::Max).unwrap();
    assert_eq!(
        loaded.duplicates, 0,
        "the journal's copy of 3 is no duplicate"
    );
    assert!(loaded.torn.is_empty() && loaded.skipped.is_empty());
    let [(1, recording)] = &loaded.sources[..] else {
        panic!("one source: {:?}", loaded.sources);
    };
    let played: Vec<_> = recording
        .frames
        .iter()
        .map(|f| (f.sequence, f.priority, f.payload.clone()))
        .collect();
    let expected: Vec<_> = (0..8)
        .map(|seq| {
            let priority = if [3, 5, 6].contains(&seq) {
                Emergency
            } else {
                Routine
            };
            (seq, priority, bytes::Bytes::from(format!("1:{seq}")))
        })
        .collect();
    assert_eq!(played, expected);
}

/// A segment or an emergency journal of a format version no build wrote (here a newer `TLMSEG07`
/// and `TLMSEG00`) is refused by the daemon's start and by the tools, with an error naming the
/// file, the version found and the versions read; nothing is taken for damage.
#[test]
fn a_segment_or_journal_of_another_format_version_is_refused_naming_file_and_versions() {
    // The file of the magic `TLMSEG0{found}` is refused: the error names it and both versions.
    let assert_refused = |err: &str, found: u8, path: &Path| {
        let says = format!(
            "archive format version {found} (magic TLMSEG0{found}); this build reads versions 1 to 6"
        );
        assert!(err.contains(&says), "{err}");
        assert!(err.contains(path.to_str().unwrap()), "{err}");
    };
    let with_magic = |path: &Path, found: u8| {
        let mut bytes = fs::read(path).unwrap();
        bytes[..8].copy_from_slice(format!("TLMSEG0{found}").as_bytes());
        fs::write(path, bytes).unwrap();
    };
    let open = |dir: &Path| {
        SegmentSink::open(&archive_config(dir))
            .unwrap_err()
            .to_string()
    };

    let dir = TempDir::new("archive-tools-older-segment");
    let (_, newest, _) = good_archive(&dir.0);
    with_magic(&newest, 7);
    assert_refused(&open(&dir.0), 7, &newest);
    let (code, _, stderr) = verify(&dir.0, &[]);
    assert_ne!(code, Some(0), "{stderr}");
    assert_refused(&stderr, 7, &newest);

    let dir = TempDir::new("archive-tools-older-journal");
    let (journal, _) = journaled_archive(&dir.0);
    with_magic(&journal, 0);
    assert_refused(&open(&dir.0), 0, &journal);
}
