//! The command line: the flags and subcommands of `aggregator`, as clap parses them, and what
//! the subcommands share (the time window's flags, a time flag's reading of the clock).

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use aggregator::archive::query::export::Format;
use aggregator::archive::read::Start;
use aggregator::domain::filter::FrameFilter;
use aggregator::domain::frame::parse_source;
use aggregator::domain::units::{self, GivenTime};
use aggregator::links::recording::{FormatName, Naming};
use aggregator::protocol::ccsds::LengthField;
use aggregator::tls::client::TlsArgs;
use aggregator::{Config, Priority, SourceKind};
use clap::{Parser, Subcommand};

use crate::version;

/// Where the daemon reads its configuration without --config: the example in the repository.
pub(crate) const DEFAULT_CONFIG: &str = "config/aggregator.toml";

/// Telemetry aggregation daemon: priority fan-in, backpressure, fan-out and a lossless drain.
///
/// Without a subcommand it runs the daemon; `aggregator archive ...` works on an archive directory.
#[derive(Debug, Parser)]
#[command(
    name = "aggregator",
    version = version::SHORT,
    long_version = version::LONG.as_str(),
    args_conflicts_with_subcommands = true
)]
pub(crate) struct Cli {
    /// Path of the configuration file.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub(crate) config: PathBuf,
    /// Validate the configuration and exit: status 0 when valid, 2 when not.
    #[arg(long)]
    pub(crate) check_config: bool,
    /// Log one JSON object per line (for journald and Docker), whatever `log.format` says.
    #[arg(long)]
    pub(crate) log_json: bool,
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
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
    /// Station recordings: files of frames a station wrote while it could not reach the daemon
    /// (docs/ground-segment.md, "Recording files").
    Recording {
        #[command(subcommand)]
        tool: RecordingTool,
    },
    /// Station recordings into a running daemon: each FILE is uploaded into the spool directory
    /// of the link NAME (its `spool_dir`) through the monitor, and its import followed until
    /// every packet read from it is durable (docs/ground-segment.md, "Backfill").
    ///
    /// On a terminal, the upload and the import show their progress; then one summary line a
    /// file: packets read, stored, already held, unplaced, damaged ranges, or why it failed.
    /// Exit status: 0 when every file's packets are durable; 1 when a file failed (what it held
    /// before the failure is stored); 2 when a file or the daemon cannot be reached, or the
    /// daemon refused the upload.
    Backfill(BackfillArgs),
    /// The NATS sink's stream (docs/scale-out.md).
    Nats {
        #[command(subcommand)]
        tool: NatsTool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum NatsTool {
    /// Print the frames of the stream of the config's [sinks.nats], one JSON object a line.
    ///
    /// Each line has the keys of `archive export --format ndjson` but `shard` and `position`,
    /// then `site` (the daemon that published it) and `stream_sequence`. Without --source the
    /// stream in its order; with, each source in turn, in stream order. Reads what the stream
    /// holds when each source's read starts, then ends. A summary goes to standard error.
    ///
    /// Exit status: 0; 1 when a message is no frame of the sink's (named on standard error, and
    /// reading goes on) or the stream cannot be read; 2 on a usage error or a config without
    /// [sinks.nats].
    Read(NatsReadArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct NatsReadArgs {
    /// The daemon's config: the stream, its servers, credentials and subjects.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub(crate) config: PathBuf,
    #[command(flatten)]
    pub(crate) window: WindowArgs,
    /// Only frames of this priority: emergency or routine.
    #[arg(long, value_parser = str::parse::<aggregator::Priority>)]
    pub(crate) priority: Option<Priority>,
    /// Print at most N frames.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RecordingTool {
    /// Read a recording through and report what it holds: its format (told from its first
    /// bytes, or named), its frames and bytes, the first and last earth-receive times of
    /// gr-satellites' KISS time frames, and each damaged byte range with the reason.
    ///
    /// A gzip file is read through gzip; offsets are in the uncompressed bytes. Transfer frames
    /// without the sync marker, and length prefixes other than a 4-byte length of the packet,
    /// cannot be told from the bytes: name them with --format.
    ///
    /// Exit status: 0 when every byte is a frame's; 1 when damaged ranges were passed over (each
    /// named, every readable frame counted); 2 when the file cannot be read, its format cannot be
    /// told, or reading it fails part way (what was read is reported).
    Inspect(RecordingInspectArgs),
}

#[derive(Debug, clap::Args)]
pub(crate) struct RecordingInspectArgs {
    /// The recording, plain or gzip.
    pub(crate) file: PathBuf,
    /// The format, as a link's framing: kiss, ccsds, ccsds-asm, length-prefix, tm-frames or
    /// aos-frames. Told from the bytes when not given.
    #[arg(long, value_parser = str::parse::<FormatName>)]
    pub(crate) format: Option<FormatName>,
    /// Transfer frames' length in bytes, the marker excluded (told by the markers' spacing when
    /// they have markers).
    #[arg(long, value_name = "N")]
    pub(crate) frame_length: Option<usize>,
    /// Transfer frames named with --format lie back to back, without the sync marker.
    #[arg(long)]
    pub(crate) no_marker: bool,
    /// length-prefix's length field, as a link's `length = { offset, size, adjustment, strip }`.
    #[arg(long, value_name = "OFFSET,SIZE,ADJUSTMENT,STRIP", value_parser = parse_length_field)]
    pub(crate) length_field: Option<LengthField>,
    /// Read it as the link NAME of --config reads its station: its framing, frame length,
    /// marker, check symbols and length field.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["format", "frame_length", "no_marker", "length_field"])]
    pub(crate) link: Option<String>,
    /// The daemon's config, with --link.
    #[arg(long, default_value = DEFAULT_CONFIG)]
    pub(crate) config: PathBuf,
    /// One JSON object instead of lines (the first 1,000 damaged ranges listed).
    #[arg(long)]
    pub(crate) json: bool,
}

impl RecordingInspectArgs {
    /// What the flags name of the recording, or the link of --link.
    pub(crate) fn naming(&self) -> Result<Naming, String> {
        let Some(name) = &self.link else {
            return Ok(Naming {
                format: self.format,
                frame_length: self.frame_length,
                frame_marker: !self.no_marker,
                length: self.length_field,
                ..Naming::default()
            });
        };
        let config = Config::load(&self.config).map_err(|err| err.to_string())?;
        let link = config.links.iter().find(|link| &link.name == name);
        let link = link.ok_or_else(|| format!("{} has no link {name:?}", self.config.display()))?;
        Ok(Naming::of_link(link))
    }
}

/// `OFFSET,SIZE,ADJUSTMENT,STRIP`: a length field's four numbers.
fn parse_length_field(text: &str) -> Result<LengthField, String> {
    let numbers: Vec<&str> = text.split(',').map(str::trim).collect();
    let [offset, size, adjustment, strip] = numbers[..] else {
        return Err("four numbers: OFFSET,SIZE,ADJUSTMENT,STRIP".into());
    };
    let count = |name: &str, text: &str| {
        (text.parse::<usize>()).map_err(|err| format!("{name} {text:?}: {err}"))
    };
    Ok(LengthField {
        offset: count("offset", offset)?,
        size: count("size", size)?,
        adjustment: (adjustment.parse::<i64>())
            .map_err(|err| format!("adjustment {adjustment:?}: {err}"))?,
        strip: count("strip", strip)?,
    })
}

#[derive(Debug, Subcommand)]
pub(crate) enum CatalogTool {
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
pub(crate) struct BackfillArgs {
    /// The link whose station made the recordings; it needs a `spool_dir`.
    #[arg(long, value_name = "NAME")]
    pub(crate) link: String,
    /// The recordings, plain or gzip, in the link's framing.
    #[arg(required = true, value_name = "FILE")]
    pub(crate) files: Vec<PathBuf>,
    /// The monitor's address.
    #[arg(long, default_value = "127.0.0.1:7780")]
    pub(crate) addr: std::net::SocketAddr,
    /// A file holding the monitor's bearer token (`monitor.token_file`).
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Debug, clap::Args)]
pub(crate) struct TailArgs {
    /// The daemon's follow listener (`consumer.listen`).
    #[arg(long, default_value = "127.0.0.1:7702")]
    pub(crate) addr: std::net::SocketAddr,
    /// Where to start: start (the oldest frame kept), now (only frames to come), or positions
    /// SHARD/SEGMENT:OFFSET:INDEX joined by commas, one per shard (in each shard the frames after
    /// its position; a shard without one from its oldest frame).
    #[arg(long, default_value = "start")]
    pub(crate) from: Start,
    /// Only frames of this source, KIND:ID with KIND live or replay; repeat for more.
    #[arg(long, value_name = "KIND:ID", value_parser = parse_source)]
    pub(crate) source: Vec<(SourceKind, u32)>,
    /// Only frames of this priority: emergency or routine.
    #[arg(long, value_parser = str::parse::<aggregator::Priority>)]
    pub(crate) priority: Option<Priority>,
    /// When the next frames were deleted (retention), go on at the oldest frame left after a
    /// line saying how many frames of each source were skipped, instead of ending with
    /// SegmentDeleted.
    #[arg(long)]
    pub(crate) from_oldest_on_gap: bool,
    /// Only frames received at or after TIME: RFC 3339 (2026-11-24T10:00:00Z) or a time ago
    /// (-15m). The reading jumps over the segments and blocks without any (by their indexes).
    #[arg(long, value_name = "TIME", value_parser = str::parse::<GivenTime>, allow_hyphen_values = true)]
    pub(crate) since: Option<GivenTime>,
    /// Only frames received at or before TIME; exit once every shard has nothing more of them
    /// (the daemon's END `Until`).
    #[arg(long, value_name = "TIME", value_parser = str::parse::<GivenTime>, allow_hyphen_values = true)]
    pub(crate) until: Option<GivenTime>,
    /// Exit after this many frames.
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,
    /// One JSON object per line.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum ArchiveTool {
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
        filter: InspectArgs,
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
    /// Check an archive an earlier build wrote and bring its indexes up to date.
    ///
    /// Every format version a build wrote (1 to 6) is read in place, and segments are never
    /// rewritten: a follower's or a sink's position is a byte offset in one. This reads every
    /// segment and emergency journal of every shard through, counts them by format version, and
    /// builds again each sealed segment's index of a version not read (the readers would, as
    /// they meet it). The next start appends in a segment of the current version.
    ///
    /// Exit status: 0; 1 when a file is damaged (named; `archive verify` and `repair` say more);
    /// 2 when the archive cannot be read or written, is locked by a running daemon, or holds a
    /// file of a format version this build does not read.
    Upgrade {
        /// The archive directory (the daemon must be stopped).
        dir: PathBuf,
        /// Only say what it finds and which indexes it would build again.
        #[arg(long)]
        dry_run: bool,
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
    /// The passes of stations over a time window: for each station and its merge group (or
    /// source), the runs of frames with no silence longer than archive.pass_gap_ms (10 minutes
    /// by default), each with AOS and LOS, frames and bytes, what another station of the group
    /// filled, the sequences still missing, and the latency from earth reception to the archive.
    ///
    /// Every frame of the window is read from its block. Runs on a stopped archive or beside a
    /// running daemon (read-only). The rules (clipped passes, frames without earth-receive time,
    /// stations whose clocks disagree): docs/archive-tools.md ("passes").
    ///
    /// Exit status: 0 (passes or none); 1 when something was passed over; 2 when the archive
    /// cannot be read or on a usage error.
    Passes {
        /// The archive directory.
        dir: PathBuf,
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        asked: StationArgs,
    },
    /// Frames and bytes over a time window: what each station delivered of each source (with
    /// the source's merge group), each station's and each group's total, and the frames of no
    /// station (the ingest protocol's sources) per source.
    ///
    /// Every frame of the window is read from its block, as for `passes` (the indexes hold no
    /// bytes per source). Runs on a stopped archive or beside a running daemon (read-only). The
    /// rules: docs/archive-tools.md ("volume").
    ///
    /// Exit status: 0 (frames or none); 1 when something was passed over; 2 when the archive
    /// cannot be read or on a usage error.
    Volume {
        /// The archive directory.
        dir: PathBuf,
        #[command(flatten)]
        window: WindowArgs,
        #[command(flatten)]
        asked: StationArgs,
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
        /// Only frames of sources of this kind: live or replay, as the `kind` of
        /// GET /archive/frames selects them.
        #[arg(long, value_parser = str::parse::<SourceKind>)]
        kind: Option<SourceKind>,
        /// Only frames of this priority: emergency or routine.
        #[arg(long, value_parser = str::parse::<aggregator::Priority>)]
        priority: Option<Priority>,
        /// Only frames that are one space packet of this APID (0 to 2047), as the `apid` of
        /// GET /archive/frames selects them.
        #[arg(long, value_name = "APID", value_parser = clap::value_parser!(u16).range(..=0x7ff))]
        apid: Option<u16>,
        /// parquet, csv, ndjson, raw (each payload after its u32 length) or ccsds (the payloads
        /// back to back).
        #[arg(long, value_parser = str::parse::<Format>)]
        format: Format,
        /// The file to write; - for standard output.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: PathBuf,
    },
}

/// Which records `inspect` lists. Every `None` lets everything through.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub(crate) struct InspectArgs {
    /// Only this source id (hides clock records, which have no source).
    #[arg(long, value_name = "ID")]
    pub(crate) source: Option<u32>,
    /// Only this source kind: live or replay (hides clock records, which have no source).
    #[arg(long, value_parser = str::parse::<SourceKind>)]
    pub(crate) kind: Option<SourceKind>,
    /// Only frames of this priority: emergency or routine (hides watermark, stored and clock
    /// records).
    #[arg(long, value_parser = str::parse::<Priority>)]
    pub(crate) priority: Option<Priority>,
    /// Lowest sequence listed (for watermarks, the acknowledged sequence).
    #[arg(long, value_name = "SEQ")]
    pub(crate) from: Option<u64>,
    /// Highest sequence listed.
    #[arg(long, value_name = "SEQ")]
    pub(crate) to: Option<u64>,
    /// List at most N lines (a frame of a FRAMES record is a line).
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<usize>,
}

impl InspectArgs {
    /// The records these flags ask for (the limit aside).
    pub(crate) fn filter(&self) -> FrameFilter {
        FrameFilter {
            sources: self.source.map(FrameFilter::every_kind).unwrap_or_default(),
            kind: self.kind,
            priority: self.priority,
            first_sequence: self.from,
            last_sequence: self.to,
            ..FrameFilter::default()
        }
    }
}

/// What `archive passes` and `archive volume` are asked of the stations.
#[derive(Debug, clap::Args)]
pub(crate) struct StationArgs {
    /// Only this station's (a link's `station`, or its name).
    #[arg(long, value_name = "NAME")]
    pub(crate) station: Option<String>,
    /// Only this merge group's (needs --config, which names the groups).
    #[arg(long, value_name = "NAME")]
    pub(crate) group: Option<String>,
    /// One JSON object, as the monitor's GET /archive/passes or /archive/volume answers.
    #[arg(long)]
    pub(crate) json: bool,
    /// The daemon's config: its merge groups (`[[links]]` of a `group`) and, for passes,
    /// archive.pass_gap_ms. Without it no source is in a group and the gap is 10 minutes.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// The time window and sources of `archive gaps` and `archive export`.
#[derive(Debug, clap::Args)]
pub(crate) struct WindowArgs {
    /// Only frames received at or after TIME: RFC 3339 (2026-11-24T10:00:00Z) or a time ago
    /// (-1d); from the oldest frame without it.
    #[arg(long, value_name = "TIME", value_parser = str::parse::<GivenTime>, allow_hyphen_values = true)]
    pub(crate) from: Option<GivenTime>,
    /// Only frames received at or before TIME; to the newest frame without it.
    #[arg(long, value_name = "TIME", value_parser = str::parse::<GivenTime>, allow_hyphen_values = true)]
    pub(crate) to: Option<GivenTime>,
    /// Only frames of this source, KIND:ID with KIND live or replay; repeat for more.
    #[arg(long, value_name = "KIND:ID", value_parser = parse_source)]
    pub(crate) source: Vec<(SourceKind, u32)>,
}

impl WindowArgs {
    /// The frames of this window and these sources, times ago counted back from `now`; the
    /// reason, when a time ago is before the epoch or --from is after --to.
    pub(crate) fn filter(self, now: SystemTime) -> Result<FrameFilter, String> {
        let filter = FrameFilter {
            sources: self.source,
            since: at(self.from.as_ref(), now).map_err(|why| format!("--from: {why}"))?,
            until: at(self.to.as_ref(), now).map_err(|why| format!("--to: {why}"))?,
            ..FrameFilter::default()
        };
        match filter.is_backwards(None) {
            true => Err("--from is after --to".into()),
            false => Ok(filter),
        }
    }
}

/// A time flag's time, if given, with `now` the command's one reading of the clock.
pub(crate) fn at(time: Option<&GivenTime>, now: SystemTime) -> Result<Option<u64>, String> {
    time.map(|time| time.at(now)).transpose()
}
