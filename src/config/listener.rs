//! `[uplink]` and `[replay]`: the two source listeners, each with defaults of its own.

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

use super::bounds::{self, ConnectionKeys};
use super::de::some_socket_addr;
use super::error::Invalid;
use crate::net::Limits;

/// One TCP listener. `[uplink]` and `[replay]` have defaults of their own
/// ([`ListenerConfig::uplink`], [`ListenerConfig::replay`]), so a section is read as
/// [`ListenerKeys`] and what it leaves out comes from its own defaults.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to bind; port 0 picks a free port (tests).
    pub listen: SocketAddr,
    /// Connections beyond this are refused with `TooManyConnections`, not queued.
    pub max_connections: usize,
    /// Connections from one address beyond this are refused the same way; half of
    /// `max_connections` when not set.
    pub max_connections_per_address: Option<usize>,
}

/// The keys of a listener's section as written: any of them may be left out.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerKeys {
    #[serde(default, deserialize_with = "some_socket_addr")]
    listen: Option<SocketAddr>,
    max_connections: Option<usize>,
    max_connections_per_address: Option<usize>,
}

impl ListenerKeys {
    /// `defaults` with the keys that were written.
    fn over(self, defaults: ListenerConfig) -> ListenerConfig {
        ListenerConfig {
            listen: self.listen.unwrap_or(defaults.listen),
            max_connections: self.max_connections.unwrap_or(defaults.max_connections),
            max_connections_per_address: self
                .max_connections_per_address
                .or(defaults.max_connections_per_address),
        }
    }
}

/// `[uplink]` as written, over the uplink's defaults.
pub(super) fn uplink<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ListenerConfig, D::Error> {
    ListenerKeys::deserialize(deserializer).map(|keys| keys.over(ListenerConfig::uplink()))
}

/// `[replay]` as written, over the replay's defaults.
pub(super) fn replay<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<ListenerConfig, D::Error> {
    ListenerKeys::deserialize(deserializer).map(|keys| keys.over(ListenerConfig::replay()))
}

impl ListenerConfig {
    pub(super) fn uplink() -> Self {
        ListenerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7700)),
            max_connections: 1024,
            max_connections_per_address: None,
        }
    }

    pub(super) fn replay() -> Self {
        ListenerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 7701)),
            max_connections: 64,
            max_connections_per_address: None,
        }
    }

    /// The listener's connection limits.
    pub fn limits(&self) -> Limits {
        Limits::new(self.max_connections, self.max_connections_per_address)
    }

    /// Checks the section; `keys` name its limits (`uplink.max_connections`,
    /// `uplink.max_connections_per_address`).
    pub(super) fn validate(&self, keys: ConnectionKeys) -> Result<(), Invalid> {
        bounds::check(&bounds::connections(keys, self.limits()))
    }
}
