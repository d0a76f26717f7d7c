//! Who may speak for which source: `[[auth.clients]]` maps a client certificate's identity to
//! ranges of sources, and a HELLO for a source outside them is refused with `Unauthorized`.
//!
//! The identity is read from the certificate the TLS handshake verified: its DNS and URI subject
//! alternative names and its subject common names. An entry matches when its `identity` equals any
//! of them; the sources of every matching entry are allowed. Nothing is allowed by default.

use std::fmt;
use std::str::FromStr;

use rustls_pki_types::CertificateDer;
use serde::{Deserialize, Deserializer};
use x509_parser::extensions::GeneralName;

use crate::domain::frame::parse_source;
use crate::domain::frame::SourceKind;

/// `[auth]`: the clients that may connect with a certificate, and what each may send.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    pub clients: Vec<AuthClient>,
}

/// One `[[auth.clients]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthClient {
    /// A DNS or URI subject alternative name, or the subject CN, of the client's certificate.
    pub identity: String,
    /// The sources it may open, such as `live:0-47` or `replay:1000`.
    pub sources: Vec<SourceRange>,
}

/// Sources of one kind with ids from `first` to `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRange {
    pub kind: SourceKind,
    pub first: u32,
    pub last: u32,
}

impl SourceRange {
    pub fn covers(&self, kind: SourceKind, id: u32) -> bool {
        self.kind == kind && (self.first..=self.last).contains(&id)
    }
}

impl FromStr for SourceRange {
    type Err = String;

    /// `KIND:ID` or `KIND:FIRST-LAST`.
    fn from_str(text: &str) -> Result<SourceRange, String> {
        let (start, last) = match text.split_once('-') {
            Some((start, last)) => (start, Some(last)),
            None => (text, None),
        };
        let (kind, first) = parse_source(start).map_err(|e| e.to_string())?;
        let last = match last {
            None => first,
            Some(last) => last
                .parse()
                .map_err(|_| format!("{text:?}: the last id {last:?} is not a number"))?,
        };
        if last < first {
            return Err(format!("{text:?}: the range ends before it starts"));
        }
        Ok(SourceRange { kind, first, last })
    }
}

impl<'de> Deserialize<'de> for SourceRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|err: String| {
            serde::de::Error::custom(format!("{err}; expected KIND:ID or KIND:FIRST-LAST"))
        })
    }
}

impl fmt::Display for SourceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = self.kind.label();
        match self.first == self.last {
            true => write!(f, "{kind}:{}", self.first),
            false => write!(f, "{kind}:{}-{}", self.first, self.last),
        }
    }
}

/// The names a verified client certificate carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    names: Vec<String>,
}

impl PeerIdentity {
    /// The DNS and URI SANs and the subject CNs of `cert`; none if it cannot be parsed (the
    /// handshake verified it, so that would be a certificate rustls reads and this parser not).
    pub fn of(cert: &CertificateDer<'_>) -> PeerIdentity {
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

impl AuthConfig {
    /// Whether `peer` may speak for source `id` of `kind`.
    pub fn allows(&self, peer: &PeerIdentity, kind: SourceKind, id: u32) -> bool {
        self.clients.iter().any(|client| {
            peer.names.contains(&client.identity)
                && client.sources.iter().any(|range| range.covers(kind, id))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse_and_cover_their_ids_only() {
        let range: SourceRange = "live:0-47".parse().unwrap();
        assert!(range.covers(SourceKind::LiveUplink, 0));
        assert!(range.covers(SourceKind::LiveUplink, 47));
        assert!(!range.covers(SourceKind::LiveUplink, 48));
        assert!(!range.covers(SourceKind::ArchivedReplay, 3));
        let one: SourceRange = "replay:1000".parse().unwrap();
        assert!(one.covers(SourceKind::ArchivedReplay, 1000));
        assert!(!one.covers(SourceKind::ArchivedReplay, 1001));
        assert_eq!(one.to_string(), "replay:1000");
        for bad in ["live:9-3", "live:x", "moon:1", "live:1-", "live"] {
            assert!(bad.parse::<SourceRange>().is_err(), "{bad} parsed");
        }
    }

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
