//! The HTTP API's query strings (`docs/http-api.md`): `/archive/frames`, `/archive/completeness`
//! and `/feed`, and the times, durations and sizes their parameters and the tools' options take.

use std::time::{Duration, SystemTime};

use aggregator::domain::units::{parse_bytes, parse_duration, parse_time};
use aggregator::ops::archive_query::{self, Path};
use aggregator::ops::feed;

use crate::split_mode;

/// The first byte picks the parser; the rest is the query string (lossy UTF-8, as the server
/// takes the URI's bytes). A time ago is counted from a fixed "now", so that a failure replays.
pub(crate) fn query_strings(data: &[u8]) {
    let (mode, rest) = split_mode(data);
    let text = String::from_utf8_lossy(rest);
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    match mode % 4 {
        0 => drop(archive_query::parse_query(&text, now, Path::Frames)),
        1 => drop(archive_query::parse_query(&text, now, Path::Completeness)),
        2 => drop(feed::parse_query(&text)),
        _ => drop((
            parse_bytes(&text),
            parse_duration(&text),
            parse_time(&text, now),
        )),
    }
}
