//! Names and listings, whole-file scans past damage, torn tails and their repair, format
//! versions, and records of any shape cut or damaged anywhere.

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;

use bytes::Bytes;
use proptest::prelude::any;
use proptest::strategy::Strategy;

use super::*;
use crate::archive::format::{ArchiveError, DamageReason};
use crate::domain::frame::arbitrary;
use crate::domain::frame::{Priority, SourceKey, SourceKind};

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
    let reasons: Vec<_> = scan.damaged.iter().map(|d| &d.reason).collect();
    assert!(
        matches!(
            reasons[..],
            [
                DamageReason::CrcMismatch { .. },
                DamageReason::LengthOutside { len: 0xff00_0020 },
                DamageReason::HeaderCutShort { held: 5 }
            ]
        ),
        "{scan:?}"
    );
    assert_eq!(
        scan.damaged[1].reason.to_string(),
        "body length 4278190112 is outside 1..=17825792"
    );
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
    let scanned = scan(Path::new("t"), Trickle(&bytes), |at, entry| match entry {
        Entry::Frame(frame) => seen.push((at, frame.sequence, frame.payload.len())),
        other => panic!("unexpected {other:?}"),
    })
    .unwrap();
    assert_eq!(scanned.end, ScanEnd::Clean);
    assert_eq!(scanned.valid_len, bytes.len() as u64);
    assert_eq!(seen, expected);

    let cut = &bytes[..large_at as usize + WINDOW];
    let mut before = 0;
    let scanned = scan(Path::new("t"), Trickle(cut), |_, _| before += 1).unwrap();
    assert!(
        matches!(&scanned.end, ScanEnd::Torn { offset, reason: DamageReason::BodyCutShort { .. } } if *offset == large_at),
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

/// A STORED record of versions 1 and 2 (type 3: one sequence) as the build of 78c18ef wrote it.
fn stored_v2(source_id: u32, sequence: u64) -> Vec<u8> {
    let mut out = Vec::new();
    encode_record(&mut out, |body| {
        body.extend_from_slice(&[TYPE_STORED, SourceKind::LiveUplink.to_byte()]);
        body.extend_from_slice(&source_id.to_be_bytes());
        body.extend_from_slice(&sequence.to_be_bytes());
    });
    out
}

/// Versions 1 and 2 read a STORED record as a run of one sequence; from version 3 on, where no
/// build wrote one, it is a damaged range, and so is a record type newer than the segment's
/// version (a RECEIVED FRAMES record in a version 3 segment).
#[test]
fn each_version_reads_the_record_types_it_had_and_no_other() {
    let (frames, _) = segment(&sample()[..3]);
    let mut bytes = frames.clone();
    let stored_at = bytes.len() as u64;
    bytes.extend_from_slice(&stored_v2(7, 44));
    let stored = Entry::Stored {
        kind: SourceKind::LiveUplink,
        source_id: 7,
        first: 44,
        last: 44,
    };
    for version in [b"TLMSEG01", b"TLMSEG02"] {
        bytes[..8].copy_from_slice(version);
        let scan = scan_bytes(Bytes::from(bytes.clone()));
        assert_eq!(scan.end, ScanEnd::Clean, "{version:?}");
        assert_eq!(scan.entries.last(), Some(&(stored_at, stored.clone())));
    }
    for version in [b"TLMSEG03", b"TLMSEG06"] {
        bytes[..8].copy_from_slice(version);
        let scan = scan_bytes(Bytes::from(bytes.clone()));
        let says = format!("record type 3 in a version {} segment", version[7] - b'0');
        assert_corrupt_at(&scan.end, stored_at, &says, "STORED past version 2");
    }
    let mut v3 = frames;
    v3[..8].copy_from_slice(b"TLMSEG03");
    let received_at = v3.len() as u64;
    let head = FramesHead {
        kind: SourceKind::LiveUplink,
        priority: Priority::Routine,
        source_id: 7,
        received_unix_ns: 1,
    };
    let delivery = crate::domain::reception::Delivery::live("l", "s");
    encode_received_frames(
        &mut v3,
        head,
        &delivery,
        [(45, &b"x"[..], Default::default())],
    );
    let scan = scan_bytes(Bytes::from(v3));
    let says = "record type 6 in a version 3 segment";
    assert_corrupt_at(&scan.end, received_at, says, "RECEIVED FRAMES in version 3");
}

/// A segment of a format version no build wrote (`TLMSEG00`) or a newer one is refused: a scan,
/// and a follower's read, fail with an error naming the version found and the ones read, and
/// the file; nothing is taken for damage.
#[test]
fn a_segment_of_another_format_version_is_refused_naming_both_versions() {
    let dir = temp_dir("other-version");
    for (magic, found) in [(b"TLMSEG00", 0), (b"TLMSEG07", 7), (b"TLMSEG99", 99)] {
        let (mut bytes, _) = segment(&sample());
        bytes[..8].copy_from_slice(magic);
        let says = format!(
            "archive format version {found} (magic {}); this build reads versions 1 to 6",
            String::from_utf8_lossy(magic)
        );
        let err = scan(Path::new("t"), &bytes[..], |_, _| panic!("nothing is read")).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Version { found: f, .. } if f == found),
            "{err}"
        );
        assert_eq!(err.to_string(), format!("cannot read t: {says}"));

        let path = dir.join(segment_name(u64::from(magic[7])));
        fs::write(&path, &bytes).unwrap();
        let err = read_segment(&path).unwrap_err().to_string();
        assert!(
            err.contains(&says) && err.contains(&*path.to_string_lossy()),
            "{err}"
        );
        let file = File::open(&path).unwrap();
        let err = read_records(&file, &path, 8, bytes.len() as u64, 1 << 20).unwrap_err();
        assert!(
            matches!(err, ArchiveError::Version { .. }),
            "no damage: {err}"
        );
        let err = err.to_string();
        assert!(
            err.contains(&says) && err.contains(&*path.to_string_lossy()),
            "{err}"
        );
    }
    fs::remove_dir_all(&dir).unwrap();
}

fn stored_frame(
    source: SourceKey,
    priority: Priority,
    received_unix_ns: u64,
    sequence: u64,
    payload: Vec<u8>,
) -> Entry {
    Entry::Frame(FrameRecord {
        kind: source.0,
        priority,
        source_id: source.1,
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
                stored_frame((kind, source_id), priority, received, sequence, payload)
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
        let entries = (frames.into_iter()).map(|(sequence, payload)| {
            stored_frame((kind, source_id), priority, received, sequence, payload)
        });
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

/// A range past the file's end (a file cut short under a reader) is an error naming the file,
/// not a buffer of zeros read as records; a range within it reads the same at any budget.
#[test]
fn a_range_past_the_file_s_end_is_an_error_naming_it() {
    let dir = temp_dir("past-end");
    let entries: Vec<Entry> = sample()
        .into_iter()
        .filter(|e| e.source().is_some())
        .collect();
    let (bytes, offsets) = segment(&entries);
    let path = write(&dir, 1, &bytes);
    let file = File::open(&path).unwrap();
    let end = bytes.len() as u64;
    let expected: Vec<_> = offsets.into_iter().zip(entries).collect();
    for budget in [1, 7, 1 << 20] {
        let (mut read, mut from) = (Vec::new(), 8);
        while from < end {
            let records = read_records(&file, &path, from, end, budget).unwrap();
            read.extend(records.entries);
            from = records.next;
        }
        assert_eq!(read, expected, "budget {budget}");
    }
    let err = read_records(&file, &path, 8, end + 100, 1 << 20).unwrap_err();
    assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
    assert!(matches!(err, ArchiveError::Io { .. }), "{err}");
    fs::remove_dir_all(&dir).unwrap();
}
