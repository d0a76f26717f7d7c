//! The `aggregator` daemon binary: parses the command line, loads the config, sets up logging,
//! registers the signals, binds the listeners, and hands everything to the library.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aggregator::archive::query::completeness;
use aggregator::archive::query::export::{ExportSink, Format, ParquetSink, RowSink, WriteBehind};
use aggregator::archive::read::FrameFilter;
use aggregator::archive::read::Start;
use aggregator::archive::tools::export::Progress;
use aggregator::archive::tools::prune::{PruneLimit, PruneRun};
use aggregator::archive::tools::{self, Filter};
use aggregator::catalog::push::{push, MonitorAccess, PushError};
use aggregator::catalog::store::Store;
use aggregator::catalog::CatalogHandle;
use aggregator::config::{ConfigError, LogFormat};
use aggregator::domain::clock::ArchiveClock;
use aggregator::domain::display::unix_ns_to_rfc3339;
use aggregator::domain::frame::parse_source;
use aggregator::domain::sequence_set::SequenceSet;
use aggregator::domain::units;
use aggregator::follow::client::{self, TailOptions};
use aggregator::follow::protocol::Subscription;
use aggregator::links::LinkSockets;
use aggregator::net::descriptors;
use aggregator::net::listen;
use aggregator::ops::access::Access;
use aggregator::ops::monitor;
use aggregator::tls::client::TlsArgs;
use aggregator::tls::ServerTls;
use aggregator::{Config, Daemon, Listeners, Priority, SourceKind};
use clap::{Parser, Subcommand};
use sd_notify::NotifyState;
use tokio::net::TcpListener;
use tokio::signal::unix::{signal, Signal, SignalKind};

/// Where the daemon reads its configuration without --config: the example in the repository.
const DEFAULT_CONFIG: &str = "config/aggregator.toml";

/// Telemetry aggregation daemon: priority fan-in, backpressure, fan-out and a lossless drain.
///
/// Without a subcommand it runs the daemon; `aggregator archive ...` works on an archive directory.
#[derive(Debug, Parser)]
#[command(name = "aggregator", version, args_conflicts_with_subcommands = true)]
struct Cli {
    /// Path of the configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    config: PathBuf,
    /// Validate the configuration and exit: status 0 when valid, 2 when not.
    #[arg(long)]
    check_config: bool,
    /// Log one JSON object per line (for journald and Docker), whatever `log.format` says.
    #[arg(long)]
    log_json: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Tools for the segment-file archive (see docs/archive-tools.md).
    Archive {
        #[command(subcommand)]
        tool: ArchiveTool,
    },
    /// Catalog updates: reference data every connected source receives (docs/ingest-protocol.md).
    Catalog {
        #[command(subcommand)]
        tool: CatalogTool,
    },
    /// Print frames from a running daemon's archive as they come, like kafka-console-consumer.
    ///
    /// One line per frame: position (SHARD/SEGMENT:OFFSET:INDEX), kind:id, sequence, priority,
    /// payload length and its first bytes in hex; or one JSON object per line with --json, whose
    /// `resume` is the --from that continues after that frame in every shard. Needs
    /// `consumer.enabled` on the daemon.
    ///
    /// Exit status: 0 after --limit frames, or at the daemon's END after it drained; 1 when the
    /// daemon cannot be reached, refuses the subscription, or ends it for another reason.
    Tail(TailArgs),
}

#[derive(Debug, Subcommand)]
enum CatalogTool {
    /// Publish FILE as the next catalog version, through the monitor's `PUT /catalog`.
    ///
    /// Prints the version once the daemon has stored it. Exit status: 0 when published, 1 when
    /// the daemon refused it (the reason is printed), 2 when FILE or the daemon cannot be reached.
    Push {
        /// The catalog's contents.
        file: PathBuf,
        /// The monitor's address.
        #[arg(long, default_value = "127.0.0.1:7780")]
        addr: std::net::SocketAddr,
        /// The content type sent with it.
        #[arg(long, default_value = "text/plain")]
        content_type: String,
        /// A file holding the monitor's bearer token (`monitor.token_file`).
        #[arg(long, value_name = "FILE")]
        token_file: Option<PathBuf>,
        #[command(flatten)]
        tls: TlsArgs,
    },
}

#[derive(Debug, clap::Args)]
struct TailArgs {
    /// The daemon's follow listener (`consumer.listen`).
    #[arg(long, default_value = "127.0.0.1:7702")]
    addr: std::net::SocketAddr,
    /// Where to start: start (the oldest frame kept), now (only frames to come), or positions
    /// SHARD/SEGMENT:OFFSET:INDEX joined by commas, one per shard (in each shard the frames after
    /// its position; a shard without one from its oldest frame).
    #[arg(long, default_value = "start")]
    from: Start,
    /// Only frames of this source, KIND:ID with KIND live or replay; repeat for more.
    #[arg(long, value_name = "KIND:ID", value_parser = parse_source)]
    source: Vec<(SourceKind, u32)>,
    /// Only frames of this priority: emergency or routine.
    #[arg(long, value_parser = str::parse::<aggregator::Priority>)]
    priority: Option<Priority>,
    /// When the next frames were deleted (retention), go on at the oldest frame left after a
    /// line saying how many frames of each source were skipped, instead of ending with
    /// SegmentDeleted.
    #[arg(long)]
    from_oldest_on_gap: bool,
    /// Only frames received at or after TIME: RFC 3339 (2026-11-24T10:00:00Z) or a time ago
    /// (-15m). The reading jumps over the segments and blocks without any (by their indexes).
    #[arg(long, value_name = "TIME", value_parser = parse_time_now, allow_hyphen_values = true)]
    since: Option<u64>,
    /// Only frames received at or before TIME; exit once every shard has nothing more of them
    /// (the daemon's END `Until`).
    #[arg(long, value_name = "TIME", value_parser = parse_time_now, allow_hyphen_values = true)]
    until: Option<u64>,
    /// Exit after this many frames.
    #[arg(long, value_name = "N")]
    limit: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    tls: TlsArgs,
}

#[derive(Debug, Subcommand)]
enum ArchiveTool {
    /// Check every record's CRC and report per-source counts, gaps and duplicates.
    ///
    /// Every shard of the archive is read (DIR and its shard-KK directories); a source's
    /// sequences are checked across all of them, so one stored in two shards is a duplicate.
    ///
    /// A damaged record does not end a segment's reading: the scan resumes at the next valid
    /// record, counts everything valid, and lists each damaged byte range with the sources'
    /// sequence gaps across it.
    ///
    /// Exit status: 0 when every record is valid, 1 when a segment is torn or corrupt (or, with
    /// --strict, a source has a gap or a duplicate), 2 when the directory cannot be read.
    Verify {
        /// The archive directory.
        dir: PathBuf,
        /// Also fail (status 1) on a sequence gap or a frame stored twice.
        #[arg(long)]
        strict: bool,
    },
    /// List records, one line each, filtered by source, kind, priority and sequence.
    ///
    /// Every shard is listed, DIR's own segments first, then shard-01/, shard-02/, ... A frame's
    /// line: segment (its path inside DIR), offset, kind, source, priority, sequence, receive
    /// time (UTC), payload length and its first 16 bytes in hex.
    ///
    /// Then the frames of the emergency journals that no segment holds (after a crash, before the
    /// next start, which stores them), each on a line that names its journal
    /// (emergency-...journal, inside DIR) in the place of a segment; the filters apply to them too.
    ///
    /// Exit status: 0, or 1 when a segment is torn or corrupt (every valid record is listed, and
    /// each damaged range named on standard error), 2 when the directory cannot be read.
    Inspect {
        /// The archive directory.
        dir: PathBuf,
        #[command(flatten)]
        filter: Filter,
    },
    /// Move the damaged byte ranges of each shard's newest segment aside, so that the daemon can
    /// start.
    ///
    /// Without --quarantine it only says what it would do. With it, each damaged range is written
    /// to SHARD/quarantine/SEGMENT.at-OFFSET.damaged (SHARD: DIR, or DIR/shard-KK), and the
    /// segment rewritten without them (a temporary file, synced, then renamed over it). Older
    /// segments are never touched.
    ///
    /// Either way it says how many frames each shard's emergency journals hold that the next start
    /// stores, and in total; the journals are never touched.
    ///
    /// Exit status: 0 when every shard's newest segment is clean or was repaired, 1 when a dry run
    /// found damage, 2 when the archive cannot be read or written, is locked by a running daemon,
    /// or a segment's magic is damaged.
    Repair {
        /// The archive directory (the daemon must be stopped).
        dir: PathBuf,
        /// Do it: move the damaged bytes to each shard's quarantine/ and rewrite the segments
        /// without them.
        #[arg(long)]
        quarantine: bool,
    },
    /// Delete the oldest sealed segments, as [archive.retention] does: by time, size or age.
    ///
    /// Whole segments go, oldest first by their newest frame's received time, each shard's in
    /// index order; a shard's newest segment never does (it carries every source's resume point).
    /// What each deletion takes is recorded in the shard's RETENTION file first, so that `verify`
    /// does not call those frames missing and followers are told what they skipped.
    ///
    /// Prints a line per segment deleted, what each source keeps, and a summary line.
    ///
    /// By age (--keep-age) it refuses, and deletes nothing, when this machine's clock is behind
    /// the newest frame the archive holds, or when it would delete a segment of the daemon's last
    /// run that the run's own received times do not call that old (only the time since it
    /// stopped does): --force deletes all the same. --before trusts the time it is given.
    ///
    /// Exit status: 0 (also when nothing is old enough), 1 when it refused to trust the clock
    /// (nothing deleted), 2 when the archive cannot be read or written, or is locked by a running
    /// daemon (it takes every shard's lock, dry run or not).
    #[command(group(clap::ArgGroup::new("limit").required(true)))]
    Prune {
        /// The archive directory (the daemon must be stopped).
        dir: PathBuf,
        /// Delete the segments whose newest frame was received before this time: RFC 3339
        /// (2026-11-24T10:00:00Z) or a time ago (-30d).
        #[arg(long, group = "limit", value_name = "TIME", allow_hyphen_values = true)]
        before: Option<String>,
        /// Delete the oldest segments until the archive holds at most this on disk: bytes, or a
        /// size with a unit (400GiB).
        #[arg(long, group = "limit", value_name = "SIZE", value_parser = units::parse_bytes)]
        keep_bytes: Option<u64>,
        /// Delete the segments whose newest frame is older than this: 30d, 12h, 15m.
        #[arg(long, group = "limit", value_name = "AGE", value_parser = units::parse_duration)]
        keep_age: Option<Duration>,
        /// Only list what would be deleted.
        #[arg(long)]
        dry_run: bool,
        /// By age: delete even when this machine's clock is behind the newest frame held, or
        /// when only the time since the daemon's last run stopped makes its segments old enough
        /// (refused without it: a clock stepped forward says the same).
        #[arg(long)]
        force: bool,
    },
    /// Per source, the sequences held over a time window and the gaps between them, each with
    /// its cause: deleted by retention, or never received.
    ///
    /// Sealed segments wholly inside the window are answered from their indexes; only the blocks
    /// the window's ends cut through, and each shard's newest segment, are read. Runs on a stopped
    /// archive or beside a running daemon (read-only).
    ///
    /// What cannot be read is passed over and named on standard error, the rest answered: a
    /// damaged record, a segment missing that retention did not delete.
    ///
    /// Exit status: 0 (gaps or none); 1 when something was passed over; 2 when the archive cannot
    /// be read or on a usage error.
    Gaps {
        /// The archive directory.
        dir: PathBuf,
        #[command(flatten)]
        window: WindowArgs,
        /// One JSON object, as GET /archive/completeness answers.
        #[arg(long)]
        json: bool,
        /// The daemon's config: with `[[links]]` of a merge group, each APID's pass too (the
        /// stations' sources together: what each delivered, what one filled for another).
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
    },
    /// Write the frames received in a time window to a file: Parquet, CSV, NDJSON, or the raw or
    /// CCSDS payloads.
    ///
    /// Reads the files alone, through the segments' time indexes: on a stopped archive, or beside
    /// a running daemon (read-only, it takes no lock; frames stored after it began are not in
    /// the file). Rows are in archive order, each shard's frames in its order. The columns and
    /// rows: docs/archive-tools.md ("export").
    ///
    /// Exit status: 0; 1 when a damaged record was passed over (named on standard error) or the
    /// archive cannot be read part way (the file holds what came before, a Parquet file with its
    /// footer); 2 on a usage error or a DIR that is no directory.
    Export {
        /// The archive directory.
        dir: PathBuf,
        #[command(flatten)]
        window: WindowArgs,
        /// Only frames of this priority: emergency or routine.
        #[arg(long, value_parser = str::parse::<aggregator::Priority>)]
        priority: Option<Priority>,
        /// parquet, csv, ndjson, raw (each payload after its u32 length) or ccsds (the payloads
        /// back to back).
        #[arg(long, value_parser = str::parse::<Format>)]
        format: Format,
        /// The file to write; - for standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

/// The time window and sources of `archive gaps` and `archive export`.
#[derive(Debug, clap::Args)]
struct WindowArgs {
    /// Only frames received at or after TIME: RFC 3339 (2026-11-24T10:00:00Z) or a time ago
    /// (-1d); from the oldest frame without it.
    #[arg(long, value_name = "TIME", value_parser = parse_time_now, allow_hyphen_values = true)]
    from: Option<u64>,
    /// Only frames received at or before TIME; to the newest frame without it.
    #[arg(long, value_name = "TIME", value_parser = parse_time_now, allow_hyphen_values = true)]
    to: Option<u64>,
    /// Only frames of this source, KIND:ID with KIND live or replay; repeat for more.
    #[arg(long, value_name = "KIND:ID", value_parser = parse_source)]
    source: Vec<(SourceKind, u32)>,
}

impl WindowArgs {
    /// The filter of these frames; the reason, when --from is after --to.
    fn filter(self, priority: Option<Priority>) -> Result<FrameFilter, &'static str> {
        if self.from.zip(self.to).is_some_and(|(from, to)| from > to) {
            return Err("--from is after --to");
        }
        Ok(FrameFilter {
            sources: self.source,
            priority,
            since: self.from,
            until: self.to,
        })
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Archive { tool }) => return archive(tool),
        Some(Command::Catalog { tool }) => return catalog(tool),
        Some(Command::Tail(args)) => return tail(args),
        None => {}
    }
    let mut config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(ConfigError::Read { path, source }) if source.kind() == ErrorKind::NotFound => {
            eprintln!(
                "aggregator: no configuration file at {}: {source}; give its path with --config \
                 PATH (the default, {DEFAULT_CONFIG}, is relative to the working directory: the \
                 repository root has one)",
                path.display()
            );
            return ExitCode::from(2);
        }
        Err(err) => {
            eprintln!("aggregator: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    // The files `[tls]` names are read and checked before anything binds, and by --check-config.
    let tls = match config.tls.as_ref().map(ServerTls::load).transpose() {
        Ok(tls) => tls.map(Arc::new),
        Err(err) => {
            eprintln!(
                "aggregator: invalid configuration: {}: {err}",
                cli.config.display()
            );
            return ExitCode::from(2);
        }
    };
    let monitor = &config.monitor;
    let access = match monitor.token_file.as_deref().filter(|_| monitor.enabled) {
        Some(path) => match Access::load(path, monitor.protect_all) {
            Ok(access) => Some(access),
            Err(err) => {
                eprintln!(
                    "aggregator: invalid configuration: {}: {err}",
                    cli.config.display()
                );
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    if cli.check_config {
        println!("{}: configuration is valid", cli.config.display());
        return ExitCode::SUCCESS;
    }
    if cli.log_json {
        config.log.format = LogFormat::Json;
    }
    aggregator::ops::logging::init(&config.log);
    match descriptors::raise_limit() {
        Ok(limits) => tracing::info!(
            inherited = limits.inherited,
            soft = limits.soft,
            hard = limits.hard,
            reserved_for_archive = descriptors::reserve(limits.soft),
            "open-file limit"
        ),
        Err(err) => tracing::warn!(error = %err, "cannot raise the open-file limit"),
    }
    let runtime = match config.runtime.build() {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(config, tls, access)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => {
            tracing::error!("startup failed: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the daemon; `Ok(clean)` tells whether the drain accounted for every accepted frame.
async fn serve(
    config: Config,
    tls: Option<Arc<ServerTls>>,
    access: Option<Access>,
) -> std::io::Result<bool> {
    // The wall clock, read once: every frame of this run is stamped on it, advanced by the
    // monotonic clock (docs/guarantees.md, "Time").
    let (_, started) = ArchiveClock::process().anchor();
    tracing::info!(at = %unix_ns_to_rfc3339(started), "archive clock started");
    // Registered before binding, so a failure is a startup error and not a lost signal later.
    let mut terminate = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let hangup = signal(SignalKind::hangup())?;
    for setting in config.ineffective_settings() {
        tracing::warn!("{setting}");
    }
    for warning in config.exposure_warnings() {
        tracing::warn!("{warning}");
    }
    // Every address is bound before the archive is opened: a start that fails on a port in use
    // must not leave segments behind, each holding its reserved disk. Nothing is accepted until
    // the daemon runs, after recovery, so sources that connect meanwhile wait in the backlog.
    let Bound {
        listeners,
        monitor_listener,
        follow_listener,
        links,
        tm_listeners,
    } = Bound::bind(&config).await?;
    let archive = aggregator::archive::write::open(&config.archive, config.runtime.shards)?;
    // Next to the archive, whose directory lock keeps a second daemon from publishing into it.
    let catalog = CatalogHandle::open(Store::in_dir(&config.archive.dir), config.catalog.max_bytes)
        .map_err(std::io::Error::other)?;
    tracing::info!(
        uplink = %listeners.uplink.local_addr()?,
        replay = %listeners.replay.local_addr()?,
        monitor = %monitor_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or("disabled".to_string(), |a| a.to_string()),
        consumer = %follow_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
            .map_or("disabled".to_string(), |a| a.to_string()),
        shards = config.runtime.shards,
        version = env!("CARGO_PKG_VERSION"),
        "aggregator listening"
    );
    let mut daemon = Daemon::new(config, archive).with_catalog(catalog);
    if let Some(tls) = &tls {
        daemon = daemon.with_tls(Arc::clone(tls));
    }
    tokio::spawn(reload_on_hangup(hangup, tls));
    if let Some(listener) = follow_listener {
        daemon.serve_followers(listener);
    }
    daemon.serve_links(links);
    for (name, listener) in tm_listeners {
        tracing::info!(name, address = %listener.local_addr()?, "tm server listening");
        daemon.serve_tm(&name, listener);
    }
    let monitor_stop = tokio_util::sync::CancellationToken::new();
    let monitor = monitor_listener.map(|listener| {
        let mut state = daemon.monitor_state();
        if let Some(access) = access {
            state = state.with_access(access);
        }
        tokio::spawn(monitor::serve(
            listener,
            state,
            monitor_stop.clone().cancelled_owned(),
        ))
    });
    notify_systemd(NotifyState::Ready);
    let shutdown = async move {
        let name = tokio::select! {
            _ = terminate.recv() => "SIGTERM",
            _ = interrupt.recv() => "SIGINT",
        };
        tracing::info!(signal = name, "shutdown requested");
        notify_systemd(NotifyState::Stopping);
    };
    let report = daemon.run(listeners, shutdown).await;
    monitor_stop.cancel();
    if let Some(monitor) = monitor {
        let _ = monitor.await;
    }
    Ok(report.is_clean())
}

/// Every socket of the daemon, bound.
struct Bound {
    listeners: Listeners,
    monitor_listener: Option<TcpListener>,
    follow_listener: Option<TcpListener>,
    links: LinkSockets,
    /// Each TM server's name and listener.
    tm_listeners: Vec<(String, TcpListener)>,
}

impl Bound {
    async fn bind(config: &Config) -> std::io::Result<Bound> {
        let listeners = Listeners::bind(config).await?;
        let (monitor, consumer) = (&config.monitor, &config.consumer);
        // A listener where it is enabled.
        let optional = |enabled, addr, max_connections, what| match enabled {
            true => listen(addr, max_connections, None, what).map(Some),
            false => Ok(None),
        };
        let monitor_listener = optional(
            monitor.enabled,
            monitor.listen,
            monitor.max_connections,
            "monitor",
        )?;
        let follow_listener = optional(
            consumer.enabled,
            consumer.listen,
            consumer.max_connections,
            "consumer",
        )?;
        let links = LinkSockets::bind(&config.links)
            .await
            .map_err(std::io::Error::other)?;
        let mut tm_listeners = Vec::with_capacity(config.tm_servers.len());
        for server in &config.tm_servers {
            let what = format!("TM server {}", server.name);
            let listener = listen(server.listen, server.max_connections, None, &what)?;
            tm_listeners.push((server.name.clone(), listener));
        }
        Ok(Bound {
            listeners,
            monitor_listener,
            follow_listener,
            links,
            tm_listeners,
        })
    }
}

/// SIGHUP: reads `[tls]`'s certificate, key and client CA again; open connections keep theirs.
async fn reload_on_hangup(mut hangup: Signal, tls: Option<Arc<ServerTls>>) {
    while hangup.recv().await.is_some() {
        match &tls {
            None => tracing::info!("SIGHUP: no [tls] to reload"),
            Some(tls) => match tls.reload() {
                Ok(()) => tracing::info!("SIGHUP: TLS certificate, key and client CA reloaded"),
                Err(err) => {
                    tracing::error!(error = %err, "SIGHUP: TLS reload failed; the files loaded before stay in use")
                }
            },
        }
    }
}

/// `aggregator tail`: prints frames until --limit or the daemon's END.
fn tail(args: TailArgs) -> ExitCode {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since > until {
            eprintln!("aggregator tail: --since is after --until");
            return ExitCode::from(2);
        }
    }
    let subscription = Subscription::new(args.from, args.source, args.priority);
    let subscription = subscription.within(args.since, args.until);
    let options = TailOptions {
        addr: args.addr,
        subscription: match args.from_oldest_on_gap {
            true => subscription.going_on_past_gaps(),
            false => subscription,
        },
        limit: args.limit,
        json: args.json,
        tls: match args.tls.client() {
            Ok(tls) => tls,
            Err(err) => {
                eprintln!("aggregator tail: {err}");
                return ExitCode::from(2);
            }
        },
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("aggregator tail: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    match runtime.block_on(client::tail(&options, &mut out)) {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aggregator tail: {err}");
            ExitCode::FAILURE
        }
    }
}

/// Tells systemd about a state change when running under `Type=notify`; a no-op elsewhere.
fn notify_systemd(state: NotifyState) {
    if let Err(err) = sd_notify::notify(false, &[state]) {
        tracing::debug!(error = %err, "sd_notify failed");
    }
}

/// Runs a catalog tool.
fn catalog(tool: CatalogTool) -> ExitCode {
    let CatalogTool::Push {
        file,
        addr,
        content_type,
        token_file,
        tls,
    } = tool;
    let access = match monitor_access(token_file.as_deref(), &tls) {
        Ok(access) => access,
        Err(err) => {
            eprintln!("aggregator catalog push: {err}");
            return ExitCode::from(2);
        }
    };
    let body = match std::fs::read(&file) {
        Ok(body) => body,
        Err(err) => {
            eprintln!(
                "aggregator catalog push: cannot read {}: {err}",
                file.display()
            );
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let pushed = match runtime {
        Ok(runtime) => runtime.block_on(push(addr, &content_type, &body, &access)),
        Err(err) => {
            eprintln!("aggregator catalog push: cannot start the runtime: {err}");
            return ExitCode::from(2);
        }
    };
    match pushed {
        Ok(version) => {
            println!(
                "catalog version {version} published ({} bytes, {content_type})",
                body.len()
            );
            ExitCode::SUCCESS
        }
        Err(err @ PushError::Refused { .. }) => {
            eprintln!("aggregator catalog push: {err}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("aggregator catalog push: {err}");
            ExitCode::from(2)
        }
    }
}

/// The monitor's TLS and token, from `--tls-*` and `--token-file`.
fn monitor_access(token_file: Option<&Path>, tls: &TlsArgs) -> Result<MonitorAccess, String> {
    let token = match token_file {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .map_err(|err| format!("--token-file: cannot read {}: {err}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let tls = tls.client().map_err(|err| err.to_string())?;
    Ok(MonitorAccess { tls, token })
}

/// Runs an archive tool; its output goes to stdout, problems to stderr.
fn archive(tool: ArchiveTool) -> ExitCode {
    match tool {
        ArchiveTool::Verify { dir, strict } => verify(&dir, strict),
        ArchiveTool::Gaps {
            dir,
            window,
            json,
            config,
        } => match window.filter(None) {
            Ok(filter) => gaps(&dir, &filter, json, config.as_deref()),
            Err(why) => {
                eprintln!("aggregator archive gaps: {why}");
                ExitCode::from(2)
            }
        },
        ArchiveTool::Export {
            dir,
            window,
            priority,
            format,
            output,
        } => match window.filter(priority) {
            Ok(filter) => export(&dir, filter, format, &output),
            Err(why) => {
                eprintln!("aggregator archive export: {why}");
                ExitCode::from(2)
            }
        },
        ArchiveTool::Inspect { dir, filter } => inspect(&dir, &filter),
        ArchiveTool::Repair { dir, quarantine } => repair(&dir, quarantine),
        ArchiveTool::Prune {
            dir,
            before,
            keep_bytes,
            keep_age,
            dry_run,
            force,
        } => {
            let now = SystemTime::now();
            let limit = match (before, keep_bytes, keep_age) {
                (Some(time), _, _) => units::parse_time(&time, now)
                    .map(PruneLimit::Before)
                    .map_err(|why| format!("--before: {why}")),
                (_, Some(bytes), _) => Ok(PruneLimit::KeepBytes(bytes)),
                (_, _, Some(age)) => Ok(PruneLimit::KeepAge(age)),
                (None, None, None) => Err("give --before, --keep-bytes or --keep-age".into()),
            };
            match limit {
                Ok(limit) => {
                    let now_ns = units::unix_ns(now).unwrap_or(0);
                    let run = PruneRun {
                        dry_run,
                        now_ns,
                        force,
                    };
                    prune(&dir, limit, run)
                }
                Err(why) => {
                    eprintln!("aggregator archive prune: {why}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

/// Runs `aggregator archive gaps`: a line per source and per gap, or the JSON.
fn gaps(dir: &Path, filter: &FrameFilter, json: bool, config: Option<&Path>) -> ExitCode {
    let groups = match config.map(Config::load).transpose() {
        Ok(config) => {
            config.map_or_else(Default::default, |c| completeness::merge_groups(&c.links))
        }
        Err(err) => {
            eprintln!("aggregator archive gaps: {err}");
            return ExitCode::from(2);
        }
    };
    if !dir.is_dir() {
        eprintln!(
            "aggregator archive gaps: {} is not a directory",
            dir.display()
        );
        return ExitCode::from(2);
    }
    let answer = match completeness::of_files(dir, filter) {
        Ok(answer) => answer,
        Err(err) => {
            eprintln!("aggregator archive gaps: {err}");
            return ExitCode::from(2);
        }
    };
    let problems = answer.problems();
    for problem in &problems {
        eprintln!("aggregator archive gaps: {problem}");
    }
    let status = match problems.is_empty() {
        true => ExitCode::SUCCESS,
        false => ExitCode::FAILURE,
    };
    if json {
        println!("{}", completeness::answer_json(&answer, filter, &groups));
        return status;
    }
    for record in &answer.clock {
        println!("clock {record}");
    }
    print_gaps(&answer.sources, &groups);
    status
}

/// `aggregator archive gaps`' text report: each source's runs and gaps (and stations), each pass
/// of `groups`, and the totals.
fn print_gaps(sources: &[completeness::SourceCompleteness], groups: &completeness::MergeGroups) {
    let runs = |held: &SequenceSet| {
        let runs: Vec<String> = held.runs().map(|(a, b)| format!("{a}..{b}")).collect();
        runs.join(",")
    };
    let gap_line = |gap: &completeness::Gap| {
        let (first, last, cause) = (gap.first, gap.last, gap.cause.label());
        println!(
            "  gap {first}..{last} ({} frames): {cause}",
            last - first + 1
        );
    };
    for s in sources {
        let (kind, id, frames) = (s.source.0.label(), s.source.1, s.frames);
        let (held, gaps) = (runs(&s.held), s.gaps.len());
        let outside = match s.outside_window {
            0 => String::new(),
            n => format!(" outside_window={n}"),
        };
        println!("{kind}:{id} frames={frames}{outside} held={held} gaps={gaps}");
        s.gaps.iter().for_each(gap_line);
        for (station, held) in &s.stations {
            println!(
                "  station {station}: frames={} held={}",
                held.len(),
                runs(held)
            );
        }
    }
    for pass in completeness::passes(sources, groups) {
        let (group, apid, held) = (&pass.group, pass.apid, &pass.held);
        println!(
            "pass {group} apid {apid}: frames={} held={}",
            held.len(),
            runs(held)
        );
        pass.gaps.iter().for_each(gap_line);
        for (station, (kind, id), held) in &pass.stations {
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

/// Runs `aggregator archive export`: the window's frames to `output` (`-`: standard output), with a
/// progress line on a terminal.
fn export(dir: &Path, filter: FrameFilter, format: Format, output: &Path) -> ExitCode {
    if !dir.is_dir() {
        eprintln!(
            "aggregator archive export: {} is not a directory",
            dir.display()
        );
        return ExitCode::from(2);
    }
    // The Parquet writer needs no seeking: standard output serves every format.
    let mut out: Box<dyn std::io::Write + Send> = match output.to_str() {
        Some("-") => Box::new(std::io::stdout()),
        _ => match std::fs::File::create(output) {
            Ok(file) => Box::new(std::io::BufWriter::with_capacity(
                1 << 20,
                WriteBehind::new(file),
            )),
            Err(err) => {
                eprintln!(
                    "aggregator archive export: cannot create {}: {err}",
                    output.display()
                );
                return ExitCode::from(2);
            }
        },
    };
    let mut sink: Box<dyn ExportSink + '_> = match format {
        Format::Parquet => match ParquetSink::new(&mut out) {
            Ok(sink) => Box::new(sink),
            Err(err) => {
                eprintln!(
                    "aggregator archive export: cannot write {}: {err}",
                    output.display()
                );
                return ExitCode::from(2);
            }
        },
        rows => Box::new(RowSink::new(rows, &mut out)),
    };
    let mut line = ProgressLine::new(output.to_str() == Some("-"));
    let exported = tools::export::export(dir, filter, sink.as_mut(), &mut |done| line.show(done));
    line.clear();
    match exported {
        Ok(exported) => {
            for earliest in &exported.earliest {
                eprintln!(
                    "aggregator archive export: shard {} holds nothing received before {} any \
                     more (retention deleted older segments)",
                    earliest.shard,
                    unix_ns_to_rfc3339(earliest.oldest)
                );
            }
            for range in &exported.damaged {
                eprintln!("aggregator archive export: {range}");
            }
            let done = exported.progress;
            eprintln!(
                "exported {} frames, {} payload bytes, to {}",
                done.frames,
                done.bytes,
                output.display()
            );
            match exported.damaged.is_empty() {
                true => ExitCode::SUCCESS,
                false => ExitCode::FAILURE,
            }
        }
        Err(err) => {
            eprintln!("aggregator archive export: {err}");
            ExitCode::FAILURE
        }
    }
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

fn prune(dir: &Path, limit: PruneLimit, run: PruneRun) -> ExitCode {
    let report = match tools::prune::prune(dir, limit, run) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("aggregator archive prune: {err}");
            let refused = matches!(err, tools::prune::PruneError::Untrusted(_));
            return ExitCode::from(if refused { 1 } else { 2 });
        }
    };
    match report.print(&mut std::io::stdout().lock()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("aggregator archive prune: writing the report: {err}");
            ExitCode::from(2)
        }
    }
}

fn verify(dir: &Path, strict: bool) -> ExitCode {
    let report = match tools::verify(dir) {
        Ok(report) => report,
        Err(err) => {
            eprintln!("aggregator archive verify: {err}");
            return ExitCode::from(2);
        }
    };
    if report.segments.is_empty() {
        eprintln!(
            "aggregator archive verify: no segment files in {}",
            dir.display()
        );
    }
    if let Err(err) = report.print(&mut std::io::stdout().lock()) {
        eprintln!("aggregator archive verify: writing the report: {err}");
        return ExitCode::from(2);
    }
    for segment in report.problems() {
        eprintln!(
            "aggregator archive verify: {}: {}",
            segment.path.display(),
            segment.end
        );
    }
    if !report.is_valid() || (strict && !report.is_exactly_once()) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn inspect(dir: &Path, filter: &Filter) -> ExitCode {
    let summary = match tools::inspect(dir, filter, &mut std::io::stdout().lock()) {
        Ok(summary) => summary,
        Err(err) => {
            eprintln!("aggregator archive inspect: {err}");
            return ExitCode::from(2);
        }
    };
    if summary.truncated {
        eprintln!(
            "aggregator archive inspect: stopped after {} lines (--limit)",
            summary.listed
        );
    }
    for (path, damage) in &summary.damaged {
        eprintln!(
            "aggregator archive inspect: damaged {}: {damage}",
            path.display()
        );
    }
    if summary.damaged.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn repair(dir: &Path, quarantine: bool) -> ExitCode {
    let report = match tools::repair::repair(dir, quarantine) {
        Ok(report) if report.shards.is_empty() => {
            eprintln!(
                "aggregator archive repair: no segment files in {}",
                dir.display()
            );
            return ExitCode::SUCCESS;
        }
        Ok(report) => report,
        Err(err) => {
            eprintln!("aggregator archive repair: {err}");
            return ExitCode::from(2);
        }
    };
    if let Err(err) = report.print(&mut std::io::stdout().lock()) {
        eprintln!("aggregator archive repair: writing the report: {err}");
        return ExitCode::from(2);
    }
    if report.is_settled() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// A time as `--since` and `--until` take it, a time ago counted from now.
fn parse_time_now(text: &str) -> Result<u64, String> {
    units::parse_time(text, SystemTime::now())
}
