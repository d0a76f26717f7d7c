//! Why bytes of the archive do not decode, as values: the decoder, the scan, the ranged reads and
//! the `RETENTION` file each say which check failed with the numbers it saw (both CRCs, the length,
//! the byte), so callers match a variant and never parse a message, and the text is made once,
//! by `Display`, at the edge that prints it (a tool's line, a log, a follower's detail, a JSON
//! answer).
//!
//! Whether a crash can explain the damage ([`DamageReason::crash_can_explain`]) decides whether a
//! scan's end is torn (cut at the next start) or corrupt (left for an operator), so it is a
//! property of the reason, not of the caller that met it.

use std::fmt;
use std::path::PathBuf;

use super::record::{FRAMES_BODY_FIXED, FRAME_BODY_FIXED, MAGIC, MAX_BODY_LEN, RECORD_HEADER_LEN};

/// What is wrong with a record or a file of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DamageReason {
    /// The file ends inside a record's header: `held` of its 8 bytes are there.
    HeaderCutShort { held: usize },
    /// The file ends inside a record's body of `len` bytes: `held` of them are there.
    BodyCutShort { held: usize, len: usize },
    /// A record header's body length is 0 or past the largest a record may have.
    LengthOutside { len: u32 },
    /// The CRC stored in a record's header is not the CRC of its `len`-byte body.
    CrcMismatch {
        stored: u32,
        computed: u32,
        len: usize,
    },
    /// A record of a type that a segment of this format version never holds.
    TypeOfOtherVersion { record_type: u8, version: u8 },
    /// A record type no format version defines.
    UnknownRecordType(u8),
    /// A FRAME record's body of `len` bytes, too short for its fields.
    FrameBodyShort { len: usize },
    /// A FRAMES or RECEIVED FRAMES record's body of `len` bytes, too short for its fields.
    FramesBodyShort { len: usize },
    /// A record of a fixed-size type whose body is `len` bytes, not `expected`.
    BodyLength {
        record_type: u8,
        len: usize,
        expected: usize,
    },
    /// A STORED RUN record whose first sequence is above its last.
    StoredRunBackwards { first: u64, last: u64 },
    /// A CLOCK record's event byte, which no event has.
    UndefinedClockEvent(u8),
    /// A source kind byte no kind has.
    UndefinedSourceKind(u8),
    /// A priority byte no priority has.
    UndefinedPriority(u8),
    /// Frame `index` of a FRAMES record of `count` frames does not decode.
    BadFrame {
        count: u32,
        index: u32,
        fault: FrameFault,
    },
    /// A FRAMES record whose frames leave `unused` of its `len` body bytes (or that has none).
    FramesBytesUnused {
        count: u32,
        unused: usize,
        len: usize,
    },
    /// A RECEIVED FRAMES record that ends inside the link's or the station's name.
    NameCut(DeliveryName),
    /// A RECEIVED FRAMES record whose link's or station's name is not UTF-8.
    NameNotUtf8(DeliveryName),
    /// The file ends inside the magic, which it begins like: `held` of its 8 bytes are there.
    MagicCutShort { held: usize },
    /// A file shorter than a magic that does not begin like one, or one whose magic names no
    /// format version.
    NotASegment,
    /// A whole magic that is not a segment's.
    BadMagic { magic: [u8; 8] },
    /// A ranged read asked to start where no record can (before the magic, or past `below`).
    NotRecordOffset { below: u64 },
    /// A ranged read whose range holds no whole record that ends by offset `by`.
    NoWholeRecord { by: u64 },
    /// A shard's `RETENTION` file whose length or CRC is wrong.
    RetentionState,
}

/// Which name of a RECEIVED FRAMES record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryName {
    Link,
    Station,
    Recording,
}

/// Why one frame of a FRAMES record does not decode, in a body of `len` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameFault {
    /// Its sequence and payload length run past the body.
    HeaderPastBody { len: usize },
    /// Its reception fields run past the body.
    ReceptionPastBody { len: usize },
    /// Its reception flags byte has bits no flag has.
    UndefinedReceptionFlags(u8),
    /// An AX.25 address's SSID byte is past 15.
    SsidOutOfRange(u8),
    /// Its payload of `payload_len` bytes runs past the body.
    PayloadPastBody { payload_len: u32, len: usize },
}

impl DamageReason {
    /// Whether a crash's incomplete last write can look like this: a record or magic cut short,
    /// or a record whose length or CRC is wrong. A record whose CRC matches but whose contents are
    /// impossible is only a bug or deliberate damage.
    pub fn crash_can_explain(&self) -> bool {
        matches!(
            self,
            DamageReason::HeaderCutShort { .. }
                | DamageReason::BodyCutShort { .. }
                | DamageReason::LengthOutside { .. }
                | DamageReason::CrcMismatch { .. }
                | DamageReason::MagicCutShort { .. }
        )
    }

    /// The offset this damage is at when it is met at `at`: a magic's is the file's start,
    /// wherever a reader was when it found it.
    pub fn offset_when_met_at(&self, at: u64) -> u64 {
        match self {
            DamageReason::MagicCutShort { .. }
            | DamageReason::NotASegment
            | DamageReason::BadMagic { .. } => 0,
            _ => at,
        }
    }
}

impl fmt::Display for DamageReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use DamageReason::*;
        match self {
            HeaderCutShort { held } => write!(
                f,
                "record header cut short ({held} of {RECORD_HEADER_LEN} bytes)"
            ),
            BodyCutShort { held, len } => {
                write!(f, "record body cut short ({held} of {len} bytes)")
            }
            LengthOutside { len } => {
                write!(f, "body length {len} is outside 1..={MAX_BODY_LEN}")
            }
            CrcMismatch {
                stored,
                computed,
                len,
            } => write!(
                f,
                "CRC mismatch (stored {stored:08x}, computed {computed:08x}) over a {len}-byte body"
            ),
            TypeOfOtherVersion {
                record_type,
                version,
            } => write!(
                f,
                "record type {record_type} in a version {version} segment"
            ),
            UnknownRecordType(record_type) => write!(f, "unknown record type {record_type}"),
            FrameBodyShort { len } => write!(
                f,
                "frame record body of {len} bytes, shorter than {FRAME_BODY_FIXED}"
            ),
            FramesBodyShort { len } => write!(
                f,
                "FRAMES record body of {len} bytes, shorter than {FRAMES_BODY_FIXED}"
            ),
            BodyLength {
                record_type,
                len,
                expected,
            } => write!(
                f,
                "type {record_type} record body of {len} bytes, expected {expected}"
            ),
            StoredRunBackwards { first, last } => {
                write!(f, "stored run from {first} down to {last}")
            }
            UndefinedClockEvent(event) => write!(f, "undefined clock event {event}"),
            UndefinedSourceKind(byte) => write!(f, "undefined source kind {byte}"),
            UndefinedPriority(byte) => write!(f, "undefined priority {byte}"),
            BadFrame {
                count,
                index,
                fault,
            } => write!(f, "FRAMES record of {count} frames: frame {index} {fault}"),
            FramesBytesUnused { count, unused, len } => write!(
                f,
                "FRAMES record of {count} frames leaves {unused} of its {len} body bytes unused"
            ),
            NameCut(name) => write!(f, "RECEIVED FRAMES record cut within its {name} name"),
            NameNotUtf8(name) => {
                write!(f, "RECEIVED FRAMES record: its {name} name is not UTF-8")
            }
            MagicCutShort { held } => write!(f, "magic cut short ({held} of 8 bytes)"),
            NotASegment => f.write_str("bad magic: not a segment file"),
            BadMagic { magic } => write!(
                f,
                "bad magic {magic:02x?}, expected {:?}",
                String::from_utf8_lossy(MAGIC)
            ),
            NotRecordOffset { below } => write!(f, "not a record offset below {below}"),
            NoWholeRecord { by } => write!(f, "no whole record ends by offset {by}"),
            RetentionState => f.write_str("damaged retention state (bad length or CRC)"),
        }
    }
}

impl fmt::Display for DeliveryName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeliveryName::Link => "link",
            DeliveryName::Station => "station",
            DeliveryName::Recording => "recording",
        })
    }
}

impl fmt::Display for FrameFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameFault::HeaderPastBody { len } => {
                write!(f, "header runs past the {len}-byte body")
            }
            FrameFault::ReceptionPastBody { len } => {
                write!(f, "reception runs past the {len}-byte body")
            }
            FrameFault::UndefinedReceptionFlags(byte) => {
                write!(f, "has undefined reception flags 0x{byte:02X}")
            }
            FrameFault::SsidOutOfRange(byte) => {
                write!(f, "has an AX.25 SSID of {byte}, past 15")
            }
            FrameFault::PayloadPastBody { payload_len, len } => write!(
                f,
                "payload of {payload_len} bytes runs past the {len}-byte body"
            ),
        }
    }
}

/// Damage a repair leaves in place, and why ([`ArchiveError::Unrepaired`](super::ArchiveError)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// A corrupt record the daemon's start does not cut (a valid record follows it at
    /// `followed_by`, when one does): `aggregator archive repair DIR` (`dir`, the shard's) shows
    /// the damaged bytes, and with `--quarantine` moves them aside.
    Corrupt {
        followed_by: Option<u64>,
        dir: PathBuf,
    },
    /// A damaged segment magic, which `archive repair` does not guess.
    Magic,
}

impl Kept {
    /// What is wrong (`reason`) and why the repair left it, as the error says it.
    pub(super) fn says(&self, reason: &DamageReason) -> String {
        match self {
            Kept::Corrupt { followed_by, dir } => format!(
                "corrupt record: {reason}{}; not repaired: `aggregator archive repair {}` shows \
                 the damaged bytes, and with --quarantine moves them aside so that the daemon \
                 can start",
                Follows(*followed_by),
                dir.display()
            ),
            Kept::Magic => {
                format!("{reason}; repair keeps a segment's magic and does not guess one")
            }
        }
    }
}

/// "; a valid record follows at offset N" after a corrupt record's reason, when one does.
pub(super) struct Follows(pub Option<u64>);

impl fmt::Display for Follows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(offset) => write!(f, "; a valid record follows at offset {offset}"),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::archive::format::ArchiveError;

    /// The texts operators read in the tools' output and the daemon's log
    /// (`docs/archive-tools.md`), made from the values.
    #[test]
    fn each_reason_prints_the_words_the_docs_show() {
        let crc = DamageReason::CrcMismatch {
            stored: 0xa24a4b57,
            computed: 0xe7351839,
            len: 1999,
        };
        let cases = [
            (
                crc.clone(),
                "CRC mismatch (stored a24a4b57, computed e7351839) over a 1999-byte body",
            ),
            (
                DamageReason::BadMagic {
                    magic: *b"TLMSEGxx",
                },
                "bad magic [54, 4c, 4d, 53, 45, 47, 78, 78], expected \"TLMSEG06\"",
            ),
            (
                DamageReason::BadFrame {
                    count: 3,
                    index: 1,
                    fault: FrameFault::UndefinedReceptionFlags(0x85),
                },
                "FRAMES record of 3 frames: frame 1 has undefined reception flags 0x85",
            ),
            (
                DamageReason::NameCut(DeliveryName::Station),
                "RECEIVED FRAMES record cut within its station name",
            ),
        ];
        for (reason, text) in cases {
            assert_eq!(reason.to_string(), text);
        }
        let unrepaired = ArchiveError::Unrepaired {
            path: Path::new("archive/segment-00000000000000000003.seg").to_path_buf(),
            offset: 211,
            reason: crc,
            kept: Kept::Corrupt {
                followed_by: Some(2218),
                dir: "archive".into(),
            },
        };
        assert_eq!(
            unrepaired.to_string(),
            "archive/segment-00000000000000000003.seg: offset 211: corrupt record: CRC mismatch \
             (stored a24a4b57, computed e7351839) over a 1999-byte body; a valid record follows at \
             offset 2218; not repaired: `aggregator archive repair archive` shows the damaged \
             bytes, and with --quarantine moves them aside so that the daemon can start"
        );
        let magic = Kept::Magic.says(&DamageReason::MagicCutShort { held: 3 });
        assert_eq!(
            magic,
            "magic cut short (3 of 8 bytes); repair keeps a segment's magic and does not guess one"
        );
    }

    /// Incomplete writes, and complete ones with a wrong length or CRC, can be a crash's;
    /// impossible contents behind a matching CRC cannot.
    #[test]
    fn only_what_a_crash_can_leave_is_torn() {
        let crash = [
            DamageReason::HeaderCutShort { held: 3 },
            DamageReason::BodyCutShort { held: 3, len: 9 },
            DamageReason::LengthOutside { len: 0 },
            DamageReason::MagicCutShort { held: 2 },
        ];
        assert!(crash.iter().all(DamageReason::crash_can_explain));
        let never = [
            DamageReason::UnknownRecordType(9),
            DamageReason::UndefinedPriority(7),
            DamageReason::NotASegment,
        ];
        assert!(!never.iter().any(DamageReason::crash_can_explain));
    }
}
