//! `[pipeline]`: the capacities of the in-memory pipeline, counted in frames.

use serde::Deserialize;

use super::bounds::{self, Bound, UNBOUNDED};
use super::error::{Invalid, Problem};

/// Frames one queue holds, at most: past it a capacity is a typo or an "unlimited".
const MAX_QUEUE_FRAMES: u64 = 1 << 20;

/// Capacities of the in-memory pipeline, counted in frames.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Routine frames the processor's input holds (waiting, or being processed).
    pub processor_capacity: usize,
    /// Emergency frames the processor's input holds, apart from routine ones so that an emergency
    /// never waits for routine frames to drain; and as many again in the archive's queue, so that
    /// it does not wait for a slow archive to make room either.
    pub emergency_capacity: usize,
    /// Routine frames handed to the archive and not yet written.
    pub archive_capacity: usize,
    /// Largest number of frames moved through the pipeline as one unit.
    pub max_batch_frames: usize,
    /// Starvation guard: after this many emergency frames in a row while routine frames wait, the
    /// processor takes one routine batch.
    pub emergency_streak: usize,
    /// Removed (the stats log stopped following every frame in 9a11fac): accepted and ignored,
    /// with a warning, until the next major release (docs/compatibility.md).
    #[serde(rename = "dashboard_capacity")]
    pub(super) removed_dashboard_capacity: Option<serde::de::IgnoredAny>,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            processor_capacity: 64,
            emergency_capacity: 64,
            archive_capacity: 1024,
            max_batch_frames: 64,
            emergency_streak: 256,
            removed_dashboard_capacity: None,
        }
    }
}

impl PipelineConfig {
    /// Every capacity within its bounds, and a batch that fits in every queue.
    pub(super) fn validate(&self) -> Result<(), Invalid> {
        bounds::check(&[
            Bound::count(
                "pipeline.processor_capacity",
                self.processor_capacity,
                MAX_QUEUE_FRAMES,
            ),
            Bound::count(
                "pipeline.emergency_capacity",
                self.emergency_capacity,
                MAX_QUEUE_FRAMES,
            ),
            Bound::count(
                "pipeline.archive_capacity",
                self.archive_capacity,
                MAX_QUEUE_FRAMES,
            ),
            Bound::count(
                "pipeline.max_batch_frames",
                self.max_batch_frames,
                UNBOUNDED,
            ),
            Bound::count(
                "pipeline.emergency_streak",
                self.emergency_streak,
                UNBOUNDED,
            ),
        ])?;
        let smallest = self
            .processor_capacity
            .min(self.emergency_capacity)
            .min(self.archive_capacity);
        if self.max_batch_frames > smallest {
            let problem = Problem::BatchExceedsQueue {
                batch: self.max_batch_frames,
                smallest,
            };
            return Err(Invalid::new("pipeline.max_batch_frames", problem));
        }
        Ok(())
    }
}
