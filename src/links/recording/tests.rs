//! Recordings of every format, plain and gzip, read back: detection and its refusals, frames
//! with their places and times, and the damage of bad files named.

use std::io::Write;

use super::*;
use crate::protocol::ccsds::{self, LengthField, PrimaryHeader, ASM};
use crate::protocol::kiss;
use crate::protocol::transfer_frames::tests::tm;
use crate::protocol::transfer_frames::{
    TransferFrameFormat, TransferFrameKind, TransferFrameWriter,
};

fn packet(apid: u16, count: u16, len: usize) -> Vec<u8> {
    let mut p = PrimaryHeader::telemetry(apid, count, len).encode().to_vec();
    p.extend((0..len).map(|i| (i as u8) ^ (count as u8)));
    p
}

fn packets(n: u16) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| packet(100, i, 10 + usize::from(i) % 7))
        .collect()
}

/// `bytes` written to a file of the test's own, opened as `naming` says, and removed (the open
/// file reads on).
fn open(name: &str, bytes: &[u8], naming: &Naming) -> Result<Recording, RecordingError> {
    let path = std::env::temp_dir().join(format!("recording-{name}-{}", std::process::id()));
    std::fs::write(&path, bytes).unwrap();
    let opened = Recording::open(&path, naming);
    std::fs::remove_file(&path).unwrap();
    opened
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// What reading a recording came to.
#[derive(Debug, Default)]
struct Read {
    frames: Vec<RecordedFrame>,
    damage: Vec<Damage>,
    error: Option<String>,
}

impl Read {
    fn payloads(&self) -> Vec<Vec<u8>> {
        self.frames.iter().map(|f| f.payload.to_vec()).collect()
    }

    fn offsets(&self) -> Vec<u64> {
        self.frames.iter().map(|f| f.offset).collect()
    }
}

fn read(recording: Recording) -> Read {
    let mut read = Read::default();
    for item in recording {
        match item {
            Ok(RecordedItem::Frame(frame)) => read.frames.push(frame),
            Ok(RecordedItem::Damage(damage)) => read.damage.push(damage),
            Err(err) => read.error = Some(err.to_string()),
        }
    }
    read
}

/// Reads `bytes` as a file, plain and gzipped: the format told or named and what was read,
/// which must be the same for both.
fn both(name: &str, bytes: &[u8], naming: &Naming) -> (RecordingFormat, bool, Read) {
    let plain = open(name, bytes, naming).unwrap();
    let gz = open(&format!("{name}.gz"), &gzip(bytes), naming).unwrap();
    assert_eq!(
        (plain.compression(), gz.compression()),
        (Compression::Plain, Compression::Gzip)
    );
    let (format, detected) = (*plain.format(), plain.detected());
    assert_eq!((*gz.format(), gz.detected()), (format, detected));
    let (plain, gz) = (read(plain), read(gz));
    assert_eq!(plain.payloads(), gz.payloads());
    assert_eq!(plain.offsets(), gz.offsets());
    assert_eq!(plain.damage, gz.damage);
    (format, detected, plain)
}

fn refusal(name: &str, bytes: &[u8], naming: &Naming) -> RecordingError {
    match open(name, bytes, naming) {
        Err(err) => err,
        Ok(recording) => panic!("{name} read as {}", recording.format()),
    }
}

/// gr-satellites' `--kiss_out`: a time frame before each data frame.
fn kiss_capture(packets: &[Vec<u8>], first_ms: u64) -> Vec<u8> {
    let mut wire = Vec::new();
    for (i, p) in packets.iter().enumerate() {
        kiss::encode(0, &(first_ms + i as u64).to_be_bytes(), &mut wire);
        let at = wire.len() - 10;
        wire[at] = kiss::TIME;
        kiss::encode(0, p, &mut wire);
    }
    wire
}

#[test]
fn kiss_captures_give_their_frames_with_gr_satellites_times() {
    let sent = packets(5);
    let wire = kiss_capture(&sent, 1_700_000_000_000);
    let (format, detected, got) = both("kiss", &wire, &Naming::default());
    assert_eq!((format, detected), (RecordingFormat::Kiss, true));
    assert_eq!(got.payloads(), sent);
    let times: Vec<_> = got.frames.iter().map(|f| f.earth_unix_ns).collect();
    let want: Vec<_> = (0..5)
        .map(|i| Some((1_700_000_000_000 + i) * 1_000_000))
        .collect();
    assert_eq!(times, want);
    assert!(got.frames.iter().all(|f| f.kiss_port == Some(0)));
    // Each frame's offset is where its KISS frame starts: reading from there gives it.
    let first = got.frames[1].offset as usize;
    let mut out = Vec::new();
    let (_, frame) = kiss::next_frame(&wire[first..], 1000, &mut out)
        .unwrap()
        .unwrap();
    assert!(matches!(frame, kiss::KissFrame::Data { .. }));
    assert_eq!(out, sent[1]);
    assert!(got.damage.is_empty() && got.error.is_none());
}

/// A time frame of another port is no time of a data frame; a data frame without one has none.
#[test]
fn a_kiss_time_goes_only_to_the_next_frame_of_its_port() {
    let mut wire = Vec::new();
    kiss::encode(3, &7u64.to_be_bytes(), &mut wire);
    let at = wire.len() - 10;
    wire[at] = 0x30 | kiss::TIME;
    kiss::encode(0, &packet(1, 0, 4), &mut wire);
    kiss::encode(3, &packet(1, 1, 4), &mut wire);
    let got = read(open("kiss-ports", &wire, &Naming::default()).unwrap());
    let heard: Vec<_> = (got.frames.iter())
        .map(|f| (f.kiss_port, f.earth_unix_ns))
        .collect();
    assert_eq!(heard, [(Some(0), None), (Some(3), None)]);
}

fn frames(format: TransferFrameFormat, n: u16) -> Vec<Vec<u8>> {
    let mut writer = TransferFrameWriter::new(format, 1, 0);
    for p in packets(n) {
        writer.push(&p);
    }
    writer.flush();
    std::iter::from_fn(|| writer.next_frame()).collect()
}

fn behind_markers(frames: &[Vec<u8>]) -> Vec<u8> {
    frames
        .iter()
        .flat_map(|f| ASM.iter().chain(f))
        .copied()
        .collect()
}

#[test]
fn tm_and_aos_frames_behind_markers_are_told_with_their_length() {
    let aos = TransferFrameFormat {
        kind: TransferFrameKind::Aos,
        header_error_control: true,
        ..tm(80)
    };
    for format in [tm(64), aos] {
        let sent = frames(format, 12);
        assert!(sent.len() >= 3);
        let (got_format, detected, got) =
            both("frames", &behind_markers(&sent), &Naming::default());
        let want = RecordingFormat::Frames {
            kind: format.kind,
            length: format.length,
            marker: true,
            check_symbols: 0,
        };
        assert_eq!((got_format, detected), (want, true));
        assert_eq!(got.payloads(), sent);
        let step = (format.length + 4) as u64;
        let offsets: Vec<_> = (0..sent.len() as u64).map(|i| i * step).collect();
        assert_eq!(got.offsets(), offsets);
        assert!(got.damage.is_empty());
    }
}

/// Check symbols a station left after each frame are no frame's and no damage: the markers'
/// spacing less them is the frames' length.
#[test]
fn check_symbols_after_frames_are_passed_over() {
    let sent = frames(tm(64), 8);
    let wire: Vec<u8> = (sent.iter())
        .flat_map(|f| ASM.iter().chain(f).chain(&[0xE1, 0xE2]))
        .copied()
        .collect();
    let naming = Naming {
        check_symbols: 2,
        ..Naming::default()
    };
    let (format, _, got) = both("check-symbols", &wire, &naming);
    assert_eq!(
        format.to_string(),
        "tm-frames (64 bytes, behind the ASM, 2 check symbols after each)"
    );
    assert_eq!(got.payloads(), sent);
    assert!(got.damage.is_empty(), "{:?}", got.damage);
}

/// Frames back to back say nothing of themselves: named with their length they are read, and
/// without it refused.
#[test]
fn frames_without_markers_are_named_never_told() {
    let sent = frames(tm(64), 12);
    let wire: Vec<u8> = sent.concat();
    let named = Naming {
        format: Some(FormatName::TmFrames),
        frame_length: Some(64),
        frame_marker: false,
        ..Naming::default()
    };
    let (format, detected, got) = both("bare-frames", &wire, &named);
    assert!(!detected);
    assert_eq!(format.name(), FormatName::TmFrames);
    assert_eq!(got.payloads(), sent);
    let unnamed = refusal("bare-frames-unnamed", &wire, &Naming::default());
    assert!(
        matches!(unnamed, RecordingError::Undetected { .. }),
        "{unnamed}"
    );
    let no_length = Naming {
        frame_length: None,
        ..named
    };
    let err = refusal("bare-frames-no-length", &wire, &no_length);
    assert!(
        matches!(
            err,
            RecordingError::Named {
                why: NamingError::NoFrameLength,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn packet_streams_bare_behind_markers_and_behind_lengths_are_told() {
    let sent = packets(9);
    let prefix = LengthField {
        offset: 0,
        size: 4,
        adjustment: 4,
        strip: 4,
    };
    let cases = [
        ("ccsds", RecordingFormat::Packets { marker: false }),
        ("ccsds-asm", RecordingFormat::Packets { marker: true }),
        ("length", RecordingFormat::LengthPrefix(prefix)),
    ];
    for (name, format) in cases {
        let framing = match format {
            RecordingFormat::Packets { marker: false } => ccsds::Framing::Ccsds,
            RecordingFormat::Packets { marker: true } => ccsds::Framing::CcsdsAsm,
            _ => ccsds::Framing::LengthPrefix(prefix),
        };
        let mut wire = Vec::new();
        sent.iter()
            .for_each(|p| ccsds::encode(&framing, p, &mut wire));
        let (got_format, detected, got) = both(name, &wire, &Naming::default());
        assert_eq!((got_format, detected), (format, true), "{name}");
        assert_eq!(got.payloads(), sent, "{name}");
        assert!(got.damage.is_empty(), "{name}");
    }
}

#[test]
fn bytes_of_no_format_and_empty_files_are_refused_with_the_reason() {
    let err = refusal("text", b"hello, this is no telemetry\n", &Naming::default());
    assert!(
        matches!(
            &err,
            RecordingError::Undetected {
                why: Undetected::Unrecognised(first),
                ..
            } if first == "68 65 6C 6C 6F 2C 20 74"
        ),
        "{err}"
    );
    let err = refusal("empty", b"", &Naming::default());
    assert!(matches!(err, RecordingError::Empty { .. }), "{err}");
    let gz = refusal("empty.gz", &gzip(b""), &Naming::default());
    assert!(matches!(gz, RecordingError::Empty { .. }), "{gz}");
    let named = Naming {
        format: Some(FormatName::LengthPrefix),
        ..Naming::default()
    };
    let err = refusal("no-field", &packets(2).concat(), &named);
    assert!(err.to_string().contains("length field"), "{err}");
}

#[test]
fn garbage_amid_bare_packets_is_one_damaged_range_between_frames_read() {
    let sent = packets(8);
    let mut wire = sent[..4].concat();
    let garbage_at = wire.len() as u64;
    wire.extend_from_slice(&[0xFF; 37]);
    wire.extend(sent[4..].concat());
    let (_, _, got) = both("garbage", &wire, &Naming::default());
    assert_eq!(got.payloads(), sent);
    assert_eq!(got.damage.len(), 1, "{:?}", got.damage);
    let damage = &got.damage[0];
    assert_eq!((damage.start, damage.end), (garbage_at, garbage_at + 37));
    assert!(matches!(damage.reason, DamageReason::NotPackets(_)));
    assert_eq!(got.frames[4].offset, garbage_at + 37);
}

#[test]
fn noise_between_marked_frames_and_a_bad_kiss_frame_are_named() {
    let sent = frames(tm(64), 12);
    let mut wire = behind_markers(&sent[..5]);
    let noise_at = wire.len() as u64;
    wire.extend_from_slice(&[0x55; 20]);
    wire.extend(behind_markers(&sent[5..]));
    let named = Naming {
        frame_length: Some(64),
        ..Naming::default()
    };
    let (_, _, got) = both("noise", &wire, &named);
    assert_eq!(got.payloads(), sent);
    let ranges: Vec<_> = got.damage.iter().map(|d| (d.start, d.end)).collect();
    assert_eq!(ranges, [(noise_at, noise_at + 20)]);
    assert_eq!(got.damage[0].reason, DamageReason::NoMarker);

    let mut wire = Vec::new();
    kiss::encode(0, b"first", &mut wire);
    let bad_at = wire.len() as u64;
    wire.extend_from_slice(&[kiss::FEND, 0x00, 1, kiss::FESC, 0x01, kiss::FEND]);
    kiss::encode(0, b"second", &mut wire);
    let (_, _, got) = both("bad-kiss", &wire, &Naming::default());
    assert_eq!(got.payloads(), [b"first".to_vec(), b"second".to_vec()]);
    assert_eq!(
        (got.damage[0].start, got.damage[0].end),
        (bad_at, bad_at + 6)
    );
    assert!(matches!(got.damage[0].reason, DamageReason::Kiss(_)));
}

#[test]
fn a_truncated_last_frame_is_named_after_every_whole_frame() {
    let sent = packets(6);
    let wire = sent.concat();
    let cut = wire.len() - 3;
    let (_, _, got) = both("truncated", &wire[..cut], &Naming::default());
    assert_eq!(got.payloads(), sent[..5]);
    let last = got.damage.last().expect("the cut frame named");
    assert_eq!(last.reason, DamageReason::Truncated);
    let start = (wire.len() - sent[5].len()) as u64;
    assert_eq!((last.start, last.end), (start, cut as u64));

    let kiss = kiss_capture(&sent, 0);
    let (_, _, got) = both(
        "truncated-kiss",
        &kiss[..kiss.len() - 2],
        &Naming::default(),
    );
    assert_eq!(got.payloads(), sent[..5]);
    assert_eq!(got.damage.len(), 1);
    assert_eq!(got.damage[0].reason, DamageReason::Truncated);
}

/// A gzip stream cut short: the frames before the cut, then the error.
#[test]
fn a_cut_gzip_stream_gives_its_frames_then_the_error() {
    let sent = packets(2000);
    let gz = gzip(&sent.concat());
    let got = read(open("cut.gz", &gz[..gz.len() / 2], &Naming::default()).unwrap());
    assert!(
        !got.frames.is_empty() && got.frames.len() < sent.len(),
        "{} frames, {:?}",
        got.frames.len(),
        got.error
    );
    assert_eq!(got.payloads(), sent[..got.frames.len()]);
    let error = got.error.expect("the cut named");
    assert!(error.contains("cannot read"), "{error}");
}

/// A file many reads long is streamed: every frame, at its offset, across the reads' seams.
#[test]
fn a_file_of_many_reads_is_read_whole_across_its_seams() {
    let sent: Vec<_> = (0..40_000u16)
        .map(|i| packet(7, i % 16_384, 1 + usize::from(i) % 31))
        .collect();
    let wire = sent.concat();
    assert!(wire.len() > 5 * READ_BYTES);
    let (_, _, got) = both("long", &wire, &Naming::default());
    assert_eq!(got.frames.len(), sent.len());
    assert_eq!(got.payloads(), sent);
    let mut offset = 0;
    for (frame, p) in got.frames.iter().zip(&sent) {
        assert_eq!(frame.offset, offset);
        offset += p.len() as u64;
    }
}

/// A frame length no link allows is refused, named or not, and never read with.
#[test]
fn a_frame_length_beyond_transfer_frames_is_refused() {
    let wire = behind_markers(&frames(tm(64), 4));
    for length in [0, 4096] {
        let naming = Naming {
            frame_length: Some(length),
            ..Naming::default()
        };
        let err = refusal("frame-length", &wire, &naming);
        assert!(
            matches!(
                err,
                RecordingError::Named {
                    why: NamingError::FrameLength(got),
                    ..
                } if got == length
            ),
            "{err}"
        );
    }
}

fn any_naming() -> impl proptest::strategy::Strategy<Value = Naming> {
    use proptest::strategy::Strategy;
    let field = LengthField {
        offset: 1,
        size: 2,
        adjustment: -3,
        strip: 3,
    };
    proptest::sample::select(vec![
        (None, None, true, None),
        (Some(FormatName::Kiss), None, true, None),
        (Some(FormatName::Ccsds), None, true, None),
        (Some(FormatName::CcsdsAsm), None, true, None),
        (Some(FormatName::LengthPrefix), None, true, Some(field)),
        (Some(FormatName::TmFrames), Some(9), false, None),
        (Some(FormatName::AosFrames), Some(9), true, None),
    ])
    .prop_map(|(format, frame_length, frame_marker, length)| Naming {
        format,
        frame_length,
        frame_marker,
        check_symbols: usize::from(frame_marker),
        length,
    })
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(96))]

    /// Any bytes, read as any format, give frames and damaged ranges in order, inside the file
    /// and apart, or a refusal: never a panic.
    #[test]
    fn any_bytes_read_as_any_format_stay_in_order_and_in_the_file(
        bytes in proptest::collection::vec(
            proptest::prop_oneof![
                proptest::sample::select(vec![0x00, 0xC0, 0xDB, 0xDC, 0x1A, 0xCF, 0xFC, 0x1D]),
                proptest::prelude::any::<u8>(),
            ],
            0..600,
        ),
        naming in any_naming(),
    ) {
        let Ok(recording) = open("any", &bytes, &naming) else {
            return Ok(());
        };
        let got = read(recording);
        let mut spans: Vec<(u64, u64)> = got.damage.iter().map(|d| (d.start, d.end)).collect();
        spans.extend(got.frames.iter().map(|f| (f.offset, f.offset + 1)));
        spans.sort_unstable();
        for pair in spans.windows(2) {
            proptest::prop_assert!(pair[0].1 <= pair[1].0, "{:?}", pair);
        }
        for (start, end) in spans {
            proptest::prop_assert!(start < end && end <= bytes.len() as u64);
        }
        proptest::prop_assert!(got.error.is_none());
    }
}

/// An endless stretch of damage (zeros after KISS frames) hands out its pieces as it is read,
/// each where the one before ended, rather than holding the reader until it ends.
#[test]
fn an_endless_stretch_of_damage_comes_in_pieces() {
    let frames = kiss_capture(&packets(3), 1_700_000_000_000);
    let zeros_at = frames.len() as u64;
    let endless = io::Read::chain(io::Cursor::new(frames), io::repeat(0));
    let path = Path::new("endless.kiss");
    let input = io::BufReader::new(endless);
    let mut recording = Recording::read_from(path, input, &Naming::default()).unwrap();
    let items: Vec<_> = recording.by_ref().take(5).map(Result::unwrap).collect();
    let frames = items.iter().filter(|i| matches!(i, RecordedItem::Frame(_)));
    assert_eq!(frames.count(), 3);
    let pieces: Vec<_> = (items.iter())
        .filter_map(|item| match item {
            RecordedItem::Damage(damage) => Some((damage.start, damage.end)),
            RecordedItem::Frame(_) => None,
        })
        .collect();
    assert_eq!(pieces.len(), 2);
    assert_eq!(pieces[0].0, zeros_at);
    assert_eq!(
        pieces[1].0, pieces[0].1,
        "the second piece goes on from the first"
    );
    for (start, end) in pieces {
        assert!((DAMAGE_PIECE..DAMAGE_PIECE + READ_BYTES as u64).contains(&(end - start)));
    }
    assert!(recording.bytes_read() <= zeros_at + 2 * (DAMAGE_PIECE + READ_BYTES as u64));
}
