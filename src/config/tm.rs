//! `[[tm_servers]]` and `[[tm_forwards]]`: the archive's space packets served to mission-control
//! systems as they read telemetry (`docs/tm-server.md`), over TCP or as UDP datagrams.

use std::collections::HashSet;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

use super::bounds::{self, Bound, ConnectionKeys};
use super::de::socket_addr;
use super::error::{Invalid, Problem};
use crate::domain::frame::{parse_source, SourceKey, SourceKind};
use crate::net::Limits;
use crate::protocol::ccsds::MAX_APID;

/// A TCP listener whose connections read packets back to back (Yamcs' `TcpTmDataLink`, a COSMOS
/// TCP/IP client interface).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmServerConfig {
    /// Names the server in logs and stats.
    pub name: String,
    /// No default: two servers must not share one.
    #[serde(deserialize_with = "socket_addr")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub framing: TmFraming,
    #[serde(default)]
    pub from: TmStart,
    /// When the next frames were deleted, go on at the oldest left instead of stopping.
    #[serde(default)]
    pub from_oldest_on_gap: bool,
    /// Only packets of these APIDs; every APID when empty.
    #[serde(default)]
    pub apids: Vec<u16>,
    /// Only frames of these sources; every source when empty.
    #[serde(default, deserialize_with = "sources")]
    pub sources: Vec<SourceKey>,
    /// Frames of other kinds are never served, packets or not.
    #[serde(default = "default_kinds", deserialize_with = "kinds")]
    pub kinds: Vec<SourceKind>,
    /// More connections are closed at once; each holds a read of the archive.
    #[serde(default = "TmServerConfig::default_max_connections")]
    pub max_connections: usize,
    /// More from one address are closed at once; half of `max_connections` when not set.
    #[serde(default)]
    pub max_connections_per_address: Option<usize>,
}

/// Packets sent one per UDP datagram to one address, for tools that listen rather than connect.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TmForwardConfig {
    /// Names the forward in logs and stats.
    pub name: String,
    #[serde(deserialize_with = "socket_addr")]
    pub to: SocketAddr,
    #[serde(default)]
    pub from: TmStart,
    /// When the next frames were deleted, go on at the oldest left instead of stopping.
    #[serde(default)]
    pub from_oldest_on_gap: bool,
    /// Only packets of these APIDs; every APID when empty.
    #[serde(default)]
    pub apids: Vec<u16>,
    /// Only frames of these sources; every source when empty.
    #[serde(default, deserialize_with = "sources")]
    pub sources: Vec<SourceKey>,
    /// Frames of other kinds are never served, packets or not.
    #[serde(default = "default_kinds", deserialize_with = "kinds")]
    pub kinds: Vec<SourceKind>,
}

/// Which frames of the archive a TM output serves, and from where: the keys both tables share
/// (written out in each, since `deny_unknown_fields` does not see through `flatten`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmSelection {
    pub from: TmStart,
    /// When the next frames were deleted (retention): go on at the oldest segment left (and log
    /// what was skipped), instead of closing the connection (or stopping the forward).
    pub from_oldest_on_gap: bool,
    pub apids: Vec<u16>,
    pub sources: Vec<SourceKey>,
    pub kinds: Vec<SourceKind>,
}

/// How packets are delimited on a TM server's connections.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TmFraming {
    /// Back to back: the header's length delimits them.
    #[default]
    Ccsds,
    /// Each after the attached sync marker, for readers that synchronise on it.
    CcsdsAsm,
}

/// Where a connection (or a forward, at the daemon's start) begins reading the archive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TmStart {
    /// Only packets stored after it: a live display.
    #[default]
    Now,
    /// The whole archive kept, then live: a ground system that rebuilds its history.
    Start,
}

impl TmServerConfig {
    fn default_max_connections() -> usize {
        16
    }
}

impl TmServerConfig {
    /// The server's connection limits.
    pub fn limits(&self) -> Limits {
        Limits::new(self.max_connections, self.max_connections_per_address)
    }

    pub fn selection(&self) -> TmSelection {
        TmSelection {
            from: self.from,
            from_oldest_on_gap: self.from_oldest_on_gap,
            apids: self.apids.clone(),
            sources: self.sources.clone(),
            kinds: self.kinds.clone(),
        }
    }
}

impl TmForwardConfig {
    pub fn selection(&self) -> TmSelection {
        TmSelection {
            from: self.from,
            from_oldest_on_gap: self.from_oldest_on_gap,
            apids: self.apids.clone(),
            sources: self.sources.clone(),
            kinds: self.kinds.clone(),
        }
    }
}

fn default_kinds() -> Vec<SourceKind> {
    vec![SourceKind::LiveUplink, SourceKind::ArchivedReplay]
}

impl TmSelection {
    fn validate(&self, apids: &'static str, kinds: &'static str) -> Result<(), Invalid> {
        if self.kinds.is_empty() {
            return Err(Invalid::new(
                kinds,
                Problem::Rule("names no kind: nothing would be served"),
            ));
        }
        let rows: Vec<Bound> = self
            .apids
            .iter()
            .map(|&apid| Bound::up_to(apids, apid, u64::from(MAX_APID)))
            .collect();
        bounds::check(&rows)
    }
}

/// Checks both tables: names that tell the outputs apart in stats, the bounds, and no two servers
/// on one address. That no other listener binds it is the whole's to check.
pub(super) fn validate(
    servers: &[TmServerConfig],
    forwards: &[TmForwardConfig],
) -> Result<(), Invalid> {
    let mut names = HashSet::new();
    let named = servers
        .iter()
        .map(|s| ("tm_servers.name", &s.name))
        .chain(forwards.iter().map(|f| ("tm_forwards.name", &f.name)));
    for (key, name) in named {
        let token = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !token {
            return Err(Invalid::new(key, Problem::NotAName(name.clone())));
        }
        if !names.insert(name) {
            return Err(Invalid::new(key, Problem::Duplicate(name.clone())));
        }
    }
    let mut addresses = HashSet::new();
    for server in servers {
        server
            .selection()
            .validate("tm_servers.apids", "tm_servers.kinds")?;
        let keys = ConnectionKeys {
            total: "tm_servers.max_connections",
            per_address: "tm_servers.max_connections_per_address",
        };
        bounds::check(&bounds::connections(keys, server.limits()))?;
        let addr = server.listen;
        if addr.port() != 0 && !addresses.insert(addr) {
            let problem = Problem::AddressTaken {
                addr,
                other: "another TM server's address",
            };
            return Err(Invalid::new("tm_servers.listen", problem));
        }
    }
    forwards.iter().try_for_each(|f| {
        f.selection()
            .validate("tm_forwards.apids", "tm_forwards.kinds")
    })
}

/// `["live:10100", "replay:7"]`, as `aggregator tail --source` takes them.
fn sources<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SourceKey>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| parse_source(text).map_err(serde::de::Error::custom))
        .collect()
}

/// `["live", "replay"]`.
fn kinds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<SourceKind>, D::Error> {
    Vec::<String>::deserialize(deserializer)?
        .iter()
        .map(|text| text.parse().map_err(serde::de::Error::custom))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("t.toml")).map_err(|err| err.to_string())
    }

    const SERVER: &str = "[[tm_servers]]\nname = \"yamcs\"\nlisten = \"127.0.0.1:10015\"\n";

    #[test]
    fn a_server_with_only_its_name_and_address_takes_the_defaults() {
        let config = parse(SERVER).unwrap();
        let server = &config.tm_servers[0];
        assert_eq!(server.framing, super::TmFraming::Ccsds);
        assert_eq!(server.from, super::TmStart::Now);
        assert!(server.apids.is_empty() && server.sources.is_empty());
        assert_eq!(server.kinds, super::default_kinds());
        assert_eq!(server.max_connections, 16);
    }

    #[test]
    fn every_key_is_read() {
        let text = format!(
            "{SERVER}framing = \"ccsds-asm\"\nfrom = \"start\"\napids = [0, 2047]\n\
             sources = [\"live:10100\"]\nkinds = [\"replay\"]\nmax_connections = 2\n\
             [[tm_forwards]]\nname = \"tools\"\nto = \"127.0.0.1:10016\"\n"
        );
        let config = parse(&text).unwrap();
        let server = &config.tm_servers[0];
        assert_eq!(server.framing, super::TmFraming::CcsdsAsm);
        assert_eq!(server.from, super::TmStart::Start);
        assert_eq!(server.apids, [0, 2047]);
        assert_eq!(server.sources, [(crate::SourceKind::LiveUplink, 10100)]);
        assert_eq!(server.kinds, [crate::SourceKind::ArchivedReplay]);
        assert_eq!(config.tm_forwards[0].to.port(), 10016);
    }

    #[test]
    fn mistakes_name_the_key() {
        let cases = [
            (format!("{SERVER}apid = [1]\n"), "apid"),
            (
                format!("{SERVER}apids = [2048]\n"),
                "tm_servers.apids: 2048 is above",
            ),
            (format!("{SERVER}sources = [\"live\"]\n"), "KIND:ID"),
            (
                format!("{SERVER}kinds = []\n"),
                "tm_servers.kinds: names no kind",
            ),
            (
                format!("{SERVER}kinds = [\"ground\"]\n"),
                "unknown source kind",
            ),
            (format!("{SERVER}framing = \"kiss\"\n"), "framing"),
            (
                format!("{SERVER}max_connections = 0\n"),
                "tm_servers.max_connections",
            ),
            (format!("{SERVER}{SERVER}"), "\"yamcs\" names another entry"),
            (SERVER.replace("yamcs", "ya mcs"), "tm_servers.name"),
            (
                SERVER.replace("10015", "7700"),
                "tm_servers.listen: 127.0.0.1:7700",
            ),
            (
                format!("{SERVER}[[tm_forwards]]\nname = \"yamcs\"\nto = \"127.0.0.1:1\"\n"),
                "tm_forwards.name",
            ),
            (
                format!("{SERVER}[archive]\nkind = \"count\"\n"),
                "tm_servers: serves the archive's files",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(err.contains(needle), "{needle:?} not in {err:?}");
        }
    }
}
