//! Whole-file reads of a segment: a scan that goes on past damage (resynchronising at the next
//! valid record) and says how the file ended, the repair of a torn tail, ranged reads of whole
//! records from the middle of a segment, and the check of a file's format version.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use bytes::{Bytes, BytesMut};

use crate::domain::position::DurableEnd;

use super::damage::{DamageReason, Follows, Kept};
use super::decode::{body_len, decode_at, record_header};
use super::error::ArchiveError;
use super::input::Input;
use super::names::list_segments;
use super::record::*;

/// How a segment's records ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte belongs to a valid record.
    Clean,
    /// The bytes from `offset` on are an incomplete or damaged last write: nothing valid follows,
    /// and nothing before it is damaged. [`repair_tail`] cuts them.
    Torn { offset: u64, reason: DamageReason },
    /// The first damage, at `offset`, is one a crash cannot explain: a valid record follows it, its
    /// CRC matches but its contents are impossible, or the magic is wrong. Never cut; the scan goes
    /// on after it, and [`Scanned::damaged`] lists every damaged range.
    Corrupt {
        offset: u64,
        reason: DamageReason,
        /// Where the first valid record after it starts, when one does.
        followed_by: Option<u64>,
    },
}

impl std::fmt::Display for ScanEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ScanEnd::Clean => f.write_str("clean"),
            ScanEnd::Torn { offset, reason } => write!(f, "torn at offset {offset}: {reason}"),
            ScanEnd::Corrupt {
                offset,
                reason,
                followed_by,
            } => {
                let follows = Follows(*followed_by);
                write!(f, "corrupt at offset {offset}: {reason}{follows}")
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
    pub reason: DamageReason,
}

impl Damage {
    /// How a scan whose first damage this is ended, in a file of `file_len` bytes. Only a crash's
    /// kind of damage ([`DamageReason::crash_can_explain`]) with nothing valid after it is torn.
    fn scan_end(&self, file_len: u64) -> ScanEnd {
        let (offset, reason) = (self.start, self.reason.clone());
        let followed_by = (self.end < file_len).then_some(self.end);
        match followed_by.is_none() && reason.crash_can_explain() {
            true => ScanEnd::Torn { offset, reason },
            false => ScanEnd::Corrupt {
                offset,
                reason,
                followed_by,
            },
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
    pub(super) fn new(entries: Vec<(u64, Entry)>, scanned: Scanned) -> SegmentScan {
        SegmentScan {
            entries,
            valid_len: scanned.valid_len,
            file_len: scanned.file_len,
            end: scanned.end,
            damaged: scanned.damaged,
        }
    }
}

/// The first offset after `pos` where a complete, valid record starts (a length within
/// [`MAX_BODY_LEN`], a body whose CRC matches and which decodes), if any: where a scan resumes
/// after the bad record at `pos`, and evidence that the damage is in the middle of the file, not a
/// torn tail.
fn resync_after(data: &Bytes, pos: usize, version: u8) -> Option<usize> {
    let mut scratch = Vec::new();
    (pos + 1..data.len().saturating_sub(RECORD_HEADER_LEN)).find(|&at| {
        scratch.clear();
        decode_at(data, at, version, &mut scratch).is_ok()
    })
}

/// How much of a segment a scan reads at a time.
pub(super) const WINDOW: usize = 1 << 20;

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
    /// magic was cut short, corrupt otherwise.
    fn unreadable(file_len: u64, reason: DamageReason) -> Scanned {
        let damage = Damage {
            start: 0,
            end: file_len,
            reason,
        };
        Scanned {
            valid_len: 0,
            file_len,
            end: damage.scan_end(file_len),
            damaged: vec![damage],
        }
    }
}

/// One record decoded by [`Window::next_record`]: `Err` with its bytes when it is bad.
type Decoded = Result<(), (Bytes, DamageReason)>;

/// A segment read a window at a time, so that a scan holds the record it decodes and what follows
/// it in the window, not the file: recovery reads a newest segment of `archive.segment_bytes`
/// (64 MiB by default) with the daemon's memory bound still in force.
struct Window<'a, R> {
    reader: R,
    /// The file's path, for its errors.
    path: &'a Path,
    bytes: BytesMut,
    /// The file offset of `bytes[0]`.
    offset: u64,
    eof: bool,
}

impl<R: Read> Window<'_, R> {
    /// Makes the window hold at least `want` bytes, unless the file ends first.
    fn fill(&mut self, want: usize) -> Result<(), ArchiveError> {
        while self.bytes.len() < want && !self.eof {
            let len = self.bytes.len();
            self.bytes.resize(len + (want - len).max(WINDOW), 0);
            let read = loop {
                match self.reader.read(&mut self.bytes[len..]) {
                    Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                    read => break read,
                }
            };
            let n = read
                .inspect_err(|_| self.bytes.truncate(len))
                .map_err(ArchiveError::io(self.path, "read"))?;
            self.bytes.truncate(len + n);
            self.eof = n == 0;
        }
        Ok(())
    }

    /// The window's bytes and the rest of the file, for what only a damaged segment needs.
    fn rest(&mut self) -> Result<Bytes, ArchiveError> {
        let mut rest = std::mem::take(&mut self.bytes).to_vec();
        self.reader
            .read_to_end(&mut rest)
            .map_err(ArchiveError::io(self.path, "read"))?;
        Ok(Bytes::from(rest))
    }

    /// Reads the magic: `Ok(Ok(version))` for a format version read, or how a scan of a file
    /// that is not a segment (or whose magic was cut short) ends; an
    /// [`ArchiveError::Version`] for a segment of another format version ([`other_version`]).
    fn magic(&mut self) -> Result<Result<u8, Scanned>, ArchiveError> {
        self.fill(MAGIC.len())?;
        let held = &self.bytes[..];
        let magic = held.get(..MAGIC.len()).unwrap_or(held);
        if let Some(refused) = other_version(self.path, magic) {
            return Err(refused);
        }
        let version = match (readable(magic), <[u8; MAGIC.len()]>::try_from(magic)) {
            (Some(version), _) => version,
            (None, Err(_)) => {
                let reason = match MAGIC.starts_with(magic) {
                    true => DamageReason::MagicCutShort { held: magic.len() },
                    false => DamageReason::NotASegment,
                };
                return Ok(Err(Scanned::unreadable(magic.len() as u64, reason)));
            }
            (None, Ok(magic)) => {
                let reason = DamageReason::BadMagic { magic };
                let file_len = self.rest()?.len() as u64;
                return Ok(Err(Scanned::unreadable(file_len, reason)));
            }
        };
        // A readable magic is whole.
        drop(self.bytes.split_to(MAGIC.len()));
        self.offset = MAGIC.len() as u64;
        Ok(Ok(version))
    }

    /// Decodes the record at the start of the window into `out` and moves past it. `None` at the
    /// end of the file; `Some(Err)` for a bad record, with its bytes (what the window held of it).
    fn next_record(
        &mut self,
        version: u8,
        out: &mut Vec<(u64, Entry)>,
    ) -> Result<Option<Decoded>, ArchiveError> {
        self.fill(RECORD_HEADER_LEN)?;
        if self.bytes.is_empty() {
            return Ok(None);
        }
        // The record alone (or, when its length cannot be right, what the window holds), so that
        // decoding it sees where it ends.
        let mut take = self.bytes.len();
        let header = record_header(&mut Input::new(&self.bytes));
        if let Some(len) = header.and_then(|(len, _)| body_len(len).ok()) {
            let record_len = RECORD_HEADER_LEN + len;
            self.fill(record_len)?;
            take = record_len.min(self.bytes.len());
        }
        let record = self.bytes.split_to(take).freeze();
        match decode_at(&record, 0, version, out) {
            Ok(_) => {
                self.offset += take as u64;
                Ok(Some(Ok(())))
            }
            Err(bad) => Ok(Some(Err((record, bad)))),
        }
    }
}

/// Scans a segment from `reader` (the file at `path`, which its errors name), handing every valid record's entries to `visit` in file order
/// with their offsets (a FRAMES record's frames all at the record's), and says how it ended.
///
/// It holds a window of about a megabyte and the record being decoded; a visitor that keeps the
/// entries keeps their payloads. After a bad record it reads the rest of the file in one piece
/// and resynchronises: the damaged range runs to the next offset where a valid record starts
/// ([`resync_after`]), and the records from there on are handed out too. An `Err` is a failed
/// read, or a segment of another format version ([`other_version`]); bad contents are in
/// [`Scanned::end`] and [`Scanned::damaged`].
pub fn scan(
    path: &Path,
    reader: impl Read,
    mut visit: impl FnMut(u64, Entry),
) -> Result<Scanned, ArchiveError> {
    let mut window = Window {
        reader,
        path,
        bytes: BytesMut::new(),
        offset: 0,
        eof: false,
    };
    let version = match window.magic()? {
        Ok(version) => version,
        Err(scanned) => return Ok(scanned),
    };
    let mut entries = Vec::new();
    loop {
        let at = window.offset;
        match window.next_record(version, &mut entries)? {
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
                return Ok(scan_damaged(Bytes::from(rest), at, version, bad, visit));
            }
        }
    }
}

/// The rest of a [`scan`] of a segment of format `version` from the bad record at file offset
/// `base`, `rest` holding the file from there on: each damaged range runs to the next offset where
/// a valid record starts, and the valid records after it go to `visit`, until the end of the file.
fn scan_damaged(
    rest: Bytes,
    base: u64,
    version: u8,
    first: DamageReason,
    mut visit: impl FnMut(u64, Entry),
) -> Scanned {
    let (mut damaged, mut entries, mut valid_len) = (Vec::new(), Vec::new(), base);
    let (mut bad, mut pos) = (Some(first), 0);
    while let Some(reason) = bad.take() {
        let end = resync_after(&rest, pos, version).unwrap_or(rest.len());
        damaged.push(Damage {
            start: base + pos as u64,
            end: base + end as u64,
            reason,
        });
        pos = end;
        while pos < rest.len() {
            match decode_at(&rest, pos, version, &mut entries) {
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
        end: damaged[0].scan_end(file_len),
        damaged,
    }
}

/// Reads a whole segment file: every valid entry with its byte offset, and how it ended.
///
/// An `Err` is an I/O error (the file cannot be read); bad contents are reported in
/// [`SegmentScan::end`], never as a panic.
pub fn read_segment(path: &Path) -> Result<SegmentScan, ArchiveError> {
    let mut entries = Vec::new();
    let scanned = scan_file(path, |offset, entry| entries.push((offset, entry)))?;
    Ok(SegmentScan::new(entries, scanned))
}

/// Bytes of the segment at `path` up to the end of its last valid record, read through once
/// without keeping its records.
pub(crate) fn valid_len(path: &Path) -> Result<u64, ArchiveError> {
    Ok(scan_file(path, |_, _| ())?.valid_len)
}

/// Where the shard in `dir` ends when no daemon writes to it: its newest segment's last whole
/// record (a daemon may be appending one; a crash may have torn one). Blocking: it reads that
/// segment once.
pub(crate) fn stopped_end(dir: &Path) -> Result<DurableEnd, ArchiveError> {
    Ok(match list_segments(dir)?.pop() {
        Some((index, path)) => DurableEnd {
            segment: index,
            len: valid_len(&path)?,
        },
        None => DurableEnd { segment: 0, len: 0 },
    })
}

/// [`scan`] of the file at `path`; an error names it.
fn scan_file(path: &Path, visit: impl FnMut(u64, Entry)) -> Result<Scanned, ArchiveError> {
    let file = File::open(path).map_err(ArchiveError::io(path, "read"))?;
    scan(path, file, visit)
}

/// Scans the segment at `path`, handing every valid entry to `visit` as [`scan`] does, and
/// truncates a torn tail: recovery's one read of the newest segment. Returns the bytes cut, `None`
/// when the segment was clean. A segment whose magic itself was cut short is rewritten as an empty
/// segment (the magic alone). A [`ScanEnd::Corrupt`] segment is not touched: the error names the
/// file, the offset, and the operator's way out, `aggregator archive repair DIR --quarantine`.
pub fn repair_tail(
    path: &Path,
    visit: impl FnMut(u64, Entry),
) -> Result<Option<u64>, ArchiveError> {
    let scanned = scan_file(path, visit)?;
    match scanned.end {
        ScanEnd::Clean => Ok(None),
        ScanEnd::Corrupt {
            offset,
            reason,
            followed_by,
        } => {
            let dir = path
                .parent()
                .filter(|dir| !dir.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
                .to_path_buf();
            Err(ArchiveError::Unrepaired {
                path: path.to_path_buf(),
                offset,
                reason,
                kept: Kept::Corrupt { followed_by, dir },
            })
        }
        ScanEnd::Torn { .. } => {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .open(path)
                .map_err(ArchiveError::io(path, "open for repair"))?;
            let fail = ArchiveError::io(path, "truncate the torn tail of");
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
/// a record starts): an [`ArchiveError::Damaged`] naming the file and the offset, when the first record
/// does not decode; when a later one does not, the records before it, and `next` at it (the next
/// read there is the error).
pub fn read_records(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
    budget: usize,
) -> Result<Records, ArchiveError> {
    use std::os::unix::fs::FileExt;
    let invalid = |offset: u64, why: DamageReason| ArchiveError::damaged(path, offset, why);
    let mut magic = [0; MAGIC.len()];
    file.read_exact_at(&mut magic, 0)
        .map_err(ArchiveError::io(path, "read"))?;
    if let Some(refused) = other_version(path, &magic) {
        return Err(refused);
    }
    let Some(version) = readable(&magic) else {
        return Err(invalid(0, DamageReason::NotASegment));
    };
    if from < MAGIC.len() as u64 || from > to {
        return Err(invalid(from, DamageReason::NotRecordOffset { below: to }));
    }
    let span = usize::try_from(to - from).unwrap_or(usize::MAX);
    let mut buf = vec![0; span.min(budget.max(RECORD_HEADER_LEN))];
    file.read_exact_at(&mut buf, from)
        .map_err(ArchiveError::io(path, "read"))?;
    // The first record whole, even when it is larger than the budget, once its length is one a
    // record can have: `from` may come from a follower, and point into a payload.
    if let Some((len, _)) = record_header(&mut Input::new(&buf)) {
        let len = body_len(len).map_err(|bad| invalid(from, bad))?;
        let first = RECORD_HEADER_LEN + len;
        if first > buf.len() && first <= span {
            let read = buf.len();
            buf.resize(first, 0);
            file.read_exact_at(&mut buf[read..], from + read as u64)
                .map_err(ArchiveError::io(path, "read"))?;
        }
    }
    let data = Bytes::from(buf);
    let (mut entries, mut pos) = (Vec::new(), 0);
    loop {
        let mut record = Input::new(data.get(pos..).unwrap_or_default());
        let header = record_header(&mut record);
        if header.is_none_or(|(len, _)| len as usize > record.len()) {
            break;
        }
        match decode_at(&data, pos, version, &mut entries) {
            Ok(next) => pos = next,
            Err(_) if pos > 0 => break,
            Err(bad) => return Err(invalid(from + pos as u64, bad)),
        }
    }
    if pos == 0 && !data.is_empty() {
        return Err(invalid(from, DamageReason::NoWholeRecord { by: to }));
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
pub(crate) fn next_record(
    file: &File,
    path: &Path,
    from: u64,
    to: u64,
) -> Result<Option<u64>, ArchiveError> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0; MAGIC.len()];
    file.read_exact_at(&mut magic, 0)
        .map_err(ArchiveError::io(path, "read"))?;
    let Some(version) = readable(&magic) else {
        return Ok(None);
    };
    let mut buf = vec![0; usize::try_from(to.saturating_sub(from)).unwrap_or(usize::MAX)];
    file.read_exact_at(&mut buf, from)
        .map_err(ArchiveError::io(path, "read"))?;
    Ok(resync_after(&Bytes::from(buf), 0, version).map(|at| from + at as u64))
}

/// The format version a segment magic names (`TLMSEG` and two digits).
fn magic_version(magic: &[u8]) -> Option<u8> {
    let mut input = Input::new(magic);
    input.tag(MAGIC_STEM)?;
    let [tens, ones] = input.take()?;
    (input.is_empty() && tens.is_ascii_digit() && ones.is_ascii_digit())
        .then(|| (tens - b'0') * 10 + (ones - b'0'))
}

/// The format version `magic` names, when this build reads it.
fn readable(magic: &[u8]) -> Option<u8> {
    magic_version(magic).filter(|version| READ_VERSIONS.contains(version))
}

/// The format version of the segment or journal at `path`, from its magic: what a writer checks
/// before it appends to a file an earlier build wrote. An error names the file.
pub(crate) fn file_version(path: &Path) -> Result<u8, ArchiveError> {
    let mut magic = [0; MAGIC.len()];
    File::open(path)
        .and_then(|mut file| file.read_exact(&mut magic))
        .map_err(ArchiveError::io(path, "read the magic of"))?;
    magic_version(&magic).ok_or_else(|| ArchiveError::damaged(path, 0, DamageReason::NotASegment))
}

/// The error for the file at `path` whose magic is a segment's of a format version this build
/// does not read (`TLMSEG` and two digits): refused with the versions named, rather than read as
/// damage (which `archive repair --quarantine` would move aside).
fn other_version(path: &Path, magic: &[u8]) -> Option<ArchiveError> {
    let found = magic_version(magic).filter(|v| !READ_VERSIONS.contains(v))?;
    Some(ArchiveError::Version {
        path: path.to_path_buf(),
        found,
        reads: READ_VERSIONS,
    })
}
