//! The shard sweep (`--shards 1,2,4,8,16`): the durable daemon and the pipeline (no disk) with
//! `runtime.shards` set to each count, beside the floor, at each payload, with the main runs'
//! saturating sources; and the durable floor, once a round.
//!
//! The rounds are interleaved: every shard count once (1, 2, 4, ...), then every one again, so
//! that the machine's drift over the sweep (a virtual machine's disk and CPU may change speed
//! within minutes) spreads over every count instead of falling on the last ones. The floor is
//! measured in the same rounds, so that each count's ratio to it compares windows minutes apart
//! at most. The load client is the main runs' one: its runtime has a thread per core, whatever
//! the machine.

use std::path::Path;

use crate::results::{DurableFloor, Plan, RunResult};
use crate::window::{self, Window};
use crate::{durable, Variant};

/// The section of the sweep's windows in the results.
pub const SECTION: &str = "shards";
/// The variants the sweep runs at each shard count.
pub const SWEPT: [Variant; 2] = [Variant::Daemon, Variant::Pipeline];

/// One step of the sweep, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The durable floor, at the start of round `run`.
    DurableFloor { run: usize },
    /// A measured window.
    Window(Window),
}

/// What the sweep measured.
pub struct Swept {
    pub runs: Vec<RunResult>,
    pub durable_floor: Vec<DurableFloor>,
}

/// The sweep's steps: `runs` rounds, each the durable floor (when measured), then per payload
/// the floor and each shard count's [`SWEPT`] variants.
pub fn steps(plan: &Plan) -> Vec<Step> {
    let mut steps = Vec::new();
    if plan.shards.is_empty() || plan.payloads.is_empty() {
        return steps;
    }
    let window = |run, variant, payload, shards| {
        Step::Window(Window {
            section: SECTION,
            variant,
            payload,
            sources: plan.connections,
            run,
            shards,
        })
    };
    for run in 1..=plan.runs {
        if plan.durable_floor_bytes.is_some() {
            steps.push(Step::DurableFloor { run });
        }
        for &payload in &plan.payloads {
            steps.push(window(run, Variant::Floor, payload, None));
            for &shards in &plan.shards {
                for variant in SWEPT {
                    steps.push(window(run, variant, payload, Some(shards)));
                }
            }
        }
    }
    steps
}

/// Runs the sweep's [`steps`].
pub fn run(exe: &Path, plan: &Plan) -> Result<Swept, String> {
    let mut swept = Swept {
        runs: Vec::new(),
        durable_floor: Vec::new(),
    };
    for step in steps(plan) {
        match step {
            Step::DurableFloor { run } => {
                eprintln!("[bench] shards: durable floor, run {run}/{}", plan.runs);
                let most = plan.durable_floor_bytes.unwrap_or_default();
                swept.durable_floor.push(measure_durable_floor(most)?);
            }
            Step::Window(window) => {
                let shards = window
                    .shards
                    .map_or(String::new(), |n| format!(", {n} shards"));
                eprintln!(
                    "[bench] shards: {} {} B{shards}, run {}/{}",
                    window.variant.name(),
                    window.payload,
                    window.run,
                    plan.runs
                );
                swept.runs.push(window::measure(exe, plan, window)?);
            }
        }
    }
    Ok(swept)
}

/// The durable floor on the filesystem of the daemon variants' archives.
pub fn measure_durable_floor(most: u64) -> Result<DurableFloor, String> {
    let dir = crate::control::archive_dir(std::process::id())
        .parent()
        .map_or_else(std::env::temp_dir, Path::to_path_buf);
    durable::measure(&dir, most)
        .map_err(|e| format!("cannot measure the durable floor in {}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each step as `run:what`, `what` being `disk`, `floor@P` or `d|p@P/S`.
    fn names(steps: &[Step]) -> Vec<String> {
        steps
            .iter()
            .map(|step| match step {
                Step::DurableFloor { run } => format!("{run}:disk"),
                Step::Window(w) => {
                    let at = format!(
                        "{}{}",
                        w.payload,
                        w.shards.map_or(String::new(), |s| format!("/{s}"))
                    );
                    let v = match w.variant {
                        Variant::Daemon => "d",
                        Variant::Pipeline => "p",
                        other => other.name(),
                    };
                    assert_eq!((w.section, w.sources), (SECTION, 48));
                    format!("{}:{v}@{at}", w.run)
                }
            })
            .collect()
    }

    #[test]
    fn rounds_interleave_every_shard_count_before_any_repeats() {
        let steps = steps(&Plan::for_tests(2, vec![1, 2, 4], vec![64, 1024]));
        let expected = [
            "1:disk",
            "1:floor@64",
            "1:d@64/1",
            "1:p@64/1",
            "1:d@64/2",
            "1:p@64/2",
            "1:d@64/4",
            "1:p@64/4",
            "1:floor@1024",
            "1:d@1024/1",
            "1:p@1024/1",
            "1:d@1024/2",
            "1:p@1024/2",
            "1:d@1024/4",
            "1:p@1024/4",
            "2:disk",
            "2:floor@64",
            "2:d@64/1",
            "2:p@64/1",
            "2:d@64/2",
            "2:p@64/2",
            "2:d@64/4",
            "2:p@64/4",
            "2:floor@1024",
            "2:d@1024/1",
            "2:p@1024/1",
            "2:d@1024/2",
            "2:p@1024/2",
            "2:d@1024/4",
            "2:p@1024/4",
        ];
        assert_eq!(names(&steps), expected);
    }

    #[test]
    fn no_shard_counts_no_sweep_and_no_durable_floor_without_its_size() {
        assert!(steps(&Plan::for_tests(3, Vec::new(), vec![64])).is_empty());
        let mut without_disk = Plan::for_tests(1, vec![1, 2], vec![64]);
        without_disk.durable_floor_bytes = None;
        assert_eq!(
            names(&steps(&without_disk)),
            ["1:floor@64", "1:d@64/1", "1:p@64/1", "1:d@64/2", "1:p@64/2"]
        );
    }
}
