//! `[clock]`: what the daemon calls a step of the wall clock, and how long it doubts the clock
//! after a start (`docs/guarantees.md`, "Time").

use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound, UNBOUNDED};
use super::de::millis;
use super::error::Invalid;

/// The wall clock, as the daemon watches it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClockConfig {
    /// A change of the wall clock against the monotonic clock larger than this is a step: logged,
    /// counted, recorded in the archive, and `/healthz` degraded while the two disagree by more.
    /// Above a second, so that a stepped leap second is none.
    #[serde(rename = "step_threshold_ms", deserialize_with = "millis")]
    pub step_threshold: Duration,
    /// After a start, how long `archive.retention.max_age` waits before it counts the time
    /// between the newest frame the archive held and the clock at the start (downtime, or a step
    /// the daemon could not see), and the most `/healthz` says degraded after a start whose
    /// clock was behind that frame. 0 trusts the clock at the start at once.
    #[serde(rename = "start_grace_ms", deserialize_with = "millis")]
    pub start_grace: Duration,
}

impl Default for ClockConfig {
    fn default() -> Self {
        ClockConfig {
            step_threshold: Duration::from_millis(1500),
            start_grace: Duration::from_secs(3600),
        }
    }
}

impl ClockConfig {
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        let grace = Bound::millis("clock.start_grace_ms", self.start_grace);
        bounds::check(&[
            Bound::millis("clock.step_threshold_ms", self.step_threshold),
            Bound {
                range: 0..=UNBOUNDED,
                ..grace
            },
        ])
    }
}
