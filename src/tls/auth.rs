//! Who a client is: the names of the certificate the TLS handshake verified, which
//! `[[auth.clients]]` (`crate::config::AuthConfig`) maps to ranges of sources; a HELLO for a source
//! outside them is refused with `Unauthorized`.
//!
//! The names are the certificate's DNS and URI subject alternative names and its subject common
//! names. An entry matches when its `identity` equals any of them; the sources of every matching
//! entry are allowed. Nothing is allowed by default.

use std::fmt;

use rustls_pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

/// The names a verified client certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerIdentity {
    names: Vec<String>,
}

impl PeerIdentity {
    /// The DNS and URI SANs and the subject CNs of `cert`; none if it cannot be parsed (the
    /// handshake verified it, so that would be a certificate rustls reads and this parser not).
    pub(crate) fn of(cert: &CertificateDer<'_>) -> PeerIdentity {
        let mut names = Vec::new();
        if let Ok((_, cert)) = x509_parser::parse_x509_certificate(cert) {
            if let Ok(Some(san)) = cert.subject_alternative_name() {
                for name in &san.value.general_names {
                    match name {
                        GeneralName::DNSName(name) | GeneralName::URI(name) => {
                            names.push(name.to_string())
                        }
                        _ => {}
                    }
                }
            }
            names.extend(
                cert.subject()
                    .iter_common_name()
                    .filter_map(|cn| cn.as_str().ok())
                    .map(str::to_string),
            );
        }
        PeerIdentity { names }
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.names.is_empty() {
            true => f.write_str("(no name)"),
            false => f.write_str(&self.names.join(",")),
        }
    }
}

/// What `[[auth.clients]]` entries are matched against (`crate::config::AuthConfig::allows`).
impl AsRef<[String]> for PeerIdentity {
    fn as_ref(&self) -> &[String] {
        &self.names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AuthClient, AuthConfig};
    use crate::domain::frame::SourceKind;

    #[test]
    fn a_peer_is_allowed_only_what_an_entry_with_one_of_its_names_grants() {
        let auth = AuthConfig {
            clients: vec![AuthClient {
                identity: "gs-1.example".into(),
                sources: vec!["live:0-7".parse().unwrap()],
            }],
        };
        let peer = PeerIdentity {
            names: vec!["gs-1.example".into()],
        };
        let stranger = PeerIdentity {
            names: vec!["gs-2.example".into()],
        };
        assert!(auth.allows(&peer, SourceKind::LiveUplink, 7));
        assert!(!auth.allows(&peer, SourceKind::LiveUplink, 8));
        assert!(!auth.allows(&stranger, SourceKind::LiveUplink, 0));
    }
}
