//! KISS framing (the TNC protocol of Chepponis and Karn, 1987) as TNCs, Direwolf and
//! gr-satellites' KISS servers send it: frames between FEND bytes, FEND and FESC escaped inside,
//! a type byte first (the port in its high nibble, the command in its low one; 0 is data).
//!
//! Escapes make a frame's bytes differ from the packet's, so decoding copies each data frame's
//! unescaped bytes into the caller's buffer; the link keeps one such buffer per read.

/// Frame end: delimits frames.
pub const FEND: u8 = 0xC0;
/// Frame escape.
pub const FESC: u8 = 0xDB;
/// After FESC: a FEND in the data.
pub const TFEND: u8 = 0xDC;
/// After FESC: a FESC in the data.
pub const TFESC: u8 = 0xDD;

/// Why a KISS frame cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KissError {
    #[error("a broken escape: FESC followed by 0x{0:02X}")]
    BadEscape(u8),
    #[error("no frame end within {0} bytes")]
    Unterminated(usize),
}

/// What the front of a stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KissFrame {
    /// A data frame of `port`, whose unescaped bytes were appended to the output buffer.
    Data { port: u8, len: usize },
    /// A frame of another command (TXDELAY, persistence, ...): a receiver has nothing to keep.
    Command(u8),
    /// A frame that cannot be read; the stream goes on after it.
    Bad(KissError),
    /// Frame ends with no frame after them yet (a TNC's idle fill, or a frame still to come):
    /// used up, so that a stream of FENDs alone is not kept without end.
    Fill,
}

/// Takes the first frame of `buf`: how many bytes it used up and what it was, or `None` when the
/// frame is not complete yet and no FEND is in front of it. A frame longer than `max` (escaped) ends the stream with
/// [`KissError::Unterminated`], as the bytes of a stream without FENDs cannot be read.
pub fn next_frame(
    buf: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<Option<(usize, KissFrame)>, KissError> {
    let start = buf.iter().position(|&b| b != FEND).unwrap_or(buf.len());
    let Some(len) = buf[start..].iter().position(|&b| b == FEND) else {
        return match buf.len() - start > max {
            true => Err(KissError::Unterminated(max)),
            false if start > 0 => Ok(Some((start, KissFrame::Fill))),
            false => Ok(None),
        };
    };
    let end = start + len + 1;
    let body = &buf[start..start + len];
    let Some((&kind, data)) = body.split_first() else {
        return Ok(None);
    };
    if kind & 0x0F != 0 {
        return Ok(Some((end, KissFrame::Command(kind & 0x0F))));
    }
    let before = out.len();
    let mut bytes = data.iter();
    while let Some(&b) = bytes.next() {
        let byte = match b {
            FESC => match bytes.next() {
                Some(&TFEND) => FEND,
                Some(&TFESC) => FESC,
                other => {
                    out.truncate(before);
                    let bad = other.copied().unwrap_or(FEND);
                    return Ok(Some((end, KissFrame::Bad(KissError::BadEscape(bad)))));
                }
            },
            b => b,
        };
        out.push(byte);
    }
    let port = kind >> 4;
    Ok(Some((
        end,
        KissFrame::Data {
            port,
            len: out.len() - before,
        },
    )))
}

/// Appends `data` as one data frame of `port` (0 to 15).
pub fn encode(port: u8, data: &[u8], out: &mut Vec<u8>) {
    out.push(FEND);
    out.push((port & 0x0F) << 4);
    for &b in data {
        match b {
            FEND => out.extend_from_slice(&[FESC, TFEND]),
            FESC => out.extend_from_slice(&[FESC, TFESC]),
            b => out.push(b),
        }
    }
    out.push(FEND);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaped_bytes_round_trip() {
        let data = [1, FEND, 2, FESC, 3];
        let mut wire = Vec::new();
        encode(0, &data, &mut wire);
        assert_eq!(wire, [FEND, 0, 1, FESC, TFEND, 2, FESC, TFESC, 3, FEND]);
        let mut out = Vec::new();
        let taken = next_frame(&wire, 100, &mut out).unwrap();
        assert_eq!(
            taken,
            Some((wire.len(), KissFrame::Data { port: 0, len: 5 }))
        );
        assert_eq!(out, data);
        assert_eq!(
            next_frame(&wire[..5], 100, &mut out),
            Ok(Some((1, KissFrame::Fill)))
        );
        assert_eq!(next_frame(&wire[1..5], 100, &mut out), Ok(None));
    }

    /// Found by fuzzing (fuzz/regressions/link_stream/fends-only): a stream of FENDs alone was
    /// never used up, so a link kept every byte of a TNC's idle fill.
    #[test]
    fn idle_fends_are_used_up_not_kept() {
        let mut out = Vec::new();
        assert_eq!(
            next_frame(&[FEND; 64], 10, &mut out),
            Ok(Some((64, KissFrame::Fill)))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn a_broken_escape_costs_only_its_frame() {
        let mut wire = vec![FEND, 0x00, 1, FESC, 0x01, 2, FEND];
        encode(0, b"ok", &mut wire);
        let mut out = Vec::new();
        let (end, frame) = next_frame(&wire, 100, &mut out).unwrap().unwrap();
        assert_eq!(frame, KissFrame::Bad(KissError::BadEscape(1)));
        assert!(out.is_empty());
        let (_, frame) = next_frame(&wire[end..], 100, &mut out).unwrap().unwrap();
        assert_eq!(frame, KissFrame::Data { port: 0, len: 2 });
        assert_eq!(out, b"ok");
    }

    #[test]
    fn commands_are_passed_over_and_a_stream_without_ends_is_refused() {
        let mut out = Vec::new();
        let wire = [FEND, 0x01, 50, FEND];
        assert_eq!(
            next_frame(&wire, 100, &mut out),
            Ok(Some((4, KissFrame::Command(1))))
        );
        assert_eq!(
            next_frame(&[0; 20], 10, &mut out),
            Err(KissError::Unterminated(10))
        );
    }
}
