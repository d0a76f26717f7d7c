//! What the daemon reads back from disk, where a crash, a full disk or a failing one may have left
//! anything: segments and emergency journals (one format: a magic, then records), the range reads
//! of a follower, the small files (a segment's index, a shard's retention state, the catalog, a
//! sink's cursor).
//!
//! Their records and files carry CRCs, which random bytes never match: a target's first byte says
//! whether to seal the input first (recompute each CRC), so the fuzzer reaches the decoding behind
//! the checksum as well as the checksum's refusals.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use aggregator::archive::format::index::{self, SegmentIndex};
use aggregator::archive::format::retention_file;
use aggregator::archive::format::{self, ArchiveError, Entry, FramesHead, ScanEnd, MAGIC};
use aggregator::catalog::store;
use aggregator::domain::position::{Position, Positions, ShardPosition};
use bytes::Bytes;

use crate::split_mode;

/// Bytes of a record's length and CRC.
const RECORD_HEADER: usize = 8;

/// A segment (or journal) file scanned as recovery and `archive verify` scan one: every entry lies
/// within the file, in file order, the damaged ranges are in order and cover what was not read,
/// and every record read encodes back to its own bytes.
pub(crate) fn segment_scan(data: &[u8]) {
    let file = segment_file(data);
    let mut entries: Vec<(u64, Entry)> = Vec::new();
    let read = |offset, entry| entries.push((offset, entry));
    let scanned = match format::scan(Path::new("fuzz.seg"), &file[..], read) {
        Ok(scanned) => scanned,
        // Only a segment of another format version is refused rather than read as damage.
        Err(err) => return assert!(matches!(err, ArchiveError::Version { .. }), "{err}"),
    };
    assert_eq!(scanned.file_len, file.len() as u64);
    assert!(scanned.valid_len <= scanned.file_len);
    assert_eq!(scanned.damaged.is_empty(), scanned.end == ScanEnd::Clean);
    let mut last = 0;
    for damage in &scanned.damaged {
        // A file without its whole magic is one range from 0, empty for an empty file.
        assert!(last <= damage.start && damage.start <= damage.end);
        assert!(damage.end <= scanned.file_len);
        last = damage.end;
    }
    assert!(entries.windows(2).all(|w| w[0].0 <= w[1].0));
    re_encode(&file, &entries);
}

/// The input as a segment file: the magic first unless the mode's bit 1 is set, its records
/// sealed when bit 0 is.
fn segment_file(data: &[u8]) -> Vec<u8> {
    let (mode, rest) = split_mode(data);
    let mut file = Vec::with_capacity(MAGIC.len() + rest.len());
    if mode & 2 == 0 {
        file.extend_from_slice(MAGIC);
    }
    file.extend_from_slice(rest);
    if mode & 1 == 1 {
        seal_records(&mut file);
    }
    file
}

/// Recomputes the CRC of each record, from after the magic, as far as their lengths delimit them.
fn seal_records(file: &mut [u8]) {
    let mut at = MAGIC.len();
    while let Some(header) = file.get(at..at + RECORD_HEADER) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let body = at + RECORD_HEADER;
        let Some(crc) = file.get(body..body + len).map(crc32fast::hash) else {
            return;
        };
        file[at + 4..at + 8].copy_from_slice(&crc.to_be_bytes());
        at = body + len;
    }
}

/// Each record read, encoded again with the segment's encoders, is the bytes it was read from.
fn re_encode(file: &[u8], entries: &[(u64, Entry)]) {
    for record in entries.chunk_by(|a, b| a.0 == b.0) {
        let at = record[0].0 as usize;
        let header = &file[at..at + RECORD_HEADER];
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let mut encoded = Vec::new();
        match (file[at + RECORD_HEADER], &record[0].1) {
            (4, Entry::Frame(first)) => format::encode_frames(
                &mut encoded,
                first.kind,
                first.priority,
                first.source_id,
                first.received_unix_ns,
                record.iter().map(|(_, entry)| match entry {
                    Entry::Frame(f) => (f.sequence, &f.payload[..]),
                    other => panic!("a FRAMES record holds {other:?}"),
                }),
            ),
            (6 | 8, Entry::Frame(first)) => {
                let head = FramesHead {
                    kind: first.kind,
                    priority: first.priority,
                    source_id: first.source_id,
                    received_unix_ns: first.received_unix_ns,
                };
                let reception = first
                    .reception
                    .as_ref()
                    .expect("a RECEIVED FRAMES reception");
                let frames = record.iter().map(|(_, entry)| match entry {
                    Entry::Frame(f) => {
                        let received = f.reception.as_ref().expect("each frame's reception");
                        (f.sequence, &f.payload[..], received.received)
                    }
                    other => panic!("a RECEIVED FRAMES record holds {other:?}"),
                });
                format::encode_received_frames(&mut encoded, head, &reception.delivery, frames);
            }
            // A STORED record, which only format versions 1 and 2 write, is read as the STORED
            // RUN of its one sequence that later versions write instead: it encodes as that.
            (3, entry) => {
                entry.encode(&mut encoded);
                assert_eq!(encoded.get(RECORD_HEADER), Some(&5), "record at {at}");
                continue;
            }
            (_, entry) => entry.encode(&mut encoded),
        }
        assert_eq!(
            encoded,
            &file[at..at + RECORD_HEADER + len],
            "record at {at}"
        );
    }
}

/// A follower's range read of a segment file: the first two bytes after the mode pick the range
/// and the budget. The records it returns lie within the range, and where it says to go on is
/// within it too.
pub(crate) fn segment_read(data: &[u8]) {
    let [from, to, budget, rest @ ..] = data else {
        return;
    };
    let file = segment_file(rest);
    let path = scratch_file(&file);
    let Ok(opened) = File::open(&path) else {
        return;
    };
    let len = file.len() as u64;
    let from = u64::from(*from) % (len + 1);
    let to = (from + u64::from(*to)).min(len);
    let budget = usize::from(*budget) * 16;
    if let Ok(records) = format::read_records(&opened, &path, from, to, budget) {
        assert!(from <= records.next && records.next <= to);
        let within = |&(offset, _): &(u64, Entry)| from <= offset && offset < records.next;
        assert!(records.entries.iter().all(within));
    }
}

/// One file per fuzzing process, written again for each input.
fn scratch_file(bytes: &[u8]) -> PathBuf {
    let path = std::env::temp_dir().join(format!("aggregator-fuzz-{}.seg", std::process::id()));
    let written = File::create(&path).and_then(|mut file| file.write_all(bytes));
    written.expect("the scratch file is written");
    path
}

/// The archive's small files, by the mode's bits 1 and 2: a segment's index, a shard's retention
/// state, the stored catalog, a sink's cursor. Sealed (bit 0), the last four bytes are the CRC of
/// the others. Whatever decodes encodes to bytes that decode to the same value; the catalog
/// file, whose encoding is unique, to the same bytes.
pub(crate) fn small_files(data: &[u8]) {
    let (mode, rest) = split_mode(data);
    let mut bytes = rest.to_vec();
    if mode & 1 == 1 && bytes.len() >= 4 {
        let at = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..at]);
        bytes[at..].copy_from_slice(&crc.to_be_bytes());
    }
    match (mode >> 1) & 3 {
        0 => {
            if let Some(decoded) = index::decode(&bytes) {
                let mut encoded = Vec::new();
                decoded.encode(&mut encoded);
                assert_eq!(index::decode(&encoded).as_ref(), Some(&decoded));
                assert_index_consistent(&decoded);
            }
        }
        1 => {
            if let Some(decoded) = retention_file::decode(&bytes) {
                let mut encoded = Vec::new();
                decoded.encode(&mut encoded);
                assert_eq!(retention_file::decode(&encoded).as_ref(), Some(&decoded));
            }
        }
        2 => {
            if let Ok(catalog) = store::decode(Bytes::from(bytes.clone())) {
                assert_eq!(&store::encode(&catalog)[..], &bytes[..]);
            }
        }
        _ => cursor(&bytes),
    }
}

/// An index's time blocks are in offset order and within the segment.
fn assert_index_consistent(decoded: &SegmentIndex) {
    assert!(decoded.times.windows(2).all(|w| w[0].offset < w[1].offset));
    assert!(decoded.times.iter().all(|block| block.offset < decoded.len));
}

/// A cursor file's text, and the positions a follower names: each parses to a value that prints
/// as text which parses to it again.
fn cursor(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if let Ok(position) = text.parse::<Position>() {
        assert_eq!(
            position.to_string().parse::<Position>().ok(),
            Some(position)
        );
    }
    if let Ok(position) = text.parse::<ShardPosition>() {
        assert_eq!(
            position.to_string().parse::<ShardPosition>().ok(),
            Some(position)
        );
    }
    if let Ok(positions) = text.parse::<Positions>() {
        assert_eq!(
            positions.to_string().parse::<Positions>().ok(),
            Some(positions)
        );
    }
}
