//! The follow protocol (`docs/follow-protocol.md`): SUBSCRIBE from the consumer; SUBSCRIBED or
//! REFUSED, then FRAMES and an END from the daemon.
//!
//! A FRAMES message carries the frames of one archive record (a batch of one source and priority):
//! what they share, and the first one's position, once; each frame's sequence, length and payload
//! after it, as the archive stores them. At 64-byte payloads a message per frame cost the consumer
//! more to take apart than the frame itself.
//!
//! Every position names its shard (`crate::archive::format`): SUBSCRIBE carries one position per
//! shard, and FRAMES its shard. Versions 3 and 4 are spoken: 4 adds RECEPTION, a link's frames'
//! reception, before their FRAMES, which a consumer of 3 never sees; a SUBSCRIBE of any other is
//! refused with `UnsupportedVersion`.
//!
//! What the messages carry is the archive's: where a reading starts ([`Start`]), which frames it
//! wants ([`FrameFilter`]), the runs of frames it reads ([`FrameRun`]) and why it cannot go on
//! ([`ReadError`], said here as a [`RefuseReason`] or an [`EndReason`]). This file only puts them
//! on the wire and takes them off it.
//!
//! It uses the uplink protocol's framing (a u32 big-endian length, then the body, whose first byte
//! is the type), so a client reuses its framing code, and message types of their own (0x11, 0x91
//! to 0x99), so a consumer that connects to a source listener by mistake, or a source that
//! connects here, is refused at its first message instead of misread. Every message is encoded
//! and decoded here and nowhere else: the daemon, `aggregator tail` and the benchmark share it.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::archive::format;
use crate::archive::read::ReadError;
pub use crate::archive::read::{
    Earliest, FollowedFrame, FrameFilter, FrameRun, OnGap, Skipped, Start, StartError,
};
use crate::domain::frame::SourceKey;
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::position::{Position, Positions, ShardPosition};
use crate::domain::reception::{Ax25Addresses, Delivery, Received};
use crate::domain::shard::MAX_SHARDS;

/// The protocol version SUBSCRIBE and SUBSCRIBED carry: the newest the daemon speaks.
pub const VERSION: u8 = 4;

/// The oldest version the daemon speaks: a subscription of version 3 gets no RECEPTION.
pub const OLDEST_VERSION: u8 = 3;

/// The longest SUBSCRIBE body the daemon reads (a length above it is refused): room for 549
/// sources and a position in each of 64 shards.
pub(crate) const MAX_SUBSCRIBE_LEN: usize = 4096;

/// The longest body a client must accept: FRAMES holding a whole record of the largest size.
pub const MAX_DAEMON_MESSAGE_LEN: usize = FRAMES_HEADER_LEN + format::MAX_BODY_LEN as usize;

/// A FRAMES message's bytes before its first frame.
pub(crate) const FRAMES_HEADER_LEN: usize = 40;

/// A frame's bytes in FRAMES before its payload: sequence and payload length.
const FRAME_ENTRY_LEN: usize = 12;

/// SUBSCRIBE's bytes before its sources, and each of its positions' bytes.
const SUBSCRIBE_FIXED_LEN: usize = 7;
const SHARD_POSITION_LEN: usize = 21;

const SUBSCRIBE: u8 = 0x11;
const SUBSCRIBED: u8 = 0x91;
const REFUSED: u8 = 0x92;
const END: u8 = 0x94;
const CATALOG: u8 = 0x95;
/// FRAMES: 0x96, the type that names its shard (0x93 is not used).
const FRAMES: u8 = 0x96;
const SKIPPED: u8 = 0x97;
const EARLIEST: u8 = 0x98;
const RECEPTION: u8 = 0x99;

/// RECEPTION's per-frame flags: an earth-receive time follows; playback; AX.25 addresses follow.
const HAS_EARTH_TIME: u8 = 0x01;
const PLAYBACK: u8 = 0x02;
const HAS_AX25: u8 = 0x04;

/// SUBSCRIBE's start byte: the start in its low bits, and this bit for "go on at the oldest
/// segment left when the next frames were deleted" ([`OnGap::Oldest`]).
const ON_GAP_OLDEST: u8 = 0x80;

/// Bit 6 of SUBSCRIBE's start byte: a time window (since, until) follows the positions.
const WINDOW: u8 = 0x40;

/// Bytes of a time window: since and until, u64 each.
const WINDOW_LEN: usize = 16;

/// SKIPPED's bytes before its sources, and each source's.
const SKIPPED_FIXED_LEN: usize = 22;
const SKIPPED_SOURCE_LEN: usize = 13;

// A shard is one byte on the wire.
const _: () = assert!(MAX_SHARDS <= 256);

/// A consumer's SUBSCRIBE: where to start, which frames it wants, and what to do when its next
/// frames were deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub start: Start,
    /// Its sources (every source when none) and its priority (both when none).
    pub filter: FrameFilter,
    /// END(SegmentDeleted), or SKIPPED and on at the oldest segment left.
    pub on_gap: OnGap,
    /// The protocol version it speaks: from 4 on, a link's frames come with their RECEPTION.
    pub version: u8,
}

impl Subscription {
    /// A subscription of `sources` (every source when empty) and `priority` (both when `None`).
    pub fn new(start: Start, sources: Vec<SourceKey>, priority: Option<Priority>) -> Subscription {
        Subscription {
            start,
            filter: FrameFilter {
                sources,
                priority,
                ..FrameFilter::default()
            },
            on_gap: OnGap::End,
            version: VERSION,
        }
    }

    /// The same subscription, of the frames received from `since` to `until` (inclusive;
    /// nanoseconds since the Unix epoch): it ends with END(Until) once none can come any more.
    pub fn within(self, since: Option<u64>, until: Option<u64>) -> Subscription {
        Subscription {
            filter: FrameFilter {
                since,
                until,
                ..self.filter
            },
            ..self
        }
    }

    /// The same subscription, going on past deleted segments after a SKIPPED notice.
    pub fn going_on_past_gaps(self) -> Subscription {
        Subscription {
            on_gap: OnGap::Oldest,
            ..self
        }
    }

    /// Appends the SUBSCRIBE message with its length prefix.
    pub fn encode(&self, dst: &mut BytesMut) {
        let start = match self.start {
            Start::Oldest => 0,
            Start::Now => 1,
            Start::After(_) => 2,
        };
        let mut code = match self.on_gap {
            OnGap::End => start,
            OnGap::Oldest => start | ON_GAP_OLDEST,
        };
        let window = self.filter.has_window();
        if window {
            code |= WINDOW;
        }
        let priority = match self.filter.priority {
            None => 0,
            Some(Priority::Routine) => 1,
            Some(Priority::Emergency) => 2,
        };
        let positions = match &self.start {
            Start::After(positions) => positions.clone(),
            _ => Positions::new(),
        };
        let sources = &self.filter.sources;
        let len = SUBSCRIBE_FIXED_LEN
            + 5 * sources.len()
            + SHARD_POSITION_LEN * positions.len()
            + usize::from(window) * WINDOW_LEN;
        dst.put_u32(len as u32);
        dst.put_slice(&[SUBSCRIBE, self.version, code, priority]);
        dst.put_u16(sources.len() as u16);
        dst.put_u8(positions.len() as u8);
        self.put_sources(dst);
        for at in positions.iter() {
            dst.put_u8(at.shard as u8);
            put_position(dst, at.position);
        }
        if window {
            let received = self.filter.received();
            dst.put_u64(*received.start());
            dst.put_u64(*received.end());
        }
    }

    fn put_sources(&self, dst: &mut BytesMut) {
        for &(kind, id) in &self.filter.sources {
            dst.put_u8(kind.to_byte());
            dst.put_u32(id);
        }
    }

    /// Decodes a SUBSCRIBE body; an error is the refusal to send.
    pub fn decode(body: &[u8]) -> Result<Subscription, (RefuseReason, String)> {
        if body.first() != Some(&SUBSCRIBE) {
            let what = body
                .first()
                .map_or("an empty message".into(), |t| format!("type {t:#04x}"));
            return Err(malformed(format!("expected SUBSCRIBE (0x11), got {what}")));
        }
        let Some(&version) = body.get(1) else {
            return Err(malformed("SUBSCRIBE of 1 byte, without a version".into()));
        };
        if !(OLDEST_VERSION..=VERSION).contains(&version) {
            return Err((
                RefuseReason::UnsupportedVersion,
                format!(
                    "SUBSCRIBE of protocol version {version}; this daemon speaks versions {OLDEST_VERSION} and {VERSION}"
                ),
            ));
        }
        Self::decode_body(body, version)
    }

    /// The fields after the version: a position per shard, after the sources.
    fn decode_body(mut body: &[u8], version: u8) -> Result<Subscription, (RefuseReason, String)> {
        let len = body.len();
        if len < SUBSCRIBE_FIXED_LEN {
            return Err(malformed(format!(
                "SUBSCRIBE of {len} bytes, shorter than {SUBSCRIBE_FIXED_LEN}"
            )));
        }
        body.advance(2);
        let code = body.get_u8();
        let on_gap = match code & ON_GAP_OLDEST {
            0 => OnGap::End,
            _ => OnGap::Oldest,
        };
        let window = code & WINDOW != 0;
        let from = code & !(ON_GAP_OLDEST | WINDOW);
        let priority = priority_filter(body.get_u8())?;
        let count = usize::from(body.get_u16());
        let held = usize::from(body.get_u8());
        let expected = SUBSCRIBE_FIXED_LEN
            + 5 * count
            + SHARD_POSITION_LEN * held
            + usize::from(window) * WINDOW_LEN;
        if len != expected {
            let window = if window { " and a time window" } else { "" };
            return Err(malformed(format!(
                "SUBSCRIBE of {len} bytes for {count} sources and {held} positions{window}; expected {expected}"
            )));
        }
        if from != 2 && held != 0 {
            return Err(malformed(format!(
                "{held} positions with start {from}: positions go with start 2 only"
            )));
        }
        let sources = get_sources(&mut body, count)?;
        let positions = get_positions(&mut body, held)?;
        let (since, until) = match window {
            true => get_window(&mut body)?,
            false => (None, None),
        };
        Ok(Subscription {
            start: start(from, || positions)?,
            filter: FrameFilter {
                sources,
                priority,
                since,
                until,
            },
            on_gap,
            version,
        })
    }
}

/// `held` positions, at most one per shard, whose bytes the caller checked are there.
fn get_positions(body: &mut &[u8], held: usize) -> Result<Positions, (RefuseReason, String)> {
    let mut positions = Positions::new();
    for _ in 0..held {
        let shard = usize::from(body.get_u8());
        let position = get_position(body);
        if shard >= MAX_SHARDS {
            return Err(malformed(format!(
                "a position of shard {shard}; shards are below {MAX_SHARDS}"
            )));
        }
        if positions.get(shard).is_some() {
            return Err(malformed(format!("two positions of shard {shard}")));
        }
        positions.set(ShardPosition { shard, position });
    }
    Ok(positions)
}

/// A time window, whose 16 bytes the caller checked are there: since (0: any time) and until
/// (`u64::MAX`: no end), since at most until.
fn get_window(body: &mut &[u8]) -> Result<(Option<u64>, Option<u64>), (RefuseReason, String)> {
    let (since, until) = (body.get_u64(), body.get_u64());
    if since > until {
        return Err(malformed(format!(
            "a time window from {since} to {until} ns: since is after until"
        )));
    }
    Ok((
        (since > 0).then_some(since),
        (until < u64::MAX).then_some(until),
    ))
}

fn malformed(why: String) -> (RefuseReason, String) {
    (RefuseReason::MalformedSubscribe, why)
}

/// SUBSCRIBE's start code, with the positions `after` gives for start 2.
fn start(code: u8, after: impl FnOnce() -> Positions) -> Result<Start, (RefuseReason, String)> {
    match code {
        0 => Ok(Start::Oldest),
        1 => Ok(Start::Now),
        2 => Ok(Start::After(after())),
        other => Err(malformed(format!("undefined start {other}"))),
    }
}

fn priority_filter(code: u8) -> Result<Option<Priority>, (RefuseReason, String)> {
    match code {
        0 => Ok(None),
        1 => Ok(Some(Priority::Routine)),
        2 => Ok(Some(Priority::Emergency)),
        other => Err(malformed(format!("undefined priority filter {other}"))),
    }
}

/// `count` sources, whose bytes the caller checked are there.
fn get_sources(body: &mut &[u8], count: usize) -> Result<Vec<SourceKey>, (RefuseReason, String)> {
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        let byte = body.get_u8();
        let kind = SourceKind::from_byte(byte)
            .ok_or_else(|| malformed(format!("undefined source kind {byte}")))?;
        sources.push((kind, body.get_u32()));
    }
    Ok(sources)
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
    /// The subscription's time window ended: every frame it wanted was sent.
    Until = 6,
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
    const ALL: [EndReason; 6] = [
        EndReason::Shutdown,
        EndReason::SegmentDeleted,
        EndReason::ArchiveDamaged,
        EndReason::ArchiveUnreadable,
        EndReason::UnexpectedMessage,
        EndReason::Until,
    ];
}

/// A start the archive cannot find, as REFUSED says it.
impl From<&ReadError> for RefuseReason {
    fn from(err: &ReadError) -> RefuseReason {
        match err {
            ReadError::UnknownPosition { .. } | ReadError::UnknownShard { .. } => {
                RefuseReason::UnknownPosition
            }
            ReadError::PositionPastEnd { .. } => RefuseReason::PositionPastEnd,
            ReadError::PositionDeleted { .. } | ReadError::SegmentDeleted { .. } => {
                RefuseReason::SegmentDeleted
            }
            ReadError::Damaged(_) | ReadError::Unreadable(_) => RefuseReason::ArchiveUnreadable,
        }
    }
}

/// A reading of the archive that cannot go on, as END says it.
impl From<&ReadError> for EndReason {
    fn from(err: &ReadError) -> EndReason {
        match err {
            ReadError::SegmentDeleted { .. } | ReadError::PositionDeleted { .. } => {
                EndReason::SegmentDeleted
            }
            ReadError::Damaged(_) => EndReason::ArchiveDamaged,
            ReadError::Unreadable(_)
            | ReadError::UnknownPosition { .. }
            | ReadError::PositionPastEnd { .. }
            | ReadError::UnknownShard { .. } => EndReason::ArchiveUnreadable,
        }
    }
}

/// Appends `run`'s FRAMES message with its length prefix, after its RECEPTION when it has one and
/// `version` carries it.
pub(crate) fn encode_frames(run: &FrameRun, version: u8, dst: &mut BytesMut) {
    if let Some((delivery, received)) = run.reception.as_ref().filter(|_| version >= 4) {
        encode_reception(delivery, received, dst);
    }
    let payloads: usize = run.frames.iter().map(|(_, p)| p.len()).sum();
    let len = FRAMES_HEADER_LEN + FRAME_ENTRY_LEN * run.frames.len() + payloads;
    dst.reserve(4 + len);
    dst.put_u32(len as u32);
    dst.put_u8(FRAMES);
    dst.put_u8(run.kind.to_byte());
    dst.put_u8(run.priority.to_byte());
    dst.put_u32(run.source_id);
    dst.put_u64(run.received_unix_ns);
    dst.put_u8(run.shard as u8);
    put_position(dst, run.first);
    dst.put_u32(run.frames.len() as u32);
    for (sequence, payload) in &run.frames {
        dst.put_u64(*sequence);
        dst.put_u32(payload.len() as u32);
        dst.put_slice(payload);
    }
}

/// Appends a RECEPTION message with its length prefix: the reception of each frame of the FRAMES
/// message that follows it.
fn encode_reception(delivery: &Delivery, received: &[Received], dst: &mut BytesMut) {
    let start = dst.len();
    dst.put_u32(0);
    dst.put_u8(RECEPTION);
    for name in [&delivery.link, &delivery.station] {
        put_name(dst, name);
    }
    dst.put_u32(received.len() as u32);
    for frame in received {
        let flags = frame.earth_unix_ns.map_or(0, |_| HAS_EARTH_TIME)
            | if frame.playback { PLAYBACK } else { 0 }
            | frame.ax25.map_or(0, |_| HAS_AX25);
        dst.put_u8(flags);
        if let Some(time) = frame.earth_unix_ns {
            dst.put_u64(time);
        }
        if let Some(Ax25Addresses { from, to }) = frame.ax25 {
            put_name(dst, &from.to_string());
            put_name(dst, &to.to_string());
        }
    }
    let len = (dst.len() - start - 4) as u32;
    dst[start..start + 4].copy_from_slice(&len.to_be_bytes());
}

/// A name: its length in bytes (at most 255, longer is cut), then its UTF-8.
fn put_name(dst: &mut BytesMut, name: &str) {
    let mut len = name.len().min(255);
    while !name.is_char_boundary(len) {
        len -= 1;
    }
    dst.put_u8(len as u8);
    dst.put_slice(&name.as_bytes()[..len]);
}

/// Decodes a RECEPTION body after its type byte.
fn decode_reception(mut body: Bytes) -> Result<RunReception, DecodeError> {
    let link = get_name(&mut body, "link")?;
    let station = get_name(&mut body, "station")?;
    let delivery = Arc::new(Delivery {
        link: link.into(),
        station: station.into(),
    });
    let count = take(&mut body, 4, "its count")?.get_u32();
    let mut received = Vec::with_capacity((count as usize).min(body.len()));
    for index in 0..count {
        let flags = take(&mut body, 1, "a frame's flags")?.get_u8();
        if flags & !(HAS_EARTH_TIME | PLAYBACK | HAS_AX25) != 0 {
            return Err(DecodeError::Reception(format!(
                "frame {index} has undefined flags 0x{flags:02X}"
            )));
        }
        let earth_unix_ns = match flags & HAS_EARTH_TIME {
            0 => None,
            _ => Some(take(&mut body, 8, "an earth-receive time")?.get_u64()),
        };
        let ax25 = match flags & HAS_AX25 {
            0 => None,
            _ => {
                let mut callsign = |what| {
                    let text = get_name(&mut body, what)?;
                    text.parse()
                        .map_err(|_| DecodeError::Reception(format!("{text:?} is not a callsign")))
                };
                let from = callsign("an AX.25 source")?;
                let to = callsign("an AX.25 destination")?;
                Some(Ax25Addresses { from, to })
            }
        };
        received.push(Received {
            earth_unix_ns,
            playback: flags & PLAYBACK != 0,
            ax25,
        });
    }
    if !body.is_empty() {
        let left = body.len();
        return Err(DecodeError::Reception(format!(
            "{left} bytes left over after {count} frames"
        )));
    }
    Ok((delivery, received))
}

/// The first `n` bytes of `body`, or the error of a RECEPTION cut within `what`.
fn take(body: &mut Bytes, n: usize, what: &str) -> Result<Bytes, DecodeError> {
    match body.len() >= n {
        true => Ok(body.split_to(n)),
        false => Err(DecodeError::Reception(format!("cut within {what}"))),
    }
}

/// A name: a length byte, then that many bytes of UTF-8.
fn get_name(body: &mut Bytes, what: &str) -> Result<String, DecodeError> {
    let len = usize::from(take(body, 1, what)?.get_u8());
    let bytes = take(body, len, what)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| DecodeError::Reception(format!("{what} is not UTF-8")))
}

/// Decodes a FRAMES body after its type byte (`len` bytes with it).
fn decode_frames(mut body: Bytes, len: usize) -> Result<FrameRun, DecodeError> {
    let header = FRAMES_HEADER_LEN;
    if len < header {
        return Err(DecodeError::Short {
            what: "FRAMES",
            len,
            least: header,
        });
    }
    let (kind_byte, priority_byte) = (body.get_u8(), body.get_u8());
    let kind = SourceKind::from_byte(kind_byte).ok_or(DecodeError::UndefinedKind(kind_byte))?;
    let priority =
        Priority::from_byte(priority_byte).ok_or(DecodeError::UndefinedPriority(priority_byte))?;
    let source_id = body.get_u32();
    let received_unix_ns = body.get_u64();
    let shard = usize::from(body.get_u8());
    if shard >= MAX_SHARDS {
        return Err(DecodeError::Shard(shard));
    }
    let first = get_position(&mut body);
    let count = body.get_u32();
    Ok(FrameRun {
        shard,
        kind,
        priority,
        source_id,
        received_unix_ns,
        first,
        frames: get_frames(body, count)?,
        reception: None,
    })
}

/// FRAMES' `count` frames, which must be all that is left of `body`, and at least one.
fn get_frames(mut body: Bytes, count: u32) -> Result<Vec<(u64, Bytes)>, DecodeError> {
    let mut frames = Vec::with_capacity((count as usize).min(body.len() / FRAME_ENTRY_LEN));
    for index in 0..count {
        if body.len() < FRAME_ENTRY_LEN {
            return Err(DecodeError::EndsInFrame { count, index });
        }
        let sequence = body.get_u64();
        let payload_len = body.get_u32() as usize;
        if payload_len > body.len() {
            return Err(DecodeError::Payload {
                index,
                len: payload_len,
                left: body.len(),
            });
        }
        frames.push((sequence, body.split_to(payload_len)));
    }
    if count == 0 || !body.is_empty() {
        return Err(DecodeError::LeftOver {
            count,
            left: body.len(),
        });
    }
    Ok(frames)
}

/// Why a body the daemon sent is not a message of this protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("an empty message")]
    Empty,
    #[error("{what} of {len} bytes, expected {expected}")]
    Length {
        what: &'static str,
        len: usize,
        expected: usize,
    },
    #[error("{what} of {len} bytes, expected at least {least}")]
    Short {
        what: &'static str,
        len: usize,
        least: usize,
    },
    #[error("FRAMES with undefined source kind {0}")]
    UndefinedKind(u8),
    #[error("SKIPPED with undefined source kind {0}")]
    SourceKind(u8),
    #[error("FRAMES with undefined priority {0}")]
    UndefinedPriority(u8),
    #[error("FRAMES of shard {0}; shards are below {MAX_SHARDS}")]
    Shard(usize),
    #[error("FRAMES of {count} frames ends in frame {index}")]
    EndsInFrame { count: u32, index: u32 },
    #[error("FRAMES frame {index}: a payload of {len} bytes, {left} left")]
    Payload { index: u32, len: usize, left: usize },
    #[error("FRAMES of {count} frames with {left} bytes left over")]
    LeftOver { count: u32, left: usize },
    /// REFUSED or END with a reason code this build does not know.
    #[error("{what} with unknown reason {code}: {detail}")]
    UnknownReason {
        what: &'static str,
        code: u8,
        detail: String,
    },
    #[error("unknown message type {0:#04x}")]
    Type(u8),
    #[error("RECEPTION: {0}")]
    Reception(String),
    #[error("RECEPTION of {reception} frames before FRAMES of {frames}")]
    ReceptionCount { reception: usize, frames: usize },
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
    /// FRAMES (0x96).
    Frames(FrameRun),
    End {
        reason: EndReason,
        detail: String,
    },
    /// A catalog version was published: sent after SUBSCRIBED when one exists, and
    /// at each publication.
    Catalog {
        version: u64,
    },
    /// SKIPPED (0x97): segments the subscription needed were deleted, and it goes on at the
    /// oldest one left (only to a SUBSCRIBE that asked for it).
    Skipped(Skipped),
    /// EARLIEST (0x98): a shard holds no frame received before this time any more (retention
    /// deleted its older segments), and the subscription's window starts before it.
    Earliest(Earliest),
    /// RECEPTION (0x99): the reception of each frame of the FRAMES that follows (version 4).
    Reception(RunReception),
}

/// Who delivered a run's frames, and each one's reception.
pub type RunReception = (Arc<Delivery>, Vec<Received>);

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
            DaemonMessage::Frames(run) => return encode_frames(run, VERSION, dst),
            DaemonMessage::Reception((delivery, received)) => {
                return encode_reception(delivery, received, dst)
            }
            DaemonMessage::Catalog { version } => {
                dst.put_u32(9);
                dst.put_u8(CATALOG);
                dst.put_u64(*version);
                return;
            }
            DaemonMessage::Skipped(skipped) => return encode_skipped(skipped, dst),
            DaemonMessage::Earliest(earliest) => {
                dst.put_u32(10);
                dst.put_u8(EARLIEST);
                dst.put_u8(earliest.shard as u8);
                dst.put_u64(earliest.oldest);
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
    pub fn decode(mut body: Bytes) -> Result<DaemonMessage, DecodeError> {
        let len = body.len();
        let Some(&kind) = body.first() else {
            return Err(DecodeError::Empty);
        };
        let length = |what, expected| DecodeError::Length {
            what,
            len,
            expected,
        };
        body.advance(1);
        match kind {
            SUBSCRIBED if len == 2 => Ok(DaemonMessage::Subscribed {
                version: body.get_u8(),
            }),
            SUBSCRIBED => Err(length("SUBSCRIBED", 2)),
            FRAMES => decode_frames(body, len).map(DaemonMessage::Frames),
            CATALOG if len == 9 => Ok(DaemonMessage::Catalog {
                version: body.get_u64(),
            }),
            CATALOG => Err(length("CATALOG", 9)),
            SKIPPED => decode_skipped(body, len).map(DaemonMessage::Skipped),
            EARLIEST if len == 10 => Ok(DaemonMessage::Earliest(Earliest {
                shard: usize::from(body.get_u8()),
                oldest: body.get_u64(),
            })),
            EARLIEST => Err(length("EARLIEST", 10)),
            RECEPTION => decode_reception(body).map(DaemonMessage::Reception),
            REFUSED | END if len < 2 => Err(DecodeError::Short {
                what: "REFUSED or END",
                len,
                least: 2,
            }),
            REFUSED | END => {
                let code = body.get_u8();
                let detail = String::from_utf8_lossy(&body).into_owned();
                if kind == REFUSED {
                    let reason = RefuseReason::ALL
                        .into_iter()
                        .find(|r| *r as u8 == code)
                        .ok_or_else(|| DecodeError::UnknownReason {
                            what: "REFUSED",
                            code,
                            detail: detail.clone(),
                        })?;
                    Ok(DaemonMessage::Refused { reason, detail })
                } else {
                    let reason = EndReason::ALL
                        .into_iter()
                        .find(|r| *r as u8 == code)
                        .ok_or_else(|| DecodeError::UnknownReason {
                            what: "END",
                            code,
                            detail: detail.clone(),
                        })?;
                    Ok(DaemonMessage::End { reason, detail })
                }
            }
            other => Err(DecodeError::Type(other)),
        }
    }
}

/// Appends a SKIPPED message with its length prefix.
fn encode_skipped(skipped: &Skipped, dst: &mut BytesMut) {
    let len = SKIPPED_FIXED_LEN + SKIPPED_SOURCE_LEN * skipped.sources.len();
    dst.reserve(4 + len);
    dst.put_u32(len as u32);
    dst.put_u8(SKIPPED);
    dst.put_u8(skipped.shard as u8);
    dst.put_u64(skipped.deleted);
    dst.put_u64(skipped.resumed);
    dst.put_u32(skipped.sources.len() as u32);
    for &((kind, id), frames) in &skipped.sources {
        dst.put_u8(kind.to_byte());
        dst.put_u32(id);
        dst.put_u64(frames);
    }
}

/// A SKIPPED body after its type, `len` bytes in all with the type.
fn decode_skipped(mut body: Bytes, len: usize) -> Result<Skipped, DecodeError> {
    if len < SKIPPED_FIXED_LEN {
        let least = SKIPPED_FIXED_LEN;
        return Err(DecodeError::Short {
            what: "SKIPPED",
            len,
            least,
        });
    }
    let (shard, deleted, resumed) = (body.get_u8(), body.get_u64(), body.get_u64());
    let count = body.get_u32() as usize;
    let expected = count
        .checked_mul(SKIPPED_SOURCE_LEN)
        .and_then(|n| n.checked_add(SKIPPED_FIXED_LEN));
    if expected != Some(len) {
        let expected = expected.unwrap_or(usize::MAX);
        return Err(DecodeError::Length {
            what: "SKIPPED",
            len,
            expected,
        });
    }
    let mut sources = Vec::with_capacity(count);
    for _ in 0..count {
        let byte = body.get_u8();
        let kind = SourceKind::from_byte(byte).ok_or(DecodeError::SourceKind(byte))?;
        sources.push(((kind, body.get_u32()), body.get_u64()));
    }
    Ok(Skipped {
        shard: usize::from(shard),
        deleted,
        resumed,
        sources,
    })
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

    fn at(shard: usize, segment: u64, offset: u64, index: u32) -> ShardPosition {
        ShardPosition {
            shard,
            position: Position {
                segment,
                offset,
                index,
            },
        }
    }

    fn after(positions: &[ShardPosition]) -> Start {
        Start::After(positions.iter().copied().collect())
    }

    /// Hex bytes as the documentation writes them, whitespace between.
    fn hex_bytes(documented: &str) -> Vec<u8> {
        documented
            .split_whitespace()
            .map(|b| u8::from_str_radix(b, 16).unwrap())
            .collect()
    }

    #[test]
    fn subscribe_is_byte_exact_and_round_trips() {
        let subscription = Subscription::new(
            after(&[at(0, 1, 8, 2)]),
            vec![(SourceKind::ArchivedReplay, 7)],
            Some(Priority::Emergency),
        );
        let mut encoded = BytesMut::new();
        subscription.encode(&mut encoded);
        let expected: &[u8] = &[
            0, 0, 0, 33, 0x11, 4, 2, 2, 0, 1, 1, 1, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
            0, 0, 0, 0, 8, 0, 0, 0, 2,
        ];
        assert_eq!(&encoded[..], expected);
        assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
    }

    #[test]
    fn every_start_round_trips() {
        let starts = [
            Start::Oldest,
            Start::Now,
            after(&[at(0, 3, 8, 1)]),
            after(&[at(0, 3, 8, 1), at(5, 1, 90, 0), at(63, 9, 8, 4)]),
            Start::After(Positions::new()),
        ];
        for start in starts {
            let subscription = Subscription::new(
                start,
                vec![(SourceKind::LiveUplink, 1), (SourceKind::ArchivedReplay, 2)],
                None,
            );
            let mut encoded = BytesMut::new();
            subscription.encode(&mut encoded);
            let decoded = Subscription::decode(&body(encoded)).unwrap();
            assert_eq!(decoded, subscription);
        }
    }

    #[test]
    fn a_time_window_is_byte_exact_round_trips_and_is_checked() {
        let subscription = Subscription::new(Start::Oldest, vec![], None)
            .within(Some(1_700_000_000_000_000_000), None)
            .going_on_past_gaps();
        let mut encoded = BytesMut::new();
        subscription.encode(&mut encoded);
        // Start 0 with bits 7 and 6, since, until u64::MAX (no end): docs/follow-protocol.md's
        // example.
        let documented = "00 00 00 17 11 04 c0 00 00 00 00 \
            17 97 9c fe 36 2a 00 00 ff ff ff ff ff ff ff ff";
        assert_eq!(&encoded[..], &hex_bytes(documented)[..]);
        assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
        let windows = [(None, Some(5)), (Some(5), Some(5)), (Some(1), Some(9))];
        for (since, until) in windows {
            let subscription = Subscription::new(after(&[at(1, 2, 8, 0)]), vec![], None);
            let subscription = subscription.within(since, until);
            let mut encoded = BytesMut::new();
            subscription.encode(&mut encoded);
            assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
        }
        let mut encoded = BytesMut::new();
        Subscription::new(Start::Oldest, vec![], None)
            .within(Some(9), Some(10))
            .encode(&mut encoded);
        let good = body(encoded).to_vec();
        // Since after until; the window cut short; the bit without the window.
        let mut backwards = good.clone();
        backwards[14] = 11;
        let (reason, detail) = Subscription::decode(&backwards).unwrap_err();
        assert_eq!(reason, RefuseReason::MalformedSubscribe);
        assert_eq!(
            detail,
            "a time window from 11 to 10 ns: since is after until"
        );
        for bad in [good[..good.len() - 1].to_vec(), good[..7].to_vec()] {
            let (reason, detail) = Subscription::decode(&bad).unwrap_err();
            assert_eq!(reason, RefuseReason::MalformedSubscribe, "{detail}");
        }
    }

    fn kind(byte: u8) -> SourceKind {
        match byte % 2 {
            0 => SourceKind::LiveUplink,
            _ => SourceKind::ArchivedReplay,
        }
    }

    proptest::proptest! {
        /// Any subscription a consumer can send decodes to itself: every start, sources,
        /// positions in distinct shards, priority, window and choice on gaps.
        #[test]
        fn any_subscription_round_trips(
            start in 0u8..3,
            sources in proptest::collection::vec((0u8..2, proptest::prelude::any::<u32>()), 0..40),
            shards in proptest::collection::btree_map(0usize..64, (0u64..9, 8u64..1 << 40, 0u32..9), 0..8),
            priority in 0u8..3,
            window in proptest::option::of((1u64..u64::MAX / 2, 0u64..u64::MAX / 2)),
            go_on in proptest::prelude::any::<bool>(),
        ) {
            let positions = shards
                .into_iter()
                .map(|(shard, (segment, offset, index))| at(shard, segment, offset, index))
                .collect::<Vec<_>>();
            let start = match start {
                0 => Start::Oldest,
                1 => Start::Now,
                _ => after(&positions),
            };
            let sources = sources.into_iter().map(|(k, id)| (kind(k), id)).collect();
            let priority = match priority {
                0 => None,
                1 => Some(Priority::Routine),
                _ => Some(Priority::Emergency),
            };
            let mut subscription = Subscription::new(start, sources, priority);
            if let Some((since, more)) = window {
                subscription = subscription.within(Some(since), Some(since + more));
            }
            if go_on {
                subscription = subscription.going_on_past_gaps();
            }
            let mut encoded = BytesMut::new();
            subscription.encode(&mut encoded);
            proptest::prop_assert_eq!(Subscription::decode(&body(encoded)), Ok(subscription));
        }

        /// Any message the daemon sends decodes to itself.
        #[test]
        fn any_daemon_message_round_trips(
            shard in 0usize..64,
            (kind_byte, source_id, received) in (0u8..2, proptest::prelude::any::<u32>(), proptest::prelude::any::<u64>()),
            frames in proptest::collection::vec(
                (proptest::prelude::any::<u64>(), proptest::collection::vec(proptest::prelude::any::<u8>(), 0..64)),
                1..8,
            ),
            (segment, offset, index) in (proptest::prelude::any::<u64>(), proptest::prelude::any::<u64>(), 0u32..1000),
            skipped in proptest::collection::vec((0u8..2, proptest::prelude::any::<u32>(), proptest::prelude::any::<u64>()), 0..10),
            detail in "[a-z ]{0,40}",
        ) {
            let run = FrameRun {
                shard,
                kind: kind(kind_byte),
                priority: Priority::Routine,
                source_id,
                received_unix_ns: received,
                first: Position { segment, offset, index },
                frames: frames.into_iter().map(|(s, p)| (s, Bytes::from(p))).collect(),
                reception: None,
            };
            let skipped = Skipped {
                shard,
                deleted: segment,
                resumed: segment.saturating_add(1),
                sources: skipped.into_iter().map(|(k, id, n)| ((kind(k), id), n)).collect(),
            };
            let messages = [
                DaemonMessage::Frames(run),
                DaemonMessage::Skipped(skipped),
                DaemonMessage::Earliest(Earliest { shard, oldest: received }),
                DaemonMessage::Catalog { version: offset },
                DaemonMessage::End { reason: EndReason::Until, detail: detail.clone() },
                DaemonMessage::Refused { reason: RefuseReason::MalformedSubscribe, detail },
            ];
            for message in messages {
                let mut encoded = BytesMut::new();
                message.encode(&mut encoded);
                proptest::prop_assert_eq!(DaemonMessage::decode(body(encoded)), Ok(message));
            }
        }
    }

    /// docs/follow-protocol.md's RECEPTION: a link's frame with its earth-receive time and AX.25
    /// addresses, then one played back, before their FRAMES from version 4 on; a version 3
    /// subscription gets the FRAMES alone.
    #[test]
    fn reception_comes_before_its_frames_from_version_4_on() {
        let delivery = Arc::new(Delivery {
            link: "uhf".into(),
            station: "svalbard".into(),
        });
        let received = vec![
            Received {
                earth_unix_ns: Some(1_700_000_000_000_000_000),
                playback: false,
                ax25: Some(Ax25Addresses {
                    from: "N0CALL-1".parse().unwrap(),
                    to: "CQ".parse().unwrap(),
                }),
            },
            Received {
                playback: true,
                ..Received::default()
            },
        ];
        let run = FrameRun {
            shard: 0,
            kind: SourceKind::LiveUplink,
            priority: Priority::Routine,
            source_id: 500,
            received_unix_ns: 1_700_000_000_001_000_000,
            first: Position {
                segment: 1,
                offset: 8,
                index: 0,
            },
            frames: vec![(1, Bytes::from_static(b"a")), (2, Bytes::from_static(b"b"))],
            reception: Some((Arc::clone(&delivery), received.clone())),
        };
        let (mut v3, mut v4) = (BytesMut::new(), BytesMut::new());
        encode_frames(&run, 3, &mut v3);
        encode_frames(&run, 4, &mut v4);
        let (reception, frames) = v4.split_at(v4.len() - v3.len());
        assert_eq!(frames, &v3[..]);
        let documented = "00 00 00 28 99 03 75 68 66 08 73 76 61 6c 62 61 72 64 00 00 00 02 05 17 97 9c fe 36 2a 00 00 08 4e 30 43 41 4c 4c 2d 31 02 43 51 02";
        assert_eq!(reception, &hex_bytes(documented)[..]);
        let decoded = DaemonMessage::decode(Bytes::copy_from_slice(&reception[4..]));
        assert_eq!(decoded, Ok(DaemonMessage::Reception((delivery, received))));
        for cut in 5..reception.len() - 1 {
            let body = Bytes::copy_from_slice(&reception[4..cut]);
            assert!(DaemonMessage::decode(body).is_err(), "cut at {cut}");
        }
    }

    /// The example of `docs/follow-protocol.md`, byte for byte.
    #[test]
    fn the_documented_example_is_what_is_encoded() {
        let mut encoded = BytesMut::new();
        Subscription::new(
            after(&[at(0, 1, 8, 0), at(2, 4, 8, 1)]),
            vec![(SourceKind::LiveUplink, 7)],
            Some(Priority::Emergency),
        )
        .encode(&mut encoded);
        DaemonMessage::Subscribed { version: VERSION }.encode(&mut encoded);
        let run = FrameRun {
            shard: 2,
            kind: SourceKind::LiveUplink,
            priority: Priority::Emergency,
            source_id: 7,
            received_unix_ns: 1_700_000_000_001_000_000,
            first: Position {
                segment: 4,
                offset: 123,
                index: 2,
            },
            frames: vec![(5, Bytes::from_static(b"ab")), (6, Bytes::new())],
            reception: None,
        };
        encode_frames(&run, VERSION, &mut encoded);
        let documented = "00 00 00 36 11 04 02 02 00 01 02 00 00 00 00 07 \
            00 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 08 00 00 00 00 \
            02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 08 00 00 00 01 \
            00 00 00 02 91 04 \
            00 00 00 42 96 00 01 00 00 00 07 17 97 9c fe 36 39 42 40 \
            02 00 00 00 00 00 00 00 04 00 00 00 00 00 00 00 7b 00 00 00 02 \
            00 00 00 02 00 00 00 00 00 00 00 05 00 00 00 02 61 62 \
            00 00 00 00 00 00 00 06 00 00 00 00";
        assert_eq!(&encoded[..], &hex_bytes(documented)[..]);
    }

    /// A SUBSCRIBE of versions 1 and 2 (one position, shard 0's, before the filters) is refused
    /// with the version it carries and the one spoken, whatever its layout.
    #[test]
    fn a_subscribe_of_another_version_is_refused_naming_both_versions() {
        let version_1 = hex_bytes(
            "11 01 02 00 00 00 00 00 00 00 01 00 00 00 00 00 00 00 08 00 00 00 00 \
             02 00 01 00 00 00 00 07",
        );
        for (version, bytes) in [
            (1, version_1.clone()),
            (2, [&[0x11, 2], &version_1[2..]].concat()),
            (5, [&[0x11, 5], &version_1[2..]].concat()),
            (0, vec![0x11, 0]),
        ] {
            let (reason, detail) = Subscription::decode(&bytes).unwrap_err();
            assert_eq!(reason, RefuseReason::UnsupportedVersion, "{detail}");
            assert_eq!(
                detail,
                format!(
                    "SUBSCRIBE of protocol version {version}; this daemon speaks versions 3 and 4"
                )
            );
        }
    }

    #[test]
    fn a_bad_subscribe_is_refused_with_its_reason() {
        let mut encoded = BytesMut::new();
        Subscription::new(
            after(&[at(0, 1, 8, 0), at(4, 1, 8, 0)]),
            vec![(SourceKind::LiveUplink, 1)],
            None,
        )
        .encode(&mut encoded);
        let good = body(encoded).to_vec();
        assert!(Subscription::decode(&good).is_ok());
        // The start, the priority filter, the first source's kind, the second position's shard.
        let (start, filter, kind, second) = (2, 3, 7, 33);
        let cases: Vec<(Vec<u8>, RefuseReason)> = vec![
            (vec![], RefuseReason::MalformedSubscribe),
            (vec![0x11], RefuseReason::MalformedSubscribe),
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
                [&good[..start], &[3], &good[start + 1..]].concat(),
                RefuseReason::MalformedSubscribe,
            ),
            (
                [&good[..filter], &[3], &good[filter + 1..]].concat(),
                RefuseReason::MalformedSubscribe,
            ),
            (
                [&good[..kind], &[9], &good[kind + 1..]].concat(),
                RefuseReason::MalformedSubscribe,
            ),
            // Too short, positions with start "now", a shard out of range, the same shard twice.
            (good[..6].to_vec(), RefuseReason::MalformedSubscribe),
            (
                [&good[..start], &[1], &good[start + 1..]].concat(),
                RefuseReason::MalformedSubscribe,
            ),
            (
                [&good[..second], &[64], &good[second + 1..]].concat(),
                RefuseReason::MalformedSubscribe,
            ),
            (
                [&good[..second], &[0], &good[second + 1..]].concat(),
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
        let run = |shard| FrameRun {
            shard,
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
            reception: None,
        };
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
            DaemonMessage::End {
                reason: EndReason::Until,
                detail: "window".into(),
            },
            DaemonMessage::Earliest(Earliest {
                shard: 63,
                oldest: 1_700_000_000_000_000_000,
            }),
            DaemonMessage::Frames(run(0)),
            DaemonMessage::Frames(run(63)),
        ];
        for message in messages {
            let mut encoded = BytesMut::new();
            message.encode(&mut encoded);
            assert_eq!(DaemonMessage::decode(body(encoded)), Ok(message));
        }
        // FRAMES is type 0x96; 0x93 (FRAMES without a shard) is no message of this version.
        let mut frames = BytesMut::new();
        encode_frames(&run(0), VERSION, &mut frames);
        assert_eq!(frames[4], 0x96);
        let mut unsharded = body(frames).to_vec();
        unsharded.remove(15);
        unsharded[0] = 0x93;
        assert!(DaemonMessage::decode(Bytes::from(unsharded)).is_err());
        for bad in [
            &[0x92, 99][..],
            &[0x94, 0],
            &[0x7f],
            &[0x93, 0, 0],
            &[0x98, 1],
        ] {
            assert!(DaemonMessage::decode(Bytes::copy_from_slice(bad)).is_err());
        }
        // FRAMES with no frame, a frame cut short, a byte left over, and a shard out of range.
        let encoded = |frames: Vec<(u64, Bytes)>, shard| {
            let mut encoded = BytesMut::new();
            let run = FrameRun {
                shard,
                kind: SourceKind::ArchivedReplay,
                priority: Priority::Routine,
                source_id: 1,
                received_unix_ns: 0,
                first: Position::default(),
                frames,
                reception: None,
            };
            encode_frames(&run, VERSION, &mut encoded);
            body(encoded).to_vec()
        };
        let one = encoded(vec![(1, Bytes::from_static(b"xyz"))], 0);
        let mut shard_64 = one.clone();
        shard_64[15] = 64;
        let bad = [
            encoded(Vec::new(), 0),
            one[..one.len() - 1].to_vec(),
            [&one[..], &[0]].concat(),
            shard_64,
        ];
        for bad in bad {
            assert!(DaemonMessage::decode(Bytes::from(bad)).is_err());
        }
    }
}
