//! `aggregator archive inspect`: the records of every segment and emergency journal, a line each:
//! its file (its path inside the archive directory), its offset, and what it holds.

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::format::Entry;
use aggregator::archive::tools::{self, Listed};
use aggregator::domain::clock;
use aggregator::domain::display::{payload_preview, unix_ns_to_rfc3339};
use aggregator::domain::filter::FrameFilter;

use super::{clean_or_failure, Subcommand};

/// Runs `aggregator archive inspect`: the lines on standard output, the damage passed over on
/// standard error.
pub(super) fn run(dir: &Path, filter: &FrameFilter, limit: Option<usize>) -> ExitCode {
    let mut out = std::io::stdout().lock();
    let mut line = |listed: Listed<'_>| {
        let (file, offset) = (listed.file, listed.offset);
        writeln!(out, "{file} {offset:>10} {}", describe(listed.entry))
    };
    let tool = Subcommand("inspect");
    let summary = match tools::inspect(dir, filter, limit, &mut line) {
        Ok(summary) => summary,
        Err(err) => return tool.fails(err, 2),
    };
    if summary.truncated {
        tool.says(format_args!(
            "stopped after {} lines (--limit)",
            summary.listed
        ));
    }
    for (path, damage) in &summary.damaged {
        tool.says(format_args!("damaged {}: {damage}", path.display()));
    }
    clean_or_failure(summary.damaged.is_empty())
}

/// One record as `inspect` prints it, without its place.
fn describe(entry: &Entry) -> String {
    match entry {
        Entry::Frame(f) => format!(
            "frame     {:<6} {:>10} {:<9} seq={} received={}{} len={} payload={}",
            f.kind.label(),
            f.source_id,
            f.priority.to_string(),
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
