//! What the archive holds of each source over a time window, and what it is missing: the runs of
//! sequences held, and each gap between them with its cause, retention's deletions or sequences
//! that never arrived (the source skipped them, or a link lost them).
//!
//! Why from the indexes: an operator asks this about a day or a pass, and a day of a busy station
//! is gigabytes. A sealed segment's index (`crate::archive::format::index`) holds each source's sequences
//! and the received times of its blocks, so a segment wholly inside the window is answered from
//! its index alone, one wholly outside is passed over, and only the blocks of the few segments the
//! window's ends cut through (and each shard's newest segment, which has no index yet) are read.
//! Retention's state (`crate::archive::format::retention_file`) says which sequences it deleted.
//!
//! A timeline ([`Timeline`]) divides the window into equal buckets and says, per source, how many
//! frames were received in each and how many sequences are missing after it, for a picture of the
//! window (the dashboard's bars). It reads nothing more: a frame read from its block counts in the
//! bucket of its received time; the frames of a segment answered from its index are spread evenly
//! over the segment's received span (the index has the span and each source's count, not each
//! frame's time); a gap counts in the bucket of the frame held before it, which for an indexed
//! segment is the segment's newest time. Under load a segment spans seconds, so the bars are
//! exact to a few seconds; at low rates the newest segment, unsealed, is read frame by frame.

use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use crate::archive::format::index::{self, SegmentIndex, SourceSpan};
use crate::archive::format::retention_file::ShardState;
use crate::archive::format::{self, Entry};
use crate::archive::read::{self, DamagedRange, DurableEnds, FrameFilter};
use crate::config::LinkConfig;
use crate::domain::clock::{self, ClockEvent};
use crate::domain::frame::{SourceKey, SourceKind};
use crate::domain::position::DurableEnd;
use crate::domain::sequence_set::SequenceSet;

/// Why sequences between two held runs are missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GapCause {
    /// Retention (or `archive prune`) deleted the segments that held them.
    Retention,
    /// A source of the ingest protocol never sent them: it skipped them.
    NotReceived,
    /// A ground-segment link's source: the spacecraft's count jumped over them, so no station
    /// delivered them (a loss on the space link, or a counter restart).
    SpaceLink,
}

impl GapCause {
    /// `retention`, `not_received` or `space_link`, as the tools and the HTTP API print it.
    pub fn label(self) -> &'static str {
        match self {
            GapCause::Retention => "retention",
            GapCause::NotReceived => "not_received",
            GapCause::SpaceLink => "space_link",
        }
    }
}

/// Missing sequences `first..=last`, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    pub first: u64,
    pub last: u64,
    pub cause: GapCause,
}

/// What the archive holds of one source in the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCompleteness {
    pub source: SourceKey,
    /// Frames received in the window.
    pub frames: u64,
    /// Sequences held whose received time is outside the window, between frames of the window
    /// in sequence: stamped out of order (the clock stood behind the archive at a start), they
    /// are held, not missing: in `held`, not in `frames`.
    pub outside_window: u64,
    /// The sequences held.
    pub held: SequenceSet,
    /// The gaps between the runs held, lowest first.
    pub gaps: Vec<Gap>,
    /// With a [`Timeline`]: its buckets, oldest first.
    pub timeline: Option<Vec<Bucket>>,
    /// A ground-segment link's source: the sequences each station delivered (whose copy was
    /// stored), by the station's name. Empty for a source of the ingest protocol.
    pub stations: BTreeMap<String, SequenceSet>,
}

/// The sources of the stations of merge groups (`[[links]]` of one `group`), by source: the
/// group, and the APID whose count the source carries. Built from the config
/// ([`merge_groups`]): the archive does not know which links were redundant.
pub type MergeGroups = std::collections::HashMap<SourceKey, (String, u16)>;

/// The merge groups of `links`: each station's source of each APID, for the links that name a
/// `group`.
pub fn merge_groups(links: &[LinkConfig]) -> MergeGroups {
    let mut groups = MergeGroups::new();
    for link in links.iter().filter(|l| l.group.is_some()) {
        for (apid, id) in link.count_sources() {
            groups.insert((link.kind, id), (link.group_name().to_owned(), apid));
        }
    }
    groups
}

/// One APID of a merge group over the window: the packets its stations' sources hold together
/// (each stored once, from the station that delivered it first), the gaps no station filled, what
/// each station delivered, and what one filled for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pass {
    pub group: String,
    pub apid: u16,
    pub held: SequenceSet,
    pub gaps: Vec<Gap>,
    /// Each station's source and the sequences whose copy it delivered.
    pub stations: Vec<(String, SourceKey, SequenceSet)>,
    pub filled: Vec<Filled>,
}

/// Sequences `first..=last` that `station` delivered within the span of `other` (from the first
/// to the last sequence `other` delivered in the window): packets `other` lost, or delivered
/// later than `station`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filled {
    pub station: String,
    pub other: String,
    pub first: u64,
    pub last: u64,
}

/// The passes of `sources` that belong to merge groups, by group and APID.
pub fn passes(sources: &[SourceCompleteness], groups: &MergeGroups) -> Vec<Pass> {
    let mut members: BTreeMap<(&str, u16), Vec<&SourceCompleteness>> = BTreeMap::new();
    for source in sources {
        if let Some((group, apid)) = groups.get(&source.source) {
            members.entry((group, *apid)).or_default().push(source);
        }
    }
    members
        .into_iter()
        .map(|((group, apid), members)| {
            let (mut held, mut pruned) = (SequenceSet::default(), SequenceSet::default());
            let mut stations = Vec::new();
            for source in members {
                source.held.runs().for_each(|(a, b)| held.insert_run(a, b));
                let deleted = source
                    .gaps
                    .iter()
                    .filter(|g| g.cause == GapCause::Retention);
                deleted.for_each(|g| pruned.insert_run(g.first, g.last));
                for (station, sequences) in &source.stations {
                    stations.push((station.clone(), source.source, sequences.clone()));
                }
            }
            let gaps = gaps(&held, Some(&pruned), GapCause::SpaceLink);
            let filled = filled(&stations);
            Pass {
                group: group.to_owned(),
                apid,
                held,
                gaps,
                stations,
                filled,
            }
        })
        .collect()
}

/// The runs each station filled for another, station by station, lowest first.
fn filled(stations: &[(String, SourceKey, SequenceSet)]) -> Vec<Filled> {
    let mut filled = Vec::new();
    for (station, _, held) in stations {
        for (other, _, theirs) in stations {
            let (Some(from), Some(to)) = (theirs.first(), theirs.last()) else {
                continue;
            };
            if other == station {
                continue;
            }
            let within = held.runs().filter(|&(a, b)| a <= to && b >= from);
            filled.extend(within.map(|(a, b)| Filled {
                station: station.clone(),
                other: other.clone(),
                first: a.max(from),
                last: b.min(to),
            }));
        }
    }
    filled
}

/// A window divided into equal spans of received time, the buckets, for a picture of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// The window's first and last nanosecond (since the Unix epoch), both inside it.
    from: u64,
    to: u64,
    buckets: u32,
}

/// One bucket of a source's timeline.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Frames received in the bucket's span.
    pub frames: u64,
    /// Sequences missing after a frame received in it (the gap that follows it).
    pub missing: u64,
}

impl Timeline {
    /// `buckets` over the window from `from` to `to` (nanoseconds since the Unix epoch, both
    /// inside; a `to` before `from` is taken as `from`).
    pub fn new(from: u64, to: u64, buckets: NonZeroU32) -> Timeline {
        Timeline {
            from,
            to: to.max(from),
            buckets: buckets.get(),
        }
    }

    /// The window's length in nanoseconds, both ends counted.
    fn span(&self) -> u128 {
        u128::from(self.to - self.from) + 1
    }

    /// The bucket a frame received at `time` falls in (the first or the last, outside).
    fn bucket(&self, time: u64) -> usize {
        let at = u128::from(time.clamp(self.from, self.to) - self.from);
        (at * u128::from(self.buckets) / self.span()) as usize
    }

    /// The first nanosecond of bucket `bucket` (`buckets` gives the one after the window).
    fn start(&self, bucket: usize) -> u128 {
        let buckets = u128::from(self.buckets);
        u128::from(self.from) + (bucket as u128 * self.span()).div_ceil(buckets)
    }
}

/// Each source's frames held, by kind byte and id.
type Held = BTreeMap<(u8, u32), Gathered>;

/// Each source's sequences held near the window but received outside it, by kind byte and id:
/// what a gap between the window's frames may hold after all.
type Elsewhere = BTreeMap<(u8, u32), SequenceSet>;

/// What the segments gave of one source so far.
#[derive(Debug, Default)]
struct Gathered {
    frames: u64,
    held: SequenceSet,
    /// With a timeline: frames by bucket.
    buckets: Vec<u64>,
    /// With a timeline: the last sequence of each run of sequences met, and its received time, to
    /// place the gap after it. A run ends at a sequence whose next one is not the next met.
    run_ends: Vec<(u64, u64)>,
    /// The sequence and received time of the frame last read, the end of the run being read.
    reading: Option<(u64, u64)>,
    /// A link's source: the sequences each station delivered.
    stations: BTreeMap<String, SequenceSet>,
}

impl Gathered {
    fn new(timeline: Option<&Timeline>) -> Gathered {
        Gathered {
            buckets: vec![0; timeline.map_or(0, |t| t.buckets as usize)],
            ..Gathered::default()
        }
    }

    /// Counts a frame read from its block: at its received time.
    fn add_frame(&mut self, sequence: u64, received: u64, timeline: Option<&Timeline>) {
        self.frames += 1;
        self.held.insert_run(sequence, sequence);
        let Some(timeline) = timeline else { return };
        self.buckets[timeline.bucket(received)] += 1;
        match self.reading {
            Some((last, _)) if last.checked_add(1) == Some(sequence) => {}
            Some(end) => self.run_ends.push(end),
            None => {}
        }
        self.reading = Some((sequence, received));
    }

    /// Counts a segment's frames from its index, received from `oldest` to `newest`: spread
    /// evenly over that span, each run of sequences ending at `newest`.
    fn add_indexed(
        &mut self,
        span: &SourceSpan,
        (oldest, newest): (u64, u64),
        timeline: Option<&Timeline>,
    ) {
        self.frames += span.frames;
        span.sequences
            .runs()
            .for_each(|(a, b)| self.held.insert_run(a, b));
        let Some(timeline) = timeline else { return };
        spread(&mut self.buckets, timeline, span.frames, (oldest, newest));
        self.run_ends
            .extend(span.sequences.runs().map(|(_, last)| (last, newest)));
    }

    /// Notes that `station` delivered these sequences.
    fn add_station(&mut self, station: &str, runs: impl IntoIterator<Item = (u64, u64)>) {
        let held = match self.stations.get_mut(station) {
            Some(held) => held,
            None => self.stations.entry(station.to_owned()).or_default(),
        };
        runs.into_iter().for_each(|(a, b)| held.insert_run(a, b));
    }

    /// Takes as held the sequences of `elsewhere` between its first and last held: stamped
    /// outside the window, they are no gap in it. Returns how many (not counted in `frames`).
    fn take_elsewhere(&mut self, elsewhere: Option<&SequenceSet>) -> u64 {
        let (Some(first), Some(last), Some(elsewhere)) =
            (self.held.first(), self.held.last(), elsewhere)
        else {
            return 0;
        };
        let mut taken = 0;
        let within = elsewhere.runs().filter(|&(a, b)| a <= last && b >= first);
        for (a, b) in within.collect::<Vec<_>>() {
            for (x, y) in self.held.missing_in(a.max(first), b.min(last)) {
                self.held.insert_run(x, y);
                taken += y - x + 1;
            }
        }
        taken
    }

    /// The source's answer: its gaps (cut by what retention deleted, `pruned`) and its timeline,
    /// once what `elsewhere` holds between its frames is taken as held.
    fn finish(
        mut self,
        source: SourceKey,
        (pruned, elsewhere): (Option<&SequenceSet>, Option<&SequenceSet>),
        timeline: Option<&Timeline>,
    ) -> SourceCompleteness {
        let outside_window = self.take_elsewhere(elsewhere);
        let never = match self.stations.is_empty() {
            true => GapCause::NotReceived,
            false => GapCause::SpaceLink,
        };
        let gaps = gaps(&self.held, pruned, never);
        let timeline = timeline.map(|timeline| {
            let mut buckets: Vec<Bucket> = (self.buckets.iter())
                .map(|&frames| Bucket { frames, missing: 0 })
                .collect();
            self.run_ends.extend(self.reading.take());
            self.run_ends.sort_unstable();
            // A hole between two runs held may be cut into gaps of both causes: all of it counts
            // where the frame before it was received.
            let mut hole: Option<(u64, usize)> = None;
            for gap in &gaps {
                let bucket = match hole {
                    Some((last, bucket)) if last + 1 == gap.first => Some(bucket),
                    _ => self.received(gap.first - 1).map(|t| timeline.bucket(t)),
                };
                if let Some(bucket) = bucket {
                    buckets[bucket].missing += gap.last - gap.first + 1;
                    hole = Some((gap.last, bucket));
                }
            }
            buckets
        });
        SourceCompleteness {
            source,
            frames: self.frames,
            outside_window,
            held: self.held,
            gaps,
            timeline,
            stations: self.stations,
        }
    }

    /// When the frame of `sequence` that ends a run was received (the newest time when it was met
    /// twice), from the sorted run ends; for a sequence held outside the window, when the last
    /// run in it before `sequence` ended.
    fn received(&self, sequence: u64) -> Option<u64> {
        let at = self.run_ends.partition_point(|&(s, _)| s <= sequence);
        let end = at.checked_sub(1).map(|i| self.run_ends[i]);
        end.map(|(_, time)| time)
    }
}

/// Adds `frames` received evenly from `oldest` to `newest` to `buckets`: to each bucket the
/// frames of the part of the span it covers, rounded so that the buckets get `frames` in all.
fn spread(buckets: &mut [u64], timeline: &Timeline, frames: u64, (oldest, newest): (u64, u64)) {
    let (oldest, newest) = (oldest.max(timeline.from), newest.min(timeline.to));
    if oldest > newest {
        return;
    }
    let len = u128::from(newest - oldest) + 1;
    // The frames received before `time`, from `oldest` to one past `newest`.
    let before = |time: u128| {
        let time = time.clamp(u128::from(oldest), u128::from(newest) + 1);
        (u128::from(frames) * (time - u128::from(oldest)) / len) as u64
    };
    let (first, last) = (timeline.bucket(oldest), timeline.bucket(newest));
    for (bucket, count) in buckets.iter_mut().enumerate().take(last + 1).skip(first) {
        *count += before(timeline.start(bucket + 1)) - before(timeline.start(bucket));
    }
}

/// What the archive holds of the sources asked about, and what of it could not be read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Completeness {
    pub sources: Vec<SourceCompleteness>,
    /// Damaged records passed over, as `archive verify` names them: their frames are not held.
    pub damaged: Vec<DamagedRange>,
    /// Segments missing from a shard's numbering that retention did not delete (an operator
    /// did), as (shard, segment): their frames are not held.
    pub missing: Vec<(usize, u64)>,
    /// The CLOCK records among the segments that meet the window that tell of a step, shard by
    /// shard in file order: where the wall clock stepped while a daemon ran, or where a daemon
    /// started with its clock behind the archive (its received times jump back there).
    pub clock: Vec<ClockRecord>,
}

/// A CLOCK record and where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockRecord {
    pub shard: usize,
    pub segment: u64,
    pub offset: u64,
    pub event: ClockEvent,
}

impl ClockRecord {
    /// `{"shard":S,"segment":N,"offset":O,"event":"start"|"step","at":T,"wall":T,"jump_seconds":F}`.
    pub fn to_json(&self) -> serde_json::Value {
        let e = &self.event;
        serde_json::json!({
            "shard": self.shard,
            "segment": self.segment,
            "offset": self.offset,
            "event": e.kind.label(),
            "at": crate::domain::display::unix_ns_to_rfc3339(e.archive_ns),
            "wall": crate::domain::display::unix_ns_to_rfc3339(e.wall_ns),
            "jump_seconds": clock::seconds(e.jump_ns),
        })
    }
}

impl std::fmt::Display for ClockRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (shard, segment, offset) = (self.shard, self.segment, self.offset);
        write!(
            f,
            "shard {shard} segment {segment} offset {offset}: {}",
            self.event
        )
    }
}

impl Completeness {
    /// The lines that say what could not be read, each for an operator's eyes.
    pub fn problems(&self) -> Vec<String> {
        let missing = self.missing.iter().map(|(shard, segment)| {
            format!(
                "shard {shard} segment {segment} is missing (deleted, not by retention): its \
                 frames are not held"
            )
        });
        let damaged = self.damaged.iter().map(ToString::to_string);
        damaged.chain(missing).collect()
    }
}

/// [`completeness`] of the archive's files as they are now (a stopped archive, or one read beside
/// its daemon: each shard to its newest segment's last whole record), without a timeline.
/// Blocking.
pub fn of_files(root: &Path, filter: &FrameFilter) -> io::Result<Completeness> {
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
) -> io::Result<Completeness> {
    let mut found = Found::default();
    for (shard, dir) in format::list_shards(root)? {
        let Some(end) = ends
            .iter()
            .find(|(k, _)| *k == shard)
            .map(|(_, e)| *e.borrow())
        else {
            continue;
        };
        let reading = Reading {
            shard,
            dir: &dir,
            end,
            filter,
            timeline,
        };
        reading.read_shard(&mut found)?;
    }
    let Found {
        held,
        elsewhere,
        pruned,
        damaged,
        missing,
        clock,
    } = found;
    let sources = held
        .into_iter()
        .filter_map(|((kind, id), gathered)| {
            let source = (SourceKind::from_byte(kind)?, id);
            let around = (pruned.get(&(kind, id)), elsewhere.get(&(kind, id)));
            Some(gathered.finish(source, around, timeline))
        })
        .collect();
    Ok(Completeness {
        sources,
        damaged,
        missing,
        clock,
    })
}

/// What the shards' segments gave so far.
#[derive(Default)]
struct Found {
    held: Held,
    elsewhere: Elsewhere,
    /// What retention deleted, by source.
    pruned: BTreeMap<(u8, u32), SequenceSet>,
    damaged: Vec<DamagedRange>,
    missing: Vec<(usize, u64)>,
    clock: Vec<ClockRecord>,
}

/// What one shard's segments are read for: the shard's directory and durable end, the sources
/// and window wanted, and the timeline.
struct Reading<'a> {
    shard: usize,
    dir: &'a Path,
    end: DurableEnd,
    filter: &'a FrameFilter,
    timeline: Option<&'a Timeline>,
}

impl Reading<'_> {
    /// Reads the shard's segments into `found`: what each holds of the window, the damage passed
    /// over, the segments missing from its numbering, and what retention deleted.
    fn read_shard(&self, found: &mut Found) -> io::Result<()> {
        let first_retained = ShardState::read(self.dir)?.first_retained;
        // Segments are numbered without gaps, and retention deletes the oldest, below
        // `first_retained`: the next one expected after it, or after the last one seen.
        let (mut expected, mut holes) =
            ((first_retained > 0).then_some(first_retained), Vec::new());
        // The first and last segment that meet the window.
        let mut met: Option<(u64, u64)> = None;
        let mut sealed = Vec::new();
        for (index, path) in format::list_segments(self.dir)? {
            if index < first_retained || index > self.end.segment {
                continue;
            }
            holes.extend(expected.map_or(0..0, |expected| expected..index));
            expected = Some(index + 1);
            match self.add_segment((index, &path), found) {
                Ok(meets) => {
                    met = meets
                        .then(|| met.map_or((index, index), |(a, _)| (a, index)))
                        .or(met)
                }
                // Retention may delete a segment between the listing and its reading.
                Err(err) if err.kind() == io::ErrorKind::NotFound => holes.push(index),
                Err(err) => return Err(err),
            }
            sealed.extend((index < self.end.segment).then_some((index, path)));
        }
        let (first, last) = met.unwrap_or((1, 0));
        let shard = self.shard;
        found
            .clock
            .retain(|r| r.shard != shard || (first..=last).contains(&r.segment));
        if self.filter.has_window() {
            let between = sealed.iter().filter(|(i, _)| (first..=last).contains(i));
            for (index, path) in between {
                self.add_elsewhere((*index, path), &mut found.elsewhere)?;
            }
        }
        // Read after the segments: retention records a deletion before it unlinks, so the state
        // names every segment it deleted before or during the reading, and their sequences.
        let state = ShardState::read(self.dir)?;
        for (&key, span) in &state.pruned {
            let sequences = found.pruned.entry(key).or_default();
            span.sequences
                .runs()
                .for_each(|(a, b)| sequences.insert_run(a, b));
        }
        let by_hand = holes
            .into_iter()
            .filter(|&gone| gone >= state.first_retained);
        found.missing.extend(by_hand.map(|gone| (self.shard, gone)));
        Ok(())
    }

    /// Adds what sealed segment `index` (at `path`) holds of the sources wanted to `elsewhere`:
    /// it lies among the segments that meet the window, so frames of it received outside the
    /// window may fill gaps between the window's frames.
    fn add_elsewhere(
        &self,
        (index, path): (u64, &PathBuf),
        elsewhere: &mut Elsewhere,
    ) -> io::Result<()> {
        let contents = match SegmentIndex::read_or_rebuild(self.dir, index, path) {
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(()),
            contents => contents?,
        };
        for (&key, span) in &contents.sources {
            if wants(self.filter, key) {
                let sequences = elsewhere.entry(key).or_default();
                span.sequences
                    .runs()
                    .for_each(|(a, b)| sequences.insert_run(a, b));
            }
        }
        Ok(())
    }

    /// Adds what segment `index` (at `path`) holds of the window to `found`: from its index when
    /// it is sealed and wholly inside, by reading the blocks that meet the window otherwise,
    /// passing over damaged records. Returns whether it meets the window.
    fn add_segment(&self, (index, path): (u64, &Path), found: &mut Found) -> io::Result<bool> {
        let window = self.filter.received();
        let ranges = match index < self.end.segment {
            true => {
                let contents = SegmentIndex::read_or_rebuild(self.dir, index, path)?;
                let steps = contents.clock.iter().filter(|(_, e)| e.tells_of_a_step());
                let at = |&(offset, event)| self.clock_record(index, offset, event);
                found.clock.extend(steps.map(at));
                match contents.received {
                    Some(span) if window.contains(&span.0) && window.contains(&span.1) => {
                        self.add_indexed(&contents, span, &mut found.held);
                        return Ok(true);
                    }
                    _ => {
                        let sources = index::sources_mask(&self.filter.sources);
                        contents.ranges_between(*window.start(), *window.end(), sources)
                    }
                }
            }
            false => vec![(format::MAGIC.len() as u64, self.end.len)],
        };
        let file = File::open(path).map_err(|err| format::with_path(err, path, "cannot read"))?;
        let (mut meets, mut elsewhere) = (false, Elsewhere::new());
        for (mut from, to) in ranges {
            while from < to {
                match format::read_records(&file, path, from, to, 1 << 20) {
                    Ok(records) => {
                        from = records.next;
                        let read = (index, records.entries);
                        meets |= self.add_frames(read, found, &mut elsewhere);
                    }
                    Err(err) if err.kind() == io::ErrorKind::InvalidData => {
                        let next = format::next_record(&file, path, from, to)?.unwrap_or(to);
                        found.damaged.push(DamagedRange {
                            shard: self.shard,
                            segment: index,
                            from,
                            to: next,
                            reason: err.to_string(),
                        });
                        from = next;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
        // The newest segment, read whole, is among the window's segments when it meets it (a
        // sealed one's frames outside the window come from its index, `add_elsewhere`).
        if meets && index == self.end.segment {
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
        (index, entries): (u64, Vec<(u64, Entry)>),
        found: &mut Found,
        elsewhere: &mut Elsewhere,
    ) -> bool {
        let window = self.filter.received();
        let mut meets = false;
        for (offset, entry) in entries {
            let frame = match entry {
                Entry::Frame(frame) => frame,
                // Those of the blocks of sealed segments come from their index.
                Entry::Clock(event) if index == self.end.segment && event.tells_of_a_step() => {
                    found.clock.push(self.clock_record(index, offset, event));
                    continue;
                }
                _ => continue,
            };
            let key = (frame.kind.to_byte(), frame.source_id);
            let received = frame.received_unix_ns;
            if !wants(self.filter, key) {
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
        }
        meets
    }

    /// The CLOCK record of `event` at `offset` of segment `index` of this shard.
    fn clock_record(&self, segment: u64, offset: u64, event: ClockEvent) -> ClockRecord {
        ClockRecord {
            shard: self.shard,
            segment,
            offset,
            event,
        }
    }

    /// Adds a sealed segment's sources from its index: its frames were received from `span.0` to
    /// `span.1`.
    fn add_indexed(&self, contents: &SegmentIndex, span: (u64, u64), held: &mut Held) {
        for (&key, source) in &contents.sources {
            if wants(self.filter, key) {
                let gathered = (held.entry(key)).or_insert_with(|| Gathered::new(self.timeline));
                gathered.add_indexed(source, span, self.timeline);
                for (station, sequences) in contents.stations.get(&key).into_iter().flatten() {
                    gathered.add_station(station, sequences.runs());
                }
            }
        }
    }
}

/// The answer as JSON, as `GET /archive/completeness` and `aggregator archive gaps --json` give
/// it: the window (`null` for an open end) and each source's frames, runs held and gaps, and with
/// a timeline its buckets, each `[frames, missing]`.
pub fn to_json(sources: &[SourceCompleteness], filter: &FrameFilter) -> serde_json::Value {
    let time = |ns: Option<u64>| ns.map(crate::domain::display::unix_ns_to_rfc3339);
    let sources: Vec<serde_json::Value> = sources
        .iter()
        .map(|s| {
            let mut source = serde_json::json!({
                "kind": s.source.0.label(),
                "source": s.source.1,
                "frames": s.frames,
                "first": s.held.first(),
                "last": s.held.last(),
                "held": runs_json(&s.held),
                "gaps": gaps_json(&s.gaps),
            });
            if s.outside_window > 0 {
                source["outside_window"] = s.outside_window.into();
            }
            if let Some(timeline) = &s.timeline {
                let buckets: Vec<[u64; 2]> =
                    timeline.iter().map(|b| [b.frames, b.missing]).collect();
                source["timeline"] = serde_json::json!(buckets);
            }
            if !s.stations.is_empty() {
                source["stations"] = (s.stations.iter())
                    .map(|(station, held)| station_json(station, None, held))
                    .collect();
            }
            source
        })
        .collect();
    serde_json::json!({
        "from": time(filter.since),
        "to": time(filter.until),
        "sources": sources,
    })
}

/// A station's runs: `{"station": NAME, ["source": "KIND:ID",] "frames": N, "held": [[first,
/// last], ...]}`.
fn station_json(station: &str, source: Option<SourceKey>, held: &SequenceSet) -> serde_json::Value {
    let mut json =
        serde_json::json!({"station": station, "frames": held.len(), "held": runs_json(held)});
    if let Some((kind, id)) = source {
        json["source"] = format!("{}:{id}", kind.label()).into();
    }
    json
}

fn runs_json(held: &SequenceSet) -> serde_json::Value {
    held.runs()
        .map(|(a, b)| [a, b])
        .collect::<Vec<[u64; 2]>>()
        .into()
}

fn gaps_json(gaps: &[Gap]) -> serde_json::Value {
    (gaps.iter())
        .map(|g| {
            serde_json::json!({
                "first": g.first,
                "last": g.last,
                "frames": g.last - g.first + 1,
                "cause": g.cause.label(),
            })
        })
        .collect()
}

/// [`to_json`] of the answer's sources, with the [`passes`] of `groups` under `passes` when there
/// are any, and what could not be read under `damaged` and `missing_segments` when anything.
pub fn answer_json(
    answer: &Completeness,
    filter: &FrameFilter,
    groups: &MergeGroups,
) -> serde_json::Value {
    let mut json = to_json(&answer.sources, filter);
    let passes = passes(&answer.sources, groups);
    if !passes.is_empty() {
        json["passes"] = passes_json(&passes);
    }
    if !answer.damaged.is_empty() {
        json["damaged"] = answer.damaged.iter().map(DamagedRange::to_json).collect();
    }
    if !answer.missing.is_empty() {
        json["missing_segments"] = (answer.missing.iter())
            .map(|(shard, segment)| serde_json::json!({"shard": shard, "segment": segment}))
            .collect();
    }
    if !answer.clock.is_empty() {
        json["clock"] = answer.clock.iter().map(ClockRecord::to_json).collect();
    }
    json
}

/// The passes as JSON, the `passes` of `GET /archive/completeness` and of `aggregator archive
/// gaps --json --config FILE`.
fn passes_json(passes: &[Pass]) -> serde_json::Value {
    (passes.iter())
        .map(|p| {
            let stations: Vec<serde_json::Value> = (p.stations.iter())
                .map(|(station, source, held)| station_json(station, Some(*source), held))
                .collect();
            let filled: Vec<serde_json::Value> = (p.filled.iter())
                .map(|f| serde_json::json!({"station": f.station, "for": f.other, "first": f.first, "last": f.last}))
                .collect();
            serde_json::json!({
                "group": p.group,
                "apid": p.apid,
                "frames": p.held.len(),
                "held": runs_json(&p.held),
                "gaps": gaps_json(&p.gaps),
                "stations": stations,
                "filled": filled,
            })
        })
        .collect()
}

fn wants(filter: &FrameFilter, (kind, id): (u8, u32)) -> bool {
    let source = SourceKind::from_byte(kind).map(|kind| (kind, id));
    filter.sources.is_empty() || source.is_some_and(|s| filter.sources.contains(&s))
}

/// The gaps between the runs of `held`, each cut into what retention deleted (`pruned`) and what
/// never arrived (`never`: the cause for this kind of source).
fn gaps(held: &SequenceSet, pruned: Option<&SequenceSet>, never_cause: GapCause) -> Vec<Gap> {
    let mut gaps = Vec::new();
    let runs: Vec<(u64, u64)> = held.runs().collect();
    for pair in runs.windows(2) {
        let (first, last) = (pair[0].1 + 1, pair[1].0 - 1);
        let never = match pruned {
            Some(pruned) => pruned.missing_in(first, last),
            None => vec![(first, last)],
        };
        // Between the pieces that never arrived, retention's.
        let mut at = first;
        for (a, b) in never {
            if a > at {
                gaps.push(gap(at, a - 1, GapCause::Retention));
            }
            gaps.push(gap(a, b, never_cause));
            at = b + 1;
        }
        if at <= last {
            gaps.push(gap(at, last, GapCause::Retention));
        }
    }
    gaps
}

fn gap(first: u64, last: u64, cause: GapCause) -> Gap {
    Gap { first, last, cause }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(runs: &[(u64, u64)]) -> SequenceSet {
        SequenceSet::of_runs(runs)
    }

    /// Ten buckets of 100 ns from 1000 to 1999.
    fn timeline() -> Timeline {
        Timeline::new(1000, 1999, NonZeroU32::new(10).unwrap())
    }

    fn frames(timeline: &[Bucket]) -> Vec<u64> {
        timeline.iter().map(|b| b.frames).collect()
    }

    fn missing(timeline: &[Bucket]) -> Vec<u64> {
        timeline.iter().map(|b| b.missing).collect()
    }

    const LIVE_7: SourceKey = (SourceKind::LiveUplink, 7);

    #[test]
    fn frames_read_count_at_their_received_time_and_a_gap_after_the_frame_before_it() {
        let t = timeline();
        let mut source = Gathered::new(Some(&t));
        // 0..=2, then 3..=5 never came, then 6 and 7; the last bucket ends the window.
        for (sequence, received) in [(0, 1000), (1, 1150), (2, 1199), (6, 1500), (7, 1999)] {
            source.add_frame(sequence, received, Some(&t));
        }
        let answer = source.finish(LIVE_7, (None, None), Some(&t));
        assert_eq!(answer.frames, 5);
        assert_eq!(answer.gaps, [gap(3, 5, GapCause::NotReceived)]);
        let buckets = answer.timeline.unwrap();
        assert_eq!(frames(&buckets), [1, 2, 0, 0, 0, 1, 0, 0, 0, 1]);
        assert_eq!(missing(&buckets), [0, 3, 0, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn an_indexed_segment_spreads_its_frames_over_its_span_and_ends_its_runs_at_its_newest() {
        let t = timeline();
        let mut source = Gathered::new(Some(&t));
        // Ten frames received from 1000 to 1499: two a bucket.
        let span = SourceSpan {
            frames: 10,
            sequences: set(&[(0, 9)]),
        };
        source.add_indexed(&span, (1000, 1499), Some(&t));
        // Four more from 1550 to 1749, half a bucket, a bucket and half a bucket; 14..=19 lost.
        let span = SourceSpan {
            frames: 4,
            sequences: set(&[(10, 13)]),
        };
        source.add_indexed(&span, (1550, 1749), Some(&t));
        // Then 20 read, at 1900.
        source.add_frame(20, 1900, Some(&t));
        let answer = source.finish(LIVE_7, (None, None), Some(&t));
        assert_eq!(answer.frames, 15);
        let buckets = answer.timeline.unwrap();
        assert_eq!(frames(&buckets), [2, 2, 2, 2, 2, 1, 2, 1, 0, 1]);
        // The gap after 13 is at its segment's newest time, 1749.
        assert_eq!(missing(&buckets), [0, 0, 0, 0, 0, 0, 0, 6, 0, 0]);
    }

    #[test]
    fn a_hole_cut_by_retention_counts_whole_after_the_frame_before_it() {
        let t = timeline();
        let mut source = Gathered::new(Some(&t));
        for (sequence, received) in [(0, 1000), (1, 1250), (20, 1900)] {
            source.add_frame(sequence, received, Some(&t));
        }
        // Retention deleted 5..=9: 2..=4 and 10..=19 never came.
        let answer = source.finish(LIVE_7, (Some(&set(&[(5, 9)])), None), Some(&t));
        assert_eq!(answer.gaps.len(), 3);
        let buckets = answer.timeline.unwrap();
        assert_eq!(missing(&buckets), [0, 0, 18, 0, 0, 0, 0, 0, 0, 0]);
    }

    #[test]
    fn a_spread_rounds_to_the_segments_frames_and_one_instant_fills_one_bucket() {
        let t = timeline();
        for (count, span) in [(7, (1003, 1998)), (1000, (1001, 1002)), (3, (1234, 1234))] {
            let mut buckets = vec![0; 10];
            spread(&mut buckets, &t, count, span);
            assert_eq!(buckets.iter().sum::<u64>(), count, "{span:?}");
            let used: Vec<usize> = (0..10).filter(|&b| buckets[b] > 0).collect();
            assert!(
                used.iter()
                    .all(|&b| b >= t.bucket(span.0) && b <= t.bucket(span.1)),
                "{span:?}: {buckets:?}"
            );
        }
        let mut buckets = vec![0; 10];
        spread(&mut buckets, &t, 3, (1234, 1234));
        assert_eq!(buckets[2], 3);
        // Bucket edges: the last nanosecond of one, the first of the next, and the window's ends.
        assert_eq!(
            [1000, 1099, 1100, 1999, 0, u64::MAX].map(|time| t.bucket(time)),
            [0, 0, 1, 9, 0, 9]
        );
        let odd = Timeline::new(0, 9, NonZeroU32::new(3).unwrap());
        assert_eq!(
            (0..10).map(|time| odd.bucket(time)).collect::<Vec<_>>(),
            [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
        );
        assert_eq!(
            (0..=3).map(|b| odd.start(b)).collect::<Vec<_>>(),
            [0, 4, 7, 10]
        );
    }

    #[test]
    fn without_a_timeline_nothing_is_kept_for_one() {
        let mut source = Gathered::new(None);
        source.add_frame(0, 1000, None);
        source.add_frame(5, 1001, None);
        assert!(source.run_ends.is_empty() && source.buckets.is_empty());
        let answer = source.finish(LIVE_7, (None, None), None);
        assert_eq!((answer.frames, answer.timeline), (2, None));
        assert_eq!(answer.gaps, [gap(1, 4, GapCause::NotReceived)]);
    }

    #[test]
    fn gaps_between_held_runs_say_what_retention_deleted_and_what_never_came() {
        let held = set(&[(0, 9), (20, 29), (40, 49)]);
        assert_eq!(
            gaps(&held, None, GapCause::NotReceived),
            [
                gap(10, 19, GapCause::NotReceived),
                gap(30, 39, GapCause::NotReceived)
            ]
        );
        // Retention deleted 12..=15 and all of 30..=39.
        let pruned = set(&[(12, 15), (30, 39)]);
        assert_eq!(
            gaps(&held, Some(&pruned), GapCause::NotReceived),
            [
                gap(10, 11, GapCause::NotReceived),
                gap(12, 15, GapCause::Retention),
                gap(16, 19, GapCause::NotReceived),
                gap(30, 39, GapCause::Retention),
            ]
        );
        assert_eq!(
            gaps(&set(&[(5, 9)]), Some(&pruned), GapCause::NotReceived),
            []
        );
    }

    /// A merged pass: Kiruna delivered 0..=49 and 80..=119 but lost 50..=79, Svalbard filled
    /// 50..=59 and 65..=79; nobody had 60..=64 nor 100..=109 (both lost on the space link).
    /// Each station has a source of its own (live:507, live:607).
    #[test]
    fn a_pass_says_which_station_delivered_what_and_what_one_filled_for_the_other() {
        let kiruna = [(0, 49), (80, 99), (110, 119)];
        let svalbard = [(50, 59), (65, 79)];
        let mut groups = MergeGroups::new();
        let mut sources = Vec::new();
        for (station, id, runs) in [
            ("Kiruna", 507, &kiruna[..]),
            ("Svalbard", 607, &svalbard[..]),
        ] {
            let mut source = Gathered::new(None);
            for &(a, b) in runs {
                (a..=b).for_each(|sequence| source.add_frame(sequence, 1000, None));
                source.add_station(station, [(a, b)]);
            }
            let key = (SourceKind::LiveUplink, id);
            sources.push(source.finish(key, (None, None), None));
            groups.insert(key, ("pass".into(), 7));
        }
        // Alone, each station's source has gaps on the space link.
        assert_eq!(sources[1].gaps, [gap(60, 64, GapCause::SpaceLink)]);
        let passes = passes(&sources, &groups);
        assert_eq!(passes.len(), 1);
        let pass = &passes[0];
        assert_eq!((pass.group.as_str(), pass.apid), ("pass", 7));
        assert_eq!(pass.held, set(&[(0, 59), (65, 99), (110, 119)]));
        assert_eq!(
            pass.gaps,
            [
                gap(60, 64, GapCause::SpaceLink),
                gap(100, 109, GapCause::SpaceLink)
            ]
        );
        let filled = |first, last| Filled {
            station: "Svalbard".into(),
            other: "Kiruna".into(),
            first,
            last,
        };
        assert_eq!(pass.filled, [filled(50, 59), filled(65, 79)]);
        let answer = Completeness {
            sources,
            ..Completeness::default()
        };
        let json = answer_json(&answer, &FrameFilter::default(), &groups);
        assert_eq!(json["sources"][0]["stations"][0]["station"], "Kiruna");
        let stations = &json["passes"][0]["stations"];
        assert_eq!(stations[1]["source"], "live:607");
        assert_eq!(stations[1]["held"], serde_json::json!([[50, 59], [65, 79]]));
        assert_eq!(
            json["passes"][0]["filled"][0],
            serde_json::json!({"station": "Svalbard", "for": "Kiruna", "first": 50, "last": 59})
        );
        // Without the config's groups, no passes.
        let alone = answer_json(&answer, &FrameFilter::default(), &MergeGroups::new());
        assert!(alone.get("passes").is_none());
        assert!(alone.get("damaged").is_none() && alone.get("missing_segments").is_none());
    }
}
