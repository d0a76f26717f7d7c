//! `aggregator-bench`: throughput, emergency latency, CPU, memory, scale and drain of the daemon,
//! measured side by side with the physical floor and the brief's reference design; the memory the
//! daemon keeps for sources that have come and gone; and its acknowledgements on a throttled disk.
//!
//! ```text
//! cargo run --release --bin aggregator-bench -- --runs 3 --json target/bench.json
//! cargo run --release --bin aggregator-bench -- --smoke      # ~15 s, what tests/bench_smoke.rs runs
//! cargo run --release --bin aggregator-bench -- --churn-only  # only the run of sources that leave
//! sudo target/release/aggregator-bench --throttle-only         # only the throttled disk (root)
//! cargo run --release --bin aggregator-bench -- --consumers-only  # only followers during saturation
//! cargo run --release --bin aggregator-bench -- --catalog-only    # only a catalog's spread
//! cargo run --release --bin aggregator-bench -- --shards-only --shards 1,2,4,8,16 \
//!     --json target/shards.json                                   # only the shard sweep
//! ```
//!
//! The parent process starts each server variant as a child (`--role server --variant X`) and the
//! load client as another child (`--role client`), both this same binary, so that the server's CPU
//! time (`getrusage`) and peak RSS (`VmHWM`) are its own. Probe frames carry their send time as
//! Unix nanoseconds, the clock the two processes share. See `BENCHMARKS.md` for results.
//!
//! # Layout
//! - `orchestrate`: the parent: measurement windows, the scale, drain, restart and churn runs.
//! - `child`: the children of a run (server variants, load client): starting, asking, stopping.
//! - `results`: what the runs measure, as data, between the runs and the report.
//! - `load`: the load client: saturating uplinks and the 1 ms probe.
//! - `churn`: the churn client: sources that connect once, are acknowledged in full, and leave.
//! - `throttle`: the throttle run: the durable daemon with a write limit on its archive's disk.
//! - `catalog`: the catalog run: a new catalog to many sources during saturation.
//! - `consumers`: the consumers run: followers of the archive from its start during saturation,
//!   and the `--role follow` child that runs them.
//! - `acks`: the load client's count of the daemon's ACKs, and their latency, for that run.
//! - `emergency`: that run's emergency-only sources, beside the saturating uplinks.
//! - `blkio`: the cgroup v1 write throttle that run puts the daemon under.
//! - `witness`: a writer outside that throttle timing the disk's own syncs meanwhile.
//! - `sweep`: the shard sweep: the daemon variants at each `runtime.shards`, interleaved rounds.
//! - `durable`: the durable floor: the archive's filesystem's sequential writes with `fsync`.
//! - `watch`: the `watched` variant's dashboard and `/feed` subscribers.
//! - `server`: the server role: control over stdin, SIGTERM, the final report.
//! - `serving`: what the server variants share with the role.
//! - `floor`, `reference`, `daemon`: the three server variants.
//! - `control`: the messages between processes and the shared measurements.
//! - `report`: medians, ratios, targets, the table and the JSON summary.
//! - `shard_report`: the sweep's table, the durable floor and issue 26's targets in the report.
//! - `plot`: the sweep's plot, an SVG written by hand.

mod acks;
mod blkio;
mod catalog;
mod child;
mod churn;
mod consumers;
mod control;
mod daemon;
mod durable;
mod emergency;
mod floor;
mod load;
mod orchestrate;
mod plot;
mod reference;
mod report;
mod restart;
mod results;
mod server;
mod serving;
mod shard_report;
mod sweep;
mod throttle;
mod watch;
mod witness;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use serde::{Deserialize, Serialize};

/// Which server a measurement runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Variant {
    /// Decode the frames and discard them: the physical limit.
    Floor,
    /// The brief's reference design, fed by the same TCP connections.
    Reference,
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
            Variant::Reference => "reference",
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

/// Benchmark of the telemetry aggregator against the floor and the reference design, on loopback.
#[derive(Debug, Parser)]
#[command(name = "aggregator-bench")]
struct Cli {
    /// Runs per variant and payload; the report gives medians with min-max.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// About a second per variant, small scale counts: checks that the harness works.
    #[arg(long)]
    smoke: bool,
    /// Measurement window per variant, and of the throttle run, in seconds [default: 3, the
    /// throttle run 10; with --smoke 0.7 and 3]
    #[arg(long)]
    duration: Option<f64>,
    /// Warm-up before each window, in seconds.
    #[arg(long)]
    warmup: Option<f64>,
    /// Saturating uplink connections of the main runs.
    #[arg(long, default_value_t = 48)]
    connections: usize,
    /// Payload sizes, in bytes.
    #[arg(long, value_delimiter = ',')]
    payloads: Option<Vec<usize>>,
    /// Variants of the main runs.
    #[arg(long, value_delimiter = ',')]
    variants: Option<Vec<Variant>>,
    /// Source counts of the scale runs (64 B).
    #[arg(long, value_delimiter = ',')]
    scale: Option<Vec<usize>>,
    /// Variants of the scale runs: `daemon`, `pipeline` or both.
    #[arg(long, value_delimiter = ',', default_value = "daemon,pipeline")]
    scale_variants: Vec<Variant>,
    /// Skip the scale runs.
    #[arg(long)]
    no_scale: bool,
    /// Skip the SIGTERM-under-load run.
    #[arg(long)]
    no_drain: bool,
    /// Skip the restart run (recovery from a full newest segment).
    #[arg(long)]
    no_restart: bool,
    /// Sources of the churn run: each connects once, sends 1,000 frames (20 % emergencies), waits
    /// for their acknowledgement and leaves; the durable daemon's memory is read before and after
    /// [default: 100000; 300 with --smoke]
    #[arg(long)]
    churn: Option<usize>,
    /// Skip the churn run.
    #[arg(long, conflicts_with = "churn_only")]
    no_churn: bool,
    /// Run only the churn run.
    #[arg(long)]
    churn_only: bool,
    /// The throttle run: the durable daemon with its writes to the archive's disk limited to this
    /// many MiB/s (a cgroup v1 blkio throttle: needs root, else the run is skipped and says why),
    /// the main runs' uplinks saturating with 1 KiB frames and four sources sending only
    /// emergency frames beside them; ACK throughput and latency, the emergency-only sources' ACK
    /// latency, then a SIGTERM [default: 50; with --smoke, only if given]
    #[arg(long, value_name = "MIB_PER_S")]
    throttle: Option<f64>,
    /// Skip the throttle run.
    #[arg(long, conflicts_with_all = ["throttle_only", "throttle"])]
    no_throttle: bool,
    /// Run only the throttle run.
    #[arg(long, conflicts_with = "churn_only")]
    throttle_only: bool,
    /// The consumers run: four followers of the durable daemon's archive from its start while the
    /// main runs' uplinks saturate it (64 B), against a daemon without them, in `--runs` rounds;
    /// ingest with them over without, and whether each received every frame the archive stored.
    /// Run only that (with --smoke, the only way to run it).
    #[arg(long, conflicts_with_all = ["churn_only", "throttle_only"])]
    consumers_only: bool,
    /// Skip the consumers run.
    #[arg(long, conflicts_with = "consumers_only")]
    no_consumers: bool,
    /// The catalog run: sources (besides the main runs' saturating uplinks) that a new 64 KiB
    /// catalog is published to, one spread per count; the time until each holds it
    /// [default: 48,10000; 48,300 with --smoke]
    #[arg(long, value_delimiter = ',')]
    catalog: Option<Vec<usize>>,
    /// Run only the catalog run.
    #[arg(long, conflicts_with_all = ["churn_only", "throttle_only", "consumers_only"])]
    catalog_only: bool,
    /// Skip the catalog run.
    #[arg(long, conflicts_with_all = ["catalog_only", "catalog"])]
    no_catalog: bool,
    /// The shard sweep: the durable daemon and the pipeline (no disk) with `runtime.shards` set
    /// to each count (for example 1,2,4,8,16), at each payload, beside the floor and the durable
    /// floor, in --runs interleaved rounds; a table, and a plot (--plot). None: no sweep.
    #[arg(long, value_delimiter = ',', value_name = "COUNTS")]
    shards: Option<Vec<usize>>,
    /// Run only the shard sweep [--shards default: 1,2,4,8,16].
    #[arg(long, conflicts_with_all = ["churn_only", "throttle_only", "consumers_only", "catalog_only"])]
    shards_only: bool,
    /// The most MiB one measurement of the durable floor writes (less where the archive's
    /// filesystem has under eight times that free) [default: 1024; 64 with --smoke]
    #[arg(long, value_name = "MIB")]
    durable_floor_mib: Option<u64>,
    /// Where the shard sweep's plot (SVG) goes [default: shards.svg beside --json, else
    /// target/shards.svg].
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Also write the summary, with every run, as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Run the daemon variants with this aggregator.toml instead of the default config, to measure
    /// a setting (the harness still sets the listeners, the archive's directory, and for `pipeline`
    /// the archive's kind).
    #[arg(long)]
    daemon_config: Option<PathBuf>,

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
}

/// The throttle run's write limit when none is given, in MiB/s: the issue's 50 MiB/s.
const DEFAULT_THROTTLE: f64 = 50.0;
/// The shard sweep's counts with --shards-only and no --shards.
const DEFAULT_SHARDS: [usize; 5] = [1, 2, 4, 8, 16];
/// The most one measurement of the durable floor writes: 1 GiB, as `dd bs=1M count=1024`; with
/// --smoke 64 MiB.
const DURABLE_FLOOR_BYTES: u64 = 1 << 30;
const DURABLE_FLOOR_SMOKE_BYTES: u64 = 64 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let limit = Duration::from_secs(cli.limit_secs);
    match cli.role {
        Role::Server => {
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
            server::run(variant, config, cli.max_connections, limit)
        }
        Role::Client => {
            let (Some(addr), Some(payload)) = (cli.addr, cli.payload) else {
                eprintln!("aggregator-bench: --role client needs --addr and --payload");
                return ExitCode::from(2);
            };
            load::run(limit, |commands| {
                let emergency_only = cli.emergency_only;
                load::load(
                    addr,
                    cli.connections,
                    payload,
                    cli.acks,
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
        Role::Bench => bench(cli),
    }
}

/// Where the sweep's plot goes: --plot, else `shards.svg` beside the JSON summary, else
/// `target/shards.svg`.
fn plot_path(cli: &Cli) -> PathBuf {
    match (&cli.plot, &cli.json) {
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

fn bench(cli: Cli) -> ExitCode {
    let daemon_config = match load_daemon_config(cli.daemon_config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("aggregator-bench: {err}");
            return ExitCode::from(2);
        }
    };
    if let Some(v) = cli.scale_variants.iter().find(|v| !v.is_daemon()) {
        eprintln!(
            "aggregator-bench: --scale-variants: {} has no scale run (daemon or pipeline)",
            v.name()
        );
        return ExitCode::from(2);
    }
    if let Some(mib) = cli.throttle.filter(|mib| !(*mib > 0.0 && mib.is_finite())) {
        eprintln!("aggregator-bench: --throttle {mib}: give a write limit above 0 MiB/s");
        return ExitCode::from(2);
    }
    let shards = match &cli.shards {
        _ if (cli.churn_only || cli.throttle_only || cli.consumers_only || cli.catalog_only) => {
            Vec::new()
        }
        Some(shards) => shards.clone(),
        None if cli.shards_only => DEFAULT_SHARDS.to_vec(),
        None => Vec::new(),
    };
    let most = aggregator::domain::shard::MAX_SHARDS;
    if let Some(n) = shards.iter().find(|&&n| n == 0 || n > most) {
        eprintln!("aggregator-bench: --shards {n}: give shard counts from 1 to {most}");
        return ExitCode::from(2);
    }
    let secs = |x: f64| Duration::from_secs_f64(x.max(0.05));
    // Only one run, and none of the others.
    let only = cli.churn_only
        || cli.throttle_only
        || cli.consumers_only
        || cli.catalog_only
        || cli.shards_only;
    // Another run alone (not the catalog run).
    let other_only = only && !cli.catalog_only;
    let plan = results::Plan {
        runs: if cli.smoke { 1 } else { cli.runs.max(1) },
        warmup: secs(cli.warmup.unwrap_or(if cli.smoke { 0.3 } else { 1.0 })),
        measure: secs(cli.duration.unwrap_or(if cli.smoke { 0.7 } else { 3.0 })),
        connections: cli.connections.max(1),
        payloads: match &cli.payloads {
            _ if only && !cli.shards_only => Vec::new(),
            Some(payloads) => payloads.clone(),
            None => vec![64, 1024],
        },
        variants: match &cli.variants {
            _ if only => Vec::new(),
            Some(variants) => variants.clone(),
            None => vec![
                Variant::Floor,
                Variant::Reference,
                Variant::Daemon,
                Variant::Watched,
                Variant::Pipeline,
            ],
        },
        scale: match &cli.scale {
            _ if cli.no_scale || only => Vec::new(),
            Some(scale) => scale.clone(),
            None if cli.smoke => vec![100, 300],
            None => vec![1_000, 10_000],
        },
        scale_variants: cli.scale_variants.clone(),
        drain: !cli.no_drain && !only,
        restart: !cli.no_restart && !only,
        churn: match cli.churn {
            _ if cli.no_churn || (other_only && !cli.churn_only) || cli.catalog_only => None,
            Some(sources) => Some(sources),
            None if cli.smoke => Some(300),
            None => Some(100_000),
        },
        stats_interval: daemon_config.dashboard.stats_interval,
        segment_bytes: daemon_config.archive.segment_bytes,
        daemon_config: cli.daemon_config.clone(),
        uplink_limit: daemon_config.uplink.max_connections,
        throttle: match cli.throttle {
            _ if cli.no_throttle
                || cli.churn_only
                || cli.consumers_only
                || cli.catalog_only
                || cli.shards_only =>
            {
                None
            }
            None if cli.smoke && !cli.throttle_only => None,
            given => Some(given.unwrap_or(DEFAULT_THROTTLE)),
        },
        // The smoke's throttle window outlasts a sync of both shards' unsynced bytes at 50 MiB/s
        // (about 1.3 s), so that it sees acknowledgements.
        throttle_window: secs(cli.duration.unwrap_or(if cli.smoke { 3.0 } else { 10.0 })),
        drain_deadline: daemon_config.shutdown.drain_deadline,
        consumers: cli.consumers_only
            || !(cli.no_consumers
                || cli.smoke
                || cli.churn_only
                || cli.throttle_only
                || cli.catalog_only
                || cli.shards_only),
        catalog: match &cli.catalog {
            _ if cli.no_catalog || other_only => Vec::new(),
            Some(counts) => counts.clone(),
            None if cli.smoke => vec![48, 300],
            None => vec![48, 10_000],
        },
        durable_floor_bytes: None,
        plot: (!shards.is_empty()).then(|| plot_path(&cli)),
        shards,
        default_shards: daemon_config.runtime.shards,
    };
    let plan = results::Plan {
        // Beside the durable daemon, wherever it runs on the main runs' load.
        durable_floor_bytes: (plan.variants.contains(&Variant::Daemon) || !plan.shards.is_empty())
            .then_some(match (cli.durable_floor_mib, cli.smoke) {
                (Some(mib), _) => mib.max(1) << 20,
                (None, true) => DURABLE_FLOOR_SMOKE_BYTES,
                (None, false) => DURABLE_FLOOR_BYTES,
            }),
        ..plan
    };
    if let Some(dir) = plan.plot.as_ref().and_then(|p| p.parent()) {
        // `target/` of a fresh checkout, for the default.
        let _ = std::fs::create_dir_all(dir);
    }
    for path in cli.json.iter().chain(&plan.plot) {
        if let Err(err) = orchestrate::check_writable(path) {
            eprintln!("aggregator-bench: {err}");
            return ExitCode::from(2);
        }
    }
    let nofile = control::raise_nofile_limit();
    let catalog_sources = plan
        .catalog
        .iter()
        .max()
        .map_or(0, |n| n + plan.connections);
    let biggest = plan
        .scale
        .iter()
        .copied()
        .max()
        .unwrap_or(0)
        .max(plan.connections)
        .max(catalog_sources);
    if (nofile as usize) < biggest + 64 {
        eprintln!(
            "aggregator-bench: the open-file limit is {nofile}, too low for {biggest} sources; raise the hard limit (ulimit -Hn)"
        );
        return ExitCode::from(2);
    }
    let loadavg_before = report::loadavg();
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
    let machine = report::Machine::read(loadavg_before);
    let summary = report::summarize(command, machine, &plan, measured);
    println!("{}", report::render(&summary));
    if let Some(path) = &plan.plot {
        let svg = plot::svg(&shard_report::chart(&summary));
        if let Err(err) = std::fs::write(path, svg) {
            eprintln!("aggregator-bench: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if let Some(path) = &cli.json {
        let written = serde_json::to_string_pretty(&summary)
            .map_err(|e| e.to_string())
            .and_then(|json| std::fs::write(path, json + "\n").map_err(|e| e.to_string()));
        if let Err(err) = written {
            eprintln!("aggregator-bench: cannot write {}: {err}", path.display());
            return ExitCode::FAILURE;
        }
    }
    if !summary.daemon_archive_complete {
        eprintln!("aggregator-bench: the daemon's archive did not receive every processed frame");
        return ExitCode::FAILURE;
    }
    if let Some(churn) = summary
        .churn
        .as_ref()
        .filter(|c| !c.every_frame_acknowledged())
    {
        eprintln!(
            "aggregator-bench: the churn run: {} of {} sources had every frame acknowledged ({} failed; first: {})",
            churn.client.acknowledged,
            churn.sources,
            churn.client.failed,
            churn.client.first_error.as_deref().unwrap_or("none")
        );
        return ExitCode::FAILURE;
    }
    if let Some(window) = summary
        .consumers
        .iter()
        .map(|round| &round.with)
        .find(|window| !window.every_frame_followed())
    {
        eprintln!(
            "aggregator-bench: the consumers run: a follower did not receive every archived frame: {window:?}"
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
