//! One connection of a source, from HELLO to its end: the `select!` over the daemon's messages,
//! the output buffer and the clock, and what each ending means. Apart from the reconnections
//! (`mod.rs`) because a connection's turns are a machine of their own.

use std::io;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tokio_util::codec::Decoder;

use super::{SessionEnd, SimSource, WRITE_TARGET};
use crate::protocol::ingest::{
    ClientCodec, ClientMessage, CloseReason, Hello, ServerMessage, VERSION,
};
use crate::sim::progress::Progress;
use crate::tls::stream::{Reader, Writer};

/// How long a broken connection is still read for the daemon's last words.
const SALVAGE_TIMEOUT: Duration = Duration::from_millis(200);
/// Bytes read from the socket at a time.
const READ_BUFFER: usize = 8 * 1024;

/// What a welcomed connection's loop keeps from one turn to the next.
#[derive(Debug)]
struct Turns {
    /// Set once this side shut down its sending side: the CLOSE must come by then.
    close_deadline: Option<Instant>,
    /// When bytes last went out: a keep-alive follows `keepalive` after it.
    last_write: Instant,
    /// PINGs sent, each with its number as its token.
    pings: u64,
    /// Written and not yet flushed: a TLS session may hold the last record (plain TCP never).
    unflushed: bool,
}

impl Turns {
    fn new(now: Instant) -> Turns {
        Turns {
            close_deadline: None,
            last_write: now,
            pings: 0,
            unflushed: false,
        }
    }

    /// Queues a keep-alive.
    fn ping(&mut self, out: &mut BytesMut) {
        ClientMessage::Ping(self.pings).encode(out);
        self.pings += 1;
    }
}

impl SimSource {
    /// One connection, from HELLO to its end.
    pub(super) async fn session(&mut self, mut rd: Reader, mut wr: Writer) -> SessionEnd {
        let mut codec = ClientCodec::default();
        let mut rbuf = BytesMut::with_capacity(READ_BUFFER);

        let mut out = BytesMut::with_capacity(WRITE_TARGET * 2);
        ClientMessage::Hello(Hello {
            version: VERSION,
            kind: self.spec.kind,
            source_id: self.spec.id,
        })
        .encode(&mut out);
        let hello = async {
            wr.write_all(&out).await?;
            wr.flush().await
        };
        match timeout(self.opts.handshake_timeout, hello).await {
            Ok(Ok(())) => out.clear(),
            Ok(Err(err)) => return SessionEnd::Lost(format!("sending HELLO: {err}")),
            Err(_) => return SessionEnd::Lost("sending HELLO timed out".into()),
        }
        let answer = timeout(
            self.opts.handshake_timeout,
            read_message(&mut rd, &mut rbuf, &mut codec),
        )
        .await;
        let resume_after = match answer {
            Ok(Ok(Some(ServerMessage::Welcome { resume_after, .. }))) => resume_after,
            Ok(Ok(Some(ServerMessage::Refused { reason, detail }))) => {
                return SessionEnd::Refused(reason, detail)
            }
            Ok(Ok(Some(other))) => {
                return SessionEnd::Fatal(format!("expected WELCOME or REFUSED, got {other:?}"))
            }
            Ok(Ok(None)) => return SessionEnd::Lost("connection closed before WELCOME".into()),
            Ok(Err(err)) => return SessionEnd::Lost(format!("waiting for WELCOME: {err}")),
            Err(_) => {
                return SessionEnd::Lost(format!(
                    "no WELCOME within {} ms",
                    self.opts.handshake_timeout.as_millis()
                ))
            }
        };
        if let Some(log) = &self.opts.ack_log {
            let daemon = self.logged_daemon();
            log.welcome(self.spec.kind, self.spec.id, resume_after, daemon);
        }
        self.connections += 1;
        Progress::add(&self.progress.connected, 1);
        let end = self
            .stream(
                &mut rd,
                &mut wr,
                &mut rbuf,
                &mut codec,
                &mut out,
                resume_after,
            )
            .await;
        self.progress
            .connected
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        end
    }

    /// The welcomed part of a connection: resend, generate, write, and take acknowledgements.
    async fn stream(
        &mut self,
        rd: &mut Reader,
        wr: &mut Writer,
        rbuf: &mut BytesMut,
        codec: &mut ClientCodec,
        out: &mut BytesMut,
        resume_after: Option<u64>,
    ) -> SessionEnd {
        self.resume(resume_after);
        let mut turns = Turns::new(Instant::now());
        loop {
            let now = Instant::now();
            if let Some(end) = self.fill_or_end_stream(wr, out, &mut turns, now).await {
                return end;
            }
            let next_tick = self.next_tick(&turns, now);
            // Nothing written for a while, and nothing to write: a keep-alive.
            let ping_at = (turns.close_deadline.is_none() && out.is_empty())
                .then_some(turns.last_write + self.opts.keepalive);
            tokio::select! {
                biased;
                message = read_message(rd, rbuf, codec) => {
                    if let Some(end) = self.on_read(message, out, &turns) {
                        return end;
                    }
                }
                written = write_or_flush(wr, out), if !out.is_empty() || turns.unflushed => {
                    if let Some(end) = self.on_written(written, &mut turns, rd, rbuf, codec).await {
                        return end;
                    }
                }
                _ = sleep_until(next_tick.unwrap_or(now)), if next_tick.is_some() => {}
                _ = sleep_until(ping_at.unwrap_or(now)), if ping_at.is_some() => turns.ping(out),
                _ = sleep_until(turns.close_deadline.unwrap_or(now)), if turns.close_deadline.is_some() => {
                    return SessionEnd::Lost(format!(
                        "no CLOSE within {} ms of the end of stream ({} frames unacknowledged)",
                        self.opts.close_timeout.as_millis(),
                        self.outbox.unacked()
                    ));
                }
            }
        }
    }

    /// Takes up where the WELCOME says the daemon is, and rewinds to resend what it lacks. Frames
    /// acknowledged above that point are no longer here to resend: they are counted, and warned
    /// about.
    fn resume(&mut self, resume_after: Option<u64>) {
        let behind = self.outbox.acknowledged_above(resume_after);
        if behind > 0 {
            self.acked_not_held += behind;
            tracing::warn!(
                daemon = self.address(),
                resume_after,
                frames = behind,
                "the daemon's resume point is below frames already acknowledged, which are not \
                 held any more: they cannot be sent again"
            );
        }
        if let Some(stored) = resume_after {
            // A source that has not written yet is a restarted source: it numbers its frames after
            // what the daemon stored. Otherwise the daemon stored some of ours: they are acknowledged.
            if !self.outbox.continue_after(stored) {
                self.acknowledge(stored, Instant::now());
            }
        }
        self.outbox.rewind();
    }

    /// Before the end of stream, encodes what fell due; once everything is on the wire, shuts
    /// down the sending side, and the daemon answers with its final acknowledgement and
    /// CLOSE(EndOfStream).
    async fn fill_or_end_stream(
        &mut self,
        wr: &mut Writer,
        out: &mut BytesMut,
        turns: &mut Turns,
        now: Instant,
    ) -> Option<SessionEnd> {
        if turns.close_deadline.is_some() {
            return None;
        }
        self.fill(out, now);
        if out.is_empty() && self.outbox.unwritten() == 0 && self.generation_done(now) {
            if let Err(err) = wr.shutdown().await {
                let why = format!("shutting down the sending side: {err}");
                return Some(SessionEnd::Lost(why));
            }
            turns.close_deadline = Some(now + self.opts.close_timeout);
        }
        None
    }

    /// When the clock next has frames due, while it may generate more: before the end of stream,
    /// and with room under `max_in_flight`.
    fn next_tick(&self, turns: &Turns, now: Instant) -> Option<Instant> {
        self.next_due().filter(|_| {
            turns.close_deadline.is_none()
                && !self.generation_done(now)
                && self.outbox.unacked() < self.opts.max_in_flight
        })
    }

    /// What a read from the daemon gave: a message taken, or the session's end.
    fn on_read(
        &mut self,
        read: io::Result<Option<ServerMessage>>,
        out: &mut BytesMut,
        turns: &Turns,
    ) -> Option<SessionEnd> {
        let now = Instant::now();
        let message = match read {
            Ok(Some(message)) => message,
            Ok(None) => {
                let why = "the daemon closed the connection without CLOSE";
                return Some(SessionEnd::Lost(why.into()));
            }
            Err(err) => return Some(SessionEnd::Lost(format!("reading from the daemon: {err}"))),
        };
        self.on_message(message, out, turns.close_deadline.is_some(), now)
    }

    /// What a write (or a flush) gave: bytes on their way, or the session's end.
    async fn on_written(
        &mut self,
        written: io::Result<Option<usize>>,
        turns: &mut Turns,
        rd: &mut Reader,
        rbuf: &mut BytesMut,
        codec: &mut ClientCodec,
    ) -> Option<SessionEnd> {
        match written {
            Ok(Some(0)) => {
                let why = "the daemon stopped accepting bytes";
                return Some(SessionEnd::Lost(why.into()));
            }
            Ok(Some(_)) => {
                turns.last_write = Instant::now();
                turns.unflushed = true;
            }
            Ok(None) => turns.unflushed = false,
            Err(err) => {
                // A daemon that closes with our frames unread in its buffer resets the
                // connection, and the write can fail before the CLOSE in front of the reset
                // was read: take what the daemon said last, so its final_ack still counts.
                self.salvage(rd, rbuf, codec).await;
                return Some(SessionEnd::Lost(format!("writing to the daemon: {err}")));
            }
        }
        None
    }

    /// Takes a message from the daemon (`closing`: after this side's end of stream); the
    /// session's end when it ends it.
    fn on_message(
        &mut self,
        message: ServerMessage,
        out: &mut BytesMut,
        closing: bool,
        now: Instant,
    ) -> Option<SessionEnd> {
        match message {
            ServerMessage::Ack { sequence } => self.acknowledge(sequence, now),
            ServerMessage::Pong(_) => {}
            // Held from now on; the acknowledgement goes out behind what is queued.
            ServerMessage::Catalog { version, .. } => {
                self.catalog_version = self.catalog_version.max(Some(version));
                if !closing {
                    ClientMessage::CatalogAck(version).encode(out);
                }
            }
            ServerMessage::Close {
                reason,
                final_ack,
                detail,
            } => {
                if let Some(sequence) = final_ack {
                    self.acknowledge(sequence, now);
                }
                return Some(self.closed(reason, detail, closing, now));
            }
            other => {
                let reason = format!("unexpected message from the daemon: {other:?}");
                return Some(SessionEnd::Fatal(reason));
            }
        }
        None
    }

    /// Reads whatever acknowledgements and CLOSE the daemon sent before the connection broke,
    /// for at most [`SALVAGE_TIMEOUT`].
    async fn salvage(&mut self, rd: &mut Reader, rbuf: &mut BytesMut, codec: &mut ClientCodec) {
        let deadline = Instant::now() + SALVAGE_TIMEOUT;
        while let Ok(Ok(Some(message))) = timeout_at(deadline, read_message(rd, rbuf, codec)).await
        {
            match message {
                ServerMessage::Ack { sequence } => self.acknowledge(sequence, Instant::now()),
                ServerMessage::Close { final_ack, .. } => {
                    if let Some(sequence) = final_ack {
                        self.acknowledge(sequence, Instant::now());
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    /// What a CLOSE means for this source.
    fn closed(
        &self,
        reason: CloseReason,
        detail: String,
        half_closed: bool,
        now: Instant,
    ) -> SessionEnd {
        match reason {
            CloseReason::EndOfStream
                if half_closed && self.outbox.unacked() == 0 && self.generation_done(now) =>
            {
                SessionEnd::Finished
            }
            CloseReason::Shutdown => SessionEnd::Lost(self.closed_with(reason, &detail)),
            CloseReason::EndOfStream
            | CloseReason::IdleTimeout
            | CloseReason::StorageUnavailable => {
                SessionEnd::Retry(self.closed_with(reason, &detail))
            }
            CloseReason::FrameTooLarge
            | CloseReason::MalformedMessage
            | CloseReason::UnexpectedMessage
            | CloseReason::TruncatedFrame => {
                SessionEnd::Fatal(format!("daemon closed the connection: {reason}: {detail}"))
            }
        }
    }

    /// Why a CLOSE for `reason` ends a connection with frames still unacknowledged.
    fn closed_with(&self, reason: CloseReason, detail: &str) -> String {
        format!(
            "daemon closed the connection ({reason}: {detail}) with {} frames unacknowledged",
            self.outbox.unacked()
        )
    }
}

/// Writes what `out` holds (`Some` bytes written) or, once it is empty, flushes (`None`).
/// Cancel-safe either way.
async fn write_or_flush(wr: &mut Writer, out: &mut BytesMut) -> std::io::Result<Option<usize>> {
    if out.is_empty() {
        wr.flush().await.map(|()| None)
    } else {
        wr.write_buf(out).await.map(Some)
    }
}

/// The next message from the daemon; `None` on a clean end of stream. Cancellation safe: the read
/// buffer and the codec live with the caller, so a cancelled read loses no byte.
async fn read_message(
    rd: &mut Reader,
    rbuf: &mut BytesMut,
    codec: &mut ClientCodec,
) -> io::Result<Option<ServerMessage>> {
    loop {
        if let Some(message) = codec.decode(rbuf)? {
            return Ok(Some(message));
        }
        if rbuf.capacity() - rbuf.len() < READ_BUFFER / 4 {
            rbuf.reserve(READ_BUFFER);
        }
        if rd.read_buf(rbuf).await? == 0 {
            return if rbuf.is_empty() {
                Ok(None)
            } else {
                Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "connection closed in the middle of a message ({} bytes buffered)",
                        rbuf.len()
                    ),
                ))
            };
        }
    }
}
