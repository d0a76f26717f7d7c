//! The priority fan-in: every source's batches merge here into the processor's bounded input.
//!
//! Two lanes, each bounded in frames. Emergency batches take their own lane, so an emergency never
//! waits for capacity behind routine traffic, whoever sent it. The processor takes from the
//! emergency lane first ([`FanIn::next`] is biased), so an emergency is processed before every
//! routine frame still queued when it arrived. A biased take starves the second lane under a flood
//! of the first; the `emergency_streak` guard bounds that: after that many emergency frames in a
//! row, a waiting routine batch goes next.
//!
//! Admission is a hand-off. A connection stages the batches of a socket read; those that fit go
//! into their lane at once, the rest wait in the lane's line. Whoever gives capacity back (the
//! processor, as it finishes a batch) admits from the front of the line itself. The bound is the
//! one a semaphore would give, but no connection task has to be woken to move each batch: with
//! 64-frame batches in a 64-frame input, that wake-up per batch cost more than processing the
//! batch. A connection is woken once everything it staged is admitted, to read its socket again, so
//! staged batches stay bounded by one read buffer per connection.
//!
//! The line is served a whole read at a time, sources in the order they staged, so each source
//! gets one read per turn. Taking one batch per source in turn would be as fair, but it would drain
//! every source at nearly the same moment and wake all their connections at once; a run queue of
//! dozens of full reads is what a connection carrying an emergency would then wait behind.

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Poll, Waker};

use tokio::sync::Notify;

use crate::domain::batch::Batch;
use crate::domain::frame::Priority;
use crate::stats::Stats;

/// A source's way into the fan-in. The router keeps one and hands a clone to every registered
/// source; each clone stages its own batches. The fan-in closes once every `Ingress` is gone.
#[derive(Debug)]
pub struct Ingress {
    shared: Arc<Lanes>,
    feed: Arc<Feed>,
}

/// The processor's side.
#[derive(Debug)]
pub struct FanIn {
    shared: Arc<Lanes>,
    streak: usize,
    max_streak: usize,
}

/// A batch inside its lane's bound; dropping `permit` gives its frames' capacity back.
#[derive(Debug)]
pub struct Admitted {
    pub item: Batch,
    pub permit: Permit,
}

/// The capacity one admitted batch holds. The processor drops it once the archive has the batch,
/// so the frames it is working on count against its input.
#[derive(Debug)]
pub struct Permit {
    shared: Arc<Lanes>,
    lane: usize,
    frames: usize,
}

/// The processor is gone: nothing more can be admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

#[derive(Debug)]
struct Lanes {
    state: Mutex<State>,
    stats: Stats,
}

#[derive(Debug)]
struct State {
    /// Indexed by [`lane_of`].
    lanes: [Lane; 2],
    /// Live `Ingress` handles.
    producers: usize,
    /// The processor, when it is waiting for a batch.
    processor: Option<Waker>,
    /// The processor is gone.
    closed: bool,
    /// A connection was woken to read since the processor last looked.
    reader_woken: bool,
}

#[derive(Debug)]
struct Lane {
    capacity: usize,
    /// Frames admitted and not yet given back: queued and in the processor's hands.
    occupied: usize,
    queue: VecDeque<Batch>,
    /// Sources whose batches did not fit, in turn.
    line: VecDeque<Staged>,
}

/// One source's batches waiting in one lane's line.
#[derive(Debug)]
struct Staged {
    batches: VecDeque<Batch>,
    feed: Arc<Feed>,
}

/// What a connection waits on: how many of its batches are staged, and a signal when none are.
#[derive(Debug, Default)]
struct Feed {
    staged: AtomicUsize,
    drained: Notify,
}

const EMERGENCY: usize = 0;
const ROUTINE: usize = 1;

fn lane_of(priority: Priority) -> usize {
    match priority {
        Priority::Emergency => EMERGENCY,
        Priority::Routine => ROUTINE,
    }
}

/// Creates the two lanes: `routine_capacity` and `emergency_capacity` frames. `stats` counts the
/// frames admitted.
pub fn priority_fan_in(
    routine_capacity: usize,
    emergency_capacity: usize,
    emergency_streak: usize,
    stats: Stats,
) -> (Ingress, FanIn) {
    let lane = |capacity| Lane {
        capacity,
        occupied: 0,
        queue: VecDeque::new(),
        line: VecDeque::new(),
    };
    let shared = Arc::new(Lanes {
        state: Mutex::new(State {
            lanes: [lane(emergency_capacity), lane(routine_capacity)],
            producers: 1,
            processor: None,
            closed: false,
            reader_woken: false,
        }),
        stats,
    });
    (
        Ingress {
            shared: Arc::clone(&shared),
            feed: Arc::default(),
        },
        FanIn {
            shared,
            streak: 0,
            max_streak: emergency_streak,
        },
    )
}

impl Lanes {
    /// The state. A panic while the lock was held cannot leave it half-updated in a way that
    /// matters more than stopping the pipeline would, so a poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Puts `batch` inside its lane's bound and does the admission's accounting.
    fn admit(&self, lane: &mut Lane, batch: Batch) {
        let frames = batch.len();
        lane.occupied += frames;
        if let Some(span) = batch.span() {
            batch.source.admitted(span, batch.payload_bytes());
        }
        self.stats.routed(frames as u64);
        lane.queue.push_back(batch);
    }

    /// Admits from the front of `lane`'s line while the next batch fits. Returns whether anything
    /// was admitted, and whether a connection was woken to read.
    fn refill(&self, lane: &mut Lane) -> (bool, bool) {
        let (mut admitted, mut woken) = (false, false);
        while let Some(mut staged) = lane.line.pop_front() {
            let Some(batch) = staged.batches.pop_front() else {
                continue;
            };
            if lane.occupied + batch.len() > lane.capacity {
                staged.batches.push_front(batch);
                lane.line.push_front(staged);
                break;
            }
            self.admit(lane, batch);
            admitted = true;
            if staged.feed.staged.fetch_sub(1, Relaxed) == 1 {
                staged.feed.drained.notify_one();
                woken = true;
            }
            if !staged.batches.is_empty() {
                lane.line.push_front(staged);
            }
        }
        (admitted, woken)
    }
}

impl Ingress {
    /// Stages a read's batches, in order within each lane: what fits is admitted now, the rest
    /// waits its turn. Does not wait; [`Ingress::drained`] tells when all of it is admitted.
    pub fn stage(&self, batches: impl IntoIterator<Item = Batch>) -> Result<(), Closed> {
        let mut state = self.shared.lock();
        if state.closed {
            return Err(Closed);
        }
        let mut admitted = false;
        for batch in batches {
            let lane = &mut state.lanes[lane_of(batch.priority)];
            if lane.line.is_empty() && lane.occupied + batch.len() <= lane.capacity {
                self.shared.admit(lane, batch);
                admitted = true;
                continue;
            }
            self.feed.staged.fetch_add(1, Relaxed);
            match lane.line.back_mut() {
                Some(staged) if Arc::ptr_eq(&staged.feed, &self.feed) => {
                    staged.batches.push_back(batch)
                }
                _ => lane.line.push_back(Staged {
                    batches: VecDeque::from([batch]),
                    feed: Arc::clone(&self.feed),
                }),
            }
        }
        wake_processor_if(state, admitted);
        Ok(())
    }

    /// Whether any batch this handle staged still waits for room.
    pub fn has_staged(&self) -> bool {
        self.feed.staged.load(Relaxed) > 0
    }

    /// Resolves once nothing this handle staged is waiting. Cancel-safe.
    pub(crate) async fn drained(&self) {
        while self.has_staged() {
            self.feed.drained.notified().await;
        }
    }
}

impl Clone for Ingress {
    /// Another producer, with batches of its own.
    fn clone(&self) -> Self {
        self.shared.lock().producers += 1;
        Ingress {
            shared: Arc::clone(&self.shared),
            feed: Arc::default(),
        }
    }
}

impl Drop for Ingress {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.producers -= 1;
        let last = state.producers == 0;
        wake_processor_if(state, last);
    }
}

impl FanIn {
    /// The next batch to process: emergency first, within the starvation guard. `None` once every
    /// [`Ingress`] is dropped and nothing is queued or staged, which is how the drain reaches the
    /// processor.
    pub async fn next(&mut self) -> Option<Admitted> {
        let reader_woken = std::mem::take(&mut self.shared.lock().reader_woken);
        if reader_woken {
            // Let the woken connection read, and the runtime look at the sockets, before taking
            // more: taking batch after batch would wake connection after connection, and a
            // socket that just got an emergency would be served behind all their reads.
            tokio::task::yield_now().await;
        }
        poll_fn(|cx| {
            let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
            let FanIn {
                shared,
                streak,
                max_streak,
            } = self;
            let mut state = shared.lock();
            let [emergency, routine] = &state.lanes;
            let streak_over = *streak >= *max_streak && !routine.queue.is_empty();
            let lane = if streak_over || emergency.queue.is_empty() {
                ROUTINE
            } else {
                EMERGENCY
            };
            if let Some(admitted) = take(shared, streak, &mut state, lane) {
                coop.made_progress();
                return Poll::Ready(Some(admitted));
            }
            let idle = state.lanes.iter().all(|l| l.line.is_empty());
            if state.producers == 0 && idle {
                return Poll::Ready(None);
            }
            wait(&mut state, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// The next emergency batch, for a processor that cannot take routine ones for now (the
    /// archive has no room). Waits while there is none. Cancel-safe.
    pub async fn next_emergency(&mut self) -> Admitted {
        poll_fn(|cx| {
            let coop = std::task::ready!(tokio::task::coop::poll_proceed(cx));
            let mut state = self.shared.lock();
            if let Some(admitted) = take(&self.shared, &mut self.streak, &mut state, EMERGENCY) {
                coop.made_progress();
                return Poll::Ready(admitted);
            }
            wait(&mut state, cx.waker());
            Poll::Pending
        })
        .await
    }
}

/// Takes the batch at the front of `lane`'s queue, if any, with the permit that holds its capacity.
fn take(
    shared: &Arc<Lanes>,
    streak: &mut usize,
    state: &mut State,
    lane: usize,
) -> Option<Admitted> {
    let batch = state.lanes[lane].queue.pop_front()?;
    match batch.priority {
        Priority::Emergency => *streak += batch.len(),
        Priority::Routine => *streak = 0,
    }
    let permit = Permit {
        shared: Arc::clone(shared),
        lane,
        frames: batch.len(),
    };
    Some(Admitted {
        item: batch,
        permit,
    })
}

/// Wakes the processor, if it waits, when `now` says there is something for it; outside the lock.
fn wake_processor_if(mut state: MutexGuard<'_, State>, now: bool) {
    let processor = if now { state.processor.take() } else { None };
    drop(state);
    if let Some(waker) = processor {
        waker.wake();
    }
}

/// Leaves the processor's waker for whoever admits the next batch.
fn wait(state: &mut State, waker: &Waker) {
    match &mut state.processor {
        Some(current) => current.clone_from(waker),
        slot => *slot = Some(waker.clone()),
    }
}

impl Drop for FanIn {
    /// Nothing more can be admitted: staged batches are let go and their connections woken, so
    /// that they see the pipeline closed.
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.closed = true;
        for lane in &mut state.lanes {
            lane.queue.clear();
            for staged in lane.line.drain(..) {
                staged.feed.staged.store(0, Relaxed);
                staged.feed.drained.notify_one();
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let lane = &mut state.lanes[self.lane];
        lane.occupied -= self.frames;
        let (admitted, woken) = self.shared.refill(lane);
        state.reader_woken |= woken;
        wake_processor_if(state, admitted);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::domain::source::Source;

    fn batch(source: &Arc<Source>, priority: Priority, first: u64, frames: u64) -> Batch {
        let mut batch = Batch::new(
            Arc::clone(source),
            priority,
            Instant::now(),
            frames as usize,
        );
        for sequence in first..first + frames {
            batch.push(sequence, 0..0);
        }
        batch
    }

    fn source(id: u32) -> Arc<Source> {
        Source::for_test(id)
    }

    /// A fan-in whose lanes hold `capacity` frames each, and one source that has staged `batches`
    /// (priority, first sequence, frames) through the ingress returned.
    fn staged(capacity: usize, batches: &[(Priority, u64, u64)]) -> (Ingress, FanIn, Arc<Source>) {
        let (root, fan_in) = priority_fan_in(capacity, capacity, 64, Stats::new());
        let s = source(1);
        let batches = batches.iter().map(|&(p, first, n)| batch(&s, p, first, n));
        root.stage(batches).expect("open");
        (root, fan_in, s)
    }

    #[tokio::test]
    async fn what_does_not_fit_waits_and_reads_are_admitted_in_turn() {
        let (root, mut fan_in) = priority_fan_in(4, 4, 64, Stats::new());
        let (a, b) = (root.clone(), root.clone());
        let (sa, sb) = (source(1), source(2));
        a.stage([
            batch(&sa, Priority::Routine, 0, 4),
            batch(&sa, Priority::Routine, 4, 2),
            batch(&sa, Priority::Routine, 6, 2),
        ])
        .expect("open");
        b.stage([batch(&sb, Priority::Routine, 0, 2)])
            .expect("open");
        assert!(a.has_staged() && b.has_staged(), "the lane is full");

        let mut order = Vec::new();
        for _ in 0..4 {
            let admitted = fan_in.next().await.expect("batch");
            order.push((admitted.item.source.id, admitted.item.first_sequence()));
        }
        assert_eq!(
            order,
            [(1, Some(0)), (1, Some(4)), (1, Some(6)), (2, Some(0))],
            "a staged read goes in whole before the next source's"
        );
        assert!(!a.has_staged() && !b.has_staged());
        a.drained().await;
    }

    #[tokio::test]
    async fn emergencies_overtake_queued_routine_frames() {
        let (_root, mut fan_in, _) =
            staged(8, &[(Priority::Routine, 0, 4), (Priority::Emergency, 4, 1)]);
        let first = fan_in.next().await.expect("batch");
        assert_eq!(first.item.priority, Priority::Emergency);
    }

    #[tokio::test]
    async fn the_processor_lets_a_woken_connection_run_before_taking_more() {
        let (root, mut fan_in, _) =
            staged(4, &[(Priority::Routine, 0, 4), (Priority::Routine, 4, 4)]);
        let events = Arc::new(Mutex::new(Vec::new()));
        let reader = tokio::spawn({
            let events = Arc::clone(&events);
            async move {
                root.drained().await;
                events.lock().expect("lock").push("connection woken");
            }
        });
        tokio::task::yield_now().await; // the connection task waits for its batches
        let first = fan_in.next().await.expect("batch");
        events.lock().expect("lock").push("took the first batch");
        drop(first); // admits the second batch, which drains the connection's staging
        let _second = fan_in.next().await.expect("batch");
        events.lock().expect("lock").push("took the second batch");
        reader.await.expect("task");
        assert_eq!(
            *events.lock().expect("lock"),
            [
                "took the first batch",
                "connection woken",
                "took the second batch"
            ]
        );
    }

    #[tokio::test]
    async fn next_emergency_takes_only_emergencies() {
        let (root, mut fan_in, s) = staged(8, &[(Priority::Routine, 0, 4)]);
        tokio::select! {
            biased;
            _ = fan_in.next_emergency() => panic!("a routine batch came out of next_emergency"),
            _ = std::future::ready(()) => {}
        }
        root.stage([batch(&s, Priority::Emergency, 4, 1)])
            .expect("open");
        let taken = fan_in.next_emergency().await;
        assert_eq!(taken.item.first_sequence(), Some(4));
        let routine = fan_in
            .next()
            .await
            .expect("the routine batch is still there");
        assert_eq!(routine.item.first_sequence(), Some(0));
    }

    #[tokio::test]
    async fn closes_when_every_ingress_is_gone_and_nothing_waits() {
        let (root, mut fan_in, _) =
            staged(2, &[(Priority::Routine, 0, 2), (Priority::Routine, 2, 2)]);
        drop(root);
        let mut frames = 0;
        while let Some(admitted) = fan_in.next().await {
            frames += admitted.item.len();
        }
        assert_eq!(frames, 4, "staged batches outlive their ingress");
    }

    #[tokio::test]
    async fn a_closed_fan_in_refuses_and_wakes_the_waiting() {
        let (root, fan_in, s) = staged(1, &[(Priority::Routine, 0, 1), (Priority::Routine, 1, 1)]);
        assert!(root.has_staged());
        drop(fan_in);
        root.drained().await;
        assert_eq!(
            root.stage([batch(&s, Priority::Routine, 2, 1)]),
            Err(Closed)
        );
    }
}
