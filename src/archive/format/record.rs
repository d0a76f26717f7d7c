//! A segment's records and how they are written: the magic, the record types, and an encoder
//! per record (`docs/archive-format.md` shows each byte by byte).

use bytes::Bytes;

use crate::domain::clock::ClockEvent;
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::reception::{Ax25Addresses, Delivery, Received, Reception};

/// The first 8 bytes of every segment and journal file written: format version [`FORMAT_VERSION`].
pub const MAGIC: &[u8; 8] = b"TLMSEG06";

/// The format version the magic names, the one written.
pub const FORMAT_VERSION: u8 = 6;

/// The format versions read: every one the project wrote. Each is the next without its newest
/// record type ([`versions_of`]), except that versions 1 and 2 kept runs of one sequence as
/// STORED records.
pub const READ_VERSIONS: std::ops::RangeInclusive<u8> = 1..=FORMAT_VERSION;

/// The magic's bytes before the two digits of its version.
pub(super) const MAGIC_STEM: &[u8] = b"TLMSEG";

/// Bytes in front of every record body: the length (4) and the CRC (4).
pub(crate) const RECORD_HEADER_LEN: usize = 8;

/// Largest body a reader accepts, and the most a writer puts in one FRAMES record. A frame's
/// payload is under the wire protocol's `connection.max_frame_length`, at most 16 MiB; the rest is
/// room for the record's own fields. A larger length can only be damage.
pub(crate) const MAX_BODY_LEN: u32 = 17 * 1024 * 1024;

/// Record type of a frame.
pub(crate) const TYPE_FRAME: u8 = 1;
/// Record type of a watermark.
pub(crate) const TYPE_WATERMARK: u8 = 2;
/// Record type of a stored-above-watermark marker for one sequence (versions 1 and 2).
pub(crate) const TYPE_STORED: u8 = 3;
/// Record type of a batch of frames of one source and priority.
pub(crate) const TYPE_FRAMES: u8 = 4;
/// Record type of a stored-above-watermark marker for a run of sequences (version 3 on).
pub(crate) const TYPE_STORED_RUN: u8 = 5;
/// Record type of a batch of a link's frames, with their reception.
pub(crate) const TYPE_RECEIVED_FRAMES: u8 = 6;
/// Record type of a start of the daemon or a step of the wall clock (version 5).
pub(crate) const TYPE_CLOCK: u8 = 7;
/// Record type of a batch of a link's frames read from a station's recording, with their
/// reception and the recording's name (version 6).
pub(crate) const TYPE_RECORDED_FRAMES: u8 = 8;

/// The format versions that have records of type `record_type`: from the first to the last (a
/// version 4 segment may hold a CLOCK record: readers take one there, though none is written).
/// `None` for a type no version has.
pub(super) fn versions_of(record_type: u8) -> Option<std::ops::RangeInclusive<u8>> {
    Some(match record_type {
        TYPE_FRAME | TYPE_WATERMARK => 1..=FORMAT_VERSION,
        TYPE_STORED => 1..=2,
        TYPE_FRAMES => 2..=FORMAT_VERSION,
        TYPE_STORED_RUN => 3..=FORMAT_VERSION,
        TYPE_RECEIVED_FRAMES => 4..=FORMAT_VERSION,
        TYPE_CLOCK => 4..=FORMAT_VERSION,
        TYPE_RECORDED_FRAMES => 6..=FORMAT_VERSION,
        _ => return None,
    })
}

/// Body bytes of a frame record before its payload.
pub(crate) const FRAME_BODY_FIXED: usize = 23;
/// Body bytes of a WATERMARK or STORED record.
pub(crate) const MARK_BODY_LEN: usize = 14;
/// Body bytes of a STORED RUN record.
pub(crate) const RUN_BODY_LEN: usize = 22;
/// Body bytes of a CLOCK record.
pub(crate) const CLOCK_BODY_LEN: usize = 26;
/// Body bytes of a FRAMES record before its first frame.
pub(crate) const FRAMES_BODY_FIXED: usize = 19;
/// Bytes of a FRAMES record per frame before the frame's payload: sequence and length.
pub(crate) const FRAMES_ENTRY_FIXED: usize = 12;
/// Most bytes of a RECEIVED or RECORDED FRAMES record before its first frame: the FRAMES
/// record's, then the link's, the station's and the recording's names (at most 255 bytes each,
/// behind a length byte).
pub(crate) const RECEIVED_BODY_MAX_FIXED: usize = FRAMES_BODY_FIXED + 3 + 3 * 255;
/// Most bytes of a RECEIVED FRAMES record per frame before its payload: a FRAMES record's, the
/// flags, the earth-receive time, two AX.25 addresses.
pub(crate) const RECEIVED_ENTRY_MAX_FIXED: usize = FRAMES_ENTRY_FIXED + 1 + 8 + 2 * CALLSIGN_LEN;

/// Bytes of an AX.25 callsign in a record: 6 characters, then the SSID.
pub(super) const CALLSIGN_LEN: usize = 7;

/// One record of a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    /// A telemetry frame.
    Frame(FrameRecord),
    /// Every frame of the source with a sequence up to and including `acked` is stored, in this
    /// segment or an earlier one.
    Watermark {
        kind: SourceKind,
        source_id: u32,
        acked: u64,
    },
    /// The frames of the source with sequences `first..=last`, above its watermark, are stored in
    /// an earlier segment. Written in a new segment's checkpoint, so recovery can read the newest
    /// segment alone.
    Stored {
        kind: SourceKind,
        source_id: u32,
        first: u64,
        last: u64,
    },
    /// The daemon started, or the wall clock stepped: where received times jump, or where they
    /// did not though the wall clock did (`crate::domain::clock`).
    Clock(ClockEvent),
}

impl Entry {
    /// The source the record is about; `None` for a CLOCK record, which is about every source.
    pub(crate) fn source(&self) -> Option<(SourceKind, u32)> {
        match self {
            Entry::Frame(f) => Some((f.kind, f.source_id)),
            Entry::Watermark {
                kind, source_id, ..
            }
            | Entry::Stored {
                kind, source_id, ..
            } => Some((*kind, *source_id)),
            Entry::Clock(_) => None,
        }
    }

    /// Appends the record's encoding to `out` (a frame as a FRAME record of its own).
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Entry::Frame(f) => f.encode(out),
            Entry::Watermark {
                kind,
                source_id,
                acked,
            } => encode_watermark(out, *kind, *source_id, *acked),
            Entry::Stored {
                kind,
                source_id,
                first,
                last,
            } => encode_stored(out, *kind, *source_id, *first, *last),
            Entry::Clock(event) => encode_clock(out, event),
        }
    }
}

/// A frame as the archive stored it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameRecord {
    pub kind: SourceKind,
    pub priority: Priority,
    pub source_id: u32,
    pub sequence: u64,
    /// When the daemon read the frame off the socket, in nanoseconds since the Unix epoch: what a
    /// replay at the recorded pace follows.
    pub received_unix_ns: u64,
    pub payload: Bytes,
    /// What the station said of its reception: a link's frames only (boxed: most frames have
    /// none, and a frame is moved often).
    pub reception: Option<Box<Reception>>,
}

impl FrameRecord {
    /// Appends it as a record of its own: a FRAME record, or a RECEIVED FRAMES record of one
    /// frame when it has a reception.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        let Some(reception) = &self.reception else {
            return encode_frame(
                out,
                self.kind,
                self.priority,
                self.source_id,
                self.sequence,
                self.received_unix_ns,
                &self.payload,
            );
        };
        let head = FramesHead {
            kind: self.kind,
            priority: self.priority,
            source_id: self.source_id,
            received_unix_ns: self.received_unix_ns,
        };
        let frame = (self.sequence, &self.payload[..], reception.received);
        encode_received_frames(out, head, &reception.delivery, [frame]);
    }
}

/// Appends one record: length, CRC, then the body `write_body` appends.
pub(super) fn encode_record(out: &mut Vec<u8>, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    write_body(out);
    seal_record(out, start);
}

/// Fills in the length and CRC of the record whose header starts at `start` and whose body runs to
/// the end of `out`.
pub(super) fn seal_record(out: &mut [u8], start: usize) {
    let body = &out[start + RECORD_HEADER_LEN..];
    let len = body.len() as u32;
    let crc = crc32fast::hash(body);
    out[start..start + 4].copy_from_slice(&len.to_be_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
}

/// Appends a FRAME record (type 1) to `out`.
pub fn encode_frame(
    out: &mut Vec<u8>,
    kind: SourceKind,
    priority: Priority,
    source_id: u32,
    sequence: u64,
    received_unix_ns: u64,
    payload: &[u8],
) {
    out.reserve(RECORD_HEADER_LEN + FRAME_BODY_FIXED + payload.len());
    encode_record(out, |b| {
        b.push(TYPE_FRAME);
        b.push(kind.to_byte());
        b.push(priority.to_byte());
        b.extend_from_slice(&source_id.to_be_bytes());
        b.extend_from_slice(&sequence.to_be_bytes());
        b.extend_from_slice(&received_unix_ns.to_be_bytes());
        b.extend_from_slice(payload);
    });
}

/// What the frames of one FRAMES record share.
#[derive(Debug, Clone, Copy)]
pub struct FramesHead {
    pub kind: SourceKind,
    pub priority: Priority,
    pub source_id: u32,
    /// When the daemon read them, in nanoseconds since the Unix epoch.
    pub received_unix_ns: u64,
}

/// Appends frames of one source and priority, all received at `received_unix_ns`, as one FRAMES
/// record (type 4), or as several when one would pass [`MAX_BODY_LEN`]. Writes nothing for no
/// frames.
pub fn encode_frames<'a>(
    out: &mut Vec<u8>,
    kind: SourceKind,
    priority: Priority,
    source_id: u32,
    received_unix_ns: u64,
    frames: impl IntoIterator<Item = (u64, &'a [u8])>,
) {
    let head = FramesHead {
        kind,
        priority,
        source_id,
        received_unix_ns,
    };
    let frames = frames.into_iter().map(|(s, p)| (s, p, Received::default()));
    encode_frames_within(out, MAX_BODY_LEN as usize, head, None, frames);
}

/// As [`encode_frames`], a link's frames delivered by `delivery`, each with its reception, as
/// RECEIVED FRAMES records (type 6), or RECORDED FRAMES (type 8) when a backfill read them from
/// a recording.
pub fn encode_received_frames<'a>(
    out: &mut Vec<u8>,
    head: FramesHead,
    delivery: &Delivery,
    frames: impl IntoIterator<Item = (u64, &'a [u8], Received)>,
) {
    encode_frames_within(out, MAX_BODY_LEN as usize, head, Some(delivery), frames);
}

/// [`encode_frames`] and [`encode_received_frames`] with the largest body a parameter, so that
/// tests can reach it.
pub(super) fn encode_frames_within<'a>(
    out: &mut Vec<u8>,
    max_body: usize,
    head: FramesHead,
    delivery: Option<&Delivery>,
    frames: impl IntoIterator<Item = (u64, &'a [u8], Received)>,
) {
    // The open record: where its header starts, and how many frames it holds.
    let mut open: Option<(usize, u32)> = None;
    for (sequence, payload, received) in frames {
        let entry =
            FRAMES_ENTRY_FIXED + payload.len() + delivery.map_or(0, |_| received_len(&received));
        if let Some((start, count)) = open {
            let body = out.len() - start - RECORD_HEADER_LEN;
            if body + entry > max_body {
                close_frames(out, start, count);
                open = None;
            }
        }
        let (_, count) = open.get_or_insert_with(|| {
            let start = out.len();
            out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
            out.push(match delivery {
                Some(d) if d.recording.is_some() => TYPE_RECORDED_FRAMES,
                Some(_) => TYPE_RECEIVED_FRAMES,
                None => TYPE_FRAMES,
            });
            out.push(head.kind.to_byte());
            out.push(head.priority.to_byte());
            out.extend_from_slice(&head.source_id.to_be_bytes());
            out.extend_from_slice(&head.received_unix_ns.to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            if let Some(delivery) = delivery {
                for name in delivery.names() {
                    out.push(name.len() as u8);
                    out.extend_from_slice(name);
                }
            }
            (start, 0)
        });
        out.extend_from_slice(&sequence.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        if delivery.is_some() {
            encode_received(&received, out);
        }
        out.extend_from_slice(payload);
        *count += 1;
    }
    if let Some((start, count)) = open {
        close_frames(out, start, count);
    }
}

/// Bytes of a received frame's flags and the fields they announce.
pub(super) fn received_len(received: &Received) -> usize {
    1 + received.earth_unix_ns.map_or(0, |_| 8) + received.ax25.map_or(0, |_| 2 * CALLSIGN_LEN)
}

/// Appends a received frame's flags and the fields they announce.
fn encode_received(received: &Received, out: &mut Vec<u8>) {
    out.push(received.flags().byte());
    if let Some(time) = received.earth_unix_ns {
        out.extend_from_slice(&time.to_be_bytes());
    }
    if let Some(Ax25Addresses { from, to }) = received.ax25 {
        for callsign in [from, to] {
            let (call, ssid) = callsign.parts();
            out.extend_from_slice(&call);
            out.push(ssid);
        }
    }
}

/// Writes the frame count of the FRAMES record at `start`, then its length and CRC.
fn close_frames(out: &mut [u8], start: usize, count: u32) {
    let at = start + RECORD_HEADER_LEN + FRAMES_BODY_FIXED - 4;
    out[at..at + 4].copy_from_slice(&count.to_be_bytes());
    seal_record(out, start);
}

/// Appends a WATERMARK record (type 2) to `out`.
pub fn encode_watermark(out: &mut Vec<u8>, kind: SourceKind, source_id: u32, acked: u64) {
    encode_mark(out, TYPE_WATERMARK, kind, source_id, acked);
}

/// Appends a STORED RUN record (type 5) for `first..=last` to `out`.
pub fn encode_stored(out: &mut Vec<u8>, kind: SourceKind, source_id: u32, first: u64, last: u64) {
    encode_record(out, |b| {
        b.push(TYPE_STORED_RUN);
        b.push(kind.to_byte());
        b.extend_from_slice(&source_id.to_be_bytes());
        b.extend_from_slice(&first.to_be_bytes());
        b.extend_from_slice(&last.to_be_bytes());
    });
}

/// Appends a CLOCK record (type 7) for `event` to `out`.
pub(crate) fn encode_clock(out: &mut Vec<u8>, event: &ClockEvent) {
    encode_record(out, |b| {
        b.push(TYPE_CLOCK);
        b.push(event.kind.to_byte());
        b.extend_from_slice(&event.archive_ns.to_be_bytes());
        b.extend_from_slice(&event.wall_ns.to_be_bytes());
        b.extend_from_slice(&event.jump_ns.to_be_bytes());
    });
}

fn encode_mark(out: &mut Vec<u8>, record_type: u8, kind: SourceKind, source_id: u32, value: u64) {
    encode_record(out, |b| {
        b.push(record_type);
        b.push(kind.to_byte());
        b.extend_from_slice(&source_id.to_be_bytes());
        b.extend_from_slice(&value.to_be_bytes());
    });
}

impl Delivery {
    /// The names a RECEIVED or RECORDED FRAMES record carries, each cut to 255 bytes: the link's,
    /// the station's and the recording's when there is one.
    pub(super) fn names(&self) -> impl Iterator<Item = &[u8]> {
        let recording = self.recording.as_deref();
        [Some(&*self.link), Some(&*self.station), recording]
            .into_iter()
            .flatten()
            .map(|name| &name.as_bytes()[..name.len().min(255)])
    }
}
