//! How old a segment is, in time that really elapsed: what `max_age` measures, and what orders
//! the deletions of every limit.
//!
//! Why not the clock minus the segment's newest received time: a wall clock that steps would
//! then delete (Kafka deleted records dated far back right after acknowledging them) or keep for
//! a year (a segment stamped ahead holds back every older one, KAFKA-7910). So:
//!
//! - a segment this run wrote is aged on the archive clock, which counts on the monotonic clock
//!   (`crate::domain::clock`): a step of the wall clock moves neither it nor the stamps;
//! - a segment an earlier run wrote is aged by the stamps of that run up to the newest frame the
//!   shard held at the start, plus the time since the start; the time in between (the daemon was
//!   down, or the clock stepped meanwhile: the two cannot be told apart) counts only once
//!   `clock.start_grace_ms` has passed, then as the wall clock tells it at the end of the grace
//!   (an NTP step back right after boot has corrected a clock that booted ahead by then) or at
//!   the start, whichever says less: a step forward during the grace never lengthens it. Until
//!   then a start deletes by age only what the last run itself would have deleted;
//! - a segment is at least as old as every segment its shard wrote after it: one stamped ahead of
//!   the clock (by an earlier build, or a run whose clock was wrong) takes the age of those after
//!   it, and never holds back the deletion of older ones.
//!
//! The plan ([`super::plan`]) then takes each segment's age as a received time on the archive
//! clock (`now - age`), and deletes oldest first as before.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::plan::Candidate;
use crate::domain::clock::ArchiveClock;

/// What a shard held when the daemon started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardStart {
    pub shard: usize,
    /// The newest received time it held (`None`: no frame).
    pub newest: Option<u64>,
    /// The segment the start's CLOCK record went into: sealed segments from it on hold this
    /// run's frames last. `None` for a shard no writer runs on (retired).
    pub began_in: Option<u64>,
}

impl ShardStart {
    /// Shard `shard` as the start found it, holding frames up to `newest`, its writer not yet
    /// begun.
    pub fn before(shard: usize, newest: Option<u64>) -> ShardStart {
        ShardStart {
            shard,
            newest,
            began_in: None,
        }
    }
}

/// How a check ages segments: the start of the run, and what the grace has let it trust.
#[derive(Debug)]
pub(crate) struct Ages {
    clock: ArchiveClock,
    shards: HashMap<usize, ShardStart>,
    grace: Duration,
    /// The wall clock's reckoning of the start, once the grace has passed.
    trusted_start: Option<u64>,
}

impl Ages {
    /// Ages on `clock` for a run whose shards started as `shards` say, trusting the time before
    /// the start after `grace`.
    pub fn new(clock: ArchiveClock, shards: &[ShardStart], grace: Duration) -> Ages {
        Ages {
            clock,
            shards: shards.iter().map(|s| (s.shard, *s)).collect(),
            grace,
            trusted_start: None,
        }
    }

    /// The archive clock now, after taking the word of the wall clock, which reads `wall_ns`,
    /// on the start once the grace has passed (once): the start as it reckons it now, or as it
    /// read then, whichever is earlier. A step back during the grace (NTP correcting a clock that
    /// booted ahead) shortens the time down; a step forward never lengthens it.
    pub fn now(&mut self, wall_ns: u64) -> u64 {
        let (anchor, started) = self.clock.anchor();
        let at = Instant::now();
        let since = at.saturating_duration_since(anchor);
        if self.trusted_start.is_none() && since >= self.grace {
            let since = u64::try_from(since.as_nanos()).unwrap_or(u64::MAX);
            self.trusted_start = Some(wall_ns.saturating_sub(since).min(started));
        }
        self.clock.at(at)
    }

    /// The age at `now` of segment `segment` of `shard`, whose newest frame was received at
    /// `newest`.
    fn age(&self, shard: usize, segment: u64, newest: u64, now: u64) -> u64 {
        let start = self.shards.get(&shard);
        let this_run = start.and_then(|s| s.began_in).is_some_and(|b| segment >= b);
        let Some(held) = start.and_then(|s| s.newest).filter(|_| !this_run) else {
            return now.saturating_sub(newest);
        };
        let (_, started) = self.clock.anchor();
        let down = self.trusted_start.map_or(0, |s| s.saturating_sub(held));
        (now.saturating_sub(started))
            .saturating_add(held.saturating_sub(newest))
            .saturating_add(down)
    }

    /// Rewrites each candidate's `newest` of `queues` (the queues of `shards`, in index order) as
    /// the time on the archive clock its age says, at `now`: at least as old as every segment
    /// after it in its shard. A segment without frames (newest 0) is as old as those after it,
    /// the oldest of all when none is.
    pub fn apply(&self, queues: &mut [VecDeque<Candidate>], shards: &[usize], now: u64) {
        for (queue, &shard) in queues.iter_mut().zip(shards) {
            let mut later: Option<u64> = None;
            for candidate in queue.iter_mut().rev() {
                let own = (candidate.newest != 0)
                    .then(|| self.age(shard, candidate.segment, candidate.newest, now));
                let age = own.max(later);
                later = age;
                candidate.newest = age.map_or(0, |age| now.saturating_sub(age));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: u64 = 1_000_000_000;
    const DAY: u64 = 86_400 * SECOND;

    /// A run of one shard that started at `start` (by the wall clock then), `since` ago, with
    /// the shard holding frames up to `held` and its writer beginning in segment `began_in`.
    struct Run {
        start: u64,
        since: Duration,
        held: Option<u64>,
        began_in: u64,
    }

    impl Run {
        /// The virtual received times of `segments` ((index, newest)) aged by this run, with
        /// `grace`, the wall clock reading `start + since` now; and the archive clock then.
        fn aged(&self, grace: Duration, segments: &[(u64, u64)]) -> (u64, Vec<u64>) {
            let wall = self.start + u64::try_from(self.since.as_nanos()).unwrap();
            self.aged_reading(grace, wall, segments)
        }

        /// [`Self::aged`] with the wall clock reading `wall` now.
        fn aged_reading(
            &self,
            grace: Duration,
            wall: u64,
            segments: &[(u64, u64)],
        ) -> (u64, Vec<u64>) {
            let clock = ArchiveClock::anchored(Instant::now() - self.since, self.start);
            let shard = ShardStart {
                shard: 0,
                newest: self.held,
                began_in: Some(self.began_in),
            };
            let mut ages = Ages::new(clock, &[shard], grace);
            let now = ages.now(wall);
            let candidate = |&(segment, newest)| Candidate {
                segment,
                bytes: 1,
                newest,
                protected: false,
            };
            let mut queues = [segments.iter().map(candidate).collect()];
            ages.apply(&mut queues, &[0], now);
            (now, queues[0].iter().map(|c| c.newest).collect())
        }
    }

    /// This run's segments are aged on the archive clock; one stamped ahead (an earlier
    /// build's) takes the age of the segments after it.
    #[test]
    fn this_runs_segments_age_on_the_archive_clock_and_none_holds_back_the_older() {
        let start = 1_000 * DAY;
        let since = Duration::from_secs(100);
        let run = Run {
            start,
            since,
            held: None,
            began_in: 1,
        };
        let year = 365 * DAY;
        let (_, aged) = run.aged(
            Duration::ZERO,
            &[
                (1, start + 10 * SECOND),
                (2, start + year),
                (3, start + 50 * SECOND),
            ],
        );
        let want = [
            start + 10 * SECOND,
            start + 50 * SECOND,
            start + 50 * SECOND,
        ];
        assert_eq!(aged, want);
    }

    /// An earlier run's segments: aged by their stamps up to the newest the shard held, plus the
    /// time since the start; the time between counts only after the grace, as the wall clock
    /// tells it then; a stamp ahead of that newest frame is no younger than it.
    #[test]
    fn an_earlier_runs_segments_count_the_time_down_only_after_the_grace() {
        let (held, down) = (1_000 * DAY, 40 * DAY);
        let run = Run {
            start: held + down,
            since: Duration::from_secs(10),
            held: Some(held),
            began_in: 9,
        };
        let segments = [(5, held - 2 * DAY), (6, held + DAY), (7, held)];
        // Within the grace: ages of 2 days + 10 s, 10 s and 10 s, as if the daemon had not been
        // down.
        let (now, during) = run.aged(Duration::from_secs(3600), &segments);
        let elapsed = now - run.start;
        let want = [now - 2 * DAY - elapsed, now - elapsed, now - elapsed];
        assert_eq!(during, want);
        // Past the grace the 40 days count too, as the wall clock tells them: it reads 10 s
        // after the start, so the segments are that much older than the 40 days.
        let (now, after) = run.aged(Duration::ZERO, &segments);
        let aged = |age: u64| now - age - down - 10 * SECOND;
        assert_eq!(after, [aged(2 * DAY), aged(0), aged(0)]);
    }

    /// The wall clock stepped forward during the grace: the time down is what the clock said at
    /// the start, not a year more.
    #[test]
    fn a_step_forward_during_the_grace_never_lengthens_the_time_down() {
        let (held, down) = (1_000 * DAY, 2 * DAY);
        let run = Run {
            start: held + down,
            since: Duration::from_secs(10),
            held: Some(held),
            began_in: 9,
        };
        let year = 365 * DAY;
        let (now, aged) = run.aged_reading(Duration::ZERO, run.start + year, &[(5, held)]);
        let elapsed = now - run.start;
        assert_eq!(aged, [now - elapsed - down]);
    }

    /// A start whose clock is behind the newest frame held (a step back while down): the earlier
    /// segments are as old as the time since the start, at least, and never younger than the
    /// segments this run wrote after them.
    #[test]
    fn a_clock_behind_the_archive_at_the_start_never_makes_older_segments_younger() {
        let held = 1_000 * DAY;
        let run = Run {
            start: held - DAY,
            since: Duration::from_secs(60),
            held: Some(held),
            began_in: 3,
        };
        let third = run.start + 5 * SECOND;
        let (now, aged) = run.aged(
            Duration::ZERO,
            &[(1, held - 10 * SECOND), (2, held), (3, third)],
        );
        let elapsed = now - run.start;
        let want = [now - elapsed - 10 * SECOND, third.min(now - elapsed), third];
        assert_eq!(aged, want);
    }

    /// A segment without frames is as old as those after it; the last one of a shard, the
    /// oldest of all (as before ages were kept).
    #[test]
    fn a_segment_without_frames_is_as_old_as_those_after_it() {
        let start = 1_000 * DAY;
        let run = Run {
            start,
            since: Duration::from_secs(100),
            held: None,
            began_in: 1,
        };
        let (_, aged) = run.aged(Duration::ZERO, &[(1, 0), (2, start + 20 * SECOND), (3, 0)]);
        assert_eq!(aged, [start + 20 * SECOND, start + 20 * SECOND, 0]);
    }
}
