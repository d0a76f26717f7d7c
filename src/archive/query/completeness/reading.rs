//! The reading of the archive for a completeness answer, shard by shard: a sealed segment wholly
//! inside the window from its index, the blocks the window's ends cut through and the newest
//! segment read, damaged records passed over, and the segments missing from the shard's numbering
//! that retention did not delete named.
//!
//! What to read of a segment and how damage is passed over are the read side's
//! (`crate::archive::read`'s [`Wanted::sealed`] and [`SegmentFile::read`], which the cursors use
//! too); what is here is the accounting: which sources' sequences the window holds, which lie
//! beside it, the CLOCK records, the holes in a shard's numbering and retention's deletions.

use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::path::Path;

use super::answer::{ClockRecord, Completeness, SeenFrame};
use super::gathered::{Around, Gathered};
use super::timeline::Timeline;
use crate::archive::format::index::SegmentIndex;
use crate::archive::format::retention_file::ShardState;
use crate::archive::format::{self, ArchiveError, Entry};
use crate::archive::read::{self, DamagedRange, DurableEnds};
use crate::archive::read::{Piece, SegmentFile, ShardWalk, Wanted};
use crate::domain::clock::ClockEvent;
use crate::domain::filter::FrameFilter;
use crate::domain::frame::{SourceKey, SourceKind};
use crate::domain::sequence_set::SequenceSet;

/// [`completeness`] of the archive's files as they are now (a stopped archive, or one read beside
/// its daemon: each shard to its newest segment's last whole record), without a timeline.
/// Blocking.
pub fn of_files(root: &Path, filter: &FrameFilter) -> Result<Completeness, ArchiveError> {
    completeness(root, &read::stopped_ends(root)?, filter, None)
}

/// What the archive at `root` holds of each source `filter` wants (its sources, its window; not
/// its priority: completeness is of both) up to `ends`, by source, with `timeline` when given.
/// Damaged records are passed over and a segment missing from a shard's numbering is gone past,
/// each named in the answer. Blocking.
pub fn completeness(
    root: &Path,
    ends: &DurableEnds,
    filter: &FrameFilter,
    timeline: Option<&Timeline>,
) -> Result<Completeness, ArchiveError> {
    let found = read(root, ends, filter, timeline, Found::default())?;
    Ok(found.answer(timeline))
}

/// The sequences any of `sources` holds in the archive at `root` up to `ends` (`ends` as they
/// are now), together, of the frames received in `window` (from, to; either end open): what a
/// link's group holds of an APID, which a backfill leaves out (the links' backfill). Blocking.
pub fn held_together(
    root: &Path,
    ends: &DurableEnds,
    sources: Vec<SourceKey>,
    (since, until): (Option<u64>, Option<u64>),
) -> Result<SequenceSet, ArchiveError> {
    let filter = FrameFilter {
        sources,
        since,
        until,
        ..FrameFilter::default()
    };
    let answer = completeness(root, &ends.frozen(), &filter, None)?;
    let mut held = SequenceSet::default();
    for source in &answer.sources {
        source.held.runs().for_each(|(a, b)| held.insert_run(a, b));
    }
    Ok(held)
}

/// [`completeness`] without a timeline, handing `each` frame of the window the filter wants, read
/// from its block (no segment is answered from its index alone): what the passes of stations and
/// the volume are made of (`crate::archive::query::passes`, `volume`), each keeping of it only
/// what it needs. Shard by shard, each in file order. Blocking.
pub fn with_frames(
    root: &Path,
    ends: &DurableEnds,
    filter: &FrameFilter,
    each: &mut dyn FnMut(SeenFrame),
) -> Result<Completeness, ArchiveError> {
    let found = Found {
        frames: Some(each),
        ..Found::default()
    };
    let found = read(root, ends, filter, None, found)?;
    Ok(found.answer(None))
}

/// Reads every shard into `found`.
fn read<'a>(
    root: &Path,
    ends: &DurableEnds,
    filter: &FrameFilter,
    timeline: Option<&Timeline>,
    mut found: Found<'a>,
) -> Result<Found<'a>, ArchiveError> {
    let wanted = Wanted::of(filter);
    for walk in ends.walk(root)? {
        let reading = Reading {
            walk: &walk,
            filter,
            wanted: &wanted,
            timeline,
            ends,
        };
        reading.read_shard(&mut found)?;
    }
    Ok(found)
}

/// Each source's frames held, by kind byte and id.
pub(super) type Held = BTreeMap<(u8, u32), Gathered>;

/// Each source's sequences held near the window but received outside it, by kind byte and id:
/// what a gap between the window's frames may hold after all.
pub(super) type Elsewhere = BTreeMap<(u8, u32), SequenceSet>;

/// What the shards' segments gave so far.
#[derive(Default)]
pub(super) struct Found<'a> {
    held: Held,
    elsewhere: Elsewhere,
    /// What retention deleted, by source.
    pruned: BTreeMap<(u8, u32), SequenceSet>,
    damaged: Vec<DamagedRange>,
    missing: Vec<(usize, u64)>,
    clock: Vec<ClockRecord>,
    /// With [`with_frames`]: what takes each frame of the window, read from its block.
    frames: Option<&'a mut dyn FnMut(SeenFrame)>,
}

impl Found<'_> {
    /// The answer, once every shard is read: each source's, by kind and id, and what could not be
    /// read.
    pub(super) fn answer(self, timeline: Option<&Timeline>) -> Completeness {
        let Found {
            held,
            elsewhere,
            pruned,
            damaged,
            missing,
            clock,
            frames: _,
        } = self;
        let sources = held
            .into_iter()
            .filter_map(|((kind, id), gathered)| {
                let source = (SourceKind::from_byte(kind)?, id);
                let around = Around {
                    pruned: pruned.get(&(kind, id)),
                    elsewhere: elsewhere.get(&(kind, id)),
                };
                Some(gathered.finish(source, around, timeline))
            })
            .collect();
        Completeness {
            sources,
            damaged,
            missing,
            clock,
        }
    }
}

/// The most bytes of a segment's blocks a reading asks the kernel for before it reads them
/// ([`SegmentFile::will_read`]).
const READ_AHEAD_BYTES: u64 = 16 << 20;

/// What one shard's segments are read for: the shard's directory and durable end, the sources
/// and window wanted, and the timeline.
pub(super) struct Reading<'a> {
    /// The shard, its directory, durable end and retained segments.
    pub(super) walk: &'a ShardWalk,
    pub(super) filter: &'a FrameFilter,
    /// What the filter asks of the sealed segments' indexes.
    pub(super) wanted: &'a Wanted,
    pub(super) timeline: Option<&'a Timeline>,
    /// Their spans cache, and whether the client asking has gone.
    pub(super) ends: &'a DurableEnds,
}

impl Reading<'_> {
    /// Reads the shard's segments into `found`: what each holds of the window, the damage passed
    /// over, the segments missing from its numbering, and what retention deleted.
    pub(super) fn read_shard(&self, found: &mut Found) -> Result<(), ArchiveError> {
        // The first and last segment that meet the window.
        let mut met: Option<(u64, u64)> = None;
        let (mut sealed, mut gone) = (Vec::new(), Vec::new());
        for (index, path) in &self.walk.segments {
            // Its client gone, nothing reads the answer: the reading ends, its answer short.
            if self.ends.is_abandoned() {
                break;
            }
            let index = *index;
            match self.add_segment(index, path, found) {
                Ok(meets) => {
                    met = meets
                        .then(|| met.map_or((index, index), |(a, _)| (a, index)))
                        .or(met)
                }
                // Retention may delete a segment between the listing and its reading.
                Err(err) if err.is_gone() => gone.push(index),
                Err(err) => return Err(err),
            }
            sealed.extend((index < self.walk.end.segment).then_some((index, path)));
        }
        let (first, last) = met.unwrap_or((1, 0));
        let shard = self.walk.shard;
        found
            .clock
            .retain(|r| r.shard != shard || (first..=last).contains(&r.segment));
        if self.filter.has_window() {
            let between = sealed.iter().filter(|(i, _)| (first..=last).contains(i));
            for (index, path) in between {
                self.add_elsewhere(*index, path, found)?;
            }
        }
        // Read after the segments: retention records a deletion before it unlinks, so the state
        // names every segment it deleted before or during the reading, and their sequences.
        let state = ShardState::read(&self.walk.dir)?;
        for (&key, span) in &state.pruned {
            let sequences = found.pruned.entry(key).or_default();
            span.sequences
                .runs()
                .for_each(|(a, b)| sequences.insert_run(a, b));
        }
        let by_hand = self.walk.by_hand(gone, &state);
        found
            .missing
            .extend(by_hand.into_iter().map(|index| (self.walk.shard, index)));
        Ok(())
    }

    /// Adds what sealed segment `index` (at `path`) holds of the sources wanted to `elsewhere`:
    /// it lies among the segments that meet the window, so frames of it received outside the
    /// window may fill gaps between the window's frames. From its index, unless reading it found
    /// damage.
    fn add_elsewhere(
        &self,
        index: u64,
        path: &Path,
        found: &mut Found,
    ) -> Result<(), ArchiveError> {
        let contents =
            match SegmentIndex::read_or_rebuild(&self.walk.dir, index, path, self.ends.spans()) {
                Err(err) if err.is_gone() => return Ok(()),
                contents => contents?,
            };
        // Its index was written before the damage: what it lists is not all held.
        if found
            .damaged
            .iter()
            .any(|d| (d.shard, d.segment) == (self.walk.shard, index))
        {
            return self.read_elsewhere(index, path, contents.len, found);
        }
        let elsewhere = &mut found.elsewhere;
        for (&key, span) in &contents.sources {
            if self.wants(key) {
                let sequences = elsewhere.entry(key).or_default();
                span.sequences
                    .runs()
                    .for_each(|(a, b)| sequences.insert_run(a, b));
            }
        }
        Ok(())
    }

    /// Adds what damaged sealed segment `index` (at `path`, `len` bytes) holds of the sources
    /// wanted to `found.elsewhere`, read from its blocks: the frames of a damaged record are not
    /// held, wherever they were received. Damage not yet named is named.
    fn read_elsewhere(
        &self,
        index: u64,
        path: &Path,
        len: u64,
        found: &mut Found,
    ) -> Result<(), ArchiveError> {
        let segment = match SegmentFile::open(self.walk.shard, index, path) {
            Err(err) if err.is_gone() => return Ok(()),
            segment => segment?,
        };
        let mut from = format::MAGIC.len() as u64;
        while from < len {
            match segment.read(from, len, 1 << 20, Some(len))? {
                Piece::Records(records) => {
                    from = records.next;
                    let frames = records.entries.into_iter().filter_map(|(_, e)| match e {
                        Entry::Frame(frame) => Some(frame),
                        _ => None,
                    });
                    for frame in frames {
                        let key = (frame.kind.to_byte(), frame.source_id);
                        if self.wants(key) {
                            let sequences = found.elsewhere.entry(key).or_default();
                            sequences.insert_run(frame.sequence, frame.sequence);
                        }
                    }
                }
                Piece::Damaged(range) => {
                    from = range.bytes.end;
                    let named = |d: &DamagedRange| {
                        (d.shard, d.segment, d.bytes.start)
                            == (self.walk.shard, index, range.bytes.start)
                    };
                    if !found.damaged.iter().any(named) {
                        found.damaged.push(range);
                    }
                }
            }
        }
        Ok(())
    }

    /// Adds what segment `index` (at `path`) holds of the window to `found`: from its index when
    /// it is sealed and wholly inside, by reading the blocks that meet the window otherwise,
    /// passing over damaged records. Returns whether it meets the window.
    fn add_segment(
        &self,
        index: u64,
        path: &Path,
        found: &mut Found,
    ) -> Result<bool, ArchiveError> {
        let of_sealed = index < self.walk.end.segment;
        let ranges = match of_sealed {
            true => {
                let sealed = self
                    .wanted
                    .sealed(&self.walk.dir, index, path, self.ends.spans())?;
                let steps = (sealed.contents.clock.iter()).filter(|(_, e)| e.tells_of_a_step());
                let at = |&(offset, event)| self.clock_record(index, offset, event);
                found.clock.extend(steps.map(at));
                // Kept frames are read from their blocks: the index has no frame's own time.
                if let Some(received) = sealed.whole.filter(|_| found.frames.is_none()) {
                    self.add_indexed(&sealed.contents, received, &mut found.held);
                    return Ok(true);
                }
                sealed.ranges
            }
            false => vec![(format::MAGIC.len() as u64, self.walk.end.len)],
        };
        let segment = SegmentFile::open(self.walk.shard, index, path)?;
        if of_sealed {
            segment.will_read(&ranges, READ_AHEAD_BYTES);
        }
        let (mut meets, mut elsewhere) = (false, Elsewhere::new());
        for (mut from, to) in ranges {
            while from < to {
                match segment.read(from, to, 1 << 20, Some(to))? {
                    Piece::Records(records) => {
                        from = records.next;
                        meets |= self.add_frames(index, records.entries, found, &mut elsewhere);
                    }
                    Piece::Damaged(range) => {
                        from = range.bytes.end;
                        found.damaged.push(range);
                    }
                }
            }
        }
        // The newest segment, read whole, is among the window's segments when it meets it (a
        // sealed one's frames outside the window come from its index, `add_elsewhere`).
        if meets && index == self.walk.end.segment {
            for (key, sequences) in elsewhere {
                let all = found.elsewhere.entry(key).or_default();
                sequences.runs().for_each(|(a, b)| all.insert_run(a, b));
            }
        }
        Ok(meets)
    }

    /// Adds the frames of `entries` (of segment `index`), read from their blocks, that the window
    /// and sources want, and those of the sources outside the window to `elsewhere`; returns
    /// whether one was in the window.
    fn add_frames(
        &self,
        index: u64,
        entries: Vec<(u64, Entry)>,
        found: &mut Found,
        elsewhere: &mut Elsewhere,
    ) -> bool {
        let window = self.filter.received();
        let mut meets = false;
        for (offset, entry) in entries {
            let frame = match entry {
                Entry::Frame(frame) => frame,
                // Those of the blocks of sealed segments come from their index.
                Entry::Clock(event)
                    if index == self.walk.end.segment && event.tells_of_a_step() =>
                {
                    found.clock.push(self.clock_record(index, offset, event));
                    continue;
                }
                _ => continue,
            };
            let key = (frame.kind.to_byte(), frame.source_id);
            let received = frame.received_unix_ns;
            if !self.wants(key) {
                continue;
            }
            if !window.contains(&received) {
                let sequences = elsewhere.entry(key).or_default();
                sequences.insert_run(frame.sequence, frame.sequence);
                continue;
            }
            meets = true;
            let held = &mut found.held;
            let source = (held.entry(key)).or_insert_with(|| Gathered::new(self.timeline));
            source.add_frame(frame.sequence, received, self.timeline);
            if let Some(reception) = &frame.reception {
                let sequence = frame.sequence;
                source.add_station(&reception.delivery.station, [(sequence, sequence)]);
            }
            if let Some(each) = &mut found.frames {
                each(SeenFrame {
                    source: (frame.kind, frame.source_id),
                    sequence: frame.sequence,
                    received_ns: received,
                    bytes: frame.payload.len() as u64,
                    reception: frame.reception.map(|r| *r),
                });
            }
        }
        meets
    }

    /// The CLOCK record of `event` at `offset` of segment `index` of this shard.
    fn clock_record(&self, segment: u64, offset: u64, event: ClockEvent) -> ClockRecord {
        ClockRecord {
            shard: self.walk.shard,
            segment,
            offset,
            event,
        }
    }

    /// Adds a sealed segment's sources from its index: its frames were received over
    /// `received`.
    fn add_indexed(&self, contents: &SegmentIndex, received: RangeInclusive<u64>, held: &mut Held) {
        for (&key, source) in &contents.sources {
            if self.wants(key) {
                let gathered = (held.entry(key)).or_insert_with(|| Gathered::new(self.timeline));
                gathered.add_indexed(source, received.clone(), self.timeline);
                for (station, sequences) in contents.stations.get(&key).into_iter().flatten() {
                    gathered.add_station(station, sequences.runs());
                }
            }
        }
    }

    /// Whether the filter wants the source of the index's key (kind byte, id). Completeness is
    /// of both priorities: only the sources (and the window, read apart) count.
    fn wants(&self, key: (u8, u32)) -> bool {
        let (kind, id) = key;
        SourceKind::from_byte(kind).is_some_and(|kind| self.filter.wants_source_key((kind, id)))
    }
}
