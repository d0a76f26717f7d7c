//! `aggregator archive verify`: every record's CRC, and each source's counts, gaps and
//! duplicates.

use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::tools;

/// Runs `aggregator archive verify`: the report on standard output, each torn or corrupt segment
/// named on standard error.
pub(super) fn run(dir: &Path, strict: bool) -> ExitCode {
    let report = match tools::verify(dir) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("aggregator archive verify: {err}");
            return ExitCode::from(2);
        }
    };
    if report.segments.is_empty() {
        eprintln!(
            "aggregator archive verify: no segment files in {}",
            dir.display()
        );
    }
    if let Err(err) = report.print(&mut std::io::stdout().lock()) {
        eprintln!("aggregator archive verify: writing the report: {err}");
        return ExitCode::from(2);
    }
    for segment in report.problems() {
        eprintln!(
            "aggregator archive verify: {}: {}",
            segment.path.display(),
            segment.end
        );
    }
    if !report.is_valid() || (strict && !report.is_exactly_once()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
