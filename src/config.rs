//! `aggregator.toml`: every knob an operator has, with its default and its validation.
//!
//! The file is checked completely before anything binds: unknown keys, malformed addresses and
//! capacities that would deadlock the pipeline are reported with the file, the key and the problem,
//! and the binary exits with status 2. `config/aggregator.toml` documents every key and a test parses it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

use crate::domain::shard::MAX_SHARDS;
use crate::protocol::ingest::{DATA_HEADER, MAX_CATALOG_BYTES};
use crate::tls::auth::AuthConfig;

/// The largest frame length the config accepts, to keep per-connection buffers sane.
const MAX_FRAME_LENGTH_LIMIT: usize = 16 * 1024 * 1024;

/// The smallest `connection.receive_buffer` the config accepts.
const MIN_RECEIVE_BUFFER: usize = 4096;

/// Upper bounds: past them a value is a typo, or an "unlimited" that would abort the start in an
/// allocation or a semaphore (a listener's slots, a queue's frames), not a setting.
const MAX_CONNECTIONS: usize = 1 << 20;
const MAX_QUEUE_FRAMES: usize = 1 << 20;
const MAX_READ_BUFFER: usize = 64 << 20;
const MAX_READ_BUDGET: usize = if usize::BITS > 32 {
    1 << 36
} else {
    usize::MAX
};
const MAX_SUBSCRIBERS: usize = 1 << 16;
const MAX_WORKER_THREADS: usize = 1024;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {key}: {}", source.message())]
    Parse {
        path: PathBuf,
        /// 1-based line of the offending text (0 when the parser gave no position).
        line: usize,
        /// The dotted key the error is about, such as `uplink.listen`, when it can be told.
        key: String,
        source: Box<toml::de::Error>,
    },
    #[error("{path}: {key}: {problem}")]
    Invalid {
        path: PathBuf,
        key: &'static str,
        problem: String,
    },
}

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where live satellite uplinks connect.
    #[serde(default = "ListenerConfig::uplink", deserialize_with = "uplink")]
    pub uplink: ListenerConfig,
    /// Where archived replay feeds connect.
    #[serde(default = "ListenerConfig::replay", deserialize_with = "replay")]
    pub replay: ListenerConfig,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub connection: ConnectionConfig,
    #[serde(default)]
    pub shutdown: ShutdownConfig,
    #[serde(default)]
    pub dashboard: DashboardConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub monitor: MonitorConfig,
    /// Where followers of the archive subscribe (`aggregator tail`, `docs/follow-protocol.md`).
    #[serde(default)]
    pub consumer: ConsumerConfig,
    #[serde(default)]
    pub feed: FeedConfig,
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub runtime: RuntimeConfig,
    #[serde(default)]
    pub archive: ArchiveConfig,
    /// Where the archive is published besides (`docs/scale-out.md`).
    #[serde(default)]
    pub sinks: SinksConfig,
    /// TLS on every source and consumer listener; plain TCP without it.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Which client certificate may speak for which sources (with `tls.client_ca`).
    #[serde(default)]
    pub auth: AuthConfig,
    /// What the file sets that takes no effect as written (see [`Config::ineffective_settings`]).
    #[serde(skip)]
    ineffective: Vec<String>,
}

/// `[tls]`: the daemon's certificate and key, and the CA of its clients' certificates. Read at
/// start and again on SIGHUP (`crate::tls`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The daemon's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Mutual TLS: a client must present a certificate this CA (PEM) signed, and
    /// `[[auth.clients]]` says which sources it may open.
    pub client_ca: Option<PathBuf>,
}

/// One TCP listener. `[uplink]` and `[replay]` have defaults of their own
/// ([`ListenerConfig::uplink`], [`ListenerConfig::replay`]), so a section is read as
/// [`ListenerKeys`] and what it leaves out comes from its own defaults.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to bind; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Connections beyond this are refused with `TooManyConnections`, not queued.
    pub max_connections: usize,
}

/// The keys of a listener's section as written: any of them may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerKeys {
    #[serde(default, deserialize_with = "some_socket_addr")]
    listen: Option<SocketAddr>,
    max_connections: Option<usize>,
}

impl ListenerKeys {
    /// `defaults` with the keys that were written.
    fn over(self, defaults: ListenerConfig) -> ListenerConfig {
        ListenerConfig {
            listen: self.listen.unwrap_or(defaults.listen),
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
        }
    }
}

fn uplink<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ListenerConfig, D::Error> {
    ListenerKeys::deserialize(deserializer).map(|keys| keys.over(ListenerConfig::uplink()))
}

fn replay<'de, D: Deserializer<'de>>(deserializer: D) -> Result<ListenerConfig, D::Error> {
    ListenerKeys::deserialize(deserializer).map(|keys| keys.over(ListenerConfig::replay()))
}

impl ListenerConfig {
    fn uplink() -> Self {
        ListenerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            max_connections: 1024,
        }
    }

    fn replay() -> Self {
        ListenerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7701)),
            max_connections: 64,
        }
    }
}

/// Capacities of the in-memory pipeline, counted in frames.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Routine frames the processor's input holds (waiting, or being processed).
    pub processor_capacity: usize,
    /// Emergency frames the processor's input holds, apart from routine ones so that an emergency
    /// never waits for routine frames to drain; and as many again in the archive's queue, so that
    /// it does not wait for a slow archive to make room either.
    pub emergency_capacity: usize,
    /// Routine frames handed to the archive and not yet written.
    pub archive_capacity: usize,
    /// Largest number of frames moved through the pipeline as one unit.
    pub max_batch_frames: usize,
    /// Starvation guard: after this many emergency frames in a row while routine frames wait, the
    /// processor takes one routine batch.
    pub emergency_streak: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            processor_capacity: 64,
            emergency_capacity: 64,
            archive_capacity: 1024,
            max_batch_frames: 64,
            emergency_streak: 256,
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionConfig {
    /// Largest message body accepted; a larger length prefix closes the connection.
    pub max_frame_length: usize,
    /// Most bytes read from one socket at a time.
    pub read_buffer: usize,
    /// Bytes of full read buffers shared by all connections: `read_budget / read_buffer`
    /// connections read a full buffer at a time (the credits are shared out among the shards, at
    /// least one each); the rest read 4 KiB, or wait their turn when
    /// their socket holds more (the `read_credit` module), so memory stays bounded whatever the
    /// number of sources. The default, 64 credits, is one for every source of the reference
    /// deployment (48 uplinks and their replay feeds) and no more: a read beyond those only waits
    /// in the fan-in's line, holding memory, and costs CPU per frame with many sources
    /// (`docs/architecture.md`).
    pub read_budget: usize,
    /// The kernel's receive buffer of each connection (`SO_RCVBUF`, set on the listeners): what
    /// the kernel may hold of a source's data the daemon has not read yet. Left out, the kernel
    /// sizes it (autotuning, up to `net.ipv4.tcp_rmem`'s largest per connection).
    pub receive_buffer: Option<usize>,
    /// Time a new connection has to send its hello.
    #[serde(rename = "handshake_timeout_ms", deserialize_with = "millis")]
    pub handshake_timeout: Duration,
    /// A connection that sends nothing for this long is closed.
    #[serde(rename = "idle_timeout_ms", deserialize_with = "millis")]
    pub idle_timeout: Duration,
    /// Acknowledgements to one source are coalesced to at most one per interval.
    #[serde(rename = "ack_interval_ms", deserialize_with = "millis")]
    pub ack_interval: Duration,
    /// ACKs per second across all connections: with many connections each one's interval
    /// stretches to `connections / ack_budget_per_sec` seconds, since every ACK is a system call
    /// (and on loopback also the peer's TCP receive). 5,000 leaves 48 sources their 10 ms and gives
    /// each of 10,000 one every 2 s.
    pub ack_budget_per_sec: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            max_frame_length: 64 * 1024,
            read_buffer: 128 * 1024,
            read_budget: 8 * 1024 * 1024,
            receive_buffer: None,
            handshake_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            ack_interval: Duration::from_millis(10),
            ack_budget_per_sec: 5_000,
        }
    }
}

/// The SIGTERM drain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Everything accepted must be processed and archived within this time after the signal.
    #[serde(rename = "drain_deadline_ms", deserialize_with = "millis")]
    pub drain_deadline: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_deadline: Duration::from_secs(5),
        }
    }
}

/// The monitoring dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// How often a stats snapshot is published and, when it changed, logged.
    #[serde(rename = "stats_interval_ms", deserialize_with = "millis")]
    pub stats_interval: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            stats_interval: Duration::from_secs(1),
        }
    }
}

/// The HTTP monitoring endpoint (`/stats`, `/metrics`, `/healthz`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MonitorConfig {
    /// Serve the endpoint at all.
    pub enabled: bool,
    /// Loopback by default: without `token_file` the endpoint has no authentication.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// A file holding a bearer token that `/stats`, `/feed`, `PUT /catalog` and the dashboard
    /// require (`crate::ops::access`).
    pub token_file: Option<PathBuf>,
    /// Require the token on `/healthz` and `/metrics` too.
    pub protect_all: bool,
    /// Connections at once; one more is answered 503 and closed. Each holds a file descriptor.
    pub max_connections: usize,
    /// A request's head must arrive whole within this, counted from the connection's accept or
    /// from the end of its previous response: a silent or half-sent request is closed.
    #[serde(rename = "header_read_timeout_ms", deserialize_with = "millis")]
    pub header_read_timeout: Duration,
    /// A connection on which nothing moves either way for this long (a stalled body, a client that
    /// stopped reading its response) is closed.
    #[serde(rename = "idle_timeout_ms", deserialize_with = "millis")]
    pub idle_timeout: Duration,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7780)),
            token_file: None,
            protect_all: false,
            max_connections: 256,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// The monitor's live feed, `GET /feed`: lossy WebSocket subscribers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Subscribers at once; one more is refused with HTTP 503.
    pub max_subscribers: usize,
    /// Bytes of socket reads one subscriber's queue may hold (its memory), shared out among the
    /// shards (each share takes at least one read): what does not fit is skipped for it and
    /// reported as a gap.
    pub queue_bytes: usize,
    /// Frames of each priority sent to one subscriber per second, at most (a second's worth may
    /// come at once); what it would get beyond is skipped and reported as a gap.
    pub max_frames_per_sec: u32,
    /// A subscriber that takes longer than this to accept what it is sent is disconnected.
    #[serde(rename = "send_timeout_ms", deserialize_with = "millis")]
    pub send_timeout: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            max_subscribers: 16,
            queue_bytes: 8 << 20,
            max_frames_per_sec: 1_000,
            send_timeout: Duration::from_secs(10),
        }
    }
}

/// The follow listener: consumers that read the archive from a position and then follow it live.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// Off unless asked for: it has no authentication and serves every archived frame.
    pub enabled: bool,
    /// Loopback by default, like the monitor.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    /// Followers beyond this are refused with `TooManyConnections`; each holds a read buffer of
    /// the archive (`follow::reader::READ_BUDGET`) and a file descriptor.
    pub max_connections: usize,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 7702)),
            max_connections: 64,
        }
    }
}

/// Catalog updates: `PUT /catalog`, fanned out to every connected source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Largest catalog body accepted, in bytes; a larger one is refused with HTTP 413.
    pub max_bytes: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig { max_bytes: 1 << 20 }
    }
}

/// The archive: the consumer that must receive every frame.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ArchiveConfig {
    pub kind: ArchiveKind,
    /// Directory of the segment files (created if missing); relative to the working directory.
    pub dir: PathBuf,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// When written frames count as stored and may be acknowledged.
    pub sync: SyncMode,
    /// With `sync = "interval"`: the longest a written frame waits for its `fsync`.
    #[serde(rename = "sync_interval_ms", deserialize_with = "millis")]
    pub sync_interval: Duration,
    /// Payload bytes written and not yet made durable, at most: past it the archive waits for its
    /// sync before writing more, so that the pipeline, and through it the senders, slow to what
    /// the disk makes durable rather than filling the page cache (`sync = "never"` has no bound).
    pub max_unsynced_bytes: u64,
}

/// Publishers of the archive into other systems; none unless a section is written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinksConfig {
    pub nats: Option<NatsConfig>,
}

/// `[sinks.nats]`: the archive published into a NATS JetStream stream, exactly once per frame
/// (`docs/scale-out.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NatsConfig {
    /// The NATS server, or several of the same cluster: `"nats://host:4222"` or a list.
    #[serde(deserialize_with = "one_or_many")]
    pub url: Vec<String>,
    /// The JetStream stream; created when missing, with `duplicate_window_s`.
    #[serde(default = "NatsConfig::default_stream")]
    pub stream: String,
    /// Each message's subject, from `{site}`, `{kind}` (`live` or `replay`) and `{source}`, each a
    /// whole dot-separated token.
    #[serde(default = "NatsConfig::default_subject")]
    pub subject: String,
    /// This daemon's name in subjects and message ids: unique per daemon, so that two sites'
    /// frames never share an id.
    pub site: String,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// A PEM file of CA certificates to trust; TLS is required when it is given.
    pub tls_ca: Option<PathBuf>,
    /// Publishes awaiting their PubAck at once.
    #[serde(default = "NatsConfig::default_window")]
    pub window: usize,
    /// The duplicate window asked for when the daemon creates the stream.
    #[serde(
        rename = "duplicate_window_s",
        default = "NatsConfig::default_duplicate_window",
        deserialize_with = "seconds"
    )]
    pub duplicate_window: Duration,
    /// `/healthz` says degraded when the oldest frame not yet acknowledged by JetStream was
    /// received longer ago than this (or the sink is disconnected).
    #[serde(
        rename = "max_lag_ms",
        default = "NatsConfig::default_max_lag",
        deserialize_with = "millis"
    )]
    pub max_lag: Duration,
}

/// A password: its `Debug` form hides it, so that a config printed for a bug report does not
/// carry it.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("\"(hidden)\"")
    }
}

impl NatsConfig {
    fn default_stream() -> String {
        "TELEMETRY".into()
    }

    fn default_subject() -> String {
        "telemetry.{site}.{kind}.{source}".into()
    }

    fn default_window() -> usize {
        256
    }

    fn default_duplicate_window() -> Duration {
        Duration::from_secs(600)
    }

    fn default_max_lag() -> Duration {
        Duration::from_secs(5)
    }

    /// The placeholders a subject template may hold.
    pub const PLACEHOLDERS: [&'static str; 3] = ["{site}", "{kind}", "{source}"];

    /// The stream's subject filter: the template with each placeholder token as `*`.
    pub fn stream_subjects(&self) -> String {
        self.subject
            .split('.')
            .map(|token| match Self::PLACEHOLDERS.contains(&token) {
                true => "*",
                false => token,
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Checks what serde cannot; an error names the key.
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.url.is_empty() {
            return Err(("sinks.nats.url", "names no server".into()));
        }
        for url in &self.url {
            if let Err(err) = url.parse::<async_nats::ServerAddr>() {
                return Err((
                    "sinks.nats.url",
                    format!(
                        "{url:?} is not a NATS server address ({err}); expected nats://HOST:PORT"
                    ),
                ));
            }
        }
        let token = |text: &str| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if !token(&self.site) {
            return Err((
                "sinks.nats.site",
                format!(
                    "{:?} must be a non-empty name of letters, digits, '-' and '_'",
                    self.site
                ),
            ));
        }
        if !token(&self.stream) {
            return Err((
                "sinks.nats.stream",
                format!(
                    "{:?} must be a non-empty name of letters, digits, '-' and '_'",
                    self.stream
                ),
            ));
        }
        self.check_subject()
            .map_err(|problem| ("sinks.nats.subject", problem))?;
        if self.window == 0 {
            return Err(("sinks.nats.window", "must be at least 1".into()));
        }
        if self.duplicate_window.is_zero() {
            return Err((
                "sinks.nats.duplicate_window_s",
                "must be at least 1 s".into(),
            ));
        }
        if self.max_lag.is_zero() {
            return Err(("sinks.nats.max_lag_ms", "must be at least 1 ms".into()));
        }
        match (&self.user, &self.password) {
            (Some(_), None) => Err((
                "sinks.nats.password",
                "user is set without a password".into(),
            )),
            (None, Some(_)) => Err(("sinks.nats.user", "password is set without a user".into())),
            (Some(_), Some(_)) if self.credentials.is_some() => Err((
                "sinks.nats.credentials",
                "set either a credentials file or user and password, not both".into(),
            )),
            _ => Ok(()),
        }
    }

    /// Each token of the template is a word or one whole placeholder, and every placeholder is
    /// there, so that every frame gets a subject of its own source.
    fn check_subject(&self) -> Result<(), String> {
        let subject = &self.subject;
        for token in subject.split('.') {
            let word = !token.is_empty()
                && !token.contains(['{', '}', '*', '>'])
                && !token.contains(char::is_whitespace);
            if !word && !Self::PLACEHOLDERS.contains(&token) {
                return Err(format!(
                    "{subject:?}: {token:?} is neither a word nor one of {{site}}, {{kind}}, {{source}}"
                ));
            }
        }
        for placeholder in Self::PLACEHOLDERS {
            if subject.split('.').filter(|t| *t == placeholder).count() != 1 {
                return Err(format!(
                    "{subject:?} must hold {placeholder} once, as a whole token"
                ));
            }
        }
        Ok(())
    }
}

/// Which archive the daemon keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchiveKind {
    /// Append every frame to CRC-checked segment files (`docs/archive.md`).
    Segments,
    /// Keep only the count: no durability (tests, benchmarks of the pipeline alone).
    Count,
}

/// The `archive.sync` setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// `fsync` after every group of batches the archive writes.
    Batch,
    /// `fsync` every `sync_interval_ms`.
    Interval,
    /// Never `fsync`: stored means handed to the operating system.
    Never,
}

impl Default for ArchiveConfig {
    fn default() -> Self {
        ArchiveConfig {
            kind: ArchiveKind::Segments,
            dir: PathBuf::from("archive"),
            segment_bytes: 64 * 1024 * 1024,
            sync: SyncMode::Interval,
            sync_interval: Duration::from_millis(20),
            max_unsynced_bytes: 32 * 1024 * 1024,
        }
    }
}

/// The async runtime that runs every task of the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads of the main runtime, which runs the listeners, handshakes, the router and
    /// the monitor. Registered connections and the pipeline run on the shards' threads
    /// ([`RuntimeConfig::shards`]), so 1 (the default) is enough.
    pub worker_threads: usize,
    /// Tasks a worker runs between two looks at the sockets' readiness (Tokio's
    /// `event_interval`, 61 by its default). Under saturation every task has a full read or a run
    /// of batches to do, so 61 of them delay noticing a socket that just got an emergency frame by
    /// milliseconds; 8 keeps the emergency probe's latency within its target at little cost in
    /// throughput (`docs/architecture.md`).
    pub event_interval: u32,
    /// Pipeline shards: each a whole chain (fan-in, processor, archive writer with its own
    /// segments) on a thread of its own, with the connections of the sources dealt to it. By
    /// default one per available core, at most [`MAX_SHARDS`].
    pub shards: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            worker_threads: 1,
            event_interval: 8,
            shards: std::thread::available_parallelism()
                .map_or(1, |cores| cores.get().min(MAX_SHARDS)),
        }
    }
}

impl RuntimeConfig {
    /// Builds the runtime: a current-thread runtime for one worker, a multi-thread one otherwise.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.worker_threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            n => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(n);
                builder
            }
        };
        builder
            .event_interval(self.event_interval)
            .enable_all()
            .build()
    }
}

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: a level such as `info`, or directives that each end in one, such as
    /// `info,aggregator=debug` (`check_log_filter`); `RUST_LOG` overrides it.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Human-readable lines for a terminal, or one JSON object per line for log collectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// Finds the line of a parse error and the dotted key written there (`section.key`), from the
/// nearest `[section]` header above it and the `key =` on its line, so that an operator is told
/// `uplink.listen`, not just `listen`.
fn locate(text: &str, span: Option<std::ops::Range<usize>>) -> (usize, String) {
    let Some(span) = span else {
        return (0, "(top level)".into());
    };
    let start = span.start.min(text.len());
    let line_start = text[..start].rfind('\n').map_or(0, |i| i + 1);
    let line_no = text[..line_start].matches('\n').count() + 1;
    let line = text[line_start..].lines().next().unwrap_or_default();
    let section = text[..line_start]
        .lines()
        .rev()
        .find_map(|l| {
            let l = l.trim();
            // `[section]`, or `[[section]]` for an array of tables.
            let header = l.strip_prefix('[')?.strip_suffix(']')?;
            Some(header.trim_matches(|c| c == '[' || c == ']').trim())
        })
        .filter(|_| !line.trim_start().starts_with('['));
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"'))
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let dotted = match (section, key) {
        (Some(s), Some(k)) => format!("{s}.{k}"),
        (None, Some(k)) => k.to_string(),
        (Some(s), None) => format!("[{s}]"),
        (None, None) => line.trim().to_string(),
    };
    (line_no, dotted)
}

/// Checks a `log.level` filter: each directive must be a level or end in `=LEVEL`.
///
/// `tracing` also takes a bare word that is not a level as a target with every level enabled,
/// so a misspelt level (`debgu`) would pass as a filter for a target of that name and the daemon
/// would log nothing; an empty filter would log nothing too. Spelling out `TARGET=LEVEL` costs
/// little, so a directive without a level is refused.
fn check_log_filter(filter: &str) -> Result<(), String> {
    let directives: Vec<&str> = filter.split(',').filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err("it names no level".into());
    }
    for directive in directives {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if level.trim().is_empty() || level.trim().parse::<LevelFilter>().is_err() {
            return Err(format!("{directive:?} names no level"));
        }
    }
    EnvFilter::try_new(filter)
        .map(drop)
        .map_err(|err| err.to_string())
}

/// The keys of `text` (already parsed) that take no effect: every `[consumer]` key but `enabled`
/// while `consumer.enabled` is not `true`. A `listen` alone does not enable the listener, which has
/// no authentication and serves every archived frame: that stays a decision of its own.
fn ineffective(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let Some(consumer) = table.get("consumer").and_then(toml::Value::as_table) else {
        return Vec::new();
    };
    if consumer.get("enabled").and_then(toml::Value::as_bool) == Some(true) {
        return Vec::new();
    }
    consumer
        .keys()
        .filter(|key| *key != "enabled")
        .map(|key| {
            format!(
                "consumer.{key} is set but consumer.enabled is not true: the follow listener is off"
            )
        })
        .collect()
}

fn socket_addr<'de, D: Deserializer<'de>>(deserializer: D) -> Result<SocketAddr, D::Error> {
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(|_| {
        serde::de::Error::custom(format!(
            "invalid socket address {text:?}: expected IP:PORT, such as 127.0.0.1:7700"
        ))
    })
}

fn some_socket_addr<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    socket_addr(deserializer).map(Some)
}

fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_secs)
}

/// A string or a list of strings.
fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(url) => vec![url],
        OneOrMany::Many(urls) => urls,
    })
}

fn millis<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    u64::deserialize(deserializer).map(Duration::from_millis)
}

impl Default for Config {
    fn default() -> Self {
        Config {
            uplink: ListenerConfig::uplink(),
            replay: ListenerConfig::replay(),
            pipeline: PipelineConfig::default(),
            connection: ConnectionConfig::default(),
            shutdown: ShutdownConfig::default(),
            dashboard: DashboardConfig::default(),
            log: LogConfig::default(),
            monitor: MonitorConfig::default(),
            feed: FeedConfig::default(),
            catalog: CatalogConfig::default(),
            consumer: ConsumerConfig::default(),
            runtime: RuntimeConfig::default(),
            archive: ArchiveConfig::default(),
            sinks: SinksConfig::default(),
            tls: None,
            auth: AuthConfig::default(),
            ineffective: Vec::new(),
        }
    }
}

impl Config {
    /// Reads, parses and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` only names the origin in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|source| {
            let (line, key) = locate(text, source.span());
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                key,
                source: Box::new(source),
            }
        })?;
        config
            .validate()
            .map_err(|(key, problem)| ConfigError::Invalid {
                path: path.to_owned(),
                key,
                problem,
            })?;
        config.ineffective = ineffective(text);
        Ok(config)
    }

    /// Checks the relations serde cannot: a failure names the key and the problem.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        // Counts: at least 1, and at most a bound where a larger value would abort the start.
        let none = usize::MAX;
        let c = &self.connection;
        let counts = [
            (
                "uplink.max_connections",
                self.uplink.max_connections,
                MAX_CONNECTIONS,
            ),
            (
                "replay.max_connections",
                self.replay.max_connections,
                MAX_CONNECTIONS,
            ),
            (
                "consumer.max_connections",
                self.consumer.max_connections,
                MAX_CONNECTIONS,
            ),
            (
                "monitor.max_connections",
                self.monitor.max_connections,
                MAX_CONNECTIONS,
            ),
            (
                "pipeline.processor_capacity",
                self.pipeline.processor_capacity,
                MAX_QUEUE_FRAMES,
            ),
            (
                "pipeline.emergency_capacity",
                self.pipeline.emergency_capacity,
                MAX_QUEUE_FRAMES,
            ),
            (
                "pipeline.archive_capacity",
                self.pipeline.archive_capacity,
                MAX_QUEUE_FRAMES,
            ),
            (
                "pipeline.max_batch_frames",
                self.pipeline.max_batch_frames,
                none,
            ),
            (
                "pipeline.emergency_streak",
                self.pipeline.emergency_streak,
                none,
            ),
            ("connection.read_buffer", c.read_buffer, MAX_READ_BUFFER),
            ("connection.read_budget", c.read_budget, MAX_READ_BUDGET),
            (
                "connection.ack_budget_per_sec",
                c.ack_budget_per_sec as usize,
                none,
            ),
            (
                "feed.max_subscribers",
                self.feed.max_subscribers,
                MAX_SUBSCRIBERS,
            ),
            ("catalog.max_bytes", self.catalog.max_bytes, none),
            (
                "feed.max_frames_per_sec",
                self.feed.max_frames_per_sec as usize,
                none,
            ),
            (
                "runtime.worker_threads",
                self.runtime.worker_threads,
                MAX_WORKER_THREADS,
            ),
            ("runtime.shards", self.runtime.shards, MAX_SHARDS),
            (
                "runtime.event_interval",
                self.runtime.event_interval as usize,
                none,
            ),
        ];
        for (key, value, most) in counts {
            if value == 0 {
                return Err((key, "must be at least 1".into()));
            }
            if value > most {
                return Err((key, format!("{value} is above the most accepted, {most}")));
            }
        }
        let durations = [
            (
                "connection.handshake_timeout_ms",
                self.connection.handshake_timeout,
            ),
            ("connection.idle_timeout_ms", self.connection.idle_timeout),
            ("connection.ack_interval_ms", self.connection.ack_interval),
            ("shutdown.drain_deadline_ms", self.shutdown.drain_deadline),
            ("dashboard.stats_interval_ms", self.dashboard.stats_interval),
            ("archive.sync_interval_ms", self.archive.sync_interval),
            ("feed.send_timeout_ms", self.feed.send_timeout),
            (
                "monitor.header_read_timeout_ms",
                self.monitor.header_read_timeout,
            ),
            ("monitor.idle_timeout_ms", self.monitor.idle_timeout),
        ];
        for (key, value) in durations {
            if value.is_zero() {
                return Err((key, "must be at least 1 ms".into()));
            }
        }
        let p = &self.pipeline;
        let smallest = p
            .processor_capacity
            .min(p.emergency_capacity)
            .min(p.archive_capacity);
        if p.max_batch_frames > smallest {
            return Err((
                "pipeline.max_batch_frames",
                format!(
                    "{} exceeds the smallest frame capacity ({smallest}): a batch must fit in every queue",
                    p.max_batch_frames
                ),
            ));
        }
        if c.read_budget < c.read_buffer {
            return Err((
                "connection.read_budget",
                format!(
                    "{} is below connection.read_buffer ({}): the budget must hold at least one full read",
                    c.read_budget, c.read_buffer
                ),
            ));
        }
        if let Some(bytes) = c.receive_buffer.filter(|&b| b < MIN_RECEIVE_BUFFER) {
            return Err((
                "connection.receive_buffer",
                format!(
                    "{bytes} is below {MIN_RECEIVE_BUFFER} bytes (leave it out for the kernel's own sizing)"
                ),
            ));
        }
        if self.feed.queue_bytes < c.read_buffer {
            return Err((
                "feed.queue_bytes",
                format!(
                    "{} is below connection.read_buffer ({}): a subscriber's queue must hold at least one full read",
                    self.feed.queue_bytes, c.read_buffer
                ),
            ));
        }
        if self.catalog.max_bytes > MAX_CATALOG_BYTES {
            return Err((
                "catalog.max_bytes",
                format!(
                    "{} is above the protocol's limit of {MAX_CATALOG_BYTES} bytes",
                    self.catalog.max_bytes
                ),
            ));
        }
        let frame = self.connection.max_frame_length;
        if !(DATA_HEADER..=MAX_FRAME_LENGTH_LIMIT).contains(&frame) {
            return Err((
                "connection.max_frame_length",
                format!("{frame} is outside {DATA_HEADER}..={MAX_FRAME_LENGTH_LIMIT} bytes"),
            ));
        }
        if self.uplink.listen.port() != 0 && self.uplink.listen == self.replay.listen {
            return Err((
                "replay.listen",
                format!("{} is also the uplink address", self.replay.listen),
            ));
        }
        if self.archive.segment_bytes < 4096 {
            return Err((
                "archive.segment_bytes",
                format!(
                    "{} is below the 4096-byte minimum",
                    self.archive.segment_bytes
                ),
            ));
        }
        if self.archive.max_unsynced_bytes == 0 {
            return Err((
                "archive.max_unsynced_bytes",
                "0 would let nothing be written; it must be at least 1".to_string(),
            ));
        }
        let monitor = self.monitor.listen;
        if self.monitor.enabled
            && monitor.port() != 0
            && (monitor == self.uplink.listen || monitor == self.replay.listen)
        {
            return Err((
                "monitor.listen",
                format!("{monitor} is also a source listener's address"),
            ));
        }
        let consumer = self.consumer.listen;
        if self.consumer.enabled
            && consumer.port() != 0
            && (consumer == self.uplink.listen
                || consumer == self.replay.listen
                || (self.monitor.enabled && consumer == monitor))
        {
            return Err((
                "consumer.listen",
                format!("{consumer} is also another listener's address"),
            ));
        }
        if let Some(nats) = &self.sinks.nats {
            nats.validate()?;
            if self.archive.kind != ArchiveKind::Segments {
                return Err((
                    "sinks.nats",
                    "publishes the archive's files: it needs archive.kind = \"segments\"".into(),
                ));
            }
        }
        self.validate_auth()?;
        if self.monitor.protect_all && self.monitor.token_file.is_none() {
            return Err((
                "monitor.protect_all",
                "needs monitor.token_file: there is no token to require".into(),
            ));
        }
        if let Err(problem) = check_log_filter(&self.log.level) {
            return Err((
                "log.level",
                format!(
                    "{:?} is not a valid filter: {problem}; expected a level (trace, debug, \
                     info, warn, error or off) or comma-separated directives that each end in \
                     one, such as \"info,aggregator=debug\"",
                    self.log.level
                ),
            ));
        }
        Ok(())
    }

    /// `[[auth.clients]]` needs mutual TLS to know who a client is, and mutual TLS needs at least
    /// one entry, since nothing is allowed by default.
    fn validate_auth(&self) -> Result<(), (&'static str, String)> {
        let mutual = self.tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
        match (mutual, self.auth.clients.is_empty()) {
            (true, true) => {
                return Err((
                    "auth.clients",
                    "tls.client_ca is set but no [[auth.clients]] entry says which sources a \
                     client certificate may open: every HELLO would be refused"
                        .into(),
                ))
            }
            (false, false) => {
                return Err((
                    "auth.clients",
                    "needs tls.client_ca: without client certificates no client has an identity"
                        .into(),
                ))
            }
            _ => {}
        }
        for client in &self.auth.clients {
            if client.identity.is_empty() {
                return Err(("auth.clients.identity", "must not be empty".into()));
            }
            if client.sources.is_empty() {
                return Err((
                    "auth.clients.sources",
                    format!("{:?} is allowed no source", client.identity),
                ));
            }
        }
        Ok(())
    }

    /// What the file sets that takes no effect as written, each with the reason (logged at start):
    /// `[consumer]` keys without `enabled = true`, whose listener then does not listen.
    pub fn ineffective_settings(&self) -> &[String] {
        &self.ineffective
    }

    /// The listeners bound to an address other than loopback while `[tls]` is absent (and, for the
    /// monitor, `monitor.token_file` too), each with what anyone who reaches it may do (logged at
    /// start, and reported on `/healthz`).
    pub fn exposure_warnings(&self) -> Vec<String> {
        if self.tls.is_some() {
            return Vec::new();
        }
        const CLAIM: &str = "anyone who reaches it may claim any source";
        let mut listeners = vec![
            ("uplink", self.uplink.listen, CLAIM),
            ("replay", self.replay.listen, CLAIM),
        ];
        if self.consumer.enabled {
            let reads = "anyone who reaches it may read every archived frame";
            listeners.push(("consumer", self.consumer.listen, reads));
        }
        if self.monitor.enabled && self.monitor.token_file.is_none() {
            let publishes = "anyone who reaches it may read the feed and publish catalogs";
            listeners.push(("monitor", self.monitor.listen, publishes));
        }
        listeners
            .into_iter()
            .filter(|(_, addr, _)| !addr.ip().is_loopback())
            .map(|(name, addr, risk)| {
                let guard = match name {
                    "monitor" => "neither TLS ([tls]) nor a token (monitor.token_file)",
                    _ => "no TLS ([tls])",
                };
                format!("the {name} listener on {addr} is not loopback and has {guard}: {risk}")
            })
            .collect()
    }

    /// How many connections may read a full `read_buffer` at once: `read_budget / read_buffer`.
    pub fn read_credits(&self) -> usize {
        self.connection.read_budget / self.connection.read_buffer
    }

    /// The interval between ACKs to one source when `connections` are open: `ack_interval`, or
    /// longer when the connections together would exceed `ack_budget_per_sec`.
    pub fn ack_interval(&self, connections: u64) -> Duration {
        let c = &self.connection;
        let share = Duration::from_secs_f64(connections as f64 / c.ack_budget_per_sec as f64);
        c.ack_interval.max(share)
    }

    /// The most frames that can be inside the pipeline at once (accepted, not yet archived), not
    /// counting one decoded socket read per connection waiting to be admitted.
    pub fn pipeline_frame_bound(&self) -> usize {
        self.pipeline.processor_capacity
            + self.pipeline.emergency_capacity
            + self.pipeline.archive_capacity
    }
}
