//! The archive consumer: the downstream that must receive every frame.
//!
//! It owns an [`ArchiveSink`] and feeds it every processed batch in processing order, taking all
//! that is queued as one group (one write, and one `fsync` where the policy asks for it, per group:
//! group commit). Frames are counted as archived, and become acknowledgeable to their source, only
//! once they are stored under the configured [`SyncPolicy`]; the queue capacity they held is given
//! back as soon as they are written, so a sync in progress does not stall the pipeline.
//!
//! The sink is a trait so that the counting sink, the durable segment archive and the tests' sinks
//! (which observe the processing order or hold the archive still) share this one consumer.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::frame::{Batch, Priority};
use crate::queue::{Admitted, FrameReceiver};
use crate::source::Source;
use crate::stats::Stats;

/// A boxed future, the return type of [`ArchiveSink`] methods.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where archived frames go.
pub trait ArchiveSink: Send + 'static {
    /// Writes a group of batches, in order. `Ok` means they will be stored once [`Self::sync`]
    /// (or nothing, for a sink without a sync) has covered them.
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>>;

    /// Starts making everything written so far durable. The future completes once it is, and
    /// does not hold the sink: writes go on while the disk syncs.
    fn sync(&mut self) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// Called once after the last batch, when the pipeline has drained.
    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async { Ok(()) })
    }

    /// A source has connected with frames stored above its resume point. Its resent copies of them
    /// are dropped as duplicates and acknowledged where they arrive, so if it resends nothing else
    /// no batch of it reaches the sink: a sink that records acknowledgements learns of the
    /// connection here.
    fn resumed(&mut self, _source: Arc<Source>) {}
}

/// When written frames count as stored, and so may be acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// After an `fsync` of the group that holds them.
    EveryBatch,
    /// After the next periodic `fsync`, at most this long after they were written.
    Interval(Duration),
    /// As soon as they are written to the operating system (lost if the machine crashes).
    Never,
}

/// Keeps nothing but the count: for tests, benchmarks and deployments that need no archive.
#[derive(Debug, Default)]
pub struct CountingSink {
    frames: u64,
}

impl ArchiveSink for CountingSink {
    fn write<'a>(&'a mut self, batches: &'a [Arc<Batch>]) -> BoxFuture<'a, io::Result<()>> {
        self.frames += batches.iter().map(|b| b.len() as u64).sum::<u64>();
        Box::pin(async { Ok(()) })
    }

    fn close(&mut self) -> BoxFuture<'_, io::Result<()>> {
        tracing::info!(frames = self.frames, "archive closed");
        Box::pin(async { Ok(()) })
    }
}

/// Written frames waiting for a sync, as counts per source (the batches themselves are gone).
#[derive(Default)]
struct Unsynced {
    counts: Vec<(Arc<Source>, Priority, u64)>,
}

impl Unsynced {
    fn add(&mut self, group: &[Admitted<Arc<Batch>>]) {
        for admitted in group {
            let batch = &admitted.item;
            self.counts.push((
                Arc::clone(&batch.source),
                batch.priority,
                batch.len() as u64,
            ));
        }
    }

    /// Everything written is stored now: count it and let the sources acknowledge it.
    fn stored(&mut self, stats: &Stats) {
        for (source, priority, frames) in self.counts.drain(..) {
            stats.archived(frames);
            source.stored(priority, frames);
        }
        stats.archive_ok();
    }

    fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }
}

/// A sync under way and the frames it covers: those written before it started.
type InFlight = Option<(BoxFuture<'static, io::Result<()>>, Unsynced)>;

/// Stores every batch the processor hands over until the processor is gone.
///
/// At most one sync is under way at a time, and writes continue while it is: a group written
/// during a sync waits for the next one. That keeps a slow `fsync` from stopping the pipeline.
pub async fn run(
    mut input: FrameReceiver<Arc<Batch>>,
    mut resumed: mpsc::Receiver<Arc<Source>>,
    mut sink: Box<dyn ArchiveSink>,
    policy: SyncPolicy,
    stats: Stats,
) {
    let mut unsynced = Unsynced::default();
    let mut syncing: InFlight = None;
    let period = match policy {
        SyncPolicy::Interval(period) => period,
        SyncPolicy::EveryBatch | SyncPolicy::Never => Duration::from_secs(3600),
    };
    // The first sync is one period away (a plain `interval` would tick at once).
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut group = Vec::new();
    let mut batches = Vec::new();
    loop {
        tokio::select! {
            first = input.recv() => {
                let Some(first) = first else { break };
                group.push(first);
                while let Some(next) = input.try_recv() {
                    group.push(next);
                }
            }
            result = in_flight(&mut syncing) => {
                if let Some((_, covered)) = syncing.take() {
                    synced(result, covered, &mut unsynced, &stats);
                }
                if policy == SyncPolicy::EveryBatch && !unsynced.is_empty() {
                    syncing = Some((sink.sync(), std::mem::take(&mut unsynced)));
                }
                continue;
            }
            _ = ticker.tick(), if syncing.is_none() && !unsynced.is_empty() => {
                syncing = Some((sink.sync(), std::mem::take(&mut unsynced)));
                continue;
            }
            Some(source) = resumed.recv() => {
                sink.resumed(source);
                continue;
            }
        }
        batches.extend(group.iter().map(|admitted| Arc::clone(&admitted.item)));
        let written = sink.write(&batches).await;
        batches.clear();
        match written {
            Ok(()) => {
                unsynced.add(&group);
                match policy {
                    SyncPolicy::EveryBatch if syncing.is_none() => {
                        syncing = Some((sink.sync(), std::mem::take(&mut unsynced)));
                    }
                    SyncPolicy::Never => unsynced.stored(&stats),
                    SyncPolicy::EveryBatch | SyncPolicy::Interval(_) => {}
                }
            }
            Err(err) => {
                stats.archive_error();
                let frames: usize = group.iter().map(|a| a.item.len()).sum();
                tracing::error!(
                    frames,
                    error = %err,
                    "archive write failed; these frames will not be acknowledged"
                );
            }
        }
        // Written (or failed): the queue's capacity goes back to the processor.
        group.clear();
    }
    // The last sync covers everything written.
    if let Some((pending, covered)) = syncing.take() {
        synced(pending.await, covered, &mut unsynced, &stats);
    }
    if !unsynced.is_empty() {
        let covered = std::mem::take(&mut unsynced);
        let result = sink.sync().await;
        synced(result, covered, &mut unsynced, &stats);
    }
    if let Err(err) = sink.close().await {
        stats.archive_error();
        tracing::error!(error = %err, "archive close failed");
    }
}

/// The sync under way, or never, when there is none.
async fn in_flight(syncing: &mut InFlight) -> io::Result<()> {
    match syncing {
        Some((pending, _)) => pending.await,
        None => std::future::pending().await,
    }
}

/// A sync ended: what it covered is stored, or, when it failed, waits for the next one.
fn synced(result: io::Result<()>, mut covered: Unsynced, unsynced: &mut Unsynced, stats: &Stats) {
    match result {
        Ok(()) => covered.stored(stats),
        Err(err) => {
            stats.archive_error();
            tracing::error!(error = %err, "archive sync failed; written frames stay unacknowledged");
            covered.counts.append(&mut unsynced.counts);
            *unsynced = covered;
        }
    }
}
