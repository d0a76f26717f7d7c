//! `[tls]`: the files of the daemon's certificate; the tls folder loads and serves them.

use std::path::PathBuf;

use serde::Deserialize;

/// `[tls]`: the daemon's certificate and key, and the CA of its clients' certificates. Read at
/// start and again on SIGHUP (by the tls folder).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The daemon's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// Mutual TLS: a client must present a certificate this CA (PEM) signed, and
    /// `[[auth.clients]]` says which sources it may open.
    pub client_ca: Option<PathBuf>,
}
