//! The priority fan-in: every source's batches merge here into the processor's bounded input.
//!
//! Two lanes, each bounded in frames. Emergency batches take their own lane, so an emergency never
//! waits for capacity behind routine traffic, whoever sent it. The processor takes from the
//! emergency lane first ([`FanIn::next`] is a biased select), so an emergency is processed before
//! every routine frame still queued when it arrived. A biased select starves the second branch under
//! a flood of the first; the `emergency_streak` guard bounds that: after that many emergency frames
//! in a row, a waiting routine batch goes next.

use crate::frame::{Batch, Priority};
use crate::queue::{frame_queue, Admitted, FrameReceiver, FrameSender, Reservation};

/// The producers' side: what a registered source admits its batches into.
#[derive(Debug, Clone)]
pub struct Ingress {
    emergency: FrameSender<Batch>,
    routine: FrameSender<Batch>,
}

/// The processor's side.
#[derive(Debug)]
pub struct FanIn {
    emergency: FrameReceiver<Batch>,
    routine: FrameReceiver<Batch>,
    streak: usize,
    max_streak: usize,
}

/// Creates the two lanes: `routine_capacity` and `emergency_capacity` frames.
pub fn priority_fan_in(
    routine_capacity: usize,
    emergency_capacity: usize,
    emergency_streak: usize,
) -> (Ingress, FanIn) {
    let (emergency_tx, emergency_rx) = frame_queue(emergency_capacity);
    let (routine_tx, routine_rx) = frame_queue(routine_capacity);
    (
        Ingress {
            emergency: emergency_tx,
            routine: routine_tx,
        },
        FanIn {
            emergency: emergency_rx,
            routine: routine_rx,
            streak: 0,
            max_streak: emergency_streak,
        },
    )
}

impl Ingress {
    /// Waits for room for `frames` frames in the lane of `priority`. Cancel-safe.
    pub async fn reserve(&self, priority: Priority, frames: usize) -> Reservation<Batch> {
        match priority {
            Priority::Emergency => self.emergency.reserve(frames).await,
            Priority::Routine => self.routine.reserve(frames).await,
        }
    }

    /// Frames inside both lanes, including the batch the processor is working on.
    pub fn occupied(&self) -> usize {
        self.emergency.occupied() + self.routine.occupied()
    }
}

impl FanIn {
    /// The next batch to process: emergency first, within the starvation guard. `None` once every
    /// [`Ingress`] is dropped and both lanes are empty, which is how the drain reaches the processor.
    pub async fn next(&mut self) -> Option<Admitted<Batch>> {
        if self.streak >= self.max_streak {
            if let Some(batch) = self.routine.try_recv() {
                self.streak = 0;
                return Some(batch);
            }
        }
        let batch = tokio::select! {
            biased;
            Some(batch) = self.emergency.recv() => batch,
            Some(batch) = self.routine.recv() => batch,
            else => return None,
        };
        match batch.item.priority {
            Priority::Emergency => self.streak += batch.item.len(),
            Priority::Routine => self.streak = 0,
        }
        Some(batch)
    }
}
