//! A catalog (a TLE set, or whatever operators publish): what every connected source receives,
//! the catalog store keeps, and the HTTP API serves.

use bytes::Bytes;

/// One published catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    /// 1 for the first publication, one more for each after it.
    pub version: u64,
    pub content_type: String,
    pub body: Bytes,
    pub published_unix_ms: u64,
}
