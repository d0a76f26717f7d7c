//! The close: once the loop is over, the connection waits (within the drain deadline) until
//! everything it accepted is stored, sends the final acknowledgement and the CLOSE, and logs why
//! it ended.

use tokio_util::sync::CancellationToken;

use super::ending::Ending;
use super::services::Services;
use super::wire::Wire;
use crate::domain::source::Source;
use crate::protocol::ingest::{CloseReason, ServerMessage};

/// Waits (within the drain deadline) until everything accepted is stored, then sends the final
/// acknowledgement and the CLOSE, and logs why the connection ended.
pub(super) async fn finish(
    wire: &mut Wire,
    source: &Source,
    ack_sent: Option<u64>,
    end: Ending,
    (services, storage_lost): (&Services, &CancellationToken),
) {
    let cfg = &services.config;
    let stored = wait_until_stored(source, services, storage_lost).await;
    let acked = source.last_acked();
    if let Some(sequence) = acked.filter(|_| acked != ack_sent) {
        wire.send(&ServerMessage::Ack { sequence }).await;
    }
    let mut detail = end.detail(cfg);
    let mut reason = end.close_reason();
    match &end {
        Ending::Shutdown | Ending::PipelineClosed => {
            tracing::debug!(acked = acked, "connection drained")
        }
        Ending::EndOfStream => {
            tracing::info!(acked = acked, "source closed the connection")
        }
        Ending::Io(err) => tracing::info!(error = %err, acked = acked, "connection lost"),
        Ending::Idle | Ending::Protocol(_) | Ending::UnexpectedHello => {
            services.stats.protocol_error();
            tracing::warn!(reason = %detail, acked = acked, "closing connection on bad input");
        }
    }
    // Bad input is what the source must hear of; otherwise, that what it sent was not all stored.
    if !stored && !matches!(end, Ending::Protocol(_) | Ending::UnexpectedHello) {
        reason = CloseReason::StorageUnavailable;
        detail = format!("{detail}; frames above the final acknowledgement were not stored");
    }
    // Before the CLOSE: a source may connect again as soon as it has it.
    let _ = services.router.deregister((source.kind, source.id)).await;
    wire.send(&ServerMessage::Close {
        reason,
        final_ack: acked,
        detail,
    })
    .await;
}

/// Waits until every frame the source sent is stored; `false` when the archive gave up on them,
/// or the drain deadline passed, first.
async fn wait_until_stored(
    source: &Source,
    services: &Services,
    storage_lost: &CancellationToken,
) -> bool {
    let deadline = services.config.shutdown.drain_deadline;
    let give_up = tokio::time::sleep(deadline);
    tokio::pin!(give_up);
    loop {
        let changed = source.ledger().changed();
        tokio::pin!(changed);
        changed.as_mut().enable();
        if source.is_settled() {
            return true;
        }
        tokio::select! {
            _ = changed => {}
            _ = storage_lost.cancelled() => {
                tracing::warn!(
                    acked = source.last_acked(),
                    "the archive cannot store this source's last frames; closing without their acknowledgement"
                );
                return source.is_settled();
            }
            _ = &mut give_up => {
                tracing::error!(
                    acked = source.last_acked(),
                    deadline_ms = deadline.as_millis() as u64,
                    "frames still unstored after the drain deadline; closing without their acknowledgement"
                );
                return false;
            }
        }
    }
}
