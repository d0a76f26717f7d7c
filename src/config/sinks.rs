//! `[sinks]`: publishers of the archive into other systems; `[sinks.nats]` is the one there is.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound, UNBOUNDED};
use super::de::{millis, one_or_many, seconds};
use super::error::{Invalid, Problem, SubjectError};
use crate::domain::replication::MOST_PACE;

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
    /// This daemon's name in subjects and messages: unique per daemon, so that two sites' frames
    /// never share a series or a message id.
    pub site: String,
    /// A `.creds` file (JWT and NKey seed).
    pub credentials: Option<PathBuf>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    /// A PEM file of CA certificates to trust; TLS is required when it is given.
    pub tls_ca: Option<PathBuf>,
    /// Messages awaiting their PubAck at once (in layouts `records/1` and `records/2`, one per
    /// source at most).
    #[serde(default = "NatsConfig::default_window")]
    pub window: usize,
    /// The duplicate window asked for when the daemon creates the stream (what layout `frame/1`
    /// relies on; `records/1` and `records/2` do not).
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
    /// What an ACK to a sender promises: durable in this daemon's archive (`local`), or that and
    /// acknowledged by JetStream (`replicated`).
    #[serde(default)]
    pub ack: AckMode,
    /// Whose series a subject is: this daemon's (`site`), or the source's wherever it connects
    /// (`fleet`: subjects and ids without the site, so that a source failing over to another
    /// daemon continues its own series).
    #[serde(default)]
    pub identity: Identity,
    /// The layout of the stream when the daemon creates it (`docs/scale-out.md`, "Layouts"); a
    /// stream found keeps its own.
    #[serde(default)]
    pub layout: StreamLayout,
    /// The replicas asked for when the daemon creates the stream.
    #[serde(default = "NatsConfig::default_replicas")]
    pub replicas: usize,
    /// With `ack = "replicated"`: the most frames written to the archive and not yet acknowledged
    /// by JetStream before the archive stops taking routine frames (emergencies get twice as
    /// many), so that an outage of JetStream slows the senders instead of piling up. Below it, the
    /// room follows what the sink publishes in `emergency_wait`.
    #[serde(default = "NatsConfig::default_max_unreplicated")]
    pub max_unreplicated_frames: u64,
    /// With `ack = "replicated"`: about how long an emergency waits for the sink to read the
    /// routine frames archived before it; the sink lengthens it, up to 200 ms, while it waits for
    /// frames (`crate::domain::replication`). Shorter: emergencies sooner, fewer frames a second.
    #[serde(
        rename = "emergency_wait_ms",
        default = "NatsConfig::default_emergency_wait",
        deserialize_with = "millis"
    )]
    pub emergency_wait: Duration,
}

/// `sinks.nats.ack`: when a frame is acknowledged to its sender.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    /// Once it is durable in this daemon's archive.
    #[default]
    Local,
    /// Once it is durable in the archive and JetStream has acknowledged it: it outlives the
    /// loss of this machine.
    Replicated,
}

/// `sinks.nats.layout`: how a stream the daemon creates lays frames out in messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
pub enum StreamLayout {
    /// Frame records of one source a message, compressed where that pays.
    #[default]
    #[serde(rename = "records/2")]
    Records2,
    /// As `records/2`, never compressed: for consumers of builds before `records/2`.
    #[serde(rename = "records/1")]
    Records1,
}

/// `sinks.nats.identity`: the scope of message ids and subjects.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Identity {
    /// `{site}.{kind}.{source}.{seq}`: each daemon's frames its own.
    #[default]
    Site,
    /// `{kind}.{source}.{seq}`: a source's frames are one series across the fleet.
    Fleet,
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

    fn default_replicas() -> usize {
        1
    }

    fn default_max_unreplicated() -> u64 {
        65_536
    }

    fn default_emergency_wait() -> Duration {
        MOST_PACE
    }

    /// The most replicas a JetStream stream has.
    const MAX_REPLICAS: u64 = 5;

    /// The placeholders a subject template may hold.
    pub(crate) const PLACEHOLDERS: [&'static str; 3] = ["{site}", "{kind}", "{source}"];

    /// The stream's subject filter: the template with each placeholder token as `*`.
    pub(crate) fn stream_subjects(&self) -> String {
        self.subject
            .split('.')
            .map(|token| match Self::PLACEHOLDERS.contains(&token) {
                true => "*",
                false => token,
            })
            .collect::<Vec<_>>()
            .join(".")
    }

    /// Checks what serde cannot; an error names the key. That the archive has files to publish is
    /// the whole's to check.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        if self.url.is_empty() {
            return Err(Invalid::new(
                "sinks.nats.url",
                Problem::Rule("names no server"),
            ));
        }
        for url in &self.url {
            if let Err(source) = url.parse::<async_nats::ServerAddr>() {
                let problem = Problem::NotNatsServer {
                    url: url.clone(),
                    source,
                };
                return Err(Invalid::new("sinks.nats.url", problem));
            }
        }
        let token = |text: &str| {
            !text.is_empty()
                && text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        for (key, name) in [
            ("sinks.nats.site", &self.site),
            ("sinks.nats.stream", &self.stream),
        ] {
            if !token(name) {
                return Err(Invalid::new(key, Problem::NotAName(name.clone())));
            }
        }
        self.check_subject()
            .map_err(|err| Invalid::new("sinks.nats.subject", Problem::Subject(err)))?;
        bounds::check(&[
            Bound::count("sinks.nats.window", self.window, UNBOUNDED),
            Bound::seconds("sinks.nats.duplicate_window_s", self.duplicate_window),
            Bound::millis("sinks.nats.max_lag_ms", self.max_lag),
            Bound::count("sinks.nats.replicas", self.replicas, Self::MAX_REPLICAS)
                .most_because("a JetStream stream has at most 5 replicas"),
            Bound::count(
                "sinks.nats.max_unreplicated_frames",
                self.max_unreplicated_frames,
                UNBOUNDED,
            ),
            Bound::millis("sinks.nats.emergency_wait_ms", self.emergency_wait)
                .within(10..=200)
                .least_because("the sink reads and publishes in steps of a few ms")
                .most_because("the gate holds at most 200 ms of the sink's publishing"),
        ])?;
        let (key, rule) = match (&self.user, &self.password) {
            (Some(_), None) => ("sinks.nats.password", "user is set without a password"),
            (None, Some(_)) => ("sinks.nats.user", "password is set without a user"),
            (Some(_), Some(_)) if self.credentials.is_some() => (
                "sinks.nats.credentials",
                "set either a credentials file or user and password, not both",
            ),
            _ => return Ok(()),
        };
        Err(Invalid::new(key, Problem::Rule(rule)))
    }

    /// Each token of the template is a word or one whole placeholder, and every placeholder is
    /// there, so that every frame gets a subject of its own source.
    fn check_subject(&self) -> Result<(), SubjectError> {
        let subject = &self.subject;
        for token in subject.split('.') {
            let word = !token.is_empty()
                && !token.contains(['{', '}', '*', '>'])
                && !token.contains(char::is_whitespace);
            if !word && !Self::PLACEHOLDERS.contains(&token) {
                return Err(SubjectError::Token {
                    subject: subject.clone(),
                    token: token.into(),
                });
            }
        }
        for placeholder in Self::PLACEHOLDERS {
            let count = subject.split('.').filter(|t| *t == placeholder).count();
            if placeholder == "{site}" && self.identity == Identity::Fleet {
                if count > 0 {
                    return Err(SubjectError::SiteInFleet {
                        subject: subject.clone(),
                    });
                }
                continue;
            }
            if count != 1 {
                return Err(SubjectError::Placeholder {
                    subject: subject.clone(),
                    placeholder,
                });
            }
        }
        Ok(())
    }
}
