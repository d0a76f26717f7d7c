//! Acknowledgement pacing: at most one ACK per interval per connection, the interval stretched so
//! that all connections together stay within `ack_budget_per_sec` (every ACK is a system call),
//! and a timer to look for progress while frames are outstanding and nothing else wakes the
//! connection.

use std::time::Duration;

use tokio::time::Instant;

use super::wire::Wire;
use super::Shared;
use crate::domain::source::Source;
use crate::protocol::ingest::ServerMessage;

/// The ACKs one connection sends.
pub(super) struct Acks<'a> {
    pub(super) shared: &'a Shared,
    pub(super) sent: Option<u64>,
    pub(super) next_send: Instant,
}

impl Acks<'_> {
    /// This connection's share of the ACK budget, re-read as connections come and go.
    fn interval(&self) -> Duration {
        let connections = self.shared.stats.active_sources();
        self.shared.config.ack_interval(connections)
    }

    /// Sends an ACK if the acknowledgement moved and the interval allows (`on_wait` first if the
    /// write has to wait for the peer). Returns a wake-up to arm when one is due and `timer_armed`
    /// does not already cover it; reads the clock only when it must.
    pub(super) async fn update(
        &mut self,
        wire: &mut Wire,
        source: &Source,
        timer_armed: bool,
        on_wait: impl FnOnce(),
    ) -> Option<Instant> {
        let acked = source.last_acked();
        let ack_due = acked != self.sent;
        if !ack_due && (timer_armed || source.is_settled()) {
            return None;
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
        if source.last_acked() != self.sent {
            Some(self.next_send)
        } else if !source.is_settled() && !timer_armed {
            Some(now + self.interval())
        } else {
            None
        }
    }
}
