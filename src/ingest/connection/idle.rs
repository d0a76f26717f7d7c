//! The idle timeout: a connection on which nothing happens for `idle_timeout` is closed.
//!
//! One timer, set once and moved only when it fires early: something that happens meanwhile
//! only notes the time, so that the busy path never touches the timer. What counts as something
//! happening (and what waiting is not idleness) is the connection's business.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// A connection's idle clock.
pub(super) struct Idle {
    /// On the heap: the connection's future lives as long as the connection.
    timer: Pin<Box<Sleep>>,
    last_activity: Instant,
    timeout: Duration,
}

impl Idle {
    pub(super) fn new(timeout: Duration) -> Idle {
        Idle {
            timer: Box::pin(tokio::time::sleep(timeout)),
            last_activity: Instant::now(),
            timeout,
        }
    }

    /// Something happened: the quiet time starts again.
    pub(super) fn activity(&mut self) {
        self.last_activity = Instant::now();
    }

    /// The timer, to wait on. Cancel-safe.
    pub(super) fn timer(&mut self) -> Pin<&mut Sleep> {
        self.timer.as_mut()
    }

    /// The timer fired: whether nothing happened for the whole timeout. If something did, the
    /// timer waits for the moment the timeout runs out after it.
    pub(super) fn expired(&mut self) -> bool {
        let quiet_until = self.last_activity + self.timeout;
        if Instant::now() >= quiet_until {
            return true;
        }
        self.timer.as_mut().reset(quiet_until);
        false
    }
}
