//! Fuzz targets of the daemon's parsers of untrusted bytes: what arrives on its sockets, what it
//! reads back from files a crash or a disk may have damaged, its config file and the query strings
//! of its HTTP API. `docs/fuzzing.md` says how they are run and what they found.
//!
//! Each target is a plain function of the input's bytes, so the same code runs under AFL++
//! (`src/bin/afl-target.rs`, built by `cargo afl build`) and in `cargo test`, which replays every
//! seed and every input that once failed (`tests/corpus.rs`). A target asserts more than "no
//! panic" wherever the format allows it: a decoded message encodes back to the same bytes (or,
//! where decoding is lossy or accepts more than one spelling, to bytes that decode to the same
//! value), a stream's decoder keeps no more unread bytes than its limit allows, and every range it
//! hands out lies within its input. A failed assertion is a panic, which AFL++ saves as a crash.
//!
//! Layout: one module per area, its targets' functions in it; [`TARGETS`] names them.

mod archive;
mod catalog;
mod config;
mod follow;
mod http;
mod ingest;
mod links;

/// One fuzz target: the name its corpus folder (`corpus/NAME`) and `afl-target NAME` use.
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "ingest_client",
        run: ingest::client_messages,
    },
    Target {
        name: "ingest_server",
        run: ingest::server_messages,
    },
    Target {
        name: "follow_subscribe",
        run: follow::subscribe,
    },
    Target {
        name: "follow_daemon",
        run: follow::daemon_messages,
    },
    Target {
        name: "link_stream",
        run: links::stream,
    },
    Target {
        name: "recording",
        run: links::recording,
    },
    Target {
        name: "segment_scan",
        run: archive::segment_scan,
    },
    Target {
        name: "segment_read",
        run: archive::segment_read,
    },
    Target {
        name: "archive_files",
        run: archive::small_files,
    },
    Target {
        name: "catalog",
        run: catalog::publish_and_store,
    },
    Target {
        name: "config",
        run: config::parse,
    },
    Target {
        name: "http_query",
        run: http::query_strings,
    },
];

/// The input without its first byte, and that byte (0 for an empty input): targets with modes or
/// parameters take them from the first byte, so one corpus covers them all.
fn split_mode(data: &[u8]) -> (u8, &[u8]) {
    match data.split_first() {
        Some((&mode, rest)) => (mode, rest),
        None => (0, data),
    }
}
