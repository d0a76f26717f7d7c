//! How many payload bytes the messages waiting for their PubAck may hold at once (layout
//! `records/1`).
//!
//! Why: at the stream's leader a new emergency's message waits behind the messages in flight, so
//! their bytes are bounded: [`BASE`], a few milliseconds of the servers' work on the reference
//! machine. Where the servers are far apart, though, a PubAck takes its round trips whatever the
//! bytes, and one [`BASE`] a PubAck bounds the rate (`docs/scale-out.md`). So the room is one
//! [`BASE`] for each [`PER`] of the fastest PubAck lately, up to [`MOST`] of them. Only a message
//! sent with at most one [`BASE`] ahead of it counts: the PubAck of one sent behind more waited
//! on the room's own bytes, and would grow the room by its own growth. Under a steady load, once
//! the room has grown, no message goes with so little ahead: the fastest is forgotten, the room
//! is one [`BASE`] for about two PubAcks, and the next message's PubAck grows it again. That is
//! a probe every 5 to 10 s, which also finds servers that came near.

use std::time::Duration;

use tokio::time::Instant;

/// The room where the fastest PubAck comes within twice [`PER`]: the servers near, the bound on
/// what an emergency's message waits behind.
const BASE: usize = 512 << 10;

/// The room grows one [`BASE`] for each of these in the fastest PubAck.
const PER: Duration = Duration::from_millis(10);

/// The most [`BASE`]s of room.
const MOST: u32 = 8;

/// The fastest PubAck is that of the last two of these: forgotten 5 to 10 s after it.
const EPOCH: Duration = Duration::from_secs(5);

/// The fastest PubAck of a message sent with at most [`BASE`] ahead, in this epoch and the last.
pub(super) struct Room {
    /// Where epochs are counted from.
    origin: Instant,
    /// The fastest PubAck of the latest epoch with one, and of the one before it, each with its
    /// epoch's number.
    latest: Option<(u64, Duration)>,
    before: Option<(u64, Duration)>,
}

impl Room {
    pub(super) fn new(origin: Instant) -> Room {
        Room {
            origin,
            latest: None,
            before: None,
        }
    }

    fn epoch(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.origin);
        (since.as_millis() / EPOCH.as_millis()) as u64
    }

    /// A message sent at `sent`, with `ahead` payload bytes in flight before it, got its PubAck
    /// at `landed`.
    pub(super) fn acked(&mut self, sent: Instant, ahead: usize, landed: Instant) {
        if ahead > BASE {
            return;
        }
        let (epoch, took) = (self.epoch(landed), landed.saturating_duration_since(sent));
        if self.latest.is_some_and(|(at, _)| at < epoch) {
            self.before = self.latest.take();
        }
        // The latest epoch's, or one before it landed late.
        let slot = match self.latest {
            Some((at, _)) if at > epoch => &mut self.before,
            _ => &mut self.latest,
        };
        match slot {
            Some((at, fastest)) if *at == epoch => *fastest = (*fastest).min(took),
            Some((at, _)) if *at > epoch => {}
            _ => *slot = Some((epoch, took)),
        }
    }

    /// The payload bytes the messages in flight may hold at `now`.
    pub(super) fn bytes(&self, now: Instant) -> usize {
        let epoch = self.epoch(now);
        let fastest = [self.latest, self.before]
            .into_iter()
            .flatten()
            .filter(|(at, _)| at + 1 >= epoch)
            .map(|(_, took)| took)
            .min();
        let rooms = fastest.map_or(1, |took| took.as_micros() / PER.as_micros());
        BASE * rooms.clamp(1, u128::from(MOST)) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_base_until_a_puback_is_known_and_where_pubacks_are_quick() {
        let t0 = Instant::now();
        let mut room = Room::new(t0);
        assert_eq!(room.bytes(t0), BASE);
        room.acked(t0, 0, t0 + PER / 2);
        assert_eq!(room.bytes(t0 + PER), BASE);
    }

    #[test]
    fn grows_a_base_for_each_step_of_the_fastest_puback_up_to_the_most() {
        let t0 = Instant::now();
        let mut room = Room::new(t0);
        room.acked(t0, BASE, t0 + PER * 5);
        room.acked(t0, 0, t0 + PER * 3 + PER / 2);
        assert_eq!(room.bytes(t0 + PER * 5), BASE * 3);
        let mut far = Room::new(t0);
        far.acked(t0, 0, t0 + PER * 100);
        assert_eq!(far.bytes(t0 + PER * 100), BASE * MOST as usize);
    }

    #[test]
    fn a_message_sent_behind_more_than_a_base_says_nothing() {
        let t0 = Instant::now();
        let mut room = Room::new(t0);
        room.acked(t0, BASE + 1, t0 + PER * 4);
        assert_eq!(room.bytes(t0 + PER * 4), BASE);
    }

    #[test]
    fn the_fastest_is_forgotten_after_two_epochs() {
        let t0 = Instant::now();
        let mut room = Room::new(t0);
        room.acked(t0, 0, t0 + PER * 4);
        // A slower one in the next epoch: the fastest of both holds.
        let t1 = t0 + EPOCH;
        room.acked(t1, 0, t1 + PER * 6);
        assert_eq!(room.bytes(t1 + PER * 6), BASE * 4);
        // Two epochs on, only the slower one's.
        let t2 = t0 + EPOCH * 2;
        assert_eq!(room.bytes(t2), BASE * 6);
        // A faster one now: it holds, whatever came before.
        room.acked(t2, 0, t2 + PER * 2);
        assert_eq!(room.bytes(t2 + PER * 2), BASE * 2);
        // Nothing for two epochs: one base.
        assert_eq!(room.bytes(t2 + EPOCH * 2), BASE);
    }

    #[test]
    fn a_puback_of_the_epoch_before_that_lands_late_counts_in_it() {
        let t0 = Instant::now();
        let mut room = Room::new(t0);
        room.acked(t0, 0, t0 + PER * 5);
        room.acked(t0 + EPOCH, 0, t0 + EPOCH + PER * 3);
        room.acked(t0, 0, t0 + PER * 2);
        assert_eq!(room.bytes(t0 + EPOCH + PER * 3), BASE * 2);
        // Two epochs on, the later epoch's alone.
        assert_eq!(room.bytes(t0 + EPOCH * 2), BASE * 3);
        // One older than both: nothing.
        let mut late = Room::new(t0);
        late.acked(t0 + EPOCH * 2, 0, t0 + EPOCH * 2 + PER * 4);
        late.acked(t0 + EPOCH, 0, t0 + EPOCH + PER * 4);
        late.acked(t0, 0, t0 + PER);
        assert_eq!(late.bytes(t0 + EPOCH * 2 + PER * 4), BASE * 4);
    }
}
