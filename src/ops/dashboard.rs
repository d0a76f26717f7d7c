//! The monitoring dashboard: a consumer that may fall behind but never stalls anything.
//!
//! It follows the processed frames through the lossy fan-out, where a slow reader is told how
//! much it missed instead of holding up the processor, and logs a one-line stats snapshot each time
//! the stats publisher sends a new one. [`FrameFeed`] is the lag-tolerant subscription it uses;
//! any other lossy consumer gets one from [`crate::Daemon::subscribe_frames`].

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::ops::stats::{processing_rates, PipelineStats};
use crate::pipeline::batch::Batch;
use crate::pipeline::fan_out::{Bound, Delivery, Filter, Finished, Subscribe, Subscription};

/// A subscription to processed batches that survives falling behind.
#[derive(Debug)]
pub struct FrameFeed {
    subscription: Subscription,
    name: &'static str,
    /// Frames missed since the last warning, and when that was: a feed that keeps falling
    /// behind (a gap from every shard's lane, each time) warns once per [`LAG_WARNING_EVERY`].
    missed: u64,
    warned: Option<Instant>,
}

/// The least time between two warnings of one feed that it fell behind.
const LAG_WARNING_EVERY: Duration = Duration::from_secs(1);

impl FrameFeed {
    /// Every batch, with room for `capacity` batches queued, shared out among the shards' lanes.
    pub(crate) fn new(subscribe: &Subscribe, capacity: usize, name: &'static str) -> Self {
        let bound = Bound {
            batches: capacity,
            bytes: usize::MAX,
        };
        let subscription = subscribe.subscribe(Filter::default(), bound);
        FrameFeed {
            subscription,
            name,
            missed: 0,
            warned: None,
        }
    }

    /// The next batch still queued, or `None` once the processor has finished. When the feed fell
    /// behind, the skipped frames are logged, and it carries on.
    pub async fn next(&mut self) -> Option<Arc<Batch>> {
        loop {
            match self.subscription.next().await? {
                Delivery::Batch(batch) => return Some(batch),
                Delivery::Gap(missed) => self.lagged(missed),
            }
        }
    }

    /// The next batch if one is queued right now; `Err(Finished)` once the processor has finished.
    pub fn try_next(&mut self) -> Result<Option<Arc<Batch>>, Finished> {
        loop {
            match self.subscription.try_next()? {
                Some(Delivery::Batch(batch)) => return Ok(Some(batch)),
                Some(Delivery::Gap(missed)) => self.lagged(missed),
                None => return Ok(None),
            }
        }
    }

    fn lagged(&mut self, missed: u64) {
        self.missed += missed;
        self.tell_lag(false);
    }

    /// Warns of the frames missed since the last warning, if any, unless that warning was less
    /// than [`LAG_WARNING_EVERY`] ago (`at_once`: whenever it was). Called on every gap, and by
    /// the dashboard on every stats tick and at the end, so that the last gaps are told too.
    fn tell_lag(&mut self, at_once: bool) {
        if self.missed == 0 {
            return;
        }
        let now = Instant::now();
        if !at_once
            && self
                .warned
                .is_some_and(|at| now.duration_since(at) < LAG_WARNING_EVERY)
        {
            return;
        }
        let missed_frames = std::mem::take(&mut self.missed);
        tracing::warn!(
            consumer = self.name,
            missed_frames,
            "fell behind the fan-out; skipped what did not fit its queue"
        );
        self.warned = Some(now);
    }
}

/// Follows the fan-out and logs each published stats snapshot until the pipeline has drained.
///
/// Everything already waiting in the fan-out is taken in one go before the next `select!`, so a
/// burst of batches costs one wake-up rather than one per batch.
pub async fn run(mut feed: FrameFeed, mut published: watch::Receiver<PipelineStats>) {
    let mut frames_seen = 0u64;
    let mut last_line = (Instant::now(), PipelineStats::default());
    loop {
        tokio::select! {
            batch = feed.next() => {
                let Some(batch) = batch else { break };
                frames_seen += batch.len() as u64;
                loop {
                    match feed.try_next() {
                        Ok(Some(batch)) => frames_seen += batch.len() as u64,
                        Ok(None) => break,
                        Err(Finished) => {
                            feed.tell_lag(true);
                            tracing::debug!(frames_seen, "dashboard: fan-out closed");
                            return;
                        }
                    }
                }
            }
            Ok(()) = published.changed() => {
                feed.tell_lag(false);
                let now = (Instant::now(), *published.borrow_and_update());
                let seconds = now.0.duration_since(last_line.0).as_secs_f64();
                let rates = processing_rates(&last_line.1, &now.1, seconds).unwrap_or_default();
                log_line(&now.1, frames_seen, rates);
                last_line = now;
            }
        }
    }
    feed.tell_lag(true);
    tracing::debug!(frames_seen, "dashboard: fan-out closed");
}

/// The stats line: totals, then the processing rates since the last line.
fn log_line(s: &PipelineStats, frames_seen: u64, (frames_per_sec, bytes_per_sec): (f64, f64)) {
    tracing::info!(
        target: "aggregator::ops::dashboard",
        "stats: accepted={} processed={} emergency={} archived={} in_flight={} bytes={} sources={} dup={} refused={} errors={} lag_events={} dashboard_seen={} archive={} unsynced_bytes={} frames_per_sec={:.0} mb_per_sec={:.1}",
        s.frames_accepted,
        s.frames_processed,
        s.emergency_frames,
        s.frames_archived,
        s.in_flight(),
        s.bytes_processed,
        s.active_sources,
        s.duplicates_dropped,
        s.connections_refused,
        s.protocol_errors,
        s.lag_events,
        frames_seen,
        if s.archive_failing == 0 { "ok" } else { "FAILING" },
        s.archive_unsynced_bytes,
        frames_per_sec,
        bytes_per_sec / 1e6,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::stats::Stats;
    use crate::pipeline::fan_out::fan_out;

    #[tokio::test(start_paused = true)]
    async fn a_feed_that_keeps_falling_behind_warns_once_a_second_with_the_sum() {
        let (_fan_out, subscribe) = fan_out(&Stats::new(), 4);
        let mut feed = FrameFeed::new(&subscribe, 8, "dashboard");
        feed.lagged(5);
        assert_eq!(feed.missed, 0, "the first gap is told at once");
        feed.lagged(7);
        feed.lagged(3);
        assert_eq!(
            feed.missed, 10,
            "gaps within the second wait for the next warning"
        );
        tokio::time::advance(LAG_WARNING_EVERY).await;
        feed.tell_lag(false);
        assert_eq!(feed.missed, 0, "a second later they are told, summed");
        feed.lagged(2);
        assert_eq!(feed.missed, 2);
        feed.tell_lag(true);
        assert_eq!(feed.missed, 0, "at the end, whenever the last warning was");
    }
}
