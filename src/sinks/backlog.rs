//! What the NATS sink has read of the archive and not yet published, and in what order it
//! publishes it: frames a failed session had in flight first, alone until acknowledged; then
//! emergencies; then routine frames; each in the files' order.

use std::collections::VecDeque;

use super::unacked::Unacked;
use crate::archive::read::{ArchivedFrame, ShardCursors};
use crate::domain::frame::Priority;

/// The archive's cursors, and the frames read from them not yet published: those a failed
/// session had in flight, then emergencies and routine frames apart, each in the files' order;
/// and those not yet acknowledged.
pub(super) struct Backlog {
    pub(super) cursors: ShardCursors,
    /// Published by a session that failed before their PubAcks, in publishing order.
    retry: VecDeque<ArchivedFrame>,
    /// Set by a failure: nothing else is published until `retry` is acknowledged whole, so that a
    /// frame NATS refuses on every try holds back everything after it, emergencies too.
    settling: bool,
    urgent: VecDeque<ArchivedFrame>,
    pending: VecDeque<ArchivedFrame>,
    pub(super) unacked: Unacked,
}

impl Backlog {
    /// Nothing read yet from `cursors`.
    pub(super) fn new(cursors: ShardCursors) -> Backlog {
        Backlog {
            cursors,
            retry: VecDeque::new(),
            settling: false,
            urgent: VecDeque::new(),
            pending: VecDeque::new(),
            unacked: Unacked::default(),
        }
    }

    /// Takes frames read from the files.
    pub(super) fn add(&mut self, frames: impl IntoIterator<Item = ArchivedFrame>) {
        for frame in frames {
            self.unacked.read(frame.shard_position());
            match frame.frame.priority {
                Priority::Emergency => self.urgent.push_back(frame),
                Priority::Routine => self.pending.push_back(frame),
            }
        }
    }

    /// Puts frames a session failed to see acknowledged back, to be published again first, in
    /// their order, before anything else.
    pub(super) fn put_back(&mut self, frames: impl DoubleEndedIterator<Item = ArchivedFrame>) {
        frames.rev().for_each(|frame| self.retry.push_front(frame));
        self.settling = true;
    }

    /// The next frame to publish: one to publish again, else (once those are acknowledged) the
    /// oldest emergency read, else the oldest routine frame.
    pub(super) fn next(&mut self) -> Option<ArchivedFrame> {
        if let Some(frame) = self.retry.pop_front() {
            return Some(frame);
        }
        if self.settling {
            return None;
        }
        self.urgent.pop_front().or_else(|| self.pending.pop_front())
    }

    /// Ends the settling after a failure once what it published again is acknowledged.
    pub(super) fn settle(&mut self, nothing_in_flight: bool) {
        if self.settling && self.retry.is_empty() && nothing_in_flight {
            self.settling = false;
        }
    }

    /// When the oldest frame read and not yet published was received: the first of each queue.
    pub(super) fn oldest_received(&self) -> Option<u64> {
        let firsts = [
            self.retry.front(),
            self.urgent.front(),
            self.pending.front(),
        ];
        (firsts.into_iter().flatten())
            .map(|f| f.frame.received_unix_ns)
            .min()
    }

    /// Frames read and not yet published.
    pub(super) fn read_ahead(&self) -> usize {
        self.retry.len() + self.urgent.len() + self.pending.len()
    }
}
