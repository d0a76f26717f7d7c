//! The lossy fan-out: every processed batch offered to any number of subscribers (the dashboard,
//! `/feed` WebSockets), none of which may ever slow the processor.
//!
//! A `broadcast` channel would make every subscriber share one ring, bounded in batches, and tell a
//! subscriber that fell behind only how many batches it missed. Subscribers here differ: a feed
//! filtered to emergencies holds a few batches, one taking everything holds many, and a `/feed`
//! client is owed the number of *frames* it missed. So each subscriber has its own queue, bounded in
//! batches and in the bytes of the socket reads those batches keep alive (their memory), and a
//! filter on source and priority, which is per batch (a batch has one source and one priority).
//! [`FanOut::publish`] never waits: when a batch does not fit, the subscriber's oldest batches are
//! dropped to make room (a live view wants the newest frames), and the subscriber is handed a
//! [`Delivery::Gap`] with the number of frames it missed before the batches it still holds.
//!
//! The processor owns the [`FanOut`]; when it is dropped at the end of the drain, every
//! subscription ends once it has taken what is queued.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use tokio::sync::Notify;

use super::batch::Batch;
use super::frame::{Priority, SourceKind};
use crate::ops::stats::Stats;

/// Which batches a subscriber wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only these sources; every source when empty.
    pub sources: Vec<(SourceKind, u32)>,
    /// Only this priority; both when `None`.
    pub priority: Option<Priority>,
}

impl Filter {
    fn accepts(&self, batch: &Batch) -> bool {
        self.priority.is_none_or(|p| p == batch.priority)
            && (self.sources.is_empty()
                || self.sources.contains(&(batch.source.kind, batch.source.id)))
    }
}

/// How much one subscriber's queue holds before batches are dropped for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub batches: usize,
    /// Bytes of the socket reads that the queued batches' payloads are slices of.
    pub bytes: usize,
}

/// What a subscription hands out, in order.
#[derive(Debug)]
pub enum Delivery {
    Batch(Arc<Batch>),
    /// This many frames passed the filter and were dropped because the queue was full.
    Gap(u64),
}

/// The subscribers, shared by the processor's [`FanOut`] and every [`Subscribe`] handle.
#[derive(Debug)]
struct Hub {
    subscribers: RwLock<Registry>,
    /// Subscribers registered right now, for a publish that has none to skip the lock.
    count: AtomicUsize,
    stats: Stats,
}

#[derive(Debug, Default)]
struct Registry {
    list: Vec<Arc<Subscriber>>,
    /// The processor has finished: a late subscriber gets a subscription that is already over.
    finished: bool,
}

#[derive(Debug)]
struct Subscriber {
    filter: Filter,
    bound: Bound,
    queue: Mutex<Queue>,
    ready: Notify,
    /// Set by a subscriber that takes no routine frames for now (its rate budget is spent): the
    /// processor then only counts them, in `routine_skipped`, at the cost of two atomics.
    routine_paused: AtomicBool,
    routine_skipped: AtomicU64,
}

#[derive(Debug, Default)]
struct Queue {
    entries: VecDeque<Delivery>,
    batches: usize,
    bytes: usize,
    /// The processor has finished: nothing more will be queued.
    closed: bool,
}

/// The processor's end: publishes batches and, when dropped, ends every subscription.
#[derive(Debug)]
pub struct FanOut {
    hub: Arc<Hub>,
}

/// Subscribes to the fan-out; cloneable, and usable after the processor has started.
#[derive(Debug, Clone)]
pub struct Subscribe {
    hub: Arc<Hub>,
}

/// One subscriber's end; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    hub: Arc<Hub>,
    me: Arc<Subscriber>,
}

/// Creates the fan-out and a handle to subscribe to it.
pub fn fan_out(stats: Stats) -> (FanOut, Subscribe) {
    let hub = Arc::new(Hub {
        subscribers: RwLock::default(),
        count: AtomicUsize::new(0),
        stats,
    });
    (
        FanOut {
            hub: Arc::clone(&hub),
        },
        Subscribe { hub },
    )
}

impl Hub {
    fn registry(&self) -> RwLockReadGuard<'_, Registry> {
        // The registry is consistent at every point a panic could happen: a poisoned lock is safe.
        self.subscribers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn registry_mut(&self) -> RwLockWriteGuard<'_, Registry> {
        self.subscribers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A queue is left consistent at every point a panic could happen, so a poisoned lock is safe.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl FanOut {
    /// Offers `batch` to every subscriber whose filter accepts it. Never waits for a subscriber.
    pub fn publish(&self, batch: &Arc<Batch>) {
        if self.hub.count.load(Relaxed) == 0 {
            return;
        }
        let registry = self.hub.registry();
        let routine = batch.priority == Priority::Routine;
        for subscriber in &registry.list {
            if !subscriber.filter.accepts(batch) {
                continue;
            }
            if routine && subscriber.routine_paused.load(Relaxed) {
                subscriber
                    .routine_skipped
                    .fetch_add(batch.len() as u64, Relaxed);
            } else {
                subscriber.offer(batch, &self.hub.stats);
            }
        }
    }
}

impl Drop for FanOut {
    fn drop(&mut self) {
        let mut registry = self.hub.registry_mut();
        registry.finished = true;
        for subscriber in &registry.list {
            lock(&subscriber.queue).closed = true;
            subscriber.ready.notify_one();
        }
    }
}

impl Subscriber {
    /// Queues `batch`, first dropping the oldest batches while it does not fit: a live view wants
    /// the newest frames. What was dropped becomes (or grows) the gap at the front of the queue.
    fn offer(&self, batch: &Arc<Batch>, stats: &Stats) {
        let bytes = batch.pinned_bytes();
        let fits =
            |q: &Queue| q.batches < self.bound.batches && q.bytes + bytes <= self.bound.bytes;
        {
            let mut queue = lock(&self.queue);
            let mut missed = queue.take_gap();
            let lagging = missed > 0;
            let mut dropped = 0u64;
            while !fits(&queue) {
                let Some(oldest) = queue.pop_batch() else {
                    break;
                };
                missed += oldest.len() as u64;
                dropped += 1;
            }
            if fits(&queue) {
                queue.batches += 1;
                queue.bytes += bytes;
                queue.entries.push_back(Delivery::Batch(Arc::clone(batch)));
            } else {
                missed += batch.len() as u64;
                dropped += 1;
            }
            if missed > 0 {
                queue.entries.push_front(Delivery::Gap(missed));
            }
            for n in 0..dropped {
                stats.dropped_for_subscriber(n == 0 && !lagging);
            }
        }
        self.ready.notify_one();
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

    /// Removes the oldest batch; call after [`Queue::take_gap`].
    fn pop_batch(&mut self) -> Option<Arc<Batch>> {
        match self.entries.pop_front()? {
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
    /// Registers a subscriber.
    pub fn subscribe(&self, filter: Filter, bound: Bound) -> Subscription {
        let mut registry = self.hub.registry_mut();
        let me = Arc::new(Subscriber {
            filter,
            bound,
            queue: Mutex::new(Queue {
                closed: registry.finished,
                ..Queue::default()
            }),
            ready: Notify::new(),
            routine_paused: AtomicBool::new(false),
            routine_skipped: AtomicU64::new(0),
        });
        registry.list.push(Arc::clone(&me));
        self.hub.count.store(registry.list.len(), Relaxed);
        Subscription {
            hub: Arc::clone(&self.hub),
            me,
        }
    }
}

impl Subscription {
    /// Stops (or resumes) taking routine batches: while paused they are only counted, for
    /// [`Subscription::take_skipped`].
    pub fn pause_routine(&self, paused: bool) {
        self.me.routine_paused.store(paused, Relaxed);
    }

    /// The routine frames passed over while paused since the last call.
    pub fn take_skipped(&self) -> u64 {
        self.me.routine_skipped.swap(0, Relaxed)
    }

    /// The next batch or gap, in publishing order; `None` once the processor has finished and
    /// everything queued was taken.
    pub async fn next(&mut self) -> Option<Delivery> {
        loop {
            match self.try_next() {
                Ok(Some(delivery)) => return Some(delivery),
                Ok(None) => self.me.ready.notified().await,
                Err(Finished) => return None,
            }
        }
    }

    /// The next batch or gap if one is queued right now; `Err(Finished)` once the processor has
    /// finished and everything queued was taken.
    pub fn try_next(&mut self) -> Result<Option<Delivery>, Finished> {
        let mut queue = lock(&self.me.queue);
        match queue.entries.pop_front() {
            Some(Delivery::Batch(batch)) => {
                queue.batches -= 1;
                queue.bytes -= batch.pinned_bytes();
                Ok(Some(Delivery::Batch(batch)))
            }
            Some(gap) => Ok(Some(gap)),
            None if queue.closed => Err(Finished),
            None => Ok(None),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut registry = self.hub.registry_mut();
        registry.list.retain(|s| !Arc::ptr_eq(s, &self.me));
        self.hub.count.store(registry.list.len(), Relaxed);
    }
}

/// The fan-out has ended: the processor finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished;
