//! The segment format's tests: names, records, scans.

use proptest::prelude::any;
use proptest::strategy::Strategy;

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::names::*;
use super::record::*;
use super::scan::*;
use crate::domain::clock::{ClockEvent, ClockEventKind};
use crate::domain::frame::arbitrary;
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::reception::{Ax25Addresses, Delivery, Received, Reception};

fn sample() -> Vec<Entry> {
    vec![
        Entry::Frame(FrameRecord {
            kind: SourceKind::LiveUplink,
            priority: Priority::Emergency,
            source_id: 7,
            sequence: 42,
            received_unix_ns: 1_700_000_000_123_456_789,
            payload: Bytes::from_static(b"SAFE_MODE"),
            reception: None,
        }),
        Entry::Frame(FrameRecord {
            kind: SourceKind::ArchivedReplay,
            priority: Priority::Routine,
            source_id: u32::MAX,
            sequence: u64::MAX,
            received_unix_ns: 0,
            payload: Bytes::new(),
            reception: None,
        }),
        Entry::Watermark {
            kind: SourceKind::LiveUplink,
            source_id: 7,
            acked: 41,
        },
        Entry::Stored {
            kind: SourceKind::ArchivedReplay,
            source_id: 1000,
            first: 9,
            last: 12,
        },
        Entry::Clock(ClockEvent {
            kind: ClockEventKind::Step,
            archive_ns: 1_700_000_000_200_000_000,
            wall_ns: 1_731_536_000_200_000_000,
            jump_ns: -31_536_000_000_000_000,
        }),
    ]
}

fn segment(entries: &[Entry]) -> (Vec<u8>, Vec<u64>) {
    let mut out = MAGIC.to_vec();
    let mut offsets = Vec::new();
    for entry in entries {
        offsets.push(out.len() as u64);
        entry.encode(&mut out);
    }
    (out, offsets)
}

fn write(dir: &Path, index: u64, bytes: &[u8]) -> PathBuf {
    let path = dir.join(segment_name(index));
    fs::write(&path, bytes).unwrap();
    path
}

/// [`scan`] over segment bytes already in memory, collecting the entries.
fn scan_bytes(data: Bytes) -> SegmentScan {
    let mut entries = Vec::new();
    let scanned = scan(&data[..], |offset, entry| entries.push((offset, entry)))
        .expect("a slice reads without error");
    SegmentScan::new(entries, scanned)
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("segment-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_record_type_round_trips_with_its_offset() {
    let entries = sample();
    let (bytes, offsets) = segment(&entries);
    let scan = scan_bytes(Bytes::from(bytes.clone()));
    assert_eq!(scan.end, ScanEnd::Clean);
    assert_eq!(scan.valid_len, bytes.len() as u64);
    assert_eq!(scan.file_len, bytes.len() as u64);
    let got: Vec<_> = scan.entries.iter().map(|(o, _)| *o).collect();
    assert_eq!(got, offsets);
    let got: Vec<_> = scan.entries.into_iter().map(|(_, e)| e).collect();
    assert_eq!(got, entries);
    // The documented sizes: 8 + 23 + payload, 8 + 14.
    assert_eq!(offsets[1] - offsets[0], 8 + 23 + 9);
    assert_eq!(offsets[3] - offsets[2], 8 + 14);
}

#[test]
fn names_parse_and_list_in_index_order() {
    assert_eq!(segment_name(3), "segment-00000000000000000003.seg");
    assert_eq!(
        segment_index(Path::new("/a/segment-00000000000000000003.seg")),
        Some(3)
    );
    assert_eq!(segment_index(Path::new("segment-3.seg")), None);
    assert_eq!(
        segment_index(Path::new("segment-0000000000000000000x.seg")),
        None
    );
    let dir = temp_dir("list");
    write(&dir, 10, MAGIC);
    write(&dir, 2, MAGIC);
    fs::write(dir.join("notes.txt"), b"x").unwrap();
    let listed: Vec<_> = list_segments(&dir)
        .unwrap()
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    assert_eq!(listed, vec![2, 10]);
    assert!(list_segments(&dir.join("missing")).is_err());
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_truncated_last_record_is_torn_and_repair_cuts_exactly_it() {
    let entries = sample();
    let (bytes, offsets) = segment(&entries);
    let dir = temp_dir("torn");
    for cut in [1, 5, 9, 13] {
        let path = write(&dir, 1, &bytes[..bytes.len() - cut]);
        let scan = read_segment(&path).unwrap();
        let last = *offsets.last().unwrap();
        assert!(
            matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == last),
            "cut {cut}: {:?}",
            scan.end
        );
        assert_eq!(scan.valid_len, last);
        let damaged: Vec<_> = scan.damaged.iter().map(|d| (d.start, d.end)).collect();
        assert_eq!(damaged, vec![(last, (bytes.len() - cut) as u64)]);
        assert_eq!(scan.entries.len(), entries.len() - 1);
        let cut_bytes = (bytes.len() - cut) as u64 - last;
        assert_eq!(repair_tail(&path, |_, _| {}).unwrap(), Some(cut_bytes));
        assert_eq!(fs::metadata(&path).unwrap().len(), last);
        assert_eq!(read_segment(&path).unwrap().end, ScanEnd::Clean);
        assert_eq!(repair_tail(&path, |_, _| {}).unwrap(), None);
    }
    // A zero-filled tail, as some file systems leave after a crash, is torn too.
    let mut zeroed = bytes.clone();
    zeroed.extend_from_slice(&[0; 100]);
    let path = write(&dir, 1, &zeroed);
    assert!(
        matches!(read_segment(&path).unwrap().end, ScanEnd::Torn { offset, .. } if offset == bytes.len() as u64)
    );
    assert_eq!(repair_tail(&path, |_, _| {}).unwrap(), Some(100));
    // A file whose magic was cut short becomes an empty segment.
    let path = write(&dir, 1, &MAGIC[..3]);
    assert!(matches!(
        read_segment(&path).unwrap().end,
        ScanEnd::Torn { offset: 0, .. }
    ));
    assert_eq!(repair_tail(&path, |_, _| {}).unwrap(), Some(3));
    assert_eq!(fs::read(&path).unwrap(), MAGIC);
    fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_flipped_byte_mid_file_is_corrupt_at_its_record_and_not_repaired() {
    let entries = sample();
    let (bytes, offsets) = segment(&entries);
    let dir = temp_dir("corrupt");
    // A payload byte, then a length byte: both inside record 0, with valid records after.
    for at in [offsets[0] as usize + 8 + 23 + 2, offsets[0] as usize + 3] {
        let mut bad = bytes.clone();
        bad[at] ^= 0x40;
        let path = write(&dir, 1, &bad);
        let scan = read_segment(&path).unwrap();
        assert!(
            matches!(&scan.end, ScanEnd::Corrupt { offset, .. } if *offset == offsets[0]),
            "{:?}",
            scan.end
        );
        // The damage is exactly record 0; the scan resumes at record 1.
        let damaged: Vec<_> = scan.damaged.iter().map(|d| (d.start, d.end)).collect();
        assert_eq!(damaged, vec![(offsets[0], offsets[1])]);
        let after = offsets[1..]
            .iter()
            .copied()
            .zip(entries[1..].iter().cloned());
        assert_eq!(scan.entries, after.collect::<Vec<_>>());
        assert_eq!(scan.valid_len, bytes.len() as u64);
        let err = repair_tail(&path, |_, _| {}).unwrap_err();
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("offset {}", offsets[0])),
            "{err}"
        );
        assert!(
            err.to_string()
                .contains(&format!("aggregator archive repair {}", dir.display())),
            "{err}"
        );
        assert_eq!(
            fs::read(&path).unwrap(),
            bad,
            "corruption is never repaired"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// Damage in two places and a torn tail: every range is found, and every record between them
/// is read.
#[test]
fn a_scan_resynchronises_after_each_damaged_range() {
    let entries: Vec<Entry> = (0..6).map(|seq| frame_entry(seq, b"SAFE_MODE")).collect();
    let (mut bytes, offsets) = segment(&entries);
    let full = bytes.len() as u64;
    bytes[offsets[1] as usize + 5] ^= 0x01; // record 1's CRC
    bytes[offsets[3] as usize] = 0xff; // record 3's length, far past the limit
    bytes.extend_from_slice(&[0, 0, 0, 9, 1]); // a header cut short
    let scan = scan_bytes(Bytes::from(bytes));
    let damaged: Vec<_> = scan.damaged.iter().map(|d| (d.start, d.end)).collect();
    assert_eq!(
        damaged,
        vec![
            (offsets[1], offsets[2]),
            (offsets[3], offsets[4]),
            (full, full + 5)
        ]
    );
    assert!(scan.damaged[0].reason.contains("CRC mismatch"), "{scan:?}");
    assert!(scan.damaged[1].reason.contains("outside 1..="), "{scan:?}");
    assert!(scan.damaged[2].reason.contains("cut short"), "{scan:?}");
    assert_corrupt_at(
        &scan.end,
        offsets[1],
        "a valid record follows at offset",
        "",
    );
    let kept: Vec<_> = scan.entries.iter().map(|(at, _)| *at).collect();
    assert_eq!(kept, [0, 2, 4, 5].map(|i| offsets[i]));
    assert_eq!((scan.valid_len, scan.file_len), (full, full + 5));
    assert_eq!(
        scan.damaged[0].to_string(),
        format!(
            "bytes {}..{} ({} bytes): {}",
            offsets[1],
            offsets[2],
            offsets[2] - offsets[1],
            scan.damaged[0].reason
        )
    );
}

/// A record whose CRC matches but whose contents are impossible is corrupt even at the end;
/// in the middle, the scan goes on after it.
#[test]
fn an_impossible_record_is_a_damaged_range_too() {
    let (good, _) = segment(&sample()[2..3]);
    let mut bytes = MAGIC.to_vec();
    encode_record(&mut bytes, |b| b.extend_from_slice(&[9, 0, 0]));
    let next = bytes.len() as u64;
    let alone = scan_bytes(Bytes::from(bytes.clone()));
    assert_corrupt_at(&alone.end, 8, "unknown record type 9", "alone");
    assert_eq!(alone.damaged.len(), 1);
    bytes.extend_from_slice(&good[MAGIC.len()..]);
    let scan = scan_bytes(Bytes::from(bytes));
    assert_eq!(
        scan.damaged
            .iter()
            .map(|d| (d.start, d.end))
            .collect::<Vec<_>>(),
        vec![(8, next)]
    );
    assert_eq!(scan.entries, vec![(next, sample()[2].clone())]);
}

#[test]
fn bad_magic_and_impossible_contents_are_corrupt() {
    let (mut bytes, _) = segment(&sample());
    bytes[0] = b'X';
    let scan = scan_bytes(Bytes::from(bytes));
    assert!(matches!(scan.end, ScanEnd::Corrupt { offset: 0, .. }));
    assert!(scan.entries.is_empty());
    assert!(matches!(
        scan_bytes(Bytes::from_static(b"PK")).end,
        ScanEnd::Corrupt { offset: 0, .. }
    ));
    // A record with a valid CRC and an unknown type: a writer bug, not a crash.
    let mut out = MAGIC.to_vec();
    encode_record(&mut out, |b| b.extend_from_slice(&[9, 0, 0]));
    assert!(matches!(
        scan_bytes(Bytes::from(out)).end,
        ScanEnd::Corrupt { offset: 8, .. }
    ));
}

/// A reader that hands out at most 4,099 bytes a call, as a pipe or a network file system may.
struct Trickle<'a>(&'a [u8]);

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = buf.len().min(4099).min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// Records straddle the scan's window, one is larger than it, and reads come back short: the
/// scan sees every record where it is, and a tail cut inside the large record is torn at it.
#[test]
fn a_segment_larger_than_the_window_scans_record_by_record() {
    let payloads: Vec<Vec<u8>> = (0..40u64)
        .map(|i| vec![i as u8; (i as usize * 37_813) % 150_000])
        .chain([vec![0xee; WINDOW + WINDOW / 2]])
        .chain((40..60u64).map(|i| vec![i as u8; 10_000 + i as usize]))
        .collect();
    let mut bytes = MAGIC.to_vec();
    let mut expected = Vec::new();
    let mut large_at = 0;
    for (sequence, payload) in payloads.iter().enumerate() {
        let at = bytes.len() as u64;
        if payload.len() > WINDOW {
            large_at = at;
        }
        let sequence = sequence as u64;
        encode_frames(
            &mut bytes,
            SourceKind::LiveUplink,
            Priority::Routine,
            3,
            5,
            [(sequence, &payload[..])],
        );
        expected.push((at, sequence, payload.len()));
    }
    assert!(bytes.len() > 3 * WINDOW, "{} bytes", bytes.len());

    let mut seen = Vec::new();
    let scanned = scan(Trickle(&bytes), |at, entry| match entry {
        Entry::Frame(frame) => seen.push((at, frame.sequence, frame.payload.len())),
        other => panic!("unexpected {other:?}"),
    })
    .unwrap();
    assert_eq!(scanned.end, ScanEnd::Clean);
    assert_eq!(scanned.valid_len, bytes.len() as u64);
    assert_eq!(seen, expected);

    let cut = &bytes[..large_at as usize + WINDOW];
    let mut before = 0;
    let scanned = scan(Trickle(cut), |_, _| before += 1).unwrap();
    assert!(
        matches!(&scanned.end, ScanEnd::Torn { offset, reason } if *offset == large_at && reason.contains("cut short")),
        "{:?}",
        scanned.end
    );
    assert_eq!(
        (scanned.valid_len, scanned.file_len),
        (large_at, cut.len() as u64)
    );
    assert_eq!(before, 40, "the records before the large one");
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let err = read_segment(Path::new("/nonexistent/segment-00000000000000000001.seg")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/segment-"), "{err}");
}

/// Three frames of live uplink 9, emergency, received at 77.
fn three_frames() -> Vec<(u64, &'static [u8])> {
    vec![(5, &b"ABORT"[..]), (6, &b""[..]), (9, &b"SAFE_MODE"[..])]
}

/// [`three_frames`] as one FRAMES record.
fn encode_three_frames(out: &mut Vec<u8>) {
    encode_frames(
        out,
        SourceKind::LiveUplink,
        Priority::Emergency,
        9,
        77,
        three_frames(),
    );
}

fn frame_entry(sequence: u64, payload: &'static [u8]) -> Entry {
    Entry::Frame(FrameRecord {
        kind: SourceKind::LiveUplink,
        priority: Priority::Emergency,
        source_id: 9,
        sequence,
        received_unix_ns: 77,
        payload: Bytes::from_static(payload),
        reception: None,
    })
}

#[test]
fn a_frames_record_reads_back_as_its_frames_at_its_offset() {
    let (mut bytes, _) = segment(&sample()[2..3]);
    let at = bytes.len() as u64;
    let frames = three_frames();
    encode_three_frames(&mut bytes);
    // The documented size: 8 + 19 + (12 + payload) per frame.
    assert_eq!(bytes.len() as u64 - at, 8 + 19 + (12 + 5) + 12 + (12 + 9));
    let scan = scan_bytes(Bytes::from(bytes));
    assert_eq!(scan.end, ScanEnd::Clean);
    let expected: Vec<_> = frames
        .iter()
        .map(|&(sequence, payload)| (at, frame_entry(sequence, payload)))
        .collect();
    assert_eq!(scan.entries[1..], expected[..]);
    // No frames, no record.
    let mut empty = Vec::new();
    encode_frames(
        &mut empty,
        SourceKind::LiveUplink,
        Priority::Routine,
        9,
        0,
        std::iter::empty(),
    );
    assert!(empty.is_empty());
}

/// A link's frames keep their reception: the record's link and station, each frame's
/// earth-receive time, mode and AX.25 addresses; a frame on its own (as recovery rewrites a
/// journal's) too. Undefined flags are damage, never a guess.
#[test]
fn received_frames_read_back_with_their_reception() {
    let delivery = Arc::new(Delivery {
        link: "uhf".into(),
        station: "Svalbard, SG-1".into(),
    });
    let received = [
        Received {
            earth_unix_ns: Some(1_700_000_000_123_000_000),
            playback: false,
            ax25: Some(Ax25Addresses {
                from: "N0CALL-1".parse().unwrap(),
                to: "CQ".parse().unwrap(),
            }),
        },
        Received {
            playback: true,
            ..Received::default()
        },
        Received::default(),
    ];
    let head = FramesHead {
        kind: SourceKind::LiveUplink,
        priority: Priority::Routine,
        source_id: 500,
        received_unix_ns: 77,
    };
    let frames = three_frames().into_iter().zip(received);
    let frames = frames.map(|((s, p), r)| (s, p, r));
    let mut bytes = MAGIC.to_vec();
    encode_received_frames(&mut bytes, head, &delivery, frames);
    let scan = scan_bytes(Bytes::from(bytes.clone()));
    assert_eq!(scan.end, ScanEnd::Clean);
    let frames: Vec<FrameRecord> = (scan.entries.into_iter())
        .map(|(_, entry)| match entry {
            Entry::Frame(frame) => frame,
            other => panic!("{other:?}"),
        })
        .collect();
    let got: Vec<_> = frames.iter().map(|f| f.reception.clone()).collect();
    let expected: Vec<_> = (received.iter())
        .map(|&received| {
            let delivery = Arc::clone(&delivery);
            Some(Box::new(Reception { delivery, received }))
        })
        .collect();
    assert_eq!(got, expected);
    assert_eq!(frames[2].payload, &b"SAFE_MODE"[..]);
    let mut one = MAGIC.to_vec();
    frames[0].encode(&mut one);
    let again = scan_bytes(Bytes::from(one));
    assert_eq!(again.entries, vec![(8, Entry::Frame(frames[0].clone()))]);
    // The first frame's flags, after the fixed part and the two names.
    let flags = MAGIC.len() + RECORD_HEADER_LEN + FRAMES_BODY_FIXED + 2 + 3 + 14 + 12;
    assert_eq!(
        bytes[flags],
        0x01 | 0x04,
        "an earth time and AX.25 addresses follow"
    );
    bytes[flags] |= 0x80;
    let start = MAGIC.len();
    let len = bytes.len() - start - RECORD_HEADER_LEN;
    let crc = crc32fast::hash(&bytes[start + RECORD_HEADER_LEN..]);
    bytes[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
    let scan = scan_bytes(Bytes::from(bytes));
    assert!(
        matches!(&scan.end, ScanEnd::Corrupt { reason, .. } | ScanEnd::Torn { reason, .. }
            if reason.contains("undefined reception flags 0x85")),
        "{:?} ({len} bytes)",
        scan.end
    );
}

#[test]
fn frames_past_the_body_limit_go_into_more_records() {
    let mut bytes = MAGIC.to_vec();
    // Room for the fixed part and two 5-byte or 0-byte frames, not for 9 bytes more.
    let max_body = FRAMES_BODY_FIXED + 2 * FRAMES_ENTRY_FIXED + 5;
    let head = FramesHead {
        kind: SourceKind::LiveUplink,
        priority: Priority::Emergency,
        source_id: 9,
        received_unix_ns: 77,
    };
    let frames = three_frames().into_iter();
    let frames = frames.map(|(s, p)| (s, p, Received::default()));
    encode_frames_within(&mut bytes, max_body, head, None, frames);
    let scan = scan_bytes(Bytes::from(bytes));
    assert_eq!(scan.end, ScanEnd::Clean);
    let offsets: Vec<_> = scan.entries.iter().map(|(at, _)| *at).collect();
    let second = (MAGIC.len() + RECORD_HEADER_LEN + max_body) as u64;
    assert_eq!(offsets, vec![8, 8, second]);
    let got: Vec<_> = scan.entries.into_iter().map(|(_, e)| e).collect();
    let expected: Vec<_> = three_frames()
        .into_iter()
        .map(|(sequence, payload)| frame_entry(sequence, payload))
        .collect();
    assert_eq!(got, expected);
}

/// The CLOCK record of the example in docs/archive-format.md, byte for byte.
#[test]
fn a_clock_record_is_the_bytes_the_format_document_shows() {
    let at = 1_700_000_000_000_000_000;
    let start = ClockEvent {
        kind: ClockEventKind::Start,
        archive_ns: at,
        wall_ns: at,
        jump_ns: 0,
    };
    let mut out = Vec::new();
    encode_clock(&mut out, &start);
    let hex: Vec<String> = out.iter().map(|b| format!("{b:02x}")).collect();
    let documented = "00 00 00 1a 90 93 0a 2d 07 00 17 97 9c fe 36 2a 00 00 \
                      17 97 9c fe 36 2a 00 00 00 00 00 00 00 00 00 00";
    assert_eq!(
        hex.join(" "),
        documented.split_whitespace().collect::<Vec<_>>().join(" ")
    );
}

/// A version 4 segment (an earlier build's, without CLOCK records) reads as it was written;
/// the file's version is told before a writer appends to it.
#[test]
fn a_version_4_segment_reads_as_it_was_written() {
    let dir = temp_dir("version-4");
    let entries: Vec<Entry> = sample()
        .into_iter()
        .filter(|e| e.source().is_some())
        .collect();
    let (mut bytes, offsets) = segment(&entries);
    bytes[..8].copy_from_slice(b"TLMSEG04");
    let path = write(&dir, 1, &bytes);
    let scan = read_segment(&path).unwrap();
    assert_eq!(scan.end, ScanEnd::Clean);
    let expected: Vec<_> = offsets.into_iter().zip(entries).collect();
    assert_eq!(scan.entries, expected);
    assert_eq!(file_version(&path).unwrap(), 4);
    let file = File::open(&path).unwrap();
    let records = read_records(&file, &path, 8, bytes.len() as u64, 1 << 20).unwrap();
    assert_eq!(records.entries, expected);
    fs::write(&path, MAGIC).unwrap();
    assert_eq!(file_version(&path).unwrap(), FORMAT_VERSION);
}

/// A segment of an older format version (`TLMSEG02`, `TLMSEG03`) or a newer one is refused:
/// a scan, and a follower's read, fail with an error naming the version found and the ones
/// read, and the file; nothing is taken for damage.
#[test]
fn a_segment_of_another_format_version_is_refused_naming_both_versions() {
    let dir = temp_dir("other-version");
    for (magic, found) in [(b"TLMSEG02", 2), (b"TLMSEG03", 3), (b"TLMSEG06", 6)] {
        let (mut bytes, _) = segment(&sample());
        bytes[..8].copy_from_slice(magic);
        let says = format!(
            "archive format version {found} (magic {}); this build reads versions 4 and 5",
            String::from_utf8_lossy(magic)
        );
        let err = scan(&bytes[..], |_, _| panic!("nothing is read")).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "no damage");
        assert_eq!(err.to_string(), says);

        let path = dir.join(segment_name(u64::from(magic[7])));
        fs::write(&path, &bytes).unwrap();
        let err = read_segment(&path).unwrap_err().to_string();
        assert!(
            err.contains(&says) && err.contains(&*path.to_string_lossy()),
            "{err}"
        );
        let file = File::open(&path).unwrap();
        let err = read_records(&file, &path, 8, bytes.len() as u64, 1 << 20).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Unsupported, "no damage");
        let err = err.to_string();
        assert!(
            err.contains(&says) && err.contains(&*path.to_string_lossy()),
            "{err}"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

/// Asserts that a scan ended at a corrupt record at `offset` whose reason says `says`.
#[track_caller]
fn assert_corrupt_at(end: &ScanEnd, offset: u64, says: &str, case: &str) {
    assert!(
        matches!(end, ScanEnd::Corrupt { offset: at, reason } if *at == offset && reason.contains(says)),
        "{case}: expected corrupt at offset {offset} saying {says:?}, got {end:?}"
    );
}

#[test]
fn a_stored_run_that_runs_backwards_is_corrupt() {
    let mut bytes = MAGIC.to_vec();
    encode_stored(&mut bytes, SourceKind::LiveUplink, 1, 7, 6);
    let scan = scan_bytes(Bytes::from(bytes));
    assert_corrupt_at(&scan.end, 8, "from 7 down to 6", "");
}

#[test]
fn a_frames_record_too_short_for_its_fields_is_corrupt_not_a_panic() {
    for body in [
        &[TYPE_FRAMES][..],
        &[TYPE_FRAMES, 0],
        &[TYPE_FRAMES, 0, 1, 0, 0],
    ] {
        let mut bytes = MAGIC.to_vec();
        encode_record(&mut bytes, |b| b.extend_from_slice(body));
        let scan = scan_bytes(Bytes::from(bytes));
        let case = format!("{}-byte body", body.len());
        assert_corrupt_at(&scan.end, 8, "shorter than 19", &case);
    }
}

#[test]
fn a_frames_record_whose_count_disagrees_with_its_body_is_corrupt_and_yields_nothing() {
    let mut bytes = MAGIC.to_vec();
    encode_three_frames(&mut bytes);
    let count_at = MAGIC.len() + RECORD_HEADER_LEN + FRAMES_BODY_FIXED - 4;
    for (count, says) in [(2, "unused"), (4, "runs past"), (0, "unused")] {
        let mut bad = bytes.clone();
        bad[count_at..count_at + 4].copy_from_slice(&u32::to_be_bytes(count));
        // A valid CRC: the contents, not the checksum, are wrong.
        seal_record(&mut bad, MAGIC.len());
        let scan = scan_bytes(Bytes::from(bad));
        assert_corrupt_at(&scan.end, 8, says, &format!("count {count}"));
        assert!(scan.entries.is_empty(), "count {count}");
    }
}

/// An offset a follower names may point into a payload whose bytes read as a record's length:
/// one no record can have is refused before anything more is read (here, past the file's end).
#[test]
fn a_record_length_past_the_largest_is_refused_before_it_is_read() {
    let dir = std::env::temp_dir().join(format!("read-records-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let path = dir.join(segment_name(1));
    let mut bytes = MAGIC.to_vec();
    let huge = 2 * MAX_BODY_LEN;
    let payload = [&huge.to_be_bytes()[..], &[0; 60]].concat();
    encode_frame(
        &mut bytes,
        SourceKind::LiveUplink,
        Priority::Routine,
        1,
        0,
        0,
        &payload,
    );
    fs::write(&path, &bytes).unwrap();
    let file = File::open(&path).unwrap();
    let inside = (bytes.len() - payload.len()) as u64;
    let to = inside + u64::from(huge) + 64;
    let read = read_records(&file, &path, inside, to, 1);
    fs::remove_dir_all(&dir).unwrap();
    let err = read.unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
    assert!(err.to_string().contains("body length"), "{err}");
}

fn stored_frame(
    (kind, source_id): (SourceKind, u32),
    priority: Priority,
    received_unix_ns: u64,
    (sequence, payload): (u64, Vec<u8>),
) -> Entry {
    Entry::Frame(FrameRecord {
        kind,
        priority,
        source_id,
        sequence,
        received_unix_ns,
        payload: payload.into(),
        reception: None,
    })
}

/// One record as the writer writes it, with the entries it reads back as: a FRAME, a
/// WATERMARK, a STORED RUN, or a FRAMES record of one to five frames.
fn any_record() -> impl Strategy<Value = (Vec<u8>, Vec<Entry>)> {
    let source = || (arbitrary::source_kind(), any::<u32>());
    let payload = || proptest::collection::vec(any::<u8>(), 0..40);
    let frame = (
        source(),
        arbitrary::priority(),
        any::<u64>(),
        any::<u64>(),
        payload(),
    );
    let frames = proptest::collection::vec((any::<u64>(), payload()), 1..6);
    let batch = (source(), arbitrary::priority(), any::<u64>(), frames);
    let single = proptest::prop_oneof![
        frame.prop_map(
            |((kind, source_id), priority, sequence, received, payload)| {
                stored_frame((kind, source_id), priority, received, (sequence, payload))
            }
        ),
        (source(), any::<u64>()).prop_map(|((kind, source_id), acked)| Entry::Watermark {
            kind,
            source_id,
            acked
        }),
        (source(), any::<u64>(), any::<u64>()).prop_map(|((kind, source_id), a, b)| {
            Entry::Stored {
                kind,
                source_id,
                first: a.min(b),
                last: a.max(b),
            }
        }),
    ]
    .prop_map(|entry| {
        let mut bytes = Vec::new();
        entry.encode(&mut bytes);
        (bytes, vec![entry])
    });
    let batch = batch.prop_map(|((kind, source_id), priority, received, frames)| {
        let mut bytes = Vec::new();
        let payloads = frames.iter().map(|(sequence, p)| (*sequence, &p[..]));
        encode_frames(&mut bytes, kind, priority, source_id, received, payloads);
        let entries = (frames.into_iter())
            .map(|frame| stored_frame((kind, source_id), priority, received, frame));
        (bytes, entries.collect())
    });
    proptest::prop_oneof![single, batch]
}

/// A record placed in a segment: where it starts and ends, and its entries.
type Placed = (u64, u64, Vec<Entry>);

/// A segment of `records`: its bytes, and each record placed.
fn segment_of(records: Vec<(Vec<u8>, Vec<Entry>)>) -> (Vec<u8>, Vec<Placed>) {
    let mut bytes = MAGIC.to_vec();
    let mut placed = Vec::new();
    for (record, entries) in records {
        let start = bytes.len() as u64;
        bytes.extend_from_slice(&record);
        placed.push((start, bytes.len() as u64, entries));
    }
    (bytes, placed)
}

/// The entries of `records` with their records' offsets, as a scan hands them out.
fn entries_of<'a>(
    records: impl IntoIterator<Item = &'a (u64, u64, Vec<Entry>)>,
) -> Vec<(u64, Entry)> {
    let entries = records
        .into_iter()
        .flat_map(|(start, _, entries)| entries.iter().map(move |entry| (*start, entry.clone())));
    entries.collect()
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(128))]

    /// Any records read back as written, each at its offset, and the segment is clean.
    #[test]
    fn any_records_read_back_as_written(
        records in proptest::collection::vec(any_record(), 0..10),
    ) {
        let (bytes, records) = segment_of(records);
        let scan = scan_bytes(Bytes::from(bytes.clone()));
        proptest::prop_assert_eq!(scan.end, ScanEnd::Clean);
        proptest::prop_assert_eq!(scan.valid_len, bytes.len() as u64);
        proptest::prop_assert_eq!(scan.entries, entries_of(&records));
    }

    /// A segment cut at any byte (a crash's torn tail) reads back exactly the records that
    /// end before the cut; the rest is a torn tail from the end of the last of them (from 0
    /// when the cut is within the magic).
    #[test]
    fn a_segment_cut_anywhere_reads_back_the_records_before_the_cut(
        records in proptest::collection::vec(any_record(), 1..10),
        cut in any::<proptest::sample::Index>(),
    ) {
        let (bytes, records) = segment_of(records);
        let cut = cut.index(bytes.len() + 1);
        let scan = scan_bytes(Bytes::copy_from_slice(&bytes[..cut]));
        let whole: Vec<_> = records.iter().filter(|(_, end, _)| *end <= cut as u64).collect();
        let valid_len = match whole.last() {
            Some((_, end, _)) => *end,
            None if cut >= MAGIC.len() => MAGIC.len() as u64,
            None => 0,
        };
        proptest::prop_assert_eq!(scan.valid_len, valid_len);
        proptest::prop_assert_eq!(scan.entries, entries_of(whole));
        // A file cut within its magic is torn even when empty: repair writes the magic.
        match cut >= MAGIC.len() && valid_len == cut as u64 {
            true => proptest::prop_assert_eq!(scan.end, ScanEnd::Clean),
            false => proptest::prop_assert!(
                matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == valid_len),
                "{:?}", scan.end
            ),
        }
    }

    /// A byte flipped anywhere in a record costs that record, reported as a damaged range
    /// over exactly its bytes, and never reads back as another record: every other record
    /// reads back as written.
    #[test]
    fn a_flipped_byte_costs_its_record_and_is_reported(
        records in proptest::collection::vec(any_record(), 1..10),
        at in any::<proptest::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let (mut bytes, records) = segment_of(records);
        let at = MAGIC.len() + at.index(bytes.len() - MAGIC.len());
        bytes[at] ^= flip;
        let hit = records.iter().position(|(start, end, _)| (*start..*end).contains(&(at as u64))).unwrap();
        let (start, end, _) = records[hit];
        let scan = scan_bytes(Bytes::from(bytes));
        let damaged: Vec<_> = scan.damaged.iter().map(|d| (d.start, d.end)).collect();
        proptest::prop_assert_eq!(damaged, vec![(start, end)]);
        let others = records.iter().enumerate().filter(|(k, _)| *k != hit).map(|(_, r)| r);
        proptest::prop_assert_eq!(scan.entries, entries_of(others));
        match hit + 1 == records.len() {
            true => proptest::prop_assert!(
                matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == start),
                "{:?}", scan.end
            ),
            false => proptest::prop_assert!(
                matches!(scan.end, ScanEnd::Corrupt { offset, .. } if offset == start),
                "{:?}", scan.end
            ),
        }
    }
}
