//! The connection to NATS, one way for the sink and for the fleet's questions: the servers of
//! `sinks.nats.url`, the credentials and TLS of the config, and a client that keeps trying the
//! servers forever, so that a NATS outage is a wait and never an end.

use std::path::PathBuf;

use async_nats::{Client, ConnectOptions, ServerAddr};
use tokio::runtime::Handle;

use crate::config::NatsConfig;

/// Why the client cannot be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("sinks.nats.credentials {}: {source}", path.display())]
    Credentials {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("sinks.nats.url: {0}")]
    Url(std::io::Error),
    #[error(transparent)]
    Client(#[from] async_nats::ConnectError),
    #[error("the NATS client's task failed: {0}")]
    Runtime(String),
}

/// Connects on `io` (the daemon's runtime) where there is one: the connection's task, its reads
/// and writes and the PubAcks landing, runs there, not on the thread of the one who asks.
pub(super) async fn connect_on(
    config: &NatsConfig,
    io: Option<&Handle>,
) -> Result<Client, ConnectError> {
    let Some(io) = io else {
        return connect(config).await;
    };
    let config = config.clone();
    let connecting = io.spawn(async move { connect(&config).await });
    (connecting.await).map_err(|e| ConnectError::Runtime(e.to_string()))?
}

/// Connects in the background: the client keeps trying the servers, forever.
pub(super) async fn connect(config: &NatsConfig) -> Result<Client, ConnectError> {
    let mut options = ConnectOptions::new()
        .name(format!("aggregator {}", config.site))
        .retry_on_initial_connect()
        .max_reconnects(None);
    if let Some(path) = &config.credentials {
        options =
            (options.credentials_file(path).await).map_err(|source| ConnectError::Credentials {
                path: path.clone(),
                source,
            })?;
    }
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.expose().to_string());
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    let servers = config
        .url
        .iter()
        .map(|url| url.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConnectError::Url)?;
    Ok(options.connect(servers).await?)
}
