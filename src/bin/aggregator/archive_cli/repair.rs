//! `aggregator archive repair`: the damaged ranges of each shard's newest segment moved aside (or,
//! in a dry run, what would be), and what the next start stores from the emergency journals.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::tools::repair::{self, JournalRestore, Repair, RepairReport};

use super::{clean_or_failure, Subcommand};

/// Runs `aggregator archive repair`: what it moved aside (or would), shard by shard.
pub(super) fn run(dir: &Path, quarantine: bool) -> ExitCode {
    let tool = Subcommand("repair");
    let report = match repair::repair(dir, quarantine) {
        Ok(report) if report.shards.is_empty() => {
            tool.says(format_args!("no segment files in {}", dir.display()));
            return ExitCode::SUCCESS;
        }
        Ok(report) => report,
        Err(err) => return tool.fails(err, 2),
    };
    if let Err(status) = tool.prints(&report, print) {
        return status;
    }
    clean_or_failure(report.is_settled())
}

/// What was (or would be) done in each shard, what the next start stores from each shard's
/// journals and from all of them, and how to do it after a dry run.
fn print(report: &RepairReport, out: &mut dyn Write) -> io::Result<()> {
    for repair in &report.shards {
        print_shard(repair, out)?;
    }
    for journals in &report.journals {
        writeln!(out, "{}", journals_line(journals))?;
    }
    let files = report.journals.iter().map(|j| j.files).sum();
    writeln!(
        out,
        "journals total: the next start stores {} from {}; repair leaves the journals as they are",
        counted(report.journaled(), "frame"),
        counted(files, "journal"),
    )?;
    if !report.is_settled() {
        let root = report.root.display();
        writeln!(
            out,
            "run `aggregator archive repair {root} --quarantine` to do it"
        )?;
    }
    Ok(())
}

/// What was (or would be) done to one shard's newest segment: a line per damaged range and one
/// for the segment.
fn print_shard(repair: &Repair, out: &mut dyn Write) -> io::Result<()> {
    let segment = repair.segment.display();
    if repair.damaged.is_empty() {
        return writeln!(out, "segment {segment}: clean, nothing to repair");
    }
    let (moves, rewrites) = match repair.done {
        true => ("moved", "rewrote"),
        false => ("would move", "would rewrite"),
    };
    for damage in &repair.damaged {
        writeln!(out, "damaged {segment}: {damage}")?;
        let (start, end, to) = (damage.start, damage.end, repair.quarantine_path(damage));
        writeln!(out, "{moves} bytes {start}..{end} to {}", to.display())?;
    }
    let (kept, len) = (repair.kept_len(), repair.file_len);
    writeln!(
        out,
        "{rewrites} {segment} without them: {kept} of {len} bytes"
    )
}

/// `journals DIR: the next start stores N frames from N journals`.
fn journals_line(journals: &JournalRestore) -> String {
    format!(
        "journals {}: the next start stores {} from {}",
        journals.dir.display(),
        counted(journals.frames, "frame"),
        counted(journals.files, "journal"),
    )
}

/// `1 frame`, `2 frames`.
fn counted(n: u64, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}
