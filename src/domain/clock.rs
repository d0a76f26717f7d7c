//! Time as the archive keeps it: a received time that a step of the wall clock never moves, and
//! the steps themselves, noticed and told.
//!
//! Why not the wall clock: NTP stepping a clock after boot, a GPS receiver after a week-number
//! rollover, an operator's `date -s` move it by seconds to years at once, and what the archive
//! stamps with it is then dated in the wrong year, found by the wrong window, and aged by
//! retention as if that year had passed (Kafka's time retention and Prometheus' block ages were
//! hurt the same ways). The monotonic clock never steps, but it says nothing about the calendar.
//! So a daemon reads the wall clock once, at its start, and from then on counts forward on the
//! monotonic clock ([`ArchiveClock`]): within a run, received times are what really elapsed, in
//! order, whatever the wall clock does. What that costs: a wall clock that was wrong at the start
//! stays wrong in the stamps until the next start, which is why a step is told at once
//! ([`StepDetector`]: a log line, the counters, `/healthz`, and a CLOCK record in every shard's
//! segment stream, [`ClockEvent`]) and why `deploy/aggregator.service` starts after time sync.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

/// The wall clock read once and advanced by the monotonic clock: what a daemon stamps frames
/// with. `Copy`, cheap to read: an `Instant` and an addition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveClock {
    anchor: Instant,
    /// The wall clock at `anchor`, nanoseconds since the Unix epoch.
    anchor_ns: u64,
}

impl ArchiveClock {
    /// The process's clock, anchored the first time it is asked for (the daemon's binary asks
    /// first thing; a daemon in a test process, when it opens its archive): every stage that
    /// stamps or ages a frame reads this one, so a frame's received time is the same number in
    /// the archive, the feed and every reader. One per process, as the monotonic clock's origin
    /// is: the clock it stands for is the process's.
    pub fn process() -> ArchiveClock {
        static PROCESS: OnceLock<ArchiveClock> = OnceLock::new();
        *PROCESS.get_or_init(|| ArchiveClock::anchored(Instant::now(), wall_now_ns()))
    }

    /// A clock that reads `anchor_ns` at `anchor`.
    pub fn anchored(anchor: Instant, anchor_ns: u64) -> ArchiveClock {
        ArchiveClock { anchor, anchor_ns }
    }

    /// The time `at`, in nanoseconds since the Unix epoch.
    pub fn at(&self, at: Instant) -> u64 {
        match at.checked_duration_since(self.anchor) {
            Some(after) => self.anchor_ns.saturating_add(nanos(after)),
            None => (self.anchor_ns).saturating_sub(nanos(self.anchor.duration_since(at))),
        }
    }

    /// The time now, in nanoseconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        self.at(Instant::now())
    }

    /// When the clock was anchored: the monotonic instant and the wall clock then.
    pub fn anchor(&self) -> (Instant, u64) {
        (self.anchor, self.anchor_ns)
    }
}

/// The wall clock now, in nanoseconds since the Unix epoch (0 before it).
pub(crate) fn wall_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, nanos)
}

fn nanos(duration: std::time::Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// `b - a` in nanoseconds, signed.
pub(crate) fn signed_diff(a: u64, b: u64) -> i64 {
    let diff = i128::from(b) - i128::from(a);
    diff.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

/// What a CLOCK record says happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClockEventKind {
    /// A daemon started: its archive clock begins at the wall clock, and its received times jump
    /// from the newest the shard held by `jump_ns` (the time it was down, or a step: the two
    /// cannot be told apart).
    Start,
    /// The wall clock moved by `jump_ns` against the monotonic clock while the daemon ran.
    /// Received times did not move.
    Step,
}

impl ClockEventKind {
    /// Its byte in a CLOCK record.
    pub fn to_byte(self) -> u8 {
        match self {
            ClockEventKind::Start => 0,
            ClockEventKind::Step => 1,
        }
    }

    pub fn from_byte(byte: u8) -> Option<ClockEventKind> {
        match byte {
            0 => Some(ClockEventKind::Start),
            1 => Some(ClockEventKind::Step),
            _ => None,
        }
    }

    /// `start` or `step`, as the tools and the HTTP API print it.
    pub fn label(self) -> &'static str {
        match self {
            ClockEventKind::Start => "start",
            ClockEventKind::Step => "step",
        }
    }
}

/// A start or a step of the wall clock, as the archive records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockEvent {
    pub kind: ClockEventKind,
    /// The archive clock at the event: at a start, received times of the run are at least
    /// this; at a step, when the daemon noticed it (a batch read before may be written after).
    pub archive_ns: u64,
    /// The wall clock read at the event.
    pub wall_ns: u64,
    /// How far it jumped, in nanoseconds (negative: back).
    pub jump_ns: i64,
}

impl ClockEvent {
    /// A step of the wall clock, or a start whose received times jump back (its clock stood
    /// behind the newest frame the shard held): what a reader of a time window should hear of.
    /// A start that jumps forward is what every restart after downtime does.
    pub fn tells_of_a_step(&self) -> bool {
        self.kind == ClockEventKind::Step || self.jump_ns < 0
    }
}

impl std::fmt::Display for ClockEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = super::display::unix_ns_to_rfc3339(self.archive_ns);
        let jump = seconds(self.jump_ns);
        match self.kind {
            ClockEventKind::Start if self.jump_ns == 0 => write!(f, "start at {at}"),
            ClockEventKind::Start => write!(
                f,
                "start at {at}: received times jump {jump:+.3} s from the newest before it \
                 (downtime, or a step of the clock)"
            ),
            ClockEventKind::Step => write!(
                f,
                "the wall clock stepped {jump:+.3} s at {at} (wall clock {}); received times \
                 did not move",
                super::display::unix_ns_to_rfc3339(self.wall_ns)
            ),
        }
    }
}

/// Nanoseconds as seconds.
pub fn seconds(ns: i64) -> f64 {
    ns as f64 / 1e9
}

/// Tells a step of the wall clock from its steady advance: the offset of the wall clock from the
/// archive clock changes only when one of them steps (NTP slews both alike), so a change beyond
/// a threshold between two readings is a step.
#[derive(Debug, Clone)]
pub(crate) struct StepDetector {
    threshold_ns: u64,
    /// The wall clock minus the archive clock at the last reading.
    offset_ns: i64,
}

impl StepDetector {
    /// A detector of changes beyond `threshold_ns`, the clocks `offset_ns` apart now.
    pub fn new(threshold_ns: u64, offset_ns: i64) -> StepDetector {
        StepDetector {
            threshold_ns,
            offset_ns,
        }
    }

    /// A reading of both clocks: the step since the last reading, if there was one. Changes
    /// within the threshold move the offset without a step, so slow drift never adds up to one.
    pub fn observe(&mut self, archive_ns: u64, wall_ns: u64) -> Option<ClockEvent> {
        let offset = signed_diff(archive_ns, wall_ns);
        let jump = offset.saturating_sub(self.offset_ns);
        self.offset_ns = offset;
        (jump.unsigned_abs() > self.threshold_ns).then_some(ClockEvent {
            kind: ClockEventKind::Step,
            archive_ns,
            wall_ns,
            jump_ns: jump,
        })
    }

    /// The wall clock minus the archive clock at the last reading, in nanoseconds.
    pub fn offset(&self) -> i64 {
        self.offset_ns
    }
}

/// The steps a daemon noticed, for every shard's writer to record in its segment stream at its
/// next write. Numbered from 1; a writer remembers the last number it wrote.
#[derive(Debug, Default)]
pub struct ClockSteps {
    newest: AtomicU64,
    steps: Mutex<VecDeque<(u64, ClockEvent)>>,
}

/// How many steps are kept for writers that have not written them yet: a clock that flaps faster
/// than a shard writes loses the oldest records, never the counters.
const KEPT_STEPS: usize = 64;

impl ClockSteps {
    /// Adds a step.
    pub fn push(&self, event: ClockEvent) {
        let mut steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
        let number = self.newest.load(Ordering::Relaxed) + 1;
        steps.push_back((number, event));
        if steps.len() > KEPT_STEPS {
            steps.pop_front();
        }
        self.newest.store(number, Ordering::Release);
    }

    /// The number of the newest step; 0 before the first. One atomic load.
    pub fn newest(&self) -> u64 {
        self.newest.load(Ordering::Acquire)
    }

    /// The steps after number `after`, oldest first, with the newest's number.
    pub fn after(&self, after: u64) -> (Vec<ClockEvent>, u64) {
        let steps = self.steps.lock().unwrap_or_else(PoisonError::into_inner);
        let newer = steps.iter().filter(|(n, _)| *n > after);
        let events = newer.map(|(_, event)| *event).collect();
        (events, steps.back().map_or(after, |(n, _)| *n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const SECOND: u64 = 1_000_000_000;

    #[test]
    fn the_archive_clock_counts_on_the_monotonic_clock_from_its_anchor() {
        let anchor = Instant::now();
        let clock = ArchiveClock::anchored(anchor, 1_000 * SECOND);
        assert_eq!(clock.at(anchor), 1_000 * SECOND);
        assert_eq!(
            clock.at(anchor + Duration::from_millis(1500)),
            1_001_500_000_000
        );
        if let Some(before) = anchor.checked_sub(Duration::from_secs(2)) {
            assert_eq!(clock.at(before), 998 * SECOND);
        }
    }

    #[test]
    fn a_change_of_offset_past_the_threshold_is_a_step_of_its_size_and_sign() {
        let mut detector = StepDetector::new(SECOND, 0);
        // Drift within the threshold: no step, and it does not add up.
        assert_eq!(
            detector.observe(100 * SECOND, 100 * SECOND + SECOND / 2),
            None
        );
        assert_eq!(detector.observe(101 * SECOND, 101 * SECOND + SECOND), None);
        // The wall clock goes a year ahead.
        let year = 365 * 86_400 * SECOND;
        let step = detector.observe(102 * SECOND, 102 * SECOND + SECOND + year);
        let step = step.expect("a step");
        assert_eq!(step.kind, ClockEventKind::Step);
        assert_eq!(step.jump_ns, year as i64);
        assert_eq!(detector.offset(), (year + SECOND) as i64);
        // And back: a step of the other sign.
        let back = detector
            .observe(103 * SECOND, 103 * SECOND)
            .expect("a step back");
        assert_eq!(back.jump_ns, -((year + SECOND) as i64));
    }

    #[test]
    fn writers_take_the_steps_after_the_last_they_wrote() {
        let steps = ClockSteps::default();
        assert_eq!(steps.newest(), 0);
        assert_eq!(steps.after(0), (Vec::new(), 0));
        let event = |jump_ns| ClockEvent {
            kind: ClockEventKind::Step,
            archive_ns: 1,
            wall_ns: 2,
            jump_ns,
        };
        steps.push(event(5));
        steps.push(event(-7));
        assert_eq!(steps.newest(), 2);
        assert_eq!(steps.after(0), (vec![event(5), event(-7)], 2));
        assert_eq!(steps.after(1), (vec![event(-7)], 2));
        assert_eq!(steps.after(2), (Vec::new(), 2));
    }
}
