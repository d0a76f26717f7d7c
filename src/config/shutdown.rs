//! `[shutdown]`: the drain after SIGTERM.

use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound};
use super::de::millis;
use super::error::Invalid;

/// The SIGTERM drain.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownConfig {
    /// Everything accepted must be processed and archived within this time after the signal.
    #[serde(rename = "drain_deadline_ms", deserialize_with = "millis")]
    pub drain_deadline: Duration,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        ShutdownConfig {
            drain_deadline: Duration::from_secs(5),
        }
    }
}

impl ShutdownConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        bounds::check(&[Bound::millis(
            "shutdown.drain_deadline_ms",
            self.drain_deadline,
        )])
    }
}
