//! Whether the daemon is ready, draining or degraded: what `/healthz`, `/metrics` and a load
//! balancer read, without touching the pipeline.

use tokio_util::sync::CancellationToken;

use crate::stats::Stats;

/// What a load balancer or orchestrator should make of the daemon right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// Accepting and storing frames.
    Ready,
    /// Shutting down: finishing what it accepted, accepting nothing new.
    Draining,
    /// Running, but the archive is failing (from its first failed write until every frame that
    /// write held is stored, frames are not being acknowledged), retention cannot keep the
    /// archive's size limits (only segments it never deletes are left), or the NATS sink is
    /// disconnected or further behind than `sinks.nats.max_lag_ms` (ingest goes on; the sink
    /// catches up), or the clock is in doubt (`crate::ops::clock`: the wall clock stepped, or
    /// the daemon started with it behind the archive; nothing is lost, the stamps follow the
    /// archive clock).
    Degraded,
}

/// Reads the daemon's health without touching the pipeline: a token check and an atomic load.
#[derive(Debug, Clone)]
pub struct HealthProbe {
    drain: CancellationToken,
    stats: Stats,
}

impl HealthProbe {
    /// Draining once `drain` is cancelled; degraded while `stats` say the archive or a sink fails.
    pub(crate) fn new(drain: CancellationToken, stats: Stats) -> Self {
        HealthProbe { drain, stats }
    }

    /// Resolves once the drain has begun.
    pub(crate) async fn draining(&self) {
        self.drain.cancelled().await
    }

    pub fn health(&self) -> Health {
        let stats = self.stats.snapshot();
        if self.drain.is_cancelled() {
            Health::Draining
        } else if stats.archive_failing != 0
            || stats.nats_degraded != 0
            || stats.retention_short != 0
            || stats.clock_in_doubt != 0
        {
            Health::Degraded
        } else {
            Health::Ready
        }
    }
}
