//! How far the NATS sink is, told to the stats beside it: connected or not, the lag behind the
//! archive (in time and in frames), degraded or not, and with `ack = "replicated"` the gate's pace
//! and what waits for JetStream. Apart from the publisher, which only sets a few counters, so that
//! a publisher stuck on a PubAck still reports.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use async_nats::Client;
use tokio::time::Instant;

use crate::domain::clock::ArchiveClock;
use crate::domain::replication::Replication;
use crate::stats::Stats;

/// How often the connection and the lag are reported to the stats.
const REPORT_INTERVAL: Duration = Duration::from_millis(100);

/// What the publisher tells the reporter, which runs beside it.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// When the oldest frame not yet acknowledged was received (ns since the epoch); 0 when
    /// everything durable is acknowledged.
    pub(super) oldest_unacked_ns: AtomicU64,
    /// Acknowledged frames that were archived after the sink started, and frames it skipped
    /// (retention deleted them first): what it is done with, counted against what was archived.
    pub(super) acked_new: AtomicU64,
    /// Retention deleted frames before the sink published them, and it has not caught up since:
    /// degraded meanwhile.
    pub(super) skipped: AtomicBool,
}

impl Progress {
    /// Tells the reporter when the oldest frame not yet acknowledged was received (`oldest`,
    /// the first of each priority in flight or read); none, with everything durable read
    /// (`at_end`): everything is acknowledged.
    pub(super) fn note_oldest(&self, oldest: Option<u64>, at_end: bool) {
        match oldest {
            Some(ns) => self.oldest_unacked_ns.store(ns, Relaxed),
            None if at_end => self.oldest_unacked_ns.store(0, Relaxed),
            None => {}
        }
    }
}

/// Reports the connection, the lag and health to the stats every [`REPORT_INTERVAL`].
/// With `replication`, also how many frames wait for JetStream to be acknowledged.
pub(super) async fn report(
    client: Client,
    stats: Stats,
    progress: Arc<Progress>,
    max_lag: Duration,
    replication: Option<Arc<Replication>>,
) {
    let archived_at_start = stats.snapshot().frames_archived;
    let mut ticker = tokio::time::interval(REPORT_INTERVAL);
    let mut last = Instant::now();
    loop {
        ticker.tick().await;
        if let Some(replication) = &replication {
            replication.pace(last.elapsed());
            last = Instant::now();
        }
        let connected = client.connection_state() == State::Connected;
        let lag = match progress.oldest_unacked_ns.load(Relaxed) {
            0 => Duration::ZERO,
            oldest => Duration::from_nanos(unix_now_ns().saturating_sub(oldest)),
        };
        let archived = stats.snapshot().frames_archived - archived_at_start;
        let lag_frames = archived.saturating_sub(progress.acked_new.load(Relaxed));
        let degraded = !connected || lag > max_lag || progress.skipped.load(Relaxed);
        stats.nats_state(connected, degraded, lag_frames, lag);
        if let Some(replication) = &replication {
            stats.nats_unreplicated(replication.waiting());
        }
    }
}

/// Now on the archive clock, which stamped the frames: a step of the wall clock moves no lag.
fn unix_now_ns() -> u64 {
    ArchiveClock::process().now()
}
