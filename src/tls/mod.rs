//! TLS on the listeners, and who may speak for which source.
//!
//! Every listener (uplink, replay, consumer) takes either plain TCP or TLS through one stream type
//! ([`stream`]), so the connection code is the same for both: a plain connection keeps its own
//! socket halves and pays one branch per read, a TLS connection's halves share the `rustls`
//! session behind `tokio::io::split`. With `tls.client_ca` the peer must present a certificate
//! that CA signed (mutual TLS), and its identity (a DNS or URI SAN, or the subject CN) decides
//! which sources it may open ([`auth`]).
//!
//! The monitor serves the same certificate through [`https`], without asking for a client
//! certificate; the clients (`uplink-sim`, `aggregator tail`, `aggregator catalog push`) take their
//! TLS from the flags in [`client`].
//!
//! The certificate, the key and the client CA are read again on SIGHUP ([`ServerTls::reload`]):
//! the acceptor sits behind an `ArcSwap` that every accept reads, so new connections get the new
//! files and open ones keep the session they negotiated. A reload that fails keeps the old files.

pub mod auth;
pub mod client;
pub mod https;
pub mod stream;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::config::TlsConfig;

/// Why certificates or keys could not be used; each names the config key (or flag) and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{key}: cannot read {}: {source}", path.display())]
    Read {
        key: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{key}: {}: {problem}", path.display())]
    Invalid {
        key: &'static str,
        path: PathBuf,
        problem: String,
    },
    #[error("{0}")]
    Setup(String),
}

/// The server side of TLS: the acceptors of the files configured now, swapped on reload.
#[derive(Debug)]
pub struct ServerTls {
    files: TlsConfig,
    current: ArcSwap<Acceptors>,
}

/// The two server configurations of one set of files.
#[derive(Debug)]
struct Acceptors {
    /// The source and consumer listeners: a client certificate is required with `client_ca`.
    listeners: Arc<ServerConfig>,
    /// The monitor: the same certificate, no client certificate asked for (browsers have none;
    /// its bearer token is its authentication).
    monitor: Arc<ServerConfig>,
}

impl Acceptors {
    fn load(files: &TlsConfig) -> Result<Acceptors, TlsError> {
        Ok(Acceptors {
            listeners: Arc::new(server_config(files, files.client_ca.as_deref())?),
            monitor: Arc::new(server_config(files, None)?),
        })
    }
}

impl ServerTls {
    /// Reads and checks the certificate, the key and the client CA.
    pub fn load(files: &TlsConfig) -> Result<ServerTls, TlsError> {
        Ok(ServerTls {
            current: ArcSwap::from_pointee(Acceptors::load(files)?),
            files: files.clone(),
        })
    }

    /// Reads the files again; new connections use them, open ones are not touched. On an error
    /// the files in use stay in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        self.current.store(Arc::new(Acceptors::load(&self.files)?));
        Ok(())
    }

    /// The acceptor for the next connection to a source or consumer listener.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.load().listeners))
    }

    /// The acceptor for the next connection to the monitor.
    pub(crate) fn monitor_acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(Arc::clone(&self.current.load().monitor))
    }
}

/// The one crypto provider of this crate (`ring`): named explicitly, so that another provider
/// compiled in by a dependency cannot make rustls' process-wide choice ambiguous.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server configuration of `files`, requiring client certificates of `client_ca` if given.
fn server_config(files: &TlsConfig, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    let certs = read_certs("tls.cert", &files.cert)?;
    let key = read_key("tls.key", &files.key)?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|err| TlsError::Setup(err.to_string()))?;
    let builder = match client_ca {
        Some(path) => {
            let roots = read_roots("tls.client_ca", path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
                .build()
                .map_err(|err| invalid("tls.client_ca", path, err))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    builder.with_single_cert(certs, key).map_err(|err| {
        invalid(
            "tls.key",
            &files.key,
            format!("does not fit tls.cert: {err}"),
        )
    })
}

fn invalid(key: &'static str, path: &Path, problem: impl ToString) -> TlsError {
    TlsError::Invalid {
        key,
        path: path.to_owned(),
        problem: problem.to_string(),
    }
}

fn read(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        key,
        path: path.to_owned(),
        source,
    })
}

/// Every certificate of a PEM file, at least one.
pub(crate) fn read_certs(
    key: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(key, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| invalid(key, path, format!("not a PEM certificate file: {err}")))?;
    if certs.is_empty() {
        return Err(invalid(key, path, "holds no PEM certificate"));
    }
    Ok(certs)
}

/// The private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub(crate) fn read_key(key: &'static str, path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(key, path)?;
    PrivateKeyDer::from_pem_slice(&pem)
        .map_err(|err| invalid(key, path, format!("no PEM private key: {err}")))
}

/// The certificates of a PEM file as trust anchors.
pub(crate) fn read_roots(key: &'static str, path: &Path) -> Result<Arc<RootCertStore>, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(key, path)? {
        roots
            .add(cert)
            .map_err(|err| invalid(key, path, format!("not a usable CA certificate: {err}")))?;
    }
    Ok(Arc::new(roots))
}
