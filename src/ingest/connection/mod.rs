//! One source connection: handshake, ingest with backpressure, acknowledgements, and the close.
//!
//! A connection reads its socket only when everything it read before has been admitted into the
//! fan-in. When the pipeline is saturated it stops reading, the kernel's receive buffer fills, and
//! TCP flow control slows the sender: that is the whole backpressure path. How much it reads at a
//! time, and when its turn comes with many busy sources, is the read credits' business
//! ([`crate::ingest::read_credit`]), which bound the read buffers of all connections together.
//!
//! Each read is decoded at once into batches; the emergency batches of a read are admitted before
//! its routine ones, into their own lane, so an emergency is never held behind its own source's
//! blocked routine frames.
//!
//! Every frame decoded from the socket (and not a duplicate) is accepted: whatever ends the
//! connection, be it the drain, the peer closing, or bad input, what was accepted is admitted,
//! processed and archived, and the last message on the connection says up to which sequence.
//!
//! The rooms: [`wire`] (the socket and every write), [`handshake`] (the HELLO and every refusal),
//! [`intake`] (reads into batches and ledger runs), [`acks`] (ACK pacing); this file runs the
//! connection from its registration to its close.

mod acks;
mod catalog;
mod handshake;
mod intake;
mod wire;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::catalog::CatalogHandle;
use crate::config::Config;
use crate::domain::frame::SourceKind;
use crate::domain::source::Source;
use crate::ingest::read_credit::ReadCredits;
use crate::ingest::router::{RegisterError, Registration, RouterHandle};
use crate::protocol::ingest::{CloseReason, ProtocolError, RefuseReason, ServerMessage};
use crate::stats::Stats;
use crate::tls::auth::PeerIdentity;
use crate::tls::stream;
use crate::tls::ServerTls;
use acks::Acks;
use catalog::{CatalogOut, Step};
use handshake::{handshake, refuse, Refusal};
use intake::Intake;
use wire::Wire;

/// What every connection task shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: Arc<Config>,
    pub router: RouterHandle,
    pub stats: Stats,
    pub drain: CancellationToken,
    /// Cancelled by the archive when it gives up on frames it cannot store (a drain during a disk
    /// outage): connections stop waiting for their acknowledgement.
    pub storage_lost: CancellationToken,
    /// Each shard's read credits (`read_credits[k]` is shard `k`'s).
    pub read_credits: Vec<ReadCredits>,
    pub catalog: CatalogHandle,
    /// The listeners' TLS, when `[tls]` is configured.
    pub tls: Option<Arc<ServerTls>>,
    /// Each shard's runtime (`shards[k]` is shard `k`'s): a registered connection is served on
    /// its shard's. Empty: on the caller's runtime.
    pub shards: Vec<tokio::runtime::Handle>,
}

/// Why an accepted connection ended.
#[derive(Debug)]
enum Ending {
    Shutdown,
    EndOfStream,
    Idle,
    Protocol(ProtocolError),
    UnexpectedHello,
    Io(io::Error),
    PipelineClosed,
}

impl Ending {
    /// A read that ends the stream: the peer closed its side (cleanly, or in the middle of a frame
    /// with `buffered` bytes of it read), or the socket failed.
    fn of_read(read: io::Result<usize>, buffered: usize) -> Ending {
        match read {
            Ok(0) if buffered == 0 => Ending::EndOfStream,
            Ok(_) => Ending::Protocol(ProtocolError::Truncated { buffered }),
            Err(err) => Ending::Io(err),
        }
    }

    fn close_reason(&self) -> CloseReason {
        match self {
            Ending::Shutdown | Ending::PipelineClosed => CloseReason::Shutdown,
            Ending::EndOfStream | Ending::Io(_) => CloseReason::EndOfStream,
            Ending::Idle => CloseReason::IdleTimeout,
            Ending::Protocol(err) => err.close_reason(),
            Ending::UnexpectedHello => CloseReason::UnexpectedMessage,
        }
    }

    fn detail(&self, config: &Config) -> String {
        match self {
            Ending::Shutdown | Ending::PipelineClosed => "the daemon is shutting down".into(),
            Ending::EndOfStream => "end of stream".into(),
            Ending::Idle => format!(
                "nothing received for {} ms",
                config.connection.idle_timeout.as_millis()
            ),
            Ending::Protocol(err) => err.to_string(),
            Ending::UnexpectedHello => "a second HELLO on an open connection".into(),
            Ending::Io(err) => err.to_string(),
        }
    }
}

/// Serves one accepted TCP connection on the listener for `listener` sources.
#[tracing::instrument(name = "conn", skip_all, fields(%peer, listener = listener.as_str(), source_id))]
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    listener: SourceKind,
    shared: Arc<Shared>,
) {
    // Boxed: the handshake's state would otherwise take room in this task's future for the
    // connection's whole life, while all the task does after it is wait for the connection's task
    // on its shard.
    let Some((wire, registration, catalog)) =
        Box::pin(admit(stream, peer, listener, &shared)).await
    else {
        return;
    };
    let key = (registration.source.kind, registration.source.id);
    let shard = registration.shard;
    // The rest of the connection runs on its shard's thread, beside the shard's pipeline.
    match shared.shards.get(shard) {
        Some(runtime) => {
            let serving = {
                let shared = Arc::clone(&shared);
                async move {
                    match wire.rehome() {
                        Ok(wire) => ingest(wire, registration, catalog, &shared).await,
                        Err(err) => {
                            tracing::error!(
                                shard,
                                error = %err,
                                "cannot move the connection to its shard; closed"
                            );
                            let _ = shared.router.deregister(key).await;
                        }
                    }
                }
                .in_current_span()
            };
            if let Err(err) = runtime.spawn(serving).await {
                tracing::error!(shard, error = %err, "the connection's task on its shard failed");
                let _ = shared.router.deregister(key).await;
            }
        }
        // Boxed: a connection served on a shard's thread does without it.
        None => Box::pin(ingest(wire, registration, catalog, &shared)).await,
    }
}

/// From the accepted socket to the WELCOME: the TLS handshake, the HELLO and the registration;
/// `None` once the connection is refused and closed.
async fn admit(
    stream: TcpStream,
    peer: SocketAddr,
    listener: SourceKind,
    shared: &Shared,
) -> Option<(Wire, Registration, CatalogOut)> {
    let (mut wire, identity) = open(stream, peer, shared).await?;

    let hello = match handshake(&mut wire, listener, identity.as_ref(), shared).await {
        Ok(hello) => hello,
        Err(refusal) => {
            refuse(&mut wire, peer, shared, refusal).await;
            return None;
        }
    };
    tracing::Span::current().record("source_id", hello.source_id);

    let registration = match shared
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
            refuse(&mut wire, peer, shared, refusal).await;
            return None;
        }
    };
    wire.send(&ServerMessage::Welcome {
        version: hello.version,
        resume_after: registration.source.last_acked(),
    })
    .await;
    registration.source.takes_catalogs();
    let catalog = CatalogOut::new(Some(shared.catalog.subscribe()));
    Some((wire, registration, catalog))
}

/// From the WELCOME to the close: the ingest loop and the last acknowledgement, then the source is
/// deregistered before the lingering close, so that it may connect again as soon as it has its
/// CLOSE.
async fn ingest(mut wire: Wire, registration: Registration, catalog: CatalogOut, shared: &Shared) {
    let source = Arc::clone(&registration.source);
    let (end, ack_sent) = stream_frames(&mut wire, registration, catalog, shared).await;
    finish(&mut wire, &source, ack_sent, end, shared).await;
    let _ = shared.router.deregister((source.kind, source.id)).await;
    wire.close().await;
}

/// Refuses a connection the listener will not serve (it is at its connection limit) before any
/// HELLO is read, through the same REFUSED, log line, counter and lingering close as every refusal.
#[tracing::instrument(name = "conn", skip_all, fields(%peer, listener = listener.as_str()))]
pub(crate) async fn refuse_over_limit(
    stream: TcpStream,
    peer: SocketAddr,
    listener: SourceKind,
    limit: usize,
    shared: Arc<Shared>,
) {
    let Some((mut wire, _)) = open(stream, peer, &shared).await else {
        return;
    };
    let detail = format!("the listener is at its limit of {limit} connections");
    let refusal = Refusal::Refuse(RefuseReason::TooManyConnections, detail);
    refuse(&mut wire, peer, &shared, refusal).await;
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
    shared: &Shared,
) -> Option<(Wire, Option<PeerIdentity>)> {
    let patience = shared.config.connection.handshake_timeout;
    let accepted = tokio::select! {
        biased;
        accepted = stream::accept(stream, shared.tls.as_deref(), patience) => accepted,
        _ = shared.drain.cancelled() => {
            tracing::debug!("the drain started during the TLS handshake; connection closed");
            return None;
        }
    };
    match accepted {
        Ok(accepted) => Some((
            Wire::new(accepted.reader, accepted.writer, shared),
            accepted.identity,
        )),
        Err(err) => {
            shared.stats.tls_handshake_failed();
            tracing::warn!(%peer, error = %err, "TLS handshake failed; connection closed");
            None
        }
    }
}

/// The ingest loop of a connection. Returns why it ended and the last acknowledgement sent.
async fn stream_frames(
    wire: &mut Wire,
    registration: Registration,
    mut catalog: CatalogOut,
    shared: &Shared,
) -> (Ending, Option<u64>) {
    let cfg = &shared.config;
    let Registration {
        source,
        ingress,
        already_stored,
        shard,
        ..
    } = registration;
    let mut intake = Intake::new(&source, shared, shard, already_stored);
    let mut acks = Acks {
        shared,
        sent: source.last_acked(),
        next_send: Instant::now(),
    };
    let mut turn = shared.read_credits[shard % shared.read_credits.len()].turn();
    let idle_timeout = cfg.connection.idle_timeout;
    let max_frame_length = cfg.connection.max_frame_length;
    // Whatever the source sent right behind its HELLO.
    let mut end = intake.take(&mut wire.buf, max_frame_length, &ingress).err();
    let mut last_activity = Instant::now();
    // Pinned once: a fresh `cancelled()` per pass would join and leave the token's waiter list
    // every time.
    let drain = shared.drain.cancelled();
    tokio::pin!(drain);
    let idle = tokio::time::sleep(idle_timeout);
    tokio::pin!(idle);
    // One timer, re-armed only when an earlier wake-up is needed: registering a fresh timer on
    // every pass would cost more than the batch it paces.
    let recheck_timer = tokio::time::sleep(Duration::ZERO);
    tokio::pin!(recheck_timer);
    let mut recheck_armed = false;

    loop {
        if let Some(version) = intake.catalog_ack.take() {
            catalog_acked(&catalog, version, &source, shared);
        }
        let staged = ingress.has_staged();
        // The read's credit goes back before anything is written, nothing is written while a
        // read's frames wait for admission (which holds its credit), and a write that has to wait
        // leaves the read line: a write waits for the peer to read, and a peer that does not read
        // would otherwise hold a credit, and the turn of every source waiting in line, for as
        // long as the write may wait.
        if !staged {
            turn.release(&mut wire.buf);
            // Nothing may be written inside a catalog message that is part-written.
            if !catalog.is_writing() {
                if let Some(token) = intake.pong.take() {
                    let pong = ServerMessage::Pong(token);
                    wire.send_or_wait(&pong, || turn.leave_line()).await;
                }
                let leave_line = || turn.leave_line();
                if let Some(at) = acks.update(wire, &source, recheck_armed, leave_line).await {
                    if !recheck_armed || at < recheck_timer.deadline() {
                        recheck_timer.as_mut().reset(at);
                        recheck_armed = true;
                    }
                }
            }
            if end.is_some() {
                break;
            }
        }
        let reading = end.is_none() && !staged;
        tokio::select! {
            biased;
            _ = &mut drain, if end.is_none() => end = Some(Ending::Shutdown),
            // Waiting for room is not idleness: the idle clock restarts once all is admitted.
            _ = ingress.drained(), if staged => last_activity = Instant::now(),
            step = catalog.step(&mut wire.writer), if catalog.is_active() && !wire.writer_broken => {
                if let Step::Failed(err) = step {
                    tracing::debug!(error = %err, "peer stopped reading while a catalog was sent");
                    wire.writer_broken = true;
                }
            }
            read = turn.read(&mut wire.reader, &mut wire.buf), if reading => match read {
                Ok(1..) => {
                    last_activity = Instant::now();
                    end = intake.take(&mut wire.buf, max_frame_length, &ingress).err();
                }
                read => end = Some(Ending::of_read(read, wire.buf.len())),
            },
            _ = &mut recheck_timer, if recheck_armed => recheck_armed = false,
            // Waiting in line for a read credit is not idleness either, nor is a source waiting
            // for the acknowledgement of what it sent (a slow or failing disk).
            _ = &mut idle, if reading && !turn.is_waiting() => {
                if !source.is_settled() {
                    last_activity = Instant::now();
                }
                end = idle_check(idle.as_mut(), last_activity + idle_timeout);
            }
        }
    }
    drop(ingress);
    // The rest of a catalog in progress goes before the final ACK and the CLOSE.
    if let Some(rest) = catalog.take_rest() {
        wire.write(&rest).await;
    }
    let end = end.unwrap_or(Ending::PipelineClosed);
    (end, acks.sent)
}

/// A CATALOG_ACK: the source holds `version`, if it was sent on this connection. One that names a
/// version never sent is counted as a protocol error and logged, and the connection goes on: the
/// frames it carries are not at fault.
fn catalog_acked(catalog: &CatalogOut, version: u64, source: &Source, shared: &Shared) {
    if catalog.was_sent(version) {
        source.holds_catalog(version);
    } else {
        shared.stats.protocol_error();
        tracing::warn!(
            version,
            "CATALOG_ACK for a catalog version never sent on this connection; ignored"
        );
    }
}

/// The idle timer fired: the connection is idle if nothing happened until `quiet_until`; if
/// something did, the timer waits for that moment.
fn idle_check(
    idle: std::pin::Pin<&mut tokio::time::Sleep>,
    quiet_until: Instant,
) -> Option<Ending> {
    if Instant::now() >= quiet_until {
        return Some(Ending::Idle);
    }
    idle.reset(quiet_until);
    None
}

/// Waits (within the drain deadline) until everything accepted is stored, then sends the final
/// acknowledgement and the CLOSE, and logs why the connection ended.
async fn finish(
    wire: &mut Wire,
    source: &Source,
    ack_sent: Option<u64>,
    end: Ending,
    shared: &Shared,
) {
    let cfg = &shared.config;
    let stored = wait_until_stored(source, shared).await;
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
            shared.stats.protocol_error();
            tracing::warn!(reason = %detail, acked = acked, "closing connection on bad input");
        }
    }
    // Bad input is what the source must hear of; otherwise, that what it sent was not all stored.
    if !stored && !matches!(end, Ending::Protocol(_) | Ending::UnexpectedHello) {
        reason = CloseReason::StorageUnavailable;
        detail = format!("{detail}; frames above the final acknowledgement were not stored");
    }
    wire.send(&ServerMessage::Close {
        reason,
        final_ack: acked,
        detail,
    })
    .await;
}

/// Waits until every frame the source sent is stored; `false` when the archive gave up on them,
/// or the drain deadline passed, first.
async fn wait_until_stored(source: &Source, shared: &Shared) -> bool {
    let deadline = shared.config.shutdown.drain_deadline;
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
            _ = shared.storage_lost.cancelled() => {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::read_credit::ReadCredits;
    use crate::pipeline::fan_in::priority_fan_in;
    use tokio::net::TcpListener;

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
        let shared = Arc::new(Shared {
            config: Arc::new(Config::default()),
            router,
            stats,
            drain,
            storage_lost: CancellationToken::new(),
            read_credits: vec![ReadCredits::new(1, 1)],
            catalog: CatalogHandle::in_memory(1024),
            tls: None,
            shards: Vec::new(),
        });
        let future = serve(stream, peer, SourceKind::LiveUplink, shared);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 2048, "the connection future is {size} bytes");
    }
}
