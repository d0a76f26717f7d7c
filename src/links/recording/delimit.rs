//! A recording's buffer cut into frames and damaged ranges, per format, with the link's own
//! decoders. Pure: the caller owns the buffer, reads more when a cut used nothing, and names
//! what is left at the end of the file.
//!
//! Resynchronisation is the link readers' where they have one (the marker search of `ccsds-asm`
//! and transfer frames, KISS' frame ends). A bare packet stream, which a link gives up at the
//! first bad header, is resynchronised at the next run of two packets, the same evidence
//! detection asks for ([`super::detect`]): a file is worth reading past its damage.

use std::ops::Range;

use super::{DamageReason, RecordingFormat};
use crate::links::stream::whole_packet;
use crate::protocol::ccsds::{Framing, Next, ASM, MAX_PACKET};
use crate::protocol::kiss::{self, KissError, KissFrame, FEND};
use crate::protocol::transfer_frames::TransferFrameStream;

/// The longest KISS frame read, escaped: every byte of the largest packet escaped, and its type.
const KISS_MAX: usize = 2 * MAX_PACKET + 2;

/// A frame of the buffer.
pub(super) struct FrameCut {
    /// Where it starts in the buffer (its frame end, marker or length field).
    pub start: usize,
    /// Its payload, in the buffer, or in [`Cuts::unescaped`] for a KISS frame.
    pub payload: Range<usize>,
    pub unescaped: bool,
    pub earth_unix_ns: Option<u64>,
    pub kiss_port: Option<u8>,
}

/// A frame or damaged bytes of the buffer.
pub(super) enum Cut {
    Frame(FrameCut),
    Damage {
        range: Range<usize>,
        reason: DamageReason,
    },
}

/// What one pass over the buffer cut, in order.
#[derive(Default)]
pub(super) struct Cuts {
    /// The bytes used up.
    pub used: usize,
    pub cuts: Vec<Cut>,
    /// KISS data frames' bytes, unescaped.
    pub unescaped: Vec<u8>,
}

/// What a KISS recording carries from one pass to the next.
#[derive(Debug, Default)]
pub(super) struct KissTimes {
    /// A time frame's port and time, for the data frame right after it.
    time: Option<(u8, Option<u64>)>,
    /// Bytes without a frame end ran past the longest frame: skipping to the next frame end.
    lost: bool,
}

/// A unit of a packet stream at the front of a buffer: a packet, or a length-prefixed frame
/// that holds one whole packet.
pub(super) enum Unit {
    /// `end` bytes long.
    Whole {
        end: usize,
    },
    Partial,
    Bad,
}

/// The unit of `format` (bare packets or length-prefixed) at the front of `buf`.
pub(super) fn unit(format: &RecordingFormat, buf: &[u8]) -> Unit {
    let framing = match format {
        RecordingFormat::LengthPrefix(field) => Framing::LengthPrefix(*field),
        _ => Framing::Ccsds,
    };
    match framing.next(buf, MAX_PACKET) {
        Ok(Next::Packet { packet, end, .. }) => match whole_packet(&buf[packet], MAX_PACKET) {
            Ok(()) => Unit::Whole { end },
            Err(_) => Unit::Bad,
        },
        Ok(Next::More { .. }) => Unit::Partial,
        Err(_) => Unit::Bad,
    }
}

/// The frames and damage at the front of `buf`; `eof` when the file ends after it.
pub(super) fn cut(format: &RecordingFormat, buf: &[u8], eof: bool, times: &mut KissTimes) -> Cuts {
    let mut cuts = Cuts::default();
    match *format {
        RecordingFormat::Kiss => cut_kiss(buf, times, &mut cuts),
        RecordingFormat::Packets { marker: true } => cut_behind_markers(buf, &mut cuts),
        RecordingFormat::Packets { marker: false } | RecordingFormat::LengthPrefix(_) => {
            cut_units(format, buf, eof, &mut cuts)
        }
        RecordingFormat::Frames {
            length,
            marker,
            check_symbols,
            ..
        } => {
            let stream = TransferFrameStream {
                length,
                marker,
                check_symbols,
            };
            cut_frames(&stream, buf, &mut cuts)
        }
    }
    cuts
}

/// Whether bytes left at the end of a file are more than a format's fill (KISS frame ends).
pub(super) fn holds_more_than_fill(format: &RecordingFormat, rest: &[u8]) -> bool {
    match format {
        RecordingFormat::Kiss => rest.iter().any(|&b| b != FEND),
        _ => !rest.is_empty(),
    }
}

impl Cuts {
    fn frame(&mut self, start: usize, payload: Range<usize>) {
        self.cuts.push(Cut::Frame(FrameCut {
            start,
            payload,
            unescaped: false,
            earth_unix_ns: None,
            kiss_port: None,
        }));
    }

    fn damage(&mut self, range: Range<usize>, reason: DamageReason) {
        if !range.is_empty() {
            self.cuts.push(Cut::Damage { range, reason });
        }
    }
}

/// Space packets each behind the ASM: the link's marker search, bytes before a marker damaged.
fn cut_behind_markers(buf: &[u8], cuts: &mut Cuts) {
    let mut at = 0;
    loop {
        match Framing::CcsdsAsm.next(&buf[at..], MAX_PACKET) {
            Ok(Next::Packet {
                packet,
                end,
                skipped,
            }) => {
                cuts.damage(at..at + skipped, DamageReason::NoMarker);
                cuts.frame(at + skipped, at + packet.start..at + packet.end);
                at += end;
            }
            Ok(Next::More { skipped }) => {
                cuts.damage(at..at + skipped, DamageReason::NoMarker);
                at += skipped;
                break;
            }
            // The marker search passes over what follows no good marker: it never fails.
            Err(_) => break,
        }
    }
    cuts.used = at;
}

/// Bare packets or length-prefixed frames; a unit that cannot be read is damage up to the next
/// run of two units, or up to the end of the file.
fn cut_units(format: &RecordingFormat, buf: &[u8], eof: bool, cuts: &mut Cuts) {
    let framing = match format {
        RecordingFormat::LengthPrefix(field) => Framing::LengthPrefix(*field),
        _ => Framing::Ccsds,
    };
    let mut at = 0;
    loop {
        match framing.next(&buf[at..], MAX_PACKET) {
            Ok(Next::Packet { packet, end, .. }) => {
                cuts.frame(at, at + packet.start..at + packet.end);
                at += end;
            }
            Ok(Next::More { .. }) => break,
            Err(err) => {
                let skip = resync(format, &buf[at..], eof);
                cuts.damage(at..at + skip, DamageReason::NotPackets(err));
                at += skip;
            }
        }
    }
    cuts.used = at;
}

/// How many bytes at the front of `buf` to pass over to the next run of two units (all of them
/// when there is none): at least one. A unit that goes past the buffer ends the search there
/// when more bytes are to come.
fn resync(format: &RecordingFormat, buf: &[u8], eof: bool) -> usize {
    for skip in 1..buf.len() {
        match unit(format, &buf[skip..]) {
            Unit::Whole { end, .. } => match unit(format, &buf[skip + end..]) {
                Unit::Bad => continue,
                Unit::Whole { .. } | Unit::Partial => return skip,
            },
            Unit::Partial if !eof => return skip,
            Unit::Partial | Unit::Bad => continue,
        }
    }
    buf.len()
}

/// Transfer frames, behind markers or back to back: the link's own search; bytes before a
/// marker damaged.
fn cut_frames(stream: &TransferFrameStream, buf: &[u8], cuts: &mut Cuts) {
    let found = stream.delimit(buf);
    let prefix = if stream.marker { ASM.len() } else { 0 };
    let mut at = 0;
    for frame in found.frames {
        let start = frame.start - prefix;
        cuts.damage(at..start, DamageReason::NoMarker);
        at = frame.end + stream.check_symbols;
        cuts.frame(start, frame);
    }
    cuts.damage(at..found.end, DamageReason::NoMarker);
    cuts.used = found.end;
}

/// KISS frames: data frames unescaped, each with the time of a time frame of its port right
/// before it; a bad frame damaged, and bytes without a frame end passed over to the next one.
fn cut_kiss(buf: &[u8], times: &mut KissTimes, cuts: &mut Cuts) {
    let mut at = 0;
    while at < buf.len() {
        if times.lost {
            let end = memchr::memchr(FEND, &buf[at..]).map_or(buf.len(), |i| at + i);
            let reason = DamageReason::Kiss(KissError::Unterminated(KISS_MAX));
            cuts.damage(at..end, reason);
            times.lost = end == buf.len();
            at = end;
            continue;
        }
        match kiss::next_frame(&buf[at..], KISS_MAX, &mut cuts.unescaped) {
            Ok(Some((end, frame))) => {
                kiss_frame(at, end, frame, times, cuts);
                at += end;
            }
            Ok(None) => break,
            Err(_) => times.lost = true,
        }
    }
    cuts.used = at;
}

/// One KISS frame at `at`, `end` bytes long.
fn kiss_frame(at: usize, end: usize, frame: KissFrame, times: &mut KissTimes, cuts: &mut Cuts) {
    let time = times.time.take();
    match frame {
        KissFrame::Data { port, len } => {
            let out = cuts.unescaped.len();
            let earth_unix_ns = time.filter(|(of, _)| *of == port).and_then(|(_, t)| t);
            cuts.cuts.push(Cut::Frame(FrameCut {
                start: at,
                payload: out - len..out,
                unescaped: true,
                earth_unix_ns,
                kiss_port: Some(port),
            }));
        }
        // Past the year 2554 nanoseconds do not hold it: the next frame goes without.
        KissFrame::Time { port, unix_ms } => {
            times.time = Some((port, unix_ms.checked_mul(1_000_000)));
        }
        KissFrame::Command(_) => {}
        KissFrame::Fill => times.time = time,
        KissFrame::Bad(err) => cuts.damage(at..at + end, DamageReason::Kiss(err)),
    }
}
