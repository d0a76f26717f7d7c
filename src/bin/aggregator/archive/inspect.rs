//! `aggregator archive inspect`: the records of every segment and emergency journal, a line each.

use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::tools::{self, Filter};

/// Runs `aggregator archive inspect`: the lines on standard output, the damage passed over on
/// standard error.
pub(super) fn run(dir: &Path, filter: &Filter) -> ExitCode {
    let summary = match tools::inspect(dir, filter, &mut std::io::stdout().lock()) {
        Ok(summary) => summary,
        Err(err) => {
            eprintln!("aggregator archive inspect: {err}");
            return ExitCode::from(2);
        }
    };
    if summary.truncated {
        eprintln!(
            "aggregator archive inspect: stopped after {} lines (--limit)",
            summary.listed
        );
    }
    for (path, damage) in &summary.damaged {
        eprintln!(
            "aggregator archive inspect: damaged {}: {damage}",
            path.display()
        );
    }
    if summary.damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
