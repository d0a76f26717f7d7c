//! The queries run (`[queries]` in a scenario): asking an archive of a day as an operator and an
//! analyst do, and the daemon's ingest beside that. The measuring is `query-bench`'s, a binary of
//! its own that also runs alone; this run makes the archive where the directory holds none, runs
//! `query-bench` with the scenario's figures and judges what it measured by the scenario's targets.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use serde::{Deserialize, Serialize};

use crate::scenario::QueriesScenario;
use crate::targets::{self, Goals, Target};

/// The file in the archive's directory that says how the archive was made: a directory made for
/// other figures is refused rather than measured as if it were this scenario's.
const MADE: &str = "bench-archive.json";

/// What `query-bench --json` writes (the fields judged here).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Figures {
    pub index_bytes: u64,
    pub ranges: Vec<RangeFigures>,
    pub completeness_sources: usize,
    pub completeness_cold_ms: f64,
    pub completeness_warm_ms: f64,
    pub passes: usize,
    pub passes_cold_ms: f64,
    pub passes_warm_ms: f64,
    pub ingest_alone: Option<f64>,
    pub ingest_beside: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RangeFigures {
    pub first_ms: f64,
    pub all_ms: f64,
    pub frames: u64,
    pub answer_bytes: u64,
    pub read_bytes: u64,
}

/// The run's summary, as `--json` writes it.
#[derive(Debug, Serialize)]
struct Summary {
    command: String,
    archive: PathBuf,
    queries: QueriesScenario,
    figures: Figures,
    targets: Vec<Target>,
}

/// Runs the queries scenario on the archive at `archive`; writes the summary to `json` if given.
pub fn run(
    scenario: &QueriesScenario,
    goals: &Goals,
    archive: &Path,
    json: Option<&Path>,
) -> ExitCode {
    match measure(scenario, archive) {
        Ok(figures) => {
            let targets = judge(goals, &figures);
            println!(
                "\nTargets (the scenario's):\n\n{}",
                targets::table(&targets)
            );
            let summary = Summary {
                command: std::env::args().collect::<Vec<_>>().join(" "),
                archive: archive.to_path_buf(),
                queries: *scenario,
                figures,
                targets,
            };
            let written = json.map(|path| {
                serde_json::to_string_pretty(&summary)
                    .map_err(|e| e.to_string())
                    .and_then(|text| std::fs::write(path, text + "\n").map_err(|e| e.to_string()))
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            });
            match written {
                Some(Err(err)) => {
                    eprintln!("aggregator-bench: {err}");
                    ExitCode::FAILURE
                }
                _ => ExitCode::SUCCESS,
            }
        }
        Err(err) => {
            eprintln!("aggregator-bench: the queries run: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Makes the archive if needed, then runs `query-bench` on it and reads its figures.
fn measure(scenario: &QueriesScenario, archive: &Path) -> Result<Figures, String> {
    make_archive(scenario, archive)?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let query_bench = exe.with_file_name("query-bench");
    if !query_bench.is_file() {
        return Err(format!(
            "{} is missing: cargo build --release --bins",
            query_bench.display()
        ));
    }
    let json = std::env::temp_dir().join(format!("query-bench-{}.json", std::process::id()));
    let status = Command::new(&query_bench)
        .arg("--archive")
        .arg(archive)
        .args(["--shards", &scenario.shards.to_string()])
        .args(["--sources", &scenario.sources.to_string()])
        .args(["--queries", &scenario.queries.to_string()])
        .args(["--rounds", &scenario.rounds.to_string()])
        .args(["--ingest-s", &scenario.ingest_s.to_string()])
        .args(["--export-nice", &scenario.export_nice.to_string()])
        .args(["--export-ionice", &scenario.export_ionice.to_string()])
        .arg("--json")
        .arg(&json)
        .status()
        .map_err(|e| format!("cannot run {}: {e}", query_bench.display()))?;
    if !status.success() {
        return Err(format!("query-bench exited with {status}"));
    }
    let text = std::fs::read_to_string(&json)
        .map_err(|e| format!("query-bench wrote no figures to {}: {e}", json.display()))?;
    let _ = std::fs::remove_file(&json);
    serde_json::from_str(&text).map_err(|e| format!("query-bench's figures: {e}"))
}

/// `bench/random-archive.py` writes the scenario's day into `archive` when it holds nothing; an
/// archive made before for the same figures is used again, one made for others is refused.
fn make_archive(scenario: &QueriesScenario, archive: &Path) -> Result<(), String> {
    let made = serde_json::to_string(scenario).map_err(|e| e.to_string())?;
    let marker = archive.join(MADE);
    let empty = std::fs::read_dir(archive).map_or(true, |mut entries| entries.next().is_none());
    if !empty {
        return match std::fs::read_to_string(&marker) {
            Ok(before) if archive_figures(&before) == archive_figures(&made) => {
                println!("queries: the archive in {} again", archive.display());
                Ok(())
            }
            _ => Err(format!(
                "{} holds something other than this scenario's archive (its {MADE} differs or is \
                 missing): give another --archive, or remove it",
                archive.display()
            )),
        };
    }
    println!(
        "queries: writing an archive of {} MiB into {} (bench/random-archive.py)",
        scenario.archive_mib,
        archive.display()
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("random-archive.py");
    let status = Command::new("python3")
        .arg(&script)
        .arg(archive)
        .args(["--mib", &scenario.archive_mib.to_string()])
        .args(["--payload", &scenario.payload.to_string()])
        .args(["--shards", &scenario.shards.to_string()])
        .args(["--sources", &scenario.sources.to_string()])
        .args(["--stations", &scenario.stations.to_string()])
        .args(["--span", "86400"])
        .status()
        .map_err(|e| format!("cannot run python3 {}: {e}", script.display()))?;
    if !status.success() {
        return Err(format!("{} exited with {status}", script.display()));
    }
    std::fs::write(&marker, made).map_err(|e| format!("cannot write {}: {e}", marker.display()))
}

/// The figures of a scenario that make its archive, from its JSON: the rest may differ.
fn archive_figures(json: &str) -> Option<[u64; 5]> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let field = |name: &str| value[name].as_u64();
    Some([
        field("archive_mib")?,
        field("payload")?,
        field("shards")?,
        field("sources")?,
        field("stations").unwrap_or(0),
    ])
}

/// The scenario's targets, judged on the figures.
fn judge(goals: &Goals, figures: &Figures) -> Vec<Target> {
    let slowest = figures
        .ranges
        .iter()
        .map(|r| r.first_ms)
        .fold(f64::NAN, f64::max);
    let read = figures
        .ranges
        .iter()
        .map(|r| r.read_bytes as f64 / (2 * r.answer_bytes + figures.index_bytes) as f64)
        .fold(f64::NAN, f64::max);
    let ingest = match (figures.ingest_alone, figures.ingest_beside) {
        (Some(alone), Some(beside)) => beside / alone,
        _ => f64::NAN,
    };
    [
        goals.judge(
            "query_first_frame_ms",
            "15 min of one source: first frame, slowest".into(),
            slowest,
            " ms",
        ),
        goals.judge(
            "query_read_over_allowance",
            "15 min of one source: bytes read / (2 x answer + indexes), largest".into(),
            read,
            "",
        ),
        goals.judge(
            "completeness_day_ms",
            format!(
                "completeness of the day, {} sources, evicted",
                figures.completeness_sources
            ),
            figures.completeness_cold_ms,
            " ms",
        ),
        goals.judge(
            "passes_day_ms",
            format!("passes of the day, {} passes, evicted", figures.passes),
            figures.passes_cold_ms,
            " ms",
        ),
        goals.judge(
            "ingest_beside_queries_over_alone",
            "ingest beside range queries and a Parquet export / alone".into(),
            ingest,
            "x",
        ),
    ]
    .into_iter()
    .flatten()
    .collect()
}
