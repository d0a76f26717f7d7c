//! The query strings of the monitor's paths (`/feed`, `/archive/frames`, `/archive/passes`,
//! `/archive/volume`, `/archive/completeness`): one parser and one error, so that a parameter is spelled, checked
//! and refused alike wherever it is taken.
//!
//! The filter's parameters (`from`, `to`, `source`, `kind`, `priority`, `apid`) fill the
//! [`FrameFilter`] every reader shares; the others are the path's own, which it takes through
//! a closure. One rule for every path: a path refuses a parameter it does not take, listing
//! those it takes; only `source` may be given more than once (at most [`MAX_SOURCES`]); the
//! bearer token (`token`) is the monitor's authentication's, no path's.

use std::time::SystemTime;

use super::access::QUERY_TOKEN;
use crate::domain::filter::FrameFilter;
use crate::domain::frame::{parse_source, ParseError, Priority, SourceKind};
use crate::domain::units::parse_time;

/// The most `source` parameters one query may give: the live feed checks each batch against
/// every subscriber's list.
pub const MAX_SOURCES: usize = 64;

/// The most buckets a completeness timeline may have: more than a screen's width of bars.
pub const MAX_BUCKETS: u32 = 1000;

/// Why a query string was refused: each names the parameter (the body of the 400 answer).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    #[error("{0}: {1}")]
    Time(&'static str, String),
    #[error("from is after to (without to, the time of the query)")]
    Backwards,
    #[error("{0}: given more than once (only source may be repeated)")]
    Repeated(String),
    #[error("source: {0}")]
    Source(ParseError),
    #[error("source: more than {MAX_SOURCES} sources")]
    TooManySources,
    #[error("kind: {0}")]
    Kind(ParseError),
    #[error("priority: {0}")]
    Priority(ParseError),
    #[error("apid: {0:?} is not an APID (0 to 2047)")]
    Apid(String),
    #[error("format: {0}")]
    Format(String),
    #[error("format: parquet is a file: `aggregator archive export --format parquet` writes it")]
    Parquet,
    #[error("buckets: {0:?} is not a number of buckets (1 to {MAX_BUCKETS})")]
    Buckets(String),
    #[error("buckets: needs from, the timeline's start")]
    BucketsWithoutFrom,
    #[error("sample: {0:?} is not a whole number from 1")]
    Sample(String),
    #[error("encoding: unknown encoding {0:?} (expected base64 or hex)")]
    Encoding(String),
    #[error("unknown parameter {key:?} (expected {})", listed(takes))]
    Unknown {
        key: String,
        /// The parameters the path takes.
        takes: &'static [&'static str],
    },
}

impl QueryError {
    /// `key` is no parameter of a path that takes `takes`.
    pub fn unknown(key: &str, takes: &'static [&'static str]) -> QueryError {
        let key = key.to_string();
        QueryError::Unknown { key, takes }
    }
}

/// `a, b or c`.
fn listed(names: &[&str]) -> String {
    match names.split_last() {
        Some((last, [])) => last.to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
        None => String::new(),
    }
}

/// Parses the query string of a path that takes the parameters `takes`: the filter's into the
/// filter it returns, its own through `own` (called with each of them once), times ago counted
/// back from `now`.
pub fn parse(
    query: &str,
    now: SystemTime,
    takes: &'static [&'static str],
    mut own: impl FnMut(&str, &str) -> Result<(), QueryError>,
) -> Result<FrameFilter, QueryError> {
    let mut filter = FrameFilter::default();
    let mut seen = Vec::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == QUERY_TOKEN {
            continue;
        }
        if !takes.contains(&&*key) {
            return Err(QueryError::unknown(&key, takes));
        }
        if key != "source" && seen.contains(&key) {
            return Err(QueryError::Repeated(key.to_string()));
        }
        seen.push(key.clone());
        if !set_filter(&mut filter, &key, &value, now)? {
            own(&key, &value)?;
        }
    }
    Ok(filter)
}

/// Takes `key=value` into `filter` if it is one of the filter's parameters; `false` if not.
fn set_filter(
    filter: &mut FrameFilter,
    key: &str,
    value: &str,
    now: SystemTime,
) -> Result<bool, QueryError> {
    match key {
        "from" => {
            let time = parse_time(value, now).map_err(|why| QueryError::Time("from", why))?;
            filter.since = Some(time);
        }
        "to" => {
            let time = parse_time(value, now).map_err(|why| QueryError::Time("to", why))?;
            filter.until = Some(time);
        }
        "source" => {
            let source = parse_source(value).map_err(QueryError::Source)?;
            if filter.sources.len() == MAX_SOURCES {
                return Err(QueryError::TooManySources);
            }
            filter.sources.push(source);
        }
        "kind" => filter.kind = Some(value.parse::<SourceKind>().map_err(QueryError::Kind)?),
        "priority" => {
            filter.priority = Some(value.parse::<Priority>().map_err(QueryError::Priority)?);
        }
        "apid" => {
            let apid = value.parse().ok().filter(|apid| *apid <= 0x7ff);
            filter.apid = Some(apid.ok_or_else(|| QueryError::Apid(value.to_string()))?);
        }
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TAKES: &[&str] = &["source", "priority", "sample"];

    fn parse_with_sample(query: &str) -> Result<(FrameFilter, Vec<String>), QueryError> {
        let mut own = Vec::new();
        let filter = parse(query, SystemTime::UNIX_EPOCH, TAKES, |key, value| {
            own.push(format!("{key}={value}"));
            Ok(())
        })?;
        Ok((filter, own))
    }

    #[test]
    fn the_filter_s_parameters_fill_the_filter_and_the_path_takes_its_own() {
        let (filter, own) =
            parse_with_sample("source=live:1&token=t&priority=routine&sample=3&source=live:2")
                .unwrap();
        assert_eq!(filter.sources.len(), 2);
        assert_eq!(filter.priority, Some(Priority::Routine));
        assert_eq!(own, ["sample=3"], "the token is the monitor's");
    }

    #[test]
    fn one_rule_for_every_path_only_source_repeats() {
        for (query, reason) in [
            (
                "priority=routine&priority=emergency",
                "priority: given more than once",
            ),
            ("sample=1&sample=2", "sample: given more than once"),
            (
                "kind=live",
                "unknown parameter \"kind\" (expected source, priority or sample)",
            ),
        ] {
            let err = parse_with_sample(query).unwrap_err().to_string();
            assert!(err.starts_with(reason), "{query}: {err}");
        }
    }

    #[test]
    fn a_list_of_parameters_reads_as_a_sentence() {
        assert_eq!(listed(&["a"]), "a");
        assert_eq!(listed(&["a", "b", "c"]), "a, b or c");
    }
}
