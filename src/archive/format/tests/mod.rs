//! The segment format's tests: records and their codec (`records`), names, scans and repair
//! (`scans`), and what they share.

use std::fs::{self};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use super::names::*;
use super::record::*;
use super::scan::*;
use crate::domain::clock::{ClockEvent, ClockEventKind};
use crate::domain::frame::{Priority, SourceKind};

pub(super) fn sample() -> Vec<Entry> {
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

pub(super) fn segment(entries: &[Entry]) -> (Vec<u8>, Vec<u64>) {
    let mut out = MAGIC.to_vec();
    let mut offsets = Vec::new();
    for entry in entries {
        offsets.push(out.len() as u64);
        entry.encode(&mut out);
    }
    (out, offsets)
}

pub(super) fn write(dir: &Path, index: u64, bytes: &[u8]) -> PathBuf {
    let path = dir.join(segment_name(index));
    fs::write(&path, bytes).unwrap();
    path
}

/// [`scan`] over segment bytes already in memory, collecting the entries.
pub(super) fn scan_bytes(data: Bytes) -> SegmentScan {
    let mut entries = Vec::new();
    let scanned = scan(Path::new("t"), &data[..], |offset, entry| {
        entries.push((offset, entry))
    })
    .expect("a slice reads without error");
    SegmentScan::new(entries, scanned)
}

pub(super) fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("segment-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

pub(super) fn frame_entry(sequence: u64, payload: &'static [u8]) -> Entry {
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

/// Asserts that a scan ended at a corrupt record at `offset` whose end, as printed, says `says`.
#[track_caller]
pub(super) fn assert_corrupt_at(end: &ScanEnd, offset: u64, says: &str, case: &str) {
    assert!(
        matches!(end, ScanEnd::Corrupt { offset: at, .. } if *at == offset)
            && end.to_string().contains(says),
        "{case}: expected corrupt at offset {offset} saying {says:?}, got {end:?}"
    );
}

mod records;
mod scans;
