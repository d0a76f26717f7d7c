//! Each record type written and read back, and records that cannot be.

use std::fs::{self, File};

use std::sync::Arc;

use bytes::Bytes;

use super::*;
use crate::archive::format::{ArchiveError, DamageReason, FrameFault};
use crate::domain::clock::{ClockEvent, ClockEventKind};
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::reception::{Ax25Addresses, Delivery, Received, Reception};

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
/// journal's) too.
#[test]
fn received_frames_read_back_with_their_reception() {
    let (delivery, received, bytes) = received_record();
    let scan = scan_bytes(Bytes::from(bytes));
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
}

/// Three frames of a link as a RECEIVED FRAMES record behind the magic: the first with an
/// earth-receive time and AX.25 addresses, the second played back, the third with nothing.
fn received_record() -> (Arc<Delivery>, [Received; 3], Vec<u8>) {
    let delivery = Arc::new(Delivery::live("uhf", "Svalbard, SG-1"));
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
    (delivery, received, bytes)
}

/// Undefined reception flags, and an AX.25 SSID past 15, are damage, never a guess: each in a
/// record whose CRC is right, so that only the decoder can refuse it.
#[test]
fn impossible_reception_fields_are_damage() {
    let (_, _, bytes) = received_record();
    // The first frame's flags, after the fixed part and the two names.
    let flags = MAGIC.len() + RECORD_HEADER_LEN + FRAMES_BODY_FIXED + 2 + 3 + 14 + 12;
    assert_eq!(
        bytes[flags],
        0x01 | 0x04,
        "an earth time and AX.25 addresses follow"
    );
    let damaged = |at: usize, byte: u8| {
        let mut bytes = bytes.clone();
        bytes[at] = byte;
        let start = MAGIC.len();
        let crc = crc32fast::hash(&bytes[start + RECORD_HEADER_LEN..]);
        bytes[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
        scan_bytes(Bytes::from(bytes)).end
    };
    let refused = |end: &ScanEnd, fault: FrameFault, says: &str| {
        matches!(end, ScanEnd::Corrupt { reason, .. } | ScanEnd::Torn { reason, .. }
            if matches!(reason, DamageReason::BadFrame { fault: f, .. } if *f == fault)
                && reason.to_string().contains(says))
    };
    let end = damaged(flags, 0x85);
    let says = "undefined reception flags 0x85";
    let fault = FrameFault::UndefinedReceptionFlags(0x85);
    assert!(refused(&end, fault, says), "{end:?}");
    // The destination's SSID byte, after the earth time and the source's 7 bytes: only its
    // 0 to 15 write back as they read.
    let end = damaged(flags + 1 + 8 + 7 + 6, 0x9C);
    let says = "AX.25 SSID of 156, past 15";
    assert!(
        refused(&end, FrameFault::SsidOutOfRange(0x9C), says),
        "{end:?}"
    );
}

/// A recording's frames are a RECORDED FRAMES record (type 8) naming it after the station, read
/// back with it; a segment of version 5, which had no such record, takes one for damage.
#[test]
fn recorded_frames_read_back_naming_their_recording() {
    let live = Delivery::live("uhf", "Kiruna");
    let delivery = Arc::new(live.from_recording("pass\n7.kiss"));
    assert_eq!(delivery.recording.as_deref(), Some("pass\\x0A7.kiss"));
    let head = FramesHead {
        kind: SourceKind::LiveUplink,
        priority: Priority::Routine,
        source_id: 500,
        received_unix_ns: 77,
    };
    let received = Received {
        playback: true,
        ..Received::default()
    };
    let frames = three_frames().into_iter().map(|(s, p)| (s, p, received));
    let mut bytes = MAGIC.to_vec();
    encode_received_frames(&mut bytes, head, &delivery, frames);
    let names_at = MAGIC.len() + RECORD_HEADER_LEN + FRAMES_BODY_FIXED;
    assert_eq!(bytes[MAGIC.len() + RECORD_HEADER_LEN], TYPE_RECORDED_FRAMES);
    assert_eq!(&bytes[names_at..names_at + 4], b"\x03uhf");
    assert_eq!(&bytes[names_at + 11..names_at + 26], b"\x0epass\\x0A7.kiss");
    let scan = scan_bytes(Bytes::from(bytes.clone()));
    assert_eq!(scan.end, ScanEnd::Clean);
    for (_, entry) in scan.entries {
        let Entry::Frame(frame) = entry else {
            panic!("{entry:?}")
        };
        let reception = frame.reception.unwrap();
        assert_eq!(
            (reception.delivery, reception.received),
            (Arc::clone(&delivery), received)
        );
    }
    bytes[..8].copy_from_slice(b"TLMSEG05");
    let scan = scan_bytes(Bytes::from(bytes));
    let says = "record type 8 in a version 5 segment";
    assert_corrupt_at(&scan.end, 8, says, "RECORDED FRAMES before version 6");
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
    assert!(matches!(err, ArchiveError::Damaged(_)), "{err}");
    assert!(err.to_string().contains("body length"), "{err}");
}
