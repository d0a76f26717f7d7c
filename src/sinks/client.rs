//! The connection to NATS, one way for the sink and for the fleet's questions: the servers of
//! `sinks.nats.url`, the credentials and TLS of the config, and a client that keeps trying the
//! servers forever, so that a NATS outage is a wait and never an end; and the sink's connection
//! to one server (its stream's leader), which gives up after a few tries: another replaces it.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

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
    #[error("no answer within {0:?}")]
    Unanswered(Duration),
}

/// Connects on `io` (the daemon's runtime) where there is one: the connection's task, its reads
/// and writes and the PubAcks landing, runs there, not on the thread of the one who asks.
pub(super) async fn connect_on(
    config: &NatsConfig,
    io: Option<&Handle>,
) -> Result<Client, ConnectError> {
    let config = config.clone();
    on_io(io, async move { connect(&config).await }).await
}

/// Connects in the background: the client keeps trying the servers, forever.
pub(super) async fn connect(config: &NatsConfig) -> Result<Client, ConnectError> {
    let options = (options(config, format!("aggregator {}", config.site)).await?)
        .retry_on_initial_connect()
        .max_reconnects(None);
    Ok(options.connect(servers(config)?).await?)
}

/// How many times a connection of [`connect_one`] tries to connect again once lost, before it
/// closes: the sink's leader follower replaces it.
const RECONNECTS: usize = 10;

/// Connects on `io` to the server at `url` alone (later, where it is lost, to it and to the
/// servers it told of, [`RECONNECTS`] times), with the config's credentials and TLS, named
/// `name`; `Err` where it does not answer within `timeout`.
pub(super) async fn connect_one(
    config: &NatsConfig,
    url: &str,
    name: String,
    timeout: Duration,
    io: Option<&Handle>,
) -> Result<Client, ConnectError> {
    let (config, server) = (config.clone(), url.parse::<ServerAddr>());
    on_io(io, async move {
        let options = (options(&config, name).await?).max_reconnects(Some(RECONNECTS));
        let connecting =
            tokio::time::timeout(timeout, options.connect(server.map_err(ConnectError::Url)?));
        (connecting.await)
            .map_err(|_| ConnectError::Unanswered(timeout))?
            .map_err(ConnectError::Client)
    })
    .await
}

/// Runs `connecting` on `io` where there is one.
async fn on_io(
    io: Option<&Handle>,
    connecting: impl Future<Output = Result<Client, ConnectError>> + Send + 'static,
) -> Result<Client, ConnectError> {
    let Some(io) = io else {
        return connecting.await;
    };
    let connecting = io.spawn(connecting);
    (connecting.await).map_err(|e| ConnectError::Runtime(e.to_string()))?
}

/// What every connection to the servers takes: its name, the config's credentials and TLS.
async fn options(config: &NatsConfig, name: String) -> Result<ConnectOptions, ConnectError> {
    let mut options = ConnectOptions::new().name(name);
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
    Ok(options)
}

/// The servers of `sinks.nats.url`.
fn servers(config: &NatsConfig) -> Result<Vec<ServerAddr>, ConnectError> {
    (config.url.iter())
        .map(|url| url.parse::<ServerAddr>())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConnectError::Url)
}
