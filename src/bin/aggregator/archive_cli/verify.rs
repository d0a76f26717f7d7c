//! `aggregator archive verify`: every record's CRC, and each source's counts, gaps and
//! duplicates, in a line per segment, per damaged range, per source and per shard; the last line
//! (`verify total: key=value ...`) is stable for scripts.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::tools::{
    self, JournalCheck, RangeCheck, SegmentCheck, ShardCheck, SourceCheck, VerifyReport,
};

use super::{clean_or_failure, Subcommand};

/// At most this many gap ranges and duplicate sequences are printed per source.
const PRINT_CAP: usize = 10;

/// Runs `aggregator archive verify`: the report on standard output, each torn or corrupt segment
/// named on standard error.
pub(super) fn run(dir: &Path, strict: bool) -> ExitCode {
    let tool = Subcommand("verify");
    let report = match tools::verify(dir) {
        Ok(report) => report,
        Err(err) => return tool.fails(err, 2),
    };
    if report.segments.is_empty() {
        tool.says(format_args!("no segment files in {}", dir.display()));
    }
    if let Err(status) = tool.prints(&report, print) {
        return status;
    }
    for segment in report.problems() {
        tool.says(format_args!("{}: {}", segment.path.display(), segment.end));
    }
    clean_or_failure(report.is_valid() && (!strict || report.is_exactly_once()))
}

/// Writes the report: a line per segment, per CLOCK record, per journal, per damaged range, per
/// source and per shard, then the totals.
fn print(report: &VerifyReport, out: &mut dyn Write) -> io::Result<()> {
    for s in &report.segments {
        writeln!(out, "{}", segment_line(s))?;
    }
    for line in report.segments.iter().flat_map(clock_lines) {
        writeln!(out, "{line}")?;
    }
    for journal in &report.journals {
        writeln!(out, "{}", journal_line(journal))?;
    }
    for damaged in &report.damaged {
        writeln!(out, "{}", damaged_line(damaged))?;
    }
    for s in &report.sources {
        writeln!(out, "{}", source_line(s))?;
    }
    for shard in &report.shards {
        writeln!(out, "{}", shard_line(shard))?;
    }
    writeln!(out, "{}", total_line(report))
}

/// `segment PATH: N bytes, N records, N frames, STATE`.
fn segment_line(s: &SegmentCheck) -> String {
    format!(
        "segment {}: {} bytes, {} records, {} frames, {}",
        s.path.display(),
        s.bytes,
        s.records,
        s.frames,
        s.end
    )
}

/// `clock PATH offset N: EVENT`, one per CLOCK record.
fn clock_lines(s: &SegmentCheck) -> impl Iterator<Item = String> + '_ {
    let path = s.path.display();
    (s.clock.iter()).map(move |(offset, event)| format!("clock {path} offset {offset}: {event}"))
}

/// `journal PATH: N frames, N in no segment (the next start stores them), STATE`.
fn journal_line(journal: &JournalCheck) -> String {
    format!(
        "journal {}: {} frames, {} in no segment (the next start stores them), {}",
        journal.path.display(),
        journal.frames,
        journal.only_here,
        journal.end
    )
}

/// `shard K DIR: segments=N bytes=N frames=N`.
fn shard_line(shard: &ShardCheck) -> String {
    format!(
        "shard {} {}: segments={} bytes={} frames={}",
        shard.shard,
        shard.dir.display(),
        shard.segments,
        shard.bytes,
        shard.frames
    )
}

/// `damaged PATH: bytes START..END (N bytes): REASON; missing across it: ...`.
fn damaged_line(damaged: &RangeCheck) -> String {
    let range = &damaged.range;
    let mut line = format!(
        "damaged {}: bytes {}..{} ({} bytes): {}",
        damaged.path.display(),
        range.bytes.start,
        range.bytes.end,
        range.bytes.end - range.bytes.start,
        range.bytes.reason
    );
    if damaged.missing.is_empty() {
        line.push_str("; no source has a gap in its sequences across it");
        return line;
    }
    line.push_str("; missing across it:");
    // The source is named before its first gap only: `live 1 seq 27..=31, 33..=41`.
    let mut previous = None;
    let runs = damaged.missing.iter().map(|missing| {
        let ((kind, id), first, last) = (missing.source, missing.first, missing.last);
        match previous.replace(missing.source) == Some(missing.source) {
            true => sequences(first, last),
            false => format!("{} {id} seq {}", kind.label(), sequences(first, last)),
        }
    });
    write_capped(&mut line, "", runs, damaged.missing.len(), " runs");
    line
}

/// `source KIND ID: frames=N ... [watermark=N] [gaps=[..]] [duplicated=[..]]`.
fn source_line(s: &SourceCheck) -> String {
    let mut line = format!(
        "source {} {}: frames={} emergency={} first={} last={} missing={} duplicates={}",
        s.kind.label(),
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
    if s.journaled > 0 {
        let _ = write!(line, " journaled={}", s.journaled);
    }
    if s.pruned > 0 {
        let _ = write!(line, " pruned={}", s.pruned);
    }
    let gaps = s.gaps.iter().map(|&(a, b)| sequences(a, b));
    write_capped(&mut line, "gaps", gaps, s.gaps.len(), " gaps");
    let jumps = s.count_jumps.iter().map(|&(a, b)| sequences(a, b));
    write_capped(
        &mut line,
        "count_jumps",
        jumps,
        s.count_jumps.len(),
        " jumps",
    );
    let duplicates = s.duplicates.iter().map(u64::to_string);
    write_capped(&mut line, "duplicated", duplicates, s.duplicates.len(), "");
    line
}

/// `verify total: segments=N bytes=N ... valid=BOOL clock_steps=N`.
fn total_line(report: &VerifyReport) -> String {
    let sources = &report.sources;
    let sum = |count: fn(&SourceCheck) -> u64| sources.iter().map(count).sum::<u64>();
    format!(
        "verify total: segments={} bytes={} sources={} frames={} emergency={} journaled={} pruned={} missing={} duplicates={} count_jumps={} problems={} damaged={} damaged_bytes={} valid={} clock_steps={}",
        report.segments.len(),
        report.bytes(),
        sources.len(),
        report.frames(),
        sum(|s| s.emergency),
        sum(|s| s.journaled),
        sum(|s| s.pruned),
        sum(|s| s.missing),
        sum(|s| s.duplicate_frames),
        sum(|s| s.count_jumps.len() as u64),
        report.problems().count(),
        report.damaged.len(),
        report.damaged_bytes(),
        report.is_valid(),
        report.clock_steps()
    )
}

/// `first` alone, or `first..=last`.
fn sequences(first: u64, last: u64) -> String {
    if first == last {
        first.to_string()
    } else {
        format!("{first}..={last}")
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

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use aggregator::archive::format::{Damage, DamageReason};
    use aggregator::archive::read::DamagedRange;
    use aggregator::archive::tools::MissingRun;
    use aggregator::SourceKind;

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

    /// What retention deleted is said apart from what is missing.
    #[test]
    fn a_source_line_names_what_retention_deleted() {
        let source = SourceCheck {
            kind: SourceKind::LiveUplink,
            id: 4,
            frames: 5,
            emergency: 0,
            first: Some(10),
            last: Some(20),
            gaps: vec![(18, 19)],
            missing: 2,
            count_jumps: Vec::new(),
            duplicates: Vec::new(),
            duplicate_frames: 0,
            watermark: None,
            journaled: 0,
            pruned: 14,
        };
        assert_eq!(
            source_line(&source),
            "source live 4: frames=5 emergency=0 first=10 last=20 missing=2 duplicates=0 \
             pruned=14 gaps=[18..=19]"
        );
    }

    #[test]
    fn a_damaged_range_names_each_source_before_its_first_run() {
        let live_4 = (SourceKind::LiveUplink, 4);
        let missing = |first, last| MissingRun {
            source: live_4,
            first,
            last,
        };
        let damaged = RangeCheck {
            path: PathBuf::from("segment"),
            range: DamagedRange {
                shard: 0,
                segment: 1,
                bytes: Damage {
                    start: 0,
                    end: 50,
                    reason: DamageReason::CrcMismatch {
                        stored: 0x8a9aa120,
                        computed: 0x794e6955,
                        len: 42,
                    },
                },
            },
            missing: vec![missing(2, 2), missing(4, 4)],
        };
        assert_eq!(
            damaged_line(&damaged),
            "damaged segment: bytes 0..50 (50 bytes): CRC mismatch (stored 8a9aa120, computed \
             794e6955) over a 42-byte body; missing across it: live 4 seq 2, 4"
        );
    }
}
