//! `aggregator archive gaps`: per source, the sequences held over a window and the gaps between
//! them, as text or as the JSON of `GET /archive/completeness`.

use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::query::completeness::{self, Gap, MergeGroups, SourceCompleteness};
use aggregator::domain::filter::FrameFilter;
use aggregator::domain::sequence_set::SequenceSet;
use aggregator::ops::completeness_json;
use aggregator::Config;

use super::{passed_over, Subcommand};

/// Runs `aggregator archive gaps`: a line per source and per gap, or the JSON.
pub(super) fn run(dir: &Path, filter: &FrameFilter, json: bool, config: Option<&Path>) -> ExitCode {
    let tool = Subcommand("gaps");
    let groups = match config.map(Config::load).transpose() {
        Ok(config) => {
            config.map_or_else(Default::default, |c| completeness::merge_groups(&c.links))
        }
        Err(err) => return tool.fails(err, 2),
    };
    if !dir.is_dir() {
        return tool.fails(format_args!("{} is not a directory", dir.display()), 2);
    }
    let answer = match completeness::of_files(dir, filter) {
        Ok(answer) => answer,
        Err(err) => return tool.fails(err, 2),
    };
    let status = passed_over(tool, &answer);
    if json {
        println!(
            "{}",
            completeness_json::answer_json(&answer, filter, &groups)
        );
        return status;
    }
    for record in &answer.clock {
        println!("clock {record}");
    }
    print_gaps(&answer.sources, &groups);
    status
}

/// The text report: each source's runs and gaps (and stations), each pass of `groups`, and the
/// totals.
fn print_gaps(sources: &[SourceCompleteness], groups: &MergeGroups) {
    for source in sources {
        print_source(source);
    }
    for pass in completeness::passes(sources, groups) {
        let (group, apid, held) = (&pass.group, pass.apid, &pass.held);
        println!(
            "pass {group} apid {apid}: frames={} held={}",
            held.len(),
            runs(held)
        );
        pass.gaps.iter().for_each(print_gap);
        for s in &pass.stations {
            let (station, (kind, id), held) = (&s.station, s.source, &s.held);
            let (kind, frames) = (kind.label(), held.len());
            println!(
                "  station {station} ({kind}:{id}): frames={frames} held={}",
                runs(held)
            );
        }
        for f in &pass.filled {
            let (station, other, first, last) = (&f.station, &f.other, f.first, f.last);
            println!("  filled {first}..{last}: {station} for {other}");
        }
    }
    let frames: u64 = sources.iter().map(|s| s.frames).sum();
    let gaps: usize = sources.iter().map(|s| s.gaps.len()).sum();
    println!(
        "total sources={} frames={frames} gaps={gaps}",
        sources.len()
    );
}

/// A source's line, its gaps' and its stations'.
fn print_source(s: &SourceCompleteness) {
    let (kind, id, frames) = (s.source.0.label(), s.source.1, s.frames);
    let (held, gaps) = (runs(&s.held), s.gaps.len());
    let outside = match s.outside_window {
        0 => String::new(),
        n => format!(" outside_window={n}"),
    };
    println!("{kind}:{id} frames={frames}{outside} held={held} gaps={gaps}");
    s.gaps.iter().for_each(print_gap);
    for (station, held) in &s.stations {
        println!(
            "  station {station}: frames={} held={}",
            held.len(),
            runs(held)
        );
    }
}

/// `  gap FIRST..LAST (N frames): CAUSE`.
fn print_gap(gap: &Gap) {
    let (first, last, cause) = (gap.first, gap.last, gap.cause.label());
    println!(
        "  gap {first}..{last} ({} frames): {cause}",
        last - first + 1
    );
}

/// The runs held, `a..b` joined by commas.
fn runs(held: &SequenceSet) -> String {
    let runs: Vec<String> = held.runs().map(|(a, b)| format!("{a}..{b}")).collect();
    runs.join(",")
}
