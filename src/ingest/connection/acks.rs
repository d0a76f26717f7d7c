//! Acknowledgement pacing: at most one ACK per interval per connection, the interval stretched so
//! that all connections together stay within `ack_budget_per_sec` (every ACK is a system call),
//! and a timer to look for progress while frames are outstanding and nothing else wakes the
//! connection.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use super::services::Services;
use super::wire::Wire;
use crate::domain::source::Source;
use crate::protocol::ingest::ServerMessage;

/// The ACKs one connection sends, and its timer to look for progress.
pub(super) struct Acks {
    services: Arc<Services>,
    /// The last acknowledgement sent.
    sent: Option<u64>,
    /// When the interval allows the next ACK.
    next_send: Instant,
    /// One timer, re-armed only when an earlier wake-up is needed: registering a fresh timer on
    /// every pass would cost more than the batch it paces. On the heap: the connection's future
    /// lives as long as the connection.
    recheck: Pin<Box<Sleep>>,
    /// Whether `recheck` is set for a wake-up still to come.
    recheck_armed: bool,
}

impl Acks {
    /// The ACKs of a connection whose source was last acknowledged up to `sent`.
    pub(super) fn new(services: Arc<Services>, sent: Option<u64>) -> Acks {
        Acks {
            services,
            sent,
            next_send: Instant::now(),
            recheck: Box::pin(tokio::time::sleep(Duration::ZERO)),
            recheck_armed: false,
        }
    }

    /// The last acknowledgement sent.
    pub(super) fn sent(&self) -> Option<u64> {
        self.sent
    }

    /// This connection's share of the ACK budget, re-read as connections come and go.
    fn interval(&self) -> Duration {
        let connections = self.services.stats.active_sources();
        self.services.config.ack_interval(connections)
    }

    /// Sends an ACK if the acknowledgement moved and the interval allows (`on_wait` first if the
    /// write has to wait for the peer), and arms the timer when a wake-up is due that it does not
    /// already cover.
    pub(super) async fn update(
        &mut self,
        wire: &mut Wire,
        source: &Source,
        on_wait: impl FnOnce(),
    ) {
        let acked = source.last_acked();
        let ack_due = acked != self.sent;
        if !ack_due && (self.recheck_armed || source.is_settled()) {
            return;
        }
        let now = Instant::now();
        if ack_due && now >= self.next_send {
            if let Some(sequence) = acked {
                wire.send_or_wait(&ServerMessage::Ack { sequence }, on_wait)
                    .await;
            }
            self.sent = acked;
            self.next_send = now + self.interval();
        }
        self.arm(source, now);
    }

    /// [`Acks::update`] while the connection's last read waits for admission: an ACK goes only
    /// if the socket takes it at once (a wait would hold the read's credit), else it is tried
    /// again an interval later. Without this, a source whose reads always wait (the pipeline full
    /// behind a slow disk or a slow replica) would hear of its stored frames only between them.
    pub(super) fn update_at_once(&mut self, wire: &mut Wire, source: &Source) {
        let acked = source.last_acked();
        let now = Instant::now();
        if acked != self.sent && now >= self.next_send {
            if acked.is_none_or(|sequence| wire.try_send(&ServerMessage::Ack { sequence })) {
                self.sent = acked;
            }
            self.next_send = now + self.interval();
        }
        self.arm(source, now);
    }

    /// Arms the timer for the next look at the acknowledgement, where one is due that it does
    /// not already cover: the next send, while the acknowledgement is ahead of what was sent;
    /// an interval on, while frames are outstanding.
    fn arm(&mut self, source: &Source, now: Instant) {
        let at = if source.last_acked() != self.sent {
            self.next_send
        } else if !source.is_settled() && !self.recheck_armed {
            now + self.interval()
        } else {
            return;
        };
        if !self.recheck_armed || at < self.recheck.deadline() {
            self.recheck.as_mut().reset(at);
            self.recheck_armed = true;
        }
    }

    /// Whether the timer is set for a wake-up still to come.
    pub(super) fn is_recheck_armed(&self) -> bool {
        self.recheck_armed
    }

    /// The timer, to wait on while it is armed. Cancel-safe.
    pub(super) fn recheck(&mut self) -> Pin<&mut Sleep> {
        self.recheck.as_mut()
    }

    /// The timer fired: the next pass looks for progress, and arms it again if need be.
    pub(super) fn rechecked(&mut self) {
        self.recheck_armed = false;
    }
}
