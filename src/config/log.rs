//! `[log]`: the filter and the format of the daemon's log lines.

use serde::Deserialize;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::EnvFilter;

use super::error::{Invalid, LogFilterError, Problem};

/// Log output.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A `tracing` filter: a level such as `info`, or directives that each end in one, such as
    /// `info,aggregator=debug` ([`check_filter`]); `RUST_LOG` overrides it.
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

impl LogConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        check_filter(&self.level).map_err(|source| {
            let problem = Problem::LogFilter {
                filter: self.level.clone(),
                source,
            };
            Invalid::new("log.level", problem)
        })
    }
}

/// Checks a `log.level` filter: each directive must be a level or end in `=LEVEL`.
///
/// `tracing` also takes a bare word that is not a level as a target with every level enabled,
/// so a misspelt level (`debgu`) would pass as a filter for a target of that name and the daemon
/// would log nothing; an empty filter would log nothing too. Spelling out `TARGET=LEVEL` costs
/// little, so a directive without a level is refused.
fn check_filter(filter: &str) -> Result<(), LogFilterError> {
    let directives: Vec<&str> = filter.split(',').filter(|d| !d.is_empty()).collect();
    if directives.is_empty() {
        return Err(LogFilterError::Empty);
    }
    for directive in directives {
        let level = directive
            .rsplit_once('=')
            .map_or(directive, |(_, level)| level);
        if level.trim().is_empty() || level.trim().parse::<LevelFilter>().is_err() {
            return Err(LogFilterError::NoLevel(directive.to_string()));
        }
    }
    EnvFilter::try_new(filter)?;
    Ok(())
}
