//! `[runtime]`: the async runtime and the pipeline shards that run every task of the daemon.

use serde::Deserialize;

use super::bounds::{self, Bound, UNBOUNDED};
use super::error::Invalid;
use crate::domain::shard::MAX_SHARDS;

/// Worker threads of the main runtime, at most.
const MAX_WORKER_THREADS: u64 = 1024;

/// The async runtime that runs every task of the daemon.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Worker threads of the main runtime, which runs the listeners, handshakes, the router and
    /// the monitor. Registered connections and the pipeline run on the shards' threads
    /// ([`RuntimeConfig::shards`]), so 1 (the default) is enough.
    pub worker_threads: usize,
    /// Tasks a worker runs between two looks at the sockets' readiness (Tokio's
    /// `event_interval`, 61 by its default). Under saturation every task has a full read or a run
    /// of batches to do, so 61 of them delay noticing a socket that just got an emergency frame by
    /// milliseconds; 8 keeps the emergency probe's latency within its target at little cost in
    /// throughput (`docs/architecture.md`).
    pub event_interval: u32,
    /// Pipeline shards: each a whole chain (fan-in, processor, archive writer with its own
    /// segments) on a thread of its own, with the connections of the sources dealt to it. By
    /// default one per available core, at most [`MAX_SHARDS`].
    pub shards: usize,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            worker_threads: 1,
            event_interval: 8,
            shards: std::thread::available_parallelism()
                .map_or(1, |cores| cores.get().min(MAX_SHARDS)),
        }
    }
}

impl RuntimeConfig {
    /// Builds the runtime: a current-thread runtime for one worker, a multi-thread one otherwise.
    pub fn build(&self) -> std::io::Result<tokio::runtime::Runtime> {
        let mut builder = match self.worker_threads {
            1 => tokio::runtime::Builder::new_current_thread(),
            n => {
                let mut builder = tokio::runtime::Builder::new_multi_thread();
                builder.worker_threads(n);
                builder
            }
        };
        builder
            .event_interval(self.event_interval)
            .enable_all()
            .build()
    }

    pub(super) fn validate(&self) -> Result<(), Invalid> {
        bounds::check(&[
            Bound::count(
                "runtime.worker_threads",
                self.worker_threads,
                MAX_WORKER_THREADS,
            ),
            Bound::count("runtime.shards", self.shards, MAX_SHARDS as u64),
            Bound::count("runtime.event_interval", self.event_interval, UNBOUNDED),
        ])
    }
}
