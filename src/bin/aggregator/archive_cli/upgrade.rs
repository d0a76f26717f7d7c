//! `aggregator archive upgrade`: a line per shard (its files by format version, its frames, the
//! indexes built again), one per damaged file, then `upgrade total: key=value ...` (stable for
//! scripts).

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;

use aggregator::archive::format::FORMAT_VERSION;
use aggregator::archive::tools::upgrade::{self, UpgradeReport};

use super::Subcommand;

/// Runs `aggregator archive upgrade`: what it found, and the indexes it built again (or would).
pub(super) fn run(dir: &Path, dry_run: bool) -> ExitCode {
    let tool = Subcommand("upgrade");
    let report = match upgrade::upgrade(dir, dry_run) {
        Ok(report) => report,
        Err(err) => return tool.fails(err, 2),
    };
    if let Err(status) = tool.prints(&report, print) {
        return status;
    }
    let damaged = report.shards.iter().any(|shard| !shard.damaged.is_empty());
    ExitCode::from(u8::from(damaged))
}

/// `v1=4 v5=1`, or `none`.
fn by_version(counts: &BTreeMap<u8, u64>) -> String {
    let words: Vec<String> = counts.iter().map(|(v, n)| format!("v{v}={n}")).collect();
    match words.is_empty() {
        true => "none".into(),
        false => words.join(" "),
    }
}

fn print(report: &UpgradeReport, out: &mut dyn Write) -> io::Result<()> {
    let built = if report.dry_run {
        "would build again"
    } else {
        "built again"
    };
    let mut totals = BTreeMap::new();
    for shard in &report.shards {
        writeln!(
            out,
            "shard {} {}: segments {}, journals {}, frames={}, indexes {built}: {}",
            shard.shard,
            shard.dir.display(),
            by_version(&shard.segments),
            by_version(&shard.journals),
            shard.frames,
            shard.indexes
        )?;
        for (path, reason) in &shard.damaged {
            writeln!(out, "damaged {}: {reason}", path.display())?;
        }
        for (version, count) in shard.segments.iter().chain(&shard.journals) {
            *totals.entry(*version).or_insert(0) += count;
        }
    }
    let sum = |f: fn(&upgrade::ShardUpgrade) -> u64| report.shards.iter().map(f).sum::<u64>();
    let earlier: u64 = (totals.iter())
        .filter(|(v, _)| **v < FORMAT_VERSION)
        .map(|(_, n)| n)
        .sum();
    writeln!(
        out,
        "upgrade total: dry_run={} shards={} files={} earlier_version_files={earlier} frames={} \
         indexes={} damaged={}; earlier versions are read in place, the next start appends in \
         a version {FORMAT_VERSION} segment",
        report.dry_run,
        report.shards.len(),
        totals.values().sum::<u64>(),
        sum(|s| s.frames),
        sum(|s| s.indexes),
        sum(|s| s.damaged.len() as u64),
    )
}
