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
//! After a restart, WELCOME's resume point and the duplicates of a reconnecting source count what
//! the archive holds, published or not: a source recovery found frames of above its recorded
//! acknowledgement is welcomed only once the sink has published every frame earlier runs archived
//! ([`Replication::earlier_published`]).
//!
//! The gate also bounds what waits for a replica: past what the sink replicates in its pace (as
//! it last measured, at least a floor, at most `sinks.nats.max_unreplicated_frames`) written and
//! not yet acknowledged by JetStream, the consumer takes no more routine frames (emergencies get
//! twice the room), and the pipeline's bounded queues slow the senders through TCP, as a slow disk
//! does. Why a pace and not only the bound: the sink reads the files in their order, so an
//! emergency is found only once the frames written before it are read; held in the pipeline
//! instead, routine frames are overtaken there.
//!
//! The pace is `sinks.nats.emergency_wait_ms` (200 ms by default, and at most): the shorter, the
//! sooner an emergency is acknowledged, but the fewer frames a message of the sink holds, and the
//! room must cover what the frames spend between the write and the PubAck (the segment's sync,
//! the reading, the round trip to JetStream), or the sink idles. So the pace grows while the sink
//! waits for frames with room in its window and the consumer holds routine frames back, and
//! shrinks back towards the setting otherwise.

use std::collections::HashMap;
use std::future::Future;
use std::ops::RangeInclusive;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{watch, Notify};

use super::frame::{Priority, SourceKey};
use super::handover::Handover;
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
    replicated: AtomicU64,
    /// The count of `replicated` at which a consumer waiting for room has it (the least, when
    /// several wait); `u64::MAX` when none waits. The sink wakes them only then: a wake-up per
    /// replicated frame would cost the consumer's thread a switch per frame.
    wake_at: AtomicU64,
    room_made: Notify,
    /// Routine frames may be written while fewer than this many wait for their replica.
    bound: u64,
    /// What the sink replicates in its pace, as last measured, at least `floor`: routine frames
    /// may be written while fewer than this many wait.
    room: AtomicU64,
    floor: u64,
    /// The pace, in µs, from `least_pace_us` to [`MOST_PACE`].
    pace_us: AtomicU64,
    least_pace_us: u64,
    /// Since the last measure: how long the sink waited for frames with room in its window (µs),
    /// and whether the consumer held frames back for room.
    starved_us: AtomicU64,
    held_back: AtomicBool,
    /// Replicated when the pace was last measured.
    paced_at: AtomicU64,
    /// Set once the sink has published (or is otherwise done with) every frame earlier runs
    /// archived: until then a source the archive holds unpublished frames of is not welcomed.
    earlier_published: watch::Sender<bool>,
    /// Emergencies the journal appends, for the sink to publish ahead of the files.
    handover: Handover,
}

/// The most of the sink's publishing time that may wait for it: about how long an emergency waits
/// for the sink to read the routine frames written before it, when JetStream is the bottleneck.
pub(crate) const MOST_PACE: Duration = Duration::from_millis(200);

/// The share of a measure's time (%) the sink may wait for frames, while the consumer holds some
/// back, before the pace grows.
const STARVED_PERCENT: u64 = 5;

/// `duration` in µs.
fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

impl Replication {
    /// A gate that lets at most `bound` frames wait for their replica before routine frames
    /// wait, and at first `floor` (the sink's window, a few times over); its pace is at least
    /// `least_pace` (at most [`MOST_PACE`]).
    pub fn new(bound: u64, floor: u64, least_pace: Duration) -> Arc<Replication> {
        let least_pace_us = micros(least_pace.min(MOST_PACE));
        Arc::new(Replication {
            ledgers: Mutex::new(HashMap::new()),
            written: AtomicU64::new(0),
            replicated: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            room_made: Notify::new(),
            bound,
            room: AtomicU64::new(floor),
            floor,
            pace_us: AtomicU64::new(least_pace_us),
            least_pace_us,
            starved_us: AtomicU64::new(0),
            held_back: AtomicBool::new(false),
            paced_at: AtomicU64::new(0),
            earlier_published: watch::channel(false).0,
            handover: Handover::default(),
        })
    }

    /// Called by the sink every so often, `elapsed` since the last call: the room follows what it
    /// replicated meanwhile, over its pace.
    pub(crate) fn pace(&self, elapsed: Duration) {
        let replicated = self.replicated.load(Relaxed);
        let since = replicated.saturating_sub(self.paced_at.swap(replicated, Relaxed));
        let elapsed_us = micros(elapsed).max(1_000);
        let pace_us = self.adapt_pace(elapsed_us);
        let per_pace = u128::from(since) * u128::from(pace_us) / u128::from(elapsed_us);
        let per_pace = u64::try_from(per_pace).unwrap_or(u64::MAX);
        let smoothed = self.room.load(Relaxed) / 2 + per_pace / 2;
        let room = smoothed.clamp(self.floor.min(self.bound), self.bound);
        if self.room.swap(room, SeqCst) < room {
            self.wake();
        }
    }

    /// The pace in µs: grown by a quarter where the sink starved over more than
    /// [`STARVED_PERCENT`] of `elapsed_us` with frames held back for room, else shrunk by a
    /// twentieth, from the least to [`MOST_PACE`].
    fn adapt_pace(&self, elapsed_us: u64) -> u64 {
        let starved_us = self.starved_us.swap(0, Relaxed);
        let held_back = self.held_back.swap(false, Relaxed);
        let pace = self.pace_us.load(Relaxed);
        let pace = match held_back && starved_us * 100 > elapsed_us * STARVED_PERCENT {
            true => pace + pace / 4,
            false => pace - pace / 20,
        };
        let pace = pace.clamp(self.least_pace_us, micros(MOST_PACE));
        self.pace_us.store(pace, Relaxed);
        pace
    }

    /// Called by the sink after it waited `waited` for frames with room in its window.
    pub(crate) fn starved(&self, waited: Duration) {
        self.starved_us.fetch_add(micros(waited), Relaxed);
    }

    /// Called by the sink once it is done with every frame earlier runs archived.
    pub(crate) fn published_earlier(&self) {
        self.earlier_published.send_replace(true);
    }

    /// Whether the sink is done with every frame earlier runs archived.
    pub(crate) fn has_published_earlier(&self) -> bool {
        *self.earlier_published.borrow()
    }

    /// Completes once the sink is done with every frame earlier runs archived.
    pub(crate) async fn earlier_published(&self) {
        let mut published = self.earlier_published.subscribe();
        // The sender lives as long as the gate, which the caller holds.
        let _ = published.wait_for(|published| *published).await;
    }

    /// Where the archive's consumer hands the emergencies its journal appends to the sink.
    pub(crate) fn handover(&self) -> &Handover {
        &self.handover
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

    /// Called by the sink for frames JetStream acknowledged (or already held): those of one
    /// priority of source `key` with these consecutive `sequences`, each of them in one message;
    /// `new` of them written by this run. The source's acknowledgement may move.
    pub(crate) fn replicated(
        &self,
        key: SourceKey,
        priority: Priority,
        sequences: RangeInclusive<u64>,
        new: u64,
    ) {
        let ledger = {
            let ledgers = self.ledgers.lock().unwrap_or_else(PoisonError::into_inner);
            ledgers.get(&key).cloned()
        };
        if let Some(ledger) = ledger {
            ledger.stored(priority, *sequences.start(), *sequences.end());
        }
        if new > 0 {
            self.passed(new);
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
        let replicated = self.replicated.fetch_add(frames, SeqCst) + frames;
        if replicated >= self.wake_at.load(SeqCst) {
            self.wake();
        }
    }

    /// Wakes every consumer waiting for room, to look again.
    fn wake(&self) {
        self.wake_at.store(u64::MAX, SeqCst);
        self.room_made.notify_waiters();
    }

    /// Frames written and not yet replicated.
    pub fn waiting(&self) -> u64 {
        let written = self.written.load(SeqCst);
        written.saturating_sub(self.replicated.load(SeqCst))
    }

    /// Whether a batch of `priority` may be written now.
    pub(crate) fn has_room(&self, priority: Priority) -> bool {
        self.waiting() < self.room(priority)
    }

    /// How many frames may wait for their replica before a batch of `priority` waits.
    fn room(&self, priority: Priority) -> u64 {
        let room = self.room.load(SeqCst).min(self.bound);
        match priority {
            Priority::Emergency => room.saturating_mul(2),
            Priority::Routine => room,
        }
    }

    /// Completes once a batch of `priority` may be written.
    pub(crate) async fn room_for(&self, priority: Priority) {
        loop {
            let made = self.room_made.notified();
            tokio::pin!(made);
            made.as_mut().enable();
            // Told before the look: a frame replicated in between is seen by one or the other.
            let written = self.written.load(SeqCst);
            let at = written
                .saturating_sub(self.room(priority))
                .saturating_add(1);
            self.wake_at.fetch_min(at, SeqCst);
            if self.has_room(priority) {
                return;
            }
            self.held_back.store(true, Relaxed);
            made.await;
        }
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

    /// The least pace of the gates tested.
    const LEAST: Duration = Duration::from_millis(10);

    #[test]
    fn a_run_is_acknowledged_once_its_last_frame_is_replicated() {
        let gate = Replication::new(100, 100, LEAST);
        let source = Source::for_test(7);
        source.record(&[
            Run::of(Priority::Routine, 3, 3),
            Run::of(Priority::Routine, 2, 5),
        ]);
        gate.writing(&source);
        gate.written(5);
        let key = (source.kind, source.id);
        for sequence in 1..=2 {
            gate.replicated(key, Priority::Routine, sequence..=sequence, 1);
        }
        assert_eq!(source.last_acked(), None, "frames 1-2 of the run 1-3");
        gate.replicated(key, Priority::Routine, 3..=3, 1);
        assert_eq!(source.last_acked(), Some(3));
        gate.replicated(key, Priority::Routine, 4..=4, 1);
        gate.replicated(key, Priority::Routine, 5..=5, 1);
        assert_eq!(source.last_acked(), Some(5));
        assert_eq!(gate.waiting(), 0);
    }

    #[test]
    fn routine_frames_wait_past_the_bound_and_emergencies_past_twice_it() {
        let gate = Replication::new(10, 10, LEAST);
        gate.written(10);
        assert!(!gate.has_room(Priority::Routine));
        assert!(gate.has_room(Priority::Emergency));
        gate.written(10);
        assert!(!gate.has_room(Priority::Emergency));
        gate.passed(1);
        assert!(gate.has_room(Priority::Emergency));
        assert!(!gate.has_room(Priority::Routine));
    }

    /// Wakes of a task, counted.
    #[derive(Default)]
    struct Wakes(AtomicU64);

    impl std::task::Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Relaxed);
        }
    }

    #[test]
    fn a_consumer_waiting_for_room_is_woken_once_there_is_room_and_not_before() {
        use std::task::{Context, Poll, Waker};
        let gate = Replication::new(10, 10, LEAST);
        gate.written(20);
        let wakes = Arc::new(Wakes::default());
        let waker = Waker::from(Arc::clone(&wakes));
        let mut cx = Context::from_waker(&waker);
        let mut routine = Box::pin(gate.room_for(Priority::Routine));
        assert_eq!(routine.as_mut().poll(&mut cx), Poll::Pending);
        // Room for routine frames once fewer than 10 of the 20 wait: after the 11th.
        for _ in 0..10 {
            gate.passed(1);
        }
        assert_eq!(wakes.0.load(Relaxed), 0, "woken without room");
        gate.passed(1);
        assert_eq!(wakes.0.load(Relaxed), 1);
        assert_eq!(routine.as_mut().poll(&mut cx), Poll::Ready(()));
        // A room that grows wakes a waiter too: 500 replicated in 100 ms make it 505 (a 200 ms
        // pace).
        let gate = Replication::new(10_000, 10, MOST_PACE);
        gate.written(1_000);
        let mut routine = Box::pin(gate.room_for(Priority::Routine));
        assert_eq!(routine.as_mut().poll(&mut cx), Poll::Pending);
        gate.passed(500);
        assert_eq!(wakes.0.load(Relaxed), 1, "500 still wait, with room for 10");
        gate.pace(Duration::from_millis(100));
        assert_eq!(wakes.0.load(Relaxed), 2);
        assert_eq!(routine.as_mut().poll(&mut cx), Poll::Ready(()));
    }

    #[test]
    fn the_room_follows_what_the_sink_replicates_within_the_floor_and_the_bound() {
        let gate = Replication::new(10_000, 100, LEAST);
        assert!((gate.room.load(Relaxed), gate.floor) == (100, 100));
        // 50,000 frames replicated in 100 ms: 5,000 in the least pace (10 ms), smoothed halfway.
        gate.passed(50_000);
        gate.pace(Duration::from_millis(100));
        assert_eq!(gate.room.load(Relaxed), 2_550);
        gate.passed(500_000);
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
        gate.written(550_000 + 99);
        assert!(gate.has_room(Priority::Routine));
        gate.written(1);
        assert!(!gate.has_room(Priority::Routine));
    }

    /// A consumer that looks for room for a routine batch once, and finds none.
    fn hold_back(gate: &Replication) {
        use std::task::{Context, Poll, Waker};
        let waker = Waker::from(Arc::new(Wakes::default()));
        let mut routine = Box::pin(gate.room_for(Priority::Routine));
        let looked = routine.as_mut().poll(&mut Context::from_waker(&waker));
        assert_eq!(looked, Poll::Pending, "no room");
    }

    #[test]
    fn the_pace_grows_while_the_sink_starves_with_frames_held_back_and_shrinks_otherwise() {
        let gate = Replication::new(1_000_000, 100, LEAST);
        let pace = |gate: &Replication| gate.pace_us.load(Relaxed);
        let tick = Duration::from_millis(100);
        assert_eq!(pace(&gate), 10_000, "the least at first");
        gate.written(1_000);
        gate.starved(Duration::from_millis(20));
        gate.pace(tick);
        assert_eq!(pace(&gate), 10_000, "starved, but nothing held back");
        hold_back(&gate);
        gate.starved(Duration::from_millis(4));
        gate.pace(tick);
        assert_eq!(pace(&gate), 10_000, "held back, starved 4 % of the time");
        hold_back(&gate);
        gate.starved(Duration::from_millis(6));
        gate.pace(tick);
        assert_eq!(pace(&gate), 12_500, "held back, starved 6 % of the time");
        for _ in 0..20 {
            hold_back(&gate);
            gate.starved(Duration::from_millis(50));
            gate.pace(tick);
        }
        assert_eq!(pace(&gate), 200_000, "at most the longest");
        gate.pace(tick);
        assert_eq!(pace(&gate), 190_000, "shrunk once the sink keeps busy");
        // What the sink replicated in the pace is the room: 1,000,000 frames a second.
        gate.passed(100_000);
        gate.pace(tick);
        assert_eq!(gate.room.load(Relaxed), 100 / 2 + 180_500 / 2);
    }
}
