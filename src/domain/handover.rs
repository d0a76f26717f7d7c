//! Emergencies handed from the archive's emergency journal to the NATS sink, with
//! `sinks.nats.ack = "replicated"`.
//!
//! Why a path of its own: the sink reads the archive's files in their order and only up to their
//! durable end, so an emergency found there waits for its segment's sync and for the routine frames
//! written before it to be read (about the pace, `emergency_wait_ms`, hundreds of milliseconds at
//! full rate). The journal makes an emergency durable on its own within milliseconds; the archive's
//! consumer hands its records here as it starts the journal's append, and the sink publishes them
//! ahead of the files while the journal syncs.
//!
//! Why before the sync: an emergency's ACK waits for both its local copy and its replica, and one
//! after the other they add up (the journal's sync shares the disk with the JetStream stores). The
//! replica counts only once the batch is [`Durable`], so nothing is acknowledged early; one the
//! files meet first (its append failed, or the segment's sync ended first) counts there. A crash
//! between the publish and the sync leaves the stream a frame the archive lacks, as a daemon lost
//! after publishing does: its sender still holds it, and the sink that stores it again leaves it
//! out (its subject's marks).
//!
//! Nothing rests on this path. The sink still meets each frame in the files, where it finds it in
//! the stream already; an emergency it does not take from here (the queue full, the journal
//! failing, the layout `frame/1`) is published from the files as before. A source's emergencies
//! must reach the stream in sequence order (a restarted sink leaves out what lies at or below its
//! subject's marks), so each batch names the emergency of its source written before it
//! ([`Journaled::after`]), and the sink takes a batch only once that one is in the stream.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering::Acquire, Ordering::Relaxed, Ordering::Release};
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use tokio::sync::Notify;

use super::frame::SourceKey;

/// The most batches waiting for the sink: past it the oldest are dropped, to the files' path.
const MOST_WAITING: usize = 4_096;

/// An emergency batch the journal is appending.
#[derive(Debug, Clone)]
pub struct Journaled {
    pub key: SourceKey,
    /// The last sequence of the emergency batch of this source written before this one by this
    /// run; `None` for its first.
    pub after: Option<u64>,
    pub first: u64,
    /// Its FRAMES records, byte for byte as the journal and the segment hold them.
    pub records: Bytes,
    /// Whether the journal's append of it ended durable.
    pub durable: Durable,
}

/// Set once a journal append (of one or several batches) is durable; never if it failed.
#[derive(Debug, Clone, Default)]
pub struct Durable(Arc<AtomicBool>);

impl Durable {
    pub(crate) fn is_durable(&self) -> bool {
        self.0.load(Acquire)
    }

    fn set(&self) {
        self.0.store(true, Release);
    }
}

/// The batches handed over and not yet taken, and each source's last emergency written.
#[derive(Debug, Default)]
pub struct Handover {
    waiting: Mutex<VecDeque<Journaled>>,
    ready: Notify,
    written: Mutex<HashMap<SourceKey, u64>>,
    /// Whether the sink takes batches (its stream's layout is `records/1`): until it says so, an
    /// emergency's segment sync starts at once, as the files publish it.
    taken: AtomicBool,
}

impl Handover {
    /// Called by the archive's consumer for each emergency batch it writes, in order: the last
    /// sequence of the one of `key` written before it, if any.
    pub(crate) fn written(&self, key: SourceKey, last: u64) -> Option<u64> {
        let mut written = self.written.lock().unwrap_or_else(PoisonError::into_inner);
        written.insert(key, last)
    }

    /// Called by the archive's consumer as the journal starts appending `batches`.
    pub(crate) fn hand(&self, batches: impl IntoIterator<Item = Journaled>) {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.extend(batches);
        let over = waiting.len().saturating_sub(MOST_WAITING);
        waiting.drain(..over);
        drop(waiting);
        self.ready.notify_one();
    }

    /// Called by the archive's consumer once the journal's append of the batches that share
    /// `durable` ended durable: the sink counts their replicas.
    pub(crate) fn made_durable(&self, durable: &Durable) {
        durable.set();
        self.ready.notify_one();
    }

    /// Called by the sink once it knows its stream's layout: whether it takes batches.
    pub(crate) fn set_taken(&self, taken: bool) {
        self.taken.store(taken, Relaxed);
    }

    /// Whether the sink takes the batches handed over.
    pub(crate) fn is_taken(&self) -> bool {
        self.taken.load(Relaxed)
    }

    /// Called by the sink: every batch handed over since its last call, in their order.
    pub(crate) fn take(&self) -> Vec<Journaled> {
        let mut waiting = self.waiting.lock().unwrap_or_else(PoisonError::into_inner);
        waiting.drain(..).collect()
    }

    /// Completes once a batch was handed over, or made durable, since the last time it completed.
    pub(crate) async fn ready(&self) {
        self.ready.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::frame::SourceKind;

    fn batch(first: u64, after: Option<u64>) -> Journaled {
        let key = (SourceKind::LiveUplink, 1);
        let records = Bytes::new();
        Journaled {
            key,
            after,
            first,
            records,
            durable: Durable::default(),
        }
    }

    #[test]
    fn each_batch_names_its_source_s_emergency_before_it() {
        let handover = Handover::default();
        let (a, b) = ((SourceKind::LiveUplink, 1), (SourceKind::LiveUplink, 2));
        assert_eq!(handover.written(a, 4), None);
        assert_eq!(handover.written(b, 9), None);
        assert_eq!(handover.written(a, 7), Some(4));
        assert_eq!(handover.written(a, 8), Some(7));
    }

    #[test]
    fn past_the_most_waiting_the_oldest_are_dropped() {
        let handover = Handover::default();
        handover.hand((0..MOST_WAITING as u64 + 3).map(|first| batch(first, None)));
        let taken = handover.take();
        assert_eq!(taken.len(), MOST_WAITING);
        assert_eq!(taken[0].first, 3);
        assert!(handover.take().is_empty());
    }

    #[tokio::test]
    async fn an_append_made_durable_wakes_the_sink_and_marks_each_of_its_batches() {
        let handover = Handover::default();
        let (first, second) = (batch(1, None), batch(2, Some(1)));
        let second = Journaled {
            durable: first.durable.clone(),
            ..second
        };
        assert!(!first.durable.is_durable());
        handover.made_durable(&first.durable);
        handover.ready().await;
        assert!(first.durable.is_durable() && second.durable.is_durable());
        assert!(!batch(3, Some(2)).durable.is_durable(), "another append's");
    }

    #[tokio::test]
    async fn a_batch_handed_before_the_wait_is_not_missed() {
        let handover = Handover::default();
        handover.hand([batch(1, None)]);
        handover.ready().await;
        assert_eq!(handover.take().len(), 1);
    }
}
