//! Every way the file can be wrong, as types: [`ConfigError`] for the file as a whole, and
//! [`Invalid`] (a key and its [`Problem`]) for what a section's `validate` or a rule between
//! sections refuses. The messages name the key and say what is accepted instead.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

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
        problem: Problem,
    },
}

/// A value the file may hold as syntax but not as a setting: the dotted key and what is wrong.
/// Each section's `validate` returns it; `Config::parse` adds the file ([`ConfigError::Invalid`]).
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct Invalid {
    pub key: &'static str,
    pub problem: Problem,
}

impl Invalid {
    pub(super) fn new(key: &'static str, problem: Problem) -> Invalid {
        Invalid { key, problem }
    }
}

/// What is wrong with a key's value.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// Below its bound (`bounds`); a zero where 1 is the least reads "must be at least 1".
    #[error("{}", too_small(*.value, *.least, *.unit, *.note))]
    TooSmall {
        value: u64,
        least: u64,
        unit: Unit,
        note: Option<&'static str>,
    },
    /// Above its bound: a typo, or an "unlimited" that would abort the start.
    #[error("{value} is above the most accepted, {}{}", Amount(*.most, *.unit), Note(*.note))]
    TooLarge {
        value: u64,
        most: u64,
        unit: Unit,
        note: Option<&'static str>,
    },
    #[error(
        "{batch} exceeds the smallest frame capacity ({smallest}): a batch must fit in every queue"
    )]
    BatchExceedsQueue { batch: usize, smallest: usize },
    #[error("{value} is below connection.read_buffer ({read_buffer}): {must_hold}")]
    BelowReadBuffer {
        value: usize,
        read_buffer: usize,
        /// Why one full read must fit.
        must_hold: &'static str,
    },
    /// A listener's address that another listener binds too.
    #[error("{addr} is also {other}")]
    AddressTaken {
        addr: SocketAddr,
        other: &'static str,
    },
    /// The key takes effect only with another one, named with the reason.
    #[error("needs {0}")]
    Needs(&'static str),
    /// A rule of the key's own, in words.
    #[error("{0}")]
    Rule(&'static str),
    #[error("{identity:?} is allowed no source")]
    NoSource { identity: String },
    #[error("{url:?} is not a NATS server address ({source}); expected nats://HOST:PORT")]
    NotNatsServer { url: String, source: std::io::Error },
    #[error("{0:?} must be a non-empty name of letters, digits, '-' and '_'")]
    NotAName(String),
    /// A name that must tell one entry from the others, given twice.
    #[error("{0:?} names another entry already")]
    Duplicate(String),
    #[error(transparent)]
    Subject(SubjectError),
    /// A rule of one `[[links]]` entry, named.
    #[error("in the link {link:?}: {problem}")]
    InLink { link: String, problem: String },
    #[error(
        "{filter:?} is not a valid filter: {source}; expected a level (trace, debug, info, warn, \
         error or off) or comma-separated directives that each end in one, such as \
         \"info,aggregator=debug\""
    )]
    LogFilter {
        filter: String,
        source: LogFilterError,
    },
}

/// "must be at least 1 ms" for a zero, "1024 is below the least accepted, 4096 bytes" otherwise.
fn too_small(value: u64, least: u64, unit: Unit, note: Option<&'static str>) -> String {
    match (value, least) {
        (0, 1) => format!("must be at least {}{}", Amount(1, unit), Note(note)),
        _ => format!(
            "{value} is below the least accepted, {}{}",
            Amount(least, unit),
            Note(note)
        ),
    }
}

/// What a bounded value counts, for the message that names the bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    /// Frames, connections, threads, per-second rates: the number alone.
    Count,
    Bytes,
    Millis,
    Seconds,
}

/// `value` with its unit: `4096 bytes`, `1 ms`, `64`.
pub(super) struct Amount(pub u64, pub Unit);

impl fmt::Display for Amount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Amount(value, unit) = *self;
        match unit {
            Unit::Count => write!(f, "{value}"),
            Unit::Bytes if value == 1 => write!(f, "1 byte"),
            Unit::Bytes => write!(f, "{value} bytes"),
            Unit::Millis => write!(f, "{value} ms"),
            Unit::Seconds => write!(f, "{value} s"),
        }
    }
}

/// ` (note)`, or nothing.
pub(super) struct Note(pub Option<&'static str>);

impl fmt::Display for Note {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(note) => write!(f, " ({note})"),
            None => Ok(()),
        }
    }
}

/// Why a `log.level` filter is refused.
#[derive(Debug, thiserror::Error)]
pub enum LogFilterError {
    #[error("it names no level")]
    Empty,
    #[error("{0:?} names no level")]
    NoLevel(String),
    #[error(transparent)]
    Rejected(#[from] tracing_subscriber::filter::ParseError),
}

/// Why a `sinks.nats.subject` template is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("{subject:?}: {token:?} is neither a word nor one of {{site}}, {{kind}}, {{source}}")]
    Token { subject: String, token: String },
    #[error("{subject:?} must hold {placeholder} once, as a whole token")]
    Placeholder {
        subject: String,
        placeholder: &'static str,
    },
    #[error(
        "{subject:?} holds {{site}}, but identity = \"fleet\" gives a source one subject on every \
         daemon (e.g. \"telemetry.{{kind}}.{{source}}\"); the site is a header"
    )]
    SiteInFleet { subject: String },
}
