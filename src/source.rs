//! A registered source: its identity, its counters, and the bookkeeping behind its acknowledgements.
//!
//! The connection task admits frames and the archive task stores them. Counters are atomics, so the
//! router lists every source with plain loads. The `AckLedger` turns "so many routine and so many
//! emergency frames stored" into "every frame up to sequence N is stored": the connection records
//! each read's runs of one priority in it as it decodes, and the archive advances it as it stores.
//! The archive does the advancing, not the connection, so the acknowledged sequence (which the
//! archive writes as the source's watermark) is current even when the connection task has not run
//! for a while, as with 10,000 sources waiting their turn to read: a stale watermark would leave
//! every frame stored above it to be listed again in each new segment's checkpoint. A plain mutex
//! guards it: the connection takes it once per read and the archive once per stored batch, and
//! neither holds it across an await.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use crate::frame::{Batch, Priority, SourceKind};

/// An `Option<u64>` in one atomic: 0 is `None`, `n + 1` is `Some(n)` (u64::MAX saturates).
#[derive(Debug, Default)]
struct AtomicSeq(AtomicU64);

impl AtomicSeq {
    fn store(&self, value: Option<u64>) {
        self.0.store(Self::encode(value), Relaxed);
    }

    /// Raises the value to `value` if that is higher (`None` is the lowest).
    fn raise(&self, value: Option<u64>) {
        self.0.fetch_max(Self::encode(value), Relaxed);
    }

    fn encode(value: Option<u64>) -> u64 {
        value.map_or(0, |v| v.saturating_add(1))
    }

    fn load(&self) -> Option<u64> {
        self.0.load(Relaxed).checked_sub(1)
    }
}

/// One connected source, shared by its connection, the router's table and every batch it sent.
#[derive(Debug)]
pub struct Source {
    pub id: u32,
    pub kind: SourceKind,
    pub peer: SocketAddr,
    pub connected_at: SystemTime,
    frames: AtomicU64,
    emergency_frames: AtomicU64,
    bytes: AtomicU64,
    last_sequence: AtomicSeq,
    last_acked: AtomicSeq,
    routine_stored: AtomicU64,
    emergency_stored: AtomicU64,
    ledger: Mutex<AckLedger>,
}

/// A source's counters at one moment, for listings and monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceSnapshot {
    pub id: u32,
    pub kind: SourceKind,
    pub peer: SocketAddr,
    pub connected_at: SystemTime,
    /// Frames admitted into the pipeline.
    pub frames: u64,
    pub emergency_frames: u64,
    pub bytes: u64,
    /// Highest sequence admitted.
    pub last_sequence: Option<u64>,
    /// Highest sequence stored along with everything the source sent before it: what its next
    /// ACK carries.
    pub last_acked: Option<u64>,
    /// Frames admitted and not yet stored.
    pub lag: u64,
}

impl Source {
    pub fn new(id: u32, kind: SourceKind, peer: SocketAddr, resume_after: Option<u64>) -> Self {
        let source = Source {
            id,
            kind,
            peer,
            connected_at: SystemTime::now(),
            frames: AtomicU64::new(0),
            emergency_frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_sequence: AtomicSeq::default(),
            last_acked: AtomicSeq::default(),
            routine_stored: AtomicU64::new(0),
            emergency_stored: AtomicU64::new(0),
            ledger: Mutex::new(AckLedger::new(resume_after)),
        };
        source.last_sequence.store(resume_after);
        source.last_acked.store(resume_after);
        source
    }

    /// Called by the connection when a batch enters the fan-in.
    pub(crate) fn admitted(&self, batch: &Batch) {
        let frames = batch.len() as u64;
        self.frames.fetch_add(frames, Relaxed);
        if batch.priority == Priority::Emergency {
            self.emergency_frames.fetch_add(frames, Relaxed);
        }
        self.bytes.fetch_add(batch.payload_bytes(), Relaxed);
        // A read's emergencies are admitted before its routine frames, which may be older.
        self.last_sequence.raise(batch.last_sequence());
    }

    /// Called by the connection with each read's runs, in arrival order, before their batches are
    /// admitted. A read of nothing but frames stored before (duplicates) moves the acknowledgement
    /// here, since no batch of it will reach the archive.
    pub(crate) fn record(&self, runs: &[Run]) {
        let mut ledger = self.ledger();
        ledger.runs.extend(runs);
        if ledger.advance(self.stored_counts()) {
            self.last_acked.store(ledger.acked());
        }
    }

    /// Called by the archive once a batch is stored: moves the acknowledgement forward.
    pub(crate) fn stored(&self, priority: Priority, frames: u64) {
        match priority {
            Priority::Routine => self.routine_stored.fetch_add(frames, Relaxed),
            Priority::Emergency => self.emergency_stored.fetch_add(frames, Relaxed),
        };
        let mut ledger = self.ledger();
        if ledger.advance(self.stored_counts()) {
            self.last_acked.store(ledger.acked());
        }
    }

    /// Whether every run recorded so far is stored.
    pub(crate) fn is_settled(&self) -> bool {
        self.ledger().is_settled()
    }

    /// The ledger; a panic elsewhere while it was held cannot leave it half-updated (each method
    /// is one step), so a poisoned lock is taken as it is.
    fn ledger(&self) -> MutexGuard<'_, AckLedger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Frames stored so far, per priority.
    pub(crate) fn stored_counts(&self) -> StoredCounts {
        StoredCounts {
            routine: self.routine_stored.load(Relaxed),
            emergency: self.emergency_stored.load(Relaxed),
        }
    }

    /// The highest sequence such that it and every frame the source sent before it are stored:
    /// what the connection acknowledges and a reconnecting source resumes after.
    pub fn last_acked(&self) -> Option<u64> {
        self.last_acked.load()
    }

    pub fn snapshot(&self) -> SourceSnapshot {
        let frames = self.frames.load(Relaxed);
        let stored = self.stored_counts();
        SourceSnapshot {
            id: self.id,
            kind: self.kind,
            peer: self.peer,
            connected_at: self.connected_at,
            frames,
            emergency_frames: self.emergency_frames.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            last_sequence: self.last_sequence.load(),
            last_acked: self.last_acked.load(),
            lag: frames.saturating_sub(stored.routine + stored.emergency),
        }
    }
}

/// Frames of one source stored so far, per priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct StoredCounts {
    pub routine: u64,
    pub emergency: u64,
}

/// Consecutive frames of one priority, as they arrived: the ledger's unit. A read's frames of one
/// priority travel together in its batches, so a batch may span several runs.
///
/// A run of no frames stands for frames the source resent that were stored before its connection
/// (dropped as duplicates): nothing to wait for, so the acknowledgement passes them where they
/// arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub priority: Priority,
    pub frames: u64,
    pub last_sequence: u64,
}

/// The runs a connection admitted, in arrival order, until the archive has stored them.
///
/// Within a source each lane is first-in first-out, so the archive stores a source's routine frames
/// in arrival order and its emergency frames in arrival order; only the two interleave. Walking the
/// ledger from the front and consuming each run from its lane's stored count therefore finds the
/// longest stored prefix of the arrival order, which is exactly what an acknowledgement may claim.
#[derive(Debug)]
struct AckLedger {
    runs: VecDeque<Run>,
    consumed: StoredCounts,
    acked: Option<u64>,
}

impl AckLedger {
    fn new(resume_after: Option<u64>) -> Self {
        AckLedger {
            runs: VecDeque::new(),
            consumed: StoredCounts::default(),
            acked: resume_after,
        }
    }

    /// Moves the acknowledgement forward; returns whether it moved.
    fn advance(&mut self, stored: StoredCounts) -> bool {
        let before = self.acked;
        while let Some(&Run {
            priority,
            frames,
            last_sequence,
        }) = self.runs.front()
        {
            let (consumed, available) = match priority {
                Priority::Routine => (&mut self.consumed.routine, stored.routine),
                Priority::Emergency => (&mut self.consumed.emergency, stored.emergency),
            };
            if available - *consumed < frames {
                break;
            }
            *consumed += frames;
            self.acked = Some(last_sequence);
            self.runs.pop_front();
        }
        self.acked != before
    }

    /// Whether every recorded run is stored.
    fn is_settled(&self) -> bool {
        self.runs.is_empty()
    }

    fn acked(&self) -> Option<u64> {
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(routine: u64, emergency: u64) -> StoredCounts {
        StoredCounts { routine, emergency }
    }

    fn run(priority: Priority, frames: u64, last_sequence: u64) -> Run {
        Run {
            priority,
            frames,
            last_sequence,
        }
    }

    #[test]
    fn ack_stops_at_the_first_unstored_batch_in_arrival_order() {
        let mut ledger = AckLedger::new(None);
        ledger.runs.extend([
            run(Priority::Routine, 3, 2), // seq 0..=2
            run(Priority::Emergency, 1, 3),
            run(Priority::Routine, 2, 5),
        ]);

        // The emergency overtook the routine frames: nothing contiguous is stored yet.
        assert!(!ledger.advance(counts(0, 1)));
        assert_eq!(ledger.acked(), None);

        assert!(ledger.advance(counts(3, 1)));
        assert_eq!(ledger.acked(), Some(3), "routine 0..=2 and emergency 3");

        assert!(ledger.advance(counts(5, 1)));
        assert_eq!(ledger.acked(), Some(5));
        assert!(ledger.is_settled());
    }

    #[test]
    fn storing_moves_the_acknowledgement_without_the_connection() {
        let peer = "127.0.0.1:1".parse().unwrap();
        let source = Source::new(1, SourceKind::LiveUplink, peer, Some(9));
        source.record(&[
            run(Priority::Routine, 3, 12),
            run(Priority::Emergency, 1, 13),
        ]);
        source.stored(Priority::Emergency, 1);
        assert_eq!(
            source.last_acked(),
            Some(9),
            "routine 10..=12 not stored yet"
        );
        assert!(!source.is_settled());
        source.stored(Priority::Routine, 3);
        assert_eq!(source.last_acked(), Some(13));
        assert!(source.is_settled());
        assert_eq!(source.snapshot().last_acked, Some(13));
    }

    #[test]
    fn ack_starts_from_the_resume_point() {
        let mut ledger = AckLedger::new(Some(99));
        assert_eq!(ledger.acked(), Some(99));
        ledger.runs.push_back(run(Priority::Routine, 1, 100));
        assert!(!ledger.advance(counts(0, 0)));
        assert!(ledger.advance(counts(1, 0)));
        assert_eq!(ledger.acked(), Some(100));
    }
}
