//! The frame processor: takes batches from the priority fan-in, accounts for them, and fans them out.
//!
//! It is the single point every frame passes, so it owns the processing counters and stamps each
//! batch with the instant it was processed. Fan-out goes two ways: the archive, which must receive
//! every frame, through a queue bounded in frames whose `send` waits (backpressure, never loss);
//! and lossy subscribers such as the dashboard and `/feed` clients through the fan-out, whose
//! `publish` never waits. The batch's fan-in capacity is given back only once the archive has it, so a slow
//! archive slows the fan-in and, through it, the sources' sockets.
//!
//! A slow archive must not hold emergencies back, though. Emergencies reach the archive's queue
//! under a bound of their own (`emergency_capacity` frames), and while a routine batch waits for
//! room the processor goes on taking emergency batches: a disk that cannot keep up slows routine
//! telemetry to its pace, while SAFE_MODE and ABORT are still processed the moment they arrive.
//! The archive then receives such an emergency ahead of the routine batch processed just before
//! it; each priority's frames still reach it in order, which is what acknowledgements count on.

use std::sync::Arc;
use std::time::Instant;

use crate::domain::batch::Batch;
use crate::domain::frame::Priority;
use crate::pipeline::fan_in::{Admitted, FanIn};
use crate::pipeline::fan_out::FanOutLane;
use crate::pipeline::queue::FrameSender;
use crate::stats::Stats;

pub(crate) struct Processor {
    pub fan_in: FanIn,
    /// Routine batches into the archive's queue.
    pub archive: FrameSender<Arc<Batch>>,
    /// Emergency batches into the same queue, under their own bound.
    pub archive_emergency: FrameSender<Arc<Batch>>,
    /// The shard's lane of the lossy fan-out: the last processor to drop its lane ends the
    /// subscriptions.
    pub subscribers: FanOutLane,
    pub stats: Stats,
}

/// The archive's queue is gone: frames can no longer be stored.
struct ArchiveStopped;

impl Processor {
    /// Runs until the fan-in is closed and empty, then drops both fan-outs, which ends the archive
    /// and the subscribers once they have taken what is queued.
    pub(crate) async fn run(mut self) {
        match self.pump().await {
            Ok(()) => tracing::debug!("processor: fan-in closed and drained"),
            Err(ArchiveStopped) => {
                tracing::error!("processor: the archive stopped; frames can no longer be stored")
            }
        }
    }

    async fn pump(&mut self) -> Result<(), ArchiveStopped> {
        while let Some(admitted) = self.fan_in.next().await {
            if admitted.item.priority == Priority::Emergency {
                self.emergency(admitted).await?;
                continue;
            }
            let Admitted { item, permit } = admitted;
            let batch = self.process(item);
            let frames = batch.len();
            let reservation = loop {
                tokio::select! {
                    biased;
                    reservation = self.archive.reserve(frames) => break reservation,
                    emergency = self.fan_in.next_emergency() => self.emergency(emergency).await?,
                }
            };
            reservation.send(batch).map_err(|_| ArchiveStopped)?;
            drop(permit);
        }
        Ok(())
    }

    /// Processes an emergency batch and hands it to the archive under the emergencies' bound.
    async fn emergency(&self, admitted: Admitted) -> Result<(), ArchiveStopped> {
        let Admitted { item, permit } = admitted;
        let batch = self.process(item);
        let frames = batch.len();
        let sent = self.archive_emergency.send(batch, frames).await;
        drop(permit);
        sent.map_err(|_| ArchiveStopped)
    }

    /// Accounts for the batch, stamps it and hands it to the subscribers.
    fn process(&self, mut batch: Batch) -> Arc<Batch> {
        batch.processed_at = Some(Instant::now());
        let batch = Arc::new(batch);
        let emergency = batch.priority == Priority::Emergency;
        let frames = batch.len();
        self.stats
            .processed(frames as u64, emergency, batch.payload_bytes());
        if tracing::enabled!(tracing::Level::DEBUG) {
            tracing::debug!(
                source_id = batch.source.id,
                priority = batch.priority.as_str(),
                frames,
                first_seq = batch.first_sequence(),
                last_seq = batch.last_sequence(),
                "processed"
            );
        }
        self.subscribers.publish(&batch);
        batch
    }
}
