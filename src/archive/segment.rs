//! The archive's on-disk format: segment files of length-prefixed, checksummed records
//! (`docs/archive-format.md` describes it byte by byte).
//!
//! Why it is shaped this way:
//! - **Append-only segments.** The archive only ever appends, so a crash can damage nothing but the
//!   end of the newest segment. Segments roll over at a size limit, so recovery reads one bounded
//!   file and old segments can be copied or deleted whole. A name carries a zero-padded index
//!   (`segment-00000000000000000001.seg`), so the lexical order of the names is their write order.
//! - **A magic per file** (`TLMSEG05`): a tool pointed at the wrong file fails at byte 0 instead of
//!   reading nonsense, and the trailing digits are the format version. This version is written,
//!   and this one and the one before it are read ([`READ_VERSIONS`]: version 4 lacks only the
//!   CLOCK record); a file of another (`TLMSEGnn`) is refused with an error naming the versions,
//!   never taken for damage.
//! - **Length, then CRC, then body.** The length lets a reader skip a record without knowing its
//!   type; the CRC-32 of the body tells a complete record from a torn or damaged one. The length is
//!   outside the CRC, so a damaged length is caught by the body's CRC not matching, or by no record
//!   being readable after it (see below).
//! - **Self-describing records.** A frame record carries everything the pipeline's `Frame` does plus
//!   the receive time, so the archive can be verified, inspected and replayed without the daemon.
//! - **A batch per record.** The daemon writes each batch (frames of one source and priority from one
//!   socket read) as one FRAMES record: one CRC over the whole batch instead of one per frame, and 12
//!   bytes of fields per frame instead of 31: with small payloads a record per frame cost the writer
//!   more than the frame cost the whole pipeline. Readers see frames either way.
//!   WATERMARK and STORED RUN records carry the acknowledgement state, so recovery needs only the
//!   newest segment: when a segment is opened, its writer first checkpoints every source's state in
//!   it. A STORED RUN covers a run of sequences: a checkpoint holds a few per source where one
//!   record per frame cost the writer milliseconds per segment.
//! - **Big-endian integers**, like the wire protocols (`docs/ingest-protocol.md`).
//!
//! Torn or corrupt: a crash leaves at most an incomplete write at the end of the newest segment (a
//! record cut short, or, on some file systems, zero-filled or stale blocks). A reader cannot tell a
//! damaged last record from a torn one, and truncating either loses nothing that was ever complete.
//! So a bad record after which nothing valid can be found is [`ScanEnd::Torn`], and
//! [`repair_tail`] cuts it; a bad record followed by a valid one, a record whose CRC matches but
//! whose contents are impossible, or a bad magic is [`ScanEnd::Corrupt`]: damage in the middle,
//! which is reported and never "repaired" by deleting good data.
//!
//! A scan does not stop at damage: every record has a length and a CRC, so after a bad record it
//! searches forward for the next offset where a valid record starts and goes on from there. A
//! flipped byte in an old segment costs the record it is in, not the rest of the segment, and
//! every damaged byte range is reported ([`Damage`]).
//!
//! Nothing read from disk is trusted: every error names the file and the byte offset.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use crate::domain::clock::{ClockEvent, ClockEventKind};
use crate::domain::frame::{Priority, SourceKind};
use crate::domain::reception::{Ax25Addresses, Callsign, Delivery, Received, Reception};

/// The first 8 bytes of every segment and journal file written: format version [`FORMAT_VERSION`].
pub const MAGIC: &[u8; 8] = b"TLMSEG05";

/// The format version the magic names, the one written.
pub(crate) const FORMAT_VERSION: u8 = 5;

/// The format versions read: version 4 is version 5 without CLOCK records.
pub(crate) const READ_VERSIONS: [u8; 2] = [4, FORMAT_VERSION];

/// The magic's bytes before the two digits of its version.
const MAGIC_STEM: &[u8] = b"TLMSEG";

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
/// Record type of a batch of frames of one source and priority.
pub(crate) const TYPE_FRAMES: u8 = 4;
/// Record type of a stored-above-watermark marker for a run of sequences (type 3 is not used).
pub(crate) const TYPE_STORED_RUN: u8 = 5;
/// Record type of a batch of a link's frames, with their reception.
pub(crate) const TYPE_RECEIVED_FRAMES: u8 = 6;
/// Record type of a start of the daemon or a step of the wall clock (version 5).
pub(crate) const TYPE_CLOCK: u8 = 7;

/// Body bytes of a frame record before its payload.
pub(crate) const FRAME_BODY_FIXED: usize = 23;
/// Body bytes of a WATERMARK record.
pub(crate) const MARK_BODY_LEN: usize = 14;
/// Body bytes of a STORED RUN record.
pub(crate) const RUN_BODY_LEN: usize = 22;
/// Body bytes of a CLOCK record.
pub(crate) const CLOCK_BODY_LEN: usize = 26;
/// Body bytes of a FRAMES record before its first frame.
pub(crate) const FRAMES_BODY_FIXED: usize = 19;
/// Bytes of a FRAMES record per frame before the frame's payload: sequence and length.
pub(crate) const FRAMES_ENTRY_FIXED: usize = 12;
/// Most bytes of a RECEIVED FRAMES record before its first frame: the FRAMES record's, then
/// the link's and the station's names (at most 255 bytes each, behind a length byte).
pub(crate) const RECEIVED_BODY_MAX_FIXED: usize = FRAMES_BODY_FIXED + 2 + 2 * 255;
/// Most bytes of a RECEIVED FRAMES record per frame before its payload: a FRAMES record's, the
/// flags, the earth-receive time, two AX.25 addresses.
pub(crate) const RECEIVED_ENTRY_MAX_FIXED: usize = FRAMES_ENTRY_FIXED + 1 + 8 + 2 * CALLSIGN_LEN;

/// A received frame's flags: an earth-receive time follows.
const HAS_EARTH_TIME: u8 = 0x01;
/// A received frame's flags: played back from the recorder.
const PLAYBACK: u8 = 0x02;
/// A received frame's flags: AX.25 source and destination follow.
const HAS_AX25: u8 = 0x04;
/// Bytes of an AX.25 callsign in a record: 6 characters, then the SSID.
const CALLSIGN_LEN: usize = 7;

const PREFIX: &str = "segment-";
const SUFFIX: &str = ".seg";

/// The file name of segment `index`: `segment-{index:020}.seg`.
pub fn segment_name(index: u64) -> String {
    format!("{PREFIX}{index:020}{SUFFIX}")
}

/// The index in a segment file name; `None` for any other file.
pub(crate) fn segment_index(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    let digits = name.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The name segment `index` has while the daemon writes it and the segment before it is not yet
/// durable: `segment-{index:020}.seg.new`. Readers ignore it.
pub(crate) fn staged_name(index: u64) -> String {
    format!("{}.new", segment_name(index))
}

/// The index in a staged segment's file name; `None` for any other file.
pub(crate) fn staged_index(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    segment_index(Path::new(name.strip_suffix(".new")?))
}

/// The segments in `dir`, sorted by index. Other files and directories are ignored.
pub fn list_segments(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    list_indexed(dir, segment_index)
}

/// The staged segments in `dir` ([`staged_name`]), sorted by index.
pub(crate) fn list_staged(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    list_indexed(dir, staged_index)
}

/// The files in `dir` that `index_of` gives an index, sorted by it.
fn list_indexed(dir: &Path, index_of: fn(&Path) -> Option<u64>) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = fs::read_dir(dir).map_err(|err| with_path(err, dir, "cannot list"))?;
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|err| with_path(err, dir, "cannot list"))?;
        let path = entry.path();
        if let Some(index) = index_of(&path) {
            let file_type = entry
                .file_type()
                .map_err(|err| with_path(err, &path, "cannot stat"))?;
            if !file_type.is_dir() {
                segments.push((index, path));
            }
        }
    }
    segments.sort_by_key(|(index, _)| *index);
    Ok(segments)
}

/// Takes the exclusive lock on `dir/LOCK` that a running daemon holds, without waiting: two
/// processes writing one archive would interleave segments, or rewrite one being appended to.
/// Held until the file is dropped. (`SegmentSink::open` takes the same `flock` on the same file.)
pub(crate) fn lock_directory(dir: &Path) -> io::Result<File> {
    use std::os::fd::AsRawFd;
    let path = dir.join("LOCK");
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|err| with_path(err, &path, "cannot open"))?;
    // SAFETY: flock on a descriptor this function owns; no memory is involved.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let err = io::Error::last_os_error();
        return Err(io::Error::new(
            err.kind(),
            format!(
                "the archive directory {} is in use by another aggregator process ({err})",
                dir.display()
            ),
        ));
    }
    Ok(file)
}

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
fn encode_record(out: &mut Vec<u8>, write_body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; RECORD_HEADER_LEN]);
    write_body(out);
    seal_record(out, start);
}

/// Fills in the length and CRC of the record whose header starts at `start` and whose body runs to
/// the end of `out`.
fn seal_record(out: &mut [u8], start: usize) {
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
/// RECEIVED FRAMES records (type 6).
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
fn encode_frames_within<'a>(
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
                Some(_) => TYPE_RECEIVED_FRAMES,
                None => TYPE_FRAMES,
            });
            out.push(head.kind.to_byte());
            out.push(head.priority.to_byte());
            out.extend_from_slice(&head.source_id.to_be_bytes());
            out.extend_from_slice(&head.received_unix_ns.to_be_bytes());
            out.extend_from_slice(&[0; 4]);
            if let Some(delivery) = delivery {
                for name in [&delivery.link, &delivery.station] {
                    let name = &name.as_bytes()[..name.len().min(255)];
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
fn received_len(received: &Received) -> usize {
    1 + received.earth_unix_ns.map_or(0, |_| 8) + received.ax25.map_or(0, |_| 2 * CALLSIGN_LEN)
}

/// Appends a received frame's flags and the fields they announce.
fn encode_received(received: &Received, out: &mut Vec<u8>) {
    let flags = (received.earth_unix_ns.map_or(0, |_| HAS_EARTH_TIME))
        | (if received.playback { PLAYBACK } else { 0 })
        | (received.ax25.map_or(0, |_| HAS_AX25));
    out.push(flags);
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
pub fn encode_clock(out: &mut Vec<u8>, event: &ClockEvent) {
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

/// How a segment's records ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// The bytes from `offset` on are an incomplete or damaged last write: nothing valid follows,
    /// and nothing before it is damaged. [`repair_tail`] cuts them.
    Torn { offset: u64, reason: String },
    /// The first damage, at `offset`, is one a crash cannot explain: a valid record follows it, its
    /// CRC matches but its contents are impossible, or the magic is wrong. Never cut; the scan goes
    /// on after it, and [`Scanned::damaged`] lists every damaged range.
    Corrupt { offset: u64, reason: String },
}

impl std::fmt::Display for ScanEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanEnd::Clean => f.write_str("clean"),
            ScanEnd::Torn { offset, reason } => write!(f, "torn at offset {offset}: {reason}"),
            ScanEnd::Corrupt { offset, reason } => {
                write!(f, "corrupt at offset {offset}: {reason}")
            }
        }
    }
}

/// A byte range of a segment in which no valid record starts: from a bad record to the next
/// offset where a valid record starts, or to the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Where the bad record starts.
    pub start: u64,
    /// Where the next valid record starts, or the file's length: the range excludes it.
    pub end: u64,
    /// What is wrong with the record at `start`.
    pub reason: String,
}

impl Damage {
    /// How a scan whose first damage this is ended, in a file of `file_len` bytes. Only a crash's
    /// kind of damage (`crash_can_explain`) with nothing valid after it is torn.
    fn scan_end(&self, file_len: u64, crash_can_explain: bool) -> ScanEnd {
        let (offset, reason) = (self.start, self.reason.clone());
        if self.end < file_len {
            let reason = format!("{reason}; a valid record follows at offset {}", self.end);
            ScanEnd::Corrupt { offset, reason }
        } else if crash_can_explain {
            ScanEnd::Torn { offset, reason }
        } else {
            ScanEnd::Corrupt { offset, reason }
        }
    }
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "bytes {}..{} ({} bytes): {}",
            self.start,
            self.end,
            self.end - self.start,
            self.reason
        )
    }
}

/// Everything [`read_segment`] found in one file.
#[derive(Debug, Clone)]
pub struct SegmentScan {
    /// Every valid record, those after a damaged range included, with the offset of its length
    /// field.
    pub entries: Vec<(u64, Entry)>,
    /// Bytes up to the end of the last valid record (8, the magic, for a segment without records;
    /// 0 when the magic itself is incomplete).
    pub valid_len: u64,
    pub file_len: u64,
    pub end: ScanEnd,
    /// Every damaged range, in file order: empty exactly when `end` is [`ScanEnd::Clean`].
    pub damaged: Vec<Damage>,
}

impl SegmentScan {
    /// The entries a [`scan`] handed out, with how it ended.
    fn new(entries: Vec<(u64, Entry)>, scanned: Scanned) -> SegmentScan {
        SegmentScan {
            entries,
            valid_len: scanned.valid_len,
            file_len: scanned.file_len,
            end: scanned.end,
            damaged: scanned.damaged,
        }
    }
}

/// Why a record could not be decoded.
enum Bad {
    /// The header or body runs past the end of the file.
    Incomplete(String),
    /// Complete but wrong: length out of range or CRC mismatch. A crash can cause this.
    Damaged(String),
    /// The CRC matches but the contents are impossible: only a bug or deliberate damage does this.
    Impossible(String),
}

impl Bad {
    /// Whether a crash's incomplete last write can look like this.
    fn crash_can_explain(&self) -> bool {
        !matches!(self, Bad::Impossible(_))
    }

    fn into_reason(self) -> String {
        match self {
            Bad::Incomplete(reason) | Bad::Damaged(reason) | Bad::Impossible(reason) => reason,
        }
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    let mut a = [0; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

fn be_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// The body length in the header of the record at `pos`, which must hold a header: no record has
/// an empty body or one past [`MAX_BODY_LEN`].
fn body_len(data: &[u8], pos: usize) -> Result<usize, Bad> {
    let len = be_u32(data, pos);
    if len == 0 || len > MAX_BODY_LEN {
        return Err(Bad::Damaged(format!(
            "body length {len} is outside 1..={MAX_BODY_LEN}"
        )));
    }
    Ok(len as usize)
}

/// Decodes the record at `pos` of a segment into `out` (a FRAMES record gives one entry per frame,
/// all at `pos`); returns the offset right after it. On an error `out` is as it was.
fn decode_at(data: &Bytes, pos: usize, out: &mut Vec<(u64, Entry)>) -> Result<usize, Bad> {
    let rest = data.len() - pos;
    if rest < RECORD_HEADER_LEN {
        return Err(Bad::Incomplete(format!(
            "record header cut short ({rest} of {RECORD_HEADER_LEN} bytes)"
        )));
    }
    let len = body_len(data, pos)?;
    let body_start = pos + RECORD_HEADER_LEN;
    if len > data.len() - body_start {
        return Err(Bad::Incomplete(format!(
            "record body cut short ({} of {len} bytes)",
            data.len() - body_start
        )));
    }
    let body = &data[body_start..body_start + len];
    let stored_crc = be_u32(data, pos + 4);
    let crc = crc32fast::hash(body);
    if crc != stored_crc {
        return Err(Bad::Damaged(format!(
            "CRC mismatch (stored {stored_crc:08x}, computed {crc:08x}) over a {len}-byte body"
        )));
    }
    let entry = match body[0] {
        TYPE_FRAME => {
            if len < FRAME_BODY_FIXED {
                return Err(Bad::Impossible(format!(
                    "frame record body of {len} bytes, shorter than {FRAME_BODY_FIXED}"
                )));
            }
            let priority = priority(body[2])?;
            Entry::Frame(FrameRecord {
                kind: kind(body[1])?,
                priority,
                source_id: be_u32(body, 3),
                sequence: be_u64(body, 7),
                received_unix_ns: be_u64(body, 15),
                payload: data.slice(body_start + FRAME_BODY_FIXED..body_start + len),
                reception: None,
            })
        }
        TYPE_WATERMARK => {
            if len != MARK_BODY_LEN {
                return Err(Bad::Impossible(format!(
                    "type {TYPE_WATERMARK} record body of {len} bytes, expected {MARK_BODY_LEN}"
                )));
            }
            Entry::Watermark {
                kind: kind(body[1])?,
                source_id: be_u32(body, 2),
                acked: be_u64(body, 6),
            }
        }
        TYPE_STORED_RUN => {
            if len != RUN_BODY_LEN {
                return Err(Bad::Impossible(format!(
                    "type {TYPE_STORED_RUN} record body of {len} bytes, expected {RUN_BODY_LEN}"
                )));
            }
            let (first, last) = (be_u64(body, 6), be_u64(body, 14));
            if first > last {
                return Err(Bad::Impossible(format!(
                    "stored run from {first} down to {last}"
                )));
            }
            Entry::Stored {
                kind: kind(body[1])?,
                source_id: be_u32(body, 2),
                first,
                last,
            }
        }
        TYPE_CLOCK => Entry::Clock(decode_clock(body)?),
        TYPE_FRAMES | TYPE_RECEIVED_FRAMES => {
            let before = out.len();
            let decoded = decode_frames(data, body_start, len, pos, out);
            if decoded.is_err() {
                out.truncate(before);
            }
            decoded?;
            return Ok(body_start + len);
        }
        other => return Err(Bad::Impossible(format!("unknown record type {other}"))),
    };
    out.push((pos as u64, entry));
    Ok(body_start + len)
}

/// A CLOCK record's body.
fn decode_clock(body: &[u8]) -> Result<ClockEvent, Bad> {
    if body.len() != CLOCK_BODY_LEN {
        return Err(Bad::Impossible(format!(
            "type {TYPE_CLOCK} record body of {} bytes, expected {CLOCK_BODY_LEN}",
            body.len()
        )));
    }
    let kind = ClockEventKind::from_byte(body[1])
        .ok_or_else(|| Bad::Impossible(format!("undefined clock event {}", body[1])))?;
    Ok(ClockEvent {
        kind,
        archive_ns: be_u64(body, 2),
        wall_ns: be_u64(body, 10),
        jump_ns: be_u64(body, 18) as i64,
    })
}

/// A record's source kind byte, or why it is impossible.
fn kind(byte: u8) -> Result<SourceKind, Bad> {
    SourceKind::from_byte(byte)
        .ok_or_else(|| Bad::Impossible(format!("undefined source kind {byte}")))
}

/// A record's priority byte, or why it is impossible.
fn priority(byte: u8) -> Result<Priority, Bad> {
    Priority::from_byte(byte).ok_or_else(|| Bad::Impossible(format!("undefined priority {byte}")))
}

/// Decodes the frames of the FRAMES or RECEIVED FRAMES record whose `len`-byte body starts at
/// `body_start`, appending one entry per frame at `pos`. On an error some may have been
/// appended: the caller takes them back.
fn decode_frames(
    data: &Bytes,
    body_start: usize,
    len: usize,
    pos: usize,
    out: &mut Vec<(u64, Entry)>,
) -> Result<(), Bad> {
    let body = &data[body_start..body_start + len];
    if len < FRAMES_BODY_FIXED {
        return Err(Bad::Impossible(format!(
            "FRAMES record body of {len} bytes, shorter than {FRAMES_BODY_FIXED}"
        )));
    }
    let (kind, priority) = (kind(body[1])?, priority(body[2])?);
    let source_id = be_u32(body, 3);
    let received_unix_ns = be_u64(body, 7);
    let count = be_u32(body, 15);
    let mut at = FRAMES_BODY_FIXED;
    let delivery = match body[0] {
        TYPE_RECEIVED_FRAMES => Some(Arc::new(decode_delivery(body, &mut at)?)),
        _ => None,
    };
    for index in 0..count {
        let bad = |what: String| {
            Bad::Impossible(format!(
                "FRAMES record of {count} frames: frame {index} {what}"
            ))
        };
        if len - at < FRAMES_ENTRY_FIXED {
            return Err(bad(format!("header runs past the {len}-byte body")));
        }
        let sequence = be_u64(body, at);
        let payload_len = be_u32(body, at + 8) as usize;
        at += FRAMES_ENTRY_FIXED;
        let reception = match &delivery {
            Some(delivery) => Some(Box::new(Reception {
                delivery: Arc::clone(delivery),
                received: decode_received(body, &mut at).map_err(bad)?,
            })),
            None => None,
        };
        if payload_len > len - at {
            return Err(bad(format!(
                "payload of {payload_len} bytes runs past the {len}-byte body"
            )));
        }
        out.push((
            pos as u64,
            Entry::Frame(FrameRecord {
                kind,
                priority,
                source_id,
                sequence,
                received_unix_ns,
                payload: data.slice(body_start + at..body_start + at + payload_len),
                reception,
            }),
        ));
        at += payload_len;
    }
    if count == 0 || at != len {
        return Err(Bad::Impossible(format!(
            "FRAMES record of {count} frames leaves {} of its {len} body bytes unused",
            len - at
        )));
    }
    Ok(())
}

/// The link's and the station's names of a RECEIVED FRAMES record, from `body[*at..]`.
fn decode_delivery(body: &[u8], at: &mut usize) -> Result<Delivery, Bad> {
    let mut name = |what: &str| {
        let len = usize::from(*body.get(*at).ok_or_else(|| {
            Bad::Impossible(format!("RECEIVED FRAMES record cut within its {what} name"))
        })?);
        let bytes = body.get(*at + 1..*at + 1 + len).ok_or_else(|| {
            Bad::Impossible(format!("RECEIVED FRAMES record cut within its {what} name"))
        })?;
        *at += 1 + len;
        std::str::from_utf8(bytes).map(Arc::from).map_err(|_| {
            Bad::Impossible(format!(
                "RECEIVED FRAMES record: its {what} name is not UTF-8"
            ))
        })
    };
    let link = name("link")?;
    let station = name("station")?;
    Ok(Delivery { link, station })
}

/// A received frame's flags and the fields they announce, from `body[*at..]`.
fn decode_received(body: &[u8], at: &mut usize) -> Result<Received, String> {
    let cut = || format!("reception runs past the {}-byte body", body.len());
    let flags = *body.get(*at).ok_or_else(cut)?;
    if flags & !(HAS_EARTH_TIME | PLAYBACK | HAS_AX25) != 0 {
        return Err(format!("has undefined reception flags 0x{flags:02X}"));
    }
    *at += 1;
    let mut take = |n: usize| {
        let bytes = body.get(*at..*at + n).ok_or_else(cut)?;
        *at += n;
        Ok::<_, String>(bytes)
    };
    let earth_unix_ns = match flags & HAS_EARTH_TIME {
        0 => None,
        _ => Some(be_u64(take(8)?, 0)),
    };
    let ax25 = match flags & HAS_AX25 {
        0 => None,
        _ => {
            let bytes = take(2 * CALLSIGN_LEN)?;
            let callsign = |b: &[u8]| {
                let mut call = [0; 6];
                call.copy_from_slice(&b[..6]);
                Callsign::from_parts(call, b[6])
            };
            Some(Ax25Addresses {
                from: callsign(&bytes[..CALLSIGN_LEN]),
                to: callsign(&bytes[CALLSIGN_LEN..]),
            })
        }
    };
    Ok(Received {
        earth_unix_ns,
        playback: flags & PLAYBACK != 0,
        ax25,
    })
}

/// The first offset after `pos` where a complete, valid record starts (a length within
/// [`MAX_BODY_LEN`], a body whose CRC matches and which decodes), if any: where a scan resumes
/// after the bad record at `pos`, and evidence that the damage is in the middle of the file, not a
/// torn tail.
fn resync_after(data: &Bytes, pos: usize) -> Option<usize> {
    let mut scratch = Vec::new();
    (pos + 1..data.len().saturating_sub(RECORD_HEADER_LEN)).find(|&at| {
        scratch.clear();
        decode_at(data, at, &mut scratch).is_ok()
    })
}

/// How much of a segment a scan reads at a time.
const WINDOW: usize = 1 << 20;

/// How a scan ended; the entries went to its visitor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scanned {
    /// Bytes up to the end of the last valid record (8, the magic, for a segment without records;
    /// 0 when the magic itself is incomplete).
    pub valid_len: u64,
    pub file_len: u64,
    pub end: ScanEnd,
    /// Every damaged range, in file order: empty exactly when `end` is [`ScanEnd::Clean`].
    pub damaged: Vec<Damage>,
}

impl Scanned {
    /// A file of `file_len` bytes that is one damaged range, from its magic on: torn when the
    /// magic was cut short (`torn`), corrupt otherwise.
    fn unreadable(file_len: u64, torn: bool, reason: String) -> Scanned {
        let damage = Damage {
            start: 0,
            end: file_len,
            reason,
        };
        Scanned {
            valid_len: 0,
            file_len,
            end: damage.scan_end(file_len, torn),
            damaged: vec![damage],
        }
    }
}

/// A segment read a window at a time, so that a scan holds the record it decodes and what follows
/// it in the window, not the file: recovery reads a newest segment of `archive.segment_bytes`
/// (64 MiB by default) with the daemon's memory bound still in force.
struct Window<R> {
    reader: R,
    bytes: BytesMut,
    /// The file offset of `bytes[0]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Window<R> {
    /// Makes the window hold at least `want` bytes, unless the file ends first.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        while self.bytes.len() < want && !self.eof {
            let len = self.bytes.len();
            self.bytes.resize(len + (want - len).max(WINDOW), 0);
            let read = loop {
                match self.reader.read(&mut self.bytes[len..]) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    read => break read,
                }
            };
            let n = read.inspect_err(|_| self.bytes.truncate(len))?;
            self.bytes.truncate(len + n);
            self.eof = n == 0;
        }
        Ok(())
    }

    /// The window's bytes and the rest of the file, for what only a damaged segment needs.
    fn rest(&mut self) -> io::Result<Bytes> {
        let mut rest = std::mem::take(&mut self.bytes).to_vec();
        self.reader.read_to_end(&mut rest)?;
        Ok(Bytes::from(rest))
    }

    /// Reads the magic: `Ok(Ok(()))` for this format, or how a scan of a file that is not a
    /// segment (or whose magic was cut short) ends; an `Unsupported` error for a segment of
    /// another format version ([`other_version`]).
    fn magic(&mut self) -> io::Result<Result<(), Scanned>> {
        self.fill(MAGIC.len())?;
        let magic = &self.bytes[..self.bytes.len().min(MAGIC.len())];
        if let Some(refused) = other_version(magic) {
            return Err(refused);
        }
        match magic {
            magic if readable(magic) => {}
            short if short.len() < MAGIC.len() => {
                let torn = MAGIC.starts_with(short);
                let reason = match torn {
                    true => format!("magic cut short ({} of 8 bytes)", short.len()),
                    false => "bad magic: not a segment file".into(),
                };
                return Ok(Err(Scanned::unreadable(short.len() as u64, torn, reason)));
            }
            magic => {
                let reason = format!(
                    "bad magic {magic:02x?}, expected {:?}",
                    String::from_utf8_lossy(MAGIC)
                );
                let file_len = self.rest()?.len() as u64;
                return Ok(Err(Scanned::unreadable(file_len, false, reason)));
            }
        }
        self.bytes.advance(MAGIC.len());
        self.offset = MAGIC.len() as u64;
        Ok(Ok(()))
    }

    /// Decodes the record at the start of the window into `out` and moves past it. `None` at the
    /// end of the file; `Some(Err)` for a bad record, with its bytes (what the window held of it).
    fn next_record(
        &mut self,
        out: &mut Vec<(u64, Entry)>,
    ) -> io::Result<Option<Result<(), (Bytes, Bad)>>> {
        self.fill(RECORD_HEADER_LEN)?;
        if self.bytes.is_empty() {
            return Ok(None);
        }
        // The record alone (or, when its length cannot be right, what the window holds), so that
        // decoding it sees where it ends.
        let mut take = self.bytes.len();
        if take >= RECORD_HEADER_LEN {
            let len = be_u32(&self.bytes, 0);
            if (1..=MAX_BODY_LEN).contains(&len) {
                let record_len = RECORD_HEADER_LEN + len as usize;
                self.fill(record_len)?;
                take = record_len.min(self.bytes.len());
            }
        }
        let record = self.bytes.split_to(take).freeze();
        match decode_at(&record, 0, out) {
            Ok(_) => {
                self.offset += take as u64;
                Ok(Some(Ok(())))
            }
            Err(bad) => Ok(Some(Err((record, bad)))),
        }
    }
}

/// Scans a segment from `reader`, handing every valid record's entries to `visit` in file order
/// with their offsets (a FRAMES record's frames all at the record's), and says how it ended.
///
/// It holds a window of about a megabyte and the record being decoded; a visitor that keeps the
/// entries keeps their payloads. After a bad record it reads the rest of the file in one piece
/// and resynchronises: the damaged range runs to the next offset where a valid record starts
/// ([`resync_after`]), and the records from there on are handed out too. An `Err` is a failed
/// read, or a segment of another format version ([`other_version`]); bad contents are in
/// [`Scanned::end`] and [`Scanned::damaged`].
pub fn scan(reader: impl Read, mut visit: impl FnMut(u64, Entry)) -> io::Result<Scanned> {
    let mut window = Window {
        reader,
        bytes: BytesMut::new(),
        offset: 0,
        eof: false,
    };
    if let Err(scanned) = window.magic()? {
        return Ok(scanned);
    }
    let mut entries = Vec::new();
    loop {
        let at = window.offset;
        match window.next_record(&mut entries)? {
            None => {
                return Ok(Scanned {
                    valid_len: at,
                    file_len: at,
                    end: ScanEnd::Clean,
                    damaged: Vec::new(),
                })
            }
            Some(Ok(())) => entries.drain(..).for_each(|(_, entry)| visit(at, entry)),
            Some(Err((record, bad))) => {
                let mut rest = record.to_vec();
                rest.extend_from_slice(&window.rest()?);
                return Ok(scan_damaged(Bytes::from(rest), at, bad, visit));
            }
        }
    }
}

/// The rest of a [`scan`] from the bad record at file offset `base`, `rest` holding the file from
/// there on: each damaged range runs to the next offset where a valid record starts, and the
/// valid records after it go to `visit`, until the end of the file.
fn scan_damaged(rest: Bytes, base: u64, first: Bad, mut visit: impl FnMut(u64, Entry)) -> Scanned {
    let crash_can_explain = first.crash_can_explain();
    let (mut damaged, mut entries, mut valid_len) = (Vec::new(), Vec::new(), base);
    let (mut bad, mut pos) = (Some(first), 0);
    while let Some(reason) = bad.take().map(Bad::into_reason) {
        let end = resync_after(&rest, pos).unwrap_or(rest.len());
        damaged.push(Damage {
            start: base + pos as u64,
            end: base + end as u64,
            reason,
        });
        pos = end;
        while pos < rest.len() {
            match decode_at(&rest, pos, &mut entries) {
                Ok(after) => {
                    let at = base + pos as u64;
                    entries.drain(..).for_each(|(_, entry)| visit(at, entry));
                    pos = after;
                    valid_len = base + after as u64;
                }
                Err(next) => {
                    bad = Some(next);
                    break;
                }
            }
        }
    }
    let file_len = base + rest.len() as u64;
    Scanned {
        valid_len,
        file_len,
        end: damaged[0].scan_end(file_len, crash_can_explain),
        damaged,
    }
}

/// Reads a whole segment file: every valid entry with its byte offset, and how it ended.
///
/// An `Err` is an I/O error (the file cannot be read); bad contents are reported in
/// [`SegmentScan::end`], never as a panic.
pub fn read_segment(path: &Path) -> io::Result<SegmentScan> {
    let mut entries = Vec::new();
    let scanned = scan_file(path, |offset, entry| entries.push((offset, entry)))?;
    Ok(SegmentScan::new(entries, scanned))
}

/// Bytes of the segment at `path` up to the end of its last valid record, read through once
/// without keeping its records.
pub(crate) fn valid_len(path: &Path) -> io::Result<u64> {
    Ok(scan_file(path, |_, _| ())?.valid_len)
}

/// [`scan`] of the file at `path`; an error names it.
fn scan_file(path: &Path, visit: impl FnMut(u64, Entry)) -> io::Result<Scanned> {
    let file = File::open(path).map_err(|err| with_path(err, path, "cannot read"))?;
    scan(file, visit).map_err(|err| with_path(err, path, "cannot read"))
}

/// Scans the segment at `path`, handing every valid entry to `visit` as [`scan`] does, and
/// truncates a torn tail: recovery's one read of the newest segment. Returns the bytes cut, `None`
/// when the segment was clean. A segment whose magic itself was cut short is rewritten as an empty
/// segment (the magic alone). A [`ScanEnd::Corrupt`] segment is not touched: the error names the
/// file, the offset, and the operator's way out, `aggregator archive repair DIR --quarantine`.
pub fn repair_tail(path: &Path, visit: impl FnMut(u64, Entry)) -> io::Result<Option<u64>> {
    let scanned = scan_file(path, visit)?;
    match scanned.end {
        ScanEnd::Clean => Ok(None),
        ScanEnd::Corrupt { offset, reason } => {
            let dir = path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: corrupt record at offset {offset}: {reason}; not repaired: \
                     `aggregator archive repair {dir}` shows the damaged bytes, and with \
                     --quarantine moves them aside so that the daemon can start",
                    path.display(),
                    dir = dir.display()
                ),
            ))
        }
        ScanEnd::Torn { .. } => {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(|err| with_path(err, path, "cannot open for repair"))?;
            let fail = |err| with_path(err, path, "cannot truncate the torn tail of");
            if scanned.valid_len < MAGIC.len() as u64 {
                file.set_len(0).map_err(fail)?;
                file.write_all(MAGIC).map_err(fail)?;
            } else {
                file.set_len(scanned.valid_len).map_err(fail)?;
            }
            file.sync_all().map_err(fail)?;
            Ok(Some(scanned.file_len - scanned.valid_len))
        }
    }
}

/// Whole records read from the middle of a segment by [`read_records`].
#[derive(Debug)]
pub struct Records {
    /// Every record's entries, in file order, with the record's offset (a FRAMES record's frames
    /// all at its offset).
    pub entries: Vec<(u64, Entry)>,
    /// Where the record after the last one read starts.
    pub next: u64,
}

/// Reads the whole records of a segment from offset `from` (where a record starts, after the
/// magic) up to `to` (where one ends): about `budget` bytes of them, and at least the first
/// however large it is. It reads only that range, with positioned reads, so a follower of the
/// archive can read a segment the daemon is still appending to, up to what is durable. The
/// range holds whole records, so anything that does not decode is damage (or `from` is not where
/// a record starts): an `InvalidData` error naming the file and the offset, when the first record
/// does not decode; when a later one does not, the records before it, and `next` at it (the next
/// read there is the error).
pub fn read_records(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
    budget: usize,
) -> io::Result<Records> {
    use std::os::unix::fs::FileExt;
    let invalid = |offset: u64, why: String| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: offset {offset}: {why}", path.display()),
        )
    };
    let mut magic = [0; MAGIC.len()];
    file.read_exact_at(&mut magic, 0)
        .map_err(|err| with_path(err, path, "cannot read"))?;
    if let Some(refused) = other_version(&magic) {
        return Err(with_path(refused, path, "cannot read"));
    }
    if !readable(&magic) {
        return Err(invalid(0, "bad magic: not a segment file".into()));
    }
    if from < MAGIC.len() as u64 || from > to {
        return Err(invalid(from, format!("not a record offset below {to}")));
    }
    let span = usize::try_from(to - from).unwrap_or(usize::MAX);
    let mut buf = vec![0; span.min(budget.max(RECORD_HEADER_LEN))];
    file.read_exact_at(&mut buf, from)
        .map_err(|err| with_path(err, path, "cannot read"))?;
    // The first record whole, even when it is larger than the budget, once its length is one a
    // record can have: `from` may come from a follower, and point into a payload.
    if buf.len() >= RECORD_HEADER_LEN {
        let len = body_len(&buf, 0).map_err(|bad| invalid(from, bad.into_reason()))?;
        let first = RECORD_HEADER_LEN + len;
        if first > buf.len() && first <= span {
            let read = buf.len();
            buf.resize(first, 0);
            file.read_exact_at(&mut buf[read..], from + read as u64)
                .map_err(|err| with_path(err, path, "cannot read"))?;
        }
    }
    let data = Bytes::from(buf);
    let (mut entries, mut pos) = (Vec::new(), 0);
    while data.len() - pos >= RECORD_HEADER_LEN {
        let record = RECORD_HEADER_LEN + be_u32(&data, pos) as usize;
        if record > data.len() - pos {
            break;
        }
        match decode_at(&data, pos, &mut entries) {
            Ok(next) => pos = next,
            Err(_) if pos > 0 => break,
            Err(bad) => return Err(invalid(from + pos as u64, bad.into_reason())),
        }
    }
    if pos == 0 && !data.is_empty() {
        return Err(invalid(
            from,
            format!("no whole record ends by offset {to}"),
        ));
    }
    for (offset, _) in &mut entries {
        *offset += from;
    }
    Ok(Records {
        entries,
        next: from + pos as u64,
    })
}

/// Where the first valid record after the damaged one at `from` starts, before `to`; `None` when
/// none does, or the file's magic is not a segment's (nothing in it is read: [`read_records`]
/// refuses every range of it, so the whole file is one damaged range). Reads the range whole: only
/// after damage, which is rare.
pub(crate) fn next_record(file: &File, path: &Path, from: u64, to: u64) -> io::Result<Option<u64>> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0; MAGIC.len()];
    file.read_exact_at(&mut magic, 0)
        .map_err(|err| with_path(err, path, "cannot read"))?;
    if !readable(&magic) {
        return Ok(None);
    }
    let mut buf = vec![0; usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut buf, from)
        .map_err(|err| with_path(err, path, "cannot read"))?;
    Ok(resync_after(&Bytes::from(buf), 0).map(|at| from + at as u64))
}

/// The format version a segment magic names (`TLMSEG` and two digits).
fn magic_version(magic: &[u8]) -> Option<u8> {
    let digits = magic.strip_prefix(MAGIC_STEM)?;
    (digits.len() == 2 && digits.iter().all(u8::is_ascii_digit))
        .then(|| (digits[0] - b'0') * 10 + (digits[1] - b'0'))
}

/// Whether `magic` is the magic of a format version this build reads.
fn readable(magic: &[u8]) -> bool {
    magic_version(magic).is_some_and(|version| READ_VERSIONS.contains(&version))
}

/// The format version of the segment or journal at `path`, from its magic: what a writer checks
/// before it appends to a file an earlier build wrote. An error names the file.
pub(crate) fn file_version(path: &Path) -> io::Result<u8> {
    let mut magic = [0; MAGIC.len()];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .map_err(|err| with_path(err, path, "cannot read the magic of"))?;
    magic_version(&magic).ok_or_else(|| {
        let err = io::Error::new(io::ErrorKind::InvalidData, "bad magic: not a segment file");
        with_path(err, path, "cannot read")
    })
}

/// The error for a file whose magic is a segment's of a format version this build does not read
/// (`TLMSEG` and two digits): refused with the versions named, rather than read as damage (which
/// `archive repair --quarantine` would move aside). The caller adds the file's path.
fn other_version(magic: &[u8]) -> Option<io::Error> {
    let found = magic_version(magic).filter(|v| !READ_VERSIONS.contains(v))?;
    Some(io::Error::new(
        io::ErrorKind::Unsupported,
        format!(
            "archive format version {found} (magic {}); this build reads versions {} and \
             {FORMAT_VERSION}",
            String::from_utf8_lossy(magic),
            READ_VERSIONS[0]
        ),
    ))
}

/// `err` with the path of the file it is about, after `what` was tried.
pub(crate) fn with_path(err: io::Error, path: &Path, what: &str) -> io::Error {
    io::Error::new(err.kind(), format!("{what} {}: {err}", path.display()))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::any;
    use proptest::strategy::Strategy;

    use super::*;
    use crate::domain::frame::arbitrary;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::Frame(FrameRecord {
                kind: SourceKind::LiveUplink,
                priority: Priority::Emergency,
                source_id: 7,
                sequence: 42,
                received_unix_ns: 1_700_000_000_123_456_789,
                payload: Bytes::from_static(b"SAFE_MODE"),
                reception: None,
            }),
            Entry::Frame(FrameRecord {
                kind: SourceKind::ArchivedReplay,
                priority: Priority::Routine,
                source_id: u32::MAX,
                sequence: u64::MAX,
                received_unix_ns: 0,
                payload: Bytes::new(),
                reception: None,
            }),
            Entry::Watermark {
                kind: SourceKind::LiveUplink,
                source_id: 7,
                acked: 41,
            },
            Entry::Stored {
                kind: SourceKind::ArchivedReplay,
                source_id: 1000,
                first: 9,
                last: 12,
            },
            Entry::Clock(ClockEvent {
                kind: ClockEventKind::Step,
                archive_ns: 1_700_000_000_200_000_000,
                wall_ns: 1_731_536_000_200_000_000,
                jump_ns: -31_536_000_000_000_000,
            }),
        ]
    }

    fn segment(entries: &[Entry]) -> (Vec<u8>, Vec<u64>) {
        let mut out = MAGIC.to_vec();
        let mut offsets = Vec::new();
        for entry in entries {
            offsets.push(out.len() as u64);
            entry.encode(&mut out);
        }
        (out, offsets)
    }

    fn write(dir: &Path, index: u64, bytes: &[u8]) -> PathBuf {
        let path = dir.join(segment_name(index));
        fs::write(&path, bytes).unwrap();
        path
    }

    /// [`scan`] over segment bytes already in memory, collecting the entries.
    fn scan_bytes(data: Bytes) -> SegmentScan {
        let mut entries = Vec::new();
        let scanned = scan(&data[..], |offset, entry| entries.push((offset, entry)))
            .expect("a slice reads without error");
        SegmentScan::new(entries, scanned)
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("segment-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn every_record_type_round_trips_with_its_offset() {
        let entries = sample();
        let (bytes, offsets) = segment(&entries);
        let scan = scan_bytes(Bytes::from(bytes.clone()));
        assert_eq!(scan.end, ScanEnd::Clean);
        assert_eq!(scan.valid_len, bytes.len() as u64);
        assert_eq!(scan.file_len, bytes.len() as u64);
        let got: Vec<_> = scan.entries.iter().map(|(o, _)| *o).collect();
        assert_eq!(got, offsets);
        let got: Vec<_> = scan.entries.into_iter().map(|(_, e)| e).collect();
        assert_eq!(got, entries);
        // The documented sizes: 8 + 23 + payload, 8 + 14.
        assert_eq!(offsets[1] - offsets[0], 8 + 23 + 9);
        assert_eq!(offsets[3] - offsets[2], 8 + 14);
    }

    #[test]
    fn names_parse_and_list_in_index_order() {
        assert_eq!(segment_name(3), "segment-00000000000000000003.seg");
        assert_eq!(
            segment_index(Path::new("/a/segment-00000000000000000003.seg")),
            Some(3)
        );
        assert_eq!(segment_index(Path::new("segment-3.seg")), None);
        assert_eq!(
            segment_index(Path::new("segment-0000000000000000000x.seg")),
            None
        );
        let dir = temp_dir("list");
        write(&dir, 10, MAGIC);
        write(&dir, 2, MAGIC);
        fs::write(dir.join("notes.txt"), b"x").unwrap();
        let listed: Vec<_> = list_segments(&dir)
            .unwrap()
            .into_iter()
            .map(|(i, _)| i)
            .collect();
        assert_eq!(listed, vec![2, 10]);
        assert!(list_segments(&dir.join("missing")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_truncated_last_record_is_torn_and_repair_cuts_exactly_it() {
        let entries = sample();
        let (bytes, offsets) = segment(&entries);
        let dir = temp_dir("torn");
        for cut in [1, 5, 9, 13] {
            let path = write(&dir, 1, &bytes[..bytes.len() - cut]);
            let scan = read_segment(&path).unwrap();
            let last = *offsets.last().unwrap();
            assert!(
                matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == last),
                "cut {cut}: {:?}",
                scan.end
            );
            assert_eq!(scan.valid_len, last);
            let damaged: Vec<_> = scan.damaged.iter().map(|d| (d.start, d.end)).collect();
            assert_eq!(damaged, vec![(last, (bytes.len() - cut) as u64)]);
            assert_eq!(scan.entries.len(), entries.len() - 1);
            let cut_bytes = (bytes.len() - cut) as u64 - last;
            assert_eq!(repair_tail(&path, |_, _| {}).unwrap(), Some(cut_bytes));
            assert_eq!(fs::metadata(&path).unwrap().len(), last);
            assert_eq!(read_segment(&path).unwrap().end, ScanEnd::Clean);
            assert_eq!(repair_tail(&path, |_, _| {}).unwrap(), None);
        }
        // A zero-filled tail, as some file systems leave after a crash, is torn too.
        let mut zeroed = bytes.clone();
        zeroed.extend_from_slice(&[0; 100]);
        let path = write(&dir, 1, &zeroed);
        assert!(
            matches!(read_segment(&path).unwrap().end, ScanEnd::Torn { offset, .. } if offset == bytes.len() as u64)
        );
        assert_eq!(repair_tail(&path, |_, _| {}).unwrap(), Some(100));
        // A file whose magic was cut short becomes an empty segment.
        let path = write(&dir, 1, &MAGIC[..3]);
        assert!(matches!(
            read_segment(&path).unwrap().end,
            ScanEnd::Torn { offset: 0, .. }
        ));
        assert_eq!(repair_tail(&path, |_, _| {}).unwrap(), Some(3));
        assert_eq!(fs::read(&path).unwrap(), MAGIC);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_flipped_byte_mid_file_is_corrupt_at_its_record_and_not_repaired() {
        let entries = sample();
        let (bytes, offsets) = segment(&entries);
        let dir = temp_dir("corrupt");
        // A payload byte, then a length byte: both inside record 0, with valid records after.
        for at in [offsets[0] as usize + 8 + 23 + 2, offsets[0] as usize + 3] {
            let mut bad = bytes.clone();
            bad[at] ^= 0x40;
            let path = write(&dir, 1, &bad);
            let scan = read_segment(&path).unwrap();
            assert!(
                matches!(&scan.end, ScanEnd::Corrupt { offset, .. } if *offset == offsets[0]),
                "{:?}",
                scan.end
            );
            // The damage is exactly record 0; the scan resumes at record 1.
            let damaged: Vec<_> = scan.damaged.iter().map(|d| (d.start, d.end)).collect();
            assert_eq!(damaged, vec![(offsets[0], offsets[1])]);
            let after = offsets[1..]
                .iter()
                .copied()
                .zip(entries[1..].iter().cloned());
            assert_eq!(scan.entries, after.collect::<Vec<_>>());
            assert_eq!(scan.valid_len, bytes.len() as u64);
            let err = repair_tail(&path, |_, _| {}).unwrap_err();
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{err}"
            );
            assert!(
                err.to_string().contains(&format!("offset {}", offsets[0])),
                "{err}"
            );
            assert!(
                err.to_string()
                    .contains(&format!("aggregator archive repair {}", dir.display())),
                "{err}"
            );
            assert_eq!(
                fs::read(&path).unwrap(),
                bad,
                "corruption is never repaired"
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Damage in two places and a torn tail: every range is found, and every record between them
    /// is read.
    #[test]
    fn a_scan_resynchronises_after_each_damaged_range() {
        let entries: Vec<Entry> = (0..6).map(|seq| frame_entry(seq, b"SAFE_MODE")).collect();
        let (mut bytes, offsets) = segment(&entries);
        let full = bytes.len() as u64;
        bytes[offsets[1] as usize + 5] ^= 0x01; // record 1's CRC
        bytes[offsets[3] as usize] = 0xff; // record 3's length, far past the limit
        bytes.extend_from_slice(&[0, 0, 0, 9, 1]); // a header cut short
        let scan = scan_bytes(Bytes::from(bytes));
        let damaged: Vec<_> = scan.damaged.iter().map(|d| (d.start, d.end)).collect();
        assert_eq!(
            damaged,
            vec![
                (offsets[1], offsets[2]),
                (offsets[3], offsets[4]),
                (full, full + 5)
            ]
        );
        assert!(scan.damaged[0].reason.contains("CRC mismatch"), "{scan:?}");
        assert!(scan.damaged[1].reason.contains("outside 1..="), "{scan:?}");
        assert!(scan.damaged[2].reason.contains("cut short"), "{scan:?}");
        assert_corrupt_at(
            &scan.end,
            offsets[1],
            "a valid record follows at offset",
            "",
        );
        let kept: Vec<_> = scan.entries.iter().map(|(at, _)| *at).collect();
        assert_eq!(kept, [0, 2, 4, 5].map(|i| offsets[i]));
        assert_eq!((scan.valid_len, scan.file_len), (full, full + 5));
        assert_eq!(
            scan.damaged[0].to_string(),
            format!(
                "bytes {}..{} ({} bytes): {}",
                offsets[1],
                offsets[2],
                offsets[2] - offsets[1],
                scan.damaged[0].reason
            )
        );
    }

    /// A record whose CRC matches but whose contents are impossible is corrupt even at the end;
    /// in the middle, the scan goes on after it.
    #[test]
    fn an_impossible_record_is_a_damaged_range_too() {
        let (good, _) = segment(&sample()[2..3]);
        let mut bytes = MAGIC.to_vec();
        encode_record(&mut bytes, |b| b.extend_from_slice(&[9, 0, 0]));
        let next = bytes.len() as u64;
        let alone = scan_bytes(Bytes::from(bytes.clone()));
        assert_corrupt_at(&alone.end, 8, "unknown record type 9", "alone");
        assert_eq!(alone.damaged.len(), 1);
        bytes.extend_from_slice(&good[MAGIC.len()..]);
        let scan = scan_bytes(Bytes::from(bytes));
        assert_eq!(
            scan.damaged
                .iter()
                .map(|d| (d.start, d.end))
                .collect::<Vec<_>>(),
            vec![(8, next)]
        );
        assert_eq!(scan.entries, vec![(next, sample()[2].clone())]);
    }

    #[test]
    fn bad_magic_and_impossible_contents_are_corrupt() {
        let (mut bytes, _) = segment(&sample());
        bytes[0] = b'X';
        let scan = scan_bytes(Bytes::from(bytes));
        assert!(matches!(scan.end, ScanEnd::Corrupt { offset: 0, .. }));
        assert!(scan.entries.is_empty());
        assert!(matches!(
            scan_bytes(Bytes::from_static(b"PK")).end,
            ScanEnd::Corrupt { offset: 0, .. }
        ));
        // A record with a valid CRC and an unknown type: a writer bug, not a crash.
        let mut out = MAGIC.to_vec();
        encode_record(&mut out, |b| b.extend_from_slice(&[9, 0, 0]));
        assert!(matches!(
            scan_bytes(Bytes::from(out)).end,
            ScanEnd::Corrupt { offset: 8, .. }
        ));
    }

    /// A reader that hands out at most 4,099 bytes a call, as a pipe or a network file system may.
    struct Trickle<'a>(&'a [u8]);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(4099).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    /// Records straddle the scan's window, one is larger than it, and reads come back short: the
    /// scan sees every record where it is, and a tail cut inside the large record is torn at it.
    #[test]
    fn a_segment_larger_than_the_window_scans_record_by_record() {
        let payloads: Vec<Vec<u8>> = (0..40u64)
            .map(|i| vec![i as u8; (i as usize * 37_813) % 150_000])
            .chain([vec![0xee; WINDOW + WINDOW / 2]])
            .chain((40..60u64).map(|i| vec![i as u8; 10_000 + i as usize]))
            .collect();
        let mut bytes = MAGIC.to_vec();
        let mut expected = Vec::new();
        let mut large_at = 0;
        for (sequence, payload) in payloads.iter().enumerate() {
            let at = bytes.len() as u64;
            if payload.len() > WINDOW {
                large_at = at;
            }
            let sequence = sequence as u64;
            encode_frames(
                &mut bytes,
                SourceKind::LiveUplink,
                Priority::Routine,
                3,
                5,
                [(sequence, &payload[..])],
            );
            expected.push((at, sequence, payload.len()));
        }
        assert!(bytes.len() > 3 * WINDOW, "{} bytes", bytes.len());

        let mut seen = Vec::new();
        let scanned = scan(Trickle(&bytes), |at, entry| match entry {
            Entry::Frame(frame) => seen.push((at, frame.sequence, frame.payload.len())),
            other => panic!("unexpected {other:?}"),
        })
        .unwrap();
        assert_eq!(scanned.end, ScanEnd::Clean);
        assert_eq!(scanned.valid_len, bytes.len() as u64);
        assert_eq!(seen, expected);

        let cut = &bytes[..large_at as usize + WINDOW];
        let mut before = 0;
        let scanned = scan(Trickle(cut), |_, _| before += 1).unwrap();
        assert!(
            matches!(&scanned.end, ScanEnd::Torn { offset, reason } if *offset == large_at && reason.contains("cut short")),
            "{:?}",
            scanned.end
        );
        assert_eq!(
            (scanned.valid_len, scanned.file_len),
            (large_at, cut.len() as u64)
        );
        assert_eq!(before, 40, "the records before the large one");
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let err =
            read_segment(Path::new("/nonexistent/segment-00000000000000000001.seg")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/segment-"), "{err}");
    }

    /// Three frames of live uplink 9, emergency, received at 77.
    fn three_frames() -> Vec<(u64, &'static [u8])> {
        vec![(5, &b"ABORT"[..]), (6, &b""[..]), (9, &b"SAFE_MODE"[..])]
    }

    /// [`three_frames`] as one FRAMES record.
    fn encode_three_frames(out: &mut Vec<u8>) {
        encode_frames(
            out,
            SourceKind::LiveUplink,
            Priority::Emergency,
            9,
            77,
            three_frames(),
        );
    }

    fn frame_entry(sequence: u64, payload: &'static [u8]) -> Entry {
        Entry::Frame(FrameRecord {
            kind: SourceKind::LiveUplink,
            priority: Priority::Emergency,
            source_id: 9,
            sequence,
            received_unix_ns: 77,
            payload: Bytes::from_static(payload),
            reception: None,
        })
    }

    #[test]
    fn a_frames_record_reads_back_as_its_frames_at_its_offset() {
        let (mut bytes, _) = segment(&sample()[2..3]);
        let at = bytes.len() as u64;
        let frames = three_frames();
        encode_three_frames(&mut bytes);
        // The documented size: 8 + 19 + (12 + payload) per frame.
        assert_eq!(bytes.len() as u64 - at, 8 + 19 + (12 + 5) + 12 + (12 + 9));
        let scan = scan_bytes(Bytes::from(bytes));
        assert_eq!(scan.end, ScanEnd::Clean);
        let expected: Vec<_> = frames
            .iter()
            .map(|&(sequence, payload)| (at, frame_entry(sequence, payload)))
            .collect();
        assert_eq!(scan.entries[1..], expected[..]);
        // No frames, no record.
        let mut empty = Vec::new();
        encode_frames(
            &mut empty,
            SourceKind::LiveUplink,
            Priority::Routine,
            9,
            0,
            std::iter::empty(),
        );
        assert!(empty.is_empty());
    }

    /// A link's frames keep their reception: the record's link and station, each frame's
    /// earth-receive time, mode and AX.25 addresses; a frame on its own (as recovery rewrites a
    /// journal's) too. Undefined flags are damage, never a guess.
    #[test]
    fn received_frames_read_back_with_their_reception() {
        let delivery = Arc::new(Delivery {
            link: "uhf".into(),
            station: "Svalbard, SG-1".into(),
        });
        let received = [
            Received {
                earth_unix_ns: Some(1_700_000_000_123_000_000),
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
            Received::default(),
        ];
        let head = FramesHead {
            kind: SourceKind::LiveUplink,
            priority: Priority::Routine,
            source_id: 500,
            received_unix_ns: 77,
        };
        let frames = three_frames().into_iter().zip(received);
        let frames = frames.map(|((s, p), r)| (s, p, r));
        let mut bytes = MAGIC.to_vec();
        encode_received_frames(&mut bytes, head, &delivery, frames);
        let scan = scan_bytes(Bytes::from(bytes.clone()));
        assert_eq!(scan.end, ScanEnd::Clean);
        let frames: Vec<FrameRecord> = (scan.entries.into_iter())
            .map(|(_, entry)| match entry {
                Entry::Frame(frame) => frame,
                other => panic!("{other:?}"),
            })
            .collect();
        let got: Vec<_> = frames.iter().map(|f| f.reception.clone()).collect();
        let expected: Vec<_> = (received.iter())
            .map(|&received| {
                let delivery = Arc::clone(&delivery);
                Some(Box::new(Reception { delivery, received }))
            })
            .collect();
        assert_eq!(got, expected);
        assert_eq!(frames[2].payload, &b"SAFE_MODE"[..]);
        let mut one = MAGIC.to_vec();
        frames[0].encode(&mut one);
        let again = scan_bytes(Bytes::from(one));
        assert_eq!(again.entries, vec![(8, Entry::Frame(frames[0].clone()))]);
        // The first frame's flags, after the fixed part and the two names.
        let flags = MAGIC.len() + RECORD_HEADER_LEN + FRAMES_BODY_FIXED + 2 + 3 + 14 + 12;
        assert_eq!(bytes[flags], HAS_EARTH_TIME | HAS_AX25);
        bytes[flags] |= 0x80;
        let start = MAGIC.len();
        let len = bytes.len() - start - RECORD_HEADER_LEN;
        let crc = crc32fast::hash(&bytes[start + RECORD_HEADER_LEN..]);
        bytes[start + 4..start + 8].copy_from_slice(&crc.to_be_bytes());
        let scan = scan_bytes(Bytes::from(bytes));
        assert!(
            matches!(&scan.end, ScanEnd::Corrupt { reason, .. } | ScanEnd::Torn { reason, .. }
                if reason.contains("undefined reception flags 0x85")),
            "{:?} ({len} bytes)",
            scan.end
        );
    }

    #[test]
    fn frames_past_the_body_limit_go_into_more_records() {
        let mut bytes = MAGIC.to_vec();
        // Room for the fixed part and two 5-byte or 0-byte frames, not for 9 bytes more.
        let max_body = FRAMES_BODY_FIXED + 2 * FRAMES_ENTRY_FIXED + 5;
        let head = FramesHead {
            kind: SourceKind::LiveUplink,
            priority: Priority::Emergency,
            source_id: 9,
            received_unix_ns: 77,
        };
        let frames = three_frames().into_iter();
        let frames = frames.map(|(s, p)| (s, p, Received::default()));
        encode_frames_within(&mut bytes, max_body, head, None, frames);
        let scan = scan_bytes(Bytes::from(bytes));
        assert_eq!(scan.end, ScanEnd::Clean);
        let offsets: Vec<_> = scan.entries.iter().map(|(at, _)| *at).collect();
        let second = (MAGIC.len() + RECORD_HEADER_LEN + max_body) as u64;
        assert_eq!(offsets, vec![8, 8, second]);
        let got: Vec<_> = scan.entries.into_iter().map(|(_, e)| e).collect();
        let expected: Vec<_> = three_frames()
            .into_iter()
            .map(|(sequence, payload)| frame_entry(sequence, payload))
            .collect();
        assert_eq!(got, expected);
    }

    /// The CLOCK record of the example in docs/archive-format.md, byte for byte.
    #[test]
    fn a_clock_record_is_the_bytes_the_format_document_shows() {
        let at = 1_700_000_000_000_000_000;
        let start = ClockEvent {
            kind: ClockEventKind::Start,
            archive_ns: at,
            wall_ns: at,
            jump_ns: 0,
        };
        let mut out = Vec::new();
        encode_clock(&mut out, &start);
        let hex: Vec<String> = out.iter().map(|b| format!("{b:02x}")).collect();
        let documented = "00 00 00 1a 90 93 0a 2d 07 00 17 97 9c fe 36 2a 00 00 \
                          17 97 9c fe 36 2a 00 00 00 00 00 00 00 00 00 00";
        assert_eq!(
            hex.join(" "),
            documented.split_whitespace().collect::<Vec<_>>().join(" ")
        );
    }

    /// A version 4 segment (an earlier build's, without CLOCK records) reads as it was written;
    /// the file's version is told before a writer appends to it.
    #[test]
    fn a_version_4_segment_reads_as_it_was_written() {
        let dir = temp_dir("version-4");
        let entries: Vec<Entry> = sample()
            .into_iter()
            .filter(|e| e.source().is_some())
            .collect();
        let (mut bytes, offsets) = segment(&entries);
        bytes[..8].copy_from_slice(b"TLMSEG04");
        let path = write(&dir, 1, &bytes);
        let scan = read_segment(&path).unwrap();
        assert_eq!(scan.end, ScanEnd::Clean);
        let expected: Vec<_> = offsets.into_iter().zip(entries).collect();
        assert_eq!(scan.entries, expected);
        assert_eq!(file_version(&path).unwrap(), 4);
        let file = File::open(&path).unwrap();
        let records = read_records(&file, &path, 8, bytes.len() as u64, 1 << 20).unwrap();
        assert_eq!(records.entries, expected);
        fs::write(&path, MAGIC).unwrap();
        assert_eq!(file_version(&path).unwrap(), FORMAT_VERSION);
    }

    /// A segment of an older format version (`TLMSEG02`, `TLMSEG03`) or a newer one is refused:
    /// a scan, and a follower's read, fail with an error naming the version found and the ones
    /// read, and the file; nothing is taken for damage.
    #[test]
    fn a_segment_of_another_format_version_is_refused_naming_both_versions() {
        let dir = temp_dir("other-version");
        for (magic, found) in [(b"TLMSEG02", 2), (b"TLMSEG03", 3), (b"TLMSEG06", 6)] {
            let (mut bytes, _) = segment(&sample());
            bytes[..8].copy_from_slice(magic);
            let says = format!(
                "archive format version {found} (magic {}); this build reads versions 4 and 5",
                String::from_utf8_lossy(magic)
            );
            let err = scan(&bytes[..], |_, _| panic!("nothing is read")).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Unsupported, "no damage");
            assert_eq!(err.to_string(), says);

            let path = dir.join(segment_name(u64::from(magic[7])));
            fs::write(&path, &bytes).unwrap();
            let err = read_segment(&path).unwrap_err().to_string();
            assert!(
                err.contains(&says) && err.contains(&*path.to_string_lossy()),
                "{err}"
            );
            let file = File::open(&path).unwrap();
            let err = read_records(&file, &path, 8, bytes.len() as u64, 1 << 20).unwrap_err();
            assert_eq!(err.kind(), io::ErrorKind::Unsupported, "no damage");
            let err = err.to_string();
            assert!(
                err.contains(&says) && err.contains(&*path.to_string_lossy()),
                "{err}"
            );
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Asserts that a scan ended at a corrupt record at `offset` whose reason says `says`.
    #[track_caller]
    fn assert_corrupt_at(end: &ScanEnd, offset: u64, says: &str, case: &str) {
        assert!(
            matches!(end, ScanEnd::Corrupt { offset: at, reason } if *at == offset && reason.contains(says)),
            "{case}: expected corrupt at offset {offset} saying {says:?}, got {end:?}"
        );
    }

    #[test]
    fn a_stored_run_that_runs_backwards_is_corrupt() {
        let mut bytes = MAGIC.to_vec();
        encode_stored(&mut bytes, SourceKind::LiveUplink, 1, 7, 6);
        let scan = scan_bytes(Bytes::from(bytes));
        assert_corrupt_at(&scan.end, 8, "from 7 down to 6", "");
    }

    #[test]
    fn a_frames_record_too_short_for_its_fields_is_corrupt_not_a_panic() {
        for body in [
            &[TYPE_FRAMES][..],
            &[TYPE_FRAMES, 0],
            &[TYPE_FRAMES, 0, 1, 0, 0],
        ] {
            let mut bytes = MAGIC.to_vec();
            encode_record(&mut bytes, |b| b.extend_from_slice(body));
            let scan = scan_bytes(Bytes::from(bytes));
            let case = format!("{}-byte body", body.len());
            assert_corrupt_at(&scan.end, 8, "shorter than 19", &case);
        }
    }

    #[test]
    fn a_frames_record_whose_count_disagrees_with_its_body_is_corrupt_and_yields_nothing() {
        let mut bytes = MAGIC.to_vec();
        encode_three_frames(&mut bytes);
        let count_at = MAGIC.len() + RECORD_HEADER_LEN + FRAMES_BODY_FIXED - 4;
        for (count, says) in [(2, "unused"), (4, "runs past"), (0, "unused")] {
            let mut bad = bytes.clone();
            bad[count_at..count_at + 4].copy_from_slice(&u32::to_be_bytes(count));
            // A valid CRC: the contents, not the checksum, are wrong.
            seal_record(&mut bad, MAGIC.len());
            let scan = scan_bytes(Bytes::from(bad));
            assert_corrupt_at(&scan.end, 8, says, &format!("count {count}"));
            assert!(scan.entries.is_empty(), "count {count}");
        }
    }

    /// An offset a follower names may point into a payload whose bytes read as a record's length:
    /// one no record can have is refused before anything more is read (here, past the file's end).
    #[test]
    fn a_record_length_past_the_largest_is_refused_before_it_is_read() {
        let dir = std::env::temp_dir().join(format!("read-records-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join(segment_name(1));
        let mut bytes = MAGIC.to_vec();
        let huge = 2 * MAX_BODY_LEN;
        let payload = [&huge.to_be_bytes()[..], &[0; 60]].concat();
        encode_frame(
            &mut bytes,
            SourceKind::LiveUplink,
            Priority::Routine,
            1,
            0,
            0,
            &payload,
        );
        fs::write(&path, &bytes).unwrap();
        let file = File::open(&path).unwrap();
        let inside = (bytes.len() - payload.len()) as u64;
        let to = inside + u64::from(huge) + 64;
        let read = read_records(&file, &path, inside, to, 1);
        fs::remove_dir_all(&dir).unwrap();
        let err = read.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
        assert!(err.to_string().contains("body length"), "{err}");
    }

    fn stored_frame(
        (kind, source_id): (SourceKind, u32),
        priority: Priority,
        received_unix_ns: u64,
        (sequence, payload): (u64, Vec<u8>),
    ) -> Entry {
        Entry::Frame(FrameRecord {
            kind,
            priority,
            source_id,
            sequence,
            received_unix_ns,
            payload: payload.into(),
            reception: None,
        })
    }

    /// One record as the writer writes it, with the entries it reads back as: a FRAME, a
    /// WATERMARK, a STORED RUN, or a FRAMES record of one to five frames.
    fn any_record() -> impl Strategy<Value = (Vec<u8>, Vec<Entry>)> {
        let source = || (arbitrary::source_kind(), any::<u32>());
        let payload = || proptest::collection::vec(any::<u8>(), 0..40);
        let frame = (
            source(),
            arbitrary::priority(),
            any::<u64>(),
            any::<u64>(),
            payload(),
        );
        let frames = proptest::collection::vec((any::<u64>(), payload()), 1..6);
        let batch = (source(), arbitrary::priority(), any::<u64>(), frames);
        let single = proptest::prop_oneof![
            frame.prop_map(
                |((kind, source_id), priority, sequence, received, payload)| {
                    stored_frame((kind, source_id), priority, received, (sequence, payload))
                }
            ),
            (source(), any::<u64>()).prop_map(|((kind, source_id), acked)| Entry::Watermark {
                kind,
                source_id,
                acked
            }),
            (source(), any::<u64>(), any::<u64>()).prop_map(|((kind, source_id), a, b)| {
                Entry::Stored {
                    kind,
                    source_id,
                    first: a.min(b),
                    last: a.max(b),
                }
            }),
        ]
        .prop_map(|entry| {
            let mut bytes = Vec::new();
            entry.encode(&mut bytes);
            (bytes, vec![entry])
        });
        let batch = batch.prop_map(|((kind, source_id), priority, received, frames)| {
            let mut bytes = Vec::new();
            let payloads = frames.iter().map(|(sequence, p)| (*sequence, &p[..]));
            encode_frames(&mut bytes, kind, priority, source_id, received, payloads);
            let entries = (frames.into_iter())
                .map(|frame| stored_frame((kind, source_id), priority, received, frame));
            (bytes, entries.collect())
        });
        proptest::prop_oneof![single, batch]
    }

    /// A record placed in a segment: where it starts and ends, and its entries.
    type Placed = (u64, u64, Vec<Entry>);

    /// A segment of `records`: its bytes, and each record placed.
    fn segment_of(records: Vec<(Vec<u8>, Vec<Entry>)>) -> (Vec<u8>, Vec<Placed>) {
        let mut bytes = MAGIC.to_vec();
        let mut placed = Vec::new();
        for (record, entries) in records {
            let start = bytes.len() as u64;
            bytes.extend_from_slice(&record);
            placed.push((start, bytes.len() as u64, entries));
        }
        (bytes, placed)
    }

    /// The entries of `records` with their records' offsets, as a scan hands them out.
    fn entries_of<'a>(
        records: impl IntoIterator<Item = &'a (u64, u64, Vec<Entry>)>,
    ) -> Vec<(u64, Entry)> {
        let entries = records.into_iter().flat_map(|(start, _, entries)| {
            entries.iter().map(move |entry| (*start, entry.clone()))
        });
        entries.collect()
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(128))]

        /// Any records read back as written, each at its offset, and the segment is clean.
        #[test]
        fn any_records_read_back_as_written(
            records in proptest::collection::vec(any_record(), 0..10),
        ) {
            let (bytes, records) = segment_of(records);
            let scan = scan_bytes(Bytes::from(bytes.clone()));
            proptest::prop_assert_eq!(scan.end, ScanEnd::Clean);
            proptest::prop_assert_eq!(scan.valid_len, bytes.len() as u64);
            proptest::prop_assert_eq!(scan.entries, entries_of(&records));
        }

        /// A segment cut at any byte (a crash's torn tail) reads back exactly the records that
        /// end before the cut; the rest is a torn tail from the end of the last of them (from 0
        /// when the cut is within the magic).
        #[test]
        fn a_segment_cut_anywhere_reads_back_the_records_before_the_cut(
            records in proptest::collection::vec(any_record(), 1..10),
            cut in any::<proptest::sample::Index>(),
        ) {
            let (bytes, records) = segment_of(records);
            let cut = cut.index(bytes.len() + 1);
            let scan = scan_bytes(Bytes::copy_from_slice(&bytes[..cut]));
            let whole: Vec<_> = records.iter().filter(|(_, end, _)| *end <= cut as u64).collect();
            let valid_len = match whole.last() {
                Some((_, end, _)) => *end,
                None if cut >= MAGIC.len() => MAGIC.len() as u64,
                None => 0,
            };
            proptest::prop_assert_eq!(scan.valid_len, valid_len);
            proptest::prop_assert_eq!(scan.entries, entries_of(whole));
            // A file cut within its magic is torn even when empty: repair writes the magic.
            match cut >= MAGIC.len() && valid_len == cut as u64 {
                true => proptest::prop_assert_eq!(scan.end, ScanEnd::Clean),
                false => proptest::prop_assert!(
                    matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == valid_len),
                    "{:?}", scan.end
                ),
            }
        }

        /// A byte flipped anywhere in a record costs that record, reported as a damaged range
        /// over exactly its bytes, and never reads back as another record: every other record
        /// reads back as written.
        #[test]
        fn a_flipped_byte_costs_its_record_and_is_reported(
            records in proptest::collection::vec(any_record(), 1..10),
            at in any::<proptest::sample::Index>(),
            flip in 1u8..=255,
        ) {
            let (mut bytes, records) = segment_of(records);
            let at = MAGIC.len() + at.index(bytes.len() - MAGIC.len());
            bytes[at] ^= flip;
            let hit = records.iter().position(|(start, end, _)| (*start..*end).contains(&(at as u64))).unwrap();
            let (start, end, _) = records[hit];
            let scan = scan_bytes(Bytes::from(bytes));
            let damaged: Vec<_> = scan.damaged.iter().map(|d| (d.start, d.end)).collect();
            proptest::prop_assert_eq!(damaged, vec![(start, end)]);
            let others = records.iter().enumerate().filter(|(k, _)| *k != hit).map(|(_, r)| r);
            proptest::prop_assert_eq!(scan.entries, entries_of(others));
            match hit + 1 == records.len() {
                true => proptest::prop_assert!(
                    matches!(scan.end, ScanEnd::Torn { offset, .. } if offset == start),
                    "{:?}", scan.end
                ),
                false => proptest::prop_assert!(
                    matches!(scan.end, ScanEnd::Corrupt { offset, .. } if offset == start),
                    "{:?}", scan.end
                ),
            }
        }
    }
}
