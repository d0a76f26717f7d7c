//! `[monitor]`: the HTTP endpoint (`/stats`, `/metrics`, `/healthz`, `/feed`, `PUT /catalog`,
//! `/archive/frames`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound, ConnectionKeys};
use super::de::{millis, socket_addr};
use super::error::{Invalid, Problem};
use crate::net::Limits;

/// The most archive queries at once a config may allow: each holds a reader's chunk in memory.
const MAX_ARCHIVE_QUERIES: u64 = 1024;

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
    /// require (the monitor's access check).
    pub token_file: Option<PathBuf>,
    /// Require the token on `/healthz` and `/metrics` too.
    pub protect_all: bool,
    /// Connections at once. One more takes the place of the oldest idle connection (one waiting
    /// for a request) of the address holding the most; with none idle it is answered 503 and
    /// closed. Each holds a file descriptor.
    pub max_connections: usize,
    /// Connections from one address at once; one more takes the place of the address's oldest
    /// idle connection, or with none idle is answered 503. Half of `max_connections` when not set.
    pub max_connections_per_address: Option<usize>,
    /// A request's head must arrive whole within this, counted from the connection's accept or
    /// from the end of its previous response: a silent or half-sent request is closed.
    #[serde(rename = "header_read_timeout_ms", deserialize_with = "millis")]
    pub header_read_timeout: Duration,
    /// A connection on which nothing moves either way for this long (a stalled body, a client that
    /// stopped reading its response) is closed.
    #[serde(rename = "idle_timeout_ms", deserialize_with = "millis")]
    pub idle_timeout: Duration,
    /// `GET /archive/frames` queries at once; one more is answered 503. Each reads the archive's
    /// files and holds a chunk of them in memory.
    pub max_archive_queries: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 7780)),
            token_file: None,
            protect_all: false,
            max_connections: 256,
            max_connections_per_address: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_archive_queries: 4,
        }
    }
}

impl MonitorConfig {
    /// The listener's connection limits.
    pub fn limits(&self) -> Limits {
        Limits::new(self.max_connections, self.max_connections_per_address)
    }

    /// Bounds, and `protect_all` only with a token to require.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let keys = ConnectionKeys {
            total: "monitor.max_connections",
            per_address: "monitor.max_connections_per_address",
        };
        bounds::check(&bounds::connections(keys, self.limits()))?;
        bounds::check(&[
            Bound::millis("monitor.header_read_timeout_ms", self.header_read_timeout),
            Bound::millis("monitor.idle_timeout_ms", self.idle_timeout),
            Bound::count(
                "monitor.max_archive_queries",
                self.max_archive_queries,
                MAX_ARCHIVE_QUERIES,
            ),
        ])?;
        if self.protect_all && self.token_file.is_none() {
            let problem = Problem::Needs("monitor.token_file: there is no token to require");
            return Err(Invalid::new("monitor.protect_all", problem));
        }
        Ok(())
    }
}
