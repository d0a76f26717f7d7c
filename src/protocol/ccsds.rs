//! CCSDS Space Packets (CCSDS 133.0-B-2) as ground stations send them over a byte stream, and the
//! three ways a stream delimits them: back to back (the length is in the header), after the
//! attached sync marker `1A CF FC 1D`, or behind a generic length field (Yamcs'
//! `GenericPacketInputStream`). The ground-segment links decode with these, the TM server and
//! `uplink-sim`'s station mode encode with them. `docs/ground-segment.md` is the spec.
//!
//! Decoding never copies: [`Framing::next`] returns where the next packet lies in the buffer, so
//! the link keeps packets as slices of its read, as the ingest protocol's connections do.

use std::ops::Range;

/// The primary header's size.
pub const PRIMARY_HEADER: usize = 6;

/// The largest packet the header can describe: a data field of 65,536 bytes.
pub const MAX_PACKET: usize = PRIMARY_HEADER + 65_536;

/// The attached sync marker (CCSDS 131.0-B), COSMOS' documented CCSDS example.
pub const ASM: [u8; 4] = [0x1A, 0xCF, 0xFC, 0x1D];

/// The primary header of a space packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrimaryHeader {
    /// The packet version number (3 bits); 0 is the only one defined.
    pub version: u8,
    /// The packet type bit: telecommand (1) or telemetry (0).
    pub telecommand: bool,
    pub secondary_header: bool,
    /// The application process identifier (11 bits).
    pub apid: u16,
    /// The sequence flags (2 bits): 3 for an unsegmented packet.
    pub sequence_flags: u8,
    /// The packet sequence count (14 bits), per APID, wrapping at 16,384.
    pub sequence_count: u16,
    /// The packet data length: the data field's length minus one.
    pub data_length: u16,
}

/// The sequence count's modulus.
pub(crate) const SEQUENCE_COUNT_MODULUS: u32 = 1 << 14;

/// The largest APID (11 bits); 2047 is the idle packet's.
pub(crate) const MAX_APID: u16 = 0x7FF;

impl PrimaryHeader {
    /// Reads the header at the start of `bytes`; `None` when fewer than six bytes are there.
    pub fn parse(bytes: &[u8]) -> Option<PrimaryHeader> {
        let h: &[u8; PRIMARY_HEADER] = bytes.get(..PRIMARY_HEADER)?.try_into().ok()?;
        let word = u16::from_be_bytes([h[0], h[1]]);
        let sequence = u16::from_be_bytes([h[2], h[3]]);
        Some(PrimaryHeader {
            version: h[0] >> 5,
            telecommand: word & 0x1000 != 0,
            secondary_header: word & 0x0800 != 0,
            apid: word & MAX_APID,
            sequence_flags: (sequence >> 14) as u8,
            sequence_count: sequence & 0x3FFF,
            data_length: u16::from_be_bytes([h[4], h[5]]),
        })
    }

    /// The whole packet's length, header included.
    pub fn packet_len(&self) -> usize {
        self.data_length as usize + PRIMARY_HEADER + 1
    }

    /// The header's six bytes.
    pub fn encode(&self) -> [u8; PRIMARY_HEADER] {
        let word = (u16::from(self.version & 0x7) << 13)
            | (u16::from(self.telecommand) << 12)
            | (u16::from(self.secondary_header) << 11)
            | (self.apid & MAX_APID);
        let sequence =
            (u16::from(self.sequence_flags & 0x3) << 14) | (self.sequence_count & 0x3FFF);
        let [a, b] = word.to_be_bytes();
        let [c, d] = sequence.to_be_bytes();
        let [e, f] = self.data_length.to_be_bytes();
        [a, b, c, d, e, f]
    }

    /// An unsegmented telemetry packet's header for `data_len` bytes of data (1 to 65,536).
    pub fn telemetry(apid: u16, sequence_count: u16, data_len: usize) -> PrimaryHeader {
        PrimaryHeader {
            version: 0,
            telecommand: false,
            secondary_header: false,
            apid: apid & MAX_APID,
            sequence_flags: 3,
            sequence_count: sequence_count & 0x3FFF,
            data_length: data_len.clamp(1, 65_536).saturating_sub(1) as u16,
        }
    }
}

/// Why a stream's next packet cannot be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    #[error("packet version {0} (only version 0, CCSDS 133.0-B, is defined)")]
    Version(u8),
    #[error("a packet of {length} bytes, above the link's max_packet_bytes of {max}")]
    TooLong { length: usize, max: usize },
    #[error("a packet of {length} bytes, below the {least} its framing needs")]
    TooShort { length: usize, least: usize },
    #[error("{declared} bytes declared by the header, {carried} carried")]
    LengthMismatch { declared: usize, carried: usize },
}

/// How packets are delimited on a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// Back to back: the header's length field delimits them (Yamcs' `CcsdsPacketInputStream`).
    Ccsds,
    /// Each packet after the attached sync marker; bytes before a marker with a valid header
    /// behind it are skipped.
    CcsdsAsm,
    /// Behind a length field (Yamcs' `GenericPacketInputStream`): the field of `size` bytes at
    /// `offset`, big-endian, plus `adjustment`, is the frame's whole length from its first byte;
    /// the packet is the frame without its first `strip` bytes.
    LengthPrefix(LengthField),
}

/// A generic length field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LengthField {
    pub offset: usize,
    /// 1, 2, 3 or 4 bytes.
    pub size: usize,
    pub adjustment: i64,
    pub strip: usize,
}

/// The next packet of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// A packet at `packet`; the stream's first `end` bytes are used up. `skipped` bytes before
    /// it were not a packet (a lost sync marker).
    Packet {
        packet: Range<usize>,
        end: usize,
        skipped: usize,
    },
    /// More bytes are needed; the first `skipped` can be dropped already (no marker starts there).
    More { skipped: usize },
}

impl Framing {
    /// Where the next packet at the front of `buf` lies. An error means the stream cannot be
    /// read any further: the connection is closed.
    pub fn next(&self, buf: &[u8], max: usize) -> Result<Next, PacketError> {
        match *self {
            Framing::Ccsds => Ok(match packet_at(buf, 0, max)? {
                Some(packet) => Next::Packet {
                    end: packet.end,
                    packet,
                    skipped: 0,
                },
                None => Next::More { skipped: 0 },
            }),
            Framing::CcsdsAsm => Ok(after_marker(buf, max)),
            Framing::LengthPrefix(field) => field.next(buf, max),
        }
    }
}

/// The packets a link's read takes off the front of its buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delimited {
    /// The bytes used up: the packets and the bytes skipped before and between them.
    pub end: usize,
    /// Where each packet lies in the buffer.
    pub packets: Vec<Range<usize>>,
    /// Why the stream cannot be read past `end`, if it cannot.
    pub failure: Option<PacketError>,
}

impl Framing {
    /// Every complete packet at the front of `buf`, in one pass, up to a partial one or
    /// unreadable bytes: what a link takes out of its read buffer. `skipped` is told of each run
    /// of bytes passed over before a marker.
    pub fn delimit(&self, buf: &[u8], max: usize, mut skipped: impl FnMut(usize)) -> Delimited {
        let (mut end, mut packets) = (0, Vec::new());
        loop {
            match self.next(&buf[end..], max) {
                Ok(Next::Packet {
                    packet,
                    end: used,
                    skipped: passed,
                }) => {
                    skipped(passed);
                    packets.push(end + packet.start..end + packet.end);
                    end += used;
                }
                Ok(Next::More { skipped: passed }) => {
                    skipped(passed);
                    end += passed;
                    let failure = None;
                    return Delimited {
                        end,
                        packets,
                        failure,
                    };
                }
                Err(err) => {
                    let failure = Some(err);
                    return Delimited {
                        end,
                        packets,
                        failure,
                    };
                }
            }
        }
    }
}

/// The packet starting at `start`, checked, if it is all in `buf`.
fn packet_at(buf: &[u8], start: usize, max: usize) -> Result<Option<Range<usize>>, PacketError> {
    let Some(header) = buf.get(start..).and_then(PrimaryHeader::parse) else {
        return Ok(None);
    };
    if header.version != 0 {
        return Err(PacketError::Version(header.version));
    }
    let length = header.packet_len();
    if length > max {
        return Err(PacketError::TooLong { length, max });
    }
    Ok((buf.len() >= start + length).then_some(start..start + length))
}

/// The packet after the first marker in `buf`. A header that fails its checks after a marker
/// (another version, a length above `max`) is taken for a false marker wherever it lies, the
/// front of the stream included: the search goes on after it, so only a marker with a good
/// header behind it ends a resynchronisation, and the stream is never given up.
fn after_marker(buf: &[u8], max: usize) -> Next {
    let mut from = 0;
    loop {
        let Some(at) = find_marker(&buf[from..]).map(|at| from + at) else {
            // A marker may begin in the last three bytes.
            let keep = buf.len().min(ASM.len() - 1);
            return Next::More {
                skipped: buf.len() - keep,
            };
        };
        match packet_at(buf, at + ASM.len(), max) {
            Ok(Some(packet)) => {
                return Next::Packet {
                    end: packet.end,
                    packet,
                    skipped: at,
                }
            }
            Ok(None) => return Next::More { skipped: at },
            Err(_) => from = at + 1,
        }
    }
}

/// Where the first attached sync marker in `buf` starts.
pub(crate) fn find_marker(buf: &[u8]) -> Option<usize> {
    buf.windows(ASM.len()).position(|w| w == ASM)
}

impl LengthField {
    fn next(&self, buf: &[u8], max: usize) -> Result<Next, PacketError> {
        let more = Ok(Next::More { skipped: 0 });
        let Some(field) = buf.get(self.offset..self.offset + self.size) else {
            return more;
        };
        let value = field.iter().fold(0u64, |v, &b| (v << 8) | u64::from(b));
        let least = (self.offset + self.size).max(self.strip + 1);
        let length = i128::from(value) + i128::from(self.adjustment);
        let length = usize::try_from(length.max(0)).unwrap_or(usize::MAX);
        if length < least {
            return Err(PacketError::TooShort { length, least });
        }
        if length - self.strip > max {
            return Err(PacketError::TooLong {
                length: length - self.strip,
                max,
            });
        }
        if buf.len() < length {
            return more;
        }
        Ok(Next::Packet {
            packet: self.strip..length,
            end: length,
            skipped: 0,
        })
    }
}

/// Appends `packet` to `out` as `framing` delimits it (the TM server's and the station
/// simulator's side). A length prefix is written as the field alone, after `offset` zero bytes.
pub fn encode(framing: &Framing, packet: &[u8], out: &mut Vec<u8>) {
    match framing {
        Framing::Ccsds => {}
        Framing::CcsdsAsm => out.extend_from_slice(&ASM),
        Framing::LengthPrefix(field) => {
            let frame = (field.strip + packet.len()) as i64 - field.adjustment;
            let bytes = (frame.max(0) as u64).to_be_bytes();
            let mut prefix = vec![0; field.strip];
            if let Some(at) = prefix.get_mut(field.offset..field.offset + field.size) {
                at.copy_from_slice(&bytes[8 - field.size..]);
            }
            out.extend_from_slice(&prefix);
        }
    }
    out.extend_from_slice(packet);
}

/// The APID of `payload` when it is exactly one space packet of version 0 (its length field
/// says so): what a stored frame of a ground-segment link holds.
pub fn apid_of_packet(payload: &[u8]) -> Option<u16> {
    let header = PrimaryHeader::parse(payload)?;
    (header.version == 0 && header.packet_len() == payload.len()).then_some(header.apid)
}

/// The sequence count of a packet's header, or `None` for fewer than six bytes.
pub(crate) fn apid_and_count(packet: &[u8]) -> Option<(u16, u16)> {
    PrimaryHeader::parse(packet).map(|h| (h.apid, h.sequence_count))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::{any, Just};
    use proptest::strategy::Strategy;

    use super::*;
    use crate::protocol::pieces;

    #[test]
    fn only_one_whole_packet_of_version_0_is_a_packet() {
        let whole = packet(42, 0, &[1, 2, 3]);
        assert_eq!(apid_of_packet(&whole), Some(42));
        assert_eq!(apid_of_packet(&whole[..whole.len() - 1]), None, "short");
        let mut two = whole.clone();
        two.extend_from_slice(&whole);
        assert_eq!(apid_of_packet(&two), None, "two packets");
        let mut longer = whole.clone();
        longer.push(0);
        assert_eq!(apid_of_packet(&longer), None, "trailing bytes");
        let mut version = whole.clone();
        version[0] |= 0x20;
        assert_eq!(apid_of_packet(&version), None, "version 1");
        assert_eq!(apid_of_packet(&[0, 1, 2]), None, "no header");
    }

    fn packet(apid: u16, count: u16, data: &[u8]) -> Vec<u8> {
        let mut p = PrimaryHeader::telemetry(apid, count, data.len())
            .encode()
            .to_vec();
        p.extend_from_slice(data);
        p
    }

    /// The header of docs/ground-segment.md's example: APID 100, count 5, four bytes of data.
    #[test]
    fn the_documented_header_example() {
        let p = packet(100, 5, &[0xDE, 0xAD, 0xBE, 0xEF]);
        assert_eq!(
            p,
            [0x00, 0x64, 0xC0, 0x05, 0x00, 0x03, 0xDE, 0xAD, 0xBE, 0xEF]
        );
        let h = PrimaryHeader::parse(&p).unwrap();
        assert_eq!((h.apid, h.sequence_count, h.packet_len()), (100, 5, 10));
        assert_eq!(h.encode(), p[..6]);
    }

    #[test]
    fn back_to_back_packets_are_delimited_by_their_headers() {
        let mut stream = packet(1, 0, b"abc");
        stream.extend(packet(2, 1, b"de"));
        let f = Framing::Ccsds;
        let Next::Packet { packet: p, end, .. } = f.next(&stream, MAX_PACKET).unwrap() else {
            panic!()
        };
        assert_eq!((p, end), (0..9, 9));
        assert_eq!(
            f.next(&stream[9..12], MAX_PACKET),
            Ok(Next::More { skipped: 0 })
        );
        assert_eq!(
            f.next(&stream[..9], 8),
            Err(PacketError::TooLong { length: 9, max: 8 })
        );
        let mut bad = stream.clone();
        bad[0] |= 0x20;
        assert_eq!(f.next(&bad, MAX_PACKET), Err(PacketError::Version(1)));
    }

    /// Garbage before a marker is skipped, and a marker followed by a bad header is passed over.
    #[test]
    fn a_lost_marker_is_found_again() {
        let mut stream = vec![0x55, 0x1A, 0xCF];
        stream.extend_from_slice(&ASM);
        stream.extend_from_slice(&[0xE0, 0, 0, 0, 0, 0]); // version 7: a false marker
        stream.extend_from_slice(&ASM);
        stream.extend(packet(3, 9, b"xy"));
        let Next::Packet {
            packet: p,
            end,
            skipped,
        } = Framing::CcsdsAsm.next(&stream, MAX_PACKET).unwrap()
        else {
            panic!()
        };
        assert_eq!(skipped, 13);
        assert_eq!(&stream[p], packet(3, 9, b"xy"));
        assert_eq!(end, stream.len());
        assert_eq!(
            Framing::CcsdsAsm.next(&[0x00, 0x11, 0x1A, 0xCF], MAX_PACKET),
            Ok(Next::More { skipped: 1 })
        );
    }

    /// A marker followed by a header of another version, at the front of the stream as after
    /// noise, is a false marker: skipped to the next marker with a valid header, never an end.
    #[test]
    fn a_marker_before_a_header_of_another_version_is_skipped() {
        let mut other_version = packet(3, 8, b"xy");
        other_version[0] |= 0x20;
        let mut stream = ASM.to_vec();
        stream.extend_from_slice(&other_version);
        stream.extend_from_slice(&ASM);
        stream.extend(packet(3, 9, b"xy"));
        let false_marker = ASM.len() + other_version.len();
        for noise in [0, 2] {
            let mut wire = vec![0x55; noise];
            wire.extend_from_slice(&stream);
            let Next::Packet {
                packet: p, skipped, ..
            } = Framing::CcsdsAsm.next(&wire, MAX_PACKET).unwrap()
            else {
                panic!()
            };
            assert_eq!(
                (&wire[p], skipped),
                (&packet(3, 9, b"xy")[..], noise + false_marker)
            );
        }
    }

    /// A four-byte length in front of each packet: offset 0, size 4, the frame's length is the
    /// field plus 4, and the packet is the frame without its 4-byte prefix.
    #[test]
    fn a_length_prefix_round_trips() {
        let field = LengthField {
            offset: 0,
            size: 4,
            adjustment: 4,
            strip: 4,
        };
        let framing = Framing::LengthPrefix(field);
        let p = packet(5, 1, b"hello");
        let mut out = Vec::new();
        encode(&framing, &p, &mut out);
        assert_eq!(out[..4], [0, 0, 0, 11]);
        let Next::Packet {
            packet: at, end, ..
        } = framing.next(&out, MAX_PACKET).unwrap()
        else {
            panic!()
        };
        assert_eq!((&out[at], end), (&p[..], out.len()));
        let short = LengthField {
            adjustment: -20,
            ..field
        };
        assert!(matches!(
            Framing::LengthPrefix(short).next(&out, MAX_PACKET),
            Err(PacketError::TooShort { .. })
        ));
    }

    /// Yamcs' CCSDS setting of the generic stream: the length at bytes 4-5, plus 7.
    #[test]
    fn the_generic_length_reads_ccsds_as_yamcs_configures_it() {
        let field = LengthField {
            offset: 4,
            size: 2,
            adjustment: 7,
            strip: 0,
        };
        let p = packet(9, 2, &[7; 20]);
        let Next::Packet { packet: at, .. } =
            Framing::LengthPrefix(field).next(&p, MAX_PACKET).unwrap()
        else {
            panic!()
        };
        assert_eq!(at, 0..p.len());
    }

    fn any_packet() -> impl Strategy<Value = Vec<u8>> {
        let data = proptest::collection::vec(any::<u8>(), 1..64);
        (0..=MAX_APID, any::<u16>(), data)
            .prop_map(|(apid, count, data)| packet(apid, count, &data))
    }

    /// Every framing: back to back, after markers, Yamcs' length in the header, and a length
    /// field of any size and adjustment in a prefix of its own.
    fn any_framing() -> impl Strategy<Value = Framing> {
        let yamcs = LengthField {
            offset: 4,
            size: 2,
            adjustment: 7,
            strip: 0,
        };
        // The adjustment keeps the field's value within one byte for the longest packet.
        let prefix = (0usize..4, 1usize..=4, 0usize..4, -150i64..=0).prop_map(
            |(offset, size, extra, below)| {
                let strip = offset + size + extra;
                let adjustment = strip as i64 + 7 + below;
                Framing::LengthPrefix(LengthField {
                    offset,
                    size,
                    adjustment,
                    strip,
                })
            },
        );
        proptest::prop_oneof![
            Just(Framing::Ccsds),
            Just(Framing::CcsdsAsm),
            Just(Framing::LengthPrefix(yamcs)),
            prefix,
        ]
    }

    /// The packets `framing` delimits in `wire` read in pieces of `sizes`, what is left unread,
    /// and the bytes skipped: a link's reads.
    fn read_in_pieces(
        framing: &Framing,
        wire: &[u8],
        sizes: &[usize],
    ) -> (Vec<Vec<u8>>, Vec<u8>, usize) {
        let (mut buf, mut packets, mut skipped) = (Vec::new(), Vec::new(), 0);
        for piece in pieces::cut(wire, sizes) {
            buf.extend_from_slice(piece);
            let delimited = framing.delimit(&buf, MAX_PACKET, |n| skipped += n);
            assert_eq!(delimited.failure, None);
            packets.extend(delimited.packets.iter().map(|at| buf[at.clone()].to_vec()));
            buf.drain(..delimited.end);
        }
        (packets, buf, skipped)
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(128))]

        /// Packets framed any way and read in any pieces are the packets sent, nothing skipped
        /// and nothing left over.
        #[test]
        fn framed_packets_delimit_as_sent_across_any_reads(
            framing in any_framing(),
            packets in proptest::collection::vec(any_packet(), 0..12),
            sizes in pieces::read_sizes(),
        ) {
            let mut wire = Vec::new();
            packets.iter().for_each(|p| encode(&framing, p, &mut wire));
            let (read, left, skipped) = read_in_pieces(&framing, &wire, &sizes);
            proptest::prop_assert_eq!(read, packets);
            proptest::prop_assert_eq!((left.len(), skipped), (0, 0));
        }

        /// Bytes without a marker's first byte before each marker are skipped, each counted
        /// once, and cost no packet.
        #[test]
        fn noise_before_markers_is_skipped_and_counted(
            packets in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>().prop_filter("no marker", |b| *b != ASM[0]), 0..20), any_packet()),
                0..12,
            ),
            sizes in pieces::read_sizes(),
        ) {
            let mut wire = Vec::new();
            for (noise, packet) in &packets {
                wire.extend_from_slice(noise);
                encode(&Framing::CcsdsAsm, packet, &mut wire);
            }
            let (read, left, skipped) = read_in_pieces(&Framing::CcsdsAsm, &wire, &sizes);
            let noise: usize = packets.iter().map(|(noise, _)| noise.len()).sum();
            let packets: Vec<_> = packets.into_iter().map(|(_, packet)| packet).collect();
            proptest::prop_assert_eq!(read, packets);
            proptest::prop_assert_eq!((left.len(), skipped), (0, noise));
        }

        /// Any bytes delimit into packets in order, each within the stream's bounds and the
        /// largest packet, whole space packets where the header delimits them; or fail, never
        /// panic.
        #[test]
        fn any_bytes_delimit_into_checked_packets_or_fail(
            framing in any_framing(),
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            let max = 64;
            let delimited = framing.delimit(&bytes, max, |_| {});
            proptest::prop_assert!(delimited.end <= bytes.len());
            let mut after = 0;
            for at in &delimited.packets {
                proptest::prop_assert!(after <= at.start && at.end <= delimited.end);
                proptest::prop_assert!(at.len() <= max);
                after = at.end;
                if matches!(framing, Framing::Ccsds | Framing::CcsdsAsm) {
                    proptest::prop_assert!(apid_of_packet(&bytes[at.clone()]).is_some());
                }
            }
        }
    }
}
