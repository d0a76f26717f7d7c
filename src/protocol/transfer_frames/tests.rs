//! The frame layer end to end: packets laid into frames by the writer, read back by the
//! reader, through lost, bad and idle frames.

use proptest::prelude::any;
use proptest::strategy::Strategy;

use super::coding::crc16;
use super::*;
use crate::domain::transfer_frame_counts::TransferFrameCounts;
use crate::protocol::ccsds::{PrimaryHeader, MAX_APID};

/// TM frames of `length` bytes with a FECF, of spacecraft 42: the recording tests' too.
pub(crate) fn tm(length: usize) -> TransferFrameFormat {
    TransferFrameFormat {
        kind: TransferFrameKind::Tm,
        length,
        spacecraft_id: 42,
        randomized: false,
        fecf: true,
        ocf: false,
        header_error_control: false,
        insert_zone: 0,
    }
}

fn aos(length: usize) -> TransferFrameFormat {
    TransferFrameFormat {
        kind: TransferFrameKind::Aos,
        header_error_control: true,
        insert_zone: 2,
        ocf: true,
        ..tm(length)
    }
}

/// A telemetry packet whose data says which one it is.
fn packet(apid: u16, count: u16, len: usize) -> Vec<u8> {
    let mut data = format!("{apid}/{count}:").into_bytes();
    data.resize(len.max(data.len()), b'.');
    let mut p = PrimaryHeader::telemetry(apid, count, data.len())
        .encode()
        .to_vec();
    p.extend_from_slice(&data);
    p
}

fn read(
    reader: &mut TransferFrameReader,
    frames: &[Vec<u8>],
) -> (Vec<Vec<u8>>, TransferFrameCounts) {
    let mut out = Extracted::default();
    for frame in frames {
        let _ = reader.take(frame, &mut out);
    }
    let packets = out.packets.iter().map(|at| out.bytes[at.clone()].to_vec());
    (packets.collect(), out.tally)
}

/// Packets laid into frames of `format`'s channel 1, the last frame filled.
fn frames_of(format: TransferFrameFormat, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut writer = TransferFrameWriter::new(format, 1, 0);
    packets.iter().for_each(|p| writer.push(p));
    writer.flush();
    std::iter::from_fn(|| writer.next_frame()).collect()
}

/// docs/ground-segment.md's example: a TM frame of 25 bytes, spacecraft 42, channel 1,
/// count 0, holding the documented packet and a 7-byte idle packet, with its FECF.
#[test]
fn the_documented_tm_frame_example() {
    let documented = [
        0x02, 0xA2, 0x00, 0x00, 0x18, 0x00, // version 0, SCID 42, VC 1; counts; FHP 0
        0x00, 0x64, 0xC0, 0x05, 0x00, 0x03, 0xDE, 0xAD, 0xBE, 0xEF, // the packet
        0x07, 0xFF, 0xC0, 0x00, 0x00, 0x00, 0x55, // an idle packet
        0x6B, 0x10, // FECF
    ];
    let the_packet = [0x00, 0x64, 0xC0, 0x05, 0x00, 0x03, 0xDE, 0xAD, 0xBE, 0xEF];
    let frames = frames_of(tm(25), &[the_packet.to_vec()]);
    assert_eq!(frames, [documented.to_vec()]);
    let mut reader = TransferFrameReader::new(tm(25), &[1], 100);
    let (packets, tally) = read(&mut reader, &frames);
    assert_eq!(packets, [the_packet.to_vec()]);
    assert_eq!((tally.frames_good, tally.packets_extracted), (1, 1));
}

/// A packet spanning three frames whose middle one is lost is dropped and counted; the
/// packets after the next first header pointer are read.
#[test]
fn a_frame_count_jump_drops_the_packet_in_reassembly() {
    for format in [tm(40), aos(40)] {
        let sent = [packet(5, 0, 10), packet(5, 1, 60), packet(5, 2, 9)];
        let mut frames = frames_of(format, &sent);
        assert!(frames.len() >= 4, "the second packet spans three frames");
        frames.remove(1);
        let mut reader = TransferFrameReader::new(format, &[1], 1000);
        let (packets, tally) = read(&mut reader, &frames);
        assert_eq!(packets, [sent[0].clone(), sent[2].clone()]);
        assert_eq!((tally.vc_gaps, tally.packets_dropped_incomplete), (1, 1));
    }
}

/// Each bad frame is dropped and counted where it belongs, and costs only itself: the
/// channel's next frame after it is read (the dropped frame is a gap of its channel).
#[test]
fn bad_frames_are_dropped_and_counted() {
    let format = tm(30);
    let sent: Vec<_> = (0..6).map(|i| packet(9, i, 8)).collect();
    let good = frames_of(format, &sent);
    let mut reader = TransferFrameReader::new(format, &[1], 1000);
    let mut out = Extracted::default();
    assert_eq!(reader.take(&good[0], &mut out), Ok(()));
    let mut bad_fecf = good[1].clone();
    bad_fecf[10] ^= 1;
    assert!(matches!(
        reader.take(&bad_fecf, &mut out),
        Err(TransferFrameError::Fecf { .. })
    ));
    assert_eq!(
        reader.take(&good[1][..29], &mut out),
        Err(TransferFrameError::Length {
            got: 29,
            expected: 30
        })
    );
    let other = TransferFrameWriter::new(
        TransferFrameFormat {
            spacecraft_id: 7,
            ..format
        },
        1,
        1,
    )
    .idle_frame();
    assert_eq!(
        reader.take(&other, &mut out),
        Err(TransferFrameError::Spacecraft {
            got: 7,
            expected: 42
        })
    );
    let mut channel_2 = TransferFrameWriter::new(format, 2, 0);
    channel_2.push(&packet(9, 9, 30));
    let other_vc = channel_2.next_frame().expect("a frame of channel 2");
    assert_eq!(
        reader.take(&other_vc, &mut out),
        Err(TransferFrameError::VirtualChannel(2))
    );
    let mut beyond = good[1].clone();
    beyond[4..6].copy_from_slice(&(0x1800u16 | 22).to_be_bytes());
    let crc = crc16(&beyond[..28]);
    beyond[28..].copy_from_slice(&crc.to_be_bytes());
    assert_eq!(
        reader.take(&beyond, &mut out),
        Err(TransferFrameError::FirstHeader {
            pointer: 22,
            len: 22
        })
    );
    for frame in &good[2..] {
        assert_eq!(reader.take(frame, &mut out), Ok(()));
    }
    let t = &out.tally;
    assert_eq!(
        (t.frames_good, t.frames_bad_fecf, t.frames_dropped),
        (good.len() as u64 - 1, 1, 4)
    );
    assert_eq!(t.vc_gaps, 1);
    let read: Vec<_> = out
        .packets
        .iter()
        .map(|at| &out.bytes[at.clone()])
        .collect();
    assert_eq!(read.first(), Some(&&sent[0][..]));
    assert_eq!(read.last(), Some(&&sent[5][..]));
}

/// A spanning packet that the next first header pointer cuts short never completes: it is
/// dropped and counted, and the packet at the pointer is read.
#[test]
fn a_spanning_packet_cut_short_by_the_pointer_is_dropped() {
    let format = tm(30);
    let mut frames = frames_of(format, &[packet(3, 0, 30), packet(3, 1, 10)]);
    // The first frame's packet claims 200 bytes of data.
    frames[0][6 + 4..6 + 6].copy_from_slice(&199u16.to_be_bytes());
    let crc = crc16(&frames[0][..28]);
    frames[0][28..].copy_from_slice(&crc.to_be_bytes());
    let mut reader = TransferFrameReader::new(format, &[1], 1000);
    let (packets, tally) = read(&mut reader, &frames);
    assert_eq!(packets, [packet(3, 1, 10)]);
    assert_eq!((tally.packets_dropped_incomplete, tally.vc_gaps), (1, 0));
}

/// A TM frame's secondary header is passed over (its length in its first byte); a frame
/// with the synchronisation flag set carries no packets and is dropped.
#[test]
fn a_tm_secondary_header_is_passed_over() {
    let the_packet = packet(100, 5, 4);
    let frame = |status: u16| {
        let mut f = vec![0x02, 0xA2, 0x00, 0x00];
        f.extend_from_slice(&status.to_be_bytes());
        f.extend_from_slice(&[0x01, 0xAA]); // a secondary header of 2 bytes
        f.extend_from_slice(&the_packet);
        let crc = crc16(&f);
        f.extend_from_slice(&crc.to_be_bytes());
        f
    };
    let format = tm(6 + 2 + the_packet.len() + 2);
    let mut reader = TransferFrameReader::new(format, &[1], 100);
    let (packets, _) = read(&mut reader, &[frame(0x9800)]);
    assert_eq!(packets.len(), 1);
    assert_eq!(packets[0], the_packet);
    let mut out = Extracted::default();
    let not_packets = reader.take(&frame(0xD800), &mut out);
    assert_eq!(not_packets, Err(TransferFrameError::NotPackets));
    assert_eq!(out.tally.frames_dropped, 1);
}

/// A packet still in reassembly when the stream ends is dropped and counted.
#[test]
fn a_packet_in_reassembly_at_the_end_is_dropped_and_counted() {
    let format = tm(30);
    let frames = frames_of(format, &[packet(2, 0, 60)]);
    let mut reader = TransferFrameReader::new(format, &[1], 1000);
    let mut out = Extracted::default();
    assert_eq!(reader.take(&frames[0], &mut out), Ok(()));
    reader.finish(&mut out);
    assert!(out.packets.is_empty());
    assert_eq!(out.tally.packets_dropped_incomplete, 1);
    assert_eq!(reader.take(&frames[1], &mut out), Ok(()));
    assert_eq!(out.tally.vc_gaps, 0, "the counts start afresh");
}

/// Idle frames (TM's "idle data only", on the channel or another, AOS' channel 63) and
/// idle packets carry nothing, and break no packet in reassembly.
#[test]
fn idle_frames_and_idle_packets_are_dropped() {
    for format in [tm(24), aos(32)] {
        let mut writer = TransferFrameWriter::new(format, 1, 0);
        let sent = [packet(4, 0, 40), packet(4, 1, 3)];
        sent.iter().for_each(|p| writer.push(p));
        writer.flush();
        let mut frames = Vec::new();
        while let Some(frame) = writer.next_frame() {
            frames.push(frame);
            frames.push(writer.idle_frame());
        }
        // And an idle frame of a channel not read.
        frames.push(TransferFrameWriter::new(format, 7, 0).idle_frame());
        let mut reader = TransferFrameReader::new(format, &[1], 1000);
        let (packets, tally) = read(&mut reader, &frames);
        assert_eq!(packets, sent);
        assert_eq!(tally.frames_good, frames.len() as u64);
        assert_eq!((tally.vc_gaps, tally.frames_dropped), (0, 0));
    }
}

/// A packet of another version or over the link's largest is bad input; the channel finds
/// its packets again at the next pointer.
#[test]
fn a_bad_packet_header_costs_the_frame_rest() {
    let format = tm(40);
    let sent = [packet(1, 0, 10), packet(1, 1, 200), packet(1, 2, 10)];
    let frames = frames_of(format, &sent);
    let mut reader = TransferFrameReader::new(format, &[1], 100);
    let (packets, tally) = read(&mut reader, &frames);
    assert_eq!(packets, [sent[0].clone(), sent[2].clone()]);
    assert_eq!(tally.bad_packets, 1);
}

fn any_format() -> impl Strategy<Value = TransferFrameFormat> {
    let flags = (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>());
    (any::<bool>(), 24usize..120, flags, 0usize..4).prop_map(
        |(is_aos, length, (randomized, fecf, ocf, hec), insert)| TransferFrameFormat {
            kind: if is_aos {
                TransferFrameKind::Aos
            } else {
                TransferFrameKind::Tm
            },
            length,
            spacecraft_id: if is_aos { 0xAB } else { 0x2AB },
            randomized,
            fecf,
            ocf,
            header_error_control: hec && is_aos,
            insert_zone: if is_aos { insert } else { 0 },
        },
    )
}

/// What a spacecraft sent: frames in order of transmission, each with whether it reached
/// the ground and whether it is of the packets' channel; and per packet the first and
/// last frame it lies in.
struct Downlink {
    frames: Vec<(Vec<u8>, bool, bool)>,
    spans: Vec<(usize, usize)>,
}

/// Lays `packets` into frames of channel 3 counted from `first`; `fates` say per data frame
/// whether it is lost, and whether an idle frame follows it and is lost.
fn downlink(
    format: TransferFrameFormat,
    packets: &[Vec<u8>],
    first: u32,
    fates: &[u8],
) -> Downlink {
    let mut writer = TransferFrameWriter::new(format, 3, first);
    let capacity = format.data_capacity();
    let (mut frames, mut data_frames, mut offsets) = (Vec::new(), Vec::new(), Vec::new());
    let mut fates = fates.iter().cycle();
    let mut at = 0;
    let mut laid = |frames: &mut Vec<_>, writer: &mut TransferFrameWriter| {
        while let Some(frame) = writer.next_frame() {
            let fate = fates.next().copied().unwrap_or(0);
            data_frames.push(frames.len());
            frames.push((frame, fate % 5 != 0, true));
            if fate % 7 == 0 {
                let idle_channel = format.kind == TransferFrameKind::Tm;
                frames.push((writer.idle_frame(), fate % 3 != 0, idle_channel));
            }
        }
    };
    for p in packets {
        offsets.push((at, at + p.len()));
        at += p.len();
        writer.push(p);
        laid(&mut frames, &mut writer);
    }
    writer.flush();
    laid(&mut frames, &mut writer);
    let spans = offsets
        .iter()
        .map(|&(a, b)| (data_frames[a / capacity], data_frames[(b - 1) / capacity]))
        .collect();
    Downlink { frames, spans }
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config::with_cases(256))]

    /// Every packet lying wholly in received frames of its channel is extracted exactly
    /// once and in order, and none spanning a lost frame; the counts say what was lost
    /// between the first and the last frame received.
    #[test]
    fn packets_in_received_frames_are_extracted_once_in_order(
        format in any_format(),
        lengths in proptest::collection::vec((0u16..MAX_APID, 1usize..150), 1..40),
        before_wrap in 0u32..6,
        fates in proptest::collection::vec(any::<u8>(), 1..64),
    ) {
        let packets: Vec<_> = lengths
            .iter()
            .enumerate()
            .map(|(i, &(apid, len))| packet(apid, i as u16, len))
            .collect();
        let first = format.count_modulus() - before_wrap;
        let sent = downlink(format, &packets, first, &fates);
        let whole = |&(a, b): &(usize, usize)| {
            sent.frames[a..=b].iter().all(|(_, received, of_channel)| *received || !of_channel)
        };
        let expected: Vec<_> = packets
            .iter()
            .zip(&sent.spans)
            .filter(|(_, span)| whole(span))
            .map(|(p, _)| p.clone())
            .collect();
        let mut reader = TransferFrameReader::new(format, &[3], 4096);
        let mut out = Extracted::default();
        let last_received = sent.frames.iter().rposition(|(_, r, c)| *r && *c).unwrap_or(0);
        let mut received = 0;
        for (frame, _, _) in sent.frames.iter().filter(|(_, r, _)| *r) {
            let mut wire = frame.clone();
            if format.randomized {
                randomize(&mut wire);
            }
            proptest::prop_assert_eq!(reader.take(&wire, &mut out), Ok(()));
            received += 1;
        }
        reader.finish(&mut out);
        let read: Vec<_> = out.packets.iter().map(|at| out.bytes[at.clone()].to_vec()).collect();
        proptest::prop_assert_eq!(&read, &expected);
        let first_received = sent.frames.iter().position(|(_, r, c)| *r && *c).unwrap_or(0);
        let lost = sent.frames[first_received..last_received]
            .iter()
            .filter(|(_, r, c)| !*r && *c)
            .count() as u64;
        let t = &out.tally;
        proptest::prop_assert_eq!(t.vc_gaps, lost);
        proptest::prop_assert_eq!(t.packets_extracted, expected.len() as u64);
        proptest::prop_assert_eq!((t.frames_good, t.frames_dropped, t.bad_packets), (received, 0, 0));
        proptest::prop_assert!(t.packets_dropped_incomplete <= lost + 1);
    }
}
