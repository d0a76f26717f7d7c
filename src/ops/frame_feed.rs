//! A lossy subscription to the processed frames for a program that embeds the daemon
//! ([`crate::Daemon::subscribe_frames`]): it may fall behind, is told how much it missed, warns
//! about it without flooding the log, and carries on.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::domain::batch::Batch;
use crate::domain::filter::FrameFilter;
use crate::pipeline::fan_out::{Bound, Delivery, Subscribe, Subscription};

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
        let subscription = subscribe.subscribe(FrameFilter::default(), bound);
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
            match self.subscription.next().await {
                Some(Delivery::Batch(batch)) => return Some(self.deliver(batch)),
                Some(Delivery::Gap(missed)) => self.lagged(missed),
                None => {
                    self.tell_lag(true);
                    return None;
                }
            }
        }
    }

    /// Hands out `batch`, first telling the frames missed since the last warning once that is a
    /// second ago.
    fn deliver(&mut self, batch: Arc<Batch>) -> Arc<Batch> {
        self.tell_lag(false);
        batch
    }

    fn lagged(&mut self, missed: u64) {
        self.missed += missed;
        self.tell_lag(false);
    }

    /// Warns of the frames missed since the last warning, if any, unless that warning was less
    /// than [`LAG_WARNING_EVERY`] ago (`at_once`: whenever it was). Called on every gap, on every
    /// batch handed out, and at the end, so that the last gaps are told too.
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

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use bytes::Bytes;

    use super::*;
    use crate::domain::frame::Priority;
    use crate::domain::source::Source;
    use crate::pipeline::fan_out::fan_out;
    use crate::stats::Stats;

    fn batch(sequence: u64) -> Arc<Batch> {
        let mut batch = Batch::new(Source::for_test(1), Priority::Routine, StdInstant::now(), 1);
        batch.push(sequence, 0..1);
        batch.attach(Bytes::from_static(b"x"));
        Arc::new(batch)
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_that_keeps_falling_behind_warns_once_a_second_with_the_sum() {
        let (fan_out, subscribe) = fan_out(&Stats::new(), 1);
        let mut feed = FrameFeed::new(&subscribe, 8, "feed");
        let publisher = fan_out.into_publishers().pop().expect("one lane");
        feed.lagged(5);
        assert_eq!(feed.missed, 0, "the first gap is told at once");
        feed.lagged(7);
        feed.lagged(3);
        assert_eq!(
            feed.missed, 10,
            "gaps within the second wait for the next warning"
        );
        publisher.publish(&batch(1));
        assert!(feed.next().await.is_some());
        assert_eq!(
            feed.missed, 10,
            "a batch within the second does not tell them"
        );
        tokio::time::advance(LAG_WARNING_EVERY).await;
        publisher.publish(&batch(2));
        assert!(feed.next().await.is_some());
        assert_eq!(
            feed.missed, 0,
            "the first batch a second later tells them, summed"
        );
        feed.lagged(2);
        assert_eq!(feed.missed, 2);
        drop(publisher);
        assert!(feed.next().await.is_none());
        assert_eq!(feed.missed, 0, "at the end, whenever the last warning was");
    }
}
