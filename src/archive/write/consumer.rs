//! The archive consumer: the downstream that must receive every frame.
//!
//! It owns an [`ArchiveSink`] and feeds it every processed batch in processing order, taking what
//! is queued as one group (one write, and one `fsync` where the policy asks for it, per group:
//! group commit). Frames are counted as archived, and become acknowledgeable to their source, only
//! once they are stored under the configured [`SyncPolicy`]; the queue capacity they held is given
//! back as soon as they are written, so a sync in progress does not stall the pipeline.
//!
//! What is written and not yet durable is bounded (`archive.max_unsynced_bytes`): past it routine
//! batches wait, holding their queue capacity, until a sync ends, so a disk slower than the
//! sockets slows the pipeline, and through it the senders, to what the disk makes durable, instead
//! of filling the page cache with frames nobody can acknowledge.
//!
//! A failed write (a full disk) loses nothing: the sink wrote none of the group, and the consumer
//! holds it, with the queue capacity it takes, and writes it again until it succeeds, a second
//! apart at most. Meanwhile nothing else is written, so the pipeline backs up to the sockets and
//! every frame is stored once, in processing order. The archive counts as failing (`/healthz`
//! degraded) from the first failed write until what failed is synced. A failed `fsync` is not
//! retried: the kernel may have dropped the pages it could not write, and a later `fsync` would
//! report success over them (PostgreSQL's "fsyncgate"); what it covered is never acknowledged, and
//! the consumer writes nothing more until the daemon is restarted and recovers from the disk. A
//! sync that failed before any `fsync` ran, in a step that only needs a descriptor or a name (out
//! of descriptors, say: the sink says so with a [transient](ArchiveError::Transient) error), lost
//! nothing: what it covered waits for the next sync, tried again as a failed write is, and the
//! archive is failing meanwhile, as for a full disk.
//!
//! When the drain starts while frames are held (or a write fails during it), those frames cannot be
//! stored in time: the consumer gives up on them at once rather than at the drain deadline. It syncs
//! what it wrote, discards the rest of its queue, and tells the connections (`storage_lost`), which
//! close with their final acknowledgement below those frames: the sources still hold them. After a
//! failed sync nothing more is stored: at the drain it tells the connections at once.
//!
//! Emergency frames do not wait for the routine data written before them. The consumer takes its
//! input as it comes, whether or not there is room: routine batches wait in order for room, while
//! an emergency batch is written at once (up to twice the bound) and handed to the sink's
//! emergency journal, whose sync does not wait for the routine data; it counts as stored when the
//! journal or the segment's sync has made it durable, whichever is first.
//!
//! With `sinks.nats.ack = "replicated"` the stores count, but a frame's acknowledgement waits
//! for JetStream ([`Replication`]): an emergency batch whose replica would move the ACK goes to
//! the journal, which then acknowledges nothing, and as the append starts to the NATS sink, to be
//! published ahead of the files while the journal syncs (`crate::domain::handover`); for any other
//! emergency, and for all while the sink does not take them, the segment's sync starts at
//! once. Past the frames that may wait for their replica, batches wait as they do for a sync.
//!
//! The sink is a trait ([`ArchiveSink`]) so that the counting sink, the durable segment archive and
//! the tests' sinks (which observe the processing order, hold the archive still, or fail on demand)
//! share this one consumer.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::sink::{ArchiveSink, BoxFuture, SyncPolicy};
use crate::archive::format::ArchiveError;
use crate::domain::batch::Batch;
use crate::domain::frame::Priority;
use crate::domain::replication::Replication;
use crate::pipeline::queue::{Admitted, FrameReceiver};
use crate::stats::Stats;
use journaling::Journal;
use stored::{store, Claim, Written};

/// How the consumer is set up.
#[derive(Debug, Clone)]
pub(crate) struct ArchiveSettings {
    pub policy: SyncPolicy,
    /// Payload bytes written and not yet durable before the consumer waits for a sync.
    pub max_unsynced_bytes: u64,
    /// The drain: frames that cannot be stored are no longer waited for.
    pub drain: CancellationToken,
    /// Cancelled when the consumer gives up on frames it cannot store.
    pub storage_lost: CancellationToken,
    /// With `sinks.nats.ack = "replicated"`: stored frames are acknowledged once JetStream holds
    /// them, and frames wait for room when too many wait for that.
    pub replication: Option<Arc<Replication>>,
}

/// Written frames waiting for a sync.
#[derive(Default)]
struct Unsynced {
    spans: Vec<Written>,
    bytes: u64,
    /// Holds frames written again after a failed write: the outage ends when they are stored.
    ends_outage: bool,
}

impl Unsynced {
    /// Adds a written group, each batch with the claim it shares with its journal append.
    fn add(&mut self, group: &[Admitted<Arc<Batch>>], claims: &[Option<Claim>]) {
        for (batch, claim) in group.iter().map(|admitted| &admitted.item).zip(claims) {
            if let Some(span) = batch.span() {
                self.spans
                    .push((Arc::clone(&batch.source), span, claim.clone()));
            }
            self.bytes += batch.payload_bytes();
        }
    }

    /// Everything written is stored now: count it and let the sources acknowledge it (unless
    /// their replica does).
    fn stored(self, stats: &Stats, acknowledge: bool) {
        stats.archived_bytes(self.bytes);
        store(stats, self.spans, acknowledge);
    }

    /// Its frames not stored yet: an emergency its journal made durable is stored.
    fn frames(&self) -> u64 {
        (self.spans.iter())
            .filter(|(_, _, claim)| !claim.as_ref().is_some_and(Claim::is_taken))
            .map(|(_, span, _)| span.frames)
            .sum()
    }

    fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }
}

/// A sync under way and the frames it covers: those written before it started.
type Syncing = Option<(BoxFuture<'static, Result<(), ArchiveError>>, Unsynced)>;

/// A group whose write failed, waiting to be written again.
struct Held {
    group: Vec<Admitted<Arc<Batch>>>,
    next_try: Instant,
    backoff: Duration,
}

/// The first retry comes this soon after a failed write; each failure doubles it up to the most.
const FIRST_RETRY: Duration = Duration::from_millis(50);
const MOST_RETRY: Duration = Duration::from_secs(1);

/// Why the consumer stops storing before its input ends.
struct GaveUp;

/// Stores every batch the processor hands over until the processor is gone.
pub(crate) struct ArchiveConsumer {
    input: FrameReceiver<Arc<Batch>>,
    sink: Box<dyn ArchiveSink>,
    settings: ArchiveSettings,
    stats: Stats,
    unsynced: Unsynced,
    syncing: Syncing,
    journal: Journal,
    /// Batches taken from the input that wait for room, in order, and how many are emergencies.
    parked: VecDeque<Admitted<Arc<Batch>>>,
    parked_emergencies: usize,
    /// The input has ended.
    input_done: bool,
    held: Option<Held>,
    /// After a sync that failed and lost nothing: when the next may start, and the wait after
    /// that one, if it fails too.
    sync_again: Option<(Instant, Duration)>,
    /// Since when the archive has been failing, and how many frames it held at the first failure.
    outage: Option<(Instant, u64)>,
    /// Why a sync failed: nothing more is written.
    broken: Option<String>,
}

impl ArchiveConsumer {
    pub(crate) fn new(
        input: FrameReceiver<Arc<Batch>>,
        sink: Box<dyn ArchiveSink>,
        settings: ArchiveSettings,
        stats: Stats,
    ) -> Self {
        let journal = Journal::new(settings.replication.clone());
        ArchiveConsumer {
            input,
            sink,
            settings,
            stats,
            unsynced: Unsynced::default(),
            syncing: None,
            journal,
            parked: VecDeque::new(),
            parked_emergencies: 0,
            input_done: false,
            held: None,
            sync_again: None,
            outage: None,
            broken: None,
        }
    }

    /// Stores until the input ends (or, at a drain during an outage, until it gives up), then makes
    /// everything written durable and closes the sink.
    pub(crate) async fn run(mut self) {
        let stopped = self.store_all().await;
        self.finish_syncs().await;
        if let Err(GaveUp) = stopped {
            self.give_up().await;
        }
        self.stats.archive_unsynced_bytes(0);
        if let Err(err) = self.sink.close().await {
            self.stats.archive_error();
            tracing::error!(error = %err, "archive close failed");
        }
    }

    /// The loop: input, syncs and retries, until the input ends or the consumer gives up.
    async fn store_all(&mut self) -> Result<(), GaveUp> {
        let period = match self.settings.policy {
            SyncPolicy::Interval(period) => period,
            SyncPolicy::EveryBatch | SyncPolicy::Never => Duration::from_secs(3600),
        };
        // The first sync is one period away (a plain `interval` would tick at once).
        let mut ticker = tokio::time::interval_at(Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let drain = self.settings.drain.clone();
        loop {
            if self.input_done && self.parked.is_empty() && self.held.is_none() {
                return Ok(());
            }
            let retry_at = self.held.as_ref().map(|held| held.next_try);
            let sync_at = self.sync_again.map(|(at, _)| at);
            let waits_for = self.waits_for_replicas();
            tokio::select! {
                result = in_flight(&mut self.syncing) => self.synced(result),
                result = self.journal.front() => self.journaled(result),
                _ = ticker.tick(), if self.syncing.is_none() && !self.unsynced.is_empty() => {
                    self.start_sync();
                }
                _ = sleep_until(retry_at), if retry_at.is_some() => self.retry().await?,
                _ = sleep_until(sync_at), if sync_at.is_some() && self.syncing.is_none() => {
                    self.start_sync();
                }
                _ = drain.cancelled(), if self.held.is_some() => self.retry().await?,
                _ = drain.cancelled(), if self.broken.is_some() && !self.told_connections() => {
                    self.let_connections_go();
                }
                // Parked for a replica's room, which the drain no longer waits for.
                _ = drain.cancelled(), if waits_for.is_some() => {}
                _ = replica_room(self.settings.replication.as_deref(), waits_for),
                    if waits_for.is_some() => {}
                first = self.input.recv(), if !self.input_done => match first {
                    Some(first) => self.take_input(first),
                    None => self.input_done = true,
                },
            }
            self.write_parked().await?;
        }
    }

    /// Whether the connections were told to stop waiting for their frames.
    fn told_connections(&self) -> bool {
        self.settings.storage_lost.is_cancelled()
    }

    /// At a drain after a failed sync: nothing more is stored, so no connection waits for it.
    fn let_connections_go(&mut self) {
        self.settings.storage_lost.cancel();
        tracing::error!(
            frames = self.unsynced.frames(),
            "archive: the drain gives up on what was written after a failed sync; it is not acknowledged, and its sources still hold it"
        );
    }

    /// Parks `first` and whatever else is queued: the input's capacity they hold is what bounds
    /// them.
    fn take_input(&mut self, first: Admitted<Arc<Batch>>) {
        let mut next = Some(first);
        while let Some(admitted) = next {
            if admitted.item.priority == Priority::Emergency {
                self.parked_emergencies += 1;
            }
            self.parked.push_back(admitted);
            next = self.input.try_recv();
        }
    }

    /// Writes what is parked, as far as the room allows, unless a failed write is held.
    async fn write_parked(&mut self) -> Result<(), GaveUp> {
        while self.held.is_none() {
            let group = self.take_group();
            if group.is_empty() {
                break;
            }
            self.write(group).await?;
        }
        Ok(())
    }

    /// Whether more may be written before a sync ends.
    fn has_room(&self) -> bool {
        self.room() > 0
    }

    /// Payload bytes that may still be written before a sync ends (no bound without syncs).
    fn room(&self) -> u64 {
        self.room_within(self.settings.max_unsynced_bytes)
    }

    /// Whether an emergency may be written: up to twice the bound, so that a sync in progress
    /// does not hold it back, while a flood of emergencies is bounded all the same.
    fn has_emergency_room(&self) -> bool {
        self.room_within(self.settings.max_unsynced_bytes.saturating_mul(2)) > 0
    }

    fn room_within(&self, bound: u64) -> u64 {
        match self.settings.policy {
            SyncPolicy::Never => u64::MAX,
            _ => bound.saturating_sub(self.not_durable()),
        }
    }

    /// Payload bytes written and not yet durable: what the sync under way covers, and after it.
    fn not_durable(&self) -> u64 {
        let covered = self
            .syncing
            .as_ref()
            .map_or(0, |(_, covered)| covered.bytes);
        covered + self.unsynced.bytes
    }

    /// Whether stored frames are acknowledged at once, not once their replica holds them.
    fn acknowledges(&self) -> bool {
        self.settings.replication.is_none()
    }

    /// Whether frames of `priority` may be written, as far as what waits for a replica goes.
    /// From the drain on, all may: what was accepted is stored, its acknowledgement still waits
    /// for its replica (the sink publishes it after the next start).
    fn has_replica_room(&self, priority: Priority) -> bool {
        self.settings.drain.is_cancelled()
            || (self.settings.replication.as_ref()).is_none_or(|r| r.has_room(priority))
    }

    /// The priority of parked batches that wait for frames to be replicated, if any do: their
    /// emergencies', which get room first.
    fn waits_for_replicas(&self) -> Option<Priority> {
        let waiting = !self.parked.is_empty() && !self.has_replica_room(Priority::Routine);
        waiting.then_some(match self.parked_emergencies {
            0 => Priority::Routine,
            _ => Priority::Emergency,
        })
    }

    /// The next group to write: what is parked, in order, up to the room left; without room,
    /// the parked emergencies, ahead of the routine batches parked before them.
    fn take_group(&mut self) -> Vec<Admitted<Arc<Batch>>> {
        let room = self.room();
        let mut group = Vec::new();
        if room > 0 && self.has_replica_room(Priority::Routine) {
            let mut bytes = 0;
            while bytes < room {
                let Some(next) = self.parked.pop_front() else {
                    break;
                };
                bytes += next.item.payload_bytes();
                if next.item.priority == Priority::Emergency {
                    self.parked_emergencies -= 1;
                }
                group.push(next);
            }
        } else if self.parked_emergencies > 0
            && self.has_emergency_room()
            && self.has_replica_room(Priority::Emergency)
        {
            let (emergencies, routine): (VecDeque<_>, _) = std::mem::take(&mut self.parked)
                .into_iter()
                .partition(|admitted| admitted.item.priority == Priority::Emergency);
            self.parked = routine;
            self.parked_emergencies = 0;
            group = emergencies.into();
        }
        group
    }

    /// Writes a group; a failure holds it to be written again.
    async fn write(&mut self, group: Vec<Admitted<Arc<Batch>>>) -> Result<(), GaveUp> {
        match self.attempt(&group).await {
            Ok(()) => {
                self.written(group, false);
                Ok(())
            }
            Err(err) => self.failed(group, err, FIRST_RETRY),
        }
    }

    /// The held group's next attempt; at a drain, the last one.
    async fn retry(&mut self) -> Result<(), GaveUp> {
        let Some(held) = self.held.take() else {
            return Ok(());
        };
        match self.attempt(&held.group).await {
            Ok(()) => {
                tracing::info!("archive: the frames held since the failed write are written");
                self.written(held.group, true);
                Ok(())
            }
            Err(err) => self.failed(held.group, err, (held.backoff * 2).min(MOST_RETRY)),
        }
    }

    /// Hands a group to the sink, unless a failed sync means nothing more may be written.
    async fn attempt(&mut self, group: &[Admitted<Arc<Batch>>]) -> Result<(), ArchiveError> {
        if let Some(why) = &self.broken {
            return Err(ArchiveError::broken(why.clone()));
        }
        if let Some(replication) = &self.settings.replication {
            // Before the frames can be durable, and so before the sink can meet them.
            (group.iter())
                .filter(|a| !a.item.source.backfill)
                .for_each(|a| replication.writing(&a.item.source));
        }
        let batches: Vec<_> = group.iter().map(|a| Arc::clone(&a.item)).collect();
        self.sink.write(&batches).await
    }

    /// A group is written: it waits for its sync, its emergencies go to the journal too, and its
    /// queue capacity goes back.
    fn written(&mut self, group: Vec<Admitted<Arc<Batch>>>, ends_outage: bool) {
        if let Some(replication) = &self.settings.replication {
            replication.written(group.iter().map(|a| a.item.len() as u64).sum());
        }
        let claims = self.journal(&group);
        // With `ack = "replicated"`, an emergency the journal does not hand to the sink waits for
        // the segment's sync: it starts now.
        let handed = |claim: &Option<Claim>| {
            claim.is_some()
                && !self.journal.is_failing()
                && (self.settings.replication.as_ref()).is_some_and(|r| r.handover().is_taken())
        };
        let emergency = !self.acknowledges()
            && (group.iter().zip(&claims))
                .any(|(a, claim)| a.item.priority == Priority::Emergency && !handed(claim));
        self.unsynced.add(&group, &claims);
        self.unsynced.ends_outage |= ends_outage;
        drop(group);
        match self.settings.policy {
            SyncPolicy::Never => {
                let written = std::mem::take(&mut self.unsynced);
                self.stored(written);
            }
            SyncPolicy::EveryBatch => self.start_sync(),
            SyncPolicy::Interval(_) if emergency => self.start_sync(),
            // Half the bound written: start the sync now, so that it ends before the bound is hit.
            SyncPolicy::Interval(_) if self.room() <= self.settings.max_unsynced_bytes / 2 => {
                self.start_sync();
            }
            SyncPolicy::Interval(_) => {}
        }
        self.publish_unsynced();
    }

    /// A write failed: hold the group for another try, or, once the drain has begun, give up.
    fn failed(
        &mut self,
        group: Vec<Admitted<Arc<Batch>>>,
        err: ArchiveError,
        backoff: Duration,
    ) -> Result<(), GaveUp> {
        self.stats.archive_error();
        let frames: u64 = group.iter().map(|a| a.item.len() as u64).sum();
        if self.outage.is_none() {
            self.outage = Some((Instant::now(), frames));
            tracing::error!(
                frames,
                error = %err,
                "archive write failed; holding these frames and writing them again until it succeeds"
            );
        } else {
            tracing::debug!(frames, error = %err, "archive write failed again");
        }
        self.held = Some(Held {
            group,
            next_try: Instant::now() + backoff,
            backoff,
        });
        match self.settings.drain.is_cancelled() {
            true => Err(GaveUp),
            false => Ok(()),
        }
    }

    /// Hands the group's emergency batches whose acknowledgement it would move to the sink's
    /// journal; for each batch, the claim it shares with its journal append, if it has one.
    fn journal(&mut self, group: &[Admitted<Arc<Batch>>]) -> Vec<Option<Claim>> {
        match self.settings.policy {
            SyncPolicy::Never => vec![None; group.len()],
            _ => self.journal.append(group, self.sink.as_mut()),
        }
    }

    /// The oldest journal append ended; if it failed, with `ack = "replicated"` the files
    /// publish its emergencies: their sync starts now.
    fn journaled(&mut self, result: Result<(), ArchiveError>) {
        if self.journal.ended(result, &self.stats) && self.settings.replication.is_some() {
            self.start_sync();
        }
    }

    /// Starts a sync of everything written, unless one is under way or a failed one waits to be
    /// tried again.
    fn start_sync(&mut self) {
        if self.sync_again.is_some_and(|(at, _)| Instant::now() < at) {
            return;
        }
        if self.syncing.is_none() && !self.unsynced.is_empty() {
            let covered = std::mem::take(&mut self.unsynced);
            self.syncing = Some((self.sink.sync(), covered));
        }
    }

    /// A sync ended: what it covered is stored; when it failed and lost nothing, it waits for the
    /// next try; when it failed otherwise, it never will be.
    fn synced(&mut self, result: Result<(), ArchiveError>) {
        let Some((_, mut covered)) = self.syncing.take() else {
            return;
        };
        match result {
            Ok(()) => {
                self.sync_again = None;
                self.stored(covered);
            }
            Err(err) if err.is_transient() => {
                self.stats.archive_error();
                let backoff = self
                    .sync_again
                    .map_or(FIRST_RETRY, |(_, last)| (last * 2).min(MOST_RETRY));
                if self.outage.is_none() {
                    self.outage = Some((Instant::now(), covered.frames()));
                    tracing::error!(
                        frames = covered.frames(),
                        error = %err,
                        "archive sync failed before it reached the disk; holding what it covered and syncing again until it succeeds"
                    );
                } else {
                    tracing::debug!(frames = covered.frames(), error = %err, "archive sync failed again");
                }
                // Written before what came since: both wait for the next sync.
                let since = std::mem::take(&mut self.unsynced);
                covered.spans.extend(since.spans);
                covered.bytes += since.bytes;
                covered.ends_outage = true;
                self.unsynced = covered;
                self.sync_again = Some((Instant::now() + backoff, backoff));
            }
            Err(err) => {
                self.stats.archive_error();
                self.outage
                    .get_or_insert((Instant::now(), covered.frames()));
                tracing::error!(
                    frames = covered.frames(),
                    error = %err,
                    "archive sync failed; what it covered is never acknowledged, and nothing more is written until a restart"
                );
                self.broken = Some(format!(
                    "an earlier sync failed ({err}); restart the daemon"
                ));
            }
        }
        if self.settings.policy == SyncPolicy::EveryBatch || !self.has_room() {
            self.start_sync();
        }
        self.publish_unsynced();
    }

    /// Frames are stored: their sources may acknowledge them; an outage they end is over.
    fn stored(&mut self, written: Unsynced) {
        let ends_outage = written.ends_outage;
        written.stored(&self.stats, self.acknowledges());
        if ends_outage && self.held.is_none() && self.broken.is_none() {
            if let Some((since, frames)) = self.outage.take() {
                tracing::info!(
                    outage_ms = since.elapsed().as_millis() as u64,
                    frames_held_at_first_failure = frames,
                    "archive recovered: every frame held since the failed write is stored"
                );
            }
            self.stats.archive_recovered();
        }
    }

    fn publish_unsynced(&self) {
        self.stats.archive_unsynced_bytes(self.not_durable());
    }

    /// Waits for the journal appends and the sync under way, then syncs what is left.
    async fn finish_syncs(&mut self) {
        while !self.journal.is_empty() {
            let result = self.journal.front().await;
            self.journaled(result);
        }
        // A sync's end may start another (`synced`): none is left behind. One that failed and
        // lost nothing is tried once more at once, as a held write is at the drain.
        let mut last_try = false;
        loop {
            if let Some((pending, _)) = &mut self.syncing {
                let result = pending.await;
                self.synced(result);
            } else if self.broken.is_some() || self.unsynced.is_empty() {
                break;
            } else if self.sync_again.take().is_some() && std::mem::replace(&mut last_try, true) {
                self.abandon_unsynced();
                break;
            } else {
                self.start_sync();
            }
        }
    }

    /// At a drain, after a sync failed twice and lost nothing: what is written and not durable
    /// cannot be stored in time. It is not acknowledged, and the connections stop waiting for it.
    fn abandon_unsynced(&mut self) {
        let frames = std::mem::take(&mut self.unsynced).frames();
        self.stats.abandoned(frames);
        self.settings.storage_lost.cancel();
        tracing::error!(
            frames,
            "archive: the drain gives up on written frames it cannot sync; they are not acknowledged, and their sources still hold them"
        );
    }

    /// At a drain during an outage: drops the held frames and the rest of the queue unstored, and
    /// lets the connections close without waiting for them.
    async fn give_up(&mut self) {
        let mut frames = self.held.take().map_or(0, |held| {
            held.group.iter().map(|a| a.item.len() as u64).sum()
        });
        frames += self
            .parked
            .drain(..)
            .map(|a| a.item.len() as u64)
            .sum::<u64>();
        self.settings.storage_lost.cancel();
        while let Some(admitted) = self.input.recv().await {
            frames += admitted.item.len() as u64;
        }
        self.stats.abandoned(frames);
        tracing::error!(
            frames,
            "archive: the drain gives up on frames it cannot store; they are not acknowledged, and their sources still hold them"
        );
    }
}

/// The sync under way, or never, when there is none.
async fn in_flight(syncing: &mut Syncing) -> Result<(), ArchiveError> {
    match syncing {
        Some((pending, _)) => pending.await,
        None => std::future::pending().await,
    }
}

/// Completes once a batch of the priority that waits may be written; never without one.
async fn replica_room(replication: Option<&Replication>, waits_for: Option<Priority>) {
    match (replication, waits_for) {
        (Some(replication), Some(priority)) => replication.room_for(priority).await,
        _ => std::future::pending().await,
    }
}

/// Sleeps until `at`, or forever when there is no such time.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

mod journaling;
mod stored;
#[cfg(test)]
mod tests;
