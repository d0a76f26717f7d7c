//! The operator's tools on top of the archive: `aggregator archive verify`,
//! `aggregator archive inspect` and `aggregator archive repair` ([`repair`]) here, and beside
//! them `prune` ([`prune`]) and `export` ([`export`]) (`docs/archive-tools.md`; `gaps` is
//! [`crate::archive::query::completeness`]).
//!
//! `verify` and `inspect` read segment files and emergency journals with
//! [`crate::archive::format`] and change nothing, so they work on a copy of an archive, with the
//! daemon stopped or running (a running daemon's newest segment may end in a record it is still
//! writing, which `verify` reports as torn). The scan goes on past damage, so both see every valid
//! record; `verify` also says, for each damaged range, which sources' sequences have a gap across
//! it: what the range most likely held, told by the valid records around it rather than by the
//! damaged bytes.
//!
//! Both also read each shard's emergency journals after every segment ([`journals`]): after a
//! crash, and before the next start, an acknowledged emergency may be in a journal alone, and the
//! next start stores it. `verify` counts such a frame present, once, as `journaled`, and `inspect`
//! lists it, naming the journal; a journal frame a segment also holds is neither counted nor
//! listed again. `repair` says how many of them the next start stores, shard by shard.
//!
//! All three read every shard of the archive (`archive::layout`): shard 0 is the directory
//! itself, so an archive written before shards reads as it always did. `verify` checks
//! exactly-once across the shards together, since a change of `runtime.shards` between runs can
//! leave a source's older frames in one shard and its newer ones in another; a sequence stored
//! in two shards is a duplicate like any other. The binary only parses the command line and
//! turns the results into an exit status; the work and the wording are here, so tests and other
//! tools can use them.

pub mod export;
pub mod journals;
pub mod prune;
pub mod repair;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use crate::archive::format::retention_file::{Pruned, ShardState};
use crate::archive::format::{self, Damage, Entry, FrameRecord, ScanEnd, SegmentScan};
use crate::domain::clock::{self, ClockEvent};
use crate::domain::display::{payload_preview, unix_ns_to_rfc3339};
use crate::domain::frame::{Priority, SourceKind};
use crate::protocol::ccsds::{apid_and_count, apid_of_packet, SEQUENCE_COUNT_MODULUS};
use journals::{FileKind, Held};

/// At most this many gap ranges and duplicate sequences are printed per source.
pub(crate) const PRINT_CAP: usize = 10;

// ---------------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------------

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

    /// `segment PATH: N bytes, N records, N frames, STATE`.
    fn line(&self) -> String {
        format!(
            "segment {}: {} bytes, {} records, {} frames, {}",
            self.path.display(),
            self.bytes,
            self.records,
            self.frames,
            self.end
        )
    }

    /// `clock PATH offset N: EVENT`, one per CLOCK record.
    fn clock_lines(&self) -> impl Iterator<Item = String> + '_ {
        let path = self.path.display();
        (self.clock.iter())
            .map(move |(offset, event)| format!("clock {path} offset {offset}: {event}"))
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

impl JournalCheck {
    /// `journal PATH: N frames, N in no segment (the next start stores them), STATE`.
    fn line(&self) -> String {
        format!(
            "journal {}: {} frames, {} in no segment (the next start stores them), {}",
            self.path.display(),
            self.frames,
            self.only_here,
            self.end
        )
    }
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

    /// `shard K DIR: segments=N bytes=N frames=N`.
    fn line(&self) -> String {
        format!(
            "shard {} {}: segments={} bytes={} frames={}",
            self.shard,
            self.dir.display(),
            self.segments,
            self.bytes,
            self.frames
        )
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

/// A damaged byte range of a segment, with what the valid records around it tell of what it held.
#[derive(Debug, Clone)]
pub struct DamagedRange {
    pub path: PathBuf,
    pub damage: Damage,
    /// The gaps in the sources' sequences (kind, id, first, last) that lie across the range: for
    /// one of the priorities, the nearest stored frames of that priority below and above the gap
    /// lie before and after the range (in shard, segment and offset order). Frames of one
    /// priority are archived in sequence order, so these are the frames the range most likely
    /// held. A gap across several ranges is listed with each; frames lost at a source's very
    /// beginning or end, and WATERMARK or STORED records, leave no gap. A gap between frames in
    /// two shards (a change of `runtime.shards` moved the source) is listed with every range
    /// read between them, those of the shards in between too.
    pub missing: Vec<(SourceKind, u32, u64, u64)>,
}

impl DamagedRange {
    /// `damaged PATH: bytes START..END (N bytes): REASON; missing across it: ...`.
    fn line(&self) -> String {
        let mut line = format!("damaged {}: {}", self.path.display(), self.damage);
        if self.missing.is_empty() {
            line.push_str("; no source has a gap in its sequences across it");
            return line;
        }
        line.push_str("; missing across it:");
        // The source is named before its first gap only: `live 1 seq 27..=31, 33..=41`.
        let mut previous = None;
        let runs = self.missing.iter().map(|&(kind, id, first, last)| {
            match previous.replace((kind, id)) == Some((kind, id)) {
                true => run(first, last),
                false => format!("{} {id} seq {}", kind.label(), run(first, last)),
            }
        });
        write_capped(&mut line, "", runs, self.missing.len(), " runs");
        line
    }
}

/// `first` alone, or `first..=last`.
fn run(first: u64, last: u64) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}..={last}")
    }
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
    pub damaged: Vec<DamagedRange>,
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

    /// Writes the human-readable report: a line per segment, per damaged range, per source and
    /// per shard; the last line (`verify total: key=value ...`) is stable for scripts.
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        for s in &self.segments {
            writeln!(out, "{}", s.line())?;
        }
        for line in self.segments.iter().flat_map(SegmentCheck::clock_lines) {
            writeln!(out, "{line}")?;
        }
        for journal in &self.journals {
            writeln!(out, "{}", journal.line())?;
        }
        for damaged in &self.damaged {
            writeln!(out, "{}", damaged.line())?;
        }
        for s in &self.sources {
            writeln!(out, "{}", s.line())?;
        }
        for shard in &self.shards {
            writeln!(out, "{}", shard.line())?;
        }
        writeln!(out, "{}", self.total_line())
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

    /// `verify total: segments=N bytes=N ... valid=BOOL clock_steps=N`.
    fn total_line(&self) -> String {
        format!(
            "verify total: segments={} bytes={} sources={} frames={} emergency={} journaled={} pruned={} missing={} duplicates={} count_jumps={} problems={} damaged={} damaged_bytes={} valid={} clock_steps={}",
            self.segments.len(),
            self.bytes(),
            self.sources.len(),
            self.frames(),
            self.sources.iter().map(|s| s.emergency).sum::<u64>(),
            self.sources.iter().map(|s| s.journaled).sum::<u64>(),
            self.sources.iter().map(|s| s.pruned).sum::<u64>(),
            self.sources.iter().map(|s| s.missing).sum::<u64>(),
            self.sources.iter().map(|s| s.duplicate_frames).sum::<u64>(),
            self.sources.iter().map(|s| s.count_jumps.len()).sum::<usize>(),
            self.problems().count(),
            self.damaged.len(),
            self.damaged
                .iter()
                .map(|d| d.damage.end - d.damage.start)
                .sum::<u64>(),
            self.is_valid(),
            self.clock_steps()
        )
    }
}

impl SourceCheck {
    /// `source KIND ID: frames=N ... [watermark=N] [gaps=[..]] [duplicated=[..]]`.
    fn line(&self) -> String {
        let mut line = format!(
            "source {} {}: frames={} emergency={} first={} last={} missing={} duplicates={}",
            self.kind.label(),
            self.id,
            self.frames,
            self.emergency,
            opt(self.first),
            opt(self.last),
            self.missing,
            self.duplicate_frames,
        );
        if let Some(w) = self.watermark {
            let _ = write!(line, " watermark={w}");
        }
        if self.journaled > 0 {
            let _ = write!(line, " journaled={}", self.journaled);
        }
        if self.pruned > 0 {
            let _ = write!(line, " pruned={}", self.pruned);
        }
        let gaps = self.gaps.iter().map(|&(a, b)| run(a, b));
        write_capped(&mut line, "gaps", gaps, self.gaps.len(), " gaps");
        let jumps = self.count_jumps.iter().map(|&(a, b)| run(a, b));
        let len = self.count_jumps.len();
        write_capped(&mut line, "count_jumps", jumps, len, " jumps");
        let duplicates = self.duplicates.iter().map(u64::to_string);
        write_capped(
            &mut line,
            "duplicated",
            duplicates,
            self.duplicates.len(),
            "",
        );
        line
    }
}

/// Appends ` name=[a, b, ...]` (` a, b, ...` for an empty name) with at most [`PRINT_CAP`] of
/// the `len` items, and ` (+N more{unit})` for the rest; nothing when there are none.
fn write_capped(
    line: &mut String,
    name: &str,
    items: impl Iterator<Item = String>,
    len: usize,
    unit: &str,
) {
    if len == 0 {
        return;
    }
    let shown = items.take(PRINT_CAP).collect::<Vec<String>>().join(", ");
    let _ = match name {
        "" => write!(line, " {shown}"),
        name => write!(line, " {name}=[{shown}]"),
    };
    let more = len.saturating_sub(PRINT_CAP);
    if more > 0 {
        let _ = write!(line, " (+{more} more{unit})");
    }
}

fn opt(value: Option<u64>) -> String {
    value.map_or("-".into(), |v| v.to_string())
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

/// Reads every segment of every shard of the archive at `dir` ([`format::list_shard_segments`])
/// and checks every record. Sources are tallied across the shards together: a source whose frames
/// a change of `runtime.shards` split over several shards is one source, and a sequence stored in
/// two shards is a duplicate. `Err` only when a directory or a file cannot be read; damage is in
/// the report.
pub fn verify(dir: &Path) -> io::Result<VerifyReport> {
    let mut segments = Vec::new();
    let mut shards = Vec::new();
    let mut damaged = Vec::new();
    let mut tallies: BTreeMap<(u8, u32), Tally> = BTreeMap::new();
    let mut held = Held::default();
    let mut journal_paths = Vec::new();
    let mut pruned: BTreeMap<(u8, u32), Pruned> = BTreeMap::new();
    for shard in format::list_shard_segments(dir)? {
        for (&key, deleted) in &ShardState::read(&shard.dir)?.pruned {
            let all = pruned.entry(key).or_default();
            all.frames += deleted.frames;
            deleted
                .sequences
                .runs()
                .for_each(|(a, b)| all.sequences.insert_run(a, b));
        }
        let first = segments.len();
        for (index, path) in shard.segments {
            let scan = format::read_segment(&path)?;
            held.hold(&scan);
            segments.push(check_segment(
                shard.shard,
                index,
                path,
                scan,
                &mut damaged,
                &mut tallies,
            ));
        }
        shards.push(ShardCheck::of(shard.shard, shard.dir, &segments[first..]));
        journal_paths.extend(shard.journals);
    }
    let damage_before = u32::try_from(damaged.len()).unwrap_or(u32::MAX);
    let journals = journal_paths
        .into_iter()
        .map(|path| check_journal(path, (&mut held, &pruned), damage_before, &mut tallies))
        .collect::<io::Result<Vec<_>>>()?;
    let sources = tallies
        .into_iter()
        .filter_map(|((kind, id), tally)| {
            let deleted = pruned.remove(&(kind, id)).unwrap_or_default();
            Some(summarize(
                (SourceKind::from_byte(kind)?, id),
                tally,
                &deleted,
                &mut damaged,
            ))
        })
        .collect();
    Ok(VerifyReport {
        dir: dir.to_path_buf(),
        shards,
        segments,
        journals,
        sources,
        damaged,
    })
}

/// Reads an emergency journal, adding to `tallies` the frames that `held` (what the segments and
/// the journals read before hold) lacks: those the next start stores from it. They are read
/// after every segment (`damage_before` counts the damaged ranges of all of them). A frame whose
/// segment retention deleted (`pruned`) may still be in a journal: it is neither stored again
/// nor counted.
fn check_journal(
    path: PathBuf,
    (held, pruned): (&mut Held, &BTreeMap<(u8, u32), Pruned>),
    damage_before: u32,
    tallies: &mut BTreeMap<(u8, u32), Tally>,
) -> io::Result<JournalCheck> {
    let journal = held.read_journal(&path)?;
    let mut only_here = 0;
    for (_, entry) in &journal.scan.entries {
        let Entry::Frame(frame) = entry else {
            continue;
        };
        let key = (frame.kind.to_byte(), frame.source_id);
        if pruned
            .get(&key)
            .is_some_and(|p| p.sequences.contains(frame.sequence))
        {
            continue;
        }
        only_here += 1;
        let tally = tallies.entry(key).or_default();
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

/// Checks one segment of `shard` (read as `scan`), adding its frames to `tallies` and its damaged
/// ranges to `damaged` (the ranges of every segment read before it).
fn check_segment(
    shard: usize,
    index: u64,
    path: PathBuf,
    scan: SegmentScan,
    damaged: &mut Vec<DamagedRange>,
    tallies: &mut BTreeMap<(u8, u32), Tally>,
) -> SegmentCheck {
    let damage_before = u32::try_from(damaged.len()).unwrap_or(u32::MAX);
    let frames = tally_segment(&scan, damage_before, tallies);
    damaged.extend(scan.damaged.iter().map(|damage| DamagedRange {
        path: path.clone(),
        damage: damage.clone(),
        missing: Vec::new(),
    }));
    SegmentCheck {
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
    }
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
    (kind, id): (SourceKind, u32),
    mut tally: Tally,
    pruned: &Pruned,
    damaged: &mut [DamagedRange],
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
    add_gaps_across(kind, id, &tally.sequences, &gaps, damaged);
    let mut count_jumps = Vec::new();
    if matches!(tally.counts, PacketCounts::Apid(_)) {
        count_jumps = std::mem::take(&mut gaps);
        missing = 0;
    }
    SourceCheck {
        kind,
        id,
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
    kind: SourceKind,
    id: u32,
    sequences: &[Seen],
    gaps: &[(u64, u64)],
    damaged: &mut [DamagedRange],
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
        damaged[range].missing.push((kind, id, first, last));
    }
}

// ---------------------------------------------------------------------------------------------
// inspect
// ---------------------------------------------------------------------------------------------

/// Which records `inspect` lists. Every `None` lets everything through. It is also the
/// subcommand's flags, so the command line and the filter cannot drift apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct Filter {
    /// Only this source id.
    #[arg(long, value_name = "ID")]
    pub source: Option<u32>,
    /// Only this source kind: live or replay.
    #[arg(long, value_parser = str::parse::<SourceKind>)]
    pub kind: Option<SourceKind>,
    /// Only frames of this priority: emergency or routine (hides watermark and stored records).
    #[arg(long, value_parser = str::parse::<Priority>)]
    pub priority: Option<Priority>,
    /// Lowest sequence listed (for watermarks, the acknowledged sequence).
    #[arg(long, value_name = "SEQ")]
    pub from: Option<u64>,
    /// Highest sequence listed.
    #[arg(long, value_name = "SEQ")]
    pub to: Option<u64>,
    /// List at most N lines (a frame of a FRAMES record is a line).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
}

impl Filter {
    /// Whether `entry` passes. A CLOCK record is about every source: it passes unless frames
    /// of one priority are asked for.
    pub(crate) fn matches(&self, entry: &Entry) -> bool {
        let Some((kind, id)) = entry.source() else {
            return self.priority.is_none();
        };
        // The sequences the record is about; it passes if any of them is in range.
        let (first, last) = match entry {
            Entry::Frame(f) => {
                if self.priority.is_some_and(|p| p != f.priority) {
                    return false;
                }
                (f.sequence, f.sequence)
            }
            Entry::Watermark { acked, .. } => {
                if self.priority.is_some() {
                    return false;
                }
                (*acked, *acked)
            }
            Entry::Stored { first, last, .. } => {
                if self.priority.is_some() {
                    return false;
                }
                (*first, *last)
            }
            Entry::Clock(_) => return self.priority.is_none(),
        };
        self.source.is_none_or(|s| s == id)
            && self.kind.is_none_or(|k| k == kind)
            && self.from.is_none_or(|f| last >= f)
            && self.to.is_none_or(|t| first <= t)
    }
}

/// What `inspect` went through.
#[derive(Debug, Clone, Default)]
pub struct InspectSummary {
    pub segments: u64,
    /// Lines written.
    pub listed: u64,
    /// Whether the limit cut the listing short.
    pub truncated: bool,
    /// Every damaged range of every segment (the valid records around them were listed).
    pub damaged: Vec<(PathBuf, Damage)>,
}

/// Lists the records of every segment of every shard of the archive at `dir` that pass `filter`,
/// one line each, to `out`: shard 0 first, then by shard ([`format::list_shard_segments`]); then,
/// shard by shard, the frames of the emergency journals that no segment holds ([`journals`]),
/// which the next start stores. Each line names its file by its path inside `dir`
/// (`shard-02/segment-...seg`, `shard-02/emergency-...journal`; a file of shard 0, as before
/// shards, by its name). The journals' damage is not listed: a torn tail is what a crash during
/// an append leaves, and what recovery skips too.
pub fn inspect(dir: &Path, filter: &Filter, out: &mut dyn Write) -> io::Result<InspectSummary> {
    let mut summary = InspectSummary::default();
    journals::read_archive(dir, |kind, path, scan| {
        if !list_entries(&name_in(dir, path), &scan, filter, out, &mut summary)? {
            summary.truncated = true;
            return Ok(ControlFlow::Break(()));
        }
        if kind == FileKind::Segment {
            summary.segments += 1;
            let damaged = scan.damaged.into_iter();
            summary
                .damaged
                .extend(damaged.map(|damage| (path.to_path_buf(), damage)));
        }
        Ok(ControlFlow::Continue(()))
    })?;
    Ok(summary)
}

/// `path` inside the archive directory `dir`, as `inspect` names a file.
fn name_in(dir: &Path, path: &Path) -> String {
    path.strip_prefix(dir).unwrap_or(path).display().to_string()
}

/// Lists the entries of the segment or journal `name` that pass `filter`, counting them in
/// `summary`; false when the limit stopped it.
fn list_entries(
    name: &str,
    scan: &SegmentScan,
    filter: &Filter,
    out: &mut dyn Write,
    summary: &mut InspectSummary,
) -> io::Result<bool> {
    for (offset, entry) in &scan.entries {
        if !filter.matches(entry) {
            continue;
        }
        if filter.limit.is_some_and(|l| summary.listed >= l as u64) {
            return Ok(false);
        }
        writeln!(out, "{name} {offset:>10} {}", describe(entry))?;
        summary.listed += 1;
    }
    Ok(true)
}

/// One record as `inspect` prints it, without its place.
pub(crate) fn describe(entry: &Entry) -> String {
    match entry {
        Entry::Frame(f) => format!(
            "frame     {:<6} {:>10} {:<9} seq={} received={}{} len={} payload={}",
            f.kind.label(),
            f.source_id,
            f.priority.as_str(),
            f.sequence,
            unix_ns_to_rfc3339(f.received_unix_ns),
            f.reception
                .as_ref()
                .map(|r| r.line_fields())
                .unwrap_or_default(),
            f.payload.len(),
            payload_preview(&f.payload)
        ),
        Entry::Watermark {
            kind,
            source_id,
            acked,
        } => format!(
            "watermark {:<6} {:>10} {:<9} acked={acked}",
            kind.label(),
            source_id,
            "-"
        ),
        Entry::Stored {
            kind,
            source_id,
            first,
            last,
        } => format!(
            "stored    {:<6} {:>10} {:<9} seq={}",
            kind.label(),
            source_id,
            "-",
            if first == last {
                first.to_string()
            } else {
                format!("{first}..={last}")
            }
        ),
        Entry::Clock(event) => format!(
            "clock     {:<6} {:>10} {:<9} event={} at={} wall={} jump_s={:+.9}",
            "-",
            "-",
            "-",
            event.kind.label(),
            unix_ns_to_rfc3339(event.archive_ns),
            unix_ns_to_rfc3339(event.wall_ns),
            clock::seconds(event.jump_ns)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_list_shows_the_first_ten_and_counts_the_rest() {
        let mut line = String::from("source");
        let gaps = (0..12u64).map(|g| g.to_string());
        write_capped(&mut line, "gaps", gaps, 12, " gaps");
        write_capped(&mut line, "duplicated", std::iter::empty(), 0, "");
        let duplicates = (0..13u64).map(|d| d.to_string());
        write_capped(&mut line, "duplicated", duplicates, 13, "");
        assert_eq!(
            line,
            "source gaps=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9] (+2 more gaps) \
             duplicated=[0, 1, 2, 3, 4, 5, 6, 7, 8, 9] (+3 more)"
        );
    }

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
        assert!(s.line().contains(" pruned=14"), "{}", s.line());
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
            .map(|i| DamagedRange {
                path: PathBuf::from("segment"),
                damage: Damage {
                    start: i * 100,
                    end: i * 100 + 50,
                    reason: "CRC mismatch".into(),
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
        let s = summarize(
            (SourceKind::LiveUplink, 4),
            tally,
            &Pruned::default(),
            &mut damaged,
        );
        assert_eq!(s.gaps, vec![(2, 2), (4, 4), (7, 7)]);
        let live = SourceKind::LiveUplink;
        assert_eq!(damaged[0].missing, vec![(live, 4, 2, 2), (live, 4, 4, 4)]);
        assert_eq!(damaged[1].missing, vec![(live, 4, 7, 7)]);
        assert_eq!(
            damaged[0].line(),
            "damaged segment: bytes 0..50 (50 bytes): CRC mismatch; missing across it: \
             live 4 seq 2, 4"
        );
    }
}
