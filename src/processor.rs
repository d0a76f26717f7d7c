//! The frame processor: takes batches from the priority fan-in, accounts for them, and fans them out.
//!
//! It is the single point every frame passes, in processing order, so it owns the processing
//! counters. Fan-out goes two ways: the archive, which must receive every frame, through a queue
//! bounded in frames whose `send` waits (backpressure, never loss); and lossy subscribers such as
//! the dashboard through a broadcast channel whose `send` never waits. The batch's fan-in capacity
//! is given back only once the archive has it, so a slow archive slows the fan-in and, through it,
//! the sources' sockets.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::broadcast;

use crate::fan_in::FanIn;
use crate::frame::{Batch, Priority};
use crate::queue::FrameSender;
use crate::stats::Stats;

pub struct Processor {
    pub fan_in: FanIn,
    pub archive: FrameSender<Arc<Batch>>,
    pub subscribers: broadcast::Sender<Arc<Batch>>,
    pub stats: Stats,
}

impl Processor {
    /// Runs until the fan-in is closed and empty, then drops both fan-outs, which ends the archive
    /// and the subscribers once they have taken what is queued.
    pub async fn run(mut self) {
        while let Some(admitted) = self.fan_in.next().await {
            let mut batch = admitted.item;
            batch.processed_at = Some(Instant::now());
            let batch = Arc::new(batch);
            let emergency = batch.priority == Priority::Emergency;
            let frames = batch.len();
            self.stats
                .processed(frames as u64, emergency, batch.payload_bytes());
            if tracing::enabled!(tracing::Level::DEBUG) {
                let first = batch.first_sequence();
                tracing::debug!(
                    source_id = batch.source.id,
                    priority = batch.priority.as_str(),
                    frames,
                    first_seq = ?first,
                    last_seq = ?batch.last_sequence(),
                    "processed"
                );
            }
            // No subscriber is not an error: the dashboard is optional.
            let _ = self.subscribers.send(Arc::clone(&batch));
            if self.archive.send(batch, frames).await.is_err() {
                tracing::error!("processor: the archive stopped; frames can no longer be stored");
                break;
            }
            drop(admitted.permit);
        }
        tracing::debug!("processor: fan-in closed and drained");
    }
}
