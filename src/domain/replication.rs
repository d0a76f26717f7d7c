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
//! The gate also bounds what waits for a replica: past what the sink replicates in [`PACE`] (as it
//! last measured, at least a floor, at most `sinks.nats.max_unreplicated_frames`) written and not
//! yet acknowledged by JetStream, the consumer takes no more routine frames (emergencies get twice
//! the room), and the pipeline's bounded queues slow the senders through TCP, as a slow disk does.
//! Why a pace and not only the bound: the sink publishes in the files' order, so an emergency
//! waits for every frame written before it; held in the pipeline instead, routine frames are
//! overtaken there.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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
    /// What the sink replicates in [`PACE`], as last measured, at least `floor`: routine frames
    /// may be written while fewer than this many wait.
    room: AtomicU64,
    floor: u64,
    /// Replicated when the pace was last measured.
    paced_at: AtomicU64,
}

/// How long an emergency waits behind routine frames for the sink, about, when JetStream is the
/// bottleneck.
pub(crate) const PACE: Duration = Duration::from_millis(200);

impl Replication {
    /// A gate that lets at most `bound` frames wait for their replica before routine frames
    /// wait, and at first `floor` (the sink's window, a few times over).
    pub fn new(bound: u64, floor: u64) -> Arc<Replication> {
        Arc::new(Replication {
            ledgers: Mutex::new(HashMap::new()),
            written: AtomicU64::new(0),
            replicated: watch::channel(0).0,
            bound,
            room: AtomicU64::new(floor),
            floor,
            paced_at: AtomicU64::new(0),
        })
    }

    /// Called by the sink every so often, `elapsed` since the last call: the room follows what it
    /// replicated meanwhile, over [`PACE`].
    pub(crate) fn pace(&self, elapsed: Duration) {
        let replicated = *self.replicated.borrow();
        let since = replicated.saturating_sub(self.paced_at.swap(replicated, Relaxed));
        let per_pace = since as f64 * PACE.as_secs_f64() / elapsed.as_secs_f64().max(1e-3);
        let smoothed = (self.room.load(Relaxed) as f64 + per_pace) / 2.0;
        let room = (smoothed as u64).clamp(self.floor.min(self.bound), self.bound);
        self.room.store(room, Relaxed);
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
        let room = self.room.load(Relaxed).min(self.bound);
        let room = match priority {
            Priority::Emergency => room.saturating_mul(2),
            Priority::Routine => room,
        };
        self.waiting() < room
    }

    /// Changes whenever frames are replicated: a consumer waiting for room waits on it.
    pub(crate) fn subscribe(&self) -> watch::Receiver<u64> {
        self.replicated.subscribe()
    }
}

/// Where a source stands in the fleet's stream: the sequence up to which the stream holds every
/// frame of it, as the last message of it says; `None` when the stream has none of it, or none
/// that says. The error names the cause (the stream unreachable, say).
pub(crate) trait FleetResume: Send + Sync + std::fmt::Debug {
    fn resume_after(&self, key: SourceKey) -> FleetLookup<'_>;
}

/// The answer of [`FleetResume::resume_after`], to come.
pub(crate) type FleetLookup<'a> =
    Pin<Box<dyn Future<Output = Result<Option<u64>, String>> + Send + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::Run;

    #[test]
    fn a_run_is_acknowledged_once_its_last_frame_is_replicated() {
        let gate = Replication::new(100, 100);
        let source = Source::for_test(7);
        source.record(&[
            Run::of(Priority::Routine, 3, 3),
            Run::of(Priority::Routine, 2, 5),
        ]);
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
        let gate = Replication::new(10, 10);
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

    #[test]
    fn the_room_follows_what_the_sink_replicates_within_the_floor_and_the_bound() {
        let gate = Replication::new(10_000, 100);
        assert!((gate.room.load(Relaxed), gate.floor) == (100, 100));
        // 5,000 frames replicated in 100 ms: 10,000 in the pace, smoothed halfway.
        gate.passed(5_000);
        gate.pace(Duration::from_millis(100));
        assert_eq!(gate.room.load(Relaxed), 5_050);
        gate.passed(50_000);
        gate.pace(Duration::from_millis(100));
        assert_eq!(gate.room.load(Relaxed), 10_000, "at most the bound");
        gate.pace(Duration::from_millis(100));
        gate.pace(Duration::from_millis(100));
        assert_eq!(
            gate.room.load(Relaxed),
            2_500,
            "halved with nothing replicated"
        );
        for _ in 0..10 {
            gate.pace(Duration::from_millis(100));
        }
        assert_eq!(gate.room.load(Relaxed), 100, "at least the floor");
        gate.written(55_000 + 99);
        assert!(gate.has_room(Priority::Routine));
        gate.written(1);
        assert!(!gate.has_room(Priority::Routine));
    }
}
