//! `aggregator archive verify`: every record's CRC, and per source the counts, the gaps in its
//! sequences and the frames stored twice, across every shard of the archive.
//!
//! It reads segment files and emergency journals with [`crate::archive::format`] and changes
//! nothing, so it works on a copy of an archive, with the daemon stopped or running (a running
//! daemon's newest segment may end in a record it is still writing, which it reports as torn).
//! The scan goes on past damage, so it sees every valid record, and says, for each damaged range,
//! which sources' sequences have a gap across it: what the range most likely held, told by the
//! valid records around it rather than by the damaged bytes.
//!
//! Sources are tallied across the shards together, since a change of `runtime.shards` between
//! runs can leave a source's older frames in one shard and its newer ones in another: a sequence
//! stored in two shards is a duplicate like any other. A frame only an emergency journal holds
//! ([`super::journals`]) counts present, once, as `journaled`.
//!
//! The result is typed ([`VerifyReport`]); the binary words it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::journals::Held;
use crate::archive::format::retention_file::{Pruned, ShardState};
use crate::archive::format::{self, ArchiveError, Entry, FrameRecord, ScanEnd, SegmentScan};
use crate::archive::read::DamagedRange;
use crate::domain::clock::ClockEvent;
use crate::domain::frame::{Priority, SourceKey, SourceKind};
use crate::protocol::ccsds::{apid_and_count, apid_of_packet, SEQUENCE_COUNT_MODULUS};

/// What `verify` found in one segment file.
#[derive(Debug, Clone)]
pub struct SegmentCheck {
    /// The shard whose stream it belongs to (`archive::layout`).
    pub shard: usize,
    /// Its index in that shard's stream.
    pub index: u64,
    pub path: PathBuf,
    pub bytes: u64,
    /// Valid records, those after damaged ranges included.
    pub records: u64,
    pub frames: u64,
    pub end: ScanEnd,
    /// Its CLOCK records, with their offsets: where the daemon started, or saw its clock step.
    pub clock: Vec<(u64, ClockEvent)>,
}

impl SegmentCheck {
    /// Whether every byte of the file is a valid record.
    pub fn is_clean(&self) -> bool {
        self.end == ScanEnd::Clean
    }
}

/// What `verify` found in one emergency journal.
#[derive(Debug, Clone)]
pub struct JournalCheck {
    pub path: PathBuf,
    /// Frames in its valid records.
    pub frames: u64,
    /// Those no segment holds (nor an earlier journal): what the next start stores from it.
    pub only_here: u64,
    /// A torn tail is what a crash during an append leaves (never acknowledged); recovery takes
    /// every valid record in any case, so damage here is no problem of the archive's.
    pub end: ScanEnd,
}

/// What `verify` found in one shard's directory: what an operator compares across shards to see
/// one that holds more than its share, or none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardCheck {
    pub shard: usize,
    pub dir: PathBuf,
    pub segments: u64,
    pub bytes: u64,
    pub frames: u64,
}

impl ShardCheck {
    /// The totals of `segments`, the checks of the shard's segments.
    fn of(shard: usize, dir: PathBuf, segments: &[SegmentCheck]) -> ShardCheck {
        ShardCheck {
            shard,
            dir,
            segments: segments.len() as u64,
            bytes: segments.iter().map(|s| s.bytes).sum(),
            frames: segments.iter().map(|s| s.frames).sum(),
        }
    }
}

/// What `verify` found for one source (kind, id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCheck {
    pub kind: SourceKind,
    pub id: u32,
    /// Frames, duplicates included.
    pub frames: u64,
    /// Emergency frames, duplicates included.
    pub emergency: u64,
    /// Lowest and highest sequence stored (`None` for a source with only watermark records).
    pub first: Option<u64>,
    pub last: Option<u64>,
    /// Missing sequences between `first` and `last`, as inclusive ranges, in order.
    pub gaps: Vec<(u64, u64)>,
    /// Total sequences missing in `gaps`.
    pub missing: u64,
    /// The sequences a link's source jumped over, as inclusive ranges, in order, in the place of
    /// `gaps` (and not counted in `missing`): the source's frames are its APID's packets, each
    /// sequence its packet's count extended, so a jump is the spacecraft's (a counter restart,
    /// numbered in the next cycle) or a station's loss, never a frame the archive held.
    pub count_jumps: Vec<(u64, u64)>,
    /// Sequences stored more than once, in order, each once.
    pub duplicates: Vec<u64>,
    /// Frames beyond the first copy of their sequence.
    pub duplicate_frames: u64,
    /// Highest watermark written for the source.
    pub watermark: Option<u64>,
    /// Frames (counted in `frames`) that only an emergency journal holds: the next start stores
    /// them in a segment.
    pub journaled: u64,
    /// Frames retention deleted with their segments (`RETENTION` in each shard's directory): not
    /// missing, and never in `gaps`. An emergency that overtook routine frames may have gone with
    /// its segment while they stayed, so a source's oldest retained frames can lie below some of
    /// these.
    pub pruned: u64,
}

/// A damaged byte range of a segment ([`DamagedRange`], as every reader of the archive names
/// one), with what the valid records around it tell of what it held.
#[derive(Debug, Clone)]
pub struct RangeCheck {
    /// The segment's file.
    pub path: PathBuf,
    /// The range: from the bad record to the next valid one (or the file's end), and why.
    pub range: DamagedRange,
    /// The gaps in the sources' sequences that lie across the range: for one of the priorities,
    /// the nearest stored frames of that priority below and above the gap lie before and after
    /// the range (in shard, segment and offset order). Frames of one priority are archived in
    /// sequence order, so these are the frames the range most likely held. A gap across several
    /// ranges is listed with each; frames lost at a source's very beginning or end, and
    /// WATERMARK or STORED records, leave no gap. A gap between frames in two shards (a change
    /// of `runtime.shards` moved the source) is listed with every range read between them, those
    /// of the shards in between too.
    pub missing: Vec<MissingRun>,
}

/// Sequences `first..=last` of `source` missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MissingRun {
    pub source: SourceKey,
    pub first: u64,
    pub last: u64,
}

/// Everything `verify` found in an archive directory.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub dir: PathBuf,
    /// Every shard directory found, shard 0 (`dir` itself) first, those without segments too.
    pub shards: Vec<ShardCheck>,
    /// Every shard's segments, shard by shard, each shard's by index.
    pub segments: Vec<SegmentCheck>,
    /// Every shard's emergency journals, shard by shard, each shard's by generation.
    pub journals: Vec<JournalCheck>,
    /// Sorted by kind (live first), then id.
    pub sources: Vec<SourceCheck>,
    /// Every damaged range of every segment, in segment and offset order.
    pub damaged: Vec<RangeCheck>,
}

impl VerifyReport {
    /// Segments that are torn or corrupt.
    pub fn problems(&self) -> impl Iterator<Item = &SegmentCheck> {
        self.segments.iter().filter(|s| !s.is_clean())
    }

    /// Whether every record of every segment is valid.
    pub fn is_valid(&self) -> bool {
        self.problems().next().is_none()
    }

    /// Whether no source has a duplicate or a gap (other than what retention deleted).
    pub fn is_exactly_once(&self) -> bool {
        self.sources
            .iter()
            .all(|s| s.duplicates.is_empty() && s.gaps.is_empty())
    }

    pub fn frames(&self) -> u64 {
        self.sources.iter().map(|s| s.frames).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// The bytes of every damaged range.
    pub fn damaged_bytes(&self) -> u64 {
        (self.damaged.iter())
            .map(|d| d.range.bytes.end - d.range.bytes.start)
            .sum()
    }

    /// The steps of the wall clock the daemon recorded, each once (every shard records each):
    /// while it ran, and starts with the clock behind the archive, as `/stats` counts them.
    pub fn clock_steps(&self) -> usize {
        let events = self.segments.iter().flat_map(|s| &s.clock);
        let steps = events.filter(|(_, e)| e.tells_of_a_step());
        let mut steps: Vec<_> = steps
            .map(|(_, e)| (e.kind.to_byte(), e.archive_ns))
            .collect();
        steps.sort_unstable();
        steps.dedup();
        steps.len()
    }
}

/// Reads every segment of every shard of the archive at `dir` ([`format::list_shard_segments`])
/// and checks every record. Sources are tallied across the shards together: a source whose frames
/// a change of `runtime.shards` split over several shards is one source, and a sequence stored in
/// two shards is a duplicate. `Err` only when a directory or a file cannot be read; damage is in
/// the report.
pub fn verify(dir: &Path) -> Result<VerifyReport, ArchiveError> {
    let mut verifying = Verifying::default();
    let mut segments = Vec::new();
    let mut shards = Vec::new();
    let mut journal_paths = Vec::new();
    for shard in format::list_shard_segments(dir)? {
        verifying.add_pruned(&shard.dir)?;
        let first = segments.len();
        for (index, path) in shard.segments {
            segments.push(verifying.check_segment(shard.shard, index, path)?);
        }
        shards.push(ShardCheck::of(shard.shard, shard.dir, &segments[first..]));
        journal_paths.extend(shard.journals);
    }
    let journals = journal_paths
        .into_iter()
        .map(|path| verifying.check_journal(path))
        .collect::<Result<Vec<_>, ArchiveError>>()?;
    let (sources, damaged) = verifying.finish();
    Ok(VerifyReport {
        dir: dir.to_path_buf(),
        shards,
        segments,
        journals,
        sources,
        damaged,
    })
}

/// What `verify` gathered so far, across the shards read.
#[derive(Default)]
struct Verifying {
    /// Each source's frames, by kind byte and id.
    tallies: BTreeMap<(u8, u32), Tally>,
    /// The frames the segments hold: what a journal's frame is tested against.
    held: Held,
    /// What retention deleted, by source, across the shards.
    pruned: BTreeMap<(u8, u32), Pruned>,
    /// The damaged ranges, in the order read.
    damaged: Vec<RangeCheck>,
}

impl Verifying {
    /// Adds what retention deleted of the shard at `dir` (its `RETENTION` file).
    fn add_pruned(&mut self, dir: &Path) -> Result<(), ArchiveError> {
        for (&key, deleted) in &ShardState::read(dir)?.pruned {
            let all = self.pruned.entry(key).or_default();
            all.frames += deleted.frames;
            deleted
                .sequences
                .runs()
                .for_each(|(a, b)| all.sequences.insert_run(a, b));
        }
        Ok(())
    }

    /// The damaged ranges read so far, saturating: what a frame read next has before it.
    fn damage_before(&self) -> u32 {
        u32::try_from(self.damaged.len()).unwrap_or(u32::MAX)
    }

    /// Reads and checks segment `index` of `shard` (at `path`), adding its frames to the tallies
    /// and its damaged ranges to those of every segment read before it.
    fn check_segment(
        &mut self,
        shard: usize,
        index: u64,
        path: PathBuf,
    ) -> Result<SegmentCheck, ArchiveError> {
        let scan = format::read_segment(&path)?;
        self.held.hold(&scan);
        let frames = tally_segment(&scan, self.damage_before(), &mut self.tallies);
        self.damaged
            .extend(scan.damaged.iter().map(|damage| RangeCheck {
                path: path.clone(),
                range: DamagedRange {
                    shard,
                    segment: index,
                    bytes: damage.clone(),
                },
                missing: Vec::new(),
            }));
        Ok(SegmentCheck {
            shard,
            index,
            path,
            bytes: scan.file_len,
            // The frames of one FRAMES record share its offset.
            records: scan.entries.chunk_by(|(a, _), (b, _)| a == b).count() as u64,
            frames,
            clock: (scan.entries.iter())
                .filter_map(|(offset, entry)| match entry {
                    Entry::Clock(event) => Some((*offset, *event)),
                    _ => None,
                })
                .collect(),
            end: scan.end,
        })
    }

    /// Reads an emergency journal, adding to the tallies the frames that no segment, nor a
    /// journal read before, holds: those the next start stores from it. They are read after
    /// every segment (after the damaged ranges of all of them). A frame whose segment retention
    /// deleted may still be in a journal: it is neither stored again nor counted.
    fn check_journal(&mut self, path: PathBuf) -> Result<JournalCheck, ArchiveError> {
        let damage_before = self.damage_before();
        let journal = self.held.read_journal(&path)?;
        let mut only_here = 0;
        for (_, entry) in &journal.scan.entries {
            let Entry::Frame(frame) = entry else {
                continue;
            };
            let key = (frame.kind.to_byte(), frame.source_id);
            if (self.pruned.get(&key)).is_some_and(|p| p.sequences.contains(frame.sequence)) {
                continue;
            }
            only_here += 1;
            let tally = self.tallies.entry(key).or_default();
            tally.frame(frame, damage_before);
            tally.journaled += 1;
        }
        Ok(JournalCheck {
            path,
            frames: journal.frames,
            only_here,
            end: journal.scan.end,
        })
    }

    /// Each source's check, and the damaged ranges with the gaps across them.
    fn finish(mut self) -> (Vec<SourceCheck>, Vec<RangeCheck>) {
        let sources = (self.tallies.into_iter())
            .filter_map(|((kind, id), tally)| {
                let deleted = self.pruned.remove(&(kind, id)).unwrap_or_default();
                let source = (SourceKind::from_byte(kind)?, id);
                Some(summarize(source, tally, &deleted, &mut self.damaged))
            })
            .collect();
        (sources, self.damaged)
    }
}

/// Per-source accumulation while segments are read.
#[derive(Default)]
struct Tally {
    frames: u64,
    emergency: u64,
    sequences: Vec<Seen>,
    watermark: Option<u64>,
    journaled: u64,
    counts: PacketCounts,
}

impl Tally {
    fn frame(&mut self, frame: &FrameRecord, damage_before: u32) {
        self.frames += 1;
        self.emergency += u64::from(frame.priority == Priority::Emergency);
        self.counts = self.counts.and(frame);
        self.sequences.push(Seen {
            sequence: frame.sequence,
            priority: frame.priority,
            damage_before,
        });
    }
}

/// Whether a source's sequences are its packets' counts: every frame a whole space packet of one
/// APID whose 14-bit count is its sequence's low bits. The frames of a ground-segment link's
/// source that carries its APID's count are such (docs/ground-segment.md); the archive records
/// no link, so this is how `verify` knows one.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum PacketCounts {
    #[default]
    NoFrame,
    Apid(u16),
    Not,
}

impl PacketCounts {
    fn and(self, frame: &FrameRecord) -> PacketCounts {
        let modulus = u64::from(SEQUENCE_COUNT_MODULUS);
        let counted = apid_and_count(&frame.payload)
            .is_some_and(|(_, count)| u64::from(count) == frame.sequence % modulus);
        match (self, apid_of_packet(&frame.payload).filter(|_| counted)) {
            (PacketCounts::NoFrame, Some(apid)) => PacketCounts::Apid(apid),
            (PacketCounts::Apid(known), Some(apid)) if known == apid => self,
            _ => PacketCounts::Not,
        }
    }
}

/// A stored frame as `verify` tallies it.
#[derive(Debug, Clone, Copy)]
struct Seen {
    sequence: u64,
    priority: Priority,
    /// The damaged ranges the archive holds before the frame, in the order `verify` reads them
    /// (shard by shard), saturating at `u32::MAX`: the ranges between two frames are those
    /// counted for the later and not for the earlier.
    damage_before: u32,
}

/// Adds a segment's entries to `tallies`; returns its frames. `damage_before` counts the damaged
/// ranges of the segments before it.
fn tally_segment(
    scan: &SegmentScan,
    damage_before: u32,
    tallies: &mut BTreeMap<(u8, u32), Tally>,
) -> u64 {
    let mut frames = 0;
    let mut ranges_passed: u32 = 0;
    for (offset, entry) in &scan.entries {
        while scan
            .damaged
            .get(ranges_passed as usize)
            .is_some_and(|d| d.end <= *offset)
        {
            ranges_passed = ranges_passed.saturating_add(1);
        }
        let Some((kind, id)) = entry.source() else {
            continue;
        };
        let tally = tallies.entry((kind.to_byte(), id)).or_default();
        match entry {
            Entry::Frame(f) => {
                frames += 1;
                tally.frame(f, damage_before.saturating_add(ranges_passed));
            }
            Entry::Watermark { acked, .. } => {
                tally.watermark = Some(tally.watermark.map_or(*acked, |w| w.max(*acked)));
            }
            Entry::Stored { .. } | Entry::Clock(_) => {}
        }
    }
    frames
}

/// The source's counts, gaps and duplicates; each gap is also added to the `damaged` ranges that
/// lie across it. Sequences retention deleted (`pruned`) are no gap. A link's source whose
/// sequences are its packets' counts has count jumps in the place of gaps.
fn summarize(
    source: SourceKey,
    mut tally: Tally,
    pruned: &Pruned,
    damaged: &mut [RangeCheck],
) -> SourceCheck {
    tally.sequences.sort_by_key(|seen| seen.sequence);
    let mut gaps = Vec::new();
    let mut missing = 0;
    let mut duplicates = Vec::new();
    let mut duplicate_frames = 0;
    for pair in tally.sequences.windows(2) {
        let (a, b) = (pair[0].sequence, pair[1].sequence);
        if a == b {
            duplicate_frames += 1;
            if duplicates.last() != Some(&a) {
                duplicates.push(a);
            }
        } else if b > a + 1 {
            for (first, last) in pruned.sequences.missing_in(a + 1, b - 1) {
                gaps.push((first, last));
                missing += last - first + 1;
            }
        }
    }
    add_gaps_across(source, &tally.sequences, &gaps, damaged);
    let mut count_jumps = Vec::new();
    if matches!(tally.counts, PacketCounts::Apid(_)) {
        count_jumps = std::mem::take(&mut gaps);
        missing = 0;
    }
    SourceCheck {
        kind: source.0,
        id: source.1,
        frames: tally.frames,
        emergency: tally.emergency,
        first: tally.sequences.first().map(|seen| seen.sequence),
        last: tally.sequences.last().map(|seen| seen.sequence),
        gaps,
        missing,
        count_jumps,
        duplicates,
        duplicate_frames,
        watermark: tally.watermark,
        journaled: tally.journaled,
        pruned: pruned.frames,
    }
}

/// Adds each of a source's `gaps` (sorted) to the `damaged` ranges across it. Frames of one
/// priority are archived in sequence order (an emergency may overtake routine frames, not another
/// emergency), so a missing frame lies between the nearest stored frames of its priority below
/// and above it: every range between two frames of one priority, next to each other in
/// `sequences` (sorted) once the other priority is left out, gets the gaps they enclose.
fn add_gaps_across(
    source: SourceKey,
    sequences: &[Seen],
    gaps: &[(u64, u64)],
    damaged: &mut [RangeCheck],
) {
    // (range, gap) pairs: a gap enclosed in both priorities' sequences is found twice.
    let mut across = Vec::new();
    for priority in [Priority::Routine, Priority::Emergency] {
        let mut of_priority = sequences.iter().filter(|seen| seen.priority == priority);
        let Some(mut below) = of_priority.next() else {
            continue;
        };
        for above in of_priority {
            let (from, to) = (below.damage_before, above.damage_before);
            if from != to {
                let first_gap = gaps.partition_point(|&(first, _)| first <= below.sequence);
                let end_gap = gaps.partition_point(|&(_, last)| last < above.sequence);
                for range in from.min(to)..from.max(to) {
                    across.extend((first_gap..end_gap).map(|gap| (range as usize, gap)));
                }
            }
            below = above;
        }
    }
    across.sort_unstable();
    across.dedup();
    for (range, gap) in across {
        let (first, last) = gaps[gap];
        damaged[range].missing.push(MissingRun {
            source,
            first,
            last,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::format::{Damage, DamageReason};

    /// An emergency that overtook routine frames went with its deleted segment while they
    /// stayed: the hole it leaves among the retained frames is retention's, not a loss.
    #[test]
    fn what_retention_deleted_is_no_gap() {
        let seen = |sequence| Seen {
            sequence,
            priority: Priority::Routine,
            damage_before: 0,
        };
        let tally = Tally {
            frames: 5,
            sequences: [10, 11, 12, 14, 20].map(seen).to_vec(),
            ..Tally::default()
        };
        let mut pruned = Pruned::default();
        for (first, last) in [(0, 9), (13, 13), (15, 17)] {
            pruned.sequences.insert_run(first, last);
            pruned.frames += last - first + 1;
        }
        let s = summarize((SourceKind::LiveUplink, 4), tally, &pruned, &mut []);
        assert_eq!((s.first, s.last), (Some(10), Some(20)));
        assert_eq!(
            s.gaps,
            vec![(18, 19)],
            "13 and 15..=17 were deleted, not lost"
        );
        assert_eq!((s.missing, s.pruned), (2, 14));
    }

    #[test]
    fn gaps_and_duplicates_are_found_in_sorted_sequences() {
        let tally = Tally {
            frames: 8,
            emergency: 1,
            sequences: [5, 1, 2, 2, 9, 3, 3, 3]
                .map(|sequence| Seen {
                    sequence,
                    priority: Priority::Routine,
                    damage_before: 0,
                })
                .to_vec(),
            watermark: Some(3),
            ..Tally::default()
        };
        let s = summarize(
            (SourceKind::LiveUplink, 4),
            tally,
            &Pruned::default(),
            &mut [],
        );
        assert_eq!((s.first, s.last), (Some(1), Some(9)));
        assert_eq!(s.gaps, vec![(4, 4), (6, 8)]);
        assert_eq!(s.missing, 4);
        assert_eq!(s.duplicates, vec![2, 3]);
        assert_eq!(s.duplicate_frames, 3);
    }

    /// An emergency that overtook routine frames does not hide the routine frames lost after it:
    /// routine 2 and 4 were in range 0 (emergency 3 was stored before it), 7 in range 1.
    #[test]
    fn gaps_go_to_the_damaged_ranges_between_frames_of_one_priority() {
        use Priority::{Emergency, Routine};
        let seen = [(0, Routine, 0), (1, Routine, 0), (3, Emergency, 0)]
            .into_iter()
            .chain([(5, Routine, 1), (6, Emergency, 1), (8, Routine, 2)])
            .map(|(sequence, priority, damage_before)| Seen {
                sequence,
                priority,
                damage_before,
            })
            .collect();
        let mut damaged: Vec<_> = (0..2)
            .map(|i| RangeCheck {
                path: PathBuf::from("segment"),
                range: DamagedRange {
                    shard: 0,
                    segment: 1,
                    bytes: Damage {
                        start: i * 100,
                        end: i * 100 + 50,
                        reason: DamageReason::LengthOutside { len: 0 },
                    },
                },
                missing: Vec::new(),
            })
            .collect();
        let tally = Tally {
            frames: 6,
            emergency: 2,
            sequences: seen,
            ..Tally::default()
        };
        let live_4 = (SourceKind::LiveUplink, 4);
        let s = summarize(live_4, tally, &Pruned::default(), &mut damaged);
        assert_eq!(s.gaps, vec![(2, 2), (4, 4), (7, 7)]);
        let run = |first, last| MissingRun {
            source: live_4,
            first,
            last,
        };
        assert_eq!(damaged[0].missing, vec![run(2, 2), run(4, 4)]);
        assert_eq!(damaged[1].missing, vec![run(7, 7)]);
    }
}
