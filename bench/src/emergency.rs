//! The throttle run's emergency-only sources (issue 26): a few sources in the load client that send
//! nothing but small emergency frames, at a modest steady rate, beside the saturating uplinks.
//!
//! An emergency frame is processed within a millisecond, but the daemon acknowledges it only once
//! its archive has synced it, and with it all the routine data written before it. On a throttled
//! disk that wait is what a source sending only emergencies sees, and these sources measure it: from
//! the end of the `write` of each frame to the ACK covering it, at the client, with the uplinks'
//! own machinery (`acks`), each frame a chunk of one. Their ACKs are counted apart from the
//! uplinks', so the run's acknowledged payload stays the uplinks' alone.
//!
//! They run on a thread and a runtime of their own, as the probe has a thread of its own: the
//! runtime that drives the saturating uplinks is busy, and a frame's send time or its ACK's receipt
//! taken late by a worker that got round to it late would be the client's delay, not the daemon's.
//! Their source ids follow the probe's ([`EMERGENCY_ONLY_SOURCE_ID`]), far above the uplinks'.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use aggregator::protocol::ingest::encode_data;
use aggregator::Priority;
use bytes::BytesMut;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

use crate::acks::{self, Acks, Unacked};
use crate::control::EMERGENCY_ONLY_SOURCE_ID;
use crate::uplink;

/// Emergency-only sources in the throttle run, as in the issue.
pub const SOURCES: usize = 4;
/// Frames each of them sends per second.
pub const FRAMES_PER_S: u32 = 100;
/// Payload bytes of each of their frames.
pub const PAYLOAD: usize = 64;

/// The source id of emergency-only source `index` (from 0).
pub fn source_id(index: usize) -> u32 {
    EMERGENCY_ONLY_SOURCE_ID + index as u32
}

/// Starts `sources` emergency-only sources on `addr`, on a thread of their own, their ACKs counted
/// in `acks`. Each says on `connected` whether it connected, and sends once `go` is true, until
/// the daemon goes away.
pub fn spawn(
    addr: SocketAddr,
    sources: usize,
    acks: Arc<Acks>,
    connected: UnboundedSender<Result<(), String>>,
    go: watch::Receiver<bool>,
) {
    std::thread::spawn(move || {
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(err) => {
                for _ in 0..sources {
                    let _ = connected.send(Err(format!("emergency-only sources: {err}")));
                }
                return;
            }
        };
        runtime.block_on(async move {
            let mut running = tokio::task::JoinSet::new();
            for index in 0..sources {
                let (acks, connected, go) = (Arc::clone(&acks), connected.clone(), go.clone());
                running.spawn(source(addr, source_id(index), acks, connected, go));
            }
            while running.join_next().await.is_some() {}
        });
    });
}

/// One emergency-only source: connects, reads its ACKs, and sends once `go` is true.
async fn source(
    addr: SocketAddr,
    source_id: u32,
    acks: Arc<Acks>,
    connected: UnboundedSender<Result<(), String>>,
    mut go: watch::Receiver<bool>,
) {
    let stream = match uplink::connect(addr, source_id, None).await {
        Ok(stream) => stream,
        Err(err) => {
            let _ = connected.send(Err(format!("emergency-only source {source_id:#x}: {err}")));
            return;
        }
    };
    let _ = connected.send(Ok(()));
    let (reader, writer) = stream.into_split();
    let unacked = Arc::new(Unacked::new(acks, source_id, 1));
    tokio::spawn(acks::read_acks(reader, Arc::clone(&unacked)));
    if go.wait_for(|go| *go).await.is_ok() {
        send(writer, &unacked).await;
    }
}

/// Writes one emergency frame every 1/[`FRAMES_PER_S`] s, each a chunk of its own in `unacked`,
/// until the daemon goes away. A write held up by the daemon delays the next ones rather than
/// bunching them.
async fn send(mut writer: OwnedWriteHalf, unacked: &Unacked) {
    let payload = [0x5Au8; PAYLOAD];
    let mut frame = BytesMut::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / FRAMES_PER_S);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    for sequence in 1u64.. {
        ticks.tick().await;
        frame.clear();
        encode_data(&mut frame, Priority::Emergency, sequence, &payload);
        if writer.write_all(&frame).await.is_err() {
            return;
        }
        unacked.sent(sequence);
    }
}

#[cfg(test)]
mod tests {
    use super::{source_id, SOURCES};
    use crate::control::PROBE_SOURCE_ID;

    #[test]
    fn emergency_only_sources_share_no_id_with_the_uplinks_or_the_probe() {
        let ids: Vec<u32> = (0..SOURCES).map(source_id).collect();
        // Uplinks are numbered 1..=N; the most any run opens is far below these.
        let most_uplinks = 10_000_000;
        for id in &ids {
            assert!(*id > most_uplinks && *id != PROBE_SOURCE_ID, "{id:#x}");
        }
        let mut distinct = ids.clone();
        distinct.dedup();
        assert_eq!(distinct.len(), SOURCES, "{ids:?}");
    }
}
