//! What the archive remembers of each source between its records: the last WATERMARK it wrote,
//! the frames it wrote above it, and the source's ledger, to read the acknowledgement from.
//! Recovery builds it from the newest segment; the writer keeps it current and checkpoints it at
//! the head of every new segment.

use std::sync::Arc;

use crate::domain::ledger::Ledger;
use crate::domain::sequence_set::SequenceSet;

/// What the archive remembers of one source between its records.
#[derive(Debug, Default, Clone)]
pub(in crate::archive) struct Tracked {
    /// The last WATERMARK written.
    pub(super) watermark: Option<u64>,
    /// Sequences written above it; pruned when the watermark moves.
    pub(in crate::archive) above: SequenceSet,
    /// The source's ledger, to read its acknowledgement whenever a record is written: with many
    /// sources taking turns a source may send nothing for seconds after its frames were stored
    /// and acknowledged, and a source that resends only frames stored before a restart sends the
    /// archive nothing at all; without the fresh watermark, each checkpoint would list all those
    /// frames again.
    pub(super) ledger: Option<Arc<Ledger>>,
    /// Recovery found frames above the last WATERMARK (before it moved the watermark past those
    /// right above it): stored, and with `ack = "replicated"` not known to be in JetStream.
    pub(super) held_above: bool,
}

impl Tracked {
    /// Remembers the ledger a batch's source keeps.
    pub(super) fn seen(&mut self, ledger: &Arc<Ledger>) {
        if !self
            .ledger
            .as_ref()
            .is_some_and(|known| Arc::ptr_eq(known, ledger))
        {
            self.ledger = Some(Arc::clone(ledger));
        }
    }

    /// The source's acknowledgement, if it moved past the last watermark written.
    pub(super) fn moved(&self) -> Option<u64> {
        let acked = self.ledger.as_ref()?.acked()?;
        (self.watermark < Some(acked)).then_some(acked)
    }

    /// A WATERMARK for `acked` is written.
    pub(super) fn raise_watermark(&mut self, acked: u64) {
        if self.watermark < Some(acked) {
            self.watermark = Some(acked);
            self.above.remove_through(acked);
        }
    }

    /// After recovery: frames stored contiguously right above the watermark are all stored, so
    /// the watermark passes them. An acknowledgement sent before a crash may have passed them
    /// without its WATERMARK reaching the disk (a source that went quiet).
    pub(super) fn extend_watermark(&mut self) {
        let next = match self.watermark {
            None => 0,
            Some(acked) => match acked.checked_add(1) {
                Some(next) => next,
                None => return,
            },
        };
        let first_run = self.above.runs().next();
        if let Some((_, last)) = first_run.filter(|&(first, _)| first == next) {
            self.raise_watermark(last);
        }
    }
}
