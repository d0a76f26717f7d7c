//! Watching the wall clock: the daemon stamps frames on its archive clock, which a step of the
//! wall clock never moves (`crate::domain::clock`), so a step changes no stamp and deletes
//! nothing; but an operator must hear of it, since the stamps now disagree with every other clock
//! of the station. A task compares the two clocks four times a second. A step is logged at
//! `warn` with its size, counted (`clock_steps`), kept as the last step, and handed to every
//! shard's writer for a CLOCK record; while the clocks disagree by more than
//! `clock.step_threshold_ms` (one step, or smaller changes that added up) the clock is in doubt
//! and `/healthz` says `degraded` with the reason.
//!
//! At the start it compares the clock with the newest frame the archive held. A clock behind it is
//! a step back (counted; new stamps fall among older ones): in doubt until the clock passes that
//! frame, for `clock.start_grace_ms` at most. A clock ahead of it by more than
//! `archive.retention.max_age` (a long downtime, or a step forward while down: the two cannot be
//! told apart) is in doubt for the grace: once it has passed, retention counts that time and
//! deletes what the earlier runs wrote, which an operator whose clock is wrong must stop first.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::archive::write::ArchiveTime;
use crate::config::ClockConfig;
use crate::domain::clock::{self, ArchiveClock, ClockEvent, ClockEventKind, StepDetector};
use crate::domain::display::unix_ns_to_rfc3339;
use crate::stats::Stats;

/// How often the clocks are compared.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// What the start found, while it keeps the clock in doubt.
#[derive(Debug, Clone, Copy)]
enum AtStart {
    /// The clock was behind the newest frame held (its received time): in doubt until the
    /// archive clock passes it.
    Behind { newest: u64 },
    /// The clock was ahead of it by this much, more than `max_age`: retention deletes by it
    /// once the grace has passed.
    Ahead { jump_ns: i64 },
}

/// The watcher's state.
struct ClockWatch {
    clock: ArchiveClock,
    threshold_ns: u64,
    detector: StepDetector,
    archive: ArchiveTime,
    stats: Stats,
    /// The start's doubt, and when the grace ends.
    at_start: Option<(AtStart, Instant)>,
    /// Whether the clock was in doubt at the last check, to log when that ends.
    doubted: bool,
}

/// Watches the wall clock until `stop`: the start's check against `archive`'s newest frame (with
/// retention's `max_age`), then a comparison every [`CHECK_INTERVAL`].
pub(crate) async fn watch(
    config: ClockConfig,
    max_age: Option<Duration>,
    archive: ArchiveTime,
    stats: Stats,
    stop: CancellationToken,
) {
    let threshold_ns = u64::try_from(config.step_threshold.as_nanos()).unwrap_or(u64::MAX);
    let mut watch = ClockWatch {
        clock: ArchiveClock::process(),
        threshold_ns,
        // The archive clock is the wall clock as it read at the start: no offset then.
        detector: StepDetector::new(threshold_ns, 0),
        archive,
        stats,
        at_start: None,
        doubted: false,
    };
    watch.start(config.start_grace, max_age);
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = ticks.tick() => watch.check(),
        }
    }
}

impl ClockWatch {
    /// Compares the clock at the start with the newest frame the archive held.
    fn start(&mut self, grace: Duration, max_age: Option<Duration>) {
        let Some(newest) = self.archive.newest_at_start else {
            return;
        };
        let started = self.clock.now();
        let jump = clock::signed_diff(newest, started);
        let until = Instant::now() + grace;
        let newest_at = unix_ns_to_rfc3339(newest);
        if jump < 0 {
            tracing::warn!(
                behind_s = clock::seconds(-jump),
                newest = %newest_at,
                "clock: the daemon started with its clock behind the newest frame the archive \
                 holds: new received times fall among older ones until the clock passes it"
            );
            let event = ClockEvent {
                kind: ClockEventKind::Start,
                archive_ns: started,
                wall_ns: clock::wall_now_ns(),
                jump_ns: jump,
            };
            self.stats.clock_step(&event);
            if jump.unsigned_abs() > self.threshold_ns {
                self.at_start = Some((AtStart::Behind { newest }, until));
            }
        } else if max_age.is_some_and(|age| jump.unsigned_abs() > nanos(age)) {
            tracing::warn!(
                after_s = clock::seconds(jump),
                newest = %newest_at,
                grace_s = grace.as_secs(),
                "clock: the clock at the start is past the newest frame the archive holds by \
                 more than archive.retention.max_age (downtime, or a step while the daemon was \
                 down): once clock.start_grace_ms has passed, retention deletes by it what the \
                 earlier runs wrote"
            );
            self.at_start = Some((AtStart::Ahead { jump_ns: jump }, until));
        }
        self.check();
    }

    /// One comparison: a step is told, the doubt published.
    fn check(&mut self) {
        let now = self.clock.now();
        if let Some(step) = self.detector.observe(now, clock::wall_now_ns()) {
            tracing::warn!(
                step_s = clock::seconds(step.jump_ns),
                wall = %unix_ns_to_rfc3339(step.wall_ns),
                archive = %unix_ns_to_rfc3339(step.archive_ns),
                "clock: the wall clock stepped; received times follow the archive clock and \
                 did not move (a restart takes the wall clock)"
            );
            self.stats.clock_step(&step);
            self.archive.steps.push(step);
        }
        let doubt = self.doubt(now);
        match (&doubt, self.doubted) {
            (Some(why), false) => tracing::warn!("clock in doubt: {why}; /healthz says degraded"),
            (None, true) => tracing::info!("clock: no longer in doubt"),
            _ => {}
        }
        self.doubted = doubt.is_some();
        self.stats.clock_reading(self.detector.offset(), doubt);
    }

    /// Why the clock is in doubt at `now` (archive clock), if it is.
    fn doubt(&mut self, now: u64) -> Option<String> {
        let offset = self.detector.offset();
        if offset.unsigned_abs() > self.threshold_ns {
            return Some(format!(
                "the wall clock is {:+.3} s from the archive clock: received times follow the \
                 clock as the daemon read it at its start; correct the clock, or restart the \
                 daemon to take the wall clock as it is",
                clock::seconds(offset)
            ));
        }
        let (at_start, until) = self.at_start?;
        let over = match at_start {
            AtStart::Behind { newest } => now > newest,
            AtStart::Ahead { .. } => false,
        };
        if over || Instant::now() >= until {
            self.at_start = None;
            return None;
        }
        Some(match at_start {
            AtStart::Behind { newest } => format!(
                "the daemon started with its clock behind the newest frame the archive held \
                 ({}): new received times fall among older ones until the clock passes it",
                unix_ns_to_rfc3339(newest)
            ),
            AtStart::Ahead { jump_ns } => format!(
                "the daemon started with its clock {:.0} s past the newest frame the archive \
                 held, more than archive.retention.max_age: when clock.start_grace_ms has \
                 passed, retention deletes by it what the earlier runs wrote; if the clock is \
                 wrong, stop the daemon and correct it",
                clock::seconds(jump_ns)
            ),
        })
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
