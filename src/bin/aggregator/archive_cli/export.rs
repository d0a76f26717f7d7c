//! `aggregator archive export`: the frames of a window to a file, with a progress line on a
//! terminal.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use aggregator::archive::query::export::{ExportSink, Format, ParquetSink, RowSink, WriteBehind};
use aggregator::archive::tools;
use aggregator::archive::tools::export::{Exported, Progress};
use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::domain::filter::FrameFilter;

use super::{clean_or_failure, Subcommand};

/// Runs `aggregator archive export`: the window's frames to `output` (`-`: standard output), with a
/// progress line on a terminal.
pub(super) fn run(dir: &Path, filter: FrameFilter, format: Format, output: &Path) -> ExitCode {
    let tool = Subcommand("export");
    if !dir.is_dir() {
        return tool.fails(format_args!("{} is not a directory", dir.display()), 2);
    }
    let mut out = match open(output) {
        Ok(out) => out,
        Err(err) => {
            return tool.fails(format_args!("cannot create {}: {err}", output.display()), 2)
        }
    };
    let mut sink: Box<dyn ExportSink + '_> = match format {
        Format::Parquet => match ParquetSink::new(&mut out) {
            Ok(sink) => Box::new(sink),
            Err(err) => {
                return tool.fails(format_args!("cannot write {}: {err}", output.display()), 2)
            }
        },
        rows => Box::new(RowSink::new(rows, &mut out)),
    };
    let mut line = ProgressLine::new(output.to_str() == Some("-"));
    let exported = tools::export::export(dir, filter, sink.as_mut(), &mut |done| line.show(done));
    line.clear();
    match exported {
        Ok(exported) => report(&exported, output),
        Err(err) => tool.fails(err, 1),
    }
}

/// Where the rows go: `output`, or standard output for `-`. The Parquet writer needs no seeking:
/// standard output serves every format.
fn open(output: &Path) -> std::io::Result<Box<dyn std::io::Write + Send>> {
    Ok(match output.to_str() {
        Some("-") => Box::new(std::io::stdout()),
        _ => Box::new(std::io::BufWriter::with_capacity(
            1 << 20,
            WriteBehind::new(std::fs::File::create(output)?),
        )),
    })
}

/// What the export found deleted or damaged, and what it wrote, on standard error; the status.
fn report(exported: &Exported, output: &Path) -> ExitCode {
    let tool = Subcommand("export");
    for earliest in &exported.earliest {
        tool.says(format_args!(
            "shard {} holds nothing received before {} any more (retention deleted older \
             segments)",
            earliest.shard,
            unix_ns_to_rfc3339(earliest.oldest)
        ));
    }
    for range in &exported.damaged {
        tool.says(range);
    }
    let done = exported.progress;
    eprintln!(
        "exported {} frames, {} payload bytes, to {}",
        done.frames,
        done.bytes,
        output.display()
    );
    clean_or_failure(exported.damaged.is_empty())
}

/// An export's progress on standard error, rewritten in place at most ten times a second, when
/// standard error is a terminal.
struct ProgressLine {
    terminal: bool,
    shown: Option<std::time::Instant>,
}

impl ProgressLine {
    /// A line on standard error when it is a terminal, unless the rows go to standard output and
    /// that is a terminal too: the line would be written in among them.
    fn new(to_stdout: bool) -> ProgressLine {
        use std::io::IsTerminal;
        let rows_on_terminal = to_stdout && std::io::stdout().is_terminal();
        ProgressLine {
            terminal: std::io::stderr().is_terminal() && !rows_on_terminal,
            shown: None,
        }
    }

    fn show(&mut self, done: &Progress) {
        let due = self
            .shown
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(100));
        if !self.terminal || !due {
            return;
        }
        self.shown = Some(std::time::Instant::now());
        let newest = done.newest.map_or("-".into(), unix_ns_to_rfc3339);
        eprint!(
            "\r{} frames, {:.1} MiB, received up to {newest}\x1b[K",
            done.frames,
            done.bytes as f64 / (1024.0 * 1024.0)
        );
    }

    fn clear(&self) {
        if self.terminal && self.shown.is_some() {
            eprint!("\r\x1b[K");
        }
    }
}
