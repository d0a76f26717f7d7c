//! `[catalog]`: catalog updates, `PUT /catalog`, fanned out to every connected source.

use serde::Deserialize;

use super::bounds::{self, Bound};
use super::error::Invalid;
use crate::protocol::ingest::MAX_CATALOG_BYTES;

/// Catalog updates: `PUT /catalog`, fanned out to every connected source.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CatalogConfig {
    /// Largest catalog body accepted, in bytes; a larger one is refused with HTTP 413.
    pub max_bytes: usize,
}

impl Default for CatalogConfig {
    fn default() -> Self {
        CatalogConfig { max_bytes: 1 << 20 }
    }
}

impl CatalogConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let most = MAX_CATALOG_BYTES as u64;
        let row = Bound::bytes("catalog.max_bytes", self.max_bytes, 1..=most);
        bounds::check(&[row.most_because("the protocol's limit")])
    }
}
