//! What the writer puts in its buffer before a write: a group's FRAMES records and the
//! WATERMARKs that moved, a checkpoint at a segment's start, the journals' frames recovery read,
//! the clock's steps; and, once the buffer is written, what its records say the segment holds.
//! Apart from `writer.rs`, which decides when to write, roll over and sync.

use std::sync::Arc;

use super::{encode_batch, Raised, Writer};
use crate::archive::format::{self, FrameRecord, MAGIC};
use crate::domain::batch::Batch;
use crate::domain::clock::ClockEvent;

/// The CLOCK records of steps a write carries, with their offsets, and the number of the newest
/// step: what the open segment holds and the writer has recorded once the write is done.
#[derive(Debug, Default)]
pub(super) struct Steps {
    written: Vec<(u64, ClockEvent)>,
    newest: u64,
}

impl Writer {
    /// Appends a CLOCK record of `event` to the buffer, written at offset `at` of the open
    /// segment, and notes it in what the open segment holds.
    pub(super) fn encode_clock(&mut self, at: u64, event: &ClockEvent) {
        self.contents.add_clock(at + self.buf.len() as u64, *event);
        format::encode_clock(&mut self.buf, event);
    }

    /// Appends a CLOCK record for each step noticed since the last write, to the buffer written
    /// at offset `at`; returns them, for [`Self::commit_steps`] once the buffer is written (a
    /// failed write leaves them to the next). One atomic load when there is none.
    pub(super) fn encode_steps(&mut self, at: u64) -> Steps {
        if self.steps.newest() == self.steps_written {
            return Steps::default();
        }
        let (events, newest) = self.steps.after(self.steps_written);
        let mut written = Vec::with_capacity(events.len());
        for event in events {
            written.push((at + self.buf.len() as u64, event));
            format::encode_clock(&mut self.buf, &event);
        }
        Steps { written, newest }
    }

    /// What a written buffer's CLOCK records say is now what the open segment holds.
    pub(super) fn commit_steps(&mut self, steps: Steps) {
        if steps.written.is_empty() {
            return;
        }
        for (offset, event) in steps.written {
            self.contents.add_clock(offset, event);
        }
        self.steps_written = steps.newest;
    }

    /// Appends the frames recovery read from the journals to the buffer, which is written at
    /// offset `at` of the open segment, and counts them in what the open segment holds.
    pub(super) fn encode_journaled(&mut self, at: u64, journaled: &[FrameRecord]) {
        for frame in journaled {
            self.contents.add_frame(at + self.buf.len() as u64, frame);
            frame.encode(&mut self.buf);
        }
    }

    /// Encodes the magic and a checkpoint into the buffer: each source's watermark, fresh from its
    /// acknowledgements, and the sequences stored above it.
    pub(super) fn checkpoint(&mut self) -> Raised {
        self.buf.clear();
        self.buf.extend_from_slice(MAGIC);
        let mut raised = Raised::new();
        for (&(kind, id), tracked) in &self.sources {
            let moved = tracked.moved();
            if let Some(acked) = moved {
                raised.push(((kind, id), acked));
            }
            let watermark = moved.or(tracked.watermark);
            if let Some(acked) = watermark {
                format::encode_watermark(&mut self.buf, kind, id, acked);
            }
            // Nothing lies above a watermark of u64::MAX (an older daemon's, read from disk).
            let Some(above) = watermark.map_or(Some(0), |acked| acked.checked_add(1)) else {
                continue;
            };
            for (first, last) in tracked.above.runs().filter(|&(_, last)| last >= above) {
                format::encode_stored(&mut self.buf, kind, id, first.max(above), last);
            }
        }
        raised
    }

    /// What a written record's watermarks say is now what the archive remembers.
    pub(super) fn commit(&mut self, raised: &Raised) {
        for &(key, acked) in raised {
            if let Some(tracked) = self.sources.get_mut(&key) {
                tracked.raise_watermark(acked);
            }
        }
    }

    /// Encodes a group, written at offset `at` of the open segment: a CLOCK record for each step
    /// of the wall clock noticed since the last group, a FRAMES record per batch, then a
    /// WATERMARK for each source whose acknowledgement moved since the last one
    /// (acknowledgements only ever cover frames already synced). Returns the watermarks and the
    /// steps, for [`Self::commit`] and [`Self::commit_steps`] once the group is written.
    pub(super) fn encode(&mut self, batches: &[Arc<Batch>], at: u64) -> (Raised, Steps) {
        self.buf.clear();
        let steps = self.encode_steps(at);
        let mut raised = Raised::new();
        self.offsets.clear();
        for batch in batches {
            self.offsets.push(at + self.buf.len() as u64);
            let source = &batch.source;
            let key = (source.kind, source.id);
            // A backfill's ledger says nothing of the source's live frames.
            if !source.backfill {
                let tracked = self.sources.entry(key).or_default();
                tracked.seen(source.ledger());
                if let Some(acked) = tracked.moved() {
                    raised.push((key, acked));
                }
            }
            encode_batch(&mut self.buf, batch, self.clock.at(batch.decoded_at));
        }
        // One WATERMARK per source, however many of its batches the group holds.
        raised.sort_unstable_by_key(|&((kind, id), _)| (kind.to_byte(), id));
        raised.dedup_by_key(|&mut ((kind, id), _)| (kind.to_byte(), id));
        for &((kind, id), acked) in &raised {
            format::encode_watermark(&mut self.buf, kind, id, acked);
        }
        (raised, steps)
    }
}
