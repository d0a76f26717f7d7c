//! The live counters of a run and their display.
//!
//! Sources add to shared atomics once per batch or acknowledgement; the display task only loads
//! them, so showing progress never slows a source. On a terminal the display is one line rewritten
//! in place; when standard output is a file or a pipe (CI logs, the demo script) it prints plain
//! lines instead, since carriage returns would turn a log into one unreadable line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use std::sync::Arc;
use tokio::sync::Notify;

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
    /// Sources with an open, welcomed connection.
    pub connected: AtomicU64,
    /// Sources that have ended, whatever the outcome.
    pub finished: AtomicU64,
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
            connected: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            done: AtomicBool::new(false),
            wake: Notify::new(),
        })
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        if n > 0 {
            counter.fetch_add(n, Relaxed);
        }
    }

    /// Stops the display after one last line.
    pub(crate) fn finish(&self) {
        self.done.store(true, Relaxed);
        self.wake.notify_one();
    }

    fn line(&self, per_second: f64) -> String {
        let sent = self.sent.load(Relaxed);
        let acked = self.acked.load(Relaxed);
        format!(
            "sim: sources {}/{} done, {} connected | sent {} acked {} in flight {} resent {} refused {} | {:.0} acked/s",
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

/// Shows the counters every interval until [`Progress::finish`].
pub(crate) async fn show(progress: Arc<Progress>) {
    if progress.style == ProgressStyle::Off {
        return;
    }
    let mut last = (Instant::now(), 0u64);
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
        let line = progress.line(per_second);
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
