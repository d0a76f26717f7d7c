//! The live counters of a run and their display.
//!
//! Sources add to shared atomics once per batch or acknowledgement; the display task only loads
//! them, so showing progress never slows a source. On a terminal the display is one line rewritten
//! in place; when standard output is a file or a pipe (CI logs, the demo script) it prints plain
//! lines instead, since carriage returns would turn a log into one unreadable line.
//!
//! The line starts with the time elapsed and, where the plan says when the run ends, how far it
//! is: the share of the generation time past, or of the frames acknowledged.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use std::sync::Arc;
use tokio::sync::Notify;

use super::{Amount, SourceSpec};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressStyle {
    /// Nothing while running.
    Off,
    /// One line, rewritten in place (standard output is a terminal).
    Terminal,
    /// A plain line per interval (standard output is a file or a pipe).
    Lines,
}

/// Where a run ends, as far as the plan says.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Goal {
    /// Every source generates for at most this long.
    Duration(Duration),
    /// The sources generate this many frames in all, each done once acknowledged.
    Frames(u64),
}

impl Goal {
    /// The goal of sources that all end the same way; `None` for a mix (or no source).
    pub(crate) fn of(sources: &[SourceSpec]) -> Option<Goal> {
        let mut goal = None;
        for spec in sources {
            goal = match (goal, spec.amount) {
                (None, Amount::Duration(d)) => Some(Goal::Duration(d)),
                (None, Amount::Frames(n)) => Some(Goal::Frames(n)),
                (Some(Goal::Duration(a)), Amount::Duration(b)) => Some(Goal::Duration(a.max(b))),
                (Some(Goal::Frames(a)), Amount::Frames(b)) => {
                    Some(Goal::Frames(a.saturating_add(b)))
                }
                _ => return None,
            };
        }
        goal
    }

    /// The share done, 0.0 to 1.0.
    fn done(self, elapsed: Duration, acked: u64) -> f64 {
        let share = match self {
            Goal::Duration(d) => elapsed.as_secs_f64() / d.as_secs_f64(),
            Goal::Frames(n) => acked as f64 / n as f64,
        };
        // An empty goal is reached at once (and 0/0 is NaN, which `min` turns into 1.0).
        share.min(1.0)
    }
}

/// The counters every source adds to.
#[derive(Debug)]
pub struct Progress {
    style: ProgressStyle,
    interval: Duration,
    sources: u64,
    /// Frames written for the first time.
    pub sent: AtomicU64,
    /// Frames covered by an acknowledgement.
    pub acked: AtomicU64,
    /// Frames written again after a reconnection.
    pub resent: AtomicU64,
    /// REFUSED answers received.
    pub refused: AtomicU64,
    /// Moves of a source to another daemon of its list.
    pub failovers: AtomicU64,
    /// Sources with an open, welcomed connection.
    pub connected: AtomicU64,
    /// Sources that have ended, whatever the outcome.
    pub finished: AtomicU64,
    /// When the run started: the clock of `last_ack_ns`.
    started: Instant,
    /// When the last acknowledgement of any source arrived, in nanoseconds since `started`.
    last_ack_ns: AtomicU64,
    /// The longest time between two acknowledgements (of any sources) in a row.
    longest_ack_gap_ns: AtomicU64,
    done: AtomicBool,
    wake: Notify,
}

impl Progress {
    pub fn new(style: ProgressStyle, interval: Duration, sources: usize) -> Arc<Self> {
        Arc::new(Progress {
            style,
            interval,
            sources: sources as u64,
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            resent: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            failovers: AtomicU64::new(0),
            connected: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            started: Instant::now(),
            last_ack_ns: AtomicU64::new(0),
            longest_ack_gap_ns: AtomicU64::new(0),
            done: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    /// An acknowledgement arrived at `now`: the gap since the one before it, of whatever source,
    /// may be the run's longest. Under load that gap is how long the daemon acknowledged nothing
    /// at all: a stalled archive (a full disk) shows there.
    pub(crate) fn acknowledged_at(&self, now: Instant) {
        let at = now.saturating_duration_since(self.started).as_nanos() as u64;
        let before = self.last_ack_ns.fetch_max(at, Relaxed);
        if before > 0 && at > before {
            self.longest_ack_gap_ns.fetch_max(at - before, Relaxed);
        }
    }

    /// The longest time between two acknowledgements in a row so far.
    pub fn longest_ack_gap(&self) -> Duration {
        Duration::from_nanos(self.longest_ack_gap_ns.load(Relaxed))
    }

    /// Stops the display after one last line.
    pub(crate) fn finish(&self) {
        self.done.store(true, Relaxed);
        self.wake.notify_one();
    }

    fn line(&self, goal: Option<Goal>, elapsed: Duration, per_second: f64) -> String {
        let sent = self.sent.load(Relaxed);
        let acked = self.acked.load(Relaxed);
        let done = goal.map_or(String::new(), |goal| {
            format!(" {:.0}%", (goal.done(elapsed, acked) * 100.0).floor())
        });
        // Shown once there is one: a run with one daemon keeps its line as it was.
        let failovers = match self.failovers.load(Relaxed) {
            0 => String::new(),
            n => format!(" failovers {n}"),
        };
        format!(
            "sim: {:.1} s{done} | sources {}/{} done, {} connected | sent {} acked {} in flight {} resent {} refused {}{failovers} | {:.0} acked/s",
            elapsed.as_secs_f64(),
            self.finished.load(Relaxed),
            self.sources,
            self.connected.load(Relaxed),
            sent,
            acked,
            sent.saturating_sub(acked),
            self.resent.load(Relaxed),
            self.refused.load(Relaxed),
            per_second,
        )
    }
}

/// Shows the counters, and how far the run is from `goal`, every interval until
/// [`Progress::finish`].
pub(crate) async fn show(progress: Arc<Progress>, goal: Option<Goal>) {
    if progress.style == ProgressStyle::Off {
        return;
    }
    let started = Instant::now();
    let mut last = (started, 0u64);
    loop {
        let done = tokio::select! {
            _ = tokio::time::sleep(progress.interval) => false,
            _ = progress.wake.notified() => true,
        } || progress.done.load(Relaxed);
        let now = Instant::now();
        let acked = progress.acked.load(Relaxed);
        let elapsed = now.duration_since(last.0).as_secs_f64();
        let per_second = if elapsed > 0.0 {
            acked.saturating_sub(last.1) as f64 / elapsed
        } else {
            0.0
        };
        last = (now, acked);
        let line = progress.line(goal, now.duration_since(started), per_second);
        let mut out = std::io::stdout().lock();
        // A closed standard output must not stop the run; the summary will fail loudly instead.
        let _ = match progress.style {
            ProgressStyle::Terminal if done => writeln!(out, "\r\x1b[2K{line}"),
            ProgressStyle::Terminal => write!(out, "\r\x1b[2K{line}"),
            _ => writeln!(out, "{line}"),
        };
        let _ = out.flush();
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::frame::SourceKind;
    use crate::sim::Scenario;

    fn goal(scenario: Scenario) -> Option<Goal> {
        let (uplinks, replays) = scenario.profiles();
        let mut specs = uplinks.sources(SourceKind::LiveUplink, 1);
        specs.extend(replays.sources(SourceKind::ArchivedReplay, 1));
        Goal::of(&specs)
    }

    fn progress() -> Arc<Progress> {
        Progress::new(ProgressStyle::Off, Duration::from_secs(1), 5)
    }

    #[test]
    fn the_line_shows_the_time_elapsed_and_the_share_of_the_duration() {
        let (progress, goal) = (progress(), goal(Scenario::Default));
        let line = progress.line(goal, Duration::from_millis(1500), 0.0);
        assert!(line.starts_with("sim: 1.5 s 50% | "), "{line}");
        let line = progress.line(goal, Duration::from_secs(4), 0.0);
        assert!(line.starts_with("sim: 4.0 s 100% | "), "{line}");
    }

    #[test]
    fn the_line_shows_the_share_of_the_frames_acknowledged() {
        // The brief: 4 uplinks x 10 frames and 1 replay x 5.
        let (progress, goal) = (progress(), goal(Scenario::Brief));
        assert_eq!(goal, Some(Goal::Frames(45)));
        Progress::add(&progress.acked, 9);
        let line = progress.line(goal, Duration::from_millis(200), 0.0);
        assert!(line.starts_with("sim: 0.2 s 20% | "), "{line}");
    }

    #[test]
    fn the_line_shows_failovers_once_there_is_one() {
        let progress = progress();
        let line = progress.line(None, Duration::from_millis(100), 0.0);
        assert!(line.contains(" refused 0 | "), "{line}");
        Progress::add(&progress.failovers, 2);
        let line = progress.line(None, Duration::from_millis(100), 0.0);
        assert!(line.contains(" refused 0 failovers 2 | "), "{line}");
    }

    #[test]
    fn sources_that_end_differently_show_no_share() {
        let (uplinks, _) = Scenario::Brief.profiles();
        let mut specs = uplinks.sources(SourceKind::LiveUplink, 1);
        specs[0].amount = Amount::Duration(Duration::from_secs(1));
        assert_eq!(Goal::of(&specs), None);
        let line = progress().line(None, Duration::from_millis(500), 0.0);
        assert!(line.starts_with("sim: 0.5 s | "), "{line}");
    }
}
