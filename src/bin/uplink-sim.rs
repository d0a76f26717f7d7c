//! The `uplink-sim` binary: parses the command line into a [`SimPlan`], runs it, prints the summary,
//! and turns the outcome into the exit status. Everything else is in `aggregator::sim`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use aggregator::protocol::ccsds::Framing;
use aggregator::sim::station::StationPlan;
use aggregator::sim::{
    self, Amount, EmergencyMix, Outcome, Pace, Profile, Progress, ProgressStyle, Rate, Scenario,
    SessionOptions, SimPlan, SimReport, SourceSpec,
};
use aggregator::tls::client::TlsArgs;
use aggregator::SourceKind;
use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Load and smoke-test client for the telemetry aggregator: plays live uplinks and replay feeds,
/// resends whatever the daemon did not acknowledge, and accounts for every frame.
///
/// A scenario sets every option below; any option given explicitly overrides it for both kinds.
/// With --replay-archive, the sources are the archive's instead: each source in it is streamed to
/// the replay listener as a replay feed with the same id, in sequence order.
///
/// Exit status: 0 when the run succeeded; 1 when it failed (nothing listens at an address, a source
/// was refused or gave up, or with --require-all-acked a frame was never acknowledged); 2 on a
/// usage error or an archive that cannot be read; 3 when a --replay-archive run succeeded but
/// skipped damaged byte ranges of a corrupt segment (each named on standard error; the frames in
/// them were not sent).
#[derive(Debug, Parser)]
#[command(name = "uplink-sim", version)]
struct Cli {
    /// Named scenario: brief (4 uplinks x 10 frames, 2 Emergency each, + 1 replay x 5), default
    /// (48 + 2 at a realistic rate for 3 s), saturate (48 + 2 at max rate for 3 s).
    #[arg(long, default_value = "default")]
    scenario: Scenario,
    /// The daemon's uplink listener, or several daemons' as a comma-separated list (A,B,...).
    /// Every live uplink starts at the first; when it cannot connect, its connection breaks or
    /// times out, or the daemon is shutting down (REFUSED or CLOSE), its next attempt goes to the
    /// next address, wrapping around, after the same backoff: a failover. The summary counts them
    /// (failovers), and the frames acknowledged above the resume point a daemon gave later
    /// (acked_not_held).
    #[arg(
        long,
        default_value = "127.0.0.1:7700",
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ','
    )]
    uplink: Vec<String>,
    /// The daemon's replay listener, or several daemons' as a comma-separated list (A,B,...),
    /// tried by the replay feeds as --uplink says.
    #[arg(
        long,
        default_value = "127.0.0.1:7701",
        value_name = "ADDR[,ADDR...]",
        value_delimiter = ','
    )]
    replay: Vec<String>,
    /// Play this archive directory back instead of generating frames: every source in it becomes
    /// a replay feed with the same id, sending its archived frames in sequence order. Damaged
    /// ranges of a corrupt segment are skipped with a warning (exit status 3), every valid record
    /// is played.
    #[arg(
        long,
        value_name = "DIR",
        conflicts_with_all = ["uplinks", "replays", "rate", "jitter", "payload", "frames", "duration", "emergency_share", "emergency_first"]
    )]
    replay_archive: Option<PathBuf>,
    /// Pace of --replay-archive: max (as fast as the daemon accepts), recorded (the gaps between
    /// the archived receive times), or a factor applied to the recorded pace (2 = twice as fast).
    #[arg(
        long,
        value_name = "SPEED",
        default_value = "max",
        requires = "replay_archive"
    )]
    replay_speed: Pace,
    /// Number of live uplinks (ids 0..N).
    #[arg(long, value_name = "N")]
    uplinks: Option<u32>,
    /// Number of replay feeds (ids 1000..1000+M).
    #[arg(long, value_name = "M")]
    replays: Option<u32>,
    /// Frames per second per source, or "max" for as fast as the daemon accepts.
    #[arg(long, value_parser = parse_rate)]
    rate: Option<Rate>,
    /// Variation of each batch interval, as a fraction of it (0 to 1).
    #[arg(long, value_name = "FRACTION")]
    jitter: Option<f64>,
    /// Payload bytes per frame.
    #[arg(long, value_name = "BYTES")]
    payload: Option<usize>,
    /// Frames per source.
    #[arg(long, value_name = "N", conflicts_with = "duration")]
    frames: Option<u64>,
    /// Seconds each source generates frames for.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Frames generated and written together (one burst).
    #[arg(long, value_name = "N")]
    batch: Option<u32>,
    /// Fraction of frames that are Emergency (0 to 1).
    #[arg(long, value_name = "FRACTION", conflicts_with = "emergency_first")]
    emergency_share: Option<f64>,
    /// The first K frames of every batch are Emergency (the brief's pattern).
    #[arg(long, value_name = "K")]
    emergency_first: Option<u32>,
    /// Seed of the jitter and the emergency draw.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Unacknowledged frames a source may have at once.
    #[arg(long, value_name = "N", default_value_t = 65_536)]
    max_in_flight: usize,
    /// Seconds a source that has been connected keeps trying to reconnect before it gives up (a
    /// daemon restart is worth waiting for). With nothing listening at an address (at any address
    /// of a list) the run fails at once, before any source starts, with "cannot connect to ADDR:
    /// is the aggregator running?"; a source that has never connected tries for 3 s at most, and
    /// every address of its list at least once.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    give_up_after: f64,
    /// Milliseconds a connection attempt (with TLS, its handshake too) may take before the source
    /// backs off and tries again. A whole fleet connecting over TLS at once needs more than the
    /// default.
    #[arg(long, value_name = "MS", default_value_t = 2_000)]
    connect_timeout_ms: u64,
    /// Milliseconds a source may write nothing before it sends a PING, which keeps its connection
    /// open through the daemon's idle timeout (30 s by default).
    #[arg(long, value_name = "MS", default_value_t = 10_000)]
    keepalive_ms: u64,
    /// Exit non-zero if any generated frame was never acknowledged.
    #[arg(long)]
    require_all_acked: bool,
    /// Write every WELCOME (`welcome KIND ID RESUME_AFTER|-`) and every acknowledgement a source
    /// takes (`ack KIND ID SEQUENCE`) to this file, one line each, KIND `live` or `replay`; flushed
    /// when the run ends (deploy/powercut/run.sh checks them across power cuts). Where --uplink or
    /// --replay lists several daemons, the lines of those sources end with the daemon's address.
    #[arg(long, value_name = "FILE")]
    ack_log: Option<PathBuf>,
    /// Progress display: auto (a live line on a terminal, plain lines otherwise), lines, or off.
    #[arg(long, default_value = "auto", value_parser = ["auto", "lines", "off"])]
    progress: String,
    /// Milliseconds between progress updates (default 200 on a terminal, 1000 otherwise).
    #[arg(long, value_name = "MS")]
    progress_ms: Option<u64>,
    #[command(flatten)]
    tls: TlsArgs,
    /// Also play a CCSDS ground station into the tcp-listen link at this address: space packets
    /// back to back (docs/ground-segment.md), beside the uplinks.
    #[arg(long, value_name = "ADDR")]
    station: Option<String>,
    /// The station's framing: ccsds or ccsds-asm.
    #[arg(long, default_value = "ccsds", value_parser = ["ccsds", "ccsds-asm"])]
    station_framing: String,
    /// The station's APIDs, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        default_value = "100,101",
        value_delimiter = ','
    )]
    station_apids: Vec<u16>,
    /// Packets per APID.
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    station_packets: u64,
    /// Packets per second per APID, or "max".
    #[arg(long, value_name = "RATE", default_value = "500", value_parser = parse_rate)]
    station_rate: Rate,
    /// Data bytes per packet (1 to 65536).
    #[arg(long, value_name = "BYTES", default_value_t = 64)]
    station_data: usize,
    /// Read the TM server at this address (from = "start", framing as --station-framing) and
    /// count the station's packets in it: the run fails unless each one arrived, once.
    #[arg(long, value_name = "ADDR", requires = "station")]
    tm_reader: Option<String>,
}

fn parse_rate(text: &str) -> Result<Rate, String> {
    if text == "max" {
        return Ok(Rate::Max);
    }
    match text.parse::<f64>() {
        Ok(rate) if rate.is_finite() && rate > 0.0 => Ok(Rate::PerSecond(rate)),
        _ => Err(format!(
            "{text:?} is neither a positive number of frames/s nor \"max\""
        )),
    }
}

/// The daemons of `--what`, each address as given; an empty one is a usage error.
fn daemons(what: &str, list: &[String]) -> Result<Vec<String>, String> {
    if list.iter().any(|address| address.trim().is_empty()) {
        return Err(format!(
            "--{what}: an empty address in {:?}",
            list.join(",")
        ));
    }
    Ok(list.to_vec())
}

fn seconds(what: &str, secs: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(secs)
        .map_err(|_| format!("--{what}: {secs} is not a number of seconds"))
}

fn fraction(what: &str, value: f64) -> Result<f64, String> {
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(format!("--{what}: {value} is not between 0 and 1"))
    }
}

impl Cli {
    /// Applies the explicit options on top of a scenario profile.
    fn apply(&self, profile: &mut Profile, count: Option<u32>) -> Result<(), String> {
        if let Some(count) = count {
            profile.count = count;
        }
        if let Some(rate) = self.rate {
            profile.rate = rate;
        }
        if let Some(jitter) = self.jitter {
            profile.jitter = fraction("jitter", jitter)?;
        }
        if let Some(payload) = self.payload {
            profile.payload = payload;
        }
        if let Some(frames) = self.frames {
            profile.amount = Amount::Frames(frames);
        }
        if let Some(duration) = self.duration {
            profile.amount = Amount::Duration(seconds("duration", duration)?);
        }
        if let Some(batch) = self.batch {
            profile.batch = batch.max(1);
        }
        if let Some(share) = self.emergency_share {
            profile.emergency = EmergencyMix::Share(fraction("emergency-share", share)?);
        }
        if let Some(k) = self.emergency_first {
            profile.emergency = EmergencyMix::FirstOfBatch(k);
        }
        Ok(())
    }

    /// The plan, and how many damaged ranges of the archive to replay were skipped.
    fn plan(&self) -> Result<(SimPlan, usize), String> {
        let (sources, skipped) = match &self.replay_archive {
            Some(dir) => self.archive_sources(dir)?,
            None => {
                let (mut uplinks, mut replays) = self.scenario.profiles();
                self.apply(&mut uplinks, self.uplinks)?;
                self.apply(&mut replays, self.replays)?;
                let mut sources = uplinks.sources(SourceKind::LiveUplink, self.seed);
                sources.extend(replays.sources(SourceKind::ArchivedReplay, self.seed));
                (sources, 0)
            }
        };
        let plan = SimPlan {
            uplink: daemons("uplink", &self.uplink)?,
            replay: daemons("replay", &self.replay)?,
            sources,
            session: SessionOptions {
                give_up_after: seconds("give-up-after", self.give_up_after)?,
                max_in_flight: self.max_in_flight.max(1),
                keepalive: Duration::from_millis(self.keepalive_ms.max(1)),
                connect_timeout: Duration::from_millis(self.connect_timeout_ms.max(1)),
                ack_log: match &self.ack_log {
                    Some(path) => Some(sim::ack_log::AckLog::create(path).map_err(|err| {
                        format!("--ack-log: cannot create {}: {err}", path.display())
                    })?),
                    None => None,
                },
                ..SessionOptions::default()
            },
            tls: self.tls.client().map_err(|err| err.to_string())?,
        };
        Ok((plan, skipped))
    }
}

impl Cli {
    /// The replay feeds of an archive, with what loading it found on standard error, and how many
    /// damaged ranges were skipped.
    fn archive_sources(&self, dir: &Path) -> Result<(Vec<SourceSpec>, usize), String> {
        let loaded = sim::replay::load_archive(dir, self.replay_speed)
            .map_err(|err| format!("--replay-archive: {err}"))?;
        if loaded.segments == 0 {
            return Err(format!(
                "--replay-archive: no segment files in {}",
                dir.display()
            ));
        }
        for torn in &loaded.torn {
            eprintln!("uplink-sim: replaying the valid records before a torn tail: {torn}");
        }
        for skipped in &loaded.skipped {
            eprintln!("uplink-sim: skipping damaged {skipped}");
        }
        if loaded.duplicates > 0 {
            eprintln!(
                "uplink-sim: {} archived frames repeat a sequence already loaded; each is sent once",
                loaded.duplicates
            );
        }
        eprintln!(
            "uplink-sim: replaying {} frames of {} sources from {} segments in {}",
            loaded.frames(),
            loaded.sources.len(),
            loaded.segments,
            dir.display()
        );
        let specs = loaded.specs(self.batch.unwrap_or(REPLAY_BATCH));
        Ok((specs, loaded.skipped.len()))
    }
}

/// Frames a replayed source writes at once unless --batch says otherwise.
const REPLAY_BATCH: u32 = 64;

/// The exit status of a run that succeeded but skipped damaged ranges of the archive it replayed.
const SKIPPED_DAMAGE: u8 = 3;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let (plan, skipped) = match cli.plan() {
        Ok(planned) => planned,
        Err(err) => {
            eprintln!("uplink-sim: {err}");
            return ExitCode::from(2);
        }
    };
    let terminal = std::io::stdout().is_terminal();
    // A station alone (--uplinks 0 --replays 0 --station ...) has no sources to show.
    let no_sources = plan.sources.is_empty();
    let style = match cli.progress.as_str() {
        "off" => ProgressStyle::Off,
        _ if no_sources => ProgressStyle::Off,
        "lines" => ProgressStyle::Lines,
        _ if terminal => ProgressStyle::Terminal,
        _ => ProgressStyle::Lines,
    };
    let interval = Duration::from_millis(
        cli.progress_ms
            .unwrap_or(if terminal { 200 } else { 1000 })
            .max(10),
    );
    let progress = Progress::new(style, interval, plan.sources.len());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("uplink-sim: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let ack_log = plan.session.ack_log.clone();
    let station = cli.station_plan();
    let (report, station) = runtime.block_on(async {
        let played = async {
            match &station {
                Some(station) => Some(station.run().await),
                None => None,
            }
        };
        tokio::join!(sim::run(plan, progress), played)
    });
    if let Some(Err(err)) = ack_log.map(|log| log.flush()) {
        eprintln!("uplink-sim: --ack-log: cannot write: {err}");
        return ExitCode::FAILURE;
    }
    if !report.reached_none() && !no_sources {
        println!("{report}");
    }
    let station_ok = match (cli.station_plan(), station) {
        (Some(plan), Some(played)) => runtime.block_on(cli.account_station(&plan, played)),
        _ => true,
    };
    match station_ok {
        true => exit_status(&report, cli.require_all_acked, skipped),
        false => ExitCode::FAILURE,
    }
}

impl Cli {
    fn station_plan(&self) -> Option<StationPlan> {
        Some(StationPlan {
            address: self.station.clone()?,
            framing: self.station_framing(),
            apids: self.station_apids.clone(),
            packets: self.station_packets,
            data: self.station_data,
            rate: match self.station_rate {
                Rate::Max => None,
                Rate::PerSecond(rate) => Some(rate),
            },
            connect_for: Duration::from_secs(3),
        })
    }

    fn station_framing(&self) -> Framing {
        match self.station_framing.as_str() {
            "ccsds-asm" => Framing::CcsdsAsm,
            _ => Framing::Ccsds,
        }
    }

    /// Prints what the station sent and, with --tm-reader, what the TM server served of it;
    /// whether both went well.
    async fn account_station(
        &self,
        plan: &StationPlan,
        played: std::io::Result<sim::station::StationReport>,
    ) -> bool {
        let sent = match played {
            Ok(sent) => sent,
            Err(err) => {
                eprintln!("uplink-sim: station: {err}");
                return false;
            }
        };
        println!(
            "station: sent={} packets ({} bytes) of APIDs {:?} to {}",
            sent.packets, sent.bytes, plan.apids, plan.address
        );
        let Some(reader) = &self.tm_reader else {
            return true;
        };
        let patience = Duration::from_secs(30);
        let counted =
            sim::station::count_tm(reader, plan.framing, &plan.apids, sent.packets, patience).await;
        match counted {
            Ok(count) => {
                println!(
                    "tm-reader: received={} repeated={} other_apids={} from {reader}",
                    count.packets, count.repeated, count.others
                );
                count.packets == sent.packets && count.repeated == 0
            }
            Err(err) => {
                eprintln!("uplink-sim: tm-reader: {err}");
                false
            }
        }
    }
}

/// Names what went wrong on standard error and turns it into the exit status (`Cli`'s doc lists
/// them): a failure outranks skipped damage. An address nothing listens at is named once, not
/// once for each of its sources.
fn exit_status(report: &SimReport, require_all_acked: bool, skipped: usize) -> ExitCode {
    let totals = report.totals();
    for problem in report.problems() {
        if !matches!(problem.outcome, Outcome::Unreachable { .. }) {
            eprintln!(
                "uplink-sim: {:?} {}: {}",
                problem.kind, problem.id, problem.outcome
            );
        }
    }
    for (address, error) in report.unreachable() {
        eprintln!("uplink-sim: cannot connect to {address}: is the aggregator running? ({error})");
    }
    if require_all_acked && totals.unacked > 0 {
        eprintln!(
            "uplink-sim: {} frames were never acknowledged",
            totals.unacked
        );
    }
    if !report.is_success(require_all_acked) {
        ExitCode::FAILURE
    } else if skipped > 0 {
        let ranges = if skipped == 1 { "range" } else { "ranges" };
        eprintln!("uplink-sim: skipped {skipped} damaged byte {ranges} of the archive");
        ExitCode::from(SKIPPED_DAMAGE)
    } else {
        ExitCode::SUCCESS
    }
}
