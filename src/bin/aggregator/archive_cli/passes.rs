//! `aggregator archive passes`: the passes of stations over a window, as text or as the JSON of
//! `GET /archive/passes`.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use aggregator::archive::query::completeness::{self, MergeGroups};
use aggregator::archive::query::passes::{self, PassQuery, Receives, StationPass};
use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::domain::filter::FrameFilter;
use aggregator::domain::units;
use aggregator::ops::passes_json;
use aggregator::Config;

use super::{passed_over, Subcommand};
use crate::cli::{StationArgs, WindowArgs};

/// What a query of stations (passes, volume) reads: the window, ended when the command
/// started without --to, the config's merge groups and archive.pass_gap_ms.
pub(super) struct Setting {
    pub(super) filter: FrameFilter,
    pub(super) groups: MergeGroups,
    pub(super) gap: Duration,
}

/// The setting of a query of stations, or the exit status of a usage error (named): --group
/// without --config, a bad window or config, a DIR that is no directory. As the HTTP query's
/// window ends when it came, one without --to ends when the command started.
pub(super) fn setting(
    tool: Subcommand,
    dir: &Path,
    window: WindowArgs,
    asked: &StationArgs,
) -> Result<Setting, ExitCode> {
    if asked.group.is_some() && asked.config.is_none() {
        return Err(tool.fails(
            "--group needs --config, whose [[links]] name the merge groups",
            2,
        ));
    }
    let now = SystemTime::now();
    let filter = window.filter(now).map_err(|why| tool.fails(why, 2))?;
    let (groups, gap) = match asked.config.as_deref().map(Config::load).transpose() {
        Ok(Some(config)) => (
            completeness::merge_groups(&config.links),
            config.archive.pass_gap,
        ),
        Ok(None) => (Default::default(), aggregator::config::DEFAULT_PASS_GAP),
        Err(err) => return Err(tool.fails(err, 2)),
    };
    if !dir.is_dir() {
        return Err(tool.fails(format_args!("{} is not a directory", dir.display()), 2));
    }
    let filter = FrameFilter {
        until: filter.until.or(units::unix_ns(now)),
        ..filter
    };
    if filter.is_backwards(None) {
        let why = "--from is after the command's start, where the window ends without --to";
        return Err(tool.fails(why, 2));
    }
    Ok(Setting {
        filter,
        groups,
        gap,
    })
}

/// Runs `aggregator archive passes`: a line per pass and per source, or the JSON.
pub(super) fn run(dir: &Path, window: WindowArgs, asked: StationArgs) -> ExitCode {
    let tool = Subcommand("passes");
    let Setting {
        filter,
        groups,
        gap,
    } = match setting(tool, dir, window, &asked) {
        Ok(setting) => setting,
        Err(status) => return status,
    };
    let query = PassQuery {
        gap_ns: u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX),
        station: asked.station,
        group: asked.group,
    };
    let answer = match passes::of_files(dir, &filter, &groups, &query) {
        Ok(answer) => answer,
        Err(err) => return tool.fails(err, 2),
    };
    let status = passed_over(tool, &answer.read);
    if asked.json {
        println!(
            "{}",
            passes_json::answer_json(&answer, &filter, query.gap_ns)
        );
        return status;
    }
    for record in &answer.read.clock {
        println!("clock {record}");
    }
    answer.passes.iter().for_each(print_pass);
    println!(
        "total passes={} frames_without_station={}",
        answer.passes.len(),
        answer.without_station
    );
    status
}

/// A pass's line, and one per source with its fills and gaps.
fn print_pass(p: &StationPass) {
    let receives = match &p.receives {
        Receives::Group(group) => format!("group {group}"),
        Receives::Source((kind, id)) => format!("source {}:{id}", kind.label()),
    };
    let clipped = match (p.clipped.at_from, p.clipped.at_to) {
        (false, false) => "",
        (true, false) => " clipped=from",
        (false, true) => " clipped=to",
        (true, true) => " clipped=from,to",
    };
    let latency = p.latency.map_or(String::new(), |l| {
        format!(
            " latency_p50={:.3}s latency_max={:.3}s",
            l.p50_ns as f64 / 1e9,
            l.max_ns as f64 / 1e9
        )
    });
    println!(
        "pass {} {receives}: aos={} los={} ({}) frames={} bytes={} filled={} missing={} \
         playback={} earth_time={}{latency}{clipped}",
        p.station,
        unix_ns_to_rfc3339(p.aos_ns),
        unix_ns_to_rfc3339(p.los_ns),
        p.time_basis.label(),
        p.frames,
        p.bytes,
        p.filled(),
        p.missing(),
        p.playback,
        p.earth_time,
    );
    for s in &p.sources {
        let (kind, id) = s.source;
        let runs: Vec<String> = s.held.runs().map(|(a, b)| format!("{a}..{b}")).collect();
        println!(
            "  source {}:{id}: frames={} held={}",
            kind.label(),
            s.held.len(),
            runs.join(",")
        );
        for f in &s.filled {
            println!("  filled {}..{} by {}", f.first, f.last, f.station);
        }
        for g in &s.gaps {
            let (first, last, cause) = (g.first, g.last, g.cause.label());
            println!(
                "  gap {first}..{last} ({} frames): {cause}",
                last - first + 1
            );
        }
    }
}
