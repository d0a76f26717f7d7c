//! From the accepted socket to the WELCOME: the TLS handshake, the HELLO and the registration,
//! then the connection is handed to its shard's thread and run there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::Instrument;

use super::catalog::CatalogOut;
use super::handshake::{handshake, refuse, Refusal};
use super::services::Services;
use super::wire::Wire;
use super::Connection;
use crate::domain::frame::SourceKind;
use crate::domain::replication::{FleetResume, Replication};
use crate::domain::source::Source;
use crate::ingest::read_credit::SMALL_READ;
use crate::ingest::router::{RegisterError, Registration};
use crate::net::Refused;
use crate::protocol::ingest::{RefuseReason, ServerMessage};
use crate::tls::auth::PeerIdentity;
use crate::tls::stream;

/// How long a registering source waits for the fleet's stream to say where it stands.
const FLEET_PATIENCE: Duration = Duration::from_secs(2);

/// Serves one accepted TCP connection on the listener for `listener` sources.
#[tracing::instrument(name = "conn", skip_all, fields(%peer, listener = listener.as_str(), source_id))]
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: SourceKind,
    services: Arc<Services>,
) {
    // Boxed: the handshake's state would otherwise take room in this task's future for the
    // connection's whole life, while all the task does after it is wait for the connection's task
    // on its shard.
    let Some((wire, registration, catalog, welcomed)) =
        Box::pin(admit(stream, peer, listener, &services)).await
    else {
        return;
    };
    let key = (registration.source.kind, registration.source.id);
    let shard = registration.shard;
    // The rest of the connection runs on its shard's thread, beside the shard's pipeline.
    match services.shards.get(shard) {
        Some(runtime) => {
            let serving = {
                let services = Arc::clone(&services);
                async move {
                    match wire.rehome() {
                        Ok(wire) => {
                            let connection =
                                Connection::new(wire, registration, catalog, welcomed, services);
                            connection.run().await;
                        }
                        Err(err) => {
                            tracing::error!(
                                shard,
                                error = %err,
                                "cannot move the connection to its shard; closed"
                            );
                            let _ = services.router.deregister(key).await;
                        }
                    }
                }
                .in_current_span()
            };
            if let Err(err) = runtime.spawn(serving).await {
                tracing::error!(shard, error = %err, "the connection's task on its shard failed");
                let _ = services.router.deregister(key).await;
            }
        }
        // Boxed: a connection served on a shard's thread does without it.
        None => {
            let connection = Connection::new(wire, registration, catalog, welcomed, services);
            Box::pin(connection.run()).await;
        }
    }
}

/// From the accepted socket to the WELCOME: the TLS handshake, the HELLO and the registration,
/// and the acknowledgement the WELCOME gave (`resume_after`); `None` once the connection is
/// refused and closed.
async fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    listener: SourceKind,
    services: &Services,
) -> Option<(Wire, Registration, CatalogOut, Option<u64>)> {
    let (mut wire, identity) = open(stream, peer, services).await?;

    let hello = match handshake(&mut wire, listener, identity.as_ref(), services).await {
        Ok(hello) => hello,
        Err(refusal) => {
            refuse(&mut wire, peer, services, refusal).await;
            return None;
        }
    };
    tracing::Span::current().record("source_id", hello.source_id);

    let registration = match services
        .router
        .register(hello.source_id, hello.kind, peer)
        .await
    {
        Ok(registration) => registration,
        Err(err) => {
            let reason = match err {
                RegisterError::Duplicate { .. } => RefuseReason::DuplicateSource,
                RegisterError::ShuttingDown => RefuseReason::ShuttingDown,
            };
            let refusal = Refusal::Refuse(reason, err.to_string());
            refuse(&mut wire, peer, services, refusal).await;
            return None;
        }
    };
    if let (Some(replication), true) = (&services.replication, registration.held_above) {
        let source = &registration.source;
        if let Err(refusal) =
            published_before_welcome(replication, source, &mut wire, services).await
        {
            let _ = services.router.deregister((source.kind, source.id)).await;
            refuse(&mut wire, peer, services, refusal).await;
            return None;
        }
    }
    if let Some(fleet) = &services.fleet {
        resume_in_fleet(fleet.as_ref(), &registration.source).await;
    }
    let resume_after = registration.source.last_acked();
    wire.send(&ServerMessage::Welcome {
        version: hello.version,
        resume_after,
    })
    .await;
    registration.source.takes_catalogs();
    let catalog = CatalogOut::new(services.catalog.subscribe());
    Some((wire, registration, catalog, resume_after))
}

/// With `ack = "replicated"`, for a source recovery found frames of above its recorded
/// acknowledgement: waits until the sink has published every frame earlier runs archived, since
/// WELCOME's `resume_after` covers those frames, and a resent copy of one is acknowledged as a
/// duplicate. Without the wait, a machine lost after a restart with JetStream away would lose
/// frames its sources were told are held. Ends early at the drain, or when the peer goes (which
/// frees the source to connect again); what the peer sends meanwhile stays in the read buffer,
/// up to a small read's worth.
async fn published_before_welcome(
    replication: &Replication,
    source: &Source,
    wire: &mut Wire,
    services: &Services,
) -> Result<(), Refusal> {
    if replication.has_published_earlier() {
        return Ok(());
    }
    tracing::info!(
        resume_after = source.last_acked(),
        "WELCOME waits for the NATS sink to publish what earlier runs archived of this source"
    );
    let published = replication.earlier_published();
    tokio::pin!(published);
    loop {
        let room = wire.buf.len() < SMALL_READ;
        tokio::select! {
            () = &mut published => return Ok(()),
            () = services.drain.cancelled() => return Err(Refusal::shutting_down()),
            read = wire.read_small(), if room => match read {
                Ok(1..) => {}
                Ok(0) | Err(_) => {
                    tracing::debug!("the peer went while its WELCOME waited for the NATS sink");
                    return Err(Refusal::Gone);
                }
            },
        }
    }
}

/// Raises the source's resume point to where the fleet's stream holds it: the source may come
/// from another daemon. Without an answer in time, this archive's resume point stands: the
/// source sends again what the stream may hold, and its duplicate window drops it.
async fn resume_in_fleet(fleet: &dyn FleetResume, source: &Source) {
    let key = (source.kind, source.id);
    let error = match tokio::time::timeout(FLEET_PATIENCE, fleet.resume_after(key)).await {
        Ok(Ok(Some(after))) => {
            if source.ledger().raise_to(after) {
                tracing::info!(
                    resume_after = after,
                    "the fleet's stream holds the source further: resuming there"
                );
            }
            return;
        }
        Ok(Ok(None)) => return,
        Ok(Err(why)) => why,
        Err(_) => format!("no answer within {} ms", FLEET_PATIENCE.as_millis()),
    };
    tracing::warn!(%error, "cannot ask the fleet's stream where the source stands; resuming where this archive has it");
}

/// Refuses a connection the listener will not serve (it, or the address, is at its connection
/// limit: `refused` says which) before any HELLO is read, through the same REFUSED, log line,
/// counter and lingering close as every refusal.
#[tracing::instrument(name = "conn", skip_all, fields(%peer, listener = listener.as_str()))]
pub(crate) async fn refuse_over_limit(
    stream: TcpStream,
    peer: SocketAddr,
    listener: SourceKind,
    refused: Refused,
    services: Arc<Services>,
) {
    let Some((mut wire, _)) = open(stream, peer, &services).await else {
        return;
    };
    let detail = refused.to_string();
    let refusal = Refusal::Refuse(RefuseReason::TooManyConnections, detail);
    refuse(&mut wire, peer, &services, refusal).await;
}

/// The connection's wire, after the TLS handshake when the listener has TLS, and the identity of
/// the peer's certificate. A failed handshake (a plaintext client, no certificate, or one that is
/// untrusted or expired) is logged with the peer, counted, and ends the connection: there is no
/// channel to send a REFUSED on. A handshake still under way when the drain starts is abandoned,
/// so that it cannot hold the drain (a plain connection is split at once, and goes on to be
/// refused with `ShuttingDown`).
async fn open(
    stream: TcpStream,
    peer: SocketAddr,
    services: &Services,
) -> Option<(Wire, Option<PeerIdentity>)> {
    let patience = services.config.connection.handshake_timeout;
    let accepted = tokio::select! {
        biased;
        accepted = stream::accept(stream, services.tls.as_deref(), patience) => accepted,
        _ = services.drain.cancelled() => {
            tracing::debug!("the drain started during the TLS handshake; connection closed");
            return None;
        }
    };
    match accepted {
        Ok(accepted) => Some((
            Wire::new(accepted.reader, accepted.writer, services),
            accepted.identity,
        )),
        Err(err) => {
            services.stats.tls_handshake_failed();
            tracing::warn!(%peer, error = %err, "TLS handshake failed; connection closed");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::CatalogHandle;
    use crate::config::Config;
    use crate::ingest::read_credit::ReadCredits;
    use crate::ingest::router::RouterHandle;
    use crate::pipeline::fan_in::priority_fan_in;
    use crate::stats::Stats;
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    /// Every connection's future lives as long as the connection: with 10,000 sources each
    /// kilobyte of it is ten megabytes. (A 4 KiB array in the close once made it 5 KiB.)
    #[tokio::test]
    async fn a_connection_future_stays_small() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (stream, peer) = listener.accept().await.unwrap();
        let stats = Stats::new();
        let (ingress, _fan_in) = priority_fan_in(64, 64, 256, stats.clone());
        let drain = CancellationToken::new();
        let router = RouterHandle::spawn(
            vec![ingress],
            stats.clone(),
            drain.clone(),
            Default::default(),
        );
        let services = Arc::new(Services {
            config: Arc::new(Config::default()),
            router,
            stats,
            drain,
            storage_lost: vec![CancellationToken::new()],
            read_credits: vec![ReadCredits::new(1, 1)],
            catalog: CatalogHandle::in_memory(1024),
            tls: None,
            shards: Vec::new(),
            fleet: None,
            replication: None,
        });
        let future = serve(stream, peer, SourceKind::LiveUplink, services);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 2048, "the connection future is {size} bytes");
    }
}
