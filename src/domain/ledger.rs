//! A source's acknowledgement ledger: which of the frames it sent are stored, by sequence.
//!
//! An ACK promises that every frame the source sent up to its sequence is stored. Emergencies
//! overtake routine frames, so the archive stores a source's frames out of arrival order, and a
//! write can fail and be retried after later batches were stored. The ledger therefore records
//! what each connection accepted as runs (consecutive frames of one priority, in arrival order,
//! never spanning two batches) and the archive marks each stored batch by its sequences: the
//! runs of that priority whose sequences the batch covers. The acknowledgement is the last
//! sequence of the longest prefix of runs all stored. Counting stored frames per priority instead
//! would let a later batch pay for one that was never written.
//!
//! There is one ledger per source (kind and id), not per connection: the router keeps it across
//! reconnections, and a source that reconnects while frames of its last connection are still in
//! the pipeline (or held by a failing archive) continues that ledger. Its resent copies of those
//! frames are duplicates, acknowledged once the originals are stored, so nothing is stored twice.
//! The durable archive reads the acknowledgement from here to write its watermarks, and a closing
//! connection waits on [`Ledger::changed`] instead of polling.
//!
//! A plain mutex guards the runs: the connection takes it once per read, the archive once per
//! stored batch, and neither holds it across an await. The acknowledgement is mirrored in an
//! atomic so that the connection's ACK pacing and the monitor read it without the lock.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::domain::frame::Priority;
use crate::domain::sequence_set::SequenceSet;

/// What is known of a source before it connects: its ledger, and the frames above its
/// acknowledgement that the archive held at start-up (emergencies that overtook routine frames,
/// or frames stored whose acknowledgement was not yet recorded). A resent copy of one of those is
/// a duplicate.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    pub ledger: Arc<Ledger>,
    pub already_stored: Arc<SequenceSet>,
    /// Recovery found frames of the source above the acknowledgement the archive recorded (the
    /// ledger's starts past those right above it): with `ack = "replicated"`, frames JetStream
    /// may not hold yet.
    pub held_above: bool,
}

impl ResumePoint {
    /// What recovery found: every frame up to `after` stored, and `already_stored` above it;
    /// `held_above`, whether frames above the recorded acknowledgement were found.
    pub fn recovered(after: Option<u64>, already_stored: SequenceSet, held_above: bool) -> Self {
        ResumePoint {
            ledger: Arc::new(Ledger::new(after)),
            already_stored: Arc::new(already_stored),
            held_above,
        }
    }

    /// Every frame of the source up to this sequence is stored.
    pub fn after(&self) -> Option<u64> {
        self.ledger.acked()
    }
}

/// An `Option<u64>` in one atomic: 0 is `None`, `n + 1` is `Some(n)`. Sequences end at
/// `u64::MAX - 1` (the protocol refuses `u64::MAX`), so every value fits; a `u64::MAX` read from
/// an archive an older daemon wrote saturates to `u64::MAX - 1`, which only asks for that frame
/// again.
#[derive(Debug, Default)]
pub(crate) struct AtomicSeq(AtomicU64);

impl AtomicSeq {
    pub(crate) fn new(value: Option<u64>) -> Self {
        AtomicSeq(AtomicU64::new(Self::encode(value)))
    }

    pub(crate) fn store(&self, value: Option<u64>) {
        self.0.store(Self::encode(value), Relaxed);
    }

    /// Raises the value to `value` if that is higher (`None` is the lowest).
    pub(crate) fn raise(&self, value: Option<u64>) {
        self.0.fetch_max(Self::encode(value), Relaxed);
    }

    fn encode(value: Option<u64>) -> u64 {
        value.map_or(0, |v| v.saturating_add(1))
    }

    pub(crate) fn load(&self) -> Option<u64> {
        self.0.load(Relaxed).checked_sub(1)
    }
}

/// What the archive keeps of a written batch until its sync: enough to acknowledge its frames,
/// without holding their payloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Span {
    pub priority: Priority,
    pub first: u64,
    pub last: u64,
    pub frames: u64,
}

/// Consecutive frames of one priority from one batch, as they arrived: the ledger's unit.
///
/// A run of no frames stands for frames the source resent that were stored before (dropped as
/// duplicates): nothing to wait for, so the acknowledgement passes them where they arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub priority: Priority,
    pub frames: u64,
    pub last_sequence: u64,
}

#[cfg(test)]
impl Run {
    /// `frames` frames of `priority` up to `last_sequence`.
    pub(crate) fn of(priority: Priority, frames: u64, last_sequence: u64) -> Run {
        Run {
            priority,
            frames,
            last_sequence,
        }
    }
}

/// A recorded run and whether the archive has stored it.
#[derive(Debug, Clone, Copy)]
struct Entry {
    run: Run,
    stored: bool,
}

impl Entry {
    fn is_stored(&self) -> bool {
        self.stored || self.run.frames == 0
    }
}

/// Runs kept beyond this capacity are given back once the ledger is settled: a busy source
/// reuses its room, and one that has gone keeps almost nothing.
const KEPT_RUNS: usize = 64;

#[derive(Debug)]
struct State {
    /// Runs not yet acknowledged, in arrival order, so with strictly increasing sequences.
    runs: VecDeque<Entry>,
    acked: Option<u64>,
    /// Whether a connection currently feeds the ledger; a settled ledger of a source that has
    /// gone keeps no spare room.
    connected: bool,
}

/// The acknowledgement state of one source, across its connections.
#[derive(Debug)]
pub struct Ledger {
    state: Mutex<State>,
    acked: AtomicSeq,
    changed: Notify,
}

impl Default for Ledger {
    /// A source nothing of which is stored yet.
    fn default() -> Self {
        Ledger::new(None)
    }
}

impl Ledger {
    /// A ledger whose frames up to `acked` are stored: what recovery or an earlier run found.
    pub fn new(acked: Option<u64>) -> Self {
        Ledger {
            state: Mutex::new(State {
                runs: VecDeque::new(),
                acked,
                connected: false,
            }),
            acked: AtomicSeq::new(acked),
            changed: Notify::new(),
        }
    }

    /// The highest sequence such that it and every frame the source sent before it are stored:
    /// what an ACK carries and a reconnecting source resumes after.
    pub(crate) fn acked(&self) -> Option<u64> {
        self.acked.load()
    }

    /// The highest sequence accepted so far, stored or not: a resent frame at or below it is a
    /// duplicate.
    pub(crate) fn accepted(&self) -> Option<u64> {
        let state = self.state();
        state
            .runs
            .back()
            .map(|e| e.run.last_sequence)
            .or(state.acked)
    }

    /// Whether every recorded run is stored.
    pub(crate) fn is_settled(&self) -> bool {
        self.state().runs.is_empty()
    }

    /// Whether every frame recorded before sequence `first` is stored, or at or below
    /// `journaled`.
    pub(crate) fn settled_before(&self, first: u64, journaled: Option<u64>) -> bool {
        let state = self.state();
        let mut before = state
            .runs
            .iter()
            .take_while(|e| e.run.last_sequence < first);
        before.all(|e| e.is_stored() || Some(e.run.last_sequence) <= journaled)
    }

    /// Completes when the acknowledgement moves or the ledger settles. Create it before checking
    /// the state it waits for, so that a change in between is not missed.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// Raises the acknowledgement to `after` when every frame recorded is stored and it is
    /// below: the fleet's stream holds the source up to there ([`super::replication`]), sent
    /// through another daemon. Returns whether it moved.
    pub(crate) fn raise_to(&self, after: u64) -> bool {
        let mut state = self.state();
        if !state.runs.is_empty() || state.acked >= Some(after) {
            return false;
        }
        state.acked = Some(after);
        self.acked.store(state.acked);
        true
    }

    /// A connection feeds the ledger from now on (`true`), or has ended (`false`).
    pub(crate) fn set_connected(&self, connected: bool) {
        let mut state = self.state();
        state.connected = connected;
        Self::trim(&mut state);
    }

    /// Called by the connection with each read's runs, in arrival order, before their batches are
    /// admitted. Runs of stored duplicates may move the acknowledgement at once.
    pub(crate) fn record(&self, runs: &[Run]) {
        let mut state = self.state();
        state
            .runs
            .extend(runs.iter().map(|&run| Entry { run, stored: false }));
        self.advance(&mut state);
    }

    /// Called by the archive once the batch of `priority` holding sequences `first..=last` is
    /// stored: marks the runs it holds, and moves the acknowledgement over every stored prefix.
    pub(crate) fn stored(&self, priority: Priority, first: u64, last: u64) {
        let mut state = self.state();
        let from = state.runs.partition_point(|e| e.run.last_sequence < first);
        for entry in state.runs.range_mut(from..) {
            if entry.run.last_sequence > last {
                break;
            }
            if entry.run.priority == priority {
                entry.stored = true;
            }
        }
        self.advance(&mut state);
    }

    /// Pops the stored prefix; wakes the waiters if the acknowledgement moved or all is stored.
    fn advance(&self, state: &mut State) {
        let before = state.acked;
        while let Some(entry) = state.runs.front() {
            if !entry.is_stored() {
                break;
            }
            state.acked = Some(entry.run.last_sequence);
            state.runs.pop_front();
        }
        if state.acked != before {
            self.acked.store(state.acked);
        }
        Self::trim(state);
        if state.acked != before || state.runs.is_empty() {
            self.changed.notify_waiters();
        }
    }

    /// Gives back room a settled ledger does not need.
    fn trim(state: &mut State) {
        let keep = if state.connected { KEPT_RUNS } else { 0 };
        if state.runs.is_empty() && state.runs.capacity() > keep {
            state.runs = VecDeque::new();
        }
    }

    /// The state; a panic elsewhere while it was held cannot leave it half-updated (each method
    /// is one step), so a poisoned lock is taken as it is.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const R: Priority = Priority::Routine;
    const E: Priority = Priority::Emergency;

    /// What decides whether the archive journals an emergency: the frames before it, stored or
    /// journaled, whatever sequence the source started at.
    #[test]
    fn an_emergency_is_settled_before_once_what_precedes_it_is_stored_or_journaled() {
        let ledger = Ledger::new(None);
        // A source starting at 1: emergencies 1 and 2, routine 3..=5, emergency 6.
        ledger.record(&[
            Run::of(E, 1, 1),
            Run::of(E, 1, 2),
            Run::of(R, 3, 5),
            Run::of(E, 1, 6),
        ]);
        assert!(
            ledger.settled_before(1, None),
            "nothing before the first frame"
        );
        assert!(!ledger.settled_before(2, None));
        assert!(ledger.settled_before(2, Some(1)), "1 is journaled");
        assert!(
            !ledger.settled_before(6, Some(2)),
            "routine 3..=5 are not stored"
        );
        ledger.stored(E, 1, 2);
        ledger.stored(R, 3, 5);
        assert!(ledger.settled_before(6, None));
    }

    /// A source that comes from another daemon resumes where the fleet's stream holds it, unless
    /// frames it sent here are still on their way to the archive.
    #[test]
    fn the_fleet_raises_a_settled_ledger_only_and_never_lowers_it() {
        let ledger = Ledger::new(Some(10));
        assert!(!ledger.raise_to(8), "never lowered");
        assert!(ledger.raise_to(20));
        assert_eq!(ledger.acked(), Some(20));
        ledger.record(&[Run::of(R, 2, 22)]);
        assert!(!ledger.raise_to(30), "21..=22 wait for the archive");
        ledger.stored(R, 21, 22);
        assert!(ledger.raise_to(30));
        assert_eq!(ledger.acked(), Some(30));
    }

    #[test]
    fn the_acknowledgement_stops_at_the_first_unstored_run_in_arrival_order() {
        let ledger = Ledger::new(None);
        // Routine 0..=2, emergency 3, routine 4..=5 (a second routine batch).
        ledger.record(&[Run::of(R, 3, 2), Run::of(E, 1, 3), Run::of(R, 2, 5)]);

        ledger.stored(E, 3, 3);
        assert_eq!(ledger.acked(), None, "the emergency overtook routine 0..=2");
        ledger.stored(R, 0, 2);
        assert_eq!(ledger.acked(), Some(3));
        assert!(!ledger.is_settled());
        ledger.stored(R, 4, 5);
        assert_eq!(ledger.acked(), Some(5));
        assert!(ledger.is_settled());
    }

    /// The defect counting had: a batch whose write failed was paid for by the next batch of the
    /// same priority, and the acknowledgement passed frames never stored.
    #[test]
    fn a_later_batch_does_not_pay_for_one_that_was_not_stored() {
        let ledger = Ledger::new(Some(9));
        ledger.record(&[Run::of(R, 10, 19), Run::of(R, 10, 29)]);
        ledger.stored(R, 20, 29);
        assert_eq!(ledger.acked(), Some(9), "10..=19 were never stored");
        ledger.stored(R, 10, 19);
        assert_eq!(ledger.acked(), Some(29));
    }

    /// A batch marks only runs of its own priority, even where the other lane's runs lie between
    /// its sequences.
    #[test]
    fn a_batch_marks_only_its_own_priority() {
        let ledger = Ledger::new(None);
        ledger.record(&[Run::of(R, 2, 1), Run::of(E, 1, 2), Run::of(R, 2, 4)]);
        // One routine batch: 0, 1, 3, 4.
        ledger.stored(R, 0, 4);
        assert_eq!(ledger.acked(), Some(1));
        ledger.stored(E, 2, 2);
        assert_eq!(ledger.acked(), Some(4));
    }

    #[test]
    fn stored_duplicates_are_passed_where_they_arrived() {
        let ledger = Ledger::new(Some(2));
        ledger.record(&[Run::of(R, 0, 4)]);
        assert_eq!(ledger.acked(), Some(4), "nothing to wait for");
        ledger.record(&[Run::of(R, 1, 5), Run::of(R, 0, 6)]);
        assert_eq!(ledger.acked(), Some(4));
        assert_eq!(ledger.accepted(), Some(6));
        ledger.stored(R, 5, 5);
        assert_eq!(ledger.acked(), Some(6));
    }

    /// A source that has gone, with all its frames acknowledged, keeps no room for runs.
    #[test]
    fn a_settled_ledger_of_a_source_that_has_gone_keeps_no_room() {
        let ledger = Ledger::new(None);
        ledger.set_connected(true);
        let runs: Vec<Run> = (0..1000)
            .map(|i| Run::of(if i % 5 == 0 { E } else { R }, 1, i))
            .collect();
        ledger.record(&runs);
        for i in 0..1000 {
            let priority = if i % 5 == 0 { E } else { R };
            ledger.stored(priority, i, i);
        }
        assert!(ledger.is_settled());
        assert!(ledger.state().runs.capacity() <= KEPT_RUNS);
        ledger.set_connected(false);
        assert_eq!(ledger.state().runs.capacity(), 0);
        assert_eq!(ledger.acked(), Some(999));
    }

    #[test]
    fn an_acknowledgement_of_the_reserved_sequence_from_disk_does_not_overflow() {
        assert_eq!(Ledger::new(Some(u64::MAX)).acked(), Some(u64::MAX - 1));
        assert_eq!(Ledger::new(Some(u64::MAX - 1)).acked(), Some(u64::MAX - 1));
        assert_eq!(Ledger::new(None).acked(), None);
    }

    #[test]
    fn waiters_hear_of_a_moved_acknowledgement() {
        let ledger = Ledger::new(None);
        ledger.record(&[Run::of(R, 1, 0)]);
        let changed = ledger.changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        ledger.stored(R, 0, 0);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        assert!(std::future::Future::poll(changed.as_mut(), &mut cx).is_ready());
    }
}
