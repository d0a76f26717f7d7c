//! The stats log line: one logged for each published snapshot (the web dashboard is
//! [`crate::ops::web`]).
//!
//! It needs only the latest pipeline statistics, so it reads the snapshots the stats publisher
//! sends and never the frames. Following every processed batch through the lossy fan-out, only to
//! count it, cost each shard a wake-up of another thread per batch and left that thread freeing
//! the batches: at full rate, a fifth to a third of the daemon's CPU per frame
//! (docs/architecture.md, "The stats line reads snapshots"). The frames go to the lossy
//! consumers that want them: `/feed` (and the web dashboard through it) and
//! [`crate::Daemon::subscribe_frames`].

use tokio::sync::watch;
use tokio::time::Instant;

use crate::stats::{processing_rates, PipelineStats, ProcessingRates};

/// Logs each snapshot published on `published`, the last one included, until its publisher has
/// gone (once the drain is over).
pub(crate) async fn run(published: watch::Receiver<PipelineStats>) {
    follow(published, log_line).await;
}

/// Hands each snapshot and the processing rates since the one before to `line`.
async fn follow(
    mut published: watch::Receiver<PipelineStats>,
    mut line: impl FnMut(&PipelineStats, ProcessingRates),
) {
    let mut last = (Instant::now(), PipelineStats::default());
    while published.changed().await.is_ok() {
        let now = (Instant::now(), *published.borrow_and_update());
        let seconds = now.0.duration_since(last.0).as_secs_f64();
        line(
            &now.1,
            processing_rates(&last.1, &now.1, seconds).unwrap_or_default(),
        );
        last = now;
    }
}

/// The stats line: totals, then the processing rates since the last line.
fn log_line(s: &PipelineStats, rates: ProcessingRates) {
    tracing::info!(
        // The module's old name, kept: operators' log filters and searches name it.
        target: "aggregator::ops::dashboard",
        "stats: accepted={} processed={} emergency={} archived={} in_flight={} bytes={} sources={} dup={} refused={} errors={} lag_events={} archive={} unsynced_bytes={} frames_per_sec={:.0} mb_per_sec={:.1}",
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
        if s.archive_failing == 0 { "ok" } else { "FAILING" },
        s.archive_unsynced_bytes,
        rates.frames_per_sec,
        rates.bytes_per_sec / 1e6,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn processed(frames: u64) -> PipelineStats {
        PipelineStats {
            frames_processed: frames,
            ..PipelineStats::default()
        }
    }

    #[tokio::test]
    async fn every_snapshot_is_a_line_up_to_the_last_one_published() {
        let (tx, rx) = watch::channel(PipelineStats::default());
        let (lines_tx, mut lines) = tokio::sync::mpsc::unbounded_channel();
        let stats_log = tokio::spawn(follow(rx, move |s, _| {
            let _ = lines_tx.send(s.frames_processed);
        }));
        tx.send_replace(processed(5));
        assert_eq!(lines.recv().await, Some(5));
        // The publisher's final snapshot, sent as it ends after the drain.
        tx.send_replace(processed(9));
        drop(tx);
        stats_log
            .await
            .expect("the stats log ends with its publisher");
        assert_eq!(lines.recv().await, Some(9), "the last snapshot is logged");
        assert_eq!(lines.recv().await, None);
    }
}
