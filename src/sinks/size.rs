//! How many bytes of records a routine message carries (layout `records/1`, `ack = "replicated"`):
//! the most while no emergency flows, less while emergencies' PubAcks come late.
//!
//! Why: at the stream's leader an emergency's message waits behind the routine messages sent
//! before it, and the servers handle a message whole (its replicated log entry, its compression,
//! its copy on each node): on a busy machine the wait follows the routine messages' size, while
//! larger messages cost the servers less a frame (`docs/bench/nats.md`). So the size is cut by
//! half when an emergency's PubAck took longer than [`TARGET`], grows back a step when one came in
//! time (each once a round trip: a change shows before the next), and is the most again once no
//! emergency was published for [`QUIET`]. Where the servers keep up (a machine with cores to
//! spare, or no emergencies) messages stay at the most. Every PubAck also sizes the room in
//! flight ([`Room`]), by how soon it came.

use std::time::Duration;

use tokio::time::Instant;

use super::room::Room;
use super::window::Sent;

/// An emergency's publish to its PubAck, at most: with the wait for its source's message before
/// it, about two of these make its ACK.
const TARGET: Duration = Duration::from_millis(10);

/// No emergency published for this long: routine messages are of the most bytes again.
const QUIET: Duration = Duration::from_secs(1);

/// The most bytes of frame records in one message (less where the server's `max_payload` is
/// less).
const MOST: usize = 256 << 10;

/// Room for a message's headers under the server's `max_payload`.
const HEADER_ROOM: usize = 8 << 10;

/// The least bytes of records in a routine message, and the step it grows by.
const LEAST: usize = 32 << 10;
const STEP: usize = 16 << 10;

/// The most bytes of records in a message under a server's `max_payload` (0: not connected
/// yet, not known).
pub(super) fn most(max_payload: usize) -> usize {
    match max_payload {
        0 => MOST,
        limit => limit.saturating_sub(HEADER_ROOM).clamp(1, MOST),
    }
}

/// The routine messages' size now.
pub(super) struct RoutineSize {
    /// The most, from the server's `max_payload` and the sink's own bound.
    most: usize,
    /// The size now, `LEAST` to `most`.
    limit: usize,
    /// When the size last changed: the next change waits for a PubAck of a message sent after
    /// it, one change a round trip.
    changed_at: Option<Instant>,
    /// When an emergency's message was last published.
    urgent_at: Option<Instant>,
    /// The payload bytes the messages in flight may hold.
    room: Room,
}

impl RoutineSize {
    pub(super) fn new(most: usize) -> RoutineSize {
        RoutineSize {
            most,
            limit: most,
            changed_at: None,
            urgent_at: None,
            room: Room::new(Instant::now()),
        }
    }

    /// The bytes of records a routine message may carry at `now`, under `most` (the server's
    /// `max_payload` may have changed with the connection).
    pub(super) fn limit(&mut self, most: usize, now: Instant) -> usize {
        self.most = most;
        let quiet = (self.urgent_at).is_none_or(|at| now.saturating_duration_since(at) >= QUIET);
        if quiet && self.limit != most {
            // PubAcks of emergencies sent before now say nothing of this size.
            (self.limit, self.changed_at) = (most, Some(now));
        }
        self.limit.clamp(LEAST.min(most), most)
    }

    /// An emergency's message was published at `now`.
    pub(super) fn urgent_sent(&mut self, now: Instant) {
        self.urgent_at = Some(now);
    }

    /// The payload bytes the messages in flight may hold at `now`.
    pub(super) fn room(&self, now: Instant) -> usize {
        self.room.bytes(now)
    }

    /// A message `sent` got its PubAck at `landed`, taken at `now`; `urgent` where it held
    /// emergencies. The room counts from when the message was handed to the client: never less
    /// than the round trip.
    pub(super) fn acked(&mut self, (sent, landed): (Sent, Instant), urgent: bool, now: Instant) {
        self.room.acked(sent.asked, sent.ahead, landed);
        if urgent {
            self.urgent_acked(sent.at, landed, now);
        }
    }

    /// An emergency's message published at `sent` got its PubAck at `landed`, taken at `now`.
    fn urgent_acked(&mut self, sent: Instant, landed: Instant, now: Instant) {
        // A message sent before the last change says nothing of the size since.
        if self.changed_at.is_some_and(|changed| sent < changed) {
            return;
        }
        let limit = match landed.saturating_duration_since(sent) > TARGET {
            false => (self.limit + STEP).min(self.most),
            true => (self.limit / 2).max(LEAST).min(self.most),
        };
        if limit != self.limit {
            (self.limit, self.changed_at) = (limit, Some(now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An emergency's message sent at `sent`, its PubAck `waited` later, taken at once.
    fn emergency(size: &mut RoutineSize, sent: Instant, waited: Duration) {
        size.urgent_sent(sent);
        size.urgent_acked(sent, sent + waited, sent + waited);
    }

    #[test]
    fn the_room_counts_from_the_hand_over_an_emergency_from_the_client_taking_it() {
        let mut size = RoutineSize::new(MOST);
        let t0 = Instant::now();
        // Handed over at t0, taken by the client 25 ms later, its PubAck 5 ms after that.
        let sent = Sent {
            asked: t0,
            at: t0 + Duration::from_millis(25),
            ahead: 0,
        };
        let landed = t0 + Duration::from_millis(30);
        size.acked((sent, landed), false, landed);
        assert_eq!(size.room(landed), 3 * (512 << 10));
        // A routine message's PubAck leaves the size alone; an emergency's in time too.
        assert_eq!(size.limit(MOST, landed), MOST);
        size.urgent_sent(sent.at);
        size.acked((sent, landed), true, landed);
        assert_eq!(size.limit(MOST, landed), MOST);
        // The same emergency, its PubAck late.
        size.acked((sent, landed + TARGET), true, landed + TARGET);
        assert_eq!(size.limit(MOST, landed + TARGET), MOST / 2);
    }

    #[test]
    fn the_most_while_no_emergency_flows() {
        let mut size = RoutineSize::new(MOST);
        let now = Instant::now();
        assert_eq!(size.limit(MOST, now), MOST);
        // Under a smaller max_payload.
        assert_eq!(size.limit(100 << 10, now), 100 << 10);
    }

    #[test]
    fn a_late_puback_halves_the_size_once_per_round_trip() {
        let mut size = RoutineSize::new(MOST);
        let t0 = Instant::now();
        // In time at the most: no change.
        emergency(&mut size, t0, TARGET / 5);
        let t1 = t0 + TARGET;
        emergency(&mut size, t1, TARGET * 2);
        assert_eq!(size.limit(MOST, t1 + TARGET * 2), MOST / 2);
        // Sent before the cut: no second cut for the same wait.
        size.urgent_acked(t1 + TARGET, t1 + TARGET * 3, t1 + TARGET * 3);
        assert_eq!(size.limit(MOST, t1 + TARGET * 3), MOST / 2);
        // Sent after it and late: cut again, never under the least.
        let later = t1 + TARGET * 4;
        emergency(&mut size, later, TARGET * 2);
        assert_eq!(size.limit(MOST, later + TARGET * 2), MOST / 4);
        for step in 0..10u32 {
            emergency(&mut size, later + TARGET * (3 * step + 3), TARGET * 2);
        }
        assert_eq!(size.limit(MOST, later + TARGET * 40), LEAST);
    }

    #[test]
    fn grows_back_in_steps_and_is_the_most_after_a_quiet_second() {
        let mut size = RoutineSize::new(MOST);
        let t0 = Instant::now();
        emergency(&mut size, t0, TARGET / 5);
        emergency(&mut size, t0 + TARGET, TARGET * 2);
        let half = MOST / 2;
        let t1 = t0 + TARGET * 4;
        emergency(&mut size, t1, TARGET / 2);
        assert_eq!(size.limit(MOST, t1 + TARGET), half + STEP);
        assert_eq!(size.limit(MOST, t1 + QUIET - TARGET), half + STEP);
        assert_eq!(size.limit(MOST, t1 + QUIET), MOST);
    }

    #[test]
    fn no_change_leaves_the_next_puback_heard() {
        let mut size = RoutineSize::new(MOST);
        let t0 = Instant::now();
        // In time at the most: nothing changes, so a late one sent before it still cuts.
        emergency(&mut size, t0 + TARGET, TARGET / 5);
        size.urgent_acked(t0, t0 + TARGET * 3, t0 + TARGET * 3);
        assert_eq!(size.limit(MOST, t0 + TARGET * 3), MOST / 2);
    }

    #[test]
    fn pubacks_sent_before_a_quiet_second_do_not_cut_the_most() {
        let mut size = RoutineSize::new(MOST);
        let t0 = Instant::now();
        emergency(&mut size, t0, TARGET * 2);
        let t1 = t0 + TARGET * 3;
        size.urgent_sent(t1);
        assert_eq!(size.limit(MOST, t1 + QUIET), MOST);
        // The servers were that slow: its PubAck came after the quiet second.
        let t2 = t1 + QUIET * 2;
        size.urgent_acked(t1, t2, t2);
        size.urgent_sent(t2);
        assert_eq!(size.limit(MOST, t2), MOST);
    }
}
