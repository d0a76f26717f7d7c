//! The socket halves, the read buffer, and every write the daemon makes on a connection.
//!
//! Writes have patience: a peer that does not read for `idle_timeout` counts as gone, and once the
//! drain has started a write gets a quarter of the drain deadline, so that a peer that never
//! reads cannot hold the drain past its deadline. The close lingers to read what the peer still
//! sends, since closing a socket with unread input resets it, and a reset can destroy the very
//! CLOSE that tells the source which frames were accepted.

use std::future::{poll_fn, Future};
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::services::Services;
use crate::ingest::read_credit::{make_room, SMALL_READ};
use crate::protocol::ingest::ServerMessage;
use crate::tls::stream::{Reader, Writer};

/// How long a closing connection waits for the peer to close its side.
const LINGER: Duration = Duration::from_millis(200);

/// The socket halves and the read buffer, with the writes the daemon makes.
pub(super) struct Wire {
    /// Read directly by the ingest loop, through its read turn, beside the catalog's writes.
    pub(super) reader: Reader,
    /// Written directly only by the catalog sender, a piece at a time (`super::catalog`).
    pub(super) writer: Writer,
    pub(super) buf: BytesMut,
    /// How long a peer may keep a write waiting before it counts as gone.
    write_timeout: Duration,
    /// Once the drain has started, what is left of a write's patience: a peer that does not read
    /// must not hold the drain past its deadline.
    drain: CancellationToken,
    drain_write_budget: Duration,
    /// Set after a failed or abandoned write: the peer is gone (or the stream is cut mid-message),
    /// so nothing more is written.
    pub(super) writer_broken: bool,
    /// The rest of a message [`Wire::try_send`] wrote in part: the next write sends it first.
    owed: BytesMut,
}

impl Wire {
    pub(super) fn new(reader: Reader, writer: Writer, services: &Services) -> Wire {
        Wire {
            reader,
            writer,
            buf: BytesMut::new(),
            write_timeout: services.config.connection.idle_timeout,
            drain: services.drain.clone(),
            drain_write_budget: services.config.shutdown.drain_deadline / 4,
            writer_broken: false,
            owed: BytesMut::new(),
        }
    }

    /// Moves a plain socket to the runtime this is called on (its shard's), so that its
    /// readiness is watched by the thread that reads it. A TLS stream stays where it was accepted;
    /// it works from any runtime, at the cost of a wake-up across threads.
    pub(super) fn rehome(self) -> io::Result<Wire> {
        let (reader, writer) = match (self.reader, self.writer) {
            (Reader::Plain(reader), Writer::Plain(writer)) => {
                let stream = reader.reunite(writer).map_err(io::Error::other)?;
                let stream = TcpStream::from_std(stream.into_std()?)?;
                let (reader, writer) = stream.into_split();
                (Reader::Plain(reader), Writer::Plain(writer))
            }
            halves => halves,
        };
        Ok(Wire {
            reader,
            writer,
            ..self
        })
    }

    pub(super) async fn send(&mut self, message: &ServerMessage) {
        self.send_or_wait(message, || ()).await;
    }

    /// [`Wire::send`], which runs `on_wait` first if the message cannot go out at once (the peer
    /// is not reading): what the connection must give up before it waits.
    pub(super) async fn send_or_wait(&mut self, message: &ServerMessage, on_wait: impl FnOnce()) {
        let mut out = BytesMut::with_capacity(64);
        message.encode(&mut out);
        self.write_or_wait(&out, on_wait).await;
    }

    /// Sends `message` only as far as the socket takes it now, without waiting: what a
    /// connection may write while a read of it waits for admission, since a wait there would hold
    /// the read's credit. False when nothing went out. A message that went out in part counts as
    /// sent: its rest is owed, and goes before the next write.
    pub(super) fn try_send(&mut self, message: &ServerMessage) -> bool {
        if self.writer_broken || !self.owed.is_empty() {
            return false;
        }
        let mut out = BytesMut::with_capacity(64);
        message.encode(&mut out);
        // Polled once: a socket without room now is tried again at a later pass.
        let mut cx = Context::from_waker(Waker::noop());
        let written = match Pin::new(&mut self.writer).poll_write(&mut cx, &out) {
            Poll::Pending => return false,
            Poll::Ready(Ok(0)) | Poll::Ready(Err(_)) => {
                tracing::debug!("peer stopped reading; no further messages sent");
                self.writer_broken = true;
                return false;
            }
            Poll::Ready(Ok(written)) => written,
        };
        // A TLS session holds the record until a flush; what it cannot flush now goes with the
        // next write.
        let _ = Pin::new(&mut self.writer).poll_flush(&mut cx);
        self.owed = out.split_off(written);
        true
    }

    /// Whether part of a message is still to be written: nothing else may go out before it.
    pub(super) fn owes(&self) -> bool {
        !self.owed.is_empty()
    }

    pub(super) async fn write(&mut self, bytes: &[u8]) {
        self.write_or_wait(bytes, || ()).await;
    }

    async fn write_or_wait(&mut self, bytes: &[u8], on_wait: impl FnOnce()) {
        if self.writer_broken {
            return;
        }
        let budget = self.drain_write_budget;
        let owed = std::mem::take(&mut self.owed);
        // The flush is free on plain TCP; a TLS session may keep the last record otherwise.
        let writer = &mut self.writer;
        let write = async move {
            writer.write_all(&owed).await?;
            writer.write_all(bytes).await?;
            writer.flush().await
        };
        tokio::pin!(write);
        let at_once = poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
        let written = match at_once {
            Poll::Ready(written) => Ok(written),
            Poll::Pending => {
                on_wait();
                tokio::select! {
                    biased;
                    written = timeout(self.write_timeout, &mut write) => written,
                    _ = self.drain.cancelled() => timeout(budget, &mut write).await,
                }
            }
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
    pub(super) async fn close(&mut self) {
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
    pub(super) async fn read_small(&mut self) -> io::Result<usize> {
        make_room(&mut self.buf, SMALL_READ);
        let spare = self.buf.capacity() - self.buf.len();
        let mut limited = (&mut self.reader).take(spare.min(SMALL_READ) as u64);
        limited.read_buf(&mut self.buf).await
    }
}
