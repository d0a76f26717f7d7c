//! `[dashboard]`: how often the stats the dashboard shows are taken.

use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound};
use super::de::millis;
use super::error::Invalid;

/// The monitoring dashboard.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DashboardConfig {
    /// How often a stats snapshot is published and, when it changed, logged.
    #[serde(rename = "stats_interval_ms", deserialize_with = "millis")]
    pub stats_interval: Duration,
}

impl Default for DashboardConfig {
    fn default() -> Self {
        DashboardConfig {
            stats_interval: Duration::from_secs(1),
        }
    }
}

impl DashboardConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        bounds::check(&[Bound::millis(
            "dashboard.stats_interval_ms",
            self.stats_interval,
        )])
    }
}
