//! `aggregator archive prune`: the oldest sealed segments deleted, as `[archive.retention]`
//! deletes them: a line per segment deleted (or, in a dry run, that would be), one per source,
//! then `prune total: key=value ...` (stable for scripts).

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::tools::prune::{self, PruneError, PruneLimit, PruneReport, PruneRun};
use aggregator::domain::display::unix_ns_to_rfc3339;

use super::Subcommand;

/// Runs `aggregator archive prune`: what it deleted (or would), and what each source keeps.
pub(super) fn run(dir: &Path, limit: PruneLimit, run: PruneRun) -> ExitCode {
    let tool = Subcommand("prune");
    let report = match prune::prune(dir, limit, run) {
        Ok(report) => report,
        Err(err) => {
            let refused = matches!(err, PruneError::Untrusted(_));
            return tool.fails(err, if refused { 1 } else { 2 });
        }
    };
    match tool.prints(&report, print) {
        Ok(()) => ExitCode::SUCCESS,
        Err(status) => status,
    }
}

/// A line per segment deleted, one per source, then the totals.
fn print(report: &PruneReport, out: &mut dyn Write) -> io::Result<()> {
    let verb = if report.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    for d in &report.deleted {
        let newest = d.newest.map_or("-".into(), unix_ns_to_rfc3339);
        writeln!(
            out,
            "{verb} shard {} segment {}: {} bytes, {} frames, newest frame {newest}",
            d.shard, d.segment, d.bytes, d.frames
        )?;
    }
    for s in &report.sources {
        let seq = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
        writeln!(
            out,
            "source {} {}: keeps frames={} first={} last={} deleted={}",
            s.kind.label(),
            s.id,
            s.frames,
            seq(s.first),
            seq(s.last),
            s.deleted
        )?;
    }
    writeln!(
        out,
        "prune total: deleted_segments={} deleted_bytes={} bytes_before={} bytes_after={} segments_after={} dry_run={}",
        report.deleted.len(),
        report.deleted.iter().map(|d| d.bytes).sum::<u64>(),
        report.bytes_before,
        report.bytes_after,
        report.segments_after,
        report.dry_run
    )
}
