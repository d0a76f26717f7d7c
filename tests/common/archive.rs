//! The recording, gateable archive: a sink that keeps every frame in the order it stores them,
//! waits at a gate the test opens and closes, and can act out a full disk.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use aggregator::archive::format::ArchiveError;
use aggregator::archive::write::{ArchiveSink, BoxFuture};
use aggregator::domain::reception::Reception;
use aggregator::{Batch, Priority, SourceKind};
use bytes::Bytes;
use tokio::sync::watch;

/// One frame as the archive received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub kind: SourceKind,
    pub source_id: u32,
    pub sequence: u64,
    pub priority: Priority,
    pub payload: Bytes,
    /// A link's frame's reception.
    pub reception: Option<Reception>,
}

#[derive(Debug, Default)]
struct ArchiveState {
    records: Mutex<Vec<Stored>>,
    /// `store` calls currently waiting at the closed gate.
    waiting: AtomicU64,
    /// Batches handed to `store` (whether or not through the gate yet).
    store_calls: AtomicU64,
    closed: AtomicBool,
    /// Lets one `store` call through the closed gate ([`Archive::open_for_one_write`]).
    one_write: AtomicBool,
    /// While set, every write fails half-way, as on a full disk, and stores nothing.
    full: AtomicBool,
    failed_writes: AtomicU64,
}

/// The test's side of a [`RecordingSink`]: read what was stored, open or close the gate.
#[derive(Debug, Clone)]
pub struct Archive {
    state: Arc<ArchiveState>,
    gate: Arc<watch::Sender<bool>>,
}

/// An [`ArchiveSink`] that appends every frame to a shared list, in the order the archive stores
/// them (which is the processing order), and waits at a gate the test controls.
pub struct RecordingSink {
    state: Arc<ArchiveState>,
    gate: watch::Receiver<bool>,
}

impl Archive {
    /// A sink whose gate is open: it stores at once.
    pub fn open() -> (Archive, Box<dyn ArchiveSink>) {
        Self::with_gate(true)
    }

    /// A sink whose gate is closed: the first batch waits in `store` until [`Archive::open_gate`],
    /// so the pipeline behind it backs up.
    pub fn gated() -> (Archive, Box<dyn ArchiveSink>) {
        Self::with_gate(false)
    }

    fn with_gate(open: bool) -> (Archive, Box<dyn ArchiveSink>) {
        let (gate, rx) = watch::channel(open);
        let state = Arc::new(ArchiveState::default());
        let sink = RecordingSink {
            state: Arc::clone(&state),
            gate: rx,
        };
        (
            Archive {
                state,
                gate: Arc::new(gate),
            },
            Box::new(sink),
        )
    }

    pub fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub fn close_gate(&self) {
        self.gate.send_replace(false);
    }

    /// Lets exactly one `store` call through the closed gate (the one waiting at it, or else the
    /// next), which stores its batches; the gate stays closed for the calls after it.
    pub fn open_for_one_write(&self) {
        self.state.one_write.store(true, Ordering::SeqCst);
        // Wakes the call waiting at the gate, which looks again.
        self.gate.send_modify(|_| ());
    }

    /// Whether a `store` call is waiting at the closed gate right now.
    pub fn is_blocked(&self) -> bool {
        self.state.waiting.load(Ordering::SeqCst) > 0
    }

    /// From now on every write fails with `ENOSPC` and stores nothing of its group (the segment
    /// archive cuts a partial write back), until [`Archive::free_disk`].
    pub fn fill_disk(&self) {
        self.state.full.store(true, Ordering::SeqCst);
    }

    pub fn free_disk(&self) {
        self.state.full.store(false, Ordering::SeqCst);
    }

    /// Writes that failed on the full disk.
    pub fn failed_writes(&self) -> u64 {
        self.state.failed_writes.load(Ordering::SeqCst)
    }

    /// Each source's sequences stored more than once.
    pub fn duplicates(&self) -> Vec<(SourceKind, u32, u64)> {
        let mut seen: Vec<_> = self
            .records()
            .iter()
            .map(|r| (r.kind.to_byte(), r.source_id, r.sequence))
            .collect();
        seen.sort_unstable();
        let mut twice: Vec<_> = seen
            .windows(2)
            .filter(|w| w[0] == w[1])
            .map(|w| w[0])
            .collect();
        twice.dedup();
        twice
            .into_iter()
            .map(|(kind, id, sequence)| (SourceKind::from_byte(kind).unwrap(), id, sequence))
            .collect()
    }

    /// Whether the daemon called `close` on the sink (after the last batch).
    pub fn is_closed(&self) -> bool {
        self.state.closed.load(Ordering::SeqCst)
    }

    pub fn records(&self) -> MutexGuard<'_, Vec<Stored>> {
        self.state.records.lock().unwrap()
    }

    pub fn len(&self) -> usize {
        self.records().len()
    }

    /// The sequences of one source, in the order they were stored.
    pub fn sequences(&self, kind: SourceKind, source_id: u32) -> Vec<u64> {
        self.records()
            .iter()
            .filter(|r| r.kind == kind && r.source_id == source_id)
            .map(|r| r.sequence)
            .collect()
    }

    /// The sequences of one source and priority, in the order they were stored.
    pub fn sequences_with(&self, kind: SourceKind, source_id: u32, priority: Priority) -> Vec<u64> {
        self.records()
            .iter()
            .filter(|r| r.kind == kind && r.source_id == source_id && r.priority == priority)
            .map(|r| r.sequence)
            .collect()
    }

    /// Whether every sequence `0..=up_to` of the source is stored.
    pub fn has_all_up_to(&self, kind: SourceKind, source_id: u32, up_to: u64) -> bool {
        let mut seen = self.sequences(kind, source_id);
        seen.sort_unstable();
        seen.dedup();
        seen.len() as u64 > up_to && seen[..=up_to as usize].iter().copied().eq(0..=up_to)
    }
}

impl ArchiveSink for RecordingSink {
    fn write<'a>(
        &'a mut self,
        batches: &'a [Arc<Batch>],
    ) -> BoxFuture<'a, Result<(), ArchiveError>> {
        Box::pin(async move {
            self.state.store_calls.fetch_add(1, Ordering::SeqCst);
            let state = Arc::clone(&self.state);
            let through = |open: &bool| *open || state.one_write.swap(false, Ordering::SeqCst);
            if !through(&self.gate.borrow()) {
                self.state.waiting.fetch_add(1, Ordering::SeqCst);
                let opened = self.gate.wait_for(through).await.map(|_| ());
                self.state.waiting.fetch_sub(1, Ordering::SeqCst);
                opened.map_err(|_| ArchiveError::broken("the test dropped the archive gate"))?;
            }
            if self.state.full.load(Ordering::SeqCst) {
                self.state.failed_writes.fetch_add(1, Ordering::SeqCst);
                return Err(ArchiveError::Io {
                    path: "/archive/segment-00000000000000000001.seg".into(),
                    operation: "append to segment",
                    source: io::Error::from_raw_os_error(libc::ENOSPC),
                });
            }
            let mut records = self.state.records.lock().unwrap();
            for batch in batches.iter() {
                let reception = batch.reception();
                records.extend(batch.frames().enumerate().map(|(i, f)| Stored {
                    kind: f.source_kind,
                    source_id: f.source_id,
                    sequence: f.sequence,
                    priority: f.priority,
                    payload: f.payload,
                    reception: reception.map(|(delivery, received)| Reception {
                        delivery: Arc::clone(delivery),
                        received: received[i],
                    }),
                }));
            }
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), ArchiveError>> {
        self.state.closed.store(true, Ordering::SeqCst);
        Box::pin(async { Ok(()) })
    }
}
