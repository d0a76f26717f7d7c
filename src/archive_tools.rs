//! The operator's tools on top of the archive: `aggregator archive verify` and
//! `aggregator archive inspect` (`docs/archive.md`).
//!
//! Both read segment files with [`crate::segment`] and nothing else, so they work on a copy of an
//! archive, with the daemon stopped or running (a running daemon's newest segment may end in a
//! record it is still writing, which `verify` reports as torn). The binary only parses the command
//! line and turns the results into an exit status; the work and the wording are here, so tests and
//! other tools can use them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::frame::{Priority, SourceKind};
use crate::segment::{self, Entry, ScanEnd};

/// At most this many gap ranges and duplicate sequences are printed per source.
pub const PRINT_CAP: usize = 10;

/// Parses `live` or `replay` (or the wire names `live_uplink`, `archived_replay`).
pub fn parse_kind(text: &str) -> Result<SourceKind, String> {
    match text {
        "live" | "live_uplink" | "uplink" => Ok(SourceKind::LiveUplink),
        "replay" | "archived_replay" => Ok(SourceKind::ArchivedReplay),
        other => Err(format!(
            "unknown source kind {other:?} (expected live or replay)"
        )),
    }
}

/// Parses `emergency` or `routine`.
pub fn parse_priority(text: &str) -> Result<Priority, String> {
    match text {
        "emergency" => Ok(Priority::Emergency),
        "routine" => Ok(Priority::Routine),
        other => Err(format!(
            "unknown priority {other:?} (expected emergency or routine)"
        )),
    }
}

/// `live` or `replay`: the short names the tools print and accept.
pub fn kind_label(kind: SourceKind) -> &'static str {
    match kind {
        SourceKind::LiveUplink => "live",
        SourceKind::ArchivedReplay => "replay",
    }
}

// ---------------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------------

/// What `verify` found in one segment file.
#[derive(Debug, Clone)]
pub struct SegmentCheck {
    pub index: u64,
    pub path: PathBuf,
    pub bytes: u64,
    /// Valid records before the end (or before the damage).
    pub records: u64,
    pub frames: u64,
    pub end: ScanEnd,
}

impl SegmentCheck {
    /// Whether every byte of the file is a valid record.
    pub fn is_clean(&self) -> bool {
        self.end == ScanEnd::Clean
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
    /// Sequences stored more than once, in order, each once.
    pub duplicates: Vec<u64>,
    /// Frames beyond the first copy of their sequence.
    pub duplicate_frames: u64,
    /// Highest watermark written for the source.
    pub watermark: Option<u64>,
}

/// Everything `verify` found in an archive directory.
#[derive(Debug, Clone)]
pub struct VerifyReport {
    pub dir: PathBuf,
    pub segments: Vec<SegmentCheck>,
    /// Sorted by kind (live first), then id.
    pub sources: Vec<SourceCheck>,
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

    /// Whether no source has a duplicate or a gap.
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

    /// Writes the human-readable report; the last line (`verify total: key=value ...`) is stable
    /// for scripts.
    pub fn print(&self, out: &mut dyn Write) -> io::Result<()> {
        for s in &self.segments {
            let state = s.end.to_string();
            writeln!(
                out,
                "segment {}: {} bytes, {} records, {} frames, {state}",
                s.path.display(),
                s.bytes,
                s.records,
                s.frames
            )?;
        }
        for s in &self.sources {
            let mut line = format!(
                "source {} {}: frames={} emergency={} first={} last={} missing={} duplicates={}",
                kind_label(s.kind),
                s.id,
                s.frames,
                s.emergency,
                opt(s.first),
                opt(s.last),
                s.missing,
                s.duplicate_frames,
            );
            if let Some(w) = s.watermark {
                let _ = write!(line, " watermark={w}");
            }
            let gaps = s.gaps.iter().map(|&(a, b)| {
                if a == b {
                    a.to_string()
                } else {
                    format!("{a}..={b}")
                }
            });
            write_capped(&mut line, "gaps", gaps, s.gaps.len(), " gaps");
            let duplicates = s.duplicates.iter().map(u64::to_string);
            write_capped(&mut line, "duplicated", duplicates, s.duplicates.len(), "");
            writeln!(out, "{line}")?;
        }
        let problems = self.problems().count();
        writeln!(
            out,
            "verify total: segments={} bytes={} sources={} frames={} emergency={} missing={} duplicates={} problems={} valid={}",
            self.segments.len(),
            self.bytes(),
            self.sources.len(),
            self.frames(),
            self.sources.iter().map(|s| s.emergency).sum::<u64>(),
            self.sources.iter().map(|s| s.missing).sum::<u64>(),
            self.sources.iter().map(|s| s.duplicate_frames).sum::<u64>(),
            problems,
            self.is_valid()
        )
    }
}

/// Appends ` name=[a, b, ...]` with at most [`PRINT_CAP`] of the `len` items, and
/// ` (+N more{unit})` for the rest; nothing when there are none.
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
    let shown: Vec<String> = items.take(PRINT_CAP).collect();
    let _ = write!(line, " {name}=[{}]", shown.join(", "));
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
    sequences: Vec<u64>,
    watermark: Option<u64>,
}

/// Reads every segment in `dir` and checks every record. `Err` only when the directory or a file
/// cannot be read; damage is in the report.
pub fn verify(dir: &Path) -> io::Result<VerifyReport> {
    let mut segments = Vec::new();
    let mut tallies: BTreeMap<(u8, u32), Tally> = BTreeMap::new();
    for (index, path) in segment::list_segments(dir)? {
        let scan = segment::read_segment(&path)?;
        let mut frames = 0;
        for (_, entry) in &scan.entries {
            let (kind, id) = entry.source();
            let tally = tallies.entry((kind.to_byte(), id)).or_default();
            match entry {
                Entry::Frame(f) => {
                    frames += 1;
                    tally.frames += 1;
                    tally.emergency += u64::from(f.priority == Priority::Emergency);
                    tally.sequences.push(f.sequence);
                }
                Entry::Watermark { acked, .. } => {
                    tally.watermark = Some(tally.watermark.map_or(*acked, |w| w.max(*acked)));
                }
                Entry::Stored { .. } => {}
            }
        }
        segments.push(SegmentCheck {
            index,
            path,
            bytes: scan.file_len,
            // The frames of one FRAMES record share its offset.
            records: scan.entries.chunk_by(|(a, _), (b, _)| a == b).count() as u64,
            frames,
            end: scan.end,
        });
    }
    let sources = tallies
        .into_iter()
        .filter_map(|((kind, id), tally)| Some(summarize(SourceKind::from_byte(kind)?, id, tally)))
        .collect();
    Ok(VerifyReport {
        dir: dir.to_path_buf(),
        segments,
        sources,
    })
}

fn summarize(kind: SourceKind, id: u32, mut tally: Tally) -> SourceCheck {
    tally.sequences.sort_unstable();
    let mut gaps = Vec::new();
    let mut missing = 0;
    let mut duplicates = Vec::new();
    let mut duplicate_frames = 0;
    for pair in tally.sequences.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if a == b {
            duplicate_frames += 1;
            if duplicates.last() != Some(&a) {
                duplicates.push(a);
            }
        } else if b > a + 1 {
            gaps.push((a + 1, b - 1));
            missing += b - a - 1;
        }
    }
    SourceCheck {
        kind,
        id,
        frames: tally.frames,
        emergency: tally.emergency,
        first: tally.sequences.first().copied(),
        last: tally.sequences.last().copied(),
        gaps,
        missing,
        duplicates,
        duplicate_frames,
        watermark: tally.watermark,
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
    #[arg(long, value_parser = parse_kind)]
    pub kind: Option<SourceKind>,
    /// Only frames of this priority: emergency or routine (hides watermark and stored records).
    #[arg(long, value_parser = parse_priority)]
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
    /// Whether `entry` passes.
    pub fn matches(&self, entry: &Entry) -> bool {
        let (kind, id) = entry.source();
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
    /// Segments that are torn or corrupt (their records up to the damage were listed).
    pub problems: Vec<(PathBuf, ScanEnd)>,
}

/// Bytes of payload shown in hex.
const PAYLOAD_SHOWN: usize = 16;

/// Lists the records of every segment in `dir` that pass `filter`, one line each, to `out`.
pub fn inspect(dir: &Path, filter: &Filter, out: &mut dyn Write) -> io::Result<InspectSummary> {
    let mut summary = InspectSummary::default();
    'segments: for (_, path) in segment::list_segments(dir)? {
        let scan = segment::read_segment(&path)?;
        summary.segments += 1;
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into(),
        );
        for (offset, entry) in &scan.entries {
            if !filter.matches(entry) {
                continue;
            }
            if filter.limit.is_some_and(|l| summary.listed >= l as u64) {
                summary.truncated = true;
                break 'segments;
            }
            writeln!(out, "{name} {offset:>10} {}", describe(entry))?;
            summary.listed += 1;
        }
        if scan.end != ScanEnd::Clean {
            summary.problems.push((path, scan.end));
        }
    }
    Ok(summary)
}

/// One record as `inspect` prints it, without its place.
pub fn describe(entry: &Entry) -> String {
    match entry {
        Entry::Frame(f) => {
            let shown = &f.payload[..f.payload.len().min(PAYLOAD_SHOWN)];
            let mut hex = String::with_capacity(shown.len() * 2 + 2);
            for b in shown {
                let _ = write!(hex, "{b:02x}");
            }
            if f.payload.len() > PAYLOAD_SHOWN {
                hex.push_str("..");
            }
            format!(
                "frame     {:<6} {:>10} {:<9} seq={} received={} len={} payload={}",
                kind_label(f.kind),
                f.source_id,
                f.priority.as_str(),
                f.sequence,
                unix_ns_to_rfc3339(f.received_unix_ns),
                f.payload.len(),
                if hex.is_empty() { "-" } else { &hex }
            )
        }
        Entry::Watermark {
            kind,
            source_id,
            acked,
        } => format!(
            "watermark {:<6} {:>10} {:<9} acked={acked}",
            kind_label(*kind),
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
            kind_label(*kind),
            source_id,
            "-",
            if first == last {
                first.to_string()
            } else {
                format!("{first}..={last}")
            }
        ),
    }
}

/// `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ` (UTC) for nanoseconds since the Unix epoch.
pub fn unix_ns_to_rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let nanos = ns % 1_000_000_000;
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm), in u64 since the
    // epoch is the earliest time a u64 of nanoseconds can name.
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
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

    #[test]
    fn timestamps_are_utc_rfc3339() {
        assert_eq!(unix_ns_to_rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(
            unix_ns_to_rfc3339(1_700_000_000_123_456_789),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(
            unix_ns_to_rfc3339(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000000000Z"
        );
    }

    #[test]
    fn gaps_and_duplicates_are_found_in_sorted_sequences() {
        let tally = Tally {
            frames: 8,
            emergency: 1,
            sequences: vec![5, 1, 2, 2, 9, 3, 3, 3],
            watermark: Some(3),
        };
        let s = summarize(SourceKind::LiveUplink, 4, tally);
        assert_eq!((s.first, s.last), (Some(1), Some(9)));
        assert_eq!(s.gaps, vec![(4, 4), (6, 8)]);
        assert_eq!(s.missing, 4);
        assert_eq!(s.duplicates, vec![2, 3]);
        assert_eq!(s.duplicate_frames, 3);
    }
}
