//! `aggregator archive export` against a full scan: on archives of several shards and many
//! segments, with sources, priorities and sizes at random and received times out of order, every
//! window's export (in every format) holds exactly the frames a scan of every record finds, in each
//! shard's order; windows that start or end inside a segment, before the oldest frame and after
//! the newest included. Bad arguments are refused with the reason (exit status 2). The Parquet
//! file, read back with the `parquet` crate, holds the NDJSON rows, typed; and, with the PyPI
//! packages of `tests/analytics/` (`.ci/run` installs them), DuckDB and pyarrow find in the
//! Parquet and CSV files what the archive holds, source by source.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use aggregator::archive::format;
use aggregator::archive::query::export::COLUMNS;
use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::{Priority, SourceKind};
use base64::Engine as _;
use common::TempDir;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;

const T0: u64 = 1_800_000_000_000_000_000;
const SHARDS: usize = 3;
const SEGMENTS: u64 = 5;
const RECORDS: u64 = 120;
/// Received times step by 1 ms a record, give or take 30 ms, and now and then a frame a minute
/// old (as one recovered from a journal).
const STEP: u64 = 1_000_000;

/// A frame as an export row names it: received, kind, source, sequence, priority, shard,
/// position, payload.
type Row = (String, String, u32, u64, String, usize, String, Vec<u8>);

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Writes the archive: `SHARDS` shards of `SEGMENTS` segments of `RECORDS` FRAMES records each.
fn write_archive(root: &Path) {
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut next: BTreeMap<u32, u64> = BTreeMap::new();
    for shard in 0..SHARDS {
        let dir = format::shard_dir(root, shard);
        fs::create_dir_all(&dir).unwrap();
        for index in 0..SEGMENTS {
            let mut bytes = format::MAGIC.to_vec();
            for record in 0..RECORDS {
                let at = T0 + (index * RECORDS + record) * STEP;
                let received = match rng.below(40) {
                    0 => at - 60_000_000_000,
                    _ => at + rng.below(60_000_000) - 30_000_000,
                };
                let id = 100 * shard as u32 + rng.below(3) as u32;
                let kind = match id % 2 {
                    0 => SourceKind::LiveUplink,
                    _ => SourceKind::ArchivedReplay,
                };
                let priority = match rng.below(4) {
                    0 => Priority::Emergency,
                    _ => Priority::Routine,
                };
                let payloads: Vec<Vec<u8>> =
                    (0..1 + rng.below(3)).map(|_| payload(&mut rng)).collect();
                let sequence = next.entry(id).or_default();
                let frames: Vec<(u64, &[u8])> = payloads
                    .iter()
                    .map(|payload| {
                        *sequence += 1;
                        (*sequence, payload.as_slice())
                    })
                    .collect();
                format::encode_frames(&mut bytes, kind, priority, id, received, frames);
            }
            fs::write(dir.join(format::segment_name(index)), bytes).unwrap();
        }
    }
}

/// A payload of up to 2000 bytes; one in four a CCSDS space packet of APID 0 to 2047, now and
/// then one whose length field is off by one (no packet: no APID in the Parquet file).
fn payload(rng: &mut Rng) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..rng.below(2000)).map(|b| b as u8).collect();
    if rng.below(4) == 0 {
        let apid = rng.below(2048) as u16;
        let data = 1 + rng.below(1000) as usize;
        let length = (data - 1 + rng.below(5).saturating_sub(3) as usize) as u16;
        bytes = [(apid >> 8) as u8, apid as u8, 0xC0, 0].to_vec();
        bytes.extend_from_slice(&length.to_be_bytes());
        bytes.extend((0..data).map(|b| b as u8));
    }
    bytes
}

/// The APID the Parquet file should hold for `payload`: a version-0 header whose length field
/// (+ 7) is the payload's length.
fn expected_apid(payload: &[u8]) -> Option<i32> {
    let header = payload.get(..6)?;
    let length = u16::from_be_bytes([header[4], header[5]]) as usize + 7;
    (header[0] >> 5 == 0 && length == payload.len())
        .then(|| i32::from(u16::from_be_bytes([header[0], header[1]]) & 0x7FF))
}

/// Every frame of the archive, each shard's in its order, read from the files whole.
fn scanned(root: &Path) -> Vec<(u64, Row)> {
    let mut rows = Vec::new();
    for shard in 0..SHARDS {
        let dir = format::shard_dir(root, shard);
        for (position, f) in common::stored_frames(&dir) {
            let kind = match f.kind {
                SourceKind::LiveUplink => "live",
                SourceKind::ArchivedReplay => "replay",
            };
            let priority = match f.priority {
                Priority::Routine => "routine",
                Priority::Emergency => "emergency",
            };
            let row = (
                unix_ns_to_rfc3339(f.received_unix_ns),
                kind.to_string(),
                f.source_id,
                f.sequence,
                priority.to_string(),
                shard,
                format!("{shard}/{position}"),
                f.payload.to_vec(),
            );
            rows.push((f.received_unix_ns, row));
        }
    }
    rows
}

fn export(root: &Path, args: &[&str]) -> (Option<i32>, Vec<u8>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "export", root.to_str().unwrap(), "-o", "-"])
        .args(args)
        .output()
        .expect("run aggregator archive export");
    let err = String::from_utf8(out.stderr).unwrap();
    (out.status.code(), out.stdout, err)
}

/// `aggregator archive export` to the file `out`: its exit status and standard error.
fn export_to(root: &Path, out: &Path, args: &[&str]) -> (Option<i32>, String) {
    let status = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "export", root.to_str().unwrap(), "-o"])
        .arg(out)
        .args(args)
        .output()
        .expect("run aggregator archive export");
    (
        status.status.code(),
        String::from_utf8(status.stderr).unwrap(),
    )
}

fn base64(text: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .unwrap()
}

fn ndjson_rows(bytes: &[u8]) -> Vec<Row> {
    let text = std::str::from_utf8(bytes).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let text = |key: &str| v[key].as_str().unwrap().to_string();
            (
                text("received"),
                text("kind"),
                v["source"].as_u64().unwrap() as u32,
                v["sequence"].as_u64().unwrap(),
                text("priority"),
                v["shard"].as_u64().unwrap() as usize,
                text("position"),
                base64(&text("payload")),
            )
        })
        .collect()
}

fn csv_rows(bytes: &[u8]) -> Vec<Row> {
    let text = std::str::from_utf8(bytes).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some(
            "received,kind,source,sequence,priority,shard,position,payload,\
             link,station,mode,earth_received,ax25_from,ax25_to,recording"
        )
    );
    lines
        .map(|line| {
            let f: Vec<&str> = line.split(',').collect();
            // The ingest protocol's frames have no reception: its seven fields are empty.
            assert_eq!((f.len(), &f[8..]), (15, &[""; 7][..]), "{line}");
            (
                f[0].to_string(),
                f[1].to_string(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
                f[4].to_string(),
                f[5].parse().unwrap(),
                f[6].to_string(),
                base64(f[7]),
            )
        })
        .collect()
}

/// The rows of a Parquet export, read with the `parquet` crate's reader: the columns named and
/// typed as documented, each row's `apid` the payload's and `station` null.
fn parquet_rows(bytes: Vec<u8>) -> Vec<Row> {
    let reader = SerializedFileReader::new(bytes::Bytes::from(bytes)).expect("a Parquet file");
    let rows = reader.get_row_iter(None).unwrap();
    rows.map(|row| {
        let columns = row.unwrap().into_columns();
        let names: Vec<&str> = columns.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, COLUMNS);
        let values: Vec<Field> = columns.into_iter().map(|(_, value)| value).collect();
        let text = |field: &Field| match field {
            Field::Str(text) => text.clone(),
            other => panic!("{other:?} is no string"),
        };
        let (received, kind, source, sequence, priority, shard, position, payload) = match &values
            [..8]
        {
            [Field::Long(r), k, Field::UInt(i), Field::ULong(s), p, Field::UInt(h), o, Field::Bytes(b)] => {
                (*r, k, *i, *s, p, *h, o, b.data().to_vec())
            }
            other => panic!("not the documented types: {other:?}"),
        };
        let apid = match values[8] {
            Field::Int(apid) => Some(apid),
            Field::Null => None,
            ref other => panic!("apid {other:?}"),
        };
        assert_eq!(apid, expected_apid(&payload), "apid of {position:?}");
        assert!(
            values[9..].iter().all(|v| *v == Field::Null),
            "no reception: {:?}",
            &values[9..]
        );
        (
            unix_ns_to_rfc3339(received as u64),
            text(kind),
            source,
            sequence,
            text(priority),
            shard as usize,
            text(position),
            payload,
        )
    })
    .collect()
}

/// Fails naming the first row that differs (rows hold whole payloads: too long to print all).
fn same(got: &BTreeMap<usize, Vec<Row>>, expected: &BTreeMap<usize, Vec<Row>>, what: &str) {
    for shard in got.keys().chain(expected.keys()) {
        let (a, b) = (&got.get(shard), &expected.get(shard));
        let (a, b) = (a.map_or(&[][..], |v| v), b.map_or(&[][..], |v| v));
        if let Some(at) = (0..a.len().max(b.len())).find(|&i| a.get(i) != b.get(i)) {
            let short = |row: Option<&Row>| row.map(|r| (r.0.clone(), r.2, r.3, r.6.clone()));
            panic!(
                "{what}: shard {shard}: {} rows, {} expected; row {at}: {:?}, expected {:?}",
                a.len(),
                b.len(),
                short(a.get(at)),
                short(b.get(at))
            );
        }
    }
}

/// Each shard's rows in the order they came (the export interleaves shards).
fn by_shard(rows: Vec<Row>) -> BTreeMap<usize, Vec<Row>> {
    let mut shards: BTreeMap<usize, Vec<Row>> = BTreeMap::new();
    for row in rows {
        shards.entry(row.5).or_default().push(row);
    }
    shards
}

#[test]
fn every_window_exports_exactly_what_a_full_scan_finds() {
    let dir = TempDir::new("export-exact");
    write_archive(&dir.0);
    let all = scanned(&dir.0);
    let packets = all.iter().filter(|(_, r)| expected_apid(&r.7).is_some());
    let near_misses = all.iter().filter(|(_, r)| {
        r.7.len() >= 6 && r.7[0] == 0 && r.7[2] == 0xC0 && expected_apid(&r.7).is_none()
    });
    assert!(
        packets.count() > 100 && near_misses.count() > 10,
        "packets and near misses"
    );
    let (first, last) = (T0, T0 + SEGMENTS * RECORDS * STEP);
    let mut rng = Rng(99);
    let mut windows = vec![
        (None, None),
        (Some(first - 120_000_000_000), Some(first + 5 * STEP)),
        (Some(last - 3 * STEP), Some(last + 120_000_000_000)),
        (Some(last + 120_000_000_000), None),
    ];
    for _ in 0..8 {
        let from = first + rng.below(last - first);
        windows.push((Some(from), Some(from + rng.below(2 * RECORDS * STEP))));
    }
    for (n, (from, to)) in windows.into_iter().enumerate() {
        let (from_text, to_text) = (from.map(unix_ns_to_rfc3339), to.map(unix_ns_to_rfc3339));
        let mut args = Vec::new();
        if let Some(from) = &from_text {
            args.extend(["--from", from.as_str()]);
        }
        if let Some(to) = &to_text {
            args.extend(["--to", to.as_str()]);
        }
        // Every other window: one source of shard 1 only.
        let one_source = n % 2 == 1;
        if one_source {
            args.extend(["--source", "live:100", "--source", "replay:101"]);
        }
        let wanted = |received: u64, row: &Row| {
            from.is_none_or(|from| received >= from)
                && to.is_none_or(|to| received <= to)
                && (!one_source || [100, 101].contains(&row.2))
        };
        let expected: Vec<Row> = (all.iter())
            .filter(|(received, row)| wanted(*received, row))
            .map(|(_, row)| row.clone())
            .collect();
        let (status, ndjson, err) = export(&dir.0, &[&args[..], &["--format", "ndjson"]].concat());
        assert_eq!(status, Some(0), "{args:?}: {err}");
        let what = format!("{args:?}");
        same(
            &by_shard(ndjson_rows(&ndjson)),
            &by_shard(expected.clone()),
            &what,
        );
        let (status, csv, err) = export(&dir.0, &[&args[..], &["--format", "csv"]].concat());
        assert_eq!(status, Some(0), "{args:?}: {err}");
        assert!(
            csv_rows(&csv) == ndjson_rows(&ndjson),
            "{args:?}: CSV and NDJSON differ"
        );
        assert!(
            err.contains(&format!("exported {} frames", expected.len())),
            "{err}"
        );
        // Parquet, to standard output (the writer needs no seeking): the same rows, typed.
        let (status, parquet, err) =
            export(&dir.0, &[&args[..], &["--format", "parquet"]].concat());
        assert_eq!(status, Some(0), "{args:?}: {err}");
        assert!(
            parquet_rows(parquet) == ndjson_rows(&ndjson),
            "{args:?}: Parquet and NDJSON differ"
        );
        // raw: each payload after its length; ccsds: the payloads back to back, in the same order.
        let payloads: Vec<Vec<u8>> = ndjson_rows(&ndjson).into_iter().map(|r| r.7).collect();
        let (_, raw, _) = export(&dir.0, &[&args[..], &["--format", "raw"]].concat());
        let framed: Vec<u8> = (payloads.iter())
            .flat_map(|p| [&(p.len() as u32).to_be_bytes()[..], p].concat())
            .collect();
        assert!(raw == framed, "{args:?}: raw differs");
        let (_, ccsds, _) = export(&dir.0, &[&args[..], &["--format", "ccsds"]].concat());
        assert!(ccsds == payloads.concat(), "{args:?}: ccsds differs");
    }
}

/// `--apid N` exports the frames that are one space packet of APID N, as `GET /archive/frames`'
/// `apid` answers: not a payload that only looks like one (its length field off by one).
#[test]
fn an_apid_exports_only_its_packets() {
    let dir = TempDir::new("export-apid");
    write_archive(&dir.0);
    let all = scanned(&dir.0);
    let mut counts: BTreeMap<i32, usize> = BTreeMap::new();
    for (_, row) in &all {
        if let Some(apid) = expected_apid(&row.7) {
            *counts.entry(apid).or_default() += 1;
        }
    }
    let (&apid, _) = (counts.iter()).max_by_key(|(_, n)| **n).unwrap();
    let text = apid.to_string();
    for priority in [None, Some("emergency")] {
        let mut args = vec!["--format", "ndjson", "--apid", &text];
        args.extend(priority.iter().flat_map(|p| ["--priority", p]));
        let expected: Vec<Row> = (all.iter())
            .filter(|(_, row)| expected_apid(&row.7) == Some(apid))
            .filter(|(_, row)| priority.is_none_or(|p| row.4 == p))
            .map(|(_, row)| row.clone())
            .collect();
        assert!(!expected.is_empty(), "{args:?}");
        let (status, ndjson, err) = export(&dir.0, &args);
        assert_eq!(status, Some(0), "{args:?}: {err}");
        let what = format!("{args:?}");
        same(&by_shard(ndjson_rows(&ndjson)), &by_shard(expected), &what);
    }
    let (status, out, err) = export(&dir.0, &["--format", "csv", "--apid", "2048"]);
    assert_eq!(status, Some(2), "{err}");
    assert!(err.contains("--apid"), "{err}");
    assert!(out.is_empty());
}

/// `--kind` keeps the frames of the sources of that kind, with the values and meaning of the
/// `kind` of `GET /archive/frames`; an unknown kind is refused with the reason.
#[test]
fn a_kind_exports_only_the_frames_of_its_sources() {
    let dir = TempDir::new("export-kind");
    write_archive(&dir.0);
    let all = scanned(&dir.0);
    for kind in ["live", "replay"] {
        let expected: Vec<Row> = (all.iter())
            .filter(|(_, row)| row.1 == kind)
            .map(|(_, row)| row.clone())
            .collect();
        assert!(!expected.is_empty() && expected.len() < all.len(), "{kind}");
        let (status, ndjson, err) = export(&dir.0, &["--format", "ndjson", "--kind", kind]);
        assert_eq!(status, Some(0), "--kind {kind}: {err}");
        same(&by_shard(ndjson_rows(&ndjson)), &by_shard(expected), kind);
    }
    let (status, out, err) = export(&dir.0, &["--format", "csv", "--kind", "radio"]);
    assert_eq!(status, Some(2), "{err}");
    assert!(err.contains("--kind") && err.contains("radio"), "{err}");
    assert!(out.is_empty());
}

#[test]
fn bad_arguments_are_refused_with_the_reason() {
    let dir = TempDir::new("export-bad");
    write_archive(&dir.0);
    for (args, needle) in [
        (&["--format", "xml"][..], "unknown format \"xml\""),
        (&["--format", "csv", "--from", "noon"], "is not a time"),
        (
            &[
                "--format",
                "csv",
                "--from",
                "2026-11-24T10:00:00Z",
                "--to",
                "2026-11-24T09:00:00Z",
            ],
            "--from is after --to",
        ),
        (&["--format", "csv", "--source", "radio:1"], "radio"),
    ] {
        let (status, out, err) = export(&dir.0, args);
        assert_eq!(status, Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{needle:?} in {err}");
        assert!(out.is_empty());
    }
    let missing = dir.0.join("nothing-here");
    let (status, _, err) = export(&missing, &["--format", "csv"]);
    assert_eq!(status, Some(2), "{err}");
    assert!(err.contains("is not a directory"), "{err}");
}

/// Writes FRAMES records of `kind:id`, one per sequence, received a millisecond apart from `at`.
fn frames_of(bytes: &mut Vec<u8>, (kind, id): (SourceKind, u32), sequences: &[u64], at: u64) {
    for (n, &sequence) in sequences.iter().enumerate() {
        let received = at + n as u64 * STEP;
        let payload = [sequence as u8; 16];
        let frame = [(sequence, &payload[..])];
        format::encode_frames(bytes, kind, Priority::Routine, id, received, frame);
    }
}

fn gaps(root: &Path, args: &[&str]) -> serde_json::Value {
    let (status, json, err) = gaps_and_status(root, args);
    assert_eq!(status, Some(0), "{err}");
    json
}

/// `archive gaps --json`: its exit status, its answer and its standard error.
fn gaps_and_status(root: &Path, args: &[&str]) -> (Option<i32>, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "gaps", root.to_str().unwrap(), "--json"])
        .args(args)
        .output()
        .expect("run aggregator archive gaps");
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (
        out.status.code(),
        serde_json::from_slice(&out.stdout).unwrap(),
        err,
    )
}

/// `archive gaps`: the runs each source holds in a window and the gaps between them, those
/// retention deleted told apart from those that never came; the same from the segments' indexes
/// as from reading them.
#[test]
fn gaps_say_what_retention_deleted_and_what_never_arrived() {
    let dir = TempDir::new("export-gaps");
    let root = &dir.0;
    let live = (SourceKind::LiveUplink, 7);
    let seconds = |s: u64| T0 + s * 1_000_000_000;
    // Segment 0: live:7 11..=20 (first received, as after an emergency overtook); segment 1: 0..=10
    // (recovered from a journal), 21..=30, then 40..=50 (31..=39 never came); segment 2, the
    // newest: 51..=60 and replay:8.
    let mut segments = vec![format::MAGIC.to_vec(); 3];
    frames_of(
        &mut segments[0],
        live,
        &(11..=20).collect::<Vec<_>>(),
        seconds(1),
    );
    let second: Vec<u64> = (0..=10).chain(21..=30).chain(40..=50).collect();
    frames_of(&mut segments[1], live, &second, seconds(10));
    frames_of(
        &mut segments[2],
        live,
        &(51..=60).collect::<Vec<_>>(),
        seconds(20),
    );
    let replay = (SourceKind::ArchivedReplay, 8);
    frames_of(
        &mut segments[2],
        replay,
        &(0..=9).collect::<Vec<_>>(),
        seconds(20),
    );
    fs::create_dir_all(root).unwrap();
    for (index, bytes) in segments.iter().enumerate() {
        fs::write(root.join(format::segment_name(index as u64)), bytes).unwrap();
    }
    let pruned = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "prune", root.to_str().unwrap(), "--before"])
        .arg(unix_ns_to_rfc3339(seconds(5)))
        .output()
        .unwrap();
    assert_eq!(pruned.status.code(), Some(0));

    let every = gaps(root, &[]);
    let sources = every["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{every}");
    let (live_7, replay_8) = (&sources[0], &sources[1]);
    assert_eq!(
        (live_7["kind"].as_str(), live_7["source"].as_u64()),
        (Some("live"), Some(7))
    );
    assert_eq!(live_7["frames"], 11 + 10 + 11 + 10);
    assert_eq!(
        live_7["held"],
        serde_json::json!([[0, 10], [21, 30], [40, 60]])
    );
    assert_eq!(
        live_7["gaps"],
        serde_json::json!([
            {"first": 11, "last": 20, "frames": 10, "cause": "retention"},
            {"first": 31, "last": 39, "frames": 9, "cause": "not_received"},
        ])
    );
    assert_eq!(replay_8["held"], serde_json::json!([[0, 9]]));
    assert_eq!(replay_8["gaps"], serde_json::json!([]));

    // A window through segment 1 (read, not answered from its index) and one source.
    let from = unix_ns_to_rfc3339(seconds(10) + 5 * STEP);
    let to = unix_ns_to_rfc3339(seconds(10) + 25 * STEP);
    let window = gaps(root, &["--from", &from, "--to", &to, "--source", "live:7"]);
    assert_eq!(window["from"].as_str(), Some(from.as_str()));
    let only = &window["sources"].as_array().unwrap()[0];
    // Records 5..=25 of segment 1: sequences 5..=10, 21..=30, 40..=44.
    assert_eq!(
        only["held"],
        serde_json::json!([[5, 10], [21, 30], [40, 44]])
    );
    assert_eq!(only["frames"], 6 + 10 + 5);
    assert_eq!(only["gaps"][0]["cause"], "retention");
    assert_eq!(only["gaps"][1]["cause"], "not_received");
    // docs/archive-tools.md's line, byte for byte.
    let path = root.to_str().unwrap();
    let json = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["archive", "gaps", path, "--source", "live:7", "--json"])
        .output()
        .unwrap();
    let documented = "{\"from\":null,\"sources\":[{\"first\":0,\"frames\":42,\"gaps\":[\
        {\"cause\":\"retention\",\"first\":11,\"frames\":10,\"last\":20},{\"cause\":\"not_received\",\
        \"first\":31,\"frames\":9,\"last\":39}],\"held\":[[0,10],[21,30],[40,60]],\"kind\":\"live\",\
        \"last\":60,\"source\":7}],\"to\":null}";
    assert_eq!(
        String::from_utf8(json.stdout).unwrap().trim_end(),
        documented
    );
    let text = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args([
            "archive",
            "gaps",
            root.to_str().unwrap(),
            "--source",
            "live:7",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8(text.stdout).unwrap();
    assert_eq!(
        text,
        "live:7 frames=42 held=0..10,21..30,40..60 gaps=2\n\
         \x20 gap 11..20 (10 frames): retention\n\
         \x20 gap 31..39 (9 frames): not_received\n\
         total sources=1 frames=42 gaps=2\n"
    );
}

/// A damaged record inside the window is passed over and named (exit status 1), and every other
/// frame of the window is still exported: what a scan that resynchronises after damage finds. A
/// Parquet file holds the same rows.
#[test]
fn a_damaged_record_is_named_and_the_rest_of_the_window_exported() {
    let dir = TempDir::new("export-damaged");
    write_archive(&dir.0);
    // A byte in the middle of shard 1's segment 2, a sealed one.
    let path = format::shard_dir(&dir.0, 1).join(format::segment_name(2));
    let mut bytes = fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    fs::write(&path, &bytes).unwrap();
    let scan = format::read_segment(&path).unwrap();
    assert_eq!(scan.damaged.len(), 1, "one damaged range");
    let (status, ndjson, err) = export(&dir.0, &["--format", "ndjson"]);
    assert_eq!(status, Some(1), "{err}");
    let damage = &scan.damaged[0];
    assert!(
        err.contains(&format!(
            "shard 1 segment 2 bytes {}..{} damaged, passed over",
            damage.start, damage.end
        )),
        "{err} (verify: {damage:?})"
    );
    let expected: Vec<Row> = scanned(&dir.0).into_iter().map(|(_, row)| row).collect();
    same(
        &by_shard(ndjson_rows(&ndjson)),
        &by_shard(expected),
        "damaged",
    );
    // Parquet too: the same rows, in a whole file (its footer written).
    let (status, parquet, err) = export(&dir.0, &["--format", "parquet"]);
    assert_eq!(status, Some(1), "{err}");
    assert!(
        parquet_rows(parquet) == ndjson_rows(&ndjson),
        "damaged: Parquet and NDJSON differ"
    );
}

/// `archive gaps` passes over a damaged record of a segment it reads, as `verify` names it, and
/// goes past a segment deleted by hand, naming both (exit status 1): what the other records
/// hold is still answered.
#[test]
fn gaps_name_damage_and_a_missing_segment_and_answer_the_rest() {
    let dir = TempDir::new("gaps-damaged");
    let root = &dir.0;
    // Segments 0, 1 and 2 (the newest, read record by record) hold 0..=9, 10..=19, 20..=29.
    write_segments(root, &tens_of_live_7(3));
    // A byte of the newest segment's fifth record (sequence 24) changed.
    let newest = root.join(format::segment_name(2));
    let mut bytes = fs::read(&newest).unwrap();
    damage_record(&mut bytes, 4);
    fs::write(&newest, &bytes).unwrap();
    let scan = format::read_segment(&newest).unwrap();
    let [damage] = &scan.damaged[..] else {
        panic!("one damaged range: {:?}", scan.damaged)
    };

    let (status, answer, err) = gaps_and_status(root, &[]);
    assert_eq!(status, Some(1), "{err}");
    let named = format!(
        "shard 0 segment 2 bytes {}..{} damaged, passed over",
        damage.start, damage.end
    );
    assert!(err.contains(&named), "{err}");
    let held = serde_json::json!([[0, 23], [25, 29]]);
    assert_eq!(answer["sources"][0]["held"], held, "{answer}");
    let damaged = &answer["damaged"][0];
    assert_eq!(
        (&damaged["segment"], &damaged["from"], &damaged["to"]),
        (&2.into(), &damage.start.into(), &damage.end.into()),
        "{answer}"
    );
    assert!(answer.get("missing_segments").is_none(), "{answer}");

    // Segment 1 deleted by hand (retention never ran).
    fs::remove_file(root.join(format::segment_name(1))).unwrap();
    let (status, answer, err) = gaps_and_status(root, &[]);
    assert_eq!(status, Some(1), "{err}");
    assert!(
        err.contains("shard 0 segment 1 is missing (deleted, not by retention)"),
        "{err}"
    );
    let missing = serde_json::json!([{"shard": 0, "segment": 1}]);
    assert_eq!(answer["missing_segments"], missing, "{answer}");
    let held = serde_json::json!([[0, 9], [20, 23], [25, 29]]);
    assert_eq!(answer["sources"][0]["held"], held, "{answer}");
}

/// A window that starts at a FRAMES record of a sealed segment whose bytes were damaged since
/// its index was written: the segment is read, the record named under `damaged`, and its frames
/// are not held: their sequence is a gap, though the segment's index still lists it.
#[test]
fn a_damaged_record_in_a_window_is_a_gap_though_its_index_lists_it() {
    let dir = TempDir::new("gaps-damaged-window");
    let root = &dir.0;
    // Segment 0 (sealed) holds 0..=9, segment 1 (the newest) 10..=19.
    write_segments(root, &tens_of_live_7(2));
    // A first answer writes segment 0's index, which lists 0..=9.
    let whole = gaps(root, &[]);
    assert_eq!(whole["sources"][0]["held"], serde_json::json!([[0, 19]]));
    // Then a byte of its sixth record (sequence 5) changes: its length, so its index, stays.
    let sealed = root.join(format::segment_name(0));
    let mut bytes = fs::read(&sealed).unwrap();
    damage_record(&mut bytes, 5);
    fs::write(&sealed, &bytes).unwrap();

    // From sequence 3's received time: segment 0 is cut by the window, so read.
    let from = unix_ns_to_rfc3339(T0 + 3 * STEP);
    let (status, answer, err) = gaps_and_status(root, &["--from", &from]);
    assert_eq!(status, Some(1), "{err}");
    assert_eq!(answer["damaged"][0]["segment"], 0, "{answer}");
    let source = &answer["sources"][0];
    assert_eq!(
        source["held"],
        serde_json::json!([[3, 4], [6, 19]]),
        "{answer}"
    );
    let gap = serde_json::json!([{"cause": "not_received", "first": 5, "frames": 1, "last": 5}]);
    assert_eq!(source["gaps"], gap, "{answer}");
    assert_eq!(source["frames"], 16, "{answer}");
}

/// Writes `segments` as shard 0's segments 0, 1, ... of the archive at `root`.
/// `count` segments of live:7, segment `n` ten one-frame records of sequences `10 n` to `10 n + 9`
/// received a millisecond apart from `10 n` seconds after `T0`.
fn tens_of_live_7(count: u64) -> Vec<Vec<u8>> {
    let live = (SourceKind::LiveUplink, 7);
    let segment = |n: u64| {
        let mut bytes = format::MAGIC.to_vec();
        let sequences: Vec<u64> = (n * 10..n * 10 + 10).collect();
        frames_of(&mut bytes, live, &sequences, T0 + n * 10 * 1_000_000_000);
        bytes
    };
    (0..count).map(segment).collect()
}

/// Changes a byte in the middle of record `n` of a segment of ten records of one size (as
/// [`tens_of_live_7`] writes them); returns that size.
fn damage_record(bytes: &mut [u8], n: usize) -> usize {
    let record = (bytes.len() - format::MAGIC.len()) / 10;
    bytes[format::MAGIC.len() + n * record + record / 2] ^= 0x5a;
    record
}

fn write_segments(root: &Path, segments: &[Vec<u8>]) {
    fs::create_dir_all(root).unwrap();
    for (index, bytes) in segments.iter().enumerate() {
        fs::write(root.join(format::segment_name(index as u64)), bytes).unwrap();
    }
}

/// Frames stamped out of order (a daemon started with its clock behind the archive's newest
/// frame): a window that meets both runs holds the sequences between them that were stamped
/// outside it, counts them in `frames` with the rest, and says in `outside_window` how many of
/// its `frames` they are.
#[test]
fn the_sequences_held_outside_the_window_count_in_frames() {
    let dir = TempDir::new("gaps-outside-window");
    let root = &dir.0;
    let live = (SourceKind::LiveUplink, 7);
    let seconds = |s: u64| T0 + s * 1_000_000_000;
    // Segment 0 holds 0..=9 received at 100 s, segment 1 10..=19 at 0 s (its daemon's clock stood
    // behind), segment 2 (the newest) 20..=29 at 200 s.
    let mut segments = vec![format::MAGIC.to_vec(); 3];
    for (n, at) in [100, 0, 200].into_iter().enumerate() {
        let first = n as u64 * 10;
        let sequences: Vec<u64> = (first..first + 10).collect();
        frames_of(&mut segments[n], live, &sequences, seconds(at));
    }
    write_segments(root, &segments);

    let window = [seconds(50), seconds(300)].map(unix_ns_to_rfc3339);
    let answer = gaps(root, &["--from", &window[0], "--to", &window[1]]);
    let source = &answer["sources"][0];
    assert_eq!(source["held"], serde_json::json!([[0, 29]]), "{answer}");
    assert_eq!(source["gaps"], serde_json::json!([]), "{answer}");
    assert_eq!(
        (&source["frames"], &source["outside_window"]),
        (&30.into(), &10.into()),
        "{answer}"
    );
}

/// Times ago count back from one reading of the clock, whatever passes between reading the
/// arguments: `--from -7d --to -1d` is six days exactly, in every unit and decimal.
#[test]
fn times_ago_count_back_from_one_reading_of_the_clock() {
    let dir = TempDir::new("gaps-times-ago");
    fs::create_dir_all(&dir.0).unwrap();
    let time = |answer: &serde_json::Value, end: &str| {
        let text = answer[end].as_str().expect("a time");
        aggregator::domain::units::parse_time(text, std::time::SystemTime::UNIX_EPOCH).unwrap()
    };
    let hour = 3_600_000_000_000;
    for (from, to, apart) in [
        ("-7d", "-1d", 144 * hour),
        ("-1.5h", "-0.002h", 5_400_000_000_000 - 7_200_000_000),
        ("-90s", "-1ms", 89_999_000_000),
    ] {
        let answer = gaps(&dir.0, &["--from", from, "--to", to]);
        let span = time(&answer, "to") - time(&answer, "from");
        assert_eq!(span, apart, "--from {from} --to {to}: {answer}");
    }
}

/// A damaged record's `reason` says where in its segment and what is wrong, never the file's path
/// on the machine that read it: the shard and segment are fields of their own, and the same
/// answer goes to remote clients (`GET /archive/completeness`, `/archive/frames`).
#[test]
fn a_damaged_record_s_reason_names_no_path() {
    let dir = TempDir::new("gaps-damage-reason");
    let root = &dir.0;
    // The newest segment, read record by record, holds 0..=9; its fifth record is damaged.
    let [mut bytes] = <[Vec<u8>; 1]>::try_from(tens_of_live_7(1)).unwrap();
    let record = damage_record(&mut bytes, 4);
    write_segments(root, &[bytes]);
    let start = format::MAGIC.len() + 4 * record;

    let (status, answer, err) = gaps_and_status(root, &[]);
    assert_eq!(status, Some(1), "{err}");
    let damaged = &answer["damaged"][0];
    assert_eq!(
        (&damaged["shard"], &damaged["segment"]),
        (&0.into(), &0.into())
    );
    let reason = damaged["reason"].as_str().expect("a reason");
    let crc = format!("offset {start}: CRC mismatch (stored ");
    assert!(reason.starts_with(&crc), "{crc:?} first in {reason:?}");
    let path = root.to_str().unwrap();
    assert!(
        !reason.contains(path) && !reason.contains(".seg"),
        "{reason}"
    );
}

/// What a reader finds of one source (kind, id): rows, payload bytes, least and greatest
/// sequence, rows with an APID, earliest and latest received time (ns); `None` where the format
/// has none.
type Summary = BTreeMap<(String, u32), [Option<u64>; 7]>;

/// The archive's summary, from a scan of every record.
fn summary_of(rows: &[(u64, Row)]) -> Summary {
    let mut summary: Summary = BTreeMap::new();
    for (received, row) in rows {
        let s = summary.entry((row.1.clone(), row.2)).or_insert([
            Some(0),
            Some(0),
            Some(u64::MAX),
            Some(0),
            Some(0),
            Some(u64::MAX),
            Some(0),
        ]);
        let [n, bytes, low, high, apids, earliest, latest] = s.map(Option::unwrap);
        *s = [
            n + 1,
            bytes + row.7.len() as u64,
            low.min(row.3),
            high.max(row.3),
            apids + u64::from(expected_apid(&row.7).is_some()),
            earliest.min(*received),
            latest.max(*received),
        ]
        .map(Some);
    }
    summary
}

/// `tests/analytics/summary.py READER FILE`: the columns as the reader types them, and its
/// summary.
fn read_with(reader: &str, file: &Path) -> (Vec<String>, Summary) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let python = repo.join("target/analytics-venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: run tests/analytics/venv.sh (duckdb and pyarrow from PyPI)",
        python.display()
    );
    let out = Command::new(python)
        .arg(repo.join("tests/analytics/summary.py"))
        .arg(reader)
        .arg(file)
        .output()
        .expect("run summary.py");
    let text = String::from_utf8(out.stdout).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{reader}: {}\n{text}{err}",
        out.status
    );
    let (mut columns, mut summary) = (Vec::new(), Summary::new());
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields[..] {
            ["column", name, kind] => columns.push(format!("{name} {kind}")),
            ["source", kind, id, ref numbers @ ..] if numbers.len() == 7 => {
                let numbers = numbers.iter().map(|n| n.parse().ok());
                let numbers: Vec<Option<u64>> = numbers.collect();
                let key = (kind.to_string(), id.parse().unwrap());
                summary.insert(key, numbers.try_into().unwrap());
            }
            _ => panic!("{reader}: {line:?}"),
        }
    }
    (columns, summary)
}

/// The Parquet columns as pyarrow and DuckDB type them.
const PYARROW_COLUMNS: [&str; 16] = [
    "received timestamp[ns, tz=UTC]",
    "kind string",
    "source uint32",
    "sequence uint64",
    "priority string",
    "shard uint32",
    "position string",
    "payload binary",
    "apid int32",
    "station string",
    "link string",
    "mode string",
    "earth_received timestamp[ns, tz=UTC]",
    "ax25_from string",
    "ax25_to string",
    "recording string",
];
const DUCKDB_COLUMNS: [&str; 16] = [
    "received TIMESTAMPTZ_NS",
    "kind VARCHAR",
    "source UINTEGER",
    "sequence UBIGINT",
    "priority VARCHAR",
    "shard UINTEGER",
    "position VARCHAR",
    "payload BLOB",
    "apid INTEGER",
    "station VARCHAR",
    "link VARCHAR",
    "mode VARCHAR",
    "earth_received TIMESTAMPTZ_NS",
    "ax25_from VARCHAR",
    "ax25_to VARCHAR",
    "recording VARCHAR",
];

#[test]
#[ignore = "needs PyPI duckdb and pyarrow (.ci/run installs them)"]
fn duckdb_and_pyarrow_find_what_the_archive_holds() {
    let (dir, files) = (TempDir::new("export-readers"), TempDir::new("export-files"));
    write_archive(&dir.0);
    let archive = summary_of(&scanned(&dir.0));
    let (parquet, csv) = (files.0.join("frames.parquet"), files.0.join("frames.csv"));
    for (file, format) in [(&parquet, "parquet"), (&csv, "csv")] {
        let (status, err) = export_to(&dir.0, file, &["--format", format]);
        assert_eq!(status, Some(0), "{format}: {err}");
    }
    let readers: [(&str, &PathBuf, &[&str]); 3] = [
        ("pyarrow", &parquet, &PYARROW_COLUMNS),
        ("duckdb-parquet", &parquet, &DUCKDB_COLUMNS),
        ("duckdb-csv", &csv, &[]),
    ];
    for (reader, file, columns) in readers {
        let (got_columns, got) = read_with(reader, file);
        assert_eq!(got_columns, columns, "{reader}");
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            archive.keys().collect::<Vec<_>>(),
            "{reader}: sources"
        );
        for (source, expected) in &archive {
            let found = got[source];
            // What this reader has of the summary (pyarrow all of it; DuckDB no received times,
            // and no APIDs from the CSV).
            let expected = std::array::from_fn::<_, 7, _>(|i| found[i].and(expected[i]));
            assert_eq!(found, expected, "{reader}: {source:?}");
            assert!(
                found[..4].iter().all(Option::is_some),
                "{reader}: {found:?}"
            );
        }
    }
}
