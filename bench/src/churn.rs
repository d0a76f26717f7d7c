//! The churn client: many distinct sources, each of which connects once, sends its frames, waits
//! until the daemon has acknowledged the last of them, and leaves for good.
//!
//! A ground station sees satellites come and go: what the daemon keeps of a source that has gone,
//! with every frame acknowledged, it keeps for nothing, and a fleet's passes add it up. The parent
//! reads the daemon's resident memory before the first source and after the last has left
//! (`orchestrate`); this side only plays the sources, [`AT_ONCE`] at a time so that the client
//! stays small whatever the count.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use aggregator::protocol::ingest::{ClientCodec, CloseReason, ServerMessage};
use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio_util::codec::Decoder;

use crate::control::{emit, ChildMsg, Churned, Fill};
use crate::{load, uplink};

/// Frames each source sends: sequences 1..=FRAMES.
pub const FRAMES: u64 = 1_000;
/// One frame in this many is an emergency: 20 %.
pub const EMERGENCY_EVERY: u64 = 5;
/// Payload bytes per frame, as in the scale runs.
pub const PAYLOAD: usize = 64;
/// Sources connected at once.
pub const AT_ONCE: usize = 256;

/// Plays `sources` sources, ids 1..=`sources`, and reports what they saw.
pub async fn churn(addr: SocketAddr, sources: usize) {
    let frames = load::frames(FRAMES, PAYLOAD, EMERGENCY_EVERY, Fill::Constant);
    let started = Instant::now();
    let mut report = Churned {
        acknowledged: 0,
        frames_acknowledged: 0,
        failed: 0,
        first_error: None,
        elapsed_s: 0.0,
    };
    let mut running = JoinSet::new();
    for id in 1..=sources as u32 {
        if running.len() >= AT_ONCE {
            if let Some(done) = running.join_next().await {
                tally(&mut report, done);
            }
        }
        running.spawn(source(addr, id, Arc::clone(&frames)));
    }
    while let Some(done) = running.join_next().await {
        tally(&mut report, done);
    }
    report.elapsed_s = started.elapsed().as_secs_f64();
    emit(&ChildMsg::Churned(report));
}

/// Adds one source's outcome: the sequence its CLOSE acknowledged, or why it failed.
fn tally(report: &mut Churned, done: Result<Result<Option<u64>, String>, tokio::task::JoinError>) {
    match done.map_err(|e| e.to_string()).and_then(|outcome| outcome) {
        Ok(acked) => {
            let acked = acked.unwrap_or(0);
            report.frames_acknowledged += acked;
            report.acknowledged += u64::from(acked == FRAMES);
        }
        Err(err) => {
            report.failed += 1;
            report.first_error.get_or_insert(err);
        }
    }
}

/// One source's life: HELLO, its frames, the end of its sending side, then the daemon's messages
/// until its CLOSE, whose final acknowledgement it returns. The socket closes when it returns.
async fn source(addr: SocketAddr, id: u32, frames: Arc<[u8]>) -> Result<Option<u64>, String> {
    let mut stream = uplink::connect(addr, id, None).await?;
    stream
        .write_all(&frames)
        .await
        .map_err(|e| format!("source {id}: DATA: {e}"))?;
    stream
        .shutdown()
        .await
        .map_err(|e| format!("source {id}: half-close: {e}"))?;
    let mut codec = ClientCodec::default();
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        let decoded = codec.decode(&mut buf);
        match decoded.map_err(|e| format!("source {id}: {e}"))? {
            Some(ServerMessage::Close {
                reason: CloseReason::EndOfStream,
                final_ack,
                ..
            }) => return Ok(final_ack),
            Some(ServerMessage::Close { reason, detail, .. }) => {
                return Err(format!("source {id}: CLOSE {reason}: {detail}"))
            }
            Some(ServerMessage::Refused { reason, detail }) => {
                return Err(format!("source {id}: REFUSED {reason}: {detail}"))
            }
            Some(
                ServerMessage::Welcome { .. }
                | ServerMessage::Ack { .. }
                | ServerMessage::Pong(_)
                | ServerMessage::Catalog { .. },
            ) => {}
            None => match stream.read_buf(&mut buf).await {
                Ok(0) => return Err(format!("source {id}: closed without a CLOSE")),
                Ok(_) => {}
                Err(err) => return Err(format!("source {id}: read: {err}")),
            },
        }
    }
}
