//! A station's pass as its link sees it live: from the first read after a silence longer than
//! `archive.pass_gap_ms` to the last read before the next such silence. What the counters say of
//! it is the station's own reception: the packets it received (stored, or copies of another
//! station's) and the counts it missed (gaps in its own sequence counts). Whether another station
//! of its merge group filled those is the archive's to say (`aggregator archive passes`).
//!
//! Why live and not from the archive: an operator's alert on a pass that ended incomplete must not
//! wait for a query, and the ingest path pays for it only what it pays already, a few relaxed
//! atomic adds per read. A pass ends when the next one begins or when a reading of the counters
//! finds the station silent past the gap: no timer.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed, Ordering::SeqCst};

/// The link's passes since the start, and its current or last one.
///
/// Passes are numbered from 1: `passes` is the current one's number (0 before the first), and
/// `ended` the number of the last one that ended. A pass ends once, whoever ends it (its next
/// pass beginning, or a reading finding the station silent past the gap), and a reading ends only
/// the pass it found current before it read the station's last time, so it never ends one that
/// began meanwhile. The numbers and `last_seen` are sequentially consistent: a few per read.
#[derive(Debug)]
pub(super) struct PassCounters {
    /// A silence longer than this, in nanoseconds, ends a pass.
    gap_ns: u64,
    passes: AtomicU64,
    ended: AtomicU64,
    incomplete: AtomicU64,
    received: AtomicU64,
    missed: AtomicU64,
}

/// One reading of a link's passes (`/stats`' `pass`, `/metrics`' `aggregator_link_pass*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct PassSnapshot {
    /// Passes begun since the start.
    pub passes: u64,
    /// Passes that ended with counts the station missed.
    pub incomplete: u64,
    /// Of the current or last pass: the packets the station received (stored or copies).
    pub received: u64,
    /// Of the current or last pass: the counts missing in its sequence.
    pub missed: u64,
    /// Whether that pass is still on: the station was heard within the gap.
    pub ongoing: bool,
}

impl PassCounters {
    pub(super) fn new(gap_ns: u64) -> PassCounters {
        PassCounters {
            gap_ns,
            passes: AtomicU64::new(0),
            ended: AtomicU64::new(0),
            incomplete: AtomicU64::new(0),
            received: AtomicU64::new(0),
            missed: AtomicU64::new(0),
        }
    }

    /// A read with packets at `at_ns`, the last live one before it at `before_ns` (0: none since
    /// the start): the first read, or one after a silence longer than the gap, begins a pass.
    /// Returns whether it did.
    pub(super) fn heard(&self, at_ns: u64, before_ns: u64) -> bool {
        let first = self.passes.compare_exchange(0, 1, SeqCst, SeqCst).is_ok();
        let after_silence = !first && at_ns.saturating_sub(before_ns) > self.gap_ns;
        if after_silence {
            self.end(self.passes.load(SeqCst));
        }
        if first || after_silence {
            self.received.store(0, Relaxed);
            self.missed.store(0, Relaxed);
        }
        if after_silence {
            self.passes.fetch_add(1, SeqCst);
        }
        first || after_silence
    }

    pub(super) fn received(&self, packets: u64) {
        self.received.fetch_add(packets, Relaxed);
    }

    pub(super) fn missed(&self, packets: u64) {
        self.missed.fetch_add(packets, Relaxed);
    }

    /// Ends pass `number`, once: counted incomplete when the station missed counts in it.
    fn end(&self, number: u64) {
        let first_to_end = number > 0 && self.ended.fetch_max(number, SeqCst) < number;
        if first_to_end && self.missed.load(Relaxed) > 0 {
            self.incomplete.fetch_add(1, Relaxed);
        }
    }

    /// The passes at `now_ns`, the station's last live read in `last_seen_ns`: the pass current
    /// before that time is read ends here when the station has been silent in it for longer than
    /// the gap.
    pub(super) fn snapshot(&self, last_seen_ns: &AtomicU64, now_ns: u64) -> PassSnapshot {
        let current = self.passes.load(SeqCst);
        let last_seen = last_seen_ns.load(SeqCst);
        if last_seen > 0 && now_ns.saturating_sub(last_seen) > self.gap_ns {
            self.end(current);
        }
        let passes = self.passes.load(SeqCst);
        PassSnapshot {
            passes,
            incomplete: self.incomplete.load(Relaxed),
            received: self.received.load(Relaxed),
            missed: self.missed.load(Relaxed),
            ongoing: self.ended.load(SeqCst) < passes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * SECOND;

    /// A reading of the counters with the station last heard at `last_seen`, at `now`.
    fn read(pass: &PassCounters, last_seen: u64, now: u64) -> PassSnapshot {
        pass.snapshot(&AtomicU64::new(last_seen), now)
    }

    /// Two passes ten minutes apart with a one-minute gap: the first, with counts missed, ends
    /// incomplete when a reading finds the station silent past the gap, once however often read;
    /// the second, whole, begins afresh and ends complete when the third begins.
    #[test]
    fn a_pass_ends_at_a_silence_past_the_gap_and_counts_incomplete_once() {
        let pass = PassCounters::new(60 * SECOND);
        assert_eq!(read(&pass, 0, T0), PassSnapshot::default());
        assert!(pass.heard(T0, 0), "the first read begins a pass");
        pass.received(10);
        assert!(!pass.heard(T0 + 30 * SECOND, T0));
        pass.received(5);
        pass.missed(2);
        let during = read(&pass, T0 + 30 * SECOND, T0 + 90 * SECOND);
        assert_eq!((during.passes, during.received, during.missed), (1, 15, 2));
        assert!(during.ongoing);
        assert_eq!(during.incomplete, 0);
        for _ in 0..2 {
            let after = read(&pass, T0 + 30 * SECOND, T0 + 91 * SECOND);
            assert!(!after.ongoing);
            assert_eq!(after.incomplete, 1);
        }
        let second = T0 + 600 * SECOND;
        assert!(pass.heard(second, T0 + 30 * SECOND));
        pass.received(7);
        let now = read(&pass, second, second);
        assert_eq!((now.passes, now.received, now.missed), (2, 7, 0));
        assert!(pass.heard(second + 120 * SECOND, second));
        let third = read(&pass, second + 120 * SECOND, second + 120 * SECOND);
        assert_eq!((third.passes, third.incomplete), (3, 1));
    }

    /// A reading that found pass 1 current and the station silent, late, ends pass 1 only: the
    /// pass that began meanwhile goes on, and pass 1 is counted incomplete once.
    #[test]
    fn a_late_reading_never_ends_the_pass_that_began_meanwhile() {
        let pass = PassCounters::new(60 * SECOND);
        pass.heard(T0, 0);
        pass.missed(3);
        let second = T0 + 600 * SECOND;
        assert!(pass.heard(second, T0));
        pass.end(1);
        let now = read(&pass, second, second + SECOND);
        assert!(now.ongoing, "{now:?}");
        assert_eq!((now.passes, now.incomplete, now.missed), (2, 1, 0));
    }
}
