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

use std::io;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;

use crate::archive::sequence_set::SequenceSet;
use crate::config::Config;
use crate::ingest::ledger::Run;
use crate::ingest::protocol::{
    walk_messages, ClientMessage, CloseReason, Hello, MessageView, ProtocolError, RefuseReason,
    ServerMessage, DATA_HEADER, VERSION,
};
use crate::ingest::read_credit::{make_room, ReadCredits, ReadTurn, SMALL_READ};
use crate::ingest::router::{RegisterError, Registration, RouterHandle};
use crate::ingest::source::Source;
use crate::ops::stats::Stats;
use crate::pipeline::batch::Batch;
use crate::pipeline::fan_in::Ingress;
use crate::pipeline::frame::{Priority, SourceKind};

/// How long a closing connection waits for the peer to close its side.
const LINGER: Duration = Duration::from_millis(200);

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
    pub read_credits: ReadCredits,
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

/// The socket halves and the read buffer, with the writes the daemon makes.
struct Wire {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    /// How long a peer may keep a write waiting before it counts as gone.
    write_timeout: Duration,
    /// Once the drain has started, what is left of a write's patience: a peer that does not read
    /// must not hold the drain past its deadline.
    drain: CancellationToken,
    drain_write_budget: Duration,
    /// Set after a failed or abandoned write: the peer is gone (or the stream is cut mid-message),
    /// so nothing more is written.
    writer_broken: bool,
}

impl Wire {
    fn new(stream: TcpStream, shared: &Shared) -> Wire {
        let _ = stream.set_nodelay(true);
        let (reader, writer) = stream.into_split();
        Wire {
            reader,
            writer,
            buf: BytesMut::new(),
            write_timeout: shared.config.connection.idle_timeout,
            drain: shared.drain.clone(),
            drain_write_budget: shared.config.shutdown.drain_deadline / 4,
            writer_broken: false,
        }
    }

    async fn send(&mut self, message: &ServerMessage) {
        let mut out = BytesMut::with_capacity(64);
        message.encode(&mut out);
        self.write(&out).await;
    }

    async fn write(&mut self, bytes: &[u8]) {
        if self.writer_broken {
            return;
        }
        let budget = self.drain_write_budget;
        let write = self.writer.write_all(bytes);
        tokio::pin!(write);
        let written = tokio::select! {
            biased;
            written = timeout(self.write_timeout, &mut write) => written,
            _ = self.drain.cancelled() => timeout(budget, &mut write).await,
        };
        if !matches!(written, Ok(Ok(()))) {
            tracing::debug!("peer stopped reading; no further messages sent");
            self.writer_broken = true;
        }
    }

    /// Shuts the sending side, then reads and discards until the peer closes too (or briefly
    /// gives up). Closing a socket that still has unread input makes the kernel reset the
    /// connection, and a reset can destroy the REFUSED or CLOSE still on its way to the peer: the
    /// very message that tells it which frames were accepted.
    async fn close(&mut self) {
        if !self.writer_broken {
            let _ = timeout(self.drain_write_budget, self.writer.shutdown()).await;
        }
        // On the heap: an array here would sit in every connection's future for its whole life.
        let mut scratch = vec![0u8; 4096];
        let drain_input = async { while let Ok(1..) = self.reader.read(&mut scratch).await {} };
        let _ = timeout(self.drain_write_budget.min(LINGER), drain_input).await;
    }

    /// Reads a small buffer's worth: the handshake, before the connection has a place in the
    /// read line.
    async fn read_small(&mut self) -> io::Result<usize> {
        make_room(&mut self.buf, SMALL_READ);
        let spare = self.buf.capacity() - self.buf.len();
        let mut limited = (&mut self.reader).take(spare.min(SMALL_READ) as u64);
        limited.read_buf(&mut self.buf).await
    }

    /// Reads when `turn` allows, as much as it allows.
    async fn read_turn(&mut self, turn: &mut ReadTurn) -> io::Result<usize> {
        turn.read(&mut self.reader, &mut self.buf).await
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
    let mut wire = Wire::new(stream, &shared);

    let Some(hello) = handshake(&mut wire, listener, &shared).await else {
        wire.close().await;
        return;
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
            refuse(&mut wire, &shared, reason, err.to_string(), false).await;
            return;
        }
    };
    wire.send(&ServerMessage::Welcome {
        version: VERSION,
        resume_after: registration.source.last_acked(),
    })
    .await;

    let key = (registration.source.kind, registration.source.id);
    let source = Arc::clone(&registration.source);
    let (end, ack_sent) = stream_frames(&mut wire, registration, &shared).await;
    finish(&mut wire, &source, ack_sent, end, &shared).await;
    let _ = shared.router.deregister(key).await;
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
    let mut wire = Wire::new(stream, &shared);
    let detail = format!("the listener is at its limit of {limit} connections");
    refuse(
        &mut wire,
        &shared,
        RefuseReason::TooManyConnections,
        detail,
        false,
    )
    .await;
}

/// Waits for a valid hello and consumes it from the read buffer; anything the source sent behind
/// it stays there for the ingest loop. `None` means the connection was refused or closed.
async fn handshake(wire: &mut Wire, listener: SourceKind, shared: &Shared) -> Option<Hello> {
    let cfg = &shared.config.connection;
    let deadline = Instant::now() + cfg.handshake_timeout;
    let first = loop {
        let mut first = None;
        let walk = walk_messages(&wire.buf, cfg.max_frame_length, |_, body| {
            first = Some(ClientMessage::view(body));
            ControlFlow::Break(())
        });
        if let Some(first) = first {
            wire.buf.advance(walk.end);
            break first;
        }
        if let Some(err) = walk.oversize {
            let detail = format!("expected HELLO: {err}");
            refuse(wire, shared, RefuseReason::HelloExpected, detail, true).await;
            return None;
        }
        let read = tokio::select! {
            _ = shared.drain.cancelled() => {
                let detail = "the daemon is shutting down".to_string();
                refuse(wire, shared, RefuseReason::ShuttingDown, detail, false).await;
                return None;
            }
            _ = sleep_until(deadline) => {
                let detail = format!("no HELLO within {} ms", cfg.handshake_timeout.as_millis());
                refuse(wire, shared, RefuseReason::HandshakeTimeout, detail, true).await;
                return None;
            }
            read = wire.read_small() => read,
        };
        match read {
            Ok(0) if wire.buf.is_empty() => {
                tracing::debug!("closed before sending a HELLO");
                return None;
            }
            Ok(0) => {
                let err = ProtocolError::Truncated {
                    buffered: wire.buf.len(),
                };
                let detail = format!("expected HELLO: {err}");
                refuse(wire, shared, RefuseReason::HelloExpected, detail, true).await;
                return None;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(error = %err, "read failed before the HELLO");
                return None;
            }
        }
    };

    let hello = match first {
        Ok(MessageView::Hello(hello)) => hello,
        Ok(MessageView::Data { .. }) => {
            let detail = "DATA before HELLO".to_string();
            refuse(wire, shared, RefuseReason::HelloExpected, detail, true).await;
            return None;
        }
        Err(err) => {
            let detail = format!("expected HELLO: {err}");
            refuse(wire, shared, RefuseReason::HelloExpected, detail, true).await;
            return None;
        }
    };
    if hello.version != VERSION {
        let detail = format!(
            "protocol version {} is not supported (this daemon speaks {VERSION})",
            hello.version
        );
        refuse(
            wire,
            shared,
            RefuseReason::UnsupportedVersion,
            detail,
            false,
        )
        .await;
        return None;
    }
    if hello.kind != listener {
        let detail = format!(
            "a {} source cannot connect to the {} listener",
            hello.kind.as_str(),
            listener.as_str()
        );
        refuse(wire, shared, RefuseReason::WrongKind, detail, false).await;
        return None;
    }
    Some(hello)
}

/// Sends a refusal, logs it and counts it: as a protocol error when the peer broke the protocol,
/// as a refused connection when it asked for something the daemon will not give.
async fn refuse(
    wire: &mut Wire,
    shared: &Shared,
    reason: RefuseReason,
    detail: String,
    protocol_error: bool,
) {
    if protocol_error {
        shared.stats.protocol_error();
    } else {
        shared.stats.refused();
    }
    tracing::warn!(%reason, %detail, "connection refused");
    wire.send(&ServerMessage::Refused { reason, detail }).await;
    wire.close().await;
}

/// Turns the frames of socket reads into batches, recording their arrival order in the source's
/// acknowledgement ledger.
///
/// A read's frames go into batches by lane: its emergencies into emergency batches, its routine
/// frames into routine batches, each up to `max_batch` frames. Batching only runs of consecutive
/// frames of one priority would cut the routine frames at every emergency among them: at 1 %
/// emergencies, twice the batches, and every batch costs a pass through the fan-in, the processor
/// and the archive. Arrival order is what acknowledgements need, and the ledger keeps it: one
/// [`Run`] per stretch of one priority.
struct Intake {
    source: Arc<Source>,
    stats: Stats,
    max_batch: usize,
    last_sequence: Option<u64>,
    /// Stored above the resume point before this connection (see
    /// [`crate::ingest::router::ResumePoint`]); emptied once
    /// the source is past the highest of them.
    already_stored: Arc<SequenceSet>,
}

/// One of each per lane.
#[derive(Default)]
struct Lanes<T> {
    emergency: T,
    routine: T,
}

impl<T> Lanes<T> {
    fn get_mut(&mut self, priority: Priority) -> &mut T {
        match priority {
            Priority::Emergency => &mut self.emergency,
            Priority::Routine => &mut self.routine,
        }
    }
}

impl Intake {
    /// Accepts every complete frame at the front of `buf` up to the first bad message, whose
    /// error is returned, cuts them off the buffer in one piece that their batches share, and
    /// stages the batches in the fan-in, emergencies first.
    fn take(
        &mut self,
        buf: &mut BytesMut,
        max_frame_length: usize,
        ingress: &Ingress,
    ) -> Result<(), Ending> {
        let decoded_at = std::time::Instant::now();
        // Per read, not kept in the intake: with 10,000 connections, the kilobytes of room each
        // would keep add up to tens of megabytes.
        let mut runs: Vec<Run> = Vec::new();
        let mut sealed: Lanes<Vec<Batch>> = Lanes::default();
        let mut open: Lanes<Option<Batch>> = Lanes::default();
        let (mut accepted, mut duplicates) = (0u64, 0u64);
        let mut failure = None;
        let walk = walk_messages(buf, max_frame_length, |offset, body| {
            let (priority, sequence) = match ClientMessage::view(body) {
                Ok(MessageView::Data { priority, sequence }) => (priority, sequence),
                Ok(MessageView::Hello(_)) => {
                    failure = Some(Ending::UnexpectedHello);
                    return ControlFlow::Break(());
                }
                Err(err) => {
                    failure = Some(Ending::Protocol(err));
                    return ControlFlow::Break(());
                }
            };
            match self.seen(sequence) {
                Seen::New => {}
                seen => {
                    duplicates += 1;
                    self.last_sequence = self.last_sequence.max(Some(sequence));
                    if seen == Seen::Stored {
                        // Stored before this connection: where it arrived, the acknowledgement
                        // may pass it without waiting, or a source whose last frames were stored
                        // but not acknowledged would never hear that they were.
                        match runs.last_mut() {
                            Some(run) if run.frames == 0 => run.last_sequence = sequence,
                            _ => runs.push(Run {
                                priority,
                                frames: 0,
                                last_sequence: sequence,
                            }),
                        }
                    }
                    return ControlFlow::Continue(());
                }
            }
            self.last_sequence = Some(sequence);
            accepted += 1;
            let slot = open.get_mut(priority);
            let new_batch = slot.as_ref().is_none_or(|b| b.len() >= self.max_batch);
            if new_batch {
                if let Some(full) = slot.take() {
                    sealed.get_mut(priority).push(full);
                }
                let source = Arc::clone(&self.source);
                *slot = Some(Batch::new(source, priority, decoded_at, self.max_batch));
            }
            if let Some(batch) = slot.as_mut() {
                batch.push(sequence, offset + DATA_HEADER..offset + body.len());
            }
            // A run never spans two batches: the archive marks runs by the batch that stored them.
            match runs.last_mut() {
                Some(run) if run.priority == priority && run.frames > 0 && !new_batch => {
                    run.frames += 1;
                    run.last_sequence = sequence;
                }
                _ => runs.push(Run {
                    priority,
                    frames: 1,
                    last_sequence: sequence,
                }),
            }
            ControlFlow::Continue(())
        });
        let Lanes {
            mut emergency,
            mut routine,
        } = sealed;
        emergency.extend(open.emergency);
        routine.extend(open.routine);
        // In the ledger before the fan-in: the archive may store them as soon as they are admitted.
        if !runs.is_empty() {
            self.source.record(&runs);
        }
        let chunk = buf.split_to(walk.end).freeze();
        self.stats.accepted(accepted);
        let batches = emergency.into_iter().chain(routine).map(|mut batch| {
            batch.attach(chunk.clone());
            batch
        });
        if ingress.stage(batches).is_err() {
            return Err(Ending::PipelineClosed);
        }
        if duplicates > 0 {
            self.stats.duplicates(duplicates);
            tracing::debug!(
                duplicates,
                "dropped frames at or below an accepted sequence"
            );
        }
        match failure.or(walk.oversize.map(Ending::Protocol)) {
            Some(ending) => Err(ending),
            None => Ok(()),
        }
    }

    /// Whether `sequence` is new, at or below a sequence already accepted (or acknowledged), or
    /// above those and stored before this connection.
    fn seen(&mut self, sequence: u64) -> Seen {
        if self.last_sequence.is_some_and(|last| sequence <= last) {
            return Seen::Acked;
        }
        match self.already_stored.last() {
            None => Seen::New,
            Some(highest) if sequence > highest => {
                self.already_stored = Arc::default();
                Seen::New
            }
            Some(_) if self.already_stored.contains(sequence) => Seen::Stored,
            Some(_) => Seen::New,
        }
    }
}

/// What a connection knows of a sequence it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    New,
    /// At or below what this connection accepted or resumed after: a duplicate the
    /// acknowledgement already covers, or will once what came before it is stored.
    Acked,
    /// Above that, and stored before this connection (by an earlier one, or before a restart).
    Stored,
}

/// Acknowledgement pacing: at most one ACK per interval, and a timer to look for progress while
/// frames are outstanding and nothing else wakes the connection.
struct Acks<'a> {
    shared: &'a Shared,
    sent: Option<u64>,
    next_send: Instant,
}

impl Acks<'_> {
    /// This connection's share of the ACK budget, re-read as connections come and go.
    fn interval(&self) -> Duration {
        let connections = self.shared.stats.active_sources();
        self.shared.config.ack_interval(connections)
    }

    /// Sends an ACK if the acknowledgement moved and the interval allows. Returns a wake-up to arm
    /// when one is due and `timer_armed` does not already cover it; reads the clock only when it
    /// must.
    async fn update(
        &mut self,
        wire: &mut Wire,
        source: &Source,
        timer_armed: bool,
    ) -> Option<Instant> {
        let acked = source.last_acked();
        let ack_due = acked != self.sent;
        if !ack_due && (timer_armed || source.is_settled()) {
            return None;
        }
        let now = Instant::now();
        if ack_due && now >= self.next_send {
            if let Some(sequence) = acked {
                wire.send(&ServerMessage::Ack { sequence }).await;
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

/// The ingest loop. Returns why it ended and the last acknowledgement sent.
async fn stream_frames(
    wire: &mut Wire,
    registration: Registration,
    shared: &Shared,
) -> (Ending, Option<u64>) {
    let cfg = &shared.config;
    let Registration {
        source,
        ingress,
        already_stored,
    } = registration;
    let mut intake = Intake {
        source: Arc::clone(&source),
        stats: shared.stats.clone(),
        max_batch: cfg.pipeline.max_batch_frames,
        // Frames of an earlier connection may still be on their way to the archive: their resent
        // copies are duplicates too.
        last_sequence: source.ledger().accepted(),
        already_stored,
    };
    let mut acks = Acks {
        shared,
        sent: source.last_acked(),
        next_send: Instant::now(),
    };
    let mut turn = shared.read_credits.turn();
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
        if let Some(at) = acks.update(wire, &source, recheck_armed).await {
            if !recheck_armed || at < recheck_timer.deadline() {
                recheck_timer.as_mut().reset(at);
                recheck_armed = true;
            }
        }
        let staged = ingress.has_staged();
        if !staged {
            turn.release(&mut wire.buf);
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
            read = wire.read_turn(&mut turn), if reading => match read {
                Ok(0) if wire.buf.is_empty() => end = Some(Ending::EndOfStream),
                Ok(0) => end = Some(Ending::Protocol(ProtocolError::Truncated { buffered: wire.buf.len() })),
                Ok(_) => {
                    last_activity = Instant::now();
                    end = intake.take(&mut wire.buf, max_frame_length, &ingress).err();
                }
                Err(err) => end = Some(Ending::Io(err)),
            },
            _ = &mut recheck_timer, if recheck_armed => recheck_armed = false,
            // Waiting in line for a read credit is not idleness either, nor is a source waiting
            // for the acknowledgement of what it sent (a slow or failing disk).
            _ = &mut idle, if reading && !turn.is_waiting() => {
                if !source.is_settled() {
                    last_activity = Instant::now();
                }
                let quiet_until = last_activity + idle_timeout;
                if Instant::now() >= quiet_until {
                    end = Some(Ending::Idle);
                } else {
                    idle.as_mut().reset(quiet_until);
                }
            }
        }
    }
    drop(ingress);
    let end = end.unwrap_or(Ending::PipelineClosed);
    (end, acks.sent)
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
            tracing::debug!(acked = ?acked, "connection drained")
        }
        Ending::EndOfStream => {
            tracing::info!(acked = ?acked, "source closed the connection")
        }
        Ending::Io(err) => tracing::info!(error = %err, acked = ?acked, "connection lost"),
        Ending::Idle | Ending::Protocol(_) | Ending::UnexpectedHello => {
            shared.stats.protocol_error();
            tracing::warn!(reason = %detail, acked = ?acked, "closing connection on bad input");
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
    wire.close().await;
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
                    acked = ?source.last_acked(),
                    "the archive cannot store this source's last frames; closing without their acknowledgement"
                );
                return source.is_settled();
            }
            _ = &mut give_up => {
                tracing::error!(
                    acked = ?source.last_acked(),
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
        let router = RouterHandle::spawn(ingress, stats.clone(), drain.clone(), Default::default());
        let shared = Arc::new(Shared {
            config: Arc::new(Config::default()),
            router,
            stats,
            drain,
            storage_lost: CancellationToken::new(),
            read_credits: ReadCredits::new(1, 1),
        });
        let future = serve(stream, peer, SourceKind::LiveUplink, shared);
        let size = std::mem::size_of_val(&future);
        assert!(size <= 2048, "the connection future is {size} bytes");
    }

    /// A read's frames go into one batch per lane, not one per run of a priority, and the
    /// acknowledgement still follows arrival order.
    #[tokio::test]
    async fn a_read_is_batched_by_lane_and_acknowledged_in_arrival_order() {
        use crate::ingest::protocol::encode_data;
        let source = uplink(None);
        let (ingress, mut fan_in) = priority_fan_in(64, 64, 256, Stats::new());
        let mut intake = intake(&source, 64);
        let (e, r) = (Priority::Emergency, Priority::Routine);
        let mut buf = BytesMut::new();
        for (sequence, priority) in [r, r, e, r, r, e, r].into_iter().enumerate() {
            encode_data(&mut buf, priority, sequence as u64, b"x");
        }
        assert!(intake.take(&mut buf, 1024, &ingress).is_ok());
        assert!(buf.is_empty());

        let emergency = fan_in.next().await.unwrap();
        let routine = fan_in.next().await.unwrap();
        let sequences = |batch: &Batch| batch.payloads().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(emergency.item.priority, e);
        assert_eq!(sequences(&emergency.item), [2, 5]);
        assert_eq!(routine.item.priority, r);
        assert_eq!(sequences(&routine.item), [0, 1, 3, 4, 6]);

        source.stored(routine.item.span().unwrap());
        assert_eq!(
            source.last_acked(),
            Some(1),
            "2 (an emergency) is not stored"
        );
        source.stored(emergency.item.span().unwrap());
        assert_eq!(source.last_acked(), Some(6));
        assert!(source.is_settled());
    }

    /// Frames stored before the connection (above its resume point) that the source resends are
    /// dropped, and the acknowledgement passes them where they arrived: at once when nothing
    /// unstored comes before them, or else once that is stored.
    #[tokio::test]
    async fn resent_frames_stored_before_are_dropped_and_acknowledged() {
        use crate::ingest::protocol::encode_data;
        let source = uplink(Some(2));
        let (ingress, mut fan_in) = priority_fan_in(64, 64, 256, Stats::new());
        let mut stored = SequenceSet::default();
        stored.insert_run(3, 4);
        stored.insert_run(6, 6);
        let mut intake = intake(&source, 64);
        intake.already_stored = Arc::new(stored);
        let r = Priority::Routine;
        let mut read = |sequences: &[u64]| {
            let mut buf = BytesMut::new();
            for &sequence in sequences {
                encode_data(&mut buf, r, sequence, b"x");
            }
            assert!(intake.take(&mut buf, 1024, &ingress).is_ok());
        };

        read(&[3, 4]);
        assert_eq!(source.last_acked(), Some(4), "nothing to wait for");
        assert!(source.is_settled());

        read(&[5, 6, 7]);
        let batch = fan_in.next().await.unwrap();
        let sequences: Vec<_> = batch.item.payloads().map(|(s, _)| s).collect();
        assert_eq!(sequences, [5, 7], "6 was stored before");
        assert_eq!(source.last_acked(), Some(4), "5 is not stored yet");
        source.stored(batch.item.span().unwrap());
        assert_eq!(source.last_acked(), Some(7));
        assert!(source.is_settled());
    }

    /// A connection's intake for `source`, in batches of up to `max_batch` frames.
    fn intake(source: &Arc<Source>, max_batch: usize) -> Intake {
        Intake {
            source: Arc::clone(source),
            stats: Stats::new(),
            max_batch,
            last_sequence: source.ledger().accepted(),
            already_stored: Arc::default(),
        }
    }

    /// Live uplink 7, connected, with every frame up to `acked` stored.
    fn uplink(acked: Option<u64>) -> Arc<Source> {
        let peer = "127.0.0.1:1".parse().unwrap();
        let ledger = Arc::new(crate::ingest::ledger::Ledger::new(acked));
        Arc::new(Source::new(7, SourceKind::LiveUplink, peer, ledger))
    }

    /// A lane's frames beyond one batch go into the next, and the runs follow the batches: a
    /// stored batch moves the acknowledgement over exactly its own frames.
    #[tokio::test]
    async fn runs_never_span_two_batches() {
        use crate::ingest::protocol::encode_data;
        let source = uplink(None);
        let (ingress, mut fan_in) = priority_fan_in(64, 64, 256, Stats::new());
        let mut intake = intake(&source, 4);
        let mut buf = BytesMut::new();
        for sequence in 0..8 {
            encode_data(&mut buf, Priority::Routine, sequence, b"x");
        }
        assert!(intake.take(&mut buf, 1024, &ingress).is_ok());
        let first = fan_in.next().await.unwrap();
        let second = fan_in.next().await.unwrap();
        source.stored(second.item.span().unwrap());
        assert_eq!(source.last_acked(), None, "0..=3 are not stored");
        source.stored(first.item.span().unwrap());
        assert_eq!(source.last_acked(), Some(7));
    }
}
