//! The frames one source has generated and the daemon has not acknowledged yet.
//!
//! The protocol makes the daemon answer for a frame only once an ACK or a CLOSE's `final_ack` covers
//! it, so that is the only thing that may remove a frame from here. Sequences are consecutive, so the
//! outbox is a queue indexed by `sequence - first`: acknowledging pops the front, generating pushes
//! the back, and a reconnection rewinds the write cursor to the front to resend what is left.
//! Payloads are not stored: every frame of a source carries the same payload bytes, so a frame is
//! its sequence, its priority and when it was first written (for the emergency latency).
//!
//! A replayed source ([`Outbox::recorded`]) is the same queue over positions in its [`Recording`]:
//! position `p` goes on the wire with the recording's sequence and payload of frame `p`, so an
//! archive whose sequences have gaps replays them as they were, and an acknowledgement (a sequence)
//! is turned back into the position of the last frame it covers.

use std::collections::VecDeque;
use std::sync::Arc;
use tokio::time::Instant;

use bytes::BytesMut;

use crate::domain::frame::Priority;
use crate::protocol::ingest::encode_data;

use super::replay::Recording;

#[derive(Debug, Clone, Copy)]
struct Pending {
    priority: Priority,
    /// When the frame was first encoded for the socket; `None` while it never was.
    first_sent: Option<Instant>,
}

/// What acknowledging moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Acked {
    pub frames: u64,
    pub emergency: u64,
}

/// What writing moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Written {
    /// Frames written for the first time.
    pub fresh: u64,
    /// Frames written again after a reconnection.
    pub resent: u64,
}

/// A source's unacknowledged frames and its write cursor.
///
/// Its positions are the wire sequences of a generated source, and indexes into the recording of a
/// replayed one.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Position of `pending[0]`; the next position to generate when `pending` is empty.
    first: u64,
    pending: VecDeque<Pending>,
    /// Next position to write on the current connection.
    cursor: u64,
    /// Highest position the daemon acknowledged.
    acked: Option<u64>,
    /// The first position of the source: 0, or where [`Outbox::continue_after`] moved it.
    origin: u64,
    /// Whether any frame was ever written; until then the numbering may still move.
    started: bool,
    /// The frames of a replayed source; `None` for a generated one.
    recording: Option<Arc<Recording>>,
}

impl Outbox {
    pub(crate) fn new() -> Self {
        Outbox::default()
    }

    /// An outbox whose frames are `recording`'s, pushed in order.
    pub(crate) fn recorded(recording: Arc<Recording>) -> Self {
        Outbox {
            recording: Some(recording),
            ..Outbox::default()
        }
    }

    /// Adds a new frame; returns its position.
    pub(crate) fn push(&mut self, priority: Priority) -> u64 {
        let sequence = self.next_sequence();
        self.pending.push_back(Pending {
            priority,
            first_sent: None,
        });
        sequence
    }

    /// The position the next generated frame gets.
    pub(crate) fn next_sequence(&self) -> u64 {
        self.first + self.pending.len() as u64
    }

    /// Frames not yet acknowledged.
    pub(crate) fn unacked(&self) -> usize {
        self.pending.len()
    }

    /// Frames not yet written on the current connection.
    pub(crate) fn unwritten(&self) -> u64 {
        self.next_sequence() - self.cursor
    }

    /// The position of the last frame an acknowledgement of `sequence` covers.
    fn position_of(&self, sequence: u64) -> Option<u64> {
        match &self.recording {
            Some(recording) => recording.position_of(sequence),
            None => Some(sequence),
        }
    }

    /// Continues the numbering of an earlier run of the same source: when the daemon's WELCOME says
    /// it already stored up to `stored` and this outbox never wrote a frame, the frames generated so
    /// far are renumbered to follow it, as a restarted source would. Returns whether it did.
    /// A recording is never renumbered.
    pub(crate) fn continue_after(&mut self, stored: u64) -> bool {
        if self.started || self.acked.is_some() || self.recording.is_some() {
            return false;
        }
        self.first = stored.saturating_add(1);
        self.cursor = self.first;
        self.origin = self.first;
        true
    }

    /// How many acknowledged frames have a sequence above `resume_after` (`None`: all of them).
    /// A WELCOME with that resume point comes from a daemon that does not store them, and they
    /// are no longer here to send again.
    pub(crate) fn acknowledged_above(&self, resume_after: Option<u64>) -> u64 {
        let Some(acked) = self.acked else {
            return 0;
        };
        let above = resume_after
            .and_then(|stored| self.position_of(stored))
            .map_or(self.origin, |position| position + 1);
        (acked + 1).saturating_sub(above.max(self.origin))
    }

    /// Starts a new connection: everything unacknowledged is written again, except what the
    /// daemon's WELCOME says it already stored.
    pub(crate) fn rewind(&mut self) {
        self.cursor = self.first;
    }

    /// Encodes unwritten frames into `out` until it holds at least `limit` bytes or nothing is left.
    pub(crate) fn write_into(
        &mut self,
        out: &mut BytesMut,
        payload: &[u8],
        limit: usize,
        now: Instant,
    ) -> Written {
        let mut written = Written::default();
        while out.len() < limit && self.cursor < self.next_sequence() {
            let index = (self.cursor - self.first) as usize;
            let Some(frame) = self.pending.get_mut(index) else {
                break;
            };
            let (sequence, payload) = match &self.recording {
                Some(recording) => match recording.frames.get(self.cursor as usize) {
                    Some(recorded) => (recorded.sequence, &recorded.payload[..]),
                    None => break,
                },
                None => (self.cursor, payload),
            };
            encode_data(out, frame.priority, sequence, payload);
            self.started = true;
            if frame.first_sent.is_none() {
                frame.first_sent = Some(now);
                written.fresh += 1;
            } else {
                written.resent += 1;
            }
            self.cursor += 1;
        }
        written
    }

    /// Drops every frame up to and including `sequence`, which the daemon now answers for.
    /// Emergency frames report their latency from first write to `now` through `latency`.
    /// Sequences never generated and acknowledgements that move backwards are ignored.
    pub(crate) fn acknowledge(
        &mut self,
        sequence: u64,
        now: Instant,
        mut latency: impl FnMut(std::time::Duration),
    ) -> Acked {
        let mut acked = Acked::default();
        let Some(position) = self.position_of(sequence) else {
            return acked;
        };
        if self.acked.is_some_and(|a| position <= a) || position >= self.next_sequence() {
            return acked;
        }
        while self.first <= position {
            let Some(frame) = self.pending.pop_front() else {
                break;
            };
            self.first += 1;
            acked.frames += 1;
            if frame.priority == Priority::Emergency {
                acked.emergency += 1;
                if let Some(sent) = frame.first_sent {
                    latency(now.saturating_duration_since(sent));
                }
            }
        }
        self.cursor = self.cursor.max(self.first);
        self.acked = Some(position);
        acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledge_pops_and_rewind_resends_the_rest() {
        let mut outbox = Outbox::new();
        for _ in 0..5 {
            outbox.push(Priority::Routine);
        }
        let now = Instant::now();
        let mut out = BytesMut::new();
        assert_eq!(outbox.write_into(&mut out, b"x", usize::MAX, now).fresh, 5);
        assert_eq!(outbox.acknowledge(1, now, |_| {}).frames, 2);
        assert_eq!(
            outbox.acknowledge(0, now, |_| {}).frames,
            0,
            "never backwards"
        );
        assert_eq!(
            outbox.acknowledge(9, now, |_| {}).frames,
            0,
            "never beyond what exists"
        );
        outbox.rewind();
        out.clear();
        let again = outbox.write_into(&mut out, b"x", usize::MAX, now);
        assert_eq!(
            again,
            Written {
                fresh: 0,
                resent: 3
            }
        );
        assert_eq!(outbox.unacked(), 3);
        assert_eq!(outbox.next_sequence(), 5);
    }

    #[test]
    fn acknowledged_frames_above_a_resume_point_are_counted() {
        let mut outbox = Outbox::new();
        assert!(outbox.continue_after(9), "numbered from 10");
        for _ in 0..10 {
            outbox.push(Priority::Routine);
        }
        let now = Instant::now();
        outbox.write_into(&mut BytesMut::new(), b"", usize::MAX, now);
        assert_eq!(
            outbox.acknowledged_above(None),
            0,
            "nothing acknowledged yet"
        );
        assert_eq!(outbox.acknowledge(14, now, |_| {}).frames, 5);
        assert_eq!(
            outbox.acknowledged_above(Some(14)),
            0,
            "at the acknowledgement"
        );
        assert_eq!(outbox.acknowledged_above(Some(20)), 0, "above it");
        assert_eq!(outbox.acknowledged_above(Some(11)), 3, "12, 13 and 14");
        assert_eq!(
            outbox.acknowledged_above(Some(3)),
            5,
            "below the first frame"
        );
        assert_eq!(
            outbox.acknowledged_above(None),
            5,
            "a daemon that stores nothing"
        );
    }

    #[test]
    fn a_fresh_source_continues_the_numbering_of_its_previous_run() {
        let mut outbox = Outbox::new();
        outbox.push(Priority::Routine);
        assert!(outbox.continue_after(9));
        assert_eq!(outbox.next_sequence(), 11);
        let mut out = BytesMut::new();
        outbox.write_into(&mut out, b"", usize::MAX, Instant::now());
        assert!(
            !outbox.continue_after(20),
            "numbering is fixed once a frame was written"
        );
        assert_eq!(outbox.acknowledge(10, Instant::now(), |_| {}).frames, 1);
    }

    #[test]
    fn a_recording_keeps_its_sequences_and_payloads() {
        use super::super::replay::{Pace, RecordedFrame};
        use crate::protocol::ingest::ClientMessage;

        let frames = [(10, &b"a"[..]), (12, b"bb"), (15, b"ccc")]
            .into_iter()
            .map(|(sequence, payload)| RecordedFrame {
                sequence,
                priority: Priority::Routine,
                received_unix_ns: 0,
                payload: bytes::Bytes::from_static(payload),
            })
            .collect();
        let recording = Recording {
            archived_kind: crate::SourceKind::LiveUplink,
            frames,
            pace: Pace::Max,
        };
        let mut outbox = Outbox::recorded(Arc::new(recording));
        assert!(
            !outbox.continue_after(99),
            "a recording is never renumbered"
        );
        for _ in 0..3 {
            outbox.push(Priority::Routine);
        }
        let now = Instant::now();
        let mut out = BytesMut::new();
        outbox.write_into(&mut out, b"unused", usize::MAX, now);
        let mut sent = Vec::new();
        while out.len() >= 4 {
            let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
            let body = out.split_to(4 + len).freeze().slice(4..);
            if let Ok(ClientMessage::Data(data)) = ClientMessage::decode(body) {
                sent.push((data.sequence, data.payload.to_vec()));
            }
        }
        assert_eq!(
            sent,
            vec![
                (10, b"a".to_vec()),
                (12, b"bb".to_vec()),
                (15, b"ccc".to_vec())
            ]
        );
        assert_eq!(
            outbox.acknowledge(9, now, |_| {}).frames,
            0,
            "before the first"
        );
        assert_eq!(
            outbox.acknowledge(13, now, |_| {}).frames,
            2,
            "covers 10 and 12"
        );
        assert_eq!(
            outbox.acknowledge(14, now, |_| {}).frames,
            0,
            "covers nothing new"
        );
        assert_eq!(
            outbox.acknowledged_above(Some(11)),
            1,
            "12, not the gap at 11"
        );
        assert_eq!(outbox.acknowledged_above(Some(9)), 2);
        assert_eq!(outbox.acknowledge(15, now, |_| {}).frames, 1);
        assert_eq!(outbox.unacked(), 0);
    }

    #[test]
    fn emergency_latency_is_reported_once_acknowledged() {
        let mut outbox = Outbox::new();
        outbox.push(Priority::Emergency);
        outbox.push(Priority::Routine);
        let now = Instant::now();
        outbox.write_into(&mut BytesMut::new(), b"", usize::MAX, now);
        let mut seen = Vec::new();
        let acked = outbox.acknowledge(1, now, |d| seen.push(d));
        assert_eq!(
            acked,
            Acked {
                frames: 2,
                emergency: 1
            }
        );
        assert_eq!(seen.len(), 1);
    }
}
