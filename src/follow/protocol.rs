//! The follow protocol (`docs/protocol.md`, "Following the archive"): SUBSCRIBE from the
//! consumer; SUBSCRIBED or REFUSED, then FRAMES and an END from the daemon.
//!
//! A FRAMES message carries the frames of one archive record (a batch of one source and priority):
//! what they share, and the first one's position, once; each frame's sequence, length and payload
//! after it, as the archive stores them. At 64-byte payloads a message per frame cost the consumer
//! more to take apart than the frame itself.
//!
//! It uses the uplink protocol's framing (a u32 big-endian length, then the body, whose first byte
//! is the type), so a client reuses its framing code, and message types of their own (0x11, 0x91
//! to 0x94), so a consumer that connects to a source listener by mistake, or a source that
//! connects here, is refused at its first message instead of misread. Every message is encoded
//! and decoded here and nowhere else: the daemon, `aggregator tail` and the benchmark share it.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::position::Position;
use crate::archive::segment::{self, FrameRecord};
use crate::ingest::ledger::SourceKey;
use crate::pipeline::frame::{Priority, SourceKind};

/// The newest protocol version SUBSCRIBE and SUBSCRIBED carry: 2 adds CATALOG notices.
pub const VERSION: u8 = 2;
/// The oldest version still served (without CATALOG notices).
pub const MIN_VERSION: u8 = 1;
/// The first version with CATALOG notices.
pub const CATALOG_VERSION: u8 = 2;

/// The longest SUBSCRIBE body the daemon reads (a length above it is refused): room for 814 sources.
pub const MAX_SUBSCRIBE_LEN: usize = 4096;

/// The longest body a client must accept: FRAMES holding a whole record of the largest size.
pub const MAX_DAEMON_MESSAGE_LEN: usize = FRAMES_HEADER_LEN + segment::MAX_BODY_LEN as usize;

/// A FRAMES message's bytes before its first frame.
pub const FRAMES_HEADER_LEN: usize = 39;

/// A frame's bytes in FRAMES before its payload: sequence and payload length.
const FRAME_ENTRY_LEN: usize = 12;

/// SUBSCRIBE's bytes before its sources.
const SUBSCRIBE_FIXED_LEN: usize = 26;

const SUBSCRIBE: u8 = 0x11;
const SUBSCRIBED: u8 = 0x91;
const REFUSED: u8 = 0x92;
const FRAMES: u8 = 0x93;
const END: u8 = 0x94;
const CATALOG: u8 = 0x95;

/// Where a subscription starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The oldest frame the archive still holds.
    Oldest,
    /// The first frame that becomes durable after the subscription.
    Now,
    /// The frame right after this one, which the daemon gave earlier.
    After(Position),
}

impl std::fmt::Display for Start {
    /// `start`, `now` or the position, as `aggregator tail --from` takes them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Start::Oldest => f.write_str("start"),
            Start::Now => f.write_str("now"),
            Start::After(position) => write!(f, "{position}"),
        }
    }
}

impl std::str::FromStr for Start {
    type Err = String;

    fn from_str(text: &str) -> Result<Start, String> {
        match text {
            "start" => Ok(Start::Oldest),
            "now" => Ok(Start::Now),
            position => position.parse().map(Start::After).map_err(|err| {
                format!("{err}; or start (the oldest frame) or now (only frames to come)")
            }),
        }
    }
}

/// A consumer's SUBSCRIBE: where to start and which frames it wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// From [`MIN_VERSION`] to [`VERSION`]: what the follower understands.
    pub version: u8,
    pub start: Start,
    /// Only frames of these sources; every source when empty.
    pub sources: Vec<SourceKey>,
    /// Only frames of this priority; both when `None`.
    pub priority: Option<Priority>,
}

impl Subscription {
    /// A subscription of this build's [`VERSION`].
    pub fn new(start: Start, sources: Vec<SourceKey>, priority: Option<Priority>) -> Subscription {
        Subscription {
            version: VERSION,
            start,
            sources,
            priority,
        }
    }

    /// Whether the consumer wants this frame.
    pub fn wants(&self, frame: &FrameRecord) -> bool {
        self.priority.is_none_or(|p| p == frame.priority)
            && (self.sources.is_empty() || self.sources.contains(&(frame.kind, frame.source_id)))
    }

    /// Appends the SUBSCRIBE message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        dst.put_u32((SUBSCRIBE_FIXED_LEN + 5 * self.sources.len()) as u32);
        dst.put_u8(SUBSCRIBE);
        dst.put_u8(self.version);
        let (code, position) = match self.start {
            Start::Oldest => (0, Position::default()),
            Start::Now => (1, Position::default()),
            Start::After(position) => (2, position),
        };
        dst.put_u8(code);
        put_position(dst, position);
        dst.put_u8(match self.priority {
            None => 0,
            Some(Priority::Routine) => 1,
            Some(Priority::Emergency) => 2,
        });
        dst.put_u16(self.sources.len() as u16);
        for &(kind, id) in &self.sources {
            dst.put_u8(kind.to_byte());
            dst.put_u32(id);
        }
    }

    /// Decodes a SUBSCRIBE body; an error is the refusal to send.
    pub fn decode(mut body: &[u8]) -> Result<Subscription, (RefuseReason, String)> {
        let malformed = |why: String| (RefuseReason::MalformedSubscribe, why);
        if body.first() != Some(&SUBSCRIBE) {
            let what = body
                .first()
                .map_or("an empty message".into(), |t| format!("type {t:#04x}"));
            return Err(malformed(format!("expected SUBSCRIBE (0x11), got {what}")));
        }
        if body.len() < SUBSCRIBE_FIXED_LEN {
            return Err(malformed(format!(
                "SUBSCRIBE of {} bytes, shorter than {SUBSCRIBE_FIXED_LEN}",
                body.len()
            )));
        }
        let len = body.len();
        body.advance(1);
        let version = body.get_u8();
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err((
                RefuseReason::UnsupportedVersion,
                format!("version {version}; this daemon speaks {MIN_VERSION} to {VERSION}"),
            ));
        }
        let from = body.get_u8();
        let position = get_position(&mut body);
        let start = match from {
            0 => Start::Oldest,
            1 => Start::Now,
            2 => Start::After(position),
            other => return Err(malformed(format!("undefined start {other}"))),
        };
        let priority = match body.get_u8() {
            0 => None,
            1 => Some(Priority::Routine),
            2 => Some(Priority::Emergency),
            other => return Err(malformed(format!("undefined priority filter {other}"))),
        };
        let count = usize::from(body.get_u16());
        if len != SUBSCRIBE_FIXED_LEN + 5 * count {
            return Err(malformed(format!(
                "SUBSCRIBE of {len} bytes for {count} sources; expected {}",
                SUBSCRIBE_FIXED_LEN + 5 * count
            )));
        }
        let mut sources = Vec::with_capacity(count);
        for _ in 0..count {
            let byte = body.get_u8();
            let kind = SourceKind::from_byte(byte)
                .ok_or_else(|| malformed(format!("undefined source kind {byte}")))?;
            sources.push((kind, body.get_u32()));
        }
        Ok(Subscription {
            version,
            start,
            sources,
            priority,
        })
    }
}

/// Why the daemon refused a subscription (REFUSED's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    UnsupportedVersion = 1,
    MalformedSubscribe = 2,
    UnknownPosition = 3,
    PositionPastEnd = 4,
    SegmentDeleted = 5,
    TooManyConnections = 6,
    ShuttingDown = 7,
    NoArchive = 8,
    HandshakeTimeout = 9,
    ArchiveUnreadable = 10,
}

/// Why the daemon ended a subscription (END's code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The daemon drained: every durable frame the subscription wanted was sent.
    Shutdown = 1,
    /// The next segment to read is gone (deleted by an operator): frames would be missing.
    SegmentDeleted = 2,
    /// A durable record does not decode.
    ArchiveDamaged = 3,
    /// The archive could not be read.
    ArchiveUnreadable = 4,
    /// The consumer sent something after its SUBSCRIBE.
    UnexpectedMessage = 5,
}

impl RefuseReason {
    const ALL: [RefuseReason; 10] = [
        RefuseReason::UnsupportedVersion,
        RefuseReason::MalformedSubscribe,
        RefuseReason::UnknownPosition,
        RefuseReason::PositionPastEnd,
        RefuseReason::SegmentDeleted,
        RefuseReason::TooManyConnections,
        RefuseReason::ShuttingDown,
        RefuseReason::NoArchive,
        RefuseReason::HandshakeTimeout,
        RefuseReason::ArchiveUnreadable,
    ];
}

impl EndReason {
    const ALL: [EndReason; 5] = [
        EndReason::Shutdown,
        EndReason::SegmentDeleted,
        EndReason::ArchiveDamaged,
        EndReason::ArchiveUnreadable,
        EndReason::UnexpectedMessage,
    ];
}

/// A frame as a follower receives it: the archive's record of it and where it is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowedFrame {
    pub frame: FrameRecord,
    pub position: Position,
}

/// Frames of one archive record with consecutive positions from `first`: one FRAMES message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRun {
    pub kind: SourceKind,
    pub priority: Priority,
    pub source_id: u32,
    pub received_unix_ns: u64,
    /// The first frame's position; the others follow it in the record, index by index.
    pub first: Position,
    /// Each frame's sequence and payload; never empty.
    pub frames: Vec<(u64, Bytes)>,
}

impl FrameRun {
    /// A run starting with `followed`.
    pub fn starting_with(followed: FollowedFrame) -> FrameRun {
        let f = followed.frame;
        FrameRun {
            kind: f.kind,
            priority: f.priority,
            source_id: f.source_id,
            received_unix_ns: f.received_unix_ns,
            first: followed.position,
            frames: vec![(f.sequence, f.payload)],
        }
    }

    /// Adds `followed` if it is the next frame of the same record; gives it back otherwise.
    pub fn extend(&mut self, followed: FollowedFrame) -> Result<(), FollowedFrame> {
        let next = self.first.index as usize + self.frames.len();
        let p = followed.position;
        let same_record = (p.segment, p.offset) == (self.first.segment, self.first.offset);
        if same_record && p.index as usize == next {
            self.frames
                .push((followed.frame.sequence, followed.frame.payload));
            Ok(())
        } else {
            Err(followed)
        }
    }

    /// The frames one by one, each with its position.
    pub fn into_frames(self) -> impl Iterator<Item = FollowedFrame> {
        let FrameRun {
            kind,
            priority,
            source_id,
            received_unix_ns,
            first,
            frames,
        } = self;
        frames
            .into_iter()
            .zip(first.index..)
            .map(move |((sequence, payload), index)| FollowedFrame {
                frame: FrameRecord {
                    kind,
                    priority,
                    source_id,
                    sequence,
                    received_unix_ns,
                    payload,
                },
                position: Position { index, ..first },
            })
    }

    /// Appends the FRAMES message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        let payloads: usize = self.frames.iter().map(|(_, p)| p.len()).sum();
        let len = FRAMES_HEADER_LEN + FRAME_ENTRY_LEN * self.frames.len() + payloads;
        dst.reserve(4 + len);
        dst.put_u32(len as u32);
        dst.put_u8(FRAMES);
        dst.put_u8(self.kind.to_byte());
        dst.put_u8(self.priority.to_byte());
        dst.put_u32(self.source_id);
        dst.put_u64(self.received_unix_ns);
        put_position(dst, self.first);
        dst.put_u32(self.frames.len() as u32);
        for (sequence, payload) in &self.frames {
            dst.put_u64(*sequence);
            dst.put_u32(payload.len() as u32);
            dst.put_slice(payload);
        }
    }

    /// Decodes a FRAMES body after its type byte (`len` bytes with it).
    fn decode(mut body: Bytes, len: usize) -> Result<FrameRun, String> {
        if len < FRAMES_HEADER_LEN {
            return Err(format!(
                "FRAMES of {len} bytes, expected at least {FRAMES_HEADER_LEN}"
            ));
        }
        let (kind_byte, priority_byte) = (body.get_u8(), body.get_u8());
        let kind = SourceKind::from_byte(kind_byte)
            .ok_or_else(|| format!("FRAMES with undefined source kind {kind_byte}"))?;
        let priority = Priority::from_byte(priority_byte)
            .ok_or_else(|| format!("FRAMES with undefined priority {priority_byte}"))?;
        let source_id = body.get_u32();
        let received_unix_ns = body.get_u64();
        let first = get_position(&mut body);
        let count = body.get_u32();
        let mut frames = Vec::with_capacity((count as usize).min(body.len() / FRAME_ENTRY_LEN));
        for index in 0..count {
            if body.len() < FRAME_ENTRY_LEN {
                return Err(format!("FRAMES of {count} frames ends in frame {index}"));
            }
            let sequence = body.get_u64();
            let payload_len = body.get_u32() as usize;
            if payload_len > body.len() {
                return Err(format!(
                    "FRAMES frame {index}: a payload of {payload_len} bytes, {} left",
                    body.len()
                ));
            }
            frames.push((sequence, body.split_to(payload_len)));
        }
        if count == 0 || !body.is_empty() {
            return Err(format!(
                "FRAMES of {count} frames with {} bytes left over",
                body.len()
            ));
        }
        Ok(FrameRun {
            kind,
            priority,
            source_id,
            received_unix_ns,
            first,
            frames,
        })
    }
}

/// What the daemon sends a follower.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DaemonMessage {
    Subscribed {
        version: u8,
    },
    Refused {
        reason: RefuseReason,
        detail: String,
    },
    Frames(FrameRun),
    End {
        reason: EndReason,
        detail: String,
    },
    /// A catalog version was published (version 2): sent after SUBSCRIBED when one exists, and
    /// at each publication.
    Catalog {
        version: u64,
    },
}

impl DaemonMessage {
    /// Appends the message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        let (kind, code, detail) = match self {
            DaemonMessage::Subscribed { version } => {
                dst.put_u32(2);
                dst.put_u8(SUBSCRIBED);
                dst.put_u8(*version);
                return;
            }
            DaemonMessage::Frames(run) => return run.encode(dst),
            DaemonMessage::Catalog { version } => {
                dst.put_u32(9);
                dst.put_u8(CATALOG);
                dst.put_u64(*version);
                return;
            }
            DaemonMessage::Refused { reason, detail } => (REFUSED, *reason as u8, detail),
            DaemonMessage::End { reason, detail } => (END, *reason as u8, detail),
        };
        dst.put_u32((2 + detail.len()) as u32);
        dst.put_u8(kind);
        dst.put_u8(code);
        dst.put_slice(detail.as_bytes());
    }

    /// Decodes one body (the bytes after the length prefix); an unknown type or code is an error.
    pub fn decode(mut body: Bytes) -> Result<DaemonMessage, String> {
        let len = body.len();
        let Some(&kind) = body.first() else {
            return Err("an empty message".into());
        };
        let short =
            |what: &str, least: usize| format!("{what} of {len} bytes, expected at least {least}");
        body.advance(1);
        match kind {
            SUBSCRIBED if len == 2 => Ok(DaemonMessage::Subscribed {
                version: body.get_u8(),
            }),
            SUBSCRIBED => Err(format!("SUBSCRIBED of {len} bytes, expected 2")),
            FRAMES => FrameRun::decode(body, len).map(DaemonMessage::Frames),
            CATALOG if len == 9 => Ok(DaemonMessage::Catalog {
                version: body.get_u64(),
            }),
            CATALOG => Err(format!("CATALOG of {len} bytes, expected 9")),
            REFUSED | END if len < 2 => Err(short("REFUSED or END", 2)),
            REFUSED | END => {
                let code = body.get_u8();
                let detail = String::from_utf8_lossy(&body).into_owned();
                if kind == REFUSED {
                    let reason = RefuseReason::ALL
                        .into_iter()
                        .find(|r| *r as u8 == code)
                        .ok_or_else(|| format!("REFUSED with unknown reason {code}: {detail}"))?;
                    Ok(DaemonMessage::Refused { reason, detail })
                } else {
                    let reason = EndReason::ALL
                        .into_iter()
                        .find(|r| *r as u8 == code)
                        .ok_or_else(|| format!("END with unknown reason {code}: {detail}"))?;
                    Ok(DaemonMessage::End { reason, detail })
                }
            }
            other => Err(format!("unknown message type {other:#04x}")),
        }
    }
}

fn put_position(dst: &mut BytesMut, position: Position) {
    dst.put_u64(position.segment);
    dst.put_u64(position.offset);
    dst.put_u32(position.index);
}

fn get_position(body: &mut impl Buf) -> Position {
    Position {
        segment: body.get_u64(),
        offset: body.get_u64(),
        index: body.get_u32(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(mut encoded: BytesMut) -> Bytes {
        encoded.advance(4);
        encoded.freeze()
    }

    #[test]
    fn subscribe_is_byte_exact_and_round_trips() {
        let subscription = Subscription {
            version: 1,
            start: Start::After(Position {
                segment: 1,
                offset: 8,
                index: 2,
            }),
            sources: vec![(SourceKind::ArchivedReplay, 7)],
            priority: Some(Priority::Emergency),
        };
        let mut encoded = BytesMut::new();
        subscription.encode(&mut encoded);
        let expected: &[u8] = &[
            0, 0, 0, 31, 0x11, 1, 2, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 2, 2,
            0, 1, 1, 0, 0, 0, 7,
        ];
        assert_eq!(&encoded[..], expected);
        assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
    }

    /// The example of `docs/protocol.md`, "Following the archive", byte for byte.
    #[test]
    fn the_documented_example_is_what_is_encoded() {
        let mut encoded = BytesMut::new();
        Subscription {
            version: 1,
            start: Start::After(Position {
                segment: 1,
                offset: 8,
                index: 0,
            }),
            sources: vec![(SourceKind::LiveUplink, 7)],
            priority: Some(Priority::Emergency),
        }
        .encode(&mut encoded);
        DaemonMessage::Subscribed { version: 1 }.encode(&mut encoded);
        DaemonMessage::Frames(FrameRun {
            kind: SourceKind::LiveUplink,
            priority: Priority::Emergency,
            source_id: 7,
            received_unix_ns: 1_700_000_000_001_000_000,
            first: Position {
                segment: 1,
                offset: 123,
                index: 0,
            },
            frames: vec![(5, Bytes::from_static(b"ab")), (6, Bytes::new())],
        })
        .encode(&mut encoded);
        let documented = "00 00 00 1f 11 01 02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 08 \
            00 00 00 00 02 00 01 00 00 00 00 07 00 00 00 02 91 01 00 00 00 41 93 00 01 00 00 00 07 \
            17 97 9c fe 36 39 42 40 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 7b 00 00 00 00 \
            00 00 00 02 00 00 00 00 00 00 00 05 00 00 00 02 61 62 \
            00 00 00 00 00 00 00 06 00 00 00 00";
        let bytes: Vec<u8> = documented
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect();
        assert_eq!(&encoded[..], &bytes[..]);
    }

    #[test]
    fn a_bad_subscribe_is_refused_with_its_reason() {
        let mut encoded = BytesMut::new();
        Subscription {
            version: VERSION,
            start: Start::Oldest,
            sources: vec![(SourceKind::LiveUplink, 1)],
            priority: None,
        }
        .encode(&mut encoded);
        let good = body(encoded).to_vec();
        let cases: Vec<(Vec<u8>, RefuseReason)> = vec![
            (vec![], RefuseReason::MalformedSubscribe),
            (
                vec![0x01, 1, 0, 0, 0, 0, 7],
                RefuseReason::MalformedSubscribe,
            ),
            (good[..20].to_vec(), RefuseReason::MalformedSubscribe),
            (
                good[..good.len() - 1].to_vec(),
                RefuseReason::MalformedSubscribe,
            ),
            (
                [&good[..1], &[VERSION + 1], &good[2..]].concat(),
                RefuseReason::UnsupportedVersion,
            ),
            (
                [&good[..1], &[0], &good[2..]].concat(),
                RefuseReason::UnsupportedVersion,
            ),
            (
                [&good[..2], &[3], &good[3..]].concat(),
                RefuseReason::MalformedSubscribe,
            ),
            (
                [&good[..23], &[3], &good[24..]].concat(),
                RefuseReason::MalformedSubscribe,
            ),
            (
                [&good[..26], &[9], &good[27..]].concat(),
                RefuseReason::MalformedSubscribe,
            ),
        ];
        for (bytes, reason) in cases {
            let refused = Subscription::decode(&bytes).map_err(|(r, _)| r);
            assert_eq!(refused, Err(reason), "{bytes:02x?}");
        }
    }

    #[test]
    fn daemon_messages_round_trip_and_unknown_codes_are_errors() {
        let messages = [
            DaemonMessage::Subscribed { version: VERSION },
            DaemonMessage::Catalog { version: 7 },
            DaemonMessage::Refused {
                reason: RefuseReason::PositionPastEnd,
                detail: "past".into(),
            },
            DaemonMessage::End {
                reason: EndReason::Shutdown,
                detail: "drained".into(),
            },
            DaemonMessage::Frames(FrameRun {
                kind: SourceKind::LiveUplink,
                priority: Priority::Emergency,
                source_id: 3,
                received_unix_ns: 42,
                first: Position {
                    segment: 2,
                    offset: 74,
                    index: 1,
                },
                frames: vec![
                    (9, Bytes::from_static(b"ab")),
                    (10, Bytes::from_static(b"c")),
                ],
            }),
        ];
        for message in messages {
            let mut encoded = BytesMut::new();
            message.encode(&mut encoded);
            assert_eq!(DaemonMessage::decode(body(encoded)), Ok(message));
        }
        for bad in [&[0x92, 99][..], &[0x94, 0], &[0x7f], &[0x93, 0, 0]] {
            assert!(DaemonMessage::decode(Bytes::copy_from_slice(bad)).is_err());
        }
        // FRAMES with no frame, a frame cut short, and a byte left over.
        let run = |frames: Vec<(u64, Bytes)>| {
            let mut encoded = BytesMut::new();
            FrameRun {
                kind: SourceKind::ArchivedReplay,
                priority: Priority::Routine,
                source_id: 1,
                received_unix_ns: 0,
                first: Position::default(),
                frames,
            }
            .encode(&mut encoded);
            body(encoded).to_vec()
        };
        let one = run(vec![(1, Bytes::from_static(b"xyz"))]);
        let bad = [
            run(Vec::new()),
            one[..one.len() - 1].to_vec(),
            [&one[..], &[0]].concat(),
        ];
        for bad in bad {
            assert!(DaemonMessage::decode(Bytes::from(bad)).is_err());
        }
    }

    #[test]
    fn a_run_takes_only_the_next_frame_of_its_record() {
        let frame = |offset, index, sequence| FollowedFrame {
            frame: FrameRecord {
                kind: SourceKind::LiveUplink,
                priority: Priority::Routine,
                source_id: 1,
                sequence,
                received_unix_ns: 0,
                payload: Bytes::new(),
            },
            position: Position {
                segment: 1,
                offset,
                index,
            },
        };
        let mut run = FrameRun::starting_with(frame(8, 2, 20));
        assert!(run.extend(frame(8, 3, 21)).is_ok());
        assert!(run.extend(frame(8, 5, 23)).is_err(), "a frame skipped");
        assert!(run.extend(frame(90, 4, 22)).is_err(), "another record");
        let frames: Vec<_> = run.into_frames().map(|f| f.position.index).collect();
        assert_eq!(frames, [2, 3]);
    }
}
