//! Watching the wall clock: the daemon stamps frames on its archive clock, which a step of the
//! wall clock never moves (`crate::domain::clock`), so a step changes no stamp and deletes
//! nothing; but an operator must hear of it, since the stamps now disagree with every other clock
//! of the station. A task compares the two clocks four times a second. A step is logged at
//! `warn` with its size, counted (`clock_steps`), kept as the last step, and handed to every
//! shard's writer for a CLOCK record; while the clocks disagree by more than
//! `clock.step_threshold_ms` the clock is in doubt and `/healthz` says `degraded` with the reason.
//! At the start it compares the clock with the newest frame the archive held: a clock behind it
//! is in doubt too (new stamps fall among older ones) until the clock passes that frame, or for
//! `clock.start_grace_ms` at most.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::archive::ArchiveTime;
use crate::config::ClockConfig;
use crate::domain::clock::{self, ArchiveClock, ClockEvent, ClockEventKind, StepDetector};
use crate::domain::display::unix_ns_to_rfc3339;
use crate::stats::Stats;

/// How often the clocks are compared.
const CHECK_INTERVAL: Duration = Duration::from_millis(250);

/// The watcher's state.
struct ClockWatch {
    clock: ArchiveClock,
    threshold_ns: u64,
    detector: StepDetector,
    archive: ArchiveTime,
    stats: Stats,
    /// After a start with the clock behind the archive's newest frame: that frame's time, and
    /// the end of the grace.
    behind: Option<(u64, Instant)>,
    /// Whether the clock was in doubt at the last check, to log when that ends.
    doubted: bool,
}

/// Watches the wall clock until `stop`: the start's check against `archive`'s newest frame, then
/// a comparison every [`CHECK_INTERVAL`].
pub(crate) async fn watch(
    config: ClockConfig,
    archive: ArchiveTime,
    stats: Stats,
    stop: CancellationToken,
) {
    let clock = ArchiveClock::process();
    let offset = clock::signed_diff(clock.now(), clock::wall_now_ns());
    let mut watch = ClockWatch {
        clock,
        threshold_ns: u64::try_from(config.step_threshold.as_nanos()).unwrap_or(u64::MAX),
        detector: StepDetector::new(
            u64::try_from(config.step_threshold.as_nanos()).unwrap_or(u64::MAX),
            offset,
        ),
        archive,
        stats,
        behind: None,
        doubted: false,
    };
    watch.start(config.start_grace);
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
    fn start(&mut self, grace: Duration) {
        let Some(newest) = self.archive.newest_at_start else {
            return;
        };
        let now = self.clock.now();
        let jump = clock::signed_diff(newest, now);
        let newest_at = unix_ns_to_rfc3339(newest);
        if jump < 0 && jump.unsigned_abs() > self.threshold_ns {
            tracing::warn!(
                behind_s = clock::seconds(-jump),
                newest = %newest_at,
                "clock: the daemon started with its clock behind the newest frame the archive \
                 holds: new received times fall among older ones until the clock passes it; \
                 /healthz says degraded meanwhile (at most clock.start_grace_ms)"
            );
            let event = ClockEvent {
                kind: ClockEventKind::Start,
                archive_ns: now,
                wall_ns: clock::wall_now_ns(),
                jump_ns: jump,
            };
            self.stats.clock_step(&event);
            self.behind = Some((newest, Instant::now() + grace));
        } else if jump.unsigned_abs() > self.threshold_ns {
            tracing::info!(
                after_s = clock::seconds(jump),
                newest = %newest_at,
                grace_s = grace.as_secs(),
                "clock: the clock at the start is past the newest frame the archive holds \
                 (downtime, or a step while the daemon was down): archive.retention.max_age \
                 counts that time once clock.start_grace_ms has passed"
            );
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
        let (newest, until) = self.behind?;
        if now > newest || Instant::now() >= until {
            self.behind = None;
            return None;
        }
        Some(format!(
            "the daemon started with its clock behind the newest frame the archive held ({}): \
             new received times fall among older ones until the clock passes it",
            unix_ns_to_rfc3339(newest)
        ))
    }
}
