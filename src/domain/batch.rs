//! A batch: the frames of one socket read with one source and one priority, the unit every stage
//! moves, so that each channel hop and atomic update is paid once per batch rather than once per
//! frame. Payloads stay slices of the connection's read buffer: fan-out clones a reference count,
//! never the data.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::frame::{Frame, Priority};
use super::reception::{Delivery, Received};
use crate::domain::ledger::{Run, Span};
use crate::domain::source::Source;

/// Frames of one socket read with one priority, in arrival order, moved through the pipeline as a
/// unit.
///
/// A batch may skip over frames of the other priority that arrived between its own: those travel in
/// their lane's batch, and the source's acknowledgement ledger keeps the arrival order across both
/// (see [`crate::domain::ledger`]). The payloads stay where they arrived: a batch holds the socket read
/// they came in (one shared `Bytes`) and each frame's offsets into it, so moving a batch touches
/// one reference count, not one per frame. [`Batch::frames`] hands consumers ordinary [`Frame`]s.
#[derive(Debug)]
pub struct Batch {
    /// The registered source the frames came from (counters and acknowledgement wake-up).
    pub source: Arc<Source>,
    /// The priority shared by every frame in the batch.
    pub priority: Priority,
    /// When the frames were decoded, for daemon-side latency.
    pub decoded_at: Instant,
    /// When the processor took the batch; `None` before. Consumers downstream of the processor
    /// (the archive, subscribers) may run much later: this is when processing happened.
    pub processed_at: Option<Instant>,
    /// The socket read the payloads are slices of.
    chunk: Bytes,
    frames: Vec<FrameRef>,
    payload_bytes: u64,
    /// A link's frames: who delivered them and each frame's reception, in frame order.
    reception: Option<(Arc<Delivery>, Vec<Received>)>,
}

/// One frame's place in its batch's chunk.
#[derive(Debug, Clone, Copy)]
struct FrameRef {
    sequence: u64,
    start: u32,
    end: u32,
}

impl Batch {
    /// An empty batch with room for `capacity` frames; payload ranges refer to the chunk that
    /// [`Batch::attach`] supplies once the socket read is cut off the buffer.
    pub fn new(
        source: Arc<Source>,
        priority: Priority,
        decoded_at: Instant,
        capacity: usize,
    ) -> Batch {
        Batch {
            source,
            priority,
            decoded_at,
            processed_at: None,
            chunk: Bytes::new(),
            frames: Vec::with_capacity(capacity),
            payload_bytes: 0,
            reception: None,
        }
    }

    /// Appends a frame whose payload is `chunk[payload]`.
    pub fn push(&mut self, sequence: u64, payload: std::ops::Range<usize>) {
        self.payload_bytes += payload.len() as u64;
        self.frames.push(FrameRef {
            sequence,
            start: payload.start as u32,
            end: payload.end as u32,
        });
    }

    /// Appends a link's frame whose payload is `chunk[payload]`, delivered by `delivery`. Every
    /// frame of a batch has a reception or none does: a batch holds one source's frames of one read.
    pub(crate) fn push_received(
        &mut self,
        sequence: u64,
        payload: std::ops::Range<usize>,
        delivery: &Arc<Delivery>,
        received: Received,
    ) {
        let capacity = self.frames.capacity();
        let (_, all) = self
            .reception
            .get_or_insert_with(|| (Arc::clone(delivery), Vec::with_capacity(capacity)));
        all.push(received);
        self.push(sequence, payload);
    }

    /// Who delivered the frames and each one's reception, for a link's batch.
    pub fn reception(&self) -> Option<(&Arc<Delivery>, &[Received])> {
        let (delivery, received) = self.reception.as_ref()?;
        Some((delivery, received))
    }

    /// Supplies the socket read every pushed payload range refers to.
    pub fn attach(&mut self, chunk: Bytes) {
        debug_assert!(self.frames.iter().all(|f| f.end as usize <= chunk.len()));
        self.chunk = chunk;
    }

    /// Number of frames, the unit every capacity is counted in.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the batch holds no frame (never true for a batch in the pipeline).
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Payload bytes carried by the batch.
    pub(crate) fn payload_bytes(&self) -> u64 {
        self.payload_bytes
    }

    /// Bytes of the socket read the payloads are slices of: the memory a holder of the batch keeps
    /// alive (shared with the other batches cut from the same read).
    pub(crate) fn pinned_bytes(&self) -> usize {
        self.chunk.len()
    }

    /// Sequence of the first frame.
    pub(crate) fn first_sequence(&self) -> Option<u64> {
        self.frames.first().map(|f| f.sequence)
    }

    /// Sequence of the last frame: what an acknowledgement names once the batch is stored.
    pub(crate) fn last_sequence(&self) -> Option<u64> {
        self.frames.last().map(|f| f.sequence)
    }

    /// Where the batch's frames lie in its source's sequences; `None` for an empty batch.
    pub(crate) fn span(&self) -> Option<Span> {
        Some(Span {
            priority: self.priority,
            first: self.first_sequence()?,
            last: self.last_sequence()?,
            frames: self.len() as u64,
        })
    }

    /// Each frame's sequence and payload, borrowed: for consumers that only read the bytes.
    pub fn payloads(&self) -> impl ExactSizeIterator<Item = (u64, &[u8])> + '_ {
        self.frames
            .iter()
            .map(|f| (f.sequence, &self.chunk[f.start as usize..f.end as usize]))
    }

    /// The frames as consumers know them; each payload is a `Bytes` slice of the socket read.
    pub fn frames(&self) -> impl ExactSizeIterator<Item = Frame> + '_ {
        self.frames.iter().map(|f| Frame {
            source_id: self.source.id,
            source_kind: self.source.kind,
            priority: self.priority,
            sequence: f.sequence,
            payload: self.chunk.slice(f.start as usize..f.end as usize),
        })
    }
}

/// One source's frames of one socket read, as they become batches: by lane, up to `max_batch`
/// frames each, with their runs in arrival order for the ledger ([`crate::domain::ledger`]).
/// Batching by lane rather than by run of one priority keeps the routine frames together when
/// emergencies come between them; the runs keep the arrival order the acknowledgement needs.
#[derive(Debug, Default)]
pub(crate) struct ReadBatches {
    /// In arrival order.
    pub runs: Vec<Run>,
    emergency: Vec<Batch>,
    routine: Vec<Batch>,
    /// Frames pushed.
    pub accepted: u64,
}

/// A frame read from a connection: its priority, its sequence, and where its payload lies in the
/// read.
#[derive(Debug, Clone)]
pub(crate) struct ReadFrame {
    pub priority: Priority,
    pub sequence: u64,
    pub payload: std::ops::Range<usize>,
}

impl ReadBatches {
    /// A new frame of `source`: into its lane's last batch, or a new one when that is full, and
    /// into the runs.
    pub(crate) fn push(
        &mut self,
        source: &Arc<Source>,
        max_batch: usize,
        decoded_at: Instant,
        frame: ReadFrame,
        reception: Option<(&Arc<Delivery>, Received)>,
    ) {
        let ReadFrame {
            priority,
            sequence,
            payload,
        } = frame;
        self.accepted += 1;
        let lane = match priority {
            Priority::Emergency => &mut self.emergency,
            Priority::Routine => &mut self.routine,
        };
        let new_batch = lane.last().is_none_or(|b| b.len() >= max_batch);
        if new_batch {
            lane.push(Batch::new(
                Arc::clone(source),
                priority,
                decoded_at,
                max_batch,
            ));
        }
        match (lane.last_mut(), reception) {
            (Some(batch), Some((delivery, received))) => {
                batch.push_received(sequence, payload, delivery, received)
            }
            (Some(batch), None) => batch.push(sequence, payload),
            (None, _) => {}
        }
        // A run never spans two batches: the archive marks runs by the batch that stored them.
        match self.runs.last_mut() {
            Some(run) if run.priority == priority && run.frames > 0 && !new_batch => {
                run.frames += 1;
                run.last_sequence = sequence;
            }
            _ => self.runs.push(Run {
                priority,
                frames: 1,
                last_sequence: sequence,
            }),
        }
    }

    /// The batches, emergencies first.
    pub(crate) fn into_batches(self) -> impl Iterator<Item = Batch> {
        self.emergency.into_iter().chain(self.routine)
    }
}
