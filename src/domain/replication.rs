//! Acknowledgements that wait for a replica (`sinks.nats.ack = "replicated"`): a frame is
//! acknowledged to its sender once JetStream holds it, so that the loss of this machine loses
//! nothing a sender was told is safe.
//!
//! Why a gate of its own, below both sides: the archive's consumer stores a source's frames, and
//! the NATS sink, which follows the archive's files, learns when JetStream acknowledged them;
//! neither imports the other. The consumer hands over each source's [`Ledger`] before it writes
//! the source's frames, and so before the sink (which reads only what is durable) can meet them;
//! the sink marks each frame JetStream acknowledged in that ledger, which then moves the ACK as
//! the archive's stores do in the `local` mode. PubAcks come in the files' order and a ledger run
//! is consecutive frames of one batch, so a run is marked when its last frame is, and only then.
//!
//! With `identity = "fleet"` a source may fail over to another daemon, which must tell it where to
//! resume: each message carries its source's acknowledgement when it was published (every frame
//! up to it is in the stream), and a daemon that registers a source asks the stream for the last
//! one ([`FleetResume`]) and raises the source's ledger to it.
//!
//! The gate also bounds what waits for a replica: past `sinks.nats.max_unreplicated_frames`
//! written and not yet acknowledged by JetStream, the consumer takes no more routine frames
//! (emergencies get twice the room), and the pipeline's bounded queues slow the senders through
//! TCP, as a slow disk does.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

use super::frame::{Priority, SourceKey};
use super::ledger::Ledger;
use super::source::Source;

/// The gate between the archive, which stores frames, and the sink, which replicates them.
#[derive(Debug)]
pub struct Replication {
    /// Every source whose frames this run wrote, by key.
    ledgers: Mutex<HashMap<SourceKey, Arc<Ledger>>>,
    /// Frames written to the archive by this run.
    written: AtomicU64,
    /// Frames of this run JetStream acknowledged (or that the sink is done with otherwise).
    replicated: watch::Sender<u64>,
    /// Routine frames may be written while fewer than this many wait for their replica.
    bound: u64,
}

impl Replication {
    /// A gate that lets `bound` frames wait for their replica before routine frames wait.
    pub fn new(bound: u64) -> Arc<Replication> {
        Arc::new(Replication {
            ledgers: Mutex::new(HashMap::new()),
            written: AtomicU64::new(0),
            replicated: watch::channel(0).0,
            bound,
        })
    }

    /// Called by the archive's consumer before it writes frames of `source`: the sink will find
    /// its ledger.
    pub(crate) fn writing(&self, source: &Source) {
        let mut ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        ledgers
            .entry((source.kind, source.id))
            .or_insert_with(|| Arc::clone(source.ledger()));
    }

    /// Called by the archive's consumer once `frames` are written.
    pub(crate) fn written(&self, frames: u64) {
        self.written.fetch_add(frames, Relaxed);
    }

    /// Called by the sink for a frame JetStream acknowledged (or already held): its source's
    /// acknowledgement may move. `new`: the frame was written by this run.
    pub(crate) fn replicated(&self, key: SourceKey, priority: Priority, sequence: u64, new: bool) {
        let ledger = {
            let ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
            ledgers.get(&key).cloned()
        };
        if let Some(ledger) = ledger {
            ledger.stored(priority, sequence, sequence);
        }
        if new {
            self.passed(1);
        }
    }

    /// The acknowledgement of the source `key`: every frame of it up to there is replicated.
    /// `None` for a source this run wrote nothing of.
    pub(crate) fn acked_through(&self, key: SourceKey) -> Option<u64> {
        let ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
        ledgers.get(&key)?.acked()
    }

    /// Called by the sink for frames of this run it is done with without a PubAck (retention
    /// deleted them first): they wait no more.
    pub(crate) fn passed(&self, frames: u64) {
        self.replicated.send_modify(|done| *done += frames);
    }

    /// Frames written and not yet replicated.
    pub fn waiting(&self) -> u64 {
        let written = self.written.load(Relaxed);
        written.saturating_sub(*self.replicated.borrow())
    }

    /// Whether a batch of `priority` may be written now.
    pub(crate) fn has_room(&self, priority: Priority) -> bool {
        let bound = match priority {
            Priority::Emergency => self.bound.saturating_mul(2),
            Priority::Routine => self.bound,
        };
        self.waiting() < bound
    }

    /// Changes whenever frames are replicated: a consumer waiting for room waits on it.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.replicated.subscribe()
    }
}

/// Where a source stands in the fleet's stream: the sequence up to which the stream holds every
/// frame of it, as the last message of it says; `None` when the stream has none of it, or none
/// that says. The error names the cause (the stream unreachable, say).
pub trait FleetResume: Send + Sync + std::fmt::Debug {
    fn resume_after(&self, key: SourceKey) -> FleetLookup<'_>;
}

/// The answer of [`FleetResume::resume_after`], to come.
pub type FleetLookup<'a> = Pin<Box<dyn Future<Output = Result<Option<u64>, String>> + Send + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::Run;

    fn run(priority: Priority, frames: u64, last_sequence: u64) -> Run {
        Run {
            priority,
            frames,
            last_sequence,
        }
    }

    #[test]
    fn a_run_is_acknowledged_once_its_last_frame_is_replicated() {
        let gate = Replication::new(100);
        let source = Source::for_test(7);
        source.record(&[run(Priority::Routine, 3, 3), run(Priority::Routine, 2, 5)]);
        gate.writing(&source);
        gate.written(5);
        let key = (source.kind, source.id);
        for sequence in 1..=2 {
            gate.replicated(key, Priority::Routine, sequence, true);
        }
        assert_eq!(source.last_acked(), None, "frames 1-2 of the run 1-3");
        gate.replicated(key, Priority::Routine, 3, true);
        assert_eq!(source.last_acked(), Some(3));
        gate.replicated(key, Priority::Routine, 4, true);
        gate.replicated(key, Priority::Routine, 5, true);
        assert_eq!(source.last_acked(), Some(5));
        assert_eq!(gate.waiting(), 0);
    }

    #[test]
    fn routine_frames_wait_past_the_bound_and_emergencies_past_twice_it() {
        let gate = Replication::new(10);
        gate.written(10);
        assert!(!gate.has_room(Priority::Routine));
        assert!(gate.has_room(Priority::Emergency));
        gate.written(10);
        assert!(!gate.has_room(Priority::Emergency));
        let moved = gate.subscribe();
        gate.passed(1);
        assert!(moved.has_changed().unwrap_or(false));
        assert!(gate.has_room(Priority::Emergency));
        assert!(!gate.has_room(Priority::Routine));
    }
}
