//! A queue bounded in frames rather than in messages.
//!
//! Batches of different sizes move through the pipeline, so a channel bounded in messages would
//! let batching silently multiply the memory bound. Here a semaphore holds one permit per frame of
//! capacity: a sender reserves as many permits as its batch has frames, and they return when the
//! receiver drops the [`Admitted`] wrapper, that is when the stage is done with the batch, not when
//! it takes it. The frames a stage is working on therefore count against its input's capacity.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

/// The sending half; clone it for every producer.
#[derive(Debug)]
pub(crate) struct FrameSender<T> {
    permits: Arc<Semaphore>,
    capacity: usize,
    tx: mpsc::UnboundedSender<Admitted<T>>,
}

impl<T> Clone for FrameSender<T> {
    fn clone(&self) -> Self {
        FrameSender {
            permits: Arc::clone(&self.permits),
            capacity: self.capacity,
            tx: self.tx.clone(),
        }
    }
}

/// The receiving half.
#[derive(Debug)]
pub(crate) struct FrameReceiver<T> {
    rx: mpsc::UnboundedReceiver<Admitted<T>>,
}

/// An item inside the queue's bound; dropping it gives its frames' capacity back.
#[derive(Debug)]
pub(crate) struct Admitted<T> {
    pub item: T,
    _permit: OwnedSemaphorePermit,
}

/// Capacity reserved for one item of a known number of frames.
#[derive(Debug)]
pub(crate) struct Reservation<T> {
    permit: OwnedSemaphorePermit,
    tx: mpsc::UnboundedSender<Admitted<T>>,
}

/// The receiver is gone; the item comes back so nothing is lost silently.
#[derive(Debug)]
pub(crate) struct Closed<T>(pub T);

/// Creates a queue holding at most `capacity` frames.
pub(crate) fn frame_queue<T>(capacity: usize) -> (FrameSender<T>, FrameReceiver<T>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let sender = FrameSender {
        permits: Arc::new(Semaphore::new(capacity)),
        capacity,
        tx,
    };
    (sender, FrameReceiver { rx })
}

impl<T> FrameSender<T> {
    /// Waits until `frames` frames fit. Cancel-safe: dropping the future reserves nothing.
    ///
    /// # Panics
    /// If `frames` exceeds the capacity, which config validation rules out for batches.
    pub(crate) async fn reserve(&self, frames: usize) -> Reservation<T> {
        assert!(
            frames <= self.capacity,
            "{frames} frames can never fit in a queue of {}",
            self.capacity
        );
        let permit = Arc::clone(&self.permits)
            .acquire_many_owned(frames as u32)
            .await
            .unwrap_or_else(|_| unreachable!("the semaphore is never closed"));
        Reservation {
            permit,
            tx: self.tx.clone(),
        }
    }

    /// Another way into the same queue, with a bound of its own: what it sends never waits for
    /// room taken by this sender's items, and the other way round. The receiver sees both in the
    /// order they were sent.
    pub(crate) fn with_own_bound(&self, capacity: usize) -> FrameSender<T> {
        FrameSender {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity,
            tx: self.tx.clone(),
        }
    }

    /// Reserves and sends in one step.
    pub(crate) async fn send(&self, item: T, frames: usize) -> Result<(), Closed<T>> {
        self.reserve(frames).await.send(item)
    }

    #[cfg(test)]
    /// Frames currently inside the bound.
    pub(crate) fn occupied(&self) -> usize {
        self.capacity - self.permits.available_permits()
    }
}

impl<T> Reservation<T> {
    /// Enqueues the item under the reserved capacity.
    pub(crate) fn send(self, item: T) -> Result<(), Closed<T>> {
        self.tx
            .send(Admitted {
                item,
                _permit: self.permit,
            })
            .map_err(|err| Closed(err.0.item))
    }
}

impl<T> FrameReceiver<T> {
    /// The next item, or `None` once every sender is gone and the queue is empty.
    pub(crate) async fn recv(&mut self) -> Option<Admitted<T>> {
        self.rx.recv().await
    }

    /// The next item if one is queued right now.
    pub(crate) fn try_recv(&mut self) -> Option<Admitted<T>> {
        self.rx.try_recv().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn capacity_returns_only_when_the_receiver_drops_the_item() {
        let (tx, mut rx) = frame_queue::<&str>(4);
        tx.send("a", 3).await.map_err(|_| ()).expect("open");
        assert_eq!(tx.occupied(), 3);

        let taken = rx.recv().await.expect("item");
        assert_eq!(tx.occupied(), 3, "still counted while the stage holds it");
        let blocked = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send("b", 2).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!blocked.is_finished());

        drop(taken);
        assert!(blocked.await.expect("task"));
        assert_eq!(tx.occupied(), 2);
    }

    #[tokio::test]
    async fn a_sender_with_its_own_bound_is_not_held_by_the_other() {
        let (tx, mut rx) = frame_queue::<&str>(2);
        let urgent = tx.with_own_bound(1);
        tx.send("a", 2).await.map_err(|_| ()).expect("open");
        let full = tokio::spawn({
            let tx = tx.clone();
            async move { tx.send("b", 1).await.is_ok() }
        });
        tokio::task::yield_now().await;
        assert!(!full.is_finished(), "the first bound is full");
        urgent
            .send("e", 1)
            .await
            .map_err(|_| ())
            .expect("room of its own");
        assert_eq!(urgent.occupied(), 1);

        let order: Vec<_> = [rx.recv().await, rx.recv().await]
            .into_iter()
            .map(|a| a.expect("item").item)
            .collect();
        assert_eq!(order, ["a", "e"], "one queue, in the order sent");
        assert!(
            full.await.expect("task"),
            "room came back when `a` was dropped"
        );
    }

    #[tokio::test]
    async fn a_closed_queue_gives_the_item_back() {
        let (tx, rx) = frame_queue::<u8>(1);
        drop(rx);
        assert!(matches!(tx.send(7, 1).await, Err(Closed(7))));
    }
}
