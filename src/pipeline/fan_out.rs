//! The lossy fan-out: every processed batch offered to any number of subscribers (the dashboard,
//! `/feed` WebSockets), none of which may ever slow the processor.
//!
//! A `broadcast` channel would make every subscriber share one ring, bounded in batches, and tell a
//! subscriber that fell behind only how many batches it missed. Subscribers here differ: a feed
//! filtered to emergencies holds a few batches, one taking everything holds many, and a `/feed`
//! client is owed the number of *frames* it missed. So each subscriber has its own queue, bounded in
//! batches and in the bytes of the socket reads those batches keep alive (their memory), and a
//! filter ([`FrameFilter::wants_batch`]: source and priority, which a batch's frames share).
//! [`FanOutLane::publish`] never waits: when a batch does not fit, the subscriber's oldest batches are
//! dropped to make room (a live view wants the newest frames), and the subscriber is handed a
//! [`Delivery::Gap`] with the number of frames it missed before the batches it still holds.
//!
//! Every shard's processor publishes, and a lock or counter that all of them touched for every
//! batch would bounce its cache line between the cores (it held a 16-shard pipeline to the pace of
//! 4). So each shard publishes into a lane of its own: a subscriber has a queue per lane, holding
//! its share of the subscriber's bound, and the subscriber takes a lane's whole queue at once, in
//! turn. A source belongs to one shard, so its batches still reach a subscriber in order; batches
//! of different shards have no order to keep. A publisher wakes the subscriber only when it is not
//! already due to look.
//!
//! The processors own the [`FanOut`] through their [`FanOutLane`]s; when the last is dropped at the
//! end of the drain, every subscription ends once it has taken what is queued.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard};

use tokio::sync::Notify;

use crate::domain::batch::Batch;
use crate::domain::filter::FrameFilter;
use crate::domain::frame::Priority;
use crate::stats::Stats;

use Ordering::{Relaxed, SeqCst};

/// How much one subscriber's queues hold before batches are dropped for it, shared out among the
/// lanes (one per shard): each lane holds `batches / lanes` rounded up (at least one) and
/// `bytes / lanes`. An empty lane takes one batch whatever its size, so that a share smaller than
/// one socket read still passes frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    pub batches: usize,
    /// Bytes of the socket reads that the queued batches' payloads are slices of.
    pub bytes: usize,
}

impl Bound {
    /// One lane's share of the bound among `lanes`.
    fn share(self, lanes: usize) -> Bound {
        Bound {
            batches: self.batches.div_ceil(lanes).max(1),
            bytes: self.bytes / lanes,
        }
    }
}

/// What a subscription hands out, in order.
#[derive(Debug)]
pub(crate) enum Delivery {
    Batch(Arc<Batch>),
    /// This many frames passed the filter and were dropped because the queue was full.
    Gap(u64),
}

/// The subscribers, shared by the processors' [`FanOutLane`]s and every [`Subscribe`] handle.
#[derive(Debug)]
struct Hub {
    lanes: Box<[Lane]>,
    registry: Mutex<Registry>,
}

/// One shard's lane: the subscribers as its publisher reads them. Aligned to two cache lines, so
/// that no two lanes share one.
#[derive(Debug)]
#[repr(align(128))]
struct Lane {
    subscribers: RwLock<Vec<Arc<Subscriber>>>,
    /// Subscribers registered right now, for a publish that has none to skip the lock.
    count: AtomicUsize,
    /// The shard's counters.
    stats: Stats,
}

#[derive(Debug, Default)]
struct Registry {
    list: Vec<Arc<Subscriber>>,
    /// The processors have finished: a late subscriber gets a subscription that is already over.
    finished: bool,
}

#[derive(Debug)]
struct Subscriber {
    filter: FrameFilter,
    /// Each lane's share of the subscriber's bound.
    lane_bound: Bound,
    queues: Box<[LaneQueue]>,
    ready: Notify,
    /// Something was queued since the subscriber last began to look: a publisher that finds it
    /// set need not wake the subscriber again.
    pending: AtomicBool,
    /// Set by a subscriber that takes no routine frames for now (its rate budget is spent): the
    /// processors then only count them, at the cost of an atomic on their own lane.
    routine_paused: AtomicBool,
}

/// A subscriber's queue in one lane.
#[derive(Debug, Default)]
#[repr(align(128))]
struct LaneQueue {
    queue: Mutex<Queue>,
    routine_skipped: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Delivery>,
    batches: usize,
    bytes: usize,
    /// The processors have finished: nothing more will be queued.
    closed: bool,
}

/// Ends every subscription when the last [`FanOutLane`] is dropped.
#[derive(Debug)]
pub(crate) struct FanOut {
    hub: Arc<Hub>,
}

/// One processor's end: publishes its shard's batches into its lane.
#[derive(Debug)]
pub(crate) struct FanOutLane {
    fan_out: Arc<FanOut>,
    lane: usize,
}

/// Subscribes to the fan-out; cloneable, and usable after the processors have started.
#[derive(Debug, Clone)]
pub(crate) struct Subscribe {
    hub: Arc<Hub>,
}

/// One subscriber's end; dropping it unsubscribes.
#[derive(Debug)]
pub(crate) struct Subscription {
    hub: Arc<Hub>,
    me: Arc<Subscriber>,
    /// A lane's queue as last taken, handed out before the next lane is looked at.
    taken: VecDeque<Delivery>,
    /// The lane to look at first next time, so that every lane has its turn.
    next_lane: usize,
}

/// Creates the fan-out with a lane for each of `lanes` shards (at least one), each counting into
/// its shard's `stats`, and a handle to subscribe to it.
pub(crate) fn fan_out(stats: &Stats, lanes: usize) -> (FanOut, Subscribe) {
    let hub = Arc::new(Hub {
        lanes: (0..lanes.max(1))
            .map(|lane| Lane {
                subscribers: RwLock::default(),
                count: AtomicUsize::new(0),
                stats: stats.shard(lane),
            })
            .collect(),
        registry: Mutex::default(),
    });
    (
        FanOut {
            hub: Arc::clone(&hub),
        },
        Subscribe { hub },
    )
}

/// The locks here guard data left consistent at every point a panic could happen: a poisoned lock
/// is safe to use.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

impl Hub {
    /// Sets every lane's view of the subscribers to `list`.
    fn share(&self, list: &[Arc<Subscriber>]) {
        for lane in self.lanes.iter() {
            let mut subscribers = lane
                .subscribers
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            *subscribers = list.to_vec();
            lane.count.store(subscribers.len(), Relaxed);
        }
    }
}

impl FanOut {
    /// One publisher per lane, in lane order; the last one dropped ends the subscriptions.
    pub(crate) fn into_publishers(self) -> Vec<FanOutLane> {
        let lanes = self.hub.lanes.len();
        let fan_out = Arc::new(self);
        (0..lanes)
            .map(|lane| FanOutLane {
                fan_out: Arc::clone(&fan_out),
                lane,
            })
            .collect()
    }
}

impl FanOutLane {
    /// Offers `batch` to every subscriber whose filter wants it. Never waits for a subscriber.
    pub(crate) fn publish(&self, batch: &Arc<Batch>) {
        let lane = &self.fan_out.hub.lanes[self.lane];
        if lane.count.load(Relaxed) == 0 {
            return;
        }
        let routine = batch.priority == Priority::Routine;
        for subscriber in read(&lane.subscribers).iter() {
            if !subscriber.filter.wants_batch(batch) {
                continue;
            }
            let queue = &subscriber.queues[self.lane];
            if routine && subscriber.routine_paused.load(Relaxed) {
                queue.routine_skipped.fetch_add(batch.len() as u64, Relaxed);
            } else {
                subscriber.offer(queue, batch, &lane.stats);
            }
        }
    }
}

impl Drop for FanOut {
    fn drop(&mut self) {
        let mut registry = lock(&self.hub.registry);
        registry.finished = true;
        for subscriber in &registry.list {
            for queue in subscriber.queues.iter() {
                lock(&queue.queue).closed = true;
            }
            subscriber.ready.notify_one();
        }
    }
}

impl Subscriber {
    /// Queues `batch` in `lane`, first dropping the lane's oldest routine batches while it does not
    /// fit (a live view wants the newest frames, and an alert the emergencies): an emergency batch
    /// is dropped only when the queue holds no routine one, and a routine batch that finds only
    /// emergencies is the one dropped. What was dropped becomes (or grows) the gap at the front of
    /// the lane's queue.
    fn offer(&self, lane: &LaneQueue, batch: &Arc<Batch>, stats: &Stats) {
        let bytes = batch.pinned_bytes();
        let bound = self.lane_bound;
        let fits = |q: &Queue| {
            q.batches == 0 || (q.batches < bound.batches && q.bytes + bytes <= bound.bytes)
        };
        {
            let mut queue = lock(&lane.queue);
            let mut missed = queue.take_gap();
            let lagging = missed > 0;
            let mut dropped = 0u64;
            let mut keep = true;
            while !fits(&queue) {
                let evicted = match queue.pop_oldest(Some(Priority::Routine)) {
                    Some(routine) => routine,
                    None if batch.priority == Priority::Routine => {
                        keep = false;
                        Arc::clone(batch)
                    }
                    None => match queue.pop_oldest(None) {
                        Some(emergency) => emergency,
                        None => break,
                    },
                };
                missed += evicted.len() as u64;
                dropped += 1;
                if !keep {
                    break;
                }
            }
            if keep {
                queue.batches += 1;
                queue.bytes += bytes;
                queue.entries.push_back(Delivery::Batch(Arc::clone(batch)));
            }
            if missed > 0 {
                queue.entries.push_front(Delivery::Gap(missed));
            }
            for n in 0..dropped {
                stats.dropped_for_subscriber(n == 0 && !lagging);
            }
        }
        // Sequentially consistent with the subscriber's clearing of the flag before it looks:
        // either it looks after this batch was queued, or it is woken.
        if !self.pending.load(SeqCst) && !self.pending.swap(true, SeqCst) {
            self.ready.notify_one();
        }
    }
}

impl Queue {
    /// Removes the gap at the front, if any: the frames it counts.
    fn take_gap(&mut self) -> u64 {
        match self.entries.front() {
            Some(Delivery::Gap(missed)) => {
                let missed = *missed;
                self.entries.pop_front();
                missed
            }
            _ => 0,
        }
    }

    /// Removes the oldest batch of `priority` (of either when `None`); call after
    /// [`Queue::take_gap`].
    fn pop_oldest(&mut self, priority: Option<Priority>) -> Option<Arc<Batch>> {
        let at = self.entries.iter().position(|entry| match entry {
            Delivery::Batch(batch) => priority.is_none_or(|p| p == batch.priority),
            Delivery::Gap(_) => false,
        })?;
        match self.entries.remove(at)? {
            Delivery::Batch(batch) => {
                self.batches -= 1;
                self.bytes -= batch.pinned_bytes();
                Some(batch)
            }
            Delivery::Gap(_) => None,
        }
    }
}

impl Subscribe {
    /// Registers a subscriber. Its memory is at most `bound.bytes`, plus what it has taken and
    /// not yet handed out (one lane's share), plus a batch per lane where a share is below one
    /// read; it holds at most `bound.batches` rounded up to a multiple of the lanes.
    pub(crate) fn subscribe(&self, filter: FrameFilter, bound: Bound) -> Subscription {
        let mut registry = lock(&self.hub.registry);
        let lanes = self.hub.lanes.len();
        let me = Arc::new(Subscriber {
            filter,
            lane_bound: bound.share(lanes),
            queues: (0..lanes)
                .map(|_| LaneQueue {
                    queue: Mutex::new(Queue {
                        closed: registry.finished,
                        ..Queue::default()
                    }),
                    routine_skipped: AtomicU64::new(0),
                })
                .collect(),
            ready: Notify::new(),
            pending: AtomicBool::new(false),
            routine_paused: AtomicBool::new(false),
        });
        registry.list.push(Arc::clone(&me));
        self.hub.share(&registry.list);
        Subscription {
            hub: Arc::clone(&self.hub),
            me,
            taken: VecDeque::new(),
            next_lane: 0,
        }
    }
}

impl Subscription {
    /// Stops (or resumes) taking routine batches: while paused they are only counted, for
    /// [`Subscription::take_skipped`].
    pub(crate) fn pause_routine(&self, paused: bool) {
        self.me.routine_paused.store(paused, Relaxed);
    }

    /// The routine frames passed over while paused since the last call.
    pub(crate) fn take_skipped(&self) -> u64 {
        self.me
            .queues
            .iter()
            .map(|queue| queue.routine_skipped.swap(0, Relaxed))
            .sum()
    }

    /// The next batch or gap (each lane's in publishing order); `None` once the processors have
    /// finished and everything queued was taken.
    pub(crate) async fn next(&mut self) -> Option<Delivery> {
        loop {
            if let Some(delivery) = self.taken.pop_front() {
                return Some(delivery);
            }
            self.me.pending.store(false, SeqCst);
            match self.try_next() {
                Ok(Some(delivery)) => return Some(delivery),
                Ok(None) => self.me.ready.notified().await,
                Err(Finished) => return None,
            }
        }
    }

    /// The next batch or gap if one is queued right now; `Err(Finished)` once the processors have
    /// finished and everything queued was taken. Takes the whole queue of the next lane that has
    /// something, and hands it out before it looks at another.
    pub(crate) fn try_next(&mut self) -> Result<Option<Delivery>, Finished> {
        if let Some(delivery) = self.taken.pop_front() {
            return Ok(Some(delivery));
        }
        let lanes = self.me.queues.len();
        let mut closed = 0;
        for turn in 0..lanes {
            let lane = (self.next_lane + turn) % lanes;
            let mut queue = lock(&self.me.queues[lane].queue);
            if queue.entries.is_empty() {
                closed += usize::from(queue.closed);
                continue;
            }
            std::mem::swap(&mut self.taken, &mut queue.entries);
            queue.batches = 0;
            queue.bytes = 0;
            drop(queue);
            self.next_lane = lane + 1;
            return Ok(self.taken.pop_front());
        }
        if closed == lanes {
            Err(Finished)
        } else {
            Ok(None)
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut registry = lock(&self.hub.registry);
        registry.list.retain(|s| !Arc::ptr_eq(s, &self.me));
        self.hub.share(&registry.list);
    }
}

/// The fan-out has ended: the processors finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Finished;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use bytes::Bytes;

    use super::*;
    use crate::domain::source::Source;

    fn source(id: u32) -> Arc<Source> {
        Source::for_test(id)
    }

    /// A routine batch of `source` with one frame, `sequence`, cut from a read of `read` bytes.
    fn batch(source: &Arc<Source>, sequence: u64, read: usize) -> Arc<Batch> {
        let mut batch = Batch::new(Arc::clone(source), Priority::Routine, Instant::now(), 1);
        batch.push(sequence, 0..1);
        batch.attach(Bytes::from(vec![0u8; read]));
        Arc::new(batch)
    }

    fn sequences(deliveries: &[Delivery], of: u32) -> Vec<u64> {
        deliveries
            .iter()
            .filter_map(|d| match d {
                Delivery::Batch(b) if b.source.id == of => b.first_sequence(),
                _ => None,
            })
            .collect()
    }

    /// A fan-out of `lanes` lanes with one subscriber to everything under `batches` and
    /// `bytes`: the counters, the publishers in lane order and the subscription.
    fn subscribed(
        lanes: usize,
        batches: usize,
        bytes: usize,
    ) -> (Stats, Vec<FanOutLane>, Subscription) {
        let stats = Stats::sharded(lanes);
        let (fan_out, subscribe) = fan_out(&stats, lanes);
        let subscription = subscribe.subscribe(FrameFilter::default(), Bound { batches, bytes });
        (stats, fan_out.into_publishers(), subscription)
    }

    /// Everything queued for `subscription` right now.
    fn queued(subscription: &mut Subscription) -> Vec<Delivery> {
        let mut got = Vec::new();
        while let Ok(Some(delivery)) = subscription.try_next() {
            got.push(delivery);
        }
        got
    }

    #[tokio::test]
    async fn every_lanes_batches_arrive_each_lane_in_order_and_the_last_publisher_ends_it() {
        let (_, publishers, mut subscription) = subscribed(2, 100, usize::MAX);
        let mut publishers = publishers.into_iter();
        let (first, second) = (publishers.next().unwrap(), publishers.next().unwrap());
        let (a, b) = (source(1), source(2));
        for sequence in 1..=3 {
            first.publish(&batch(&a, sequence, 10));
            second.publish(&batch(&b, sequence, 10));
        }
        let mut got = Vec::new();
        for _ in 0..6 {
            got.push(subscription.next().await.expect("queued"));
        }
        assert_eq!(sequences(&got, 1), [1, 2, 3]);
        assert_eq!(sequences(&got, 2), [1, 2, 3]);
        assert!(matches!(subscription.try_next(), Ok(None)));

        drop(first);
        second.publish(&batch(&b, 4, 10));
        assert!(
            matches!(subscription.next().await, Some(Delivery::Batch(_))),
            "a lane still open publishes"
        );
        drop(second);
        assert!(
            subscription.next().await.is_none(),
            "the last publisher ends it"
        );
    }

    #[tokio::test]
    async fn a_full_lane_drops_its_oldest_batches_and_says_how_many_frames() {
        // Four batches shared by two lanes: two each.
        let (stats, publishers, mut subscription) = subscribed(2, 4, usize::MAX);
        let a = source(1);
        for sequence in 1..=5 {
            publishers[0].publish(&batch(&a, sequence, 10));
        }
        let got = queued(&mut subscription);
        assert!(matches!(got[0], Delivery::Gap(3)), "{got:?}");
        assert_eq!(sequences(&got, 1), [4, 5]);
        assert_eq!(stats.snapshot().lagged_batches, 3);
        assert_eq!(stats.snapshot().lag_events, 1);
    }

    /// A full lane drops routine batches before emergencies: an emergency is lost only when the
    /// queue holds nothing else, and a routine batch that finds only emergencies is dropped itself.
    #[tokio::test]
    async fn a_full_lane_drops_routine_batches_before_emergencies() {
        // Two batches a lane.
        let (stats, publishers, mut subscription) = subscribed(1, 2, usize::MAX);
        let a = source(1);
        let emergency = |sequence| {
            let mut batch = Batch::new(Arc::clone(&a), Priority::Emergency, Instant::now(), 1);
            batch.push(sequence, 0..1);
            batch.attach(Bytes::from(vec![0u8; 10]));
            Arc::new(batch)
        };
        publishers[0].publish(&emergency(1));
        publishers[0].publish(&batch(&a, 2, 10));
        publishers[0].publish(&batch(&a, 3, 10));
        publishers[0].publish(&emergency(4));
        publishers[0].publish(&batch(&a, 5, 10));
        let got = queued(&mut subscription);
        assert!(matches!(got[0], Delivery::Gap(3)), "{got:?}");
        assert_eq!(sequences(&got, 1), [1, 4], "both emergencies kept");
        assert_eq!(stats.snapshot().lagged_batches, 3);

        // Only emergencies queued: the oldest goes for a newer one.
        for sequence in [6, 7, 8] {
            publishers[0].publish(&emergency(sequence));
        }
        let got = queued(&mut subscription);
        assert!(matches!(got[0], Delivery::Gap(1)), "{got:?}");
        assert_eq!(sequences(&got, 1), [7, 8]);
    }

    #[tokio::test]
    async fn an_empty_lane_takes_a_batch_larger_than_its_share() {
        // 100 bytes shared by four lanes is 25 a lane, less than one read of 60.
        let (_, publishers, mut subscription) = subscribed(4, 8, 100);
        let a = source(1);
        publishers[3].publish(&batch(&a, 1, 60));
        publishers[3].publish(&batch(&a, 2, 60));
        let got = queued(&mut subscription);
        assert!(matches!(got[0], Delivery::Gap(1)), "{got:?}");
        assert_eq!(sequences(&got, 1), [2]);
    }

    #[test]
    fn paused_routine_frames_are_counted_in_every_lane() {
        let (_, publishers, mut subscription) = subscribed(2, 8, usize::MAX);
        subscription.pause_routine(true);
        let a = source(1);
        publishers[0].publish(&batch(&a, 1, 10));
        publishers[1].publish(&batch(&a, 2, 10));
        assert!(matches!(subscription.try_next(), Ok(None)));
        assert_eq!(subscription.take_skipped(), 2);
        assert_eq!(subscription.take_skipped(), 0);
    }
}
