//! `[consumer]`: the follow listener, where consumers read the archive from a position on.

use std::net::SocketAddr;

use serde::Deserialize;

use super::bounds::{self, ConnectionKeys};
use super::de::socket_addr;
use super::error::Invalid;
use crate::net::Limits;

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
    /// the archive (`archive::read`'s `READ_BUDGET`) and a file descriptor.
    pub max_connections: usize,
    /// Followers from one address beyond this are refused the same way; half of
    /// `max_connections` when not set.
    pub max_connections_per_address: Option<usize>,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 7702)),
            max_connections: 64,
            max_connections_per_address: None,
        }
    }
}

impl ConsumerConfig {
    /// The listener's connection limits.
    pub fn limits(&self) -> Limits {
        Limits::new(self.max_connections, self.max_connections_per_address)
    }

    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let keys = ConnectionKeys {
            total: "consumer.max_connections",
            per_address: "consumer.max_connections_per_address",
        };
        bounds::check(&bounds::connections(keys, self.limits()))
    }
}

/// The keys of `table` (the whole file, parsed) that take no effect: every `[consumer]` key but
/// `enabled` while `consumer.enabled` is not `true`. A `listen` alone does not enable the
/// listener, which has no authentication and serves every archived frame: that stays a decision
/// of its own.
pub(super) fn ineffective(table: &toml::Table) -> Vec<String> {
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
