//! The ground-segment links' framings (`docs/ground-segment.md`): CCSDS back to back, after the
//! sync marker, behind a generic length field, KISS, and transfer frames. The stream is fed a
//! read at a time, and its unread bytes cut off after each, as a link's connection does.

use std::ops::Range;

use aggregator::protocol::ax25;
use aggregator::protocol::ccsds::{self, Framing, LengthField, Next, MAX_PACKET};
use aggregator::protocol::kiss::{self, KissFrame};
use aggregator::protocol::transfer_frames::{
    Extracted, TransferFrameFormat, TransferFrameKind, TransferFrameReader, TransferFrameStream,
};

/// The first byte picks the framing, and the read size; the next four the packet limit and the
/// length field (within what the config accepts); the rest is the stream. With KISS' framing
/// number, the length field's offset byte with its top bit set picks transfer frames instead
/// (its other bits their format, the adjustment byte their length).
pub(crate) fn stream(data: &[u8]) {
    let [mode, limit, offset, adjustment, strip, stream @ ..] = data else {
        return;
    };
    let max = (usize::from(*limit) * 64).clamp(7, MAX_PACKET);
    let read = usize::from(mode >> 2) * 8 + 1;
    let framing = match mode & 3 {
        0 => Framing::Ccsds,
        1 => Framing::CcsdsAsm,
        2 => Framing::LengthPrefix(LengthField {
            offset: usize::from(offset & 0x0F),
            size: usize::from(offset >> 4) % 4 + 1,
            adjustment: i64::from(*adjustment as i8),
            strip: usize::from(*strip & 0x1F),
        }),
        _ if offset & 0x80 != 0 => {
            let layout = (*offset, *adjustment, *strip);
            return frame_stream(stream, read, max, layout);
        }
        // The strip byte's top bit: KISS frames holding AX.25 UI frames (`kiss_payload = "ax25"`).
        _ => return kiss_stream(stream, read, max, strip & 0x80 != 0),
    };
    let mut buf = Vec::new();
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        let Some(at) = delimit(&framing, &buf, max) else {
            return;
        };
        buf.drain(..at);
        assert!(
            buf.len() <= pending_bound(&framing, max),
            "{} bytes kept",
            buf.len()
        );
    }
}

/// The link's loop over one read: the offset up to which the buffer is used up, `None` when the
/// stream is unreadable (the connection ends).
fn delimit(framing: &Framing, buf: &[u8], max: usize) -> Option<usize> {
    let mut at = 0;
    loop {
        match framing.next(&buf[at..], max) {
            Ok(Next::Packet {
                packet,
                end,
                skipped,
            }) => {
                assert!(skipped <= packet.start && packet.start <= packet.end);
                assert!(packet.end <= end && end <= buf.len() - at && end > 0);
                assert!(packet.len() <= max);
                let packet = &buf[at + packet.start..at + packet.end];
                round_trip(framing, packet, max);
                at += end;
            }
            Ok(Next::More { skipped }) => {
                assert!(skipped <= buf.len() - at);
                return Some(at + skipped);
            }
            Err(_) => return None,
        }
    }
}

/// The most bytes a framing may keep unread while it waits for more: a stream that sends more
/// without completing a packet must be refused, not buffered without end.
fn pending_bound(framing: &Framing, max: usize) -> usize {
    match framing {
        Framing::Ccsds => max.max(ccsds::PRIMARY_HEADER),
        Framing::CcsdsAsm => ccsds::ASM.len() + max.max(ccsds::PRIMARY_HEADER),
        Framing::LengthPrefix(field) => (field.offset + field.size).max(field.strip + max),
    }
}

/// A packet taken off the stream, encoded as the TM server would and taken again, is itself.
fn round_trip(framing: &Framing, packet: &[u8], max: usize) {
    if let Framing::LengthPrefix(field) = framing {
        // The encoder writes the field only within the stripped prefix.
        if field.offset + field.size > field.strip {
            return;
        }
    }
    let mut encoded = Vec::new();
    ccsds::encode(framing, packet, &mut encoded);
    match framing.next(&encoded, max) {
        Ok(Next::Packet { packet: again, .. }) => assert_eq!(&encoded[again], packet),
        other => panic!("an encoded packet reads back as {other:?}"),
    }
}

/// KISS as the link reads it: frames of at most `2 * max + 2` escaped bytes.
fn kiss_stream(stream: &[u8], read: usize, max: usize, ax25: bool) {
    let limit = 2 * max + 2;
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        let mut at = 0;
        loop {
            match kiss::next_frame(&buf[at..], limit, &mut out) {
                Ok(Some((end, frame))) => {
                    assert!(end > 0 && end <= buf.len() - at);
                    if let KissFrame::Data { port, len } = frame {
                        let data = out.len() - len..out.len();
                        if ax25 {
                            ax25_round_trip(&out[data.clone()]);
                        }
                        kiss_round_trip(port, data, &out, limit);
                    }
                    at += end;
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
        buf.drain(..at);
        out.clear();
        assert!(buf.len() <= limit + 1, "{} bytes kept", buf.len());
    }
}

fn kiss_round_trip(port: u8, data: Range<usize>, out: &[u8], limit: usize) {
    let (mut encoded, mut again) = (Vec::new(), Vec::new());
    kiss::encode(port, &out[data.clone()], &mut encoded);
    let read = kiss::next_frame(&encoded, 2 * encoded.len().max(limit), &mut again);
    let frame = KissFrame::Data {
        port,
        len: data.len(),
    };
    assert_eq!(read, Ok(Some((encoded.len(), frame))));
    assert_eq!(again, &out[data]);
}

/// An AX.25 header read off a frame lies within it, and the frame encoded again from what was
/// read (its repeaters aside) reads back the same.
fn ax25_round_trip(frame: &[u8]) {
    let Ok(header) = ax25::parse(frame) else {
        return;
    };
    assert!(header.len <= frame.len());
    assert!(header.repeaters <= ax25::MAX_ADDRESSES - 2);
    let info = &frame[header.len..];
    let mut again = Vec::new();
    ax25::encode(header.destination, header.source, &[], info, &mut again);
    let read = ax25::parse(&again).expect("an encoded header reads back");
    assert_eq!(
        (read.destination, read.source),
        (header.destination, header.source)
    );
    assert_eq!(&again[read.len..], info);
}

/// Transfer frames as a link reads them, every virtual channel configured: `bits` pick AOS (1),
/// the marker (2), the randomiser (4), the FECF (8), AOS' OCF (16) and header error control
/// (32); the frame is 20 to 275 bytes, followed by up to 63 bytes of check symbols. Frames lie within the stream, every packet taken out is
/// one whole packet within the limit and counted, and what is kept unread stays under a marker
/// and a frame.
fn frame_stream(stream: &[u8], read: usize, max: usize, (bits, length, check): (u8, u8, u8)) {
    let aos = bits & 1 != 0;
    let format = TransferFrameFormat {
        kind: if aos {
            TransferFrameKind::Aos
        } else {
            TransferFrameKind::Tm
        },
        length: 20 + usize::from(length),
        spacecraft_id: 42,
        randomized: bits & 4 != 0,
        fecf: bits & 8 != 0,
        ocf: aos && bits & 16 != 0,
        header_error_control: aos && bits & 32 != 0,
        insert_zone: 0,
    };
    let frames = TransferFrameStream {
        length: format.length,
        marker: bits & 2 != 0,
        check_symbols: usize::from(check & 0x3F),
    };
    let channels: Vec<u8> = (0..=format.max_vcid()).collect();
    let mut reader = TransferFrameReader::new(format, &channels, max);
    let mut buf = Vec::new();
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        let cuts = frames.delimit(&buf);
        assert!(cuts.end <= buf.len() && cuts.skipped <= cuts.end);
        let mut out = Extracted::default();
        for frame in cuts.frames {
            assert!(frame.len() == format.length && frame.end <= cuts.end);
            let _ = reader.take(&buf[frame], &mut out);
        }
        for packet in &out.packets {
            let packet = &out.bytes[packet.clone()];
            assert!(packet.len() <= max && ccsds::apid_of_packet(packet).is_some());
        }
        assert_eq!(out.tally.packets_extracted, out.packets.len() as u64);
        buf.drain(..cuts.end);
        assert!(
            buf.len() < ccsds::ASM.len() + format.length + frames.check_symbols,
            "{} bytes kept",
            buf.len()
        );
    }
}

/// A station's recording file (`aggregator recording inspect`, `docs/ground-segment.md`,
/// "Recording files"): the first byte's low three bits pick the naming (detected, or one of the
/// formats named), its top bits a frame length for transfer frames; the rest is the file, plain
/// or gzip. Frames and damaged ranges come in order, apart, and within the bytes read; a refusal
/// or a read error ends it.
pub(crate) fn recording(data: &[u8]) {
    use aggregator::links::recording::{FormatName, Naming, RecordedItem, Recording};
    let (mode, file) = crate::split_mode(data);
    let format = match mode & 7 {
        1 => Some(FormatName::Kiss),
        2 => Some(FormatName::Ccsds),
        3 => Some(FormatName::CcsdsAsm),
        4 => Some(FormatName::LengthPrefix),
        5 => Some(FormatName::TmFrames),
        6 => Some(FormatName::AosFrames),
        _ => None,
    };
    let naming = Naming {
        format,
        frame_length: (mode >> 3 != 0).then_some(usize::from(mode >> 3) * 4),
        frame_marker: mode & 0x80 == 0,
        check_symbols: usize::from(mode >> 6 & 1) * 2,
        length: (format == Some(FormatName::LengthPrefix)).then_some(LengthField {
            offset: 0,
            size: 2,
            adjustment: 0,
            strip: 2,
        }),
    };
    let input = std::io::Cursor::new(file.to_vec());
    let Ok(mut recording) = Recording::read_from(std::path::Path::new("fuzz"), input, &naming)
    else {
        return;
    };
    let mut after = 0;
    for item in recording.by_ref() {
        let Ok(item) = item else { break };
        let (start, end) = match &item {
            RecordedItem::Frame(frame) => (frame.offset, frame.offset + 1),
            RecordedItem::Damage(damage) => (damage.start, damage.end),
        };
        assert!(after <= start && start < end, "{item:?} after {after}");
        after = match item {
            RecordedItem::Frame(_) => start + 1,
            RecordedItem::Damage(_) => end,
        };
    }
    assert!(
        after <= recording.bytes_read(),
        "{after} past the bytes read"
    );
}
