//! `aggregator-bench`: the daemon measured end to end on loopback, beside the physical floor, in
//! scenarios kept as data (`bench/scenarios/*.toml`, each with its targets).
//!
//! ```text
//! cargo build --release
//! target/release/aggregator-bench list
//! target/release/aggregator-bench run smoke          # ~15 s; bench/tests/smoke.rs runs it
//! target/release/aggregator-bench run full --json target/bench.json
//! target/release/aggregator-bench run main-64b --daemon /other/build/aggregator
//! target/release/aggregator-bench run queries --archive /work/day   # a 10 GiB day, ~15 min
//! ```
//!
//! The parent process starts each server variant as a child (`--role server --variant X`) and the
//! load client as another child (`--role client`), both this same binary, so that the server's CPU
//! time and peak RSS are its own. With `--daemon PATH` the server child runs that `aggregator`
//! binary instead of the library (`external`). Probe frames carry their send time as Unix
//! nanoseconds, the clock the processes share. See `BENCHMARKS.md` for results.
//!
//! # Layout
//! - `scenario`, `targets`: a scenario file, and its targets keyed by what they measure.
//! - `orchestrate`: the parent: the main, scale, drain, restart and churn runs.
//! - `window`: one measured window of a server under the load client.
//! - `child`: the children of a run (server variants, load client): starting, asking, stopping.
//! - `results`: what the runs measure, as data, between the runs and the report.
//! - `load`, `uplink`: the load client: saturating uplinks and the 1 ms probe.
//! - `churn`: the churn client: sources that connect once, are acknowledged in full, and leave.
//! - `throttle`: the throttle run: the durable daemon with a write limit on its archive's disk.
//! - `catalog`: the catalog run: a new catalog to many sources during saturation.
//! - `consumers`: the consumers run: followers of the archive from its start during saturation,
//!   and the `--role follow` child that runs them.
//! - `acks`: the load client's count of the daemon's ACKs, and their latency, for that run.
//! - `emergency`: that run's emergency-only sources, beside the saturating uplinks.
//! - `blkio`: the cgroup v1 write throttle that run puts the daemon under.
//! - `witness`: a writer outside that throttle timing the disk's own syncs meanwhile.
//! - `retention`: the retention run: ingest with retention deleting segments, against without.
//! - `replication`: the replication run: the daemon with `[sinks.nats] ack = "replicated"` and
//!   `"local"`, beside a plain JetStream publisher (`publisher`), on a `nats_cluster` of
//!   `nats-server` processes; `replication_report`, its tables and target.
//! - `daemon_config`: the daemon config files the retention and replication runs write.
//! - `queries`: the queries run: an archive of a day asked by `query-bench`, and judged.
//! - `sweep`: the shard sweep: the daemon variants at each `runtime.shards`, interleaved rounds.
//! - `page_cache`: how fast the machine takes new pages into its page cache, and the ballast that
//!   keeps it full for the replication run's windows (`fill_page_cache`).
//! - `diskstat`: a disk's I/O counters over a window (the retention run's archive disk).
//! - `durable`: the durable floor: the archive's filesystem's sequential writes with `fsync`.
//! - `watch`: the `watched` variant's dashboard and `/feed` subscribers.
//! - `server`: the server role: control over stdin, SIGTERM, the final report.
//! - `serving`: what the server variants share with the role.
//! - `floor`, `daemon`, `external`: the server variants (the last, a daemon binary's process).
//! - `control`: the messages between processes and the shared measurements.
//! - `summary`, `report`: medians, ratios, targets, the table and the JSON summary.
//! - `shard_report`: the sweep's table, the durable floor and the sweep's targets.
//! - `plot`: the sweep's plot, an SVG written by hand.

mod acks;
mod blkio;
mod catalog;
mod child;
mod churn;
mod consumers;
mod control;
mod daemon;
mod daemon_config;
mod diskstat;
mod durable;
mod emergency;
mod external;
mod far;
mod floor;
mod load;
mod nats_cluster;
mod orchestrate;
mod page_cache;
mod plot;
mod publisher;
mod queries;
mod replication;
mod replication_report;
mod report;
mod restart;
mod results;
mod retention;
mod scenario;
mod server;
mod serving;
mod shard_report;
mod stream_check;
mod summary;
mod sweep;
mod targets;
mod throttle;
mod uplink;
mod watch;
mod window;
mod witness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::{Deserialize, Serialize};

use crate::external::External;
use crate::scenario::Scenario;

/// Which server a measurement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Decode the frames and discard them: the physical limit.
    Floor,
    /// The real `aggregator::Daemon`, default config: with its durable segment archive.
    Daemon,
    /// The daemon with `archive.kind = "count"`: the pipeline alone, without the disk.
    Pipeline,
    /// `daemon`, watched: its monitor served to a dashboard (`/stats` every second, the emergencies
    /// from `/feed`) and four `/feed` subscribers taking every frame, in a process of their own.
    Watched,
}

impl Variant {
    /// Whether this variant is the real daemon (with or without its disk).
    pub fn is_daemon(self) -> bool {
        matches!(self, Variant::Daemon | Variant::Pipeline | Variant::Watched)
    }

    pub fn name(self) -> &'static str {
        match self {
            Variant::Floor => "floor",
            Variant::Daemon => "daemon",
            Variant::Pipeline => "pipeline",
            Variant::Watched => "watched",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Role {
    /// Run the benchmark (the default).
    Bench,
    /// Internal: one server variant, driven by the parent over stdin.
    Server,
    /// Internal: the load client.
    Client,
    /// Internal: the churn run's client.
    Churn,
    /// Internal: the restart run's recovery of `--archive-dir`.
    Recover,
    /// Internal: the `watched` variant's dashboard and `/feed` subscribers, on the monitor at
    /// `--addr`.
    Watch,
    /// Internal: the consumers run's followers of `--addr`, `--connections` of them.
    Follow,
    /// Internal: the catalog run's `--connections` sources on `--addr`, and its publication
    /// through the monitor at `--monitor`.
    Catalog,
}

/// End-to-end benchmarks of the telemetry aggregator on loopback: scenarios from
/// `bench/scenarios/*.toml`, each with its targets.
#[derive(Debug, Parser)]
#[command(name = "aggregator-bench", args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,

    // The children's arguments: this binary runs its own servers and clients as children.
    #[arg(long, value_enum, default_value = "bench", hide = true)]
    role: Role,
    #[arg(long, value_enum, hide = true)]
    variant: Option<Variant>,
    #[arg(long, hide = true)]
    addr: Option<SocketAddr>,
    #[arg(long, hide = true)]
    monitor: Option<SocketAddr>,
    #[arg(long, hide = true)]
    payload: Option<usize>,
    /// What the load client's frames' payloads hold.
    #[arg(long, hide = true, value_enum, default_value = "constant")]
    fill: control::Fill,
    #[arg(long, hide = true, default_value_t = 48)]
    connections: usize,
    #[arg(long, hide = true)]
    churn: Option<usize>,
    #[arg(long, hide = true)]
    max_connections: Option<usize>,
    #[arg(long, hide = true, default_value_t = 600)]
    limit_secs: u64,
    #[arg(long, hide = true)]
    archive_dir: Option<PathBuf>,
    /// The load client reads the daemon's ACKs and answers `START` and `END` with them.
    #[arg(long, hide = true)]
    acks: bool,
    /// The load client also runs this many emergency-only sources, and counts their ACKs apart.
    #[arg(long, hide = true, default_value_t = 0)]
    emergency_only: usize,
    /// A daemon server variant runs with `runtime.shards` set to this (the shard sweep).
    #[arg(long, hide = true)]
    runtime_shards: Option<usize>,
    #[arg(long, hide = true)]
    daemon_config: Option<PathBuf>,
    #[arg(long, hide = true)]
    daemon: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a scenario: a name from `bench/scenarios/` or a path to a .toml file.
    Run(RunArgs),
    /// List the scenarios in `bench/scenarios/`.
    List,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    scenario: String,
    /// Run the daemon variants as this `aggregator` binary (a build of any commit) instead of the
    /// library this benchmark was built with: to compare two builds, interleaved.
    #[arg(long, value_name = "PATH")]
    daemon: Option<PathBuf>,
    /// Run the daemon variants with this aggregator.toml instead of the default config (the
    /// harness still sets the listeners, the archive's directory and, for `pipeline`, its kind).
    #[arg(long, value_name = "FILE")]
    daemon_config: Option<PathBuf>,
    /// Also write the summary, with every run, as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The queries run's archive of a day: made there by bench/random-archive.py when the
    /// directory is empty or missing, used again when an earlier run made it.
    #[arg(long, value_name = "DIR", default_value = "target/bench-day")]
    archive: PathBuf,
    /// Where the shard sweep's plot (SVG) goes [default: shards.svg beside --json, else
    /// target/shards.svg].
    #[arg(long, value_name = "FILE")]
    plot: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limit = Duration::from_secs(cli.limit_secs);
    match cli.role {
        Role::Server => serve(cli, limit),
        Role::Client => {
            let (Some(addr), Some(payload)) = (cli.addr, cli.payload) else {
                eprintln!("aggregator-bench: --role client needs --addr and --payload");
                return ExitCode::from(2);
            };
            let (connections, fill, acks) = (cli.connections, cli.fill, cli.acks);
            let emergency_only = cli.emergency_only;
            load::run(limit, |commands| {
                load::load(
                    addr,
                    connections,
                    payload,
                    fill,
                    acks,
                    emergency_only,
                    commands,
                )
            })
        }
        Role::Churn => match (cli.addr, cli.churn) {
            (Some(addr), Some(sources)) => load::run(limit, |_| churn::churn(addr, sources)),
            _ => {
                eprintln!("aggregator-bench: --role churn needs --addr and --churn");
                ExitCode::from(2)
            }
        },
        Role::Watch => match cli.addr {
            Some(monitor) => load::run(limit, |commands| watch::watch(monitor, commands)),
            None => {
                eprintln!("aggregator-bench: --role watch needs --addr");
                ExitCode::from(2)
            }
        },
        Role::Catalog => match (cli.addr, cli.monitor) {
            (Some(addr), Some(monitor)) => {
                load::run(limit, |_| catalog::catalog(addr, monitor, cli.connections))
            }
            _ => {
                eprintln!("aggregator-bench: --role catalog needs --addr and --monitor");
                ExitCode::from(2)
            }
        },
        Role::Follow => match cli.addr {
            Some(addr) => load::run(limit, |commands| {
                consumers::follow(addr, cli.connections, commands)
            }),
            None => {
                eprintln!("aggregator-bench: --role follow needs --addr");
                ExitCode::from(2)
            }
        },
        Role::Recover => match &cli.archive_dir {
            Some(dir) => restart::recover(dir),
            None => {
                eprintln!("aggregator-bench: --role recover needs --archive-dir");
                ExitCode::from(2)
            }
        },
        Role::Bench => match cli.command {
            Some(Command::Run(args)) => run(args),
            Some(Command::List) | None => list(),
        },
    }
}

/// The server role: the variant asked for, with the daemon's config (`--daemon-config`, else the
/// defaults) and `--runtime-shards`, in this process or as `--daemon`'s binary.
fn serve(cli: Cli, limit: Duration) -> ExitCode {
    let Some(variant) = cli.variant else {
        eprintln!("aggregator-bench: --role server needs --variant");
        return ExitCode::from(2);
    };
    let mut config = match load_daemon_config(cli.daemon_config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("aggregator-bench: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(shards) = cli.runtime_shards {
        config.runtime.shards = shards;
    }
    let external = cli.daemon.map(|binary| External {
        binary,
        config: cli.daemon_config,
        shards: cli.runtime_shards,
    });
    server::run(variant, config, cli.max_connections, external, limit)
}

/// Where the sweep's plot goes: --plot, else `shards.svg` beside the JSON summary, else
/// `target/shards.svg`.
fn plot_path(args: &RunArgs) -> PathBuf {
    match (&args.plot, &args.json) {
        (Some(path), _) => path.clone(),
        (None, Some(json)) => json.with_file_name("shards.svg"),
        (None, None) => PathBuf::from("target").join("shards.svg"),
    }
}

/// The daemon variants' config: the file given, or the defaults.
fn load_daemon_config(path: Option<&std::path::Path>) -> Result<aggregator::Config, String> {
    match path {
        Some(path) => aggregator::Config::load(path).map_err(|e| e.to_string()),
        None => Ok(aggregator::Config::default()),
    }
}

fn list() -> ExitCode {
    match scenario::list() {
        Ok(scenarios) => {
            for (name, description) in scenarios {
                println!("{name:<16} {description}");
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("aggregator-bench: {err}");
            ExitCode::from(2)
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    let scenario = match Scenario::load(&args.scenario) {
        Ok(scenario) => scenario,
        Err(err) => {
            eprintln!("aggregator-bench: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(queries) = &scenario.queries {
        return queries::run(
            queries,
            &scenario.targets,
            &args.archive,
            args.json.as_deref(),
        );
    }
    let plan = match prepare(&args, scenario) {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("aggregator-bench: {err}");
            return ExitCode::from(2);
        }
    };
    let loadavg_before = summary::loadavg();
    let new_pages = page_cache::probe(&std::env::temp_dir());
    let command = std::iter::once("aggregator-bench".to_string())
        .chain(std::env::args().skip(1))
        .collect::<Vec<_>>()
        .join(" ");
    let measured = match orchestrate::run_plan(&plan) {
        Ok(found) => found,
        Err(err) => {
            eprintln!("aggregator-bench: {err}");
            return ExitCode::FAILURE;
        }
    };
    let machine = summary::Machine::read(loadavg_before, new_pages);
    let summary = report::summarize(command, machine, &plan, measured);
    println!("{}", report::render(&summary));
    match write(&summary, &plan, &args).and_then(|()| checked(&summary)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aggregator-bench: {err}");
            ExitCode::FAILURE
        }
    }
}

/// The scenario's plan with the daemon and config of `args`, its outputs writable, and open-file
/// room for its sources.
fn prepare(args: &RunArgs, scenario: Scenario) -> Result<results::Plan, String> {
    let config = load_daemon_config(args.daemon_config.as_deref())?;
    let daemon = match &args.daemon {
        Some(path) => Some(
            std::fs::canonicalize(path).map_err(|e| format!("--daemon {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let plan = scenario.plan(&config, args.daemon_config.clone(), Some(plot_path(args)));
    let plan = results::Plan { daemon, ..plan };
    if let Some(dir) = plan.plot.as_ref().and_then(|p| p.parent()) {
        // `target/` of a fresh checkout, for the default.
        let _ = std::fs::create_dir_all(dir);
    }
    for path in args.json.iter().chain(&plan.plot) {
        orchestrate::check_writable(path)?;
    }
    let nofile = control::raise_nofile_limit();
    let catalog_sources = plan
        .catalog
        .iter()
        .max()
        .map_or(0, |n| n + plan.connections);
    let biggest = (plan.scale.iter().copied().max().unwrap_or(0))
        .max(plan.connections)
        .max(catalog_sources);
    if (nofile as usize) < biggest + 64 {
        return Err(format!(
            "the open-file limit is {nofile}, too low for {biggest} sources; raise the hard limit (ulimit -Hn)"
        ));
    }
    Ok(plan)
}

/// Writes the plot and the JSON summary where `plan` and `args` say.
fn write(summary: &summary::Summary, plan: &results::Plan, args: &RunArgs) -> Result<(), String> {
    if let Some(path) = &plan.plot {
        let svg = plot::svg(&shard_report::chart(summary));
        std::fs::write(path, svg)
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    }
    if let Some(path) = &args.json {
        serde_json::to_string_pretty(summary)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json + "\n").map_err(|e| e.to_string()))
            .map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    }
    Ok(())
}

/// The run's checks of what was delivered: the first that failed.
fn checked(summary: &summary::Summary) -> Result<(), String> {
    if !summary.daemon_archive_complete {
        return Err("the daemon's archive did not receive every processed frame".into());
    }
    let replication = summary.replication.as_ref().filter(|r| r.skipped.is_none());
    if replication.is_some_and(|r| !r.stream_complete()) {
        return Err(
            "a replicated window's stream lacked an acknowledged frame or held one twice".into(),
        );
    }
    if let Some(churn) = (summary.churn.as_ref()).filter(|c| !c.every_frame_acknowledged()) {
        return Err(format!(
            "the churn run: {} of {} sources had every frame acknowledged ({} failed; first: {})",
            churn.client.acknowledged,
            churn.sources,
            churn.client.failed,
            churn.client.first_error.as_deref().unwrap_or("none")
        ));
    }
    if let Some(window) = (summary.consumers.iter())
        .map(|round| &round.with)
        .find(|window| !window.every_frame_followed())
    {
        return Err(format!(
            "the consumers run: a follower did not receive every archived frame: {window:?}"
        ));
    }
    if let Some(round) = (summary.retention.iter()).find(|round| !round.deleted_as_configured()) {
        return Err(format!(
            "the retention run: round {} at {} B: retention deleted {} segments in the window with it and {} in the one without (expected some, then none)",
            round.run, round.payload, round.with.deleted_segments, round.without.deleted_segments
        ));
    }
    Ok(())
}
