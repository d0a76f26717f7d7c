//! A sealed segment's index: what the segment holds, known without reading it.
//!
//! Retention deletes whole segments, oldest first by their newest frame's received time, and must
//! remember which frames of each source went with them (followers are told how many they missed,
//! `verify` does not call them missing). Reading a 64 MiB segment to learn that, at every deletion
//! or at every start for every segment, would cost as much I/O as the archive itself. So when a
//! segment is sealed the writer, which saw every batch go in, writes `segment-{index}.index` beside
//! it: its length, its frames, the oldest and newest received time, each source's frames as runs
//! of sequences, and a time index.
//!
//! The time index answers "where in this segment are the frames received between two times"
//! without reading it: the segment in blocks of about [`TIME_BLOCK_BYTES`] of records, each
//! with its offset and the oldest and newest received time of its frames (a station's frames in
//! blocks of their own, which its passes read). Received times are not
//! in order inside a shard (an emergency frame overtakes queued routine ones; frames recovered
//! from a journal are written after newer ones), so each block has both bounds and a time range
//! reads every block whose bounds meet it, and only those: exact whatever the order.
//!
//! The index is a cache, never the truth: it is synced as its segment is, but carries a CRC and
//! the segment length it describes, and a missing, damaged or stale index (of another length, after a
//! crash or a repair) is rebuilt from the segment by [`SegmentIndex::read_or_rebuild`]. Nothing
//! that must survive a crash rests on it alone.

use super::error::ArchiveError;
use super::input::Input;
use super::{names, record, scan};
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use super::record::{Entry, FrameRecord};
use crate::domain::clock::{ClockEvent, ClockEventKind};
use crate::domain::frame::{SourceKey, SourceKind};
use crate::domain::sequence_set::SequenceSet;

const MAGIC: &[u8; 8] = b"TLMIDX04";
/// The index of an earlier build: the same, without the CLOCK records (its segments have none).
const MAGIC_03: &[u8; 8] = b"TLMIDX03";
const SUFFIX: &str = ".index";

/// The most sources or runs an index file may claim: a length past it is damage.
const MOST_ENTRIES: u32 = 1 << 24;

/// Bytes of records a block of the time index covers before the next block starts (a block
/// starts at a record, never inside one): 1,024 blocks of 32 bytes for a 64 MiB segment.
pub(crate) const TIME_BLOCK_BYTES: u64 = 64 * 1024;

/// Bytes of the uplinks' records a block covers before a station's frames start one of their own
/// (and those of a station's block before the uplinks' do, none): a station's passes are read
/// without the uplinks' records beside them, and a segment has at most two blocks per 16 KiB
/// besides the 64 KiB ones, however the two alternate.
pub(crate) const STATIONS_APART_BYTES: u64 = 16 * 1024;

/// A block of a segment's time index: the records from `offset` to the next block's offset (or
/// the segment's end), the oldest and newest received time of their frames, and their sources'
/// bits ([`source_bit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeBlock {
    pub offset: u64,
    pub oldest: u64,
    pub newest: u64,
    pub sources: u64,
}

/// A source's bit in a time block's mask: one of 64, by a multiplicative hash of its kind byte
/// and id, so that a reader of a few sources passes over blocks that hold none of them. A
/// block of many sources has most bits set and is read; one of a source or two, as a busy
/// source's batches make them, is passed over unless a bit matches.
pub(crate) fn source_bit(kind: u8, id: u32) -> u64 {
    let key = u64::from(kind) << 32 | u64::from(id);
    1 << (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 58)
}

/// The mask of `sources`' bits; every bit when there are none (a reader of every source). A
/// reader's is narrowed to the sources each segment holds (`crate::archive::read`).
#[cfg(test)]
pub(crate) fn sources_mask(sources: &[SourceKey]) -> u64 {
    match sources {
        [] => u64::MAX,
        sources => sources
            .iter()
            .fold(0, |mask, &(kind, id)| mask | source_bit(kind.to_byte(), id)),
    }
}

/// One source's frames in a segment (or, in retention's state, deleted from a shard): how many,
/// and their sequences.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceSpan {
    pub frames: u64,
    pub sequences: SequenceSet,
}

/// Each source's span, by (kind byte, id).
pub(crate) type SourceSpans = BTreeMap<(u8, u32), SourceSpan>;

/// The sequences each ground station delivered of a link's source, by (kind byte, id) and the
/// station's name: which station's copy of each packet was stored.
pub(crate) type StationSpans = BTreeMap<(u8, u32), BTreeMap<String, SequenceSet>>;

/// What a segment holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SegmentIndex {
    /// The segment's length in bytes when the index was made: another length makes it stale.
    pub len: u64,
    pub frames: u64,
    /// The oldest and the newest received time of its frames (nanoseconds since the Unix epoch);
    /// `None` for a segment without frames.
    pub received: Option<(u64, u64)>,
    /// Each source's frames.
    pub sources: SourceSpans,
    /// The time index: blocks in the order of their offsets.
    pub times: Vec<TimeBlock>,
    /// Of the sources of ground-segment links, the sequences each station delivered.
    pub stations: StationSpans,
    /// Its CLOCK records, with their offsets: where a daemon started, or saw its clock step.
    pub clock: Vec<(u64, ClockEvent)>,
    /// What the last block of the time index began with, while the index is built.
    pub(crate) last_block: LastBlock,
}

/// What a block of the time index began with: the frames of a station (RECEIVED or RECORDED
/// FRAMES) or the uplinks' (the ingest protocol's sources).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Block {
    #[default]
    Uplinks,
    Stations,
}

/// The kind of the last block, which only places the next record of an index being built (by
/// the writer, or from a scan): not written, so an index read back has the default, and every
/// index equals every other in it (one read back equals the one written).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LastBlock(Block);

impl PartialEq for LastBlock {
    fn eq(&self, _: &LastBlock) -> bool {
        true
    }
}

impl Eq for LastBlock {}

/// A segment a shard's disk thread has sealed: durable, trimmed, its index written, and the
/// segment after it named, so that recovery no longer needs it. What retention may delete.
#[derive(Debug)]
pub(crate) struct SealedSegment {
    pub shard: usize,
    pub segment: u64,
    pub contents: SegmentIndex,
}

/// The received times a shard's open segment holds, which its writer keeps current and retention
/// reads (a segment's index exists only once it is sealed). Atomics: the writer pays two of them
/// a group, and never waits.
#[derive(Debug)]
pub struct OpenSpan {
    oldest: AtomicU64,
    newest: AtomicU64,
}

impl Default for OpenSpan {
    fn default() -> Self {
        OpenSpan {
            oldest: AtomicU64::new(u64::MAX),
            newest: AtomicU64::new(0),
        }
    }
}

impl OpenSpan {
    /// Widens the span to take `received` (the oldest and newest of some frames).
    pub(crate) fn add(&self, received: Option<(u64, u64)>) {
        if let Some((oldest, newest)) = received {
            self.oldest.fetch_min(oldest, Relaxed);
            self.newest.fetch_max(newest, Relaxed);
        }
    }

    /// A new segment is open: it holds nothing yet.
    pub(crate) fn reset(&self) {
        self.oldest.store(u64::MAX, Relaxed);
        self.newest.store(0, Relaxed);
    }

    /// The oldest and newest received time the open segment holds; `None` before its first frame.
    pub fn get(&self) -> Option<(u64, u64)> {
        let (oldest, newest) = (self.oldest.load(Relaxed), self.newest.load(Relaxed));
        (oldest <= newest).then_some((oldest, newest))
    }
}

/// The path of segment `index`'s index file in `dir`: `segment-{index:020}.index`.
pub fn index_path(dir: &Path, index: u64) -> PathBuf {
    let segment = names::segment_name(index);
    let stem = segment.strip_suffix(".seg").unwrap_or(&segment);
    dir.join(format!("{stem}{SUFFIX}"))
}

/// The segment index an index file's name gives; `None` for any other file.
pub(crate) fn indexed_segment(path: &Path) -> Option<u64> {
    let name = path.file_name()?.to_str()?;
    names::segment_index(Path::new(&format!("{}.seg", name.strip_suffix(SUFFIX)?)))
}

impl SegmentIndex {
    /// Counts the frames of `source` with these sequences, received at `received_ns`, stored in
    /// the record at `offset` (or in a group of records starting there). Offsets come in the
    /// order the records are in the segment.
    pub(crate) fn add(
        &mut self,
        offset: u64,
        source: SourceKey,
        received_ns: u64,
        sequences: impl IntoIterator<Item = u64>,
    ) {
        self.count(offset, source, received_ns, sequences, Block::Uplinks);
    }

    /// Counts the frames of `source` with the sequences `sequences` gives, which `station`
    /// delivered (a RECEIVED or RECORDED FRAMES record at `offset`), as [`Self::add`] does, and
    /// notes them as that station's.
    pub(crate) fn add_delivered<I: IntoIterator<Item = u64>>(
        &mut self,
        offset: u64,
        source: SourceKey,
        received_ns: u64,
        station: &str,
        sequences: impl Fn() -> I,
    ) {
        self.count(offset, source, received_ns, sequences(), Block::Stations);
        self.add_station(source, station, sequences());
    }

    fn count(
        &mut self,
        offset: u64,
        source: SourceKey,
        received_ns: u64,
        sequences: impl IntoIterator<Item = u64>,
        block: Block,
    ) {
        let span = self
            .sources
            .entry((source.0.to_byte(), source.1))
            .or_default();
        let before = span.sequences.len();
        let mut count = 0;
        span.sequences
            .extend(sequences.into_iter().inspect(|_| count += 1));
        // A sequence twice in one segment is a duplicate the set cannot count.
        debug_assert!(span.sequences.len() <= before + count);
        span.frames += count;
        self.frames += count;
        if count > 0 {
            self.received = Some(match self.received {
                None => (received_ns, received_ns),
                Some((oldest, newest)) => (oldest.min(received_ns), newest.max(received_ns)),
            });
            let bit = source_bit(source.0.to_byte(), source.1);
            self.place(offset, received_ns, bit, block);
        }
    }

    /// Counts one stored frame, stored in the record at `offset`.
    pub(crate) fn add_frame(&mut self, offset: u64, frame: &FrameRecord) {
        let (source, received, sequence) = (
            (frame.kind, frame.source_id),
            frame.received_unix_ns,
            [frame.sequence],
        );
        match &frame.reception {
            Some(reception) => {
                let station = &reception.delivery.station;
                self.add_delivered(offset, source, received, station, || sequence);
            }
            None => self.add(offset, source, received, sequence),
        }
    }

    /// Notes the CLOCK record at `offset`.
    pub(crate) fn add_clock(&mut self, offset: u64, event: ClockEvent) {
        self.clock.push((offset, event));
    }

    /// Adds a record read from the segment, at `offset`: a frame or a CLOCK record (the others
    /// are not indexed).
    pub(crate) fn add_entry(&mut self, offset: u64, entry: &Entry) {
        match entry {
            Entry::Frame(frame) => self.add_frame(offset, frame),
            Entry::Clock(event) => self.add_clock(offset, *event),
            Entry::Watermark { .. } | Entry::Stored { .. } => {}
        }
    }

    /// Notes that `station` delivered these sequences of `source` (counted with [`Self::add`]).
    fn add_station(
        &mut self,
        source: SourceKey,
        station: &str,
        sequences: impl IntoIterator<Item = u64>,
    ) {
        let stations = self
            .stations
            .entry((source.0.to_byte(), source.1))
            .or_default();
        let held = match stations.get_mut(station) {
            Some(held) => held,
            None => stations.entry(station.to_owned()).or_default(),
        };
        held.extend(sequences);
    }

    /// Puts a frame received at `received_ns` of the record at `offset` into the time index: into
    /// the last block, unless that one covers [`TIME_BLOCK_BYTES`] already, or the record is of
    /// the other kind of [`Block`] than the block began with and the block is a stations' one or
    /// covers [`STATIONS_APART_BYTES`]: a reader of the stations' frames then reads theirs, not
    /// the uplinks' records between them, and the blocks stay few whatever the mix.
    fn place(&mut self, offset: u64, received_ns: u64, source: u64, kind: Block) {
        // The first record follows the magic (a buffer written at 0 starts with it).
        let offset = offset.max(record::MAGIC.len() as u64);
        let last = self.times.last().map(|block| block.offset);
        // A block starts at a record, never inside one: a record's batches share its offset.
        let joins = last.is_some_and(|start| {
            let covered = offset.saturating_sub(start);
            let apart = kind != self.last_block.0
                && (self.last_block.0 == Block::Stations || covered >= STATIONS_APART_BYTES);
            covered == 0 || (covered < TIME_BLOCK_BYTES && !apart)
        });
        match self.times.last_mut() {
            Some(block) if joins => {
                block.oldest = block.oldest.min(received_ns);
                block.newest = block.newest.max(received_ns);
                block.sources |= source;
            }
            _ => {
                self.last_block = LastBlock(kind);
                self.times.push(TimeBlock {
                    offset,
                    oldest: received_ns,
                    newest: received_ns,
                    sources: source,
                });
            }
        }
    }

    /// The byte ranges of the segment that hold every frame received from `from` to `to`
    /// (inclusive) of the sources whose bits are in `sources` ([`source_bit`]), by its time
    /// index: each a run of blocks whose bounds meet the range and whose mask meets `sources`,
    /// from a block's offset to the next block's (the last to the segment's length). Other frames
    /// are in them too; none of those asked for is outside them.
    pub fn ranges_between(&self, from: u64, to: u64, sources: u64) -> Vec<(u64, u64)> {
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        let ends = self
            .times
            .iter()
            .skip(1)
            .map(|b| b.offset)
            .chain([self.len]);
        for (block, end) in self.times.iter().zip(ends) {
            if block.newest < from || block.oldest > to || block.sources & sources == 0 {
                continue;
            }
            match ranges.last_mut() {
                Some(last) if last.1 == block.offset => last.1 = end,
                _ => ranges.push((block.offset, end)),
            }
        }
        ranges
    }

    /// Segment `segment`'s index file in `dir`, when it is whole, of a version read and of the
    /// segment's length `len`.
    pub(crate) fn read_current(dir: &Path, segment: u64, len: u64) -> Option<SegmentIndex> {
        let index = decode(&fs::read(index_path(dir, segment)).ok()?)?;
        (index.len == len).then_some(index)
    }

    /// The index of the segment at `path`, read whole (a sealed segment: nothing appends to it).
    pub fn build(path: &Path) -> Result<SegmentIndex, ArchiveError> {
        Ok(SegmentIndex::of_scan(&scan::read_segment(path)?))
    }

    /// The index of a segment from a scan of it whole.
    pub(crate) fn of_scan(scanned: &scan::SegmentScan) -> SegmentIndex {
        let mut index = SegmentIndex::default();
        for (offset, entry) in &scanned.entries {
            index.add_entry(*offset, entry);
        }
        index.len = scanned.file_len;
        index
    }

    /// The index of segment `segment` (at `path`, in `dir`): its index file when that is whole
    /// and of the segment's present length, else built from the segment and written for the next
    /// time (a failure to write it is only logged: the index is a cache). Its span goes into
    /// `spans`.
    pub fn read_or_rebuild(
        dir: &Path,
        segment: u64,
        path: &Path,
        spans: &SpanCache,
    ) -> Result<SegmentIndex, ArchiveError> {
        let len = fs::metadata(path)
            .map_err(ArchiveError::io(path, "stat"))?
            .len();
        if let Some(index) = SegmentIndex::read_current(dir, segment, len) {
            spans.remember(dir, segment, &index);
            return Ok(index);
        }
        let index = SegmentIndex::build(path)?;
        if let Err(err) = index.write(&index_path(dir, segment)) {
            tracing::warn!(error = %err, "archive: cannot write a segment's index; it is built again when needed");
        }
        spans.remember(dir, segment, &index);
        Ok(index)
    }

    /// Writes the index to `path` and syncs it, as its segment is (it is still rebuilt when lost
    /// or damaged: the directory entry is not synced, and the segment stays the truth).
    pub(crate) fn write(&self, path: &Path) -> Result<(), ArchiveError> {
        let mut bytes = Vec::with_capacity(64 + self.sources.len() * 40 + self.times.len() * 32);
        self.encode(&mut bytes);
        let written = fs::File::create(path).and_then(|mut file| {
            io::Write::write_all(&mut file, &bytes)?;
            file.sync_data()
        });
        written.map_err(ArchiveError::io(path, "write"))
    }

    /// The source keys and spans, with their kinds decoded.
    pub fn spans(&self) -> impl Iterator<Item = (SourceKey, &SourceSpan)> {
        self.sources
            .iter()
            .filter_map(|(&(kind, id), span)| Some(((SourceKind::from_byte(kind)?, id), span)))
    }

    /// Appends the index file's bytes: [`encode_file`] with the time blocks and the stations'
    /// sequences after the spans.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let (oldest, newest) = self.received.unwrap_or((u64::MAX, 0));
        let head = [self.len, self.frames, oldest, newest];
        encode_file(out, MAGIC, head, &self.sources, |out| {
            out.extend_from_slice(&(self.times.len() as u32).to_be_bytes());
            for block in &self.times {
                for value in [block.offset, block.oldest, block.newest, block.sources] {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
            let entries = self.stations.values().map(BTreeMap::len).sum::<usize>();
            out.extend_from_slice(&(entries as u32).to_be_bytes());
            for (&(kind, id), stations) in &self.stations {
                for (station, sequences) in stations {
                    out.push(kind);
                    out.extend_from_slice(&id.to_be_bytes());
                    // Station names are at most 255 bytes (the config's rule).
                    let name = &station.as_bytes()[..station.len().min(255)];
                    out.push(name.len() as u8);
                    out.extend_from_slice(name);
                    encode_runs(out, sequences);
                }
            }
            out.extend_from_slice(&(self.clock.len() as u32).to_be_bytes());
            for (offset, event) in &self.clock {
                out.extend_from_slice(&offset.to_be_bytes());
                out.push(event.kind.to_byte());
                for value in [event.archive_ns, event.wall_ns, event.jump_ns as u64] {
                    out.extend_from_slice(&value.to_be_bytes());
                }
            }
        });
    }
}

/// Appends one of the archive's small files (an index, retention's state): its magic, the
/// integers of its head, each source's span, what `more` adds, and the CRC-32 of all of them.
pub(crate) fn encode_file(
    out: &mut Vec<u8>,
    magic: &[u8; 8],
    head: [u64; 4],
    spans: &SourceSpans,
    more: impl FnOnce(&mut Vec<u8>),
) {
    out.extend_from_slice(magic);
    for value in head {
        out.extend_from_slice(&value.to_be_bytes());
    }
    out.extend_from_slice(&(spans.len() as u32).to_be_bytes());
    for (&(kind, id), span) in spans {
        out.push(kind);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&span.frames.to_be_bytes());
        encode_runs(out, &span.sequences);
    }
    more(out);
    let crc = crc32fast::hash(out);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// Appends a count of runs, then each run's `first` and `last`.
fn encode_runs(out: &mut Vec<u8>, sequences: &SequenceSet) {
    out.extend_from_slice(&(sequences.runs().count() as u32).to_be_bytes());
    for (first, last) in sequences.runs() {
        out.extend_from_slice(&first.to_be_bytes());
        out.extend_from_slice(&last.to_be_bytes());
    }
}

/// Reads what [`encode_file`] wrote: the head, the spans and what `more` reads of the rest;
/// `None` when the bytes are not a whole file of that magic with a matching CRC.
pub(super) fn decode_file<T>(
    bytes: &[u8],
    magic: &[u8; 8],
    more: impl FnOnce(&mut Input) -> Option<T>,
) -> Option<([u64; 4], SourceSpans, T)> {
    let mut input = Input::new(bytes);
    let crc = input.last_u32()?;
    if crc32fast::hash(input.rest()) != crc {
        return None;
    }
    input.tag(magic)?;
    let head = [input.u64()?, input.u64()?, input.u64()?, input.u64()?];
    let mut spans = SourceSpans::new();
    for _ in 0..count(&mut input)? {
        let (kind, id, frames) = (input.u8()?, input.u32()?, input.u64()?);
        SourceKind::from_byte(kind)?;
        let sequences = runs(&mut input)?;
        spans.insert((kind, id), SourceSpan { frames, sequences });
    }
    let more = more(&mut input)?;
    input.is_empty().then_some((head, spans, more))
}

/// A count of entries, refused past [`MOST_ENTRIES`] so that damage cannot ask for the memory
/// of billions.
fn count(input: &mut Input) -> Option<u32> {
    input.u32().filter(|&n| n <= MOST_ENTRIES)
}

/// What [`encode_runs`] wrote: a count, then that many runs of sequences (`first <= last`).
fn runs(input: &mut Input) -> Option<SequenceSet> {
    let mut sequences = SequenceSet::default();
    for _ in 0..count(input)? {
        let (first, last) = (input.u64()?, input.u64()?);
        if first > last {
            return None;
        }
        sequences.insert_run(first, last);
    }
    Some(sequences)
}

/// Reads an index file's bytes; `None` when they are not a whole, valid index. An earlier build's
/// (`TLMIDX03`) is read too: its segment, of format version 4, has no CLOCK records.
pub fn decode(bytes: &[u8]) -> Option<SegmentIndex> {
    decode_of(bytes, MAGIC).or_else(|| decode_of(bytes, MAGIC_03))
}

/// [`decode`] of an index of `magic`.
fn decode_of(bytes: &[u8], magic: &[u8; 8]) -> Option<SegmentIndex> {
    let ([len, frames, oldest, newest], sources, (times, stations, clock)) =
        decode_file(bytes, magic, |input| {
            let times = decode_times(input)?;
            let stations = decode_stations(input)?;
            let clock = match magic == MAGIC {
                true => decode_clock(input)?,
                false => Vec::new(),
            };
            Some((times, stations, clock))
        })?;
    if times.last().is_some_and(|block| block.offset >= len) {
        return None;
    }
    Some(SegmentIndex {
        len,
        frames,
        received: (oldest <= newest).then_some((oldest, newest)),
        sources,
        times,
        stations,
        clock,
        last_block: LastBlock::default(),
    })
}

/// An index's time blocks, in the order of their offsets.
fn decode_times(input: &mut Input) -> Option<Vec<TimeBlock>> {
    let mut times = Vec::new();
    for _ in 0..count(input)? {
        let (offset, oldest, newest) = (input.u64()?, input.u64()?, input.u64()?);
        let sources = input.u64()?;
        let after = times.last().is_none_or(|b: &TimeBlock| offset > b.offset);
        if oldest > newest || !after {
            return None;
        }
        times.push(TimeBlock {
            offset,
            oldest,
            newest,
            sources,
        });
    }
    Some(times)
}

/// An index's stations' entries.
fn decode_stations(input: &mut Input) -> Option<StationSpans> {
    let mut stations = StationSpans::new();
    for _ in 0..count(input)? {
        let (kind, id) = (input.u8()?, input.u32()?);
        SourceKind::from_byte(kind)?;
        let len = usize::from(input.u8()?);
        let name = std::str::from_utf8(input.bytes(len)?).ok()?.to_owned();
        let sequences = runs(input)?;
        stations
            .entry((kind, id))
            .or_default()
            .insert(name, sequences);
    }
    Some(stations)
}

/// An index's CLOCK records.
fn decode_clock(input: &mut Input) -> Option<Vec<(u64, ClockEvent)>> {
    let mut clock = Vec::new();
    for _ in 0..count(input)? {
        let (offset, kind) = (input.u64()?, ClockEventKind::from_byte(input.u8()?)?);
        let (archive_ns, wall_ns, jump) = (input.u64()?, input.u64()?, input.u64()?);
        let event = ClockEvent {
            kind,
            archive_ns,
            wall_ns,
            jump_ns: jump as i64,
        };
        clock.push((offset, event));
    }
    Some(clock)
}

/// The received span of every sealed segment whose index the archive's daemon has read or
/// written, with the segment's length then, by directory and segment: a reader of a time window
/// passes over the segments of other times without opening their indexes, which on a cold cache
/// took most of a query's time to its first frame (`docs/bench/queries.md`). One per opened
/// archive, its clones shared by the writers (each segment they seal), retention (every index at
/// its start; it forgets the segments it deletes) and the readers; a tool makes its own. 40 bytes
/// or so a segment.
#[derive(Debug, Clone, Default)]
pub struct SpanCache(Arc<Mutex<Spans>>);

type Spans = HashMap<(PathBuf, u64), (u64, Option<(u64, u64)>)>;

impl SpanCache {
    fn spans(&self) -> std::sync::MutexGuard<'_, Spans> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Keeps `index`'s span as segment `segment`'s of `dir`.
    pub(crate) fn remember(&self, dir: &Path, segment: u64, index: &SegmentIndex) {
        let span = (index.len, index.received);
        self.spans().insert((dir.to_path_buf(), segment), span);
    }

    /// The received span of segment `segment` of `dir`, if its index was read while it had
    /// length `len` (`Some(None)`: it holds no frames); `None` when unknown.
    pub(crate) fn known(&self, dir: &Path, segment: u64, len: u64) -> Option<Option<(u64, u64)>> {
        let spans = self.spans();
        let &(known_len, span) = spans.get(&(dir.to_path_buf(), segment))?;
        (known_len == len).then_some(span)
    }

    /// Forgets segment `segment` of `dir`, deleted.
    pub(crate) fn forget(&self, dir: &Path, segment: u64) {
        self.spans().remove(&(dir.to_path_buf(), segment));
    }
}

/// Deletes segment `index`'s index file, if it has one.
pub(crate) fn remove(dir: &Path, index: u64) -> Result<(), ArchiveError> {
    let path = index_path(dir, index);
    match fs::remove_file(&path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(ArchiveError::io(&path, "delete")(err))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
