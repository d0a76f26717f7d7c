//! The client side, for `uplink-sim`, `aggregator tail` and `aggregator catalog push`: the
//! `--tls-ca`, `--tls-cert` and `--tls-key` flags, and the connector they make.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{provider, read_certs, read_key, read_roots, TlsError};

/// The TLS flags every client shares.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Connect with TLS, trusting the daemon's certificate if this CA (PEM) signed it.
    #[arg(long = "tls-ca", value_name = "PEM")]
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM) for mutual TLS; needs --tls-key and --tls-ca.
    #[arg(long = "tls-cert", value_name = "PEM", requires_all = ["key", "ca"])]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long = "tls-key", value_name = "PEM", requires = "cert")]
    pub key: Option<PathBuf>,
    /// The name the daemon's certificate must carry; by default the address's IP.
    #[arg(long = "tls-server-name", value_name = "NAME", requires = "ca")]
    pub server_name: Option<String>,
}

impl TlsArgs {
    /// The connector the flags ask for: `None` without `--tls-ca`.
    pub fn client(&self) -> Result<Option<ClientTls>, TlsError> {
        let Some(ca) = &self.ca else {
            return Ok(None);
        };
        let roots = read_roots("--tls-ca", ca)?;
        let builder = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|err| TlsError::Setup(err.to_string()))?
            .with_root_certificates(roots);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(read_certs("--tls-cert", cert)?, read_key("--tls-key", key)?)
                .map_err(|err| TlsError::Invalid {
                    key: "--tls-key",
                    path: key.clone(),
                    problem: format!("does not fit --tls-cert: {err}"),
                })?,
            _ => builder.with_no_client_auth(),
        };
        let server_name = match &self.server_name {
            Some(name) => Some(
                ServerName::try_from(name.clone())
                    .map_err(|err| TlsError::Setup(format!("--tls-server-name {name:?}: {err}")))?,
            ),
            None => None,
        };
        Ok(Some(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        }))
    }
}

/// A client's TLS settings, cheap to clone into every connection.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    /// `None`: the address's IP.
    server_name: Option<ServerName<'static>>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// The TLS handshake on a connected `stream` to `addr`.
    pub(crate) async fn connect(
        &self,
        addr: SocketAddr,
        stream: TcpStream,
    ) -> std::io::Result<TlsStream<TcpStream>> {
        let name = self
            .server_name
            .clone()
            .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
        self.connector.connect(name, stream).await
    }
}
