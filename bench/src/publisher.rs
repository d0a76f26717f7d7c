//! A plain JetStream publisher as the NATS sink publishes: a window of publishes awaiting their
//! PubAck, taken in publishing order. The baseline the sink is measured against, by `nats-bench`
//! and by the replication run (`replication`).

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, context::PublishAckFuture, message::PublishMessage};

/// Publishes messages `0..count` (`message` gives each its subject and message) with at most
/// `window` awaiting their PubAck, taken in publishing order; `acked(n, latency)` is told of the
/// `n`th PubAck and the time from its publish to its receipt.
pub async fn publish_windowed(
    context: &jetstream::Context,
    count: u64,
    window: usize,
    mut message: impl FnMut(u64) -> (String, PublishMessage),
    mut acked: impl FnMut(u64, Duration),
) -> Result<(), String> {
    let window = window.max(1);
    let mut in_flight: VecDeque<(Instant, PublishAckFuture)> = VecDeque::with_capacity(window);
    let mut done = 0;
    for seq in 0..count {
        if in_flight.len() == window {
            if let Some((sent, ack)) = in_flight.pop_front() {
                ack.into_future().await.map_err(|err| err.to_string())?;
                done += 1;
                acked(done, sent.elapsed());
            }
        }
        let (subject, message) = message(seq);
        let sent = Instant::now();
        let ack = context
            .send_publish(subject, message)
            .await
            .map_err(|err| err.to_string())?;
        in_flight.push_back((sent, ack));
    }
    for (sent, ack) in in_flight {
        ack.into_future().await.map_err(|err| err.to_string())?;
        done += 1;
        acked(done, sent.elapsed());
    }
    Ok(())
}
