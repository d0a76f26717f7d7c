//! What the NATS sink has read of the archive and not yet published, and in what order it
//! publishes it.
//!
//! Layout `frame/1`, a message per frame: frames a failed session had in flight first, alone
//! until acknowledged; then emergencies; then routine frames; each in the files' order.
//! Layout `records/1`, a message per batch of one source: each source's emergencies, then its
//! routine frames, each priority in the files' order (each priority of a source must reach the
//! stream in sequence order: `super::series`); the sources with an emergency read first, then
//! the one whose oldest frame is oldest.

use std::collections::{HashMap, HashSet, VecDeque};

use super::message::Layout;
use super::unacked::Unacked;
use crate::archive::format::RecordsLen;
use crate::archive::read::{ArchivedFrame, ShardCursors};
use crate::domain::frame::{Priority, SourceKey};

/// The most read and not yet published: frames, and their payload bytes.
#[derive(Debug, Clone, Copy)]
pub(super) struct ReadAhead {
    pub(super) frames: usize,
    pub(super) bytes: usize,
}

/// The archive's cursors, the frames read from them not yet published, and those not yet
/// acknowledged.
pub(super) struct Backlog {
    pub(super) cursors: ShardCursors,
    queues: Queues,
    /// Frames read and not yet published, and their payload bytes.
    frames: usize,
    bytes: usize,
    pub(super) unacked: Unacked,
}

enum Queues {
    Frames(FrameQueues),
    Sources(HashMap<SourceKey, SourceQueue>),
}

#[derive(Default)]
struct FrameQueues {
    /// Published by a session that failed before their PubAcks, in publishing order.
    retry: VecDeque<ArchivedFrame>,
    /// Set by a failure: nothing else is published until `retry` is acknowledged whole, so that a
    /// frame NATS refuses on every try holds back everything after it, emergencies too.
    settling: bool,
    urgent: VecDeque<ArchivedFrame>,
    pending: VecDeque<ArchivedFrame>,
}

impl FrameQueues {
    fn push(&mut self, frame: ArchivedFrame) {
        match frame.frame.priority {
            Priority::Emergency => self.urgent.push_back(frame),
            Priority::Routine => self.pending.push_back(frame),
        }
    }
}

/// A source's frames read, each priority in the files' order.
#[derive(Default)]
struct SourceQueue {
    urgent: VecDeque<ArchivedFrame>,
    routine: VecDeque<ArchivedFrame>,
}

impl SourceQueue {
    fn push(&mut self, frame: ArchivedFrame, front: bool) {
        let queue = match frame.frame.priority {
            Priority::Emergency => &mut self.urgent,
            Priority::Routine => &mut self.routine,
        };
        match front {
            true => queue.push_front(frame),
            false => queue.push_back(frame),
        }
    }

    /// The next frame to publish: an emergency first.
    fn front(&self) -> Option<&ArchivedFrame> {
        self.urgent.front().or(self.routine.front())
    }

    fn pop(&mut self) -> Option<ArchivedFrame> {
        self.urgent.pop_front().or_else(|| self.routine.pop_front())
    }

    /// When the oldest frame read was received.
    fn oldest(&self) -> Option<u64> {
        let firsts = [self.urgent.front(), self.routine.front()];
        firsts
            .into_iter()
            .flatten()
            .map(|f| f.frame.received_unix_ns)
            .min()
    }
}

impl Backlog {
    /// Nothing read yet from `cursors`, to publish in `layout`.
    pub(super) fn new(cursors: ShardCursors, layout: Layout) -> Backlog {
        let queues = match layout {
            Layout::Frame => Queues::Frames(FrameQueues::default()),
            Layout::Records | Layout::Compressed => Queues::Sources(HashMap::new()),
        };
        Backlog {
            cursors,
            queues,
            frames: 0,
            bytes: 0,
            unacked: Unacked::default(),
        }
    }

    /// Takes frames read from the files (in `records/1`, a source's queue found once per run
    /// of its frames).
    pub(super) fn add(&mut self, frames: Vec<ArchivedFrame>) {
        for frame in &frames {
            self.unacked.read(frame.shard_position());
            self.frames += 1;
            self.bytes += frame.frame.payload.len();
        }
        let key = |f: &ArchivedFrame| (f.frame.kind, f.frame.source_id);
        match &mut self.queues {
            Queues::Frames(q) => frames.into_iter().for_each(|frame| q.push(frame)),
            Queues::Sources(sources) => {
                let mut frames = frames.into_iter().peekable();
                while let Some(first) = frames.next() {
                    let run = key(&first);
                    let queue = sources.entry(run).or_default();
                    queue.push(first, false);
                    while let Some(frame) = frames.next_if(|f| key(f) == run) {
                        queue.push(frame, false);
                    }
                }
            }
        }
    }

    /// Puts a frame taken back at the front of its queue.
    fn put_front(&mut self, frame: ArchivedFrame) {
        self.frames += 1;
        self.bytes += frame.frame.payload.len();
        match &mut self.queues {
            Queues::Frames(q) => q.retry.push_front(frame),
            Queues::Sources(sources) => {
                let key = (frame.frame.kind, frame.frame.source_id);
                sources.entry(key).or_default().push(frame, true);
            }
        }
    }

    fn taken(&mut self, frame: Option<ArchivedFrame>) -> Option<ArchivedFrame> {
        let frame = frame?;
        self.frames -= 1;
        self.bytes -= frame.frame.payload.len();
        Some(frame)
    }

    /// Puts frames a session failed to see acknowledged back, to be published again first, in
    /// their order (with layout `frame/1`, before anything else).
    pub(super) fn put_back(&mut self, frames: impl DoubleEndedIterator<Item = ArchivedFrame>) {
        frames.rev().for_each(|frame| self.put_front(frame));
        if let Queues::Frames(q) = &mut self.queues {
            q.settling = true;
        }
    }

    /// Layout `frame/1`: the next frame to publish: one to publish again, else (once those are
    /// acknowledged) the oldest emergency read, else the oldest routine frame.
    pub(super) fn next(&mut self) -> Option<ArchivedFrame> {
        let Queues::Frames(q) = &mut self.queues else {
            return None;
        };
        let frame = match q.retry.pop_front() {
            Some(frame) => Some(frame),
            None if q.settling => None,
            None => q.urgent.pop_front().or_else(|| q.pending.pop_front()),
        };
        self.taken(frame)
    }

    /// Layout `records/1`: the source to publish next among those not `busy`: one with an
    /// emergency read (`true`), else the one whose oldest frame read is oldest.
    pub(super) fn next_source(&self, busy: &HashSet<SourceKey>) -> Option<(SourceKey, bool)> {
        let Queues::Sources(sources) = &self.queues else {
            return None;
        };
        let ready = sources.iter().filter(|(key, _)| !busy.contains(key));
        ready
            .filter_map(|(key, q)| Some(((q.urgent.is_empty(), q.oldest()?), *key)))
            .min_by_key(|(order, _)| *order)
            .map(|((routine, _), key)| (key, !routine))
    }

    /// Layout `records/1`: the oldest frames read of source `key`, in their order, as many as fit
    /// `max_bytes` of records (one at least).
    pub(super) fn take(&mut self, key: SourceKey, max_bytes: usize) -> Vec<ArchivedFrame> {
        let Queues::Sources(sources) = &mut self.queues else {
            return Vec::new();
        };
        let Some(queue) = sources.get_mut(&key) else {
            return Vec::new();
        };
        let (mut batch, mut len) = (Vec::new(), RecordsLen::default());
        while let Some(frame) = queue.front() {
            if !len.add_within(&frame.frame, max_bytes) {
                break;
            }
            batch.extend(queue.pop());
        }
        if queue.front().is_none() {
            sources.remove(&key);
        }
        self.frames -= batch.len();
        self.bytes -= batch.iter().map(|f| f.frame.payload.len()).sum::<usize>();
        batch
    }

    /// Ends the settling after a failure once what it published again is acknowledged.
    pub(super) fn settle(&mut self, nothing_in_flight: bool) {
        if let Queues::Frames(q) = &mut self.queues {
            if q.settling && q.retry.is_empty() && nothing_in_flight {
                q.settling = false;
            }
        }
    }

    /// When the oldest frame read and not yet published was received.
    pub(super) fn oldest_received(&self) -> Option<u64> {
        let received = |f: &ArchivedFrame| f.frame.received_unix_ns;
        match &self.queues {
            Queues::Frames(q) => [q.retry.front(), q.urgent.front(), q.pending.front()]
                .into_iter()
                .flatten()
                .map(received)
                .min(),
            Queues::Sources(sources) => sources.values().filter_map(SourceQueue::oldest).min(),
        }
    }

    /// Frames read and not yet published.
    pub(super) fn read_ahead(&self) -> usize {
        self.frames
    }

    /// Whether less than `most` is read and not yet published.
    pub(super) fn has_room(&self, most: ReadAhead) -> bool {
        self.frames < most.frames && self.bytes < most.bytes
    }
}
