//! `aggregator archive volume`: the frames and bytes each station delivered of each source over
//! a window, summed per station and per group, as a small table or as the JSON of
//! `GET /archive/volume`.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::query::volume::{self, Count, Volume, VolumeQuery};
use aggregator::ops::volume_json;

use super::passes::{setting, Setting};
use super::{passed_over, Subcommand};
use crate::cli::{StationArgs, WindowArgs};

/// Runs `aggregator archive volume`: the table, or the JSON.
pub(super) fn run(dir: &Path, window: WindowArgs, asked: StationArgs) -> ExitCode {
    let tool = Subcommand("volume");
    let Setting { filter, groups, .. } = match setting(tool, dir, window, &asked) {
        Ok(setting) => setting,
        Err(status) => return status,
    };
    let query = VolumeQuery {
        station: asked.station,
        group: asked.group,
    };
    let answer = match volume::of_files(dir, &filter, &groups, &query) {
        Ok(answer) => answer,
        Err(err) => return tool.fails(err, 2),
    };
    let status = passed_over(tool, &answer.read);
    let printed = match asked.json {
        true => tool.prints(&answer, |answer, out| {
            writeln!(out, "{}", volume_json::answer_json(answer, &filter))
        }),
        false => tool.prints(&answer, print_table),
    };
    printed.err().unwrap_or(status)
}

/// The table: a line per station and source, then each station's total and each group's
/// (`all` where a column is summed over), then the summary line.
fn print_table(answer: &Volume, out: &mut dyn Write) -> io::Result<()> {
    for record in &answer.read.clock {
        writeln!(out, "clock {record}")?;
    }
    let mut lines = vec![Line::of("station", "group", "source", None)];
    for row in &answer.rows {
        let (kind, id) = row.source;
        let group = row.group.as_deref().unwrap_or("-");
        let source = format!("{}:{id}", kind.label());
        lines.push(Line::of(&row.station, group, &source, Some(row.count)));
    }
    for ((kind, id), count) in &answer.without_station {
        let source = format!("{}:{id}", kind.label());
        lines.push(Line::of("-", "-", &source, Some(*count)));
    }
    for (station, count) in &answer.stations {
        lines.push(Line::of(station, "all", "all", Some(*count)));
    }
    for (group, count) in &answer.groups {
        lines.push(Line::of("all", group, "all", Some(*count)));
    }
    let widths = Line::widths(&lines);
    for line in &lines {
        line.write(&widths, out)?;
    }
    let total = answer.total();
    writeln!(
        out,
        "total frames={} bytes={} frames_without_station={}",
        total.frames,
        total.bytes,
        answer.frames_without_station()
    )
}

/// A line of the table: three names, then frames and bytes (their headings on the first).
struct Line([String; 5]);

impl Line {
    fn of(station: &str, group: &str, source: &str, count: Option<Count>) -> Line {
        let (frames, bytes) = match count {
            Some(c) => (c.frames.to_string(), c.bytes.to_string()),
            None => ("frames".into(), "bytes".into()),
        };
        Line([station.into(), group.into(), source.into(), frames, bytes])
    }

    /// Each column's width: its longest cell.
    fn widths(lines: &[Line]) -> [usize; 5] {
        let mut widths = [0; 5];
        for Line(cells) in lines {
            for (width, cell) in widths.iter_mut().zip(cells) {
                *width = (*width).max(cell.chars().count());
            }
        }
        widths
    }

    /// The names aligned left, the numbers right, two spaces apart, no space at the end.
    fn write(&self, widths: &[usize; 5], out: &mut dyn Write) -> io::Result<()> {
        let [station, group, source, frames, bytes] = &self.0;
        let [w0, w1, w2, w3, w4] = *widths;
        writeln!(
            out,
            "{station:<w0$}  {group:<w1$}  {source:<w2$}  {frames:>w3$}  {bytes:>w4$}"
        )
    }
}
