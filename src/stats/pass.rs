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

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

/// The link's passes since the start, and its current or last one.
#[derive(Debug)]
pub(super) struct PassCounters {
    /// A silence longer than this, in nanoseconds, ends a pass.
    gap_ns: u64,
    passes: AtomicU64,
    incomplete: AtomicU64,
    received: AtomicU64,
    missed: AtomicU64,
    /// The current pass has ended (or none began yet): counted once.
    ended: AtomicBool,
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
            incomplete: AtomicU64::new(0),
            received: AtomicU64::new(0),
            missed: AtomicU64::new(0),
            ended: AtomicBool::new(true),
        }
    }

    /// A read with packets at `at_ns`, the last one before it at `before_ns` (0: none since the
    /// start): a silence longer than the gap, or the first read, begins a pass.
    pub(super) fn heard(&self, at_ns: u64, before_ns: u64) {
        let first = self.passes.load(Relaxed) == 0;
        if first || before_ns == 0 || at_ns.saturating_sub(before_ns) > self.gap_ns {
            self.end();
            self.received.store(0, Relaxed);
            self.missed.store(0, Relaxed);
            self.ended.store(false, Relaxed);
            self.passes.fetch_add(1, Relaxed);
        }
    }

    pub(super) fn received(&self, packets: u64) {
        self.received.fetch_add(packets, Relaxed);
    }

    pub(super) fn missed(&self, packets: u64) {
        self.missed.fetch_add(packets, Relaxed);
    }

    /// Ends the current pass, once: counted incomplete when the station missed counts in it.
    fn end(&self) {
        if !self.ended.swap(true, Relaxed) && self.missed.load(Relaxed) > 0 {
            self.incomplete.fetch_add(1, Relaxed);
        }
    }

    /// The passes at `now_ns`, the station last heard at `last_seen_ns`: a pass the station has
    /// been silent in for longer than the gap ends here.
    pub(super) fn snapshot(&self, last_seen_ns: u64, now_ns: u64) -> PassSnapshot {
        if last_seen_ns > 0 && now_ns.saturating_sub(last_seen_ns) > self.gap_ns {
            self.end();
        }
        PassSnapshot {
            passes: self.passes.load(Relaxed),
            incomplete: self.incomplete.load(Relaxed),
            received: self.received.load(Relaxed),
            missed: self.missed.load(Relaxed),
            ongoing: !self.ended.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const T0: u64 = 1_800_000_000 * SECOND;

    /// Two passes ten minutes apart with a one-minute gap: the first, with counts missed, ends
    /// incomplete when a reading finds the station silent past the gap, once however often read;
    /// the second, whole, begins afresh and ends complete when the third begins.
    #[test]
    fn a_pass_ends_at_a_silence_past_the_gap_and_counts_incomplete_once() {
        let pass = PassCounters::new(60 * SECOND);
        assert_eq!(pass.snapshot(0, T0), PassSnapshot::default());
        pass.heard(T0, 0);
        pass.received(10);
        pass.heard(T0 + 30 * SECOND, T0);
        pass.received(5);
        pass.missed(2);
        let during = pass.snapshot(T0 + 30 * SECOND, T0 + 90 * SECOND);
        assert_eq!((during.passes, during.received, during.missed), (1, 15, 2));
        assert!(during.ongoing);
        assert_eq!(during.incomplete, 0);
        for _ in 0..2 {
            let after = pass.snapshot(T0 + 30 * SECOND, T0 + 91 * SECOND);
            assert!(!after.ongoing);
            assert_eq!(after.incomplete, 1);
        }
        let second = T0 + 600 * SECOND;
        pass.heard(second, T0 + 30 * SECOND);
        pass.received(7);
        let now = pass.snapshot(second, second);
        assert_eq!((now.passes, now.received, now.missed), (2, 7, 0));
        pass.heard(second + 120 * SECOND, second);
        let third = pass.snapshot(second + 120 * SECOND, second + 120 * SECOND);
        assert_eq!((third.passes, third.incomplete), (3, 1));
    }
}
