//! `[feed]`: the monitor's live feed, `GET /feed`, to lossy WebSocket subscribers.

use std::time::Duration;

use serde::Deserialize;

use super::bounds::{self, Bound, UNBOUNDED};
use super::de::millis;
use super::error::Invalid;

/// Subscribers of the feed at once, at most.
const MAX_SUBSCRIBERS: u64 = 1 << 16;

/// The monitor's live feed, `GET /feed`: lossy WebSocket subscribers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FeedConfig {
    /// Subscribers at once; one more is refused with HTTP 503.
    pub max_subscribers: usize,
    /// Bytes of socket reads one subscriber's queue may hold (its memory), shared out among the
    /// shards (each share takes at least one read): what does not fit is skipped for it and
    /// reported as a gap.
    pub queue_bytes: usize,
    /// Frames of each priority sent to one subscriber per second, at most (a second's worth may
    /// come at once); what it would get beyond is skipped and reported as a gap.
    pub max_frames_per_sec: u32,
    /// A subscriber that takes longer than this to accept what it is sent is disconnected.
    #[serde(rename = "send_timeout_ms", deserialize_with = "millis")]
    pub send_timeout: Duration,
}

impl Default for FeedConfig {
    fn default() -> Self {
        FeedConfig {
            max_subscribers: 16,
            queue_bytes: 8 << 20,
            max_frames_per_sec: 1_000,
            send_timeout: Duration::from_secs(10),
        }
    }
}

impl FeedConfig {
    /// Bounds; `queue_bytes` against `connection.read_buffer` is checked by the whole.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        bounds::check(&[
            Bound::count(
                "feed.max_subscribers",
                self.max_subscribers,
                MAX_SUBSCRIBERS,
            ),
            Bound::count(
                "feed.max_frames_per_sec",
                self.max_frames_per_sec,
                UNBOUNDED,
            ),
            Bound::millis("feed.send_timeout_ms", self.send_timeout),
        ])
    }
}
