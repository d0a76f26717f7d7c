//! `[auth]`: which client certificate may speak for which sources (`[[auth.clients]]`).
//!
//! The identity is read from the certificate the TLS handshake verified (the tls folder's
//! `PeerIdentity`): its DNS and URI subject alternative names and its subject common names. An
//! entry matches when its `identity` equals any of them; the sources of every matching entry are
//! allowed. Nothing is allowed by default.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};

use super::error::{Invalid, Problem};
use crate::domain::frame::{parse_source, ParseError, SourceKind};

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

impl AuthConfig {
    /// Whether a peer whose certificate carries `names` may speak for source `id` of `kind`.
    pub fn allows(&self, names: impl AsRef<[String]>, kind: SourceKind, id: u32) -> bool {
        let names = names.as_ref();
        self.clients.iter().any(|client| {
            names.contains(&client.identity)
                && client.sources.iter().any(|range| range.covers(kind, id))
        })
    }

    /// Every entry names an identity and allows it a source. Whether entries are needed at all
    /// depends on `tls.client_ca`, which the whole checks.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        for client in &self.clients {
            if client.identity.is_empty() {
                let problem = Problem::Rule("must not be empty");
                return Err(Invalid::new("auth.clients.identity", problem));
            }
            if client.sources.is_empty() {
                let problem = Problem::NoSource {
                    identity: client.identity.clone(),
                };
                return Err(Invalid::new("auth.clients.sources", problem));
            }
        }
        Ok(())
    }
}

/// Sources of one kind with ids from `first` to `last`, both included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceRange {
    pub kind: SourceKind,
    pub first: u32,
    pub last: u32,
}

/// Why text is not a [`SourceRange`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceRangeError {
    #[error(transparent)]
    Source(#[from] ParseError),
    #[error("{text:?}: the last id {last:?} is not a number")]
    LastId { text: String, last: String },
    #[error("{0:?}: the range ends before it starts")]
    Reversed(String),
}

impl SourceRange {
    pub(crate) fn covers(&self, kind: SourceKind, id: u32) -> bool {
        self.kind == kind && (self.first..=self.last).contains(&id)
    }
}

impl FromStr for SourceRange {
    type Err = SourceRangeError;

    /// `KIND:ID` or `KIND:FIRST-LAST`.
    fn from_str(text: &str) -> Result<SourceRange, SourceRangeError> {
        let (start, last) = match text.split_once('-') {
            Some((start, last)) => (start, Some(last)),
            None => (text, None),
        };
        let (kind, first) = parse_source(start)?;
        let last = match last {
            None => first,
            Some(last) => last.parse().map_err(|_| SourceRangeError::LastId {
                text: text.into(),
                last: last.into(),
            })?,
        };
        if last < first {
            return Err(SourceRangeError::Reversed(text.into()));
        }
        Ok(SourceRange { kind, first, last })
    }
}

impl<'de> Deserialize<'de> for SourceRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(|err: SourceRangeError| {
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
}
