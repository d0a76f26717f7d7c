//! Telling a recording's format from its first bytes, where the bytes say it: a KISS frame end,
//! a sync marker, or a run of packets whose lengths lead from one header to the next. Transfer
//! frames without the marker say nothing (any bytes are a frame), so they are only ever named.
//!
//! A run, not one header: three bits of version 0 are true of one random byte in eight, but a
//! length that lands exactly on the next header of version 0, again and again, is not chance.

use crate::protocol::ccsds::{Framing, LengthField, Next, ASM, MAX_PACKET};
use crate::protocol::kiss::FEND;
use crate::protocol::transfer_frames::{TransferFrameKind, MAX_TRANSFER_FRAME};

use super::delimit::{unit, Unit};
use super::{Naming, RecordingFormat};

/// How many packets in a row make a run, when the file holds that many.
const RUN: usize = 4;

/// The length prefix detection knows: a 4-byte length of the packet in front (the first example
/// of `docs/ground-segment.md`'s `length-prefix`).
const LENGTH_OF_PACKET: LengthField = LengthField {
    offset: 0,
    size: 4,
    adjustment: 4,
    strip: 4,
};

/// Why the bytes do not tell the format.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Undetected {
    #[error("its first bytes ({0}) are no KISS frame end (C0), no sync marker (1A CF FC 1D) and no run of space packets, bare or behind a 4-byte length")]
    Unrecognised(String),
    #[error("a sync marker followed by transfer frame version {0}: neither TM (0) nor AOS (1)")]
    FrameVersion(u8),
    #[error("transfer frames behind sync markers, but the markers are not evenly spaced in the first bytes, so their length cannot be told")]
    Spacing,
}

/// The format `head` (the file's first bytes; all of it when `whole`) shows. A frame length
/// `naming` gives is transfer frames' length instead of the markers' spacing.
pub(super) fn detect(
    head: &[u8],
    whole: bool,
    naming: &Naming,
) -> Result<RecordingFormat, Undetected> {
    if head.first() == Some(&FEND) {
        return Ok(RecordingFormat::Kiss);
    }
    if head.starts_with(&ASM) {
        return behind_markers(head, whole, naming);
    }
    // Lengths first: a length that says its packet's length plus four, again and again, is the
    // stronger evidence; a packet's data of small numbers reads as headers of version 0 too.
    let prefixed = RecordingFormat::LengthPrefix(LENGTH_OF_PACKET);
    if runs(head, &prefixed) {
        return Ok(prefixed);
    }
    if runs(head, &RecordingFormat::Packets { marker: false }) {
        return Ok(RecordingFormat::Packets { marker: false });
    }
    let first: Vec<String> = head.iter().take(8).map(|b| format!("{b:02X}")).collect();
    Err(Undetected::Unrecognised(first.join(" ")))
}

/// Space packets behind markers when the first packet's length leads to the next marker (or the
/// end of the file); otherwise transfer frames, TM or AOS by the version in their first two bits.
fn behind_markers(
    head: &[u8],
    whole: bool,
    naming: &Naming,
) -> Result<RecordingFormat, Undetected> {
    let packets = RecordingFormat::Packets { marker: true };
    if let Ok(Next::Packet { end, .. }) = Framing::CcsdsAsm.next(head, MAX_PACKET) {
        if head[end..].starts_with(&ASM) || (whole && end == head.len()) {
            return Ok(packets);
        }
    }
    let version = head.get(ASM.len()).map_or(0, |b| b >> 6);
    let kind = match version {
        0 => TransferFrameKind::Tm,
        1 => TransferFrameKind::Aos,
        other => return Err(Undetected::FrameVersion(other)),
    };
    let length = naming.frame_length_in(head).ok_or(Undetected::Spacing)?;
    Ok(RecordingFormat::Frames {
        kind,
        length,
        marker: true,
        check_symbols: naming.check_symbols,
    })
}

/// The frames' length told by markers: the distance from the first marker (at the start) to the
/// second, confirmed by a third at the same distance or by the end of `head`.
pub(super) fn marker_spacing(head: &[u8]) -> Option<usize> {
    let reach = (2 * ASM.len() + MAX_TRANSFER_FRAME).min(head.len());
    let after = head.get(ASM.len()..reach)?;
    let length = after.windows(ASM.len()).position(|w| w == ASM)?;
    let third = 2 * (ASM.len() + length);
    let confirmed = head.len() <= third || head[third..].starts_with(&ASM);
    (length > 0 && confirmed).then_some(length)
}

/// Whether `head` starts with a run of `format`'s units (whole packets, or frames holding one):
/// [`RUN`] of them, or as many as lie in `head` and at least one, up to its end or to a unit that
/// goes past it (the file ends within it, or the bytes read to tell do, which hold a packet of
/// the largest size).
fn runs(head: &[u8], format: &RecordingFormat) -> bool {
    let (mut at, mut found) = (0, 0);
    while found < RUN && at < head.len() {
        match unit(format, &head[at..]) {
            Unit::Whole { end, .. } => {
                at += end;
                found += 1;
            }
            // The file, or the bytes read to tell, end within it.
            Unit::Partial => return found > 0,
            Unit::Bad => return false,
        }
    }
    found > 0
}
