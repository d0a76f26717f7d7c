//! `aggregator archive ...`: the operators' tools on an archive directory. Each runs the
//! library's tool (`aggregator::archive::tools`, `aggregator::archive::query`), words its result
//! on standard output, names problems on standard error, and turns the result into the exit
//! status the subcommand's help promises.

mod export;
mod gaps;
mod inspect;
mod passes;
mod prune;
mod repair;
mod upgrade;
mod verify;
mod volume;

use std::fmt::Display;
use std::io::{self, Write};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use aggregator::archive::query::completeness::Completeness;
use aggregator::archive::tools::prune::{PruneLimit, PruneRun};
use aggregator::domain::filter::FrameFilter;
use aggregator::domain::units;

use crate::cli::ArchiveTool;

/// How an archive subcommand speaks: its report on standard output, each problem on standard
/// error after its name, and the exit status its help promises (2: it could not run).
#[derive(Debug, Clone, Copy)]
struct Subcommand(&'static str);

impl Subcommand {
    /// Names `problem` on standard error.
    fn says(self, problem: impl Display) {
        eprintln!("aggregator archive {}: {problem}", self.0);
    }

    /// Names `problem` and ends with `status`.
    fn fails(self, problem: impl Display, status: u8) -> ExitCode {
        self.says(problem);
        ExitCode::from(status)
    }

    /// `report` printed by `print` on standard output; a failure to write it ends with 2.
    fn prints<R>(
        self,
        report: &R,
        print: impl FnOnce(&R, &mut dyn Write) -> io::Result<()>,
    ) -> Result<(), ExitCode> {
        print(report, &mut io::stdout().lock())
            .map_err(|err| self.fails(format_args!("writing the report: {err}"), 2))
    }
}

/// `SUCCESS` when `clean`, else `FAILURE`: what every tool says of a problem it went past.
fn clean_or_failure(clean: bool) -> ExitCode {
    match clean {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    }
}

/// Says what a reading of the archive passed over (damage, missing segments), each on stderr,
/// and the status that makes: `SUCCESS` when nothing, else `FAILURE`.
fn passed_over(tool: Subcommand, read: &Completeness) -> ExitCode {
    let problems = read.problems();
    for problem in &problems {
        tool.says(problem);
    }
    clean_or_failure(problems.is_empty())
}

/// Runs an archive tool; its output goes to stdout, problems to stderr.
pub(crate) fn run(tool: ArchiveTool) -> ExitCode {
    match tool {
        ArchiveTool::Verify { dir, strict } => verify::run(&dir, strict),
        ArchiveTool::Gaps {
            dir,
            window,
            json,
            config,
        } => match window.filter(SystemTime::now()) {
            Ok(filter) => gaps::run(&dir, &filter, json, config.as_deref()),
            Err(why) => Subcommand("gaps").fails(why, 2),
        },
        ArchiveTool::Passes { dir, window, asked } => passes::run(&dir, window, asked),
        ArchiveTool::Volume { dir, window, asked } => volume::run(&dir, window, asked),
        ArchiveTool::Export {
            dir,
            window,
            kind,
            priority,
            apid,
            format,
            output,
        } => match window.filter(SystemTime::now()) {
            Ok(filter) => {
                let filter = FrameFilter {
                    kind,
                    priority,
                    apid,
                    ..filter
                };
                export::run(&dir, filter, format, &output)
            }
            Err(why) => Subcommand("export").fails(why, 2),
        },
        ArchiveTool::Inspect { dir, filter } => inspect::run(&dir, &filter.filter(), filter.limit),
        ArchiveTool::Repair { dir, quarantine } => repair::run(&dir, quarantine),
        ArchiveTool::Upgrade { dir, dry_run } => upgrade::run(&dir, dry_run),
        ArchiveTool::Prune {
            dir,
            before,
            keep_bytes,
            keep_age,
            dry_run,
            force,
        } => {
            let now = SystemTime::now();
            match prune_limit(before, keep_bytes, keep_age, now) {
                Ok(limit) => {
                    let now_ns = units::unix_ns(now).unwrap_or(0);
                    let run = PruneRun {
                        dry_run,
                        now_ns,
                        force,
                    };
                    prune::run(&dir, limit, run)
                }
                Err(why) => Subcommand("prune").fails(why, 2),
            }
        }
    }
}

/// What `prune` deletes by: the one of --before, --keep-bytes and --keep-age given.
fn prune_limit(
    before: Option<String>,
    keep_bytes: Option<u64>,
    keep_age: Option<Duration>,
    now: SystemTime,
) -> Result<PruneLimit, String> {
    match (before, keep_bytes, keep_age) {
        (Some(time), _, _) => units::parse_time(&time, now)
            .map(PruneLimit::Before)
            .map_err(|why| format!("--before: {why}")),
        (_, Some(bytes), _) => Ok(PruneLimit::KeepBytes(bytes)),
        (_, _, Some(age)) => Ok(PruneLimit::KeepAge(age)),
        (None, None, None) => Err("give --before, --keep-bytes or --keep-age".into()),
    }
}
