//! The retention run: saturating ingest while retention deletes segments all through the window,
//! against the same daemon without retention (issue 49).
//!
//! Retention deletes whole sealed segments on a thread of its own, and the archive's writers never
//! wait for it; so ingest with retention deleting should keep at least 0.95 of its pace without.
//! Each round measures, at each payload, two fresh durable daemons under the main runs' load: both
//! with the scenario's small segments, one with `[archive.retention] max_bytes` small enough that
//! every segment sealed soon has an older one deleted, the other without retention (its retention
//! thread still runs, and only reports). Which of the two comes first alternates from round to
//! round, so that the machine's drift falls on each as often.
//!
//! The daemon's own stats (`/stats`' `archive.retention.deleted_segments` and `deleted_bytes`, read
//! from the library's counters, or from the monitor of a `--daemon` binary) when the window opens
//! and closes say what retention deleted within it: a window with retention in which nothing was
//! deleted, or one without in which something was, fails the run. The disk under the archives is
//! read at the same instants (`diskstat`): what it wrote, discarded and flushed, with every other
//! writer of it.

use std::path::Path;

use crate::daemon_config::{self, ConfigFile};
use crate::results::{Plan, RetentionPlan, RetentionRound, RetentionWindow};
use crate::window::{self, Measurement, Window};
use crate::Variant;
use crate::{blkio, external};

/// The section of the run's windows in the results.
pub const SECTION: &str = "retention";

/// Whether round `run` (from 1) measures the daemon with retention first.
pub fn with_first(run: usize) -> bool {
    run % 2 == 0
}

/// Runs `plan.runs` rounds, each at every payload a window without retention and one with it.
pub fn run(exe: &Path, plan: &Plan) -> Result<Vec<RetentionRound>, String> {
    let Some(sizes) = plan.retention else {
        return Ok(Vec::new());
    };
    let configs = Configs::write(plan, sizes)?;
    let disk = archive_disk();
    let mut rounds = Vec::new();
    for run in 1..=plan.runs {
        for &payload in &plan.payloads {
            let with_first = with_first(run);
            let measure = |with: bool| {
                eprintln!(
                    "[bench] retention: daemon {payload} B, {} retention, run {run}/{}",
                    if with { "with" } else { "without" },
                    plan.runs
                );
                let config = if with {
                    &configs.with
                } else {
                    &configs.without
                };
                let plan = Plan {
                    daemon_config: Some(config.path().to_path_buf()),
                    ..plan.clone()
                };
                let window = Window {
                    section: SECTION,
                    variant: Variant::Daemon,
                    payload,
                    sources: plan.connections,
                    run,
                    shards: None,
                };
                window::measure_counted(exe, &plan, window, disk.as_deref()).map(retention_window)
            };
            let first = measure(with_first)?;
            let second = measure(!with_first)?;
            let (with, without) = match with_first {
                true => (first, second),
                false => (second, first),
            };
            rounds.push(RetentionRound {
                payload,
                run,
                with_first,
                without,
                with,
            });
        }
    }
    Ok(rounds)
}

/// What retention did within a measured window.
fn retention_window(m: Measurement) -> RetentionWindow {
    let retention_ns = m
        .end
        .retention_cpu_ns
        .saturating_sub(m.start.retention_cpu_ns);
    RetentionWindow {
        retention_thread_cores: retention_ns as f64 / 1e9 / m.result.window_s,
        deleted_segments: m
            .end
            .deleted_segments
            .saturating_sub(m.start.deleted_segments),
        deleted_bytes: m.end.deleted_bytes.saturating_sub(m.start.deleted_bytes),
        archive_bytes_at_end: m.end.archive_bytes,
        disk: m.disk,
        run: m.result,
    }
}

/// The disk under the daemons' archives, `MAJ:MIN`; `None`, with a warning, where it cannot be
/// found (the run goes on without the disk's figures).
fn archive_disk() -> Option<String> {
    let dir = crate::control::archive_dir(std::process::id())
        .parent()
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    blkio::disk_of(&dir)
        .inspect_err(|e| eprintln!("[bench] retention: no figures of the archive's disk: {e}"))
        .ok()
}

/// The two daemon configs of the run: the `--daemon-config` file (or the defaults) with the
/// scenario's segments, with `[archive.retention] max_bytes` and without any retention. A size the
/// daemon refuses (`max_bytes` under two segments per shard) fails the run before the first window.
struct Configs {
    with: ConfigFile,
    without: ConfigFile,
}

impl Configs {
    fn write(plan: &Plan, sizes: RetentionPlan) -> Result<Configs, String> {
        let base = daemon_config::base(plan)?;
        Ok(Configs {
            without: write_config(&base, sizes.segment_bytes, None, "without")?,
            with: write_config(&base, sizes.segment_bytes, Some(sizes.max_bytes), "with")?,
        })
    }
}

/// Writes `base` with `archive.segment_bytes` and, with `max_bytes`, an `[archive.retention]` of
/// that `max_bytes` alone (without, none at all); checks that the daemon accepts it.
fn write_config(
    base: &toml::Table,
    segment_bytes: u64,
    max_bytes: Option<u64>,
    name: &str,
) -> Result<ConfigFile, String> {
    let int = |bytes: u64| toml::Value::Integer(i64::try_from(bytes).unwrap_or(i64::MAX));
    let mut table = base.clone();
    external::set(&mut table, "archive", "segment_bytes", int(segment_bytes));
    if let Some(archive) = table.get_mut("archive").and_then(|a| a.as_table_mut()) {
        archive.remove("retention");
    }
    if let Some(max_bytes) = max_bytes {
        let retention = toml::Table::from_iter([("max_bytes".to_string(), int(max_bytes))]);
        external::set(&mut table, "archive", "retention", retention.into());
    }
    let (file, config) = ConfigFile::write(&table, SECTION, name)?;
    match config.archive.retention.max_bytes == max_bytes {
        true => Ok(file),
        false => Err(format!(
            "{}: archive.retention.max_bytes is {:?}, not {max_bytes:?}",
            file.path().display(),
            config.archive.retention.max_bytes
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_variant_measured_first_alternates_from_round_to_round() {
        let firsts: Vec<bool> = (1..=4).map(with_first).collect();
        assert_eq!(firsts, [false, true, false, true]);
    }

    #[test]
    fn the_configs_differ_only_in_retention_and_keep_the_file_s_other_keys() {
        let base: toml::Table = toml::from_str(
            "[runtime]\nshards = 1\n[archive]\nsegment_bytes = 1\n[archive.retention]\nmax_age = \"1d\"\n",
        )
        .expect("a config parses");
        let sizes = RetentionPlan {
            segment_bytes: 1 << 20,
            max_bytes: 2 << 20,
        };
        let with = write_config(
            &base,
            sizes.segment_bytes,
            Some(sizes.max_bytes),
            "test-with",
        )
        .expect("accepted");
        let without =
            write_config(&base, sizes.segment_bytes, None, "test-without").expect("accepted");
        let load = |file: &ConfigFile| aggregator::Config::load(file.path()).expect("loads");
        let (w, wo) = (load(&with), load(&without));
        assert_eq!(w.runtime.shards, 1);
        assert_eq!(w.archive.segment_bytes, 1 << 20);
        assert_eq!(wo.archive.segment_bytes, 1 << 20);
        assert_eq!(w.archive.retention.max_bytes, Some(2 << 20));
        assert_eq!(w.archive.retention.max_age, None, "only max_bytes");
        assert!(!wo.archive.retention.is_bounded(), "{:?}", wo.archive);
    }

    #[test]
    fn a_max_bytes_the_daemon_refuses_fails_before_any_window() {
        // Two shards need at least four segments.
        let base = toml::from_str("[runtime]\nshards = 2\n").expect("a config parses");
        let err = write_config(&base, 1 << 20, Some(3 << 20), "test-small").expect_err("refused");
        assert!(err.contains("archive.retention.max_bytes"), "{err}");
    }
}
