//! `aggregator.toml`: every knob an operator has, with its default and its validation.
//!
//! The file is checked completely before anything binds: unknown keys, malformed addresses and
//! capacities that would deadlock the pipeline are reported with the file, the key and the problem,
//! and the binary exits with status 2. `config/aggregator.toml` documents every key and a test parses it.
//!
//! Layout: one file per `[section]`, each with its struct, its defaults and its own `validate`
//! (numeric bounds as a table, [`bounds`]); this file holds the whole, its loading, the typed
//! error, and the rules that relate sections to each other (listeners on one address, mutual TLS
//! and `[[auth.clients]]`, exposure warnings, settings that take no effect).

mod archive;
mod auth;
mod bounds;
mod catalog;
mod clock;
mod connection;
mod consumer;
mod dashboard;
mod de;
mod error;
mod feed;
mod links;
mod listener;
mod log;
mod monitor;
mod pipeline;
mod runtime;
mod shutdown;
mod sinks;
mod tls;
mod tm;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use bounds::ConnectionKeys;

pub use archive::Protected;
pub use archive::RetentionConfig;
pub use archive::{ArchiveConfig, ArchiveKind, SyncMode, DEFAULT_PASS_GAP};
pub use auth::AuthClient;
pub use auth::SourceRangeError;
pub use auth::{AuthConfig, SourceRange};
pub use catalog::CatalogConfig;
pub use clock::ClockConfig;
pub use connection::ConnectionConfig;
pub use consumer::ConsumerConfig;
pub use dashboard::DashboardConfig;
pub use error::Problem;
pub use error::{ConfigError, Invalid};
pub use error::{LogFilterError, SubjectError, Unit};
pub use feed::FeedConfig;
pub use links::LinkConfig;
pub use links::TimeUnit;
pub use links::{EarthTimeField, FieldRule, FramingName, LengthFieldConfig, Transport};
pub use links::{KissPayload, Unmatched};
pub use listener::ListenerConfig;
pub use log::LogConfig;
pub use log::LogFormat;
pub use monitor::MonitorConfig;
pub use pipeline::PipelineConfig;
pub use runtime::RuntimeConfig;
pub use shutdown::ShutdownConfig;
pub use sinks::{AckMode, Identity, StreamLayout};
pub use sinks::{NatsConfig, SinksConfig};
pub use tls::TlsConfig;
pub use tm::TmSelection;
pub use tm::{TmForwardConfig, TmFraming, TmServerConfig, TmStart};

/// The whole daemon configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Where live satellite uplinks connect.
    #[serde(
        default = "ListenerConfig::uplink",
        deserialize_with = "listener::uplink"
    )]
    pub uplink: ListenerConfig,
    /// Where archived replay feeds connect.
    #[serde(
        default = "ListenerConfig::replay",
        deserialize_with = "listener::replay"
    )]
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
    /// What a step of the wall clock is (`docs/guarantees.md`, "Time").
    #[serde(default)]
    pub clock: ClockConfig,
    /// Where the archive is published besides (`docs/scale-out.md`).
    #[serde(default)]
    pub sinks: SinksConfig,
    /// TLS on every source and consumer listener; plain TCP without it.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Which client certificate may speak for which sources (with `tls.client_ca`).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Ground-segment inputs: stations' CCSDS packets (`docs/ground-segment.md`).
    #[serde(default)]
    pub links: Vec<LinkConfig>,
    /// Listeners that serve the archive's space packets to mission control (`docs/tm-server.md`).
    #[serde(default)]
    pub tm_servers: Vec<TmServerConfig>,
    /// The archive's space packets sent as UDP datagrams.
    #[serde(default)]
    pub tm_forwards: Vec<TmForwardConfig>,
    /// What the file sets that takes no effect as written (see [`Config::ineffective_settings`]).
    #[serde(skip)]
    ineffective: Vec<String>,
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
            clock: ClockConfig::default(),
            sinks: SinksConfig::default(),
            tls: None,
            auth: AuthConfig::default(),
            links: Vec::new(),
            tm_servers: Vec::new(),
            tm_forwards: Vec::new(),
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
            .map_err(|Invalid { key, problem }| ConfigError::Invalid {
                path: path.to_owned(),
                key,
                problem,
            })?;
        config.ineffective = match text.parse::<toml::Table>() {
            Ok(table) => consumer::ineffective(&table),
            Err(_) => Vec::new(),
        };
        config.ineffective.extend(config.removed_keys());
        Ok(config)
    }

    /// Checks what serde cannot: each section's own rules, then the relations between sections.
    /// A failure names the key and the problem.
    pub fn validate(&self) -> Result<(), Invalid> {
        self.uplink.validate(ConnectionKeys {
            total: "uplink.max_connections",
            per_address: "uplink.max_connections_per_address",
        })?;
        self.replay.validate(ConnectionKeys {
            total: "replay.max_connections",
            per_address: "replay.max_connections_per_address",
        })?;
        self.consumer.validate()?;
        self.monitor.validate()?;
        self.pipeline.validate()?;
        self.connection.validate()?;
        self.feed.validate()?;
        self.catalog.validate()?;
        self.runtime.validate()?;
        self.shutdown.validate()?;
        self.dashboard.validate()?;
        self.archive.validate(self.runtime.shards)?;
        self.clock.validate()?;
        self.log.validate()?;
        self.auth.validate()?;
        links::validate(&self.links)?;
        if let Some(nats) = &self.sinks.nats {
            nats.validate()?;
        }
        tm::validate(&self.tm_servers, &self.tm_forwards)?;
        self.validate_relations()
    }

    /// The rules that relate one section to another.
    fn validate_relations(&self) -> Result<(), Invalid> {
        let read_buffer = self.connection.read_buffer;
        if self.feed.queue_bytes < read_buffer {
            let problem = Problem::BelowReadBuffer {
                value: self.feed.queue_bytes,
                read_buffer,
                must_hold: "a subscriber's queue must hold at least one full read",
            };
            return Err(Invalid::new("feed.queue_bytes", problem));
        }
        self.validate_addresses()?;
        if self.sinks.nats.is_some() && self.archive.kind != ArchiveKind::Segments {
            let rule = "publishes the archive's files: it needs archive.kind = \"segments\"";
            return Err(Invalid::new("sinks.nats", Problem::Rule(rule)));
        }
        let retention = &self.archive.retention;
        if retention.protect.contains(&Protected::Nats) && self.sinks.nats.is_none() {
            let problem =
                Problem::Needs("[sinks.nats]: it protects the NATS sink's unread segments");
            return Err(Invalid::new("archive.retention.protect", problem));
        }
        let replicated = (self.sinks.nats.as_ref()).is_some_and(|n| n.ack == AckMode::Replicated);
        if replicated
            && retention.max_age.is_some()
            && !retention.protect.contains(&Protected::Nats)
        {
            let problem = Problem::Needs(
                "protect = [\"nats\"] with sinks.nats.ack = \"replicated\": a frame deleted before \
                 JetStream has it is never acknowledged",
            );
            return Err(Invalid::new("archive.retention.max_age", problem));
        }
        if retention.is_bounded() && self.archive.kind != ArchiveKind::Segments {
            let rule = "deletes segment files: it needs archive.kind = \"segments\"";
            return Err(Invalid::new("archive.retention", Problem::Rule(rule)));
        }
        if self.archive.kind != ArchiveKind::Segments {
            let rule = "serves the archive's files: it needs archive.kind = \"segments\"";
            if !self.tm_servers.is_empty() {
                return Err(Invalid::new("tm_servers", Problem::Rule(rule)));
            }
            if !self.tm_forwards.is_empty() {
                return Err(Invalid::new("tm_forwards", Problem::Rule(rule)));
            }
        }
        self.validate_auth()
    }

    /// No two listeners that bind share an address (port 0 picks a free port each time).
    fn validate_addresses(&self) -> Result<(), Invalid> {
        let taken = |key, addr: SocketAddr, other| {
            let problem = Problem::AddressTaken { addr, other };
            Err(Invalid::new(key, problem))
        };
        let (uplink, replay) = (self.uplink.listen, self.replay.listen);
        if uplink.port() != 0 && uplink == replay {
            return taken("replay.listen", replay, "the uplink address");
        }
        let monitor = self.monitor.listen;
        if self.monitor.enabled && monitor.port() != 0 && (monitor == uplink || monitor == replay) {
            return taken("monitor.listen", monitor, "a source listener's address");
        }
        let consumer = self.consumer.listen;
        if self.consumer.enabled
            && consumer.port() != 0
            && (consumer == uplink
                || consumer == replay
                || (self.monitor.enabled && consumer == monitor))
        {
            return taken("consumer.listen", consumer, "another listener's address");
        }
        let others = [
            Some(uplink),
            Some(replay),
            self.monitor.enabled.then_some(monitor),
            self.consumer.enabled.then_some(consumer),
        ];
        match self
            .tm_servers
            .iter()
            .find(|tm| tm.listen.port() != 0 && others.contains(&Some(tm.listen)))
        {
            Some(tm) => taken("tm_servers.listen", tm.listen, "another listener's address"),
            None => Ok(()),
        }
    }

    /// `[[auth.clients]]` needs mutual TLS to know who a client is, and mutual TLS needs at least
    /// one entry, since nothing is allowed by default.
    fn validate_auth(&self) -> Result<(), Invalid> {
        let mutual = self.tls.as_ref().is_some_and(|tls| tls.client_ca.is_some());
        let problem = match (mutual, self.auth.clients.is_empty()) {
            (true, true) => Problem::Rule(
                "tls.client_ca is set but no [[auth.clients]] entry says which sources a \
                 client certificate may open: every HELLO would be refused",
            ),
            (false, false) => Problem::Needs(
                "tls.client_ca: without client certificates no client has an identity",
            ),
            _ => return Ok(()),
        };
        Err(Invalid::new("auth.clients", problem))
    }

    /// What the file sets that takes no effect as written, each with the reason (logged at start):
    /// `[consumer]` keys without `enabled = true`, whose listener then does not listen, and keys
    /// an earlier build read that this one ignores.
    pub fn ineffective_settings(&self) -> &[String] {
        &self.ineffective
    }

    /// The keys an earlier build read and this one does not, set in the file: accepted for a
    /// major release with a warning each, so that a file written for that build still starts
    /// (docs/compatibility.md, "Configuration").
    fn removed_keys(&self) -> Vec<String> {
        let removed = [(
            "pipeline.dashboard_capacity",
            self.pipeline.removed_dashboard_capacity.is_some(),
            "the stats log no longer follows every frame",
        )];
        (removed.into_iter())
            .filter(|(_, set, _)| *set)
            .map(|(key, _, why)| {
                format!(
                    "{key} is no longer read ({why}) and is ignored; remove it: the next major \
                     release refuses it"
                )
            })
            .collect()
    }

    /// The listeners bound to an address other than loopback while `[tls]` is absent (and, for the
    /// monitor, `monitor.token_file` too), and the links and TM servers beyond loopback (they have
    /// no TLS), each with what anyone who reaches it may do (logged at start, and reported on
    /// `/healthz`).
    pub fn exposure_warnings(&self) -> Vec<String> {
        // Links and TM servers have no TLS: beyond loopback they are open with or without `[tls]`.
        let mut open: Vec<String> = (self.links.iter())
            .filter(|l| l.transport != Transport::TcpConnect)
            .filter_map(|l| Some((l, l.bind_address()?)))
            .filter(|(_, addr)| !addr.ip().is_loopback())
            .map(|(l, addr)| {
                format!(
                    "the link {:?} on {addr} is not loopback and has no TLS: anyone who reaches it \
                     may send packets as its station",
                    l.name
                )
            })
            .collect();
        open.extend(
            (self.tm_servers.iter())
                .filter(|t| !t.listen.ip().is_loopback())
                .map(|t| {
                    format!(
                        "the TM server {:?} on {} is not loopback and has no TLS: anyone who \
                         reaches it may read every packet it serves",
                        t.name, t.listen
                    )
                }),
        );
        if self.tls.is_some() {
            return open;
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
            .chain(open)
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
