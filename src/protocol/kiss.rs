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
pub(crate) const TFEND: u8 = 0xDC;
/// After FESC: a FESC in the data.
pub(crate) const TFESC: u8 = 0xDD;

/// Why a KISS frame cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KissError {
    #[error("a broken escape: FESC followed by 0x{0:02X}")]
    BadEscape(u8),
    #[error("no frame end within {0} bytes")]
    Unterminated(usize),
    #[error("a KISS time frame (command 09) of {0} bytes, not 8")]
    TimeLength(usize),
}

/// What the front of a stream holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KissFrame {
    /// A data frame of `port`, whose unescaped bytes were appended to the output buffer.
    Data { port: u8, len: usize },
    /// A time frame of `port` (command `09`, as gr-satellites' KISS server sends before each
    /// data frame): the next data frame's earth-receive time, in milliseconds since the Unix
    /// epoch.
    Time { port: u8, unix_ms: u64 },
    /// A frame of another command (TXDELAY, persistence, ...): a receiver has nothing to keep.
    Command(u8),
    /// A frame that cannot be read; the stream goes on after it.
    Bad(KissError),
    /// Frame ends with no frame after them yet (a TNC's idle fill, or a frame still to come):
    /// used up, so that a stream of FENDs alone is not kept without end.
    Fill,
}

/// The command of a time frame.
pub const TIME: u8 = 0x09;

/// Takes the first frame of `buf`: how many bytes it used up and what it was, or `None` when the
/// frame is not complete yet and no FEND is in front of it. A frame longer than `max` (escaped)
/// ends the stream with [`KissError::Unterminated`], as the bytes of a stream without FENDs cannot
/// be read.
pub fn next_frame(
    buf: &[u8],
    max: usize,
    out: &mut Vec<u8>,
) -> Result<Option<(usize, KissFrame)>, KissError> {
    let start = buf.iter().position(|&b| b != FEND).unwrap_or(buf.len());
    let Some(len) = memchr::memchr(FEND, &buf[start..]) else {
        return match buf.len() - start > max {
            true => Err(KissError::Unterminated(max)),
            false if start > 0 => Ok(Some((start, KissFrame::Fill))),
            false => Ok(None),
        };
    };
    let end = start + len + 1;
    // The type byte is escaped like the data: a data frame of port 12 starts with FEND's byte.
    let mut bytes = buf[start..start + len].iter();
    let kind = match unescape(&mut bytes) {
        None => return Ok(None),
        Some(Err(bad)) => return Ok(Some((end, KissFrame::Bad(KissError::BadEscape(bad))))),
        Some(Ok(kind)) => kind,
    };
    let port = kind >> 4;
    match kind & 0x0F {
        0 => {}
        TIME => return Ok(Some((end, time_frame(port, &mut bytes)))),
        command => return Ok(Some((end, KissFrame::Command(command)))),
    }
    // Runs between escapes are copied whole: a byte at a time this loop was most of a KISS
    // link's CPU (docs/bench/links.md).
    let before = out.len();
    let mut rest = bytes.as_slice();
    while let Some(at) = memchr::memchr(FESC, rest) {
        out.extend_from_slice(&rest[..at]);
        match rest.get(at + 1) {
            Some(&TFEND) => out.push(FEND),
            Some(&TFESC) => out.push(FESC),
            other => {
                out.truncate(before);
                let bad = other.copied().unwrap_or(FEND);
                return Ok(Some((end, KissFrame::Bad(KissError::BadEscape(bad)))));
            }
        }
        rest = &rest[at + 2..];
    }
    out.extend_from_slice(rest);
    Ok(Some((
        end,
        KissFrame::Data {
            port,
            len: out.len() - before,
        },
    )))
}

/// A time frame's body: 8 bytes, a big-endian count of milliseconds.
fn time_frame(port: u8, bytes: &mut std::slice::Iter<'_, u8>) -> KissFrame {
    let (mut time, mut len) = ([0; 8], 0);
    while let Some(byte) = unescape(bytes) {
        match byte {
            Ok(byte) => {
                if let Some(slot) = time.get_mut(len) {
                    *slot = byte;
                }
                len += 1;
            }
            Err(bad) => return KissFrame::Bad(KissError::BadEscape(bad)),
        }
    }
    match len {
        8 => KissFrame::Time {
            port,
            unix_ms: u64::from_be_bytes(time),
        },
        len => KissFrame::Bad(KissError::TimeLength(len)),
    }
}

/// The next byte of a frame's body, unescaped; `Err` with the byte after a FESC that is not an
/// escape (FEND when the body ends there).
fn unescape(bytes: &mut std::slice::Iter<'_, u8>) -> Option<Result<u8, u8>> {
    Some(match *bytes.next()? {
        FESC => match bytes.next() {
            Some(&TFEND) => Ok(FEND),
            Some(&TFESC) => Ok(FESC),
            other => Err(other.copied().unwrap_or(FEND)),
        },
        byte => Ok(byte),
    })
}

/// Appends `data` as one data frame of `port` (0 to 15).
pub fn encode(port: u8, data: &[u8], out: &mut Vec<u8>) {
    out.push(FEND);
    for &b in std::iter::once(&((port & 0x0F) << 4)).chain(data) {
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
    use proptest::prelude::any;
    use proptest::strategy::Strategy;

    use super::*;
    use crate::protocol::pieces;

    /// gr-satellites' KISS server sends each data frame's time first: command 09 of port 0,
    /// 8 bytes of big-endian Unix milliseconds, escaped like data.
    #[test]
    fn time_frames_give_their_milliseconds() {
        let time: u64 = 0x0000_0193_C0DB_0001;
        let mut wire = Vec::new();
        encode(0, &time.to_be_bytes(), &mut wire);
        wire[1] = TIME;
        let mut out = Vec::new();
        let taken = next_frame(&wire, 100, &mut out).unwrap();
        let frame = KissFrame::Time {
            port: 0,
            unix_ms: time,
        };
        assert_eq!(taken, Some((wire.len(), frame)));
        assert!(out.is_empty(), "a time frame's bytes are not data");
        // Port 3's, and ones of the wrong length.
        let three = [FEND, 0x39, 0, 0, 0, 0, 0, 0, 0, 7, FEND];
        let taken = next_frame(&three, 100, &mut out).unwrap();
        let frame = KissFrame::Time {
            port: 3,
            unix_ms: 7,
        };
        assert_eq!(taken, Some((three.len(), frame)));
        for len in [0, 7, 9] {
            let mut wire = vec![FEND, TIME];
            wire.extend(std::iter::repeat_n(1, len));
            wire.push(FEND);
            let taken = next_frame(&wire, 100, &mut out).unwrap();
            let bad = KissFrame::Bad(KissError::TimeLength(len));
            assert_eq!(taken, Some((wire.len(), bad)));
        }
    }

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

    /// Found by `frames_decode_as_sent_across_any_reads`: port 12's type byte is FEND's, so it
    /// is escaped like any byte of the frame, and read back unescaped.
    #[test]
    fn a_data_frame_of_port_12_escapes_its_type_byte() {
        let mut wire = Vec::new();
        encode(12, b"ok", &mut wire);
        assert_eq!(wire, [FEND, FESC, TFEND, b'o', b'k', FEND]);
        let mut out = Vec::new();
        let taken = next_frame(&wire, 100, &mut out).unwrap();
        assert_eq!(taken, Some((6, KissFrame::Data { port: 12, len: 2 })));
        assert_eq!(out, b"ok");
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

    /// Bytes of which many are the ones escaping exists for.
    fn any_data() -> impl Strategy<Value = Vec<u8>> {
        let byte = proptest::prop_oneof![
            proptest::sample::select(vec![FEND, FESC, TFEND, TFESC]),
            any::<u8>(),
        ];
        proptest::collection::vec(byte, 0..48)
    }

    /// A data frame of a port, or a command frame (`None` for its data).
    fn any_frame() -> impl Strategy<Value = (u8, Option<Vec<u8>>)> {
        let data = (0u8..16, any_data()).prop_map(|(port, data)| (port, Some(data)));
        // Commands other than time frames, whose body is checked.
        let commands =
            proptest::sample::select(&[1u8, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15][..]);
        let command = (0u8..16, commands).prop_map(|(port, command)| ((port << 4) | command, None));
        proptest::prop_oneof![3 => data, 1 => command]
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(128))]

        /// Any bytes escape into a frame with no frame end inside, and unescape to themselves.
        #[test]
        fn any_bytes_round_trip_through_escapes(port in 0u8..16, data in any_data()) {
            let mut wire = Vec::new();
            encode(port, &data, &mut wire);
            proptest::prop_assert!(!wire[1..wire.len() - 1].contains(&FEND));
            let mut out = Vec::new();
            let taken = next_frame(&wire, wire.len(), &mut out);
            let len = data.len();
            proptest::prop_assert_eq!(taken, Ok(Some((wire.len(), KissFrame::Data { port, len }))));
            proptest::prop_assert_eq!(out, data);
        }

        /// Data and command frames, read in any pieces, give each data frame's bytes and port
        /// in order and pass over the commands, as a link's reads take them.
        #[test]
        fn frames_decode_as_sent_across_any_reads(
            frames in proptest::collection::vec(any_frame(), 0..12),
            sizes in pieces::read_sizes(),
        ) {
            let mut wire = Vec::new();
            for (port, data) in &frames {
                match data {
                    Some(data) => encode(*port, data, &mut wire),
                    // A command's type byte escaped as any (port 13's command 11 is FESC's).
                    None if *port == FESC => wire.extend_from_slice(&[FEND, FESC, TFESC, 0x20, FEND]),
                    None => wire.extend_from_slice(&[FEND, *port, 0x20, FEND]),
                }
            }
            let (mut buf, mut out, mut read) = (Vec::new(), Vec::new(), Vec::new());
            for piece in pieces::cut(&wire, &sizes) {
                buf.extend_from_slice(piece);
                let mut at = 0;
                while let Some((end, frame)) = next_frame(&buf[at..], 2 * 48 + 2, &mut out).unwrap() {
                    at += end;
                    match frame {
                        KissFrame::Data { port, len } => {
                            read.push((port, Some(out[out.len() - len..].to_vec())))
                        }
                        KissFrame::Command(command) => read.push((command, None)),
                        KissFrame::Bad(err) => proptest::prop_assert!(false, "{err}"),
                        KissFrame::Time { .. } => proptest::prop_assert!(false, "a time frame"),
                        KissFrame::Fill => {}
                    }
                }
                buf.drain(..at);
            }
            let sent: Vec<_> = frames
                .into_iter()
                .map(|(port, data)| match data {
                    Some(data) => (port, Some(data)),
                    None => (port & 0x0F, None),
                })
                .collect();
            proptest::prop_assert_eq!(read, sent);
            proptest::prop_assert!(buf.iter().all(|&b| b == FEND), "only frame ends left");
        }

        /// Any bytes give frames or a refusal of a stream without frame ends, never a panic,
        /// and a data frame's bytes are all appended to the output.
        #[test]
        fn any_bytes_give_frames_or_a_refusal(bytes in any_data(), max in 1usize..64) {
            let (mut at, mut out) = (0, Vec::new());
            while let Ok(Some((end, frame))) = next_frame(&bytes[at..], max, &mut out) {
                proptest::prop_assert!(end > 0 && at + end <= bytes.len());
                at += end;
                if let KissFrame::Data { len, .. } = frame {
                    proptest::prop_assert!(len <= out.len());
                }
            }
        }
    }
}
