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
//! The rooms: [`accept`] (from the accepted socket to the WELCOME, and onto the shard's thread),
//! [`handshake`] (the HELLO and every refusal), [`wire`] (the socket and every write), [`intake`]
//! (reads into batches and ledger runs), [`acks`] (ACK pacing), [`catalog`] (catalogs sent a
//! piece at a time), [`idle`] (the idle clock), [`close`] (the wait for the archive and the
//! CLOSE), with [`services`] (what the daemon lends every connection) and [`ending`] (why a
//! connection ended) beneath them all. This file is the [`Connection`]: one registered
//! connection from its WELCOME to its close, one method per thing that can happen to it.

mod accept;
mod acks;
mod catalog;
mod close;
mod ending;
mod handshake;
mod idle;
mod intake;
mod services;
mod wire;

pub(crate) use accept::{refuse_over_limit, serve};
pub(crate) use services::Services;

use std::io;
use std::pin::Pin;
use std::sync::Arc;

use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

use crate::domain::source::Source;
use crate::ingest::read_credit::ReadTurn;
use crate::ingest::router::Registration;
use crate::pipeline::fan_in::Ingress;
use crate::protocol::ingest::ServerMessage;
use acks::Acks;
use catalog::{CatalogOut, Step};
use ending::Ending;
use idle::Idle;
use intake::Intake;
use wire::Wire;

/// One registered connection, from its WELCOME to its close: everything it reads, writes and
/// waits for is here.
struct Connection {
    services: Arc<Services>,
    source: Arc<Source>,
    /// The source's lane into its shard's fan-in.
    ingress: Ingress,
    wire: Wire,
    intake: Intake,
    acks: Acks,
    catalog: CatalogOut,
    /// The connection's place in its shard's read line.
    turn: ReadTurn,
    /// Its shard's archive gave up on frames it cannot store.
    storage_lost: CancellationToken,
    idle: Idle,
    /// The drain's signal, made once: a fresh `cancelled()` per pass would join and leave the
    /// token's waiter list every time. On the heap, as the timers are.
    drain: Pin<Box<WaitForCancellationFutureOwned>>,
    /// Why the connection ends, once something ended it: it reads no more, and leaves its loop
    /// once all it read is admitted and answered.
    ending: Option<Ending>,
    /// The frames of the last read are waiting for room in the fan-in, holding the read's credit:
    /// nothing is read or written meanwhile. Taken at the start of every pass.
    admitting: bool,
}

impl Connection {
    /// The connection of `registration` on `wire`, its WELCOME having acknowledged `welcomed`:
    /// an acknowledgement that moved since is sent. Made on the runtime that will run it: its
    /// timers belong to that runtime.
    fn new(
        wire: Wire,
        registration: Registration,
        catalog: CatalogOut,
        welcomed: Option<u64>,
        services: Arc<Services>,
    ) -> Connection {
        let Registration {
            source,
            ingress,
            already_stored,
            shard,
            ..
        } = registration;
        let intake = Intake::new(&source, &services, shard, already_stored);
        let acks = Acks::new(Arc::clone(&services), welcomed);
        let turn = services.read_credits[shard % services.read_credits.len()].turn();
        let storage_lost = services.storage_lost[shard % services.storage_lost.len()].clone();
        let idle = Idle::new(services.config.connection.idle_timeout);
        let drain = Box::pin(services.drain.clone().cancelled_owned());
        Connection {
            services,
            source,
            ingress,
            wire,
            intake,
            acks,
            catalog,
            turn,
            storage_lost,
            idle,
            drain,
            ending: None,
            admitting: false,
        }
    }

    /// Runs the connection to its end: the ingest loop, then the close; the source is
    /// deregistered before the lingering close, so that it may connect again as soon as it has
    /// its CLOSE.
    async fn run(mut self) {
        // Whatever the source sent right behind its HELLO.
        self.take_frames();
        loop {
            self.on_catalog_ack();
            self.admitting = self.ingress.has_staged();
            if !self.admitting {
                self.answer().await;
                if self.ending.is_some() {
                    break;
                }
            }
            self.next_event().await;
        }
        self.close().await;
    }

    /// Waits for the next thing to happen, in order of priority, and handles it.
    async fn next_event(&mut self) {
        let reading = self.is_reading();
        tokio::select! {
            biased;
            _ = &mut self.drain, if self.ending.is_none() => self.on_drain(),
            _ = self.ingress.drained(), if self.admitting => self.on_admitted(),
            step = self.catalog.step(&mut self.wire.writer),
                if self.catalog.is_active() && !self.wire.writer_broken && !self.wire.owes() => {
                    self.on_catalog_step(step)
                }
            read = self.turn.read(&mut self.wire.reader, &mut self.wire.buf), if reading => {
                self.on_read(read)
            }
            _ = self.acks.recheck(), if self.acks.is_recheck_armed() => self.on_recheck(),
            // Waiting in line for a read credit is not idleness.
            _ = self.idle.timer(), if reading && !self.turn.is_waiting() => self.on_idle_timer(),
        }
    }

    /// Whether the connection reads: nothing ended it, and all it read is admitted.
    fn is_reading(&self) -> bool {
        self.ending.is_none() && !self.admitting
    }

    /// Decodes what the read buffer holds into the fan-in; bad input ends the connection.
    fn take_frames(&mut self) {
        let max_frame_length = self.services.config.connection.max_frame_length;
        let taken = self
            .intake
            .take(&mut self.wire.buf, max_frame_length, &self.ingress);
        self.ending = taken.err();
    }

    /// All that was read is admitted: the read's credit goes back, then the PONG and the ACK due
    /// go out.
    ///
    /// The read's credit goes back before anything is written, nothing that would wait is written
    /// while a read's frames wait for admission (which holds its credit; an ACK goes then only if
    /// the socket takes it at once, [`Connection::on_recheck`]), and a write that has to wait
    /// leaves the read line: a write waits for the peer to read, and a peer that does not read would
    /// otherwise hold a credit, and the turn of every source waiting in line, for as long as the
    /// write may wait.
    async fn answer(&mut self) {
        self.turn.release(&mut self.wire.buf);
        // Nothing may be written inside a catalog message that is part-written.
        if self.catalog.is_writing() {
            return;
        }
        if let Some(token) = self.intake.pong.take() {
            let pong = ServerMessage::Pong(token);
            let turn = &mut self.turn;
            self.wire.send_or_wait(&pong, || turn.leave_line()).await;
        }
        let turn = &mut self.turn;
        self.acks
            .update(&mut self.wire, &self.source, || turn.leave_line())
            .await;
    }

    /// The ACK timer fired. While the last read waits for admission, an ACK due goes now if the
    /// socket takes it at once; otherwise the next pass looks, and arms the timer again.
    fn on_recheck(&mut self) {
        self.acks.rechecked();
        // Nothing may be written inside a catalog message that is part-written.
        if self.admitting && !self.catalog.is_writing() {
            self.acks.update_at_once(&mut self.wire, &self.source);
        }
    }

    /// The drain started: the connection reads no more, and closes once what it read is in.
    fn on_drain(&mut self) {
        self.ending = Some(Ending::Shutdown);
    }

    /// The fan-in took the last read's frames. Waiting for room is not idleness: the idle clock
    /// restarts once all is admitted.
    fn on_admitted(&mut self) {
        self.idle.activity();
    }

    /// Part of a catalog went out, or a newer one is to be sent, or the socket failed.
    fn on_catalog_step(&mut self, step: Step) {
        if let Step::Failed(err) = step {
            tracing::debug!(error = %err, "peer stopped reading while a catalog was sent");
            self.wire.writer_broken = true;
        }
    }

    /// A read came back: its frames go into the fan-in, or it ended the stream.
    fn on_read(&mut self, read: io::Result<usize>) {
        match read {
            Ok(1..) => {
                self.idle.activity();
                self.take_frames();
            }
            read => self.ending = Some(Ending::of_read(read, self.wire.buf.len())),
        }
    }

    /// The idle timer fired. A source waiting for the acknowledgement of what it sent (a slow or
    /// failing disk) is not idle either.
    fn on_idle_timer(&mut self) {
        if !self.source.is_settled() {
            self.idle.activity();
        }
        if self.idle.expired() {
            self.ending = Some(Ending::Idle);
        }
    }

    /// A CATALOG_ACK was read: the source holds `version`, if it was sent on this connection. One
    /// that names a version never sent is counted as a protocol error and logged, and the
    /// connection goes on: the frames it carries are not at fault.
    fn on_catalog_ack(&mut self) {
        let Some(version) = self.intake.catalog_ack.take() else {
            return;
        };
        if self.catalog.was_sent(version) {
            self.source.holds_catalog(version);
        } else {
            self.services.stats.protocol_error();
            tracing::warn!(
                version,
                "CATALOG_ACK for a catalog version never sent on this connection; ignored"
            );
        }
    }

    /// The loop is over: the rest of a catalog in progress, the wait for the archive, the final
    /// acknowledgement and the CLOSE, then the source is deregistered and the socket closed.
    async fn close(self) {
        let Connection {
            services,
            source,
            ingress,
            mut wire,
            mut catalog,
            acks,
            turn,
            storage_lost,
            idle,
            drain,
            intake,
            ending,
            admitting: _,
        } = self;
        // The fan-in closes once every `Ingress` is gone, which is how the drain reaches the
        // processor: this one goes before the connection waits for the archive, and with it
        // everything else the loop held (its place in the read line above all).
        drop((ingress, turn, idle, drain, intake));
        // The rest of a catalog in progress goes before the final ACK and the CLOSE.
        if let Some(rest) = catalog.take_rest() {
            wire.write(&rest).await;
        }
        let ending = ending.unwrap_or(Ending::PipelineClosed);
        let lost = &storage_lost;
        close::finish(&mut wire, &source, acks.sent(), ending, (&services, lost)).await;
        wire.close().await;
    }
}
