//! The NATS sink's messages waiting for their PubAck, in publishing order: which sources have one
//! in flight, and how many bytes.
//!
//! Why apart: in layout `records/1` a source's next message waits for its last one's PubAck (its
//! stream sequence is the next one's expected last), so PubAcks that came are taken before
//! anything else ([`Window::landed`]), and routine bytes in flight are bounded, so that an
//! emergency's message waits behind little at the stream's leader.

use std::collections::{HashSet, VecDeque};
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use async_nats::jetstream::context::{PublishAckFuture, PublishError, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use futures_util::FutureExt;
use tokio::runtime::Handle;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use super::message::Through;
use crate::archive::format::FrameRecord;
use crate::archive::read::ArchivedFrame;
use crate::domain::frame::{Priority, SourceKey};
use crate::domain::handover::Durable;
use crate::domain::position::ShardPosition;

/// A PubAck to come.
type Ack = Pin<Box<dyn Future<Output = Result<PublishAck, PublishError>> + Send>>;

/// A message waiting for its PubAck: a frame (layout `frame/1`), or a batch of one source's
/// frames (`records/1`).
pub(super) struct InFlight {
    /// In the files' order; published again first by the next session, if this one fails before
    /// the PubAck.
    pub(super) frames: Vec<ArchivedFrame>,
    /// Or emergencies handed over from the archive's journal (`super::urgent`): not in the
    /// files' order, never published again (the files publish them after a failure).
    pub(super) journaled: Vec<FrameRecord>,
    /// Whether the journal's appends of them are durable.
    pub(super) durable: Vec<Durable>,
    /// For each frame, whether it was left out: the stream holds it already.
    pub(super) held: Vec<bool>,
    /// The frames held were published by another daemon (else by this one, before a failure).
    pub(super) elsewhere: bool,
    /// Layout `records/1`: the source, and its series with the message.
    pub(super) series: Option<(SourceKey, Through)>,
    /// When the oldest frame was received, and whether one is routine.
    pub(super) received_unix_ns: u64,
    pub(super) routine: bool,
    /// Payload bytes in the message.
    pub(super) bytes: usize,
    /// When it was sent, behind how many bytes, and when its PubAck landed (layout `records/1`:
    /// they size the room in flight, and emergencies' the routine messages), and its PubAck to
    /// come.
    timing: Option<Timing>,
    pub(super) ack: Ack,
}

/// A message of layout `records/1`: when it was sent, and when its PubAck landed on the
/// connection's runtime (unset where the sink has none apart).
struct Timing {
    sent: Sent,
    landed: Arc<OnceLock<Instant>>,
}

/// When a message was handed to the client (`asked`) and the client took it (`at`), and the
/// payload bytes in flight before it (`ahead`).
///
/// Why both times: a PubAck timed from `asked` is never shorter than the round trip, though the
/// sink's thread was preempted after the send; one timed from `at` leaves out the wait for room
/// in the client's queue.
#[derive(Clone, Copy)]
pub(super) struct Sent {
    pub(super) asked: Instant,
    pub(super) at: Instant,
    pub(super) ahead: usize,
}

impl Sent {
    /// Taken by the client now, handed to it at `asked`.
    pub(super) fn since(asked: Instant, ahead: usize) -> Sent {
        let at = Instant::now();
        Sent { asked, at, ahead }
    }
}

impl InFlight {
    /// `frames`, none of them published yet.
    pub(super) fn of(frames: Vec<ArchivedFrame>) -> InFlight {
        let mut in_flight = InFlight::of_records(frames.iter().map(|f| &f.frame));
        in_flight.held = vec![false; frames.len()];
        in_flight.frames = frames;
        in_flight
    }

    /// Emergencies handed over from the journal, published ahead of the files.
    pub(super) fn journaled(frames: Vec<FrameRecord>, durable: Vec<Durable>) -> InFlight {
        let mut in_flight = InFlight::of_records(&frames);
        in_flight.journaled = frames;
        in_flight.durable = durable;
        in_flight
    }

    /// Frames' times, priorities and bytes, the frames themselves left to the caller.
    fn of_records<'a, F>(frames: F) -> InFlight
    where
        F: IntoIterator<Item = &'a FrameRecord>,
        F::IntoIter: Clone,
    {
        let frames = frames.into_iter();
        let received = frames.clone().map(|f| f.received_unix_ns);
        InFlight {
            frames: Vec::new(),
            journaled: Vec::new(),
            durable: Vec::new(),
            held: Vec::new(),
            elsewhere: false,
            series: None,
            received_unix_ns: received.min().unwrap_or(0),
            routine: frames.clone().any(|f| f.priority == Priority::Routine),
            bytes: frames.map(|f| f.payload.len()).sum(),
            timing: None,
            ack: Box::pin(std::future::ready(Ok(PublishAck::default()))),
        }
    }

    pub(super) fn first_position(&self) -> Option<ShardPosition> {
        self.frames.first().map(ArchivedFrame::shard_position)
    }

    /// Its PubAck: `sent` in flight.
    pub(super) fn sent(&mut self, sent: PublishAckFuture) {
        self.ack = Box::pin(sent.into_future());
    }

    /// Its PubAck, `sent` as `at` says, timed: awaited on `io` (the connection's runtime, where
    /// it lands), so that the sink's own stalls do not count in its time.
    pub(super) fn sent_timed(&mut self, sent: PublishAckFuture, at: Sent, io: Option<&Handle>) {
        let landed = Arc::new(OnceLock::new());
        self.timing = Some(Timing {
            sent: at,
            landed: Arc::clone(&landed),
        });
        let Some(io) = io else {
            return self.sent(sent);
        };
        let task = AbortOnDropHandle::new(io.spawn(async move {
            let ack = sent.await;
            let _ = landed.set(Instant::now());
            ack
        }));
        self.ack = Box::pin(async move {
            (task.await)
                .unwrap_or_else(|e| Err(PublishError::with_source(PublishErrorKind::Other, e)))
        });
    }

    /// A timed message's send, and when its PubAck landed (`now` where that is unknown).
    pub(super) fn timed(&self, now: Instant) -> Option<(Sent, Instant)> {
        let timing = self.timing.as_ref()?;
        Some((timing.sent, timing.landed.get().copied().unwrap_or(now)))
    }
}

/// What the PubAck of a message of one source's frames from the files counts
/// ([`InFlight::tally`]).
#[derive(Default)]
pub(super) struct Tally {
    /// For each priority (routine, emergency): the runs of consecutive sequences, each with how
    /// many of its frames this run archived. Never one span over a gap: the frames missing there
    /// (retention deleted them before they were published) are not acknowledged by it.
    pub(super) runs: [Vec<((u64, u64), u64)>; 2],
    /// Frames this run archived, and frames earlier runs did.
    pub(super) new: u64,
    pub(super) earlier: u64,
    /// Frames the stream held already.
    pub(super) held: u64,
    /// Emergencies among those held that were counted as their journal's copies were published.
    pub(super) counted_before: u64,
}

impl InFlight {
    /// Tallies the frames from the files: `is_new` says whether this run archived one, and
    /// `counted` takes a frame the stream held that was counted when published from the journal.
    pub(super) fn tally(
        &self,
        is_new: impl Fn(&ArchivedFrame) -> bool,
        mut counted: impl FnMut(&FrameRecord) -> bool,
    ) -> Tally {
        let mut tally = Tally::default();
        for (followed, held) in self.frames.iter().zip(&self.held) {
            if *held && counted(&followed.frame) {
                tally.counted_before += 1;
                continue;
            }
            let (sequence, is_new) = (followed.frame.sequence, is_new(followed));
            let runs = &mut tally.runs[usize::from(followed.frame.priority == Priority::Emergency)];
            match runs.last_mut() {
                Some(((_, last), fresh)) if last.checked_add(1) == Some(sequence) => {
                    *last = sequence;
                    *fresh += u64::from(is_new);
                }
                _ => runs.push(((sequence, sequence), u64::from(is_new))),
            }
            match is_new {
                true => tally.new += 1,
                false => tally.earlier += 1,
            }
            tally.held += u64::from(*held);
        }
        tally
    }
}

/// The messages in flight.
#[derive(Default)]
pub(super) struct Window {
    messages: VecDeque<InFlight>,
    /// The sources with a message in flight (layout `records/1`).
    busy: HashSet<SourceKey>,
    /// Payload bytes in flight.
    bytes: usize,
}

impl Window {
    pub(super) fn push(&mut self, message: InFlight) {
        self.count(&message);
        self.messages.push_back(message);
    }

    /// Puts back a message whose PubAck was taken and failed: published again first.
    pub(super) fn push_front(&mut self, message: InFlight) {
        self.count(&message);
        self.messages.push_front(message);
    }

    /// Counts a message in: its bytes, and its source as busy.
    fn count(&mut self, message: &InFlight) {
        self.bytes += message.bytes;
        self.busy
            .extend(message.series.as_ref().map(|(key, _)| *key));
    }

    fn pop(&mut self) -> Option<InFlight> {
        let message = self.messages.pop_front()?;
        self.bytes -= message.bytes;
        if let Some((key, _)) = message.series {
            self.busy.remove(&key);
        }
        Some(message)
    }

    /// Waits for the oldest message's PubAck and takes it out of the window (`None` when the
    /// window is empty). Cancel-safe: the message stays in the window until its PubAck came.
    pub(super) async fn next_ack(
        &mut self,
    ) -> Option<(InFlight, Result<PublishAck, PublishError>)> {
        let ack = (&mut self.messages.front_mut()?.ack).await;
        self.pop().map(|message| (message, ack))
    }

    /// The oldest message, with its PubAck, if that came already.
    pub(super) fn landed(&mut self) -> Option<(InFlight, Result<PublishAck, PublishError>)> {
        let ack = (&mut self.messages.front_mut()?.ack).now_or_never()?;
        self.pop().map(|message| (message, ack))
    }

    pub(super) fn len(&self) -> usize {
        self.messages.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    pub(super) fn busy(&self) -> &HashSet<SourceKey> {
        &self.busy
    }

    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }

    /// When the oldest frame in flight was received: the first of each priority (that of the
    /// oldest message, and of the oldest with a routine frame).
    pub(super) fn oldest_received(&self) -> Option<u64> {
        let routine = self.messages.iter().find(|m| m.routine);
        (self.messages.front().into_iter().chain(routine))
            .map(|m| m.received_unix_ns)
            .min()
    }

    /// Every frame in flight, in publishing order.
    pub(super) fn into_frames(self) -> impl DoubleEndedIterator<Item = ArchivedFrame> {
        self.messages.into_iter().flat_map(|m| m.frames)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::domain::frame::SourceKind;
    use crate::domain::position::Position;

    /// Frame `sequence` of live:7, at `offset` of segment 3 of shard 0.
    fn frame(sequence: u64, priority: Priority, offset: u64) -> ArchivedFrame {
        let frame = FrameRecord {
            kind: SourceKind::LiveUplink,
            priority,
            source_id: 7,
            sequence,
            received_unix_ns: 1_700_000_000_000_000_000,
            payload: Bytes::from_static(b"x"),
            reception: None,
        };
        let position = Position {
            segment: 3,
            offset,
            index: 0,
        };
        ArchivedFrame {
            frame,
            shard: 0,
            position,
        }
    }

    #[test]
    fn a_tally_counts_each_frame_once_by_priority_and_run() {
        // 10 and 13 emergencies, 11 and 12 routine; 11 archived by an earlier run (offset 4),
        // 12 and 13 held by the stream, 13 counted already from the journal.
        let (routine, emergency) = (Priority::Routine, Priority::Emergency);
        let frames = vec![
            frame(10, emergency, 8),
            frame(11, routine, 4),
            frame(12, routine, 8),
            frame(13, emergency, 8),
        ];
        let mut message = InFlight::of(frames);
        message.held = vec![false, false, true, true];
        let mut asked = Vec::new();
        let tally = message.tally(
            |f| f.position.offset >= 8,
            |f| {
                asked.push(f.sequence);
                f.sequence == 13
            },
        );
        assert_eq!(asked, [12, 13], "only the frames held are asked about");
        assert_eq!(tally.runs, [vec![((11, 12), 1)], vec![((10, 10), 1)]]);
        assert_eq!((tally.new, tally.earlier), (2, 1));
        assert_eq!((tally.held, tally.counted_before), (1, 1));
    }

    /// Frames missing between two of a message (retention deleted them before they were
    /// published) split its run: a PubAck acknowledges only the sequences it carried.
    #[test]
    fn a_gap_in_a_message_s_sequences_splits_its_runs() {
        let routine = Priority::Routine;
        let sequences = [100, 101, 102, 200, 201, 99];
        let frames = sequences.map(|s| frame(s, routine, 8)).to_vec();
        let tally = InFlight::of(frames).tally(|_| true, |_| false);
        let runs = [((100, 102), 3), ((200, 201), 2), ((99, 99), 1)];
        assert_eq!(tally.runs, [runs.to_vec(), vec![]]);
    }
}
