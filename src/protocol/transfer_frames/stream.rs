//! Where frames lie on a byte stream or in a datagram: behind the attached sync marker or back
//! to back, each perhaps followed by Reed-Solomon check symbols.

use std::ops::Range;

use crate::protocol::ccsds::{find_marker, ASM};

/// How frames lie on a byte stream: each after the attached sync marker, or back to back, and
/// each perhaps followed by Reed-Solomon check symbols the station left in (passed over).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransferFrameStream {
    /// The frame's length, marker excluded.
    pub length: usize,
    pub marker: bool,
    /// Bytes after each frame that are not the frame's: RS check symbols not stripped.
    pub check_symbols: usize,
}

/// The frames at the front of a stream's buffer.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TransferFrameCuts {
    /// The bytes used up: frames, and bytes skipped looking for a marker.
    pub end: usize,
    /// Where each frame lies, marker excluded.
    pub frames: Vec<Range<usize>>,
    /// Bytes passed over before markers.
    pub skipped: usize,
}

impl TransferFrameStream {
    /// The frame a datagram holds: after the marker (`None` without one, where one is
    /// expected), without the check symbols. Its length is the frame checks' to judge.
    pub fn datagram<'a>(&self, datagram: &'a [u8]) -> Option<&'a [u8]> {
        let frame = match self.marker {
            true => datagram.strip_prefix(&ASM[..])?,
            false => datagram,
        };
        let end = frame.len().saturating_sub(self.check_symbols);
        Some(&frame[..end])
    }

    /// Every whole frame at the front of `buf`. With markers, bytes before a marker are
    /// skipped; a frame is the `length` bytes after its marker, whatever they hold (the frame
    /// checks judge it), and the search for the next marker starts after it and its check
    /// symbols.
    pub fn delimit(&self, buf: &[u8]) -> TransferFrameCuts {
        let mut cuts = TransferFrameCuts::default();
        if self.length == 0 {
            return cuts;
        }
        let prefix = if self.marker { ASM.len() } else { 0 };
        loop {
            let rest = &buf[cuts.end..];
            let at = match self.marker {
                false => 0,
                true => match find_marker(rest) {
                    Some(at) => at,
                    None => {
                        // A marker may begin in the last three bytes.
                        let skip = rest.len().saturating_sub(ASM.len() - 1);
                        cuts.skipped += skip;
                        cuts.end += skip;
                        return cuts;
                    }
                },
            };
            cuts.skipped += at;
            cuts.end += at;
            let start = cuts.end + prefix;
            if buf.len() < start + self.length + self.check_symbols {
                return cuts;
            }
            cuts.frames.push(start..start + self.length);
            cuts.end = start + self.length + self.check_symbols;
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::any;
    use proptest::strategy::Strategy;

    use super::*;
    use crate::protocol::pieces;

    #[test]
    fn frames_are_found_after_markers_and_back_to_back() {
        let stream = TransferFrameStream {
            length: 5,
            marker: true,
            check_symbols: 0,
        };
        let mut wire = vec![0x55, 0x1A];
        wire.extend_from_slice(&ASM);
        wire.extend_from_slice(&[1, 2, 3, 4, 5]);
        wire.extend_from_slice(&ASM);
        wire.extend_from_slice(&[6, 7]);
        let cuts = stream.delimit(&wire);
        assert_eq!(cuts.frames.first(), Some(&(6..11)));
        assert_eq!(cuts.frames.len(), 1);
        assert_eq!((cuts.end, cuts.skipped), (11, 2));
        let cuts = stream.delimit(&[9, 9, 9, 9, 0x1A, 0xCF]);
        assert_eq!((cuts.end, cuts.skipped, cuts.frames.len()), (3, 3, 0));
        let plain = TransferFrameStream {
            length: 4,
            marker: false,
            check_symbols: 0,
        };
        let cuts = plain.delimit(&[0; 10]);
        assert_eq!((cuts.frames, cuts.end), (vec![0..4, 4..8], 8));
    }

    /// RS check symbols the station left after each frame are passed over, on a stream and in
    /// a datagram; a datagram without the marker expected holds no frame.
    #[test]
    fn check_symbols_after_frames_are_passed_over() {
        let stream = TransferFrameStream {
            length: 3,
            marker: true,
            check_symbols: 2,
        };
        let mut wire = ASM.to_vec();
        wire.extend_from_slice(&[1, 2, 3, 0xC1, 0xC2]);
        wire.extend_from_slice(&ASM);
        wire.extend_from_slice(&[4, 5, 6, 0xC3]);
        let cuts = stream.delimit(&wire);
        let first = cuts.frames.first().cloned();
        assert_eq!((first, cuts.frames.len(), cuts.end), (Some(4..7), 1, 9));
        assert_eq!(stream.datagram(&wire[..9]), Some(&[1, 2, 3][..]));
        assert_eq!(stream.datagram(&wire[4..9]), None);
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(256))]

        /// Frames behind markers, with noise between them, read in any pieces, are the frames
        /// sent, the noise counted.
        #[test]
        fn frames_behind_markers_are_found_across_any_reads(
            frames in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>().prop_filter("no marker", |b| *b != ASM[0]), 0..8),
                 proptest::collection::vec(any::<u8>(), 12)),
                0..10,
            ),
            sizes in pieces::read_sizes(),
        ) {
            let stream = TransferFrameStream { length: 12, marker: true, check_symbols: 0 };
            let mut wire = Vec::new();
            for (noise, frame) in &frames {
                wire.extend_from_slice(noise);
                wire.extend_from_slice(&ASM);
                wire.extend_from_slice(frame);
            }
            let (mut buf, mut read, mut skipped) = (Vec::new(), Vec::new(), 0);
            for piece in pieces::cut(&wire, &sizes) {
                buf.extend_from_slice(piece);
                let cuts = stream.delimit(&buf);
                read.extend(cuts.frames.iter().map(|at| buf[at.clone()].to_vec()));
                skipped += cuts.skipped;
                buf.drain(..cuts.end);
            }
            let sent: Vec<_> = frames.iter().map(|(_, f)| f.clone()).collect();
            let noise: usize = frames.iter().map(|(n, _)| n.len()).sum();
            proptest::prop_assert_eq!(read, sent);
            proptest::prop_assert_eq!((buf.len(), skipped), (0, noise));
        }
    }
}
